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
