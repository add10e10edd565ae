//! The whole story on one database, as a user would live it: create the database, opt in a
//! writer and a reader, write, drain the writer (hand-over to a waiting successor), crash the
//! new writer's process (kill -9, restarted in the same pod: its write buffer is replayed),
//! restore to a point in time and to the latest state. Prints a short summary.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use e2e::{Fixture, LocalPod};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

/// Ids a writer printed (each after its COMMIT returned).
fn ids(p: &LocalPod) -> Vec<i64> {
    p.printed_ids()
}

async fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        ensure!(Instant::now() < end, "timed out after {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn rows(path: &std::path::Path) -> Result<BTreeSet<i64>> {
    ensure!(
        testkit::sqlite::integrity(path) == "ok",
        "{} is not intact",
        path.display()
    );
    let c = rusqlite::Connection::open(path)?;
    let mut s = c.prepare("SELECT id FROM t")?;
    let r = s
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(r)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_opt_in_write_drain_fail_over_restore() -> Result<()> {
    let Some(f) = Fixture::start("story").await? else {
        return Ok(());
    };
    let t0 = Instant::now();
    let url = f
        .s3_database(
            "shop",
            json!({"syncInterval": "1s", "writer": {"leaseDuration": "5s", "drainTimeout": "10s"}}),
        )
        .await?;
    let db = e2e::wait_for(30, "the database to become Ready", || async {
        let d = f.database("shop").await.ok()?;
        (d.status.as_ref()?.phase == Some(crds::Phase::Ready)).then_some(d)
    })
    .await?;
    ensure!(db.status.unwrap().replica_url.is_some());

    // A writer and a reader opt in.
    let mut w1 = f
        .start_pod("shop-writer-1", "shop", "write", json!([]))
        .await?;
    wait_until(30, "the writer commits 50 rows", || ids(&w1).len() >= 50).await?;
    let mut reader = f
        .start_pod("shop-reader", "shop", "read", json!([]))
        .await?;
    let target = ids(&w1)[49];
    wait_until(15, "the reader sees the writer's rows", || {
        reader.containers[0].output().iter().any(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|m| m.parse::<i64>().ok())
                .is_some_and(|m| m >= target)
        })
    })
    .await?;

    // Drain: a successor waits; the writer gets SIGTERM and hands over.
    let pod2 = f
        .create_pod("shop-writer-2", "shop", "write", json!([]))
        .await?;
    let mut w2 = f.kubelet.run(&pod2).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        ids(&w2).is_empty(),
        "the successor wrote while the writer held the lease"
    );
    let drain_started = Instant::now();
    w1.delete();
    ensure!(
        w1.app().exited().is_some_and(|s| s.success()),
        "writer 1 did not drain cleanly"
    );
    let leases: Api<Lease> = Api::namespaced(f.client.clone(), &f.ns);
    let lease = leases.get("shop-writer").await?;
    let released = lease
        .metadata
        .annotations
        .and_then(|a| a.get("sqlitekube.dev/released-txid").cloned())
        .context("writer 1 left no released TXID")?;
    wait_until(30, "writer 2 takes over", || !ids(&w2).is_empty()).await?;
    let handoff = drain_started.elapsed();
    let w1_rows: BTreeSet<i64> = ids(&w1).into_iter().collect();

    // Fail over within the pod: kill -9 the writer process; the kubelet restarts it in the
    // same pod, which replays its write buffer and keeps the lease.
    wait_until(30, "writer 2 commits 50 rows", || ids(&w2).len() >= 50).await?;
    w2.app().kill();
    let before_crash: BTreeSet<i64> = ids(&w2).into_iter().collect();
    f.kubelet.restart_app(&pod2, &mut w2).await?;
    wait_until(30, "the restarted writer commits", || ids(&w2).len() >= 20).await?;
    w2.delete();
    ensure!(
        w2.app().exited().is_some_and(|s| s.success()),
        "writer 2 did not drain cleanly"
    );
    let after_restart: BTreeSet<i64> = ids(&w2).into_iter().collect();
    reader.delete();

    // Point in time: the state writer 1 handed over, exactly.
    let dir = tempfile::tempdir()?;
    let pit = dir.path().join("pit.db");
    let o = std::process::Command::new(e2e::binary("hydrator")?)
        .args(["restore", "--replica", &url, "--txid", &released, "-o"])
        .arg(&pit)
        .envs(f.s3_env())
        .env_remove("AWS_CA_BUNDLE")
        .output()?;
    ensure!(
        o.status.success(),
        "hydrator restore --txid: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pit_rows = rows(&pit)?;
    ensure!(
        pit_rows == w1_rows,
        "restore at TXID {released}: {} rows, writer 1 committed {}",
        pit_rows.len(),
        w1_rows.len()
    );

    // Latest, with the real litestream: every committed row of every writer.
    let (integrity, all) = f.litestream_rows(&url, &dir.path().join("latest.db"))?;
    ensure!(integrity == "ok", "latest restore: {integrity}");
    let committed: BTreeSet<i64> = w1_rows
        .iter()
        .chain(&before_crash)
        .chain(&after_restart)
        .copied()
        .collect();
    ensure!(
        committed.is_subset(&all),
        "{} committed rows missing",
        committed.difference(&all).count()
    );

    // Only writers ever held the lease (the reader follows without it): the epochs
    // recorded at the store name writer pods only.
    let replica = f.replica(&url)?;
    let holders: Vec<String> = replica
        .epochs()
        .await?
        .into_iter()
        .map(|e| e.holder)
        .collect();
    // Every acquisition records an epoch: writer 1, writer 2, and writer 2's restarted
    // process (a new incarnation of the same pod: same name, new process), each a distinct
    // holder (`<pod>_<pod uid>_<pid>`).
    let pods: Vec<&str> = holders
        .iter()
        .map(|h| h.split('_').next().unwrap_or(""))
        .collect();
    ensure!(
        pods == ["shop-writer-1", "shop-writer-2", "shop-writer-2"] && holders[1] != holders[2],
        "epochs at the store: {holders:?}"
    );

    let status = f.database("shop").await?.status.unwrap_or_default();
    eprintln!(
        "story: database Ready; writer 1 committed {} rows, reader followed; drain hand-over at TXID {released} in {handoff:?}; \
         writer 2 killed -9 after {} rows and restarted in place ({} more); PITR at {released} = writer 1's {} rows; \
         latest restore (litestream) has all {} committed rows; status lastSyncedTxid {:?}; {:?} total",
        w1_rows.len(), before_crash.len(), after_restart.len(), pit_rows.len(), committed.len(),
        status.last_synced_txid, t0.elapsed()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}
