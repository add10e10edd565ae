//! Several databases in one pod (`sqlitekube.dev/database: ledger, notes`): one app process
//! writes both through the VFS, each with its own replica, buffer, lease and status; a
//! second pod waits for both; draining the first hands both over; `litestream restore` of
//! each replica holds every row acknowledged for it, and only its own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use e2e::{Fixture, LocalPod};
use serde_json::json;

/// The ids `p` acknowledged for database `db` (the demo prints "name id").
fn acked(p: &LocalPod, db: &str) -> Vec<i64> {
    p.containers[0]
        .output()
        .iter()
        .filter_map(|l| {
            let (name, id) = l.split_once(' ')?;
            (name == db).then(|| id.trim().parse().ok()).flatten()
        })
        .collect()
}

async fn wait_rows(p: &LocalPod, db: &str, n: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    while acked(p, db).len() < n {
        ensure!(
            Instant::now() < end,
            "{} wrote {} rows to {db}:\n{}",
            p.name,
            acked(p, db).len(),
            p.containers[0].stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_databases_in_one_pod_replicate_and_hand_over_on_drain() -> Result<()> {
    let Some(f) = Fixture::start("several").await? else {
        return Ok(());
    };
    let spec =
        json!({"syncInterval": "1s", "writer": {"leaseDuration": "10s", "drainTimeout": "10s"}});
    let urls = [
        ("ledger", f.s3_database("ledger", spec.clone()).await?),
        ("notes", f.s3_database("notes", spec).await?),
    ];
    let mut a = f
        .start_pod("both-a", "ledger, notes", "write", json!([]))
        .await?;
    for (db, _) in &urls {
        wait_rows(&a, db, 20).await?;
    }
    // The operator sees both-a writing each database.
    for (db, _) in &urls {
        e2e::wait_for(30, &format!("both-a as the writer of {db}"), || {
            let f = &f;
            async move {
                let st = f.database(db).await.ok()?.status?;
                (st.writer.as_ref()?.pod == "both-a" && st.last_synced_txid.is_some()).then_some(())
            }
        })
        .await?;
    }
    // A second pod with the same databases waits for both leases.
    let mut b = f
        .start_pod(
            "both-b",
            "ledger, notes",
            "write",
            json!([{"name": "SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS", "value": "30000"}]),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (db, _) in &urls {
        ensure!(
            acked(&b, db).is_empty(),
            "both-b wrote {db} while both-a held it"
        );
    }

    // Drain both-a: both final syncs, both leases released; both-b takes both over.
    a.delete();
    ensure!(
        a.app().exited().is_some_and(|c| c.success()),
        "both-a did not drain:\n{}",
        a.containers[0].stderr()
    );
    for (db, _) in &urls {
        let h = e2e::wait_for(30, &format!("a complete hand-over of {db}"), || {
            let f = &f;
            async move {
                let st = f.database(db).await.ok()?.status?;
                st.last_handoff.filter(|h| h.from == "both-a")
            }
        })
        .await?;
        ensure!(
            h.complete,
            "{db}: the hand-over from both-a is incomplete: {h:?}"
        );
        wait_rows(&b, db, 10).await?;
    }
    b.delete();
    ensure!(
        b.app().exited().is_some_and(|c| c.success()),
        "both-b did not drain"
    );

    let mut summary = Vec::new();
    for (db, url) in &urls {
        let want: BTreeSet<i64> = acked(&a, db).into_iter().chain(acked(&b, db)).collect();
        let (integrity, rows) = f.litestream_rows(url, &f.work.path().join(testkit::unique(db)))?;
        ensure!(integrity == "ok", "{db}: integrity_check {integrity}");
        let lost: Vec<_> = want.difference(&rows).take(10).collect();
        ensure!(lost.is_empty(), "{db}: acknowledged rows lost: {lost:?}");
        summary.push(format!("{db} {} rows", want.len()));
    }
    // Each replica holds only its own database's rows (the demo writes the name as `v`).
    for (db, url) in &urls {
        let out = f.work.path().join(testkit::unique("own"));
        testkit::litestream::restore(url, &out, &[], &f.s3_env());
        let c = rusqlite::Connection::open(&out)?;
        let others: i64 =
            c.query_row("SELECT count(*) FROM t WHERE v != ?1", [db], |r| r.get(0))?;
        ensure!(
            others == 0,
            "{db}'s replica holds {others} rows of another database"
        );
    }
    eprintln!(
        "two databases in one pod: {}, both handed over on drain, 0 lost",
        summary.join(", ")
    );
    f.operator.unwrap().stop().await;
    Ok(())
}
