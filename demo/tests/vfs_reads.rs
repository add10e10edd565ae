//! Read path: a fresh process answers its first query from ranged reads before
//! hydration finishes, and once hydrated serves a full scan with zero object-store GETs.

mod common;

use std::process::Command;

use ltx::replica::{LtxKey, Replica, SNAPSHOT_LEVEL};
use testkit::seaweed::S3Server;

#[tokio::test(flavor = "multi_thread")]
async fn reads_before_and_after_hydration() {
    let s3 = S3Server::shared();
    s3.export_env();
    let url = s3.replica_url("vfs/reads");
    let dir = tempfile::tempdir().unwrap();
    // A ~256 MiB database published as one snapshot.
    let src = dir.path().join("src.db");
    let c = rusqlite::Connection::open(&src).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 262144)
         INSERT INTO t(v) SELECT printf('%d-%s', x, hex(randomblob(480))) FROM n;",
    )
    .unwrap();
    drop(c);
    assert!(std::fs::metadata(&src).unwrap().len() > 256_000_000);
    let snap = dir.path().join("snap.ltx");
    let w = std::io::BufWriter::new(std::fs::File::create(&snap).unwrap());
    ltx::dbfile::encode_db(&src, 1, 1, 1, w).unwrap();
    let replica = Replica::open(&url).unwrap();
    replica
        .write_file(&LtxKey::new(SNAPSHOT_LEVEL, 1, 1), &snap, 1, true)
        .await
        .unwrap();

    let mut cmd = Command::new(common::demo());
    cmd.args(["probe"]).arg(dir.path().join("app.db")).arg(&url);
    cmd.env("LITESTREAM_HYDRATION_ENABLED", "true")
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .env_remove("AWS_CA_BUNDLE");
    for (k, v) in s3.env() {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!("{v}");
    assert_eq!(v["found"], 1);
    assert!(v["value_len"].as_u64().unwrap() > 900);
    assert_ne!(
        v["hydration_at_first_query"], "Complete",
        "first query must not wait for hydration"
    );
    assert!(
        v["gets_at_first_query"].as_u64().unwrap() > 0,
        "first query must use ranged reads"
    );
    assert_eq!(v["hydration_after_wait"], "Complete");
    assert_eq!(
        v["gets_after_scan"], v["gets_after_hydration"],
        "a hydrated scan must not touch the object store"
    );
    assert!(dir.path().join("app.db-hydrated").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("app.db-hydrated.meta")).unwrap(),
        "1\n"
    );

    // A restart with the copy still on disk reuses it instead of downloading again.
    let o = cmd.env("LITESTREAM_LOG_LEVEL", "info").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("reusing the hydrated copy"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["gets_after_scan"], v["gets_after_hydration"]);
}
