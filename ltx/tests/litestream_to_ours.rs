//! A database replicated by the real `litestream replicate` 0.5.17 restores through our
//! decoder to exactly the bytes `litestream restore` produces, for the latest state and a
//! point in time, on a file replica and on SeaweedFS S3.

use ltx::replica::Replica;
use ltx::restore::{restore, RestoreOptions, Target};
use rusqlite::Connection;
use testkit::{litestream, seaweed::S3Server, sqlite};

async fn check(url: &str, env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    let log = dir.path().join("litestream.log");
    let mut rep = litestream::Replicate::start(&db, url, env, &log);
    let replica = Replica::open(url).unwrap();
    // One L0 TXID per batch: each batch is written only once the previous one is listed,
    // whatever litestream's poll interval and the machine's load.
    let mut have = rep
        .wait_published(0, "the initial state", || async {
            replica.latest_txid().await.unwrap_or(0)
        })
        .await;
    for b in 0..4 {
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..300 {
            tx.execute(
                "INSERT INTO t(v) VALUES (?1)",
                [format!("batch {b} row {i} {}", "y".repeat(i % 80))],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        have = rep
            .wait_published(have, &format!("batch {b}"), || async {
                replica.latest_txid().await.unwrap_or(0)
            })
            .await;
    }
    drop(c);
    rep.stop();

    let files = replica.list_all().await.unwrap();
    assert!(
        files.iter().any(|f| f.key.level == 9),
        "litestream wrote no snapshot: {files:?}; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let max = files.iter().map(|f| f.key.max_txid).max().unwrap();
    assert!(
        max >= 4,
        "expected a multi-TXID history, got max TXID {max}"
    );

    // Latest: byte-identical to litestream's own restore, and the same content as the source.
    let theirs = dir.path().join("theirs.db");
    litestream::restore(url, &theirs, &[], env);
    let ours = dir.path().join("ours.db");
    let s = restore(&replica, &ours, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(s.txid(), max);
    // The database checksum, kept page by page during the apply (no read-back pass), is
    // the one of the file as written.
    let mut read_back = ltx::format::checksum::DbChecksum::EMPTY;
    let bytes = std::fs::read(&ours).unwrap();
    let ps = s.db.page_size as usize;
    let lock = ltx::format::lock_pgno(s.db.page_size);
    for (i, page) in bytes.chunks(ps).enumerate() {
        let pgno = i as u32 + 1;
        if pgno != lock {
            read_back.toggle(pgno, page);
        }
    }
    assert_eq!(
        s.db.checksum,
        read_back.value(),
        "the kept checksum is the file's"
    );
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap(),
        "our restore differs from litestream's"
    );
    assert_eq!(sqlite::integrity(&ours), "ok");
    assert_eq!(sqlite::dump(&ours), sqlite::dump(&db));

    // A point in the middle of the history.
    let mid = max / 2 + 1;
    let theirs_mid = dir.path().join("theirs-mid.db");
    litestream::restore(url, &theirs_mid, &["-txid", &format!("{mid:016x}")], env);
    let ours_mid = dir.path().join("ours-mid.db");
    let opts = RestoreOptions {
        target: Target::Txid(mid),
        ..Default::default()
    };
    let s = restore(&replica, &ours_mid, &opts).await.unwrap();
    assert_eq!(s.txid(), mid);
    assert_eq!(
        std::fs::read(&ours_mid).unwrap(),
        std::fs::read(&theirs_mid).unwrap()
    );
    assert_eq!(sqlite::integrity(&ours_mid), "ok");
}

#[tokio::test]
async fn restores_litestream_file_replica() {
    let dir = tempfile::tempdir().unwrap();
    check(
        &format!("file://{}", dir.path().join("replica").display()),
        &[],
    )
    .await;
}

#[tokio::test]
async fn restores_litestream_s3_replica() {
    let s3 = S3Server::shared();
    s3.export_env();
    check(&s3.replica_url("dbs/app"), &s3.env()).await;
}
