//! A replica written by our encoder (snapshot + incrementals) restores with the real
//! `litestream restore` 0.5.17, on a file replica and on SeaweedFS S3.

use std::path::Path;

use bytes::Bytes;
use ltx::replica::{LtxKey, Replica, SNAPSHOT_LEVEL};
use rusqlite::Connection;
use testkit::{litestream, seaweed::S3Server, sqlite};

/// Builds a history of `rounds` versions of a database (rollback journal, so the file is
/// the whole content), publishing version 1 as a snapshot at level 9 and every later one
/// as an incremental at L0. Returns the dump of every version.
async fn write_history(replica: &Replica, dir: &Path, rounds: u64) -> Vec<String> {
    let db = dir.join("src.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INT);").unwrap();
    let mut dumps = Vec::new();
    let prev = dir.join("prev.db");
    for txid in 1..=rounds {
        if txid > 1 {
            let tx = c.unchecked_transaction().unwrap();
            for i in 0..200 * txid {
                tx.execute(
                    "INSERT INTO t(v, n) VALUES (?1, ?2)",
                    (
                        format!("row {txid}/{i} {}", "x".repeat((i % 50) as usize)),
                        i as i64,
                    ),
                )
                .unwrap();
            }
            if txid == rounds {
                // The last version shrinks the database: deletes + VACUUM.
                tx.execute("DELETE FROM t WHERE n % 3 = 0", []).unwrap();
            }
            tx.commit().unwrap();
            if txid == rounds {
                c.execute_batch("VACUUM").unwrap();
            }
        }
        let ts = 1_700_000_000_000 + txid as i64 * 1000;
        let mut buf = Vec::new();
        let key = if txid == 1 {
            ltx::dbfile::encode_db(&db, 1, 1, ts, &mut buf).unwrap();
            LtxKey::new(SNAPSHOT_LEVEL, 1, 1)
        } else {
            ltx::dbfile::encode_db_diff(&prev, &db, txid, txid, ts, &mut buf)
                .unwrap()
                .expect("changed");
            LtxKey::new(0, txid, txid)
        };
        replica
            .write(&key, Bytes::from(buf), ts, true)
            .await
            .unwrap();
        std::fs::copy(&db, &prev).unwrap();
        dumps.push(sqlite::dump(&db));
    }
    dumps
}

async fn check(url: &str, env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(url).unwrap();
    let dumps = write_history(&replica, dir.path(), 5).await;
    assert!(replica.list_level(0).await.unwrap().len() == 4);

    let out = dir.path().join("latest.db");
    litestream::restore(url, &out, &[], env);
    assert_eq!(sqlite::integrity(&out), "ok");
    assert_eq!(
        sqlite::dump(&out),
        dumps[4],
        "latest restore differs from the source"
    );

    let out3 = dir.path().join("txid3.db");
    litestream::restore(url, &out3, &["-txid", "0000000000000003"], env);
    assert_eq!(sqlite::integrity(&out3), "ok");
    assert_eq!(
        sqlite::dump(&out3),
        dumps[2],
        "point-in-time restore at TXID 3 differs"
    );
}

#[tokio::test]
async fn litestream_restores_our_file_replica() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("replica").display());
    check(&url, &[]).await;
}

#[tokio::test]
async fn litestream_restores_our_s3_replica() {
    let s3 = S3Server::shared();
    s3.export_env();
    let url = s3.replica_url("dbs/app");
    check(&url, &s3.env()).await;
}
