//! One writer per database, enforced; clean drains; lease loss. Pods are created through
//! the real API server (the operator's webhook mutates them over TLS) and their containers
//! run locally with the stored command, arguments and environment (`e2e::kubelet`).
//! Replicas live on SeaweedFS and are checked with the real `litestream restore`.
//!
//! `E2E_ROUNDS` (default 50) sets the rounds of the race and drain tests.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use e2e::{Fixture, LocalPod};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

fn rounds() -> usize {
    std::env::var("E2E_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

const SPEC: &str =
    r#"{"syncInterval": "1s", "writer": {"leaseDuration": "5s", "drainTimeout": "10s"}}"#;

/// Ids a writer printed (each after its COMMIT returned).
fn ids(p: &LocalPod) -> Vec<i64> {
    p.printed_ids()
}

async fn wait_ids(p: &LocalPod, n: usize, secs: u64) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    while ids(p).len() < n {
        if Instant::now() > end {
            bail!(
                "pod {} printed {} ids in {secs} s (want {n}); stderr:\n{}",
                p.name,
                ids(p).len(),
                tail(&p.containers[0].stderr())
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn tail(s: &str) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(15)..].join("\n")
}

async fn lease(f: &Fixture, db: &str) -> Result<Lease> {
    let api: Api<Lease> = Api::namespaced(f.client.clone(), &f.ns);
    Ok(api.get(&format!("{db}-writer")).await?)
}

fn annotation(l: &Lease, k: &str) -> Option<String> {
    l.metadata.annotations.as_ref()?.get(k).cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_race_exactly_one_writes() -> Result<()> {
    let Some(f) = Fixture::start("race").await? else {
        return Ok(());
    };
    let url = f.s3_database("orders", serde_json::from_str(SPEC)?).await?;
    let work = tempfile::tempdir()?;
    let mut total = BTreeSet::new();
    for round in 0..rounds() {
        let (a, b) = (format!("race-a-{round}"), format!("race-b-{round}"));
        let (pa, pb) = tokio::join!(
            f.create_pod(&a, "orders", "write", json!([])),
            f.create_pod(&b, "orders", "write", json!([]))
        );
        let (pa, pb) = (pa?, pb?);
        let (ra, rb) = tokio::join!(f.kubelet.run(&pa), f.kubelet.run(&pb));
        let mut pods = [ra?, rb?];
        // Whoever got the lease writes; the other must not write anything.
        let end = Instant::now() + Duration::from_secs(30);
        let winner = loop {
            if let Some(i) = (0..2).find(|&i| ids(&pods[i]).len() >= 5) {
                break i;
            }
            ensure!(
                Instant::now() < end,
                "round {round}: nobody wrote in 30 s:\n{}\n---\n{}",
                tail(&pods[0].containers[0].stderr()),
                tail(&pods[1].containers[0].stderr())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let loser = 1 - winner;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(
            ids(&pods[loser]).is_empty(),
            "round {round}: both pods wrote ({} and {} ids)",
            ids(&pods[winner]).len(),
            ids(&pods[loser]).len()
        );
        // The waiting pod says who holds the lease once it has asked (it may still be
        // starting on a loaded machine); it never writes meanwhile.
        let said = format!("held by {}", pods[winner].name);
        let asked_by = Instant::now() + Duration::from_secs(10);
        while !pods[loser].containers[0].stderr().contains(&said) && Instant::now() < asked_by {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let waiting = pods[loser].containers[0].stderr();
        ensure!(
            waiting.contains(&said),
            "round {round}: the waiting pod does not say who holds the lease:\n{}",
            tail(&waiting)
        );
        ensure!(
            ids(&pods[loser]).is_empty(),
            "round {round}: the waiting pod wrote"
        );
        if round == 0 {
            // The waiting pod's Event names the holder (kubectl describe pod shows it).
            let events: Api<Event> = Api::namespaced(f.client.clone(), &f.ns);
            let loser_name = pods[loser].name.clone();
            let winner_name = pods[winner].name.clone();
            e2e::wait_for(10, "the WaitingForWriterLease event", || {
                let events = events.clone();
                let (l, w) = (loser_name.clone(), winner_name.clone());
                async move {
                    let list = events.list(&ListParams::default()).await.ok()?;
                    list.items.into_iter().find(|e| {
                        e.involved_object.name.as_deref() == Some(l.as_str())
                            && e.reason.as_deref() == Some("WaitingForWriterLease")
                            && e.message.as_deref().is_some_and(|m| m.contains(&w))
                    })
                }
            })
            .await?;
        }
        // The waiting pod leaves at once on SIGTERM; the writer drains cleanly.
        let st = pods[loser].app().terminate(Duration::from_secs(5));
        ensure!(st.success(), "round {round}: waiting pod exited {st}");
        pods[winner].delete();
        let code = pods[winner].app().exited();
        ensure!(
            code.is_some_and(|c| c.success()),
            "round {round}: writer exit {code:?}:\n{}",
            tail(&pods[winner].containers[0].stderr())
        );
        total.extend(ids(&pods[winner]));
        let (integrity, rows) =
            f.litestream_rows(&url, &work.path().join(testkit::unique("restore")))?;
        ensure!(
            integrity == "ok",
            "round {round}: integrity_check: {integrity}"
        );
        ensure!(
            rows == total,
            "round {round}: the replica has {} rows, writers committed {}; the writer said:\n{}",
            rows.len(),
            total.len(),
            tail(&pods[winner].containers[0].stderr())
        );
    }
    eprintln!(
        "race: {} rounds, {} rows, one writer each time",
        rounds(),
        total.len()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_hands_over_without_losing_transactions() -> Result<()> {
    let Some(f) = Fixture::start("drain").await? else {
        return Ok(());
    };
    let url = f.s3_database("ledger", serde_json::from_str(SPEC)?).await?;
    let work = tempfile::tempdir()?;
    let mut current = f
        .start_pod("ledger-0", "ledger", "write", json!([]))
        .await?;
    wait_ids(&current, 3, 30).await?;
    let mut committed = BTreeSet::new();
    let mut released = Vec::new();
    let mut handoffs = Vec::new();
    for round in 1..=rounds() {
        // The successor is already waiting when the writer is drained (a rollout).
        let next = f
            .start_pod(&format!("ledger-{round}"), "ledger", "write", json!([]))
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        ensure!(
            ids(&next).is_empty(),
            "round {round}: the successor wrote while the writer held the lease"
        );
        let t0 = Instant::now();
        current.delete();
        let code = current.app().exited();
        ensure!(
            code.is_some_and(|c| c.success()),
            "round {round}: drained writer exit {code:?}:\n{}",
            tail(&current.containers[0].stderr())
        );
        committed.extend(ids(&current));
        let l = lease(&f, "ledger").await?;
        let txid = annotation(&l, "sqlitekube.dev/released-txid")
            .with_context(|| format!("round {round}: no released TXID on the lease"))?;
        ensure!(
            annotation(&l, "sqlitekube.dev/released-by").as_deref() == Some(current.name.as_str()),
            "round {round}: released-by is not {}",
            current.name
        );
        ensure!(
            annotation(&l, "sqlitekube.dev/unsynced")
                .unwrap_or_default()
                .is_empty(),
            "round {round}: drain left work unsynced"
        );
        released.push(u64::from_str_radix(&txid, 16)?);
        wait_ids(&next, 1, 30).await?;
        let first = next.containers[0].lines.lock().unwrap()[0].0;
        handoffs.push(first.duration_since(t0));
        current = next;
        wait_ids(&current, 3, 30).await?;
    }
    current.delete();
    ensure!(
        current.app().exited().is_some_and(|c| c.success()),
        "last writer did not exit cleanly"
    );
    committed.extend(ids(&current));
    let final_release = annotation(&lease(&f, "ledger").await?, "sqlitekube.dev/released-txid")
        .context("the last writer released no TXID")?;
    let final_release = u64::from_str_radix(&final_release, 16)?;

    // 0 committed transactions lost, checked with the real litestream.
    let (integrity, rows) =
        f.litestream_rows(&url, &work.path().join(testkit::unique("restore")))?;
    ensure!(integrity == "ok", "integrity_check: {integrity}");
    let lost: Vec<_> = committed.difference(&rows).take(10).collect();
    ensure!(
        lost.is_empty(),
        "{} committed rows missing from the replica, e.g. {lost:?}",
        committed.difference(&rows).count()
    );
    ensure!(
        rows.len() == committed.len(),
        "the replica has rows nobody reported committing"
    );

    // TXIDs contiguous across writers: each writer's epoch record at the store says it
    // took over exactly at the TXID its predecessor released.
    let replica = f.replica(&url)?;
    let epochs = replica.epochs().await?;
    ensure!(
        epochs.len() == rounds() + 1,
        "{} epoch records for {} writers",
        epochs.len(),
        rounds() + 1
    );
    for w in epochs.windows(2) {
        ensure!(w[1].epoch > w[0].epoch, "epochs not increasing: {w:?}");
    }
    for (i, rel) in released.iter().enumerate() {
        ensure!(
            epochs[i + 1].txid == *rel,
            "writer {} took over at TXID {:x}, its predecessor released {:x}",
            i + 1,
            epochs[i + 1].txid,
            rel
        );
    }
    let files = replica.list_level(0).await?;
    let mut next = 1;
    for fi in &files {
        ensure!(
            fi.key.min_txid <= next,
            "gap in L0 before TXID {:x}",
            fi.key.min_txid
        );
        next = next.max(fi.key.max_txid + 1);
    }

    // The operator reports the last hand-over, with the TXID the last writer released.
    let db = e2e::wait_for(20, "status.lastHandoff of the last drain", || async {
        let db = f.database("ledger").await.ok()?;
        let h = db.status.as_ref()?.last_handoff.clone()?;
        (h.from == current.name).then_some(db)
    })
    .await?;
    let st = db.status.unwrap();
    let h = st.last_handoff.unwrap();
    ensure!(h.complete, "last hand-over not complete: {h:?}");
    ensure!(
        u64::from_str_radix(&h.txid, 16).ok() == Some(final_release),
        "status.lastHandoff.txid {} is not the released TXID {final_release:016x}",
        h.txid
    );
    ensure!(
        final_release >= *released.last().unwrap(),
        "the last writer released TXID {final_release:x}, before its predecessor's"
    );
    ensure!(
        st.last_synced_txid.as_deref() == Some(h.txid.as_str()),
        "status lastSyncedTxid {:?} != handed-over {}",
        st.last_synced_txid,
        h.txid
    );

    handoffs.sort();
    eprintln!(
        "drain: {} hand-overs, {} rows, 0 lost; hand-off (SIGTERM → successor's first commit) p50 {:?} max {:?}",
        handoffs.len(), rows.len(), handoffs[handoffs.len() / 2], handoffs.last().unwrap()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}

/// (id, committed at) as a writer with SQLITE_KUBE_DEMO_TIMESTAMPS=1 printed them.
fn commit_times(p: &LocalPod) -> Vec<(i64, std::time::SystemTime)> {
    p.containers[0]
        .output()
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ms: u64 = f.get(2)?.parse().ok()?;
            Some((
                f[0].parse().ok()?,
                std::time::UNIX_EPOCH + Duration::from_millis(ms),
            ))
        })
        .collect()
}

fn status(p: &LocalPod, db: &str) -> Result<serde_json::Value> {
    let f = p.volumes["sqlite-kube-data"].join(format!("{db}.db-status.json"));
    Ok(serde_json::from_str(
        &std::fs::read_to_string(&f)
            .with_context(|| format!("{}: {}", f.display(), tail(&p.containers[0].stderr())))?,
    )?)
}

/// What a RollingUpdate does: the successor starts while the writer still writes. It
/// opens at once as a standby (reads served, its writes wait in SQLite's busy handler),
/// and when the writer drains it takes over: its first write goes through without an
/// error reaching the app, and nothing either pod acknowledged is missing. The app sets
/// `journal_mode=WAL` at start, as most apps do: the writer runs in WAL mode, the standby
/// in rollback mode (its pragma answers `delete`), and after taking over it is in WAL mode.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_writer_serves_reads_then_takes_over_without_an_error() -> Result<()> {
    let Some(f) = Fixture::start("standby").await? else {
        return Ok(());
    };
    let url = f.s3_database("shelf", serde_json::from_str(SPEC)?).await?;
    let env = json!([
        {"name": "SQLITE_KUBE_DEMO_TIMESTAMPS", "value": "1"},
        {"name": "SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS", "value": "20000"},
        {"name": "SQLITE_KUBE_DEMO_JOURNAL_MODE", "value": "WAL"}
    ]);
    let mut a = f
        .start_pod("shelf-a", "shelf", "write", env.clone())
        .await?;
    wait_ids(&a, 20, 30).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut b = f.start_pod("shelf-b", "shelf", "write", env).await?;
    // B opens while A holds the lease, reads A's published rows, and writes nothing.
    let end = Instant::now() + Duration::from_secs(20);
    let opened = loop {
        let err = b.containers[0].stderr();
        if let Some(l) = err
            .lines()
            .find(|l| l.contains("opened") && l.contains("rows"))
        {
            break l.to_string();
        }
        ensure!(
            Instant::now() < end,
            "the standby did not open while the writer held the lease:\n{}",
            tail(&err)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let read: i64 = opened
        .rsplit(", ")
        .next()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no row count in {opened:?}"))?;
    ensure!(
        read >= 20,
        "the standby read {read} rows; the writer had published at least 20"
    );
    e2e::wait_for(10, "the standby's status", || {
        let s = status(&b, "shelf").ok();
        async move { s.filter(|s| s["role"] == "standby") }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        ids(&b).is_empty(),
        "the standby wrote while A held the lease"
    );

    // A drains (SIGTERM), B takes over; its pending write goes through.
    a.delete();
    ensure!(
        a.app().exited().is_some_and(|c| c.success()),
        "A did not drain cleanly:\n{}",
        tail(&a.containers[0].stderr())
    );
    wait_ids(&b, 10, 30).await?;
    let b_err = b.containers[0].stderr();
    ensure!(
        !b_err.contains("write failed"),
        "an error reached the app while it waited for the lease:\n{}",
        tail(&b_err)
    );
    ensure!(
        status(&b, "shelf")?["role"] == "writer",
        "B does not report itself as the writer"
    );
    ensure!(
        a.containers[0].stderr().contains("journal_mode=wal"),
        "A did not run in WAL mode:\n{}",
        tail(&a.containers[0].stderr())
    );
    ensure!(
        b_err.contains("journal_mode=delete"),
        "the standby's journal_mode=WAL did not answer delete:\n{}",
        tail(&b_err)
    );
    if let Err(e) = e2e::wait_for(10, "B in WAL mode after taking over", || {
        let s = status(&b, "shelf").ok();
        async move { s.filter(|s| s["journal"] == "wal") }
    })
    .await
    {
        anyhow::bail!(
            "{e}: status {}\n{}",
            status(&b, "shelf")?,
            tail(&b.containers[0].stderr())
        );
    }
    let last_a = commit_times(&a)
        .iter()
        .map(|c| c.1)
        .max()
        .context("A's commits")?;
    let first_b = commit_times(&b)
        .iter()
        .map(|c| c.1)
        .min()
        .context("B's commits")?;
    let pause = first_b.duration_since(last_a).unwrap_or_default();

    b.delete();
    ensure!(
        b.app().exited().is_some_and(|c| c.success()),
        "B did not drain cleanly"
    );
    let acked: BTreeSet<i64> = ids(&a).into_iter().chain(ids(&b)).collect();
    let (integrity, rows) =
        f.litestream_rows(&url, &f.work.path().join(testkit::unique("restore")))?;
    ensure!(integrity == "ok", "integrity_check: {integrity}");
    let lost: Vec<_> = acked.difference(&rows).take(10).collect();
    ensure!(lost.is_empty(), "acknowledged rows missing: {lost:?}");
    eprintln!(
        "standby: read {read} rows while waiting; write pause at the hand-over {pause:?}; {} rows acknowledged, 0 lost",
        acked.len()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}
