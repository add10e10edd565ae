//! The rollback journal in memory and `PRAGMA synchronous`, in-process (rusqlite's
//! SQLite, the VFS registered as a library):
//! - rollbacks, savepoints and failed statements with pages spilled out of a tiny page
//!   cache give exactly what local SQLite gives, and no journal file ever appears on disk;
//! - `synchronous=NORMAL` commits are not fsynced, FULL ones are (status `buffer_fsyncs`).

mod common;

use std::path::Path;

use common::{dump, open_vfs};
use rusqlite::Connection;

/// The same workload on `c`; `journal` is the path a journal file would have, checked
/// while transactions are open.
fn workload(c: &Connection, journal: Option<&Path>) {
    let no_journal_file = || {
        if let Some(j) = journal {
            assert!(
                !j.exists(),
                "a journal file appeared on disk: {}",
                j.display()
            );
        }
    };
    // A tiny cache: big transactions spill pages into the database file mid-transaction,
    // so rollbacks must read the journal back.
    c.execute_batch(
        "PRAGMA cache_size=5;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INT UNIQUE);
         CREATE INDEX t_v ON t(v);
         BEGIN;
         WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM x WHERE i < 3000)
           INSERT INTO t(v, n) SELECT printf('row %d %s', i, hex(zeroblob(i % 90))), i FROM x;
         COMMIT;",
    )
    .unwrap();
    c.execute_batch(
        "BEGIN;
         UPDATE t SET v = v || ' updated' WHERE id % 3 = 0;
         SAVEPOINT a;
         DELETE FROM t WHERE id % 5 = 0;
         WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM x WHERE i < 800)
           INSERT INTO t(v, n) SELECT printf('savepoint row %d', i), 100000 + i FROM x;",
    )
    .unwrap();
    no_journal_file();
    c.execute_batch(
        "ROLLBACK TO a;
         UPDATE t SET n = n + 1000000 WHERE id < 700;
         RELEASE a;
         COMMIT;",
    )
    .unwrap();
    // A whole transaction rolled back after spilling.
    c.execute_batch(
        "BEGIN;
         DELETE FROM t WHERE id > 100;
         UPDATE t SET v = 'gone';",
    )
    .unwrap();
    no_journal_file();
    c.execute_batch("ROLLBACK").unwrap();
    // A failing statement (UNIQUE) rolls back only itself.
    c.execute_batch("BEGIN; INSERT INTO t(v, n) VALUES ('kept', 5000000);")
        .unwrap();
    let dup = c.execute(
        "INSERT INTO t(v, n) SELECT 'dup ' || id, 2000 FROM t WHERE id BETWEEN 1990 AND 2010",
        [],
    );
    assert!(dup.is_err(), "the UNIQUE violation must fail");
    c.execute_batch("COMMIT").unwrap();
}

#[test]
fn rollbacks_and_savepoints_match_local_sqlite_with_the_journal_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let local = Connection::open(dir.path().join("local.db")).unwrap();
    workload(&local, None);
    let want = dump(&local);
    assert!(want.len() > 2000);

    let url = format!("file://{}", dir.path().join("replica").display());
    let db = dir.path().join("vfs.db");
    let c = open_vfs(&db, &url, true);
    workload(&c, Some(&dir.path().join("vfs.db-journal")));
    assert_eq!(dump(&c), want, "through the VFS");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    drop(c);

    // What reached the replica is the same database.
    let again = open_vfs(&dir.path().join("fresh.db"), &url, false);
    assert_eq!(dump(&again), want, "read back from the replica");
    drop(again);
}

#[test]
fn synchronous_normal_commits_are_not_fsynced_full_ones_are() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("replica").display());
    let db = dir.path().join("sync.db");
    let c = open_vfs(&db, &url, true);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let fsyncs = || {
        sqlite_kube_vfs::status(&db).unwrap()["buffer_fsyncs"]
            .as_u64()
            .unwrap()
    };
    let insert = |n: usize| {
        for i in 0..n {
            c.execute("INSERT INTO t(v) VALUES (?1)", [format!("r{i}")])
                .unwrap();
        }
    };
    // SQLite's default is FULL: every commit fsynced.
    let before = fsyncs();
    insert(20);
    assert_eq!(
        fsyncs() - before,
        20,
        "FULL (default): one fsync per commit"
    );
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let before = fsyncs();
    insert(50);
    assert_eq!(fsyncs(), before, "NORMAL: no fsync per commit");
    c.pragma_update(None, "synchronous", 2).unwrap();
    let before = fsyncs();
    insert(10);
    assert_eq!(fsyncs() - before, 10, "FULL again");
    let rows: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 80);
    drop(c);
}
