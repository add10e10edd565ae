//! The writer compacts L0 into L1, writes L9 snapshots and applies retention; the replica
//! stays restorable by the real litestream and readable by a fresh VFS process.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ltx::replica::Replica;
use testkit::{litestream, sqlite};

#[tokio::test(flavor = "multi_thread")]
async fn compaction_snapshots_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("r").display());
    let env = [
        ("LITESTREAM_SYNC_INTERVAL", "100ms".to_string()),
        ("SQLITE_KUBE_COMPACTION_INTERVAL", "400ms".to_string()),
        ("SQLITE_KUBE_SNAPSHOT_INTERVAL", "1500ms".to_string()),
        ("SQLITE_KUBE_L0_RETENTION", "500ms".to_string()),
        ("SQLITE_KUBE_SNAPSHOT_RETENTION", "1s".to_string()),
    ];
    let w = Writer::start(&dir.path().join("app.db"), &url, &env);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
    }
    w.signal(15);
    let (ok, err, ids) = w.wait();
    assert!(ok, "{err}");

    let replica = Replica::open(&url).unwrap();
    let files = replica.list_all().await.unwrap();
    let at = |l: u8| {
        files
            .iter()
            .filter(|f| f.key.level == l)
            .collect::<Vec<_>>()
    };
    let max = files.iter().map(|f| f.key.max_txid).max().unwrap();
    assert!(max > 20, "expected many syncs, got {max}");
    assert!(!at(1).is_empty(), "no L1 compaction: {files:?}");
    assert!(
        at(9).iter().any(|f| f.key.max_txid > 1),
        "no periodic snapshot beyond TXID 1: {files:?}"
    );
    assert!(
        (at(0).len() as u64) < max / 2,
        "L0 retention deleted too little: {} L0 files for {max} TXIDs",
        at(0).len()
    );
    assert!(
        at(9).len() <= 3,
        "snapshot retention kept {} snapshots",
        at(9).len()
    );

    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    assert_eq!(sqlite::integrity(&out), "ok");
    let restored = ids_in(&out);
    assert!(
        ids.iter().all(|id| restored.contains(id)),
        "committed rows missing after compaction"
    );

    // A fresh reader builds its page map from L9/L1/L0 and reads everything.
    let o = Command::new(demo())
        .args(["count"])
        .arg(dir.path().join("reader.db"))
        .arg(&url)
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        text.trim(),
        format!("{} {} ok", restored.len(), restored.iter().max().unwrap())
    );
}

/// A read-mode follower scans the whole table again and again while the writer publishes,
/// compacts L0 into L1 and retention deletes the L0 files the follower's page map points
/// at (a tiny cache keeps its reads going to the store). Every scan succeeds and is
/// consistent (a page of a newer TXID mixed into a scan is "database disk image is
/// malformed": the bug this test found), the rows it sees only grow, and it ends at exactly
/// what the writer committed. Retention (1 s) outlasts the follower's lag (it polls every
/// 100 ms), as `l0_retention` must outlast a reader's longest read transaction.
#[test]
fn follower_keeps_reading_while_retention_deletes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("r").display());
    let env = [
        ("LITESTREAM_SYNC_INTERVAL", "100ms".to_string()),
        ("SQLITE_KUBE_COMPACTION_INTERVAL", "300ms".to_string()),
        ("SQLITE_KUBE_SNAPSHOT_INTERVAL", "1s".to_string()),
        ("SQLITE_KUBE_L0_RETENTION", "1s".to_string()),
        ("SQLITE_KUBE_SNAPSHOT_RETENTION", "1s".to_string()),
    ];
    let w = Writer::start(&dir.path().join("app.db"), &url, &env);
    let t = Instant::now();
    // The follower starts on a published database (it has a table to scan).
    while w.committed() < 20 || !dir.path().join("r/ltx/0").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the writer published nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let follower = Command::new(demo())
        .args(["follow"])
        .arg(dir.path().join("follower.db"))
        .arg(&url)
        .arg("12")
        .env("LITESTREAM_LOG_LEVEL", "info")
        .env("LITESTREAM_POLL_INTERVAL", "100ms")
        .env("LITESTREAM_CACHE_SIZE", "64KiB")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    w.signal(15);
    let (ok, err, ids) = w.wait();
    assert!(ok, "{err}");
    let o = follower.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "a follower scan failed:\n{log}");
    let scans: Vec<(i64, i64)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: Vec<i64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (v[0], v[1])
        })
        .collect();
    assert!(scans.len() > 20, "only {} scans", scans.len());
    for w in scans.windows(2) {
        assert!(w[1].0 >= w[0].0, "the follower went back in time: {w:?}");
    }
    let (rows, max) = *scans.last().unwrap();
    assert_eq!(
        (rows, max),
        (ids.len() as i64, *ids.last().unwrap()),
        "the follower did not end at what the writer committed"
    );
    assert!(
        scans.first().unwrap().0 < rows,
        "the follower never saw the writer move on"
    );
    // Retention really removed files under the follower during the run.
    let reloads = log.matches("page's file is gone").count();
    assert!(
        reloads > 0,
        "no file was deleted under the follower; nothing was tested:\n{log}"
    );
    eprintln!(
        "follower: {} scans, {} rows at the end, {} page-map reloads after deleted files",
        scans.len(),
        rows,
        reloads
    );
}
