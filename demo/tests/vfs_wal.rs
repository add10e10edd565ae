//! WAL journal mode through the VFS: `PRAGMA journal_mode=WAL` gives WAL semantics
//! (readers keep their snapshot and do not block the writer, connections of one process
//! share the database), the results equal local SQLite's, the replica restores exactly with
//! the real `litestream restore`, and kill -9 during checkpoints loses no acknowledged
//! commit.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;
use rusqlite::Connection;
use testkit::{litestream, sqlite};

/// Opens connections to one database: through the VFS (`Some(replica url)`) or local.
#[derive(Clone)]
struct Target {
    db: std::path::PathBuf,
    url: Option<String>,
}

impl Target {
    /// `<dir>/app.db` through the VFS, replicated to [`replica_url`]`(dir)`.
    fn vfs(dir: &Path) -> Target {
        Target {
            db: dir.join("app.db"),
            url: Some(replica_url(dir)),
        }
    }

    fn open(&self) -> Connection {
        let c = match &self.url {
            Some(url) => open_vfs(&self.db, url, true),
            None => Connection::open(&self.db).unwrap(),
        };
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }
}

fn count(c: &Connection) -> i64 {
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

/// The same single-threaded story on local SQLite and through the VFS; returns the final
/// rows and what the reader saw at each step.
fn story(t: &Target) -> (Vec<(i64, String, i64)>, Vec<i64>) {
    let w = t.open();
    let mode: String = w
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "journal_mode=WAL refused");
    w.execute_batch(
        "PRAGMA wal_autocheckpoint=20; PRAGMA cache_size=10;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);
         CREATE INDEX t_n ON t(n);",
    )
    .unwrap();
    let insert = |c: &Connection, from: i64, to: i64| {
        c.execute(
            "WITH RECURSIVE s(value) AS (SELECT ?1 UNION ALL SELECT value + 1 FROM s WHERE value < ?2) \
             INSERT INTO t(v, n) SELECT printf('%d %s', value, hex(zeroblob(value % 300))), value FROM s",
            [from, to],
        )
        .unwrap();
    };
    insert(&w, 1, 500);
    let mut seen = Vec::new();
    // A reader keeps its snapshot while the writer commits (and checkpoints) past it.
    let r = t.open();
    r.execute_batch("BEGIN").unwrap();
    seen.push(count(&r));
    for i in 0..20 {
        insert(&w, 1000 + i * 100, 1000 + i * 100 + 49);
        seen.push(count(&r));
    }
    w.execute_batch("UPDATE t SET n = n + 1 WHERE id % 7 = 0; DELETE FROM t WHERE id % 11 = 0")
        .unwrap();
    seen.push(count(&r));
    r.execute_batch("COMMIT").unwrap();
    seen.push(count(&r));
    // A long write transaction spills pages into the WAL before it commits (cache of 10
    // pages); the reader sees none of it until the commit, then all of it.
    w.execute_batch("BEGIN").unwrap();
    insert(&w, 10_000, 14_999);
    seen.push(count(&r));
    w.execute_batch("COMMIT").unwrap();
    seen.push(count(&r));
    // A rolled-back transaction that spilled leaves nothing.
    w.execute_batch("BEGIN").unwrap();
    insert(&w, 20_000, 23_000);
    w.execute_batch("DELETE FROM t WHERE id < 100").unwrap();
    w.execute_batch("ROLLBACK").unwrap();
    seen.push(count(&r));
    // Checkpoints of every kind, a shrinking database, writes after each.
    w.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    insert(&w, 30_000, 30_099);
    w.execute_batch("DELETE FROM t WHERE id % 2 = 0").unwrap();
    w.execute_batch("PRAGMA wal_checkpoint(RESTART)").unwrap();
    w.execute_batch("VACUUM").unwrap();
    seen.push(count(&r));
    insert(&w, 40_000, 40_009);
    w.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
    seen.push(count(&r));
    let ok: String = w
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let rows = dump(&w);
    drop(r);
    drop(w);
    (rows, seen)
}

#[test]
fn wal_mode_matches_local_sqlite_and_restores_with_litestream() {
    let dir = tempfile::tempdir().unwrap();
    let local = Target {
        db: dir.path().join("local.db"),
        url: None,
    };
    let url = replica_url(dir.path());
    let vfs = Target::vfs(dir.path());
    let (want, want_seen) = story(&local);
    let (got, got_seen) = story(&vfs);
    assert_eq!(got_seen, want_seen, "what the reader saw, step by step");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "rows differ from local SQLite");
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = format!("{}{suffix}", vfs.db.display());
        assert!(!Path::new(&p).exists(), "{p} exists on disk");
    }
    // Reopened (the buffer published at close): still WAL mode, same rows.
    let c = vfs.open();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "the database stays in WAL mode");
    assert!(dump(&c) == want);
    drop(c);
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    assert_eq!(sqlite::integrity(&out), "ok");
    let r = Connection::open(&out).unwrap();
    assert!(
        dump(&r) == want,
        "litestream restore differs from local SQLite"
    );
    let mode: String = r
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    eprintln!(
        "WAL mode: {} rows equal to local SQLite, reader snapshots {:?}",
        want.len(),
        got_seen
    );
}

/// Readers in four threads during a long write and many small ones: every snapshot is a
/// committed state (rows come in pairs n and -n, so any snapshot sums to 0 and has an even
/// count), no reader waits for the writer, and the writer never waits for readers.
#[test]
fn readers_in_threads_see_only_committed_snapshots_and_never_block_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_url(dir.path());
    let t = Target::vfs(dir.path());
    let w = t.open();
    w.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=50; PRAGMA cache_size=20;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL)",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let r = t.open();
                // A reader never waits: a busy handler would hide a block.
                r.busy_timeout(Duration::ZERO).unwrap();
                let mut snapshots = 0u64;
                let mut max_count = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let (n, sum): (i64, i64) = r
                        .query_row("SELECT count(*), coalesce(sum(n), 0) FROM t", [], |x| {
                            Ok((x.get(0)?, x.get(1)?))
                        })
                        .expect("a reader failed (blocked by the writer?)");
                    assert_eq!(sum, 0, "a snapshot with half a transaction");
                    assert_eq!(n % 2, 0);
                    max_count = max_count.max(n);
                    snapshots += 1;
                }
                (snapshots, max_count)
            })
        })
        .collect();
    let pair = |c: &Connection, k: i64| {
        c.execute(
            "INSERT INTO t(v, n) VALUES (printf('%d %s', ?1, hex(zeroblob(?1 % 200))), ?1), ('-', -?1)",
            [k],
        )
        .unwrap();
    };
    let started = Instant::now();
    let mut k = 1i64;
    for _ in 0..200 {
        pair(&w, k);
        k += 1;
    }
    // The long one: 20,000 rows in one transaction, spilling into the WAL.
    w.execute_batch("BEGIN").unwrap();
    for _ in 0..10_000 {
        pair(&w, k);
        k += 1;
    }
    w.execute_batch("COMMIT").unwrap();
    for _ in 0..200 {
        pair(&w, k);
        k += 1;
    }
    let write_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        let (snapshots, max_count) = r.join().expect("reader thread");
        assert!(snapshots > 0);
        assert!(max_count <= 2 * (k - 1));
        total += snapshots;
    }
    assert_eq!(count(&w), 2 * (k - 1));
    drop(w);
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    assert_eq!(sqlite::integrity(&out), "ok");
    let r = Connection::open(&out).unwrap();
    let (n, sum): (i64, i64) = r
        .query_row("SELECT count(*), sum(n) FROM t", [], |x| {
            Ok((x.get(0)?, x.get(1)?))
        })
        .unwrap();
    assert_eq!((n, sum), (2 * (k - 1), 0));
    eprintln!(
        "4 reader threads: {total} snapshots while {} rows were written in {write_time:?}",
        2 * (k - 1)
    );
}

/// `sqlitekube-demo count` as a writer in WAL mode: reopens the database (replaying the
/// buffer), prints "rows max_id integrity".
fn count_process(db: &Path, url: &str) -> std::process::Output {
    std::process::Command::new(demo())
        .args(["count"])
        .arg(db)
        .arg(url)
        .env("LITESTREAM_WRITE_ENABLED", "true")
        .env("SQLITE_KUBE_DEMO_JOURNAL_MODE", "WAL")
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .output()
        .unwrap()
}

/// kill -9 of a WAL-mode writer that checkpoints after almost every commit, 50 rounds
/// (`SQLITE_KUBE_WAL_KILL9_ROUNDS`): every round reopens the database (replaying the
/// buffer) and passes integrity_check; no acknowledged commit is lost. Every third round
/// runs with `locking_mode=EXCLUSIVE` (the WAL index in heap memory).
#[test]
fn kill_9_during_checkpoints_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_url(dir.path());
    let db = dir.path().join("app.db");
    let rounds: usize = std::env::var("SQLITE_KUBE_WAL_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut rng = rand::rng();
    let mut committed = Vec::new();
    for run in 0..rounds {
        let level = if run % 2 == 0 { "NORMAL" } else { "FULL" };
        let locking = if run % 3 == 2 { "EXCLUSIVE" } else { "NORMAL" };
        let w = Writer::start(
            &db,
            &url,
            &[
                ("LITESTREAM_SYNC_INTERVAL", "200ms".into()),
                ("SQLITE_KUBE_DEMO_LOCKING_MODE", locking.into()),
                ("SQLITE_KUBE_DEMO_JOURNAL_MODE", "WAL".into()),
                ("SQLITE_KUBE_DEMO_WAL_AUTOCHECKPOINT", "2".into()),
                ("SQLITE_KUBE_DEMO_SYNCHRONOUS", level.into()),
            ],
        );
        let t = Instant::now();
        let want = rng.random_range(1..60);
        while w.committed() < want && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(1));
        }
        w.signal(9);
        let (err, ids) = w.wait_killed();
        assert!(
            !ids.is_empty(),
            "run {run}: writer committed nothing: {err}"
        );
        committed.extend(ids);
        if run % 10 == 9 {
            let o = count_process(&db, &url);
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && out.trim_end().ends_with(" ok"),
                "run {run}: reopen after kill -9: {out} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let n: usize = out.split_whitespace().next().unwrap().parse().unwrap();
            assert!(
                n >= committed.len(),
                "run {run}: {n} rows, {} acknowledged",
                committed.len()
            );
        }
    }
    let o = count_process(&db, &url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    assert_eq!(sqlite::integrity(&out), "ok");
    let mode: String = Connection::open(&out)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "the writers ran in WAL mode");
    let restored = ids_in(&out);
    let missing: Vec<_> = committed.iter().filter(|i| !restored.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged ids lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!(
        "WAL kill -9: {rounds} rounds, {} acknowledged commits, 0 lost",
        committed.len()
    );
}

/// A reader process (`write_enabled=false`) of a replica written in WAL mode follows it in
/// rollback mode: its `PRAGMA journal_mode=WAL` (which apps run at start) answers `delete`
/// instead of failing, and it reads every row.
#[test]
fn a_reader_of_a_wal_replica_stays_in_rollback_mode() {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_url(dir.path());
    let t = Target::vfs(dir.path());
    let w = t.open();
    w.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);
         INSERT INTO t(v, n) VALUES ('a', 1), ('b', 2), ('c', 3);",
    )
    .unwrap();
    drop(w);
    sqlite_kube_vfs::shutdown_all();
    let o = std::process::Command::new("sqlite3")
        .arg(":memory:")
        .arg(format!(".load {}", extension().display()))
        .arg(format!(
            ".open file:{}?vfs=sqlitekube&replica_url={url}&write_enabled=false",
            dir.path().join("reader.db").display()
        ))
        .arg("PRAGMA journal_mode=WAL;")
        .arg("SELECT count(*), sum(n) FROM t;")
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .output()
        .expect("sqlite3 (scripts/test-deps.sh installs it)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["delete", "3|6"]);
}

/// `synchronous` in WAL mode as in local WAL: FULL fsyncs every commit (SQLite syncs the
/// WAL, which fsyncs the write buffer); NORMAL fsyncs nothing, not even at checkpoints
/// (they only change memory here; the commits are already in the buffer).
#[test]
fn wal_commits_are_fsynced_at_full_and_not_at_normal() {
    for (level, want_fsyncs) in [("NORMAL", false), ("FULL", true)] {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::vfs(dir.path());
        let c = t.open();
        c.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={level}; PRAGMA wal_autocheckpoint=5;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL)"
        ))
        .unwrap();
        let fsyncs = || {
            sqlite_kube_vfs::status(&t.db).expect("open")["buffer_fsyncs"]
                .as_u64()
                .unwrap()
        };
        let before = fsyncs();
        for i in 0..50 {
            c.execute("INSERT INTO t(v, n) VALUES ('x', ?1)", [i])
                .unwrap();
        }
        let st = sqlite_kube_vfs::status(&t.db).expect("open");
        let fsyncs = fsyncs() - before;
        assert_eq!(st["journal"], "wal");
        if want_fsyncs {
            assert!(fsyncs >= 50, "{level}: {fsyncs} fsyncs for 50 commits");
        } else {
            assert_eq!(fsyncs, 0, "{level}: commits and checkpoints fsynced");
        }
        drop(c);
    }
}

/// `locking_mode=EXCLUSIVE` before WAL: SQLite then keeps the WAL index in heap memory and
/// never calls the shared-memory methods. Same rows as local SQLite in the same mode, the
/// same after a reopen in normal mode, and `litestream restore` gives them too.
#[test]
fn exclusive_locking_wal_matches_local_sqlite_and_restores_with_litestream() {
    exclusive_locking_story("wal");
}

/// The same in rollback mode, where the exclusive lock is kept after the first write.
#[test]
fn exclusive_locking_rollback_matches_local_sqlite_and_restores_with_litestream() {
    exclusive_locking_story("delete");
}

fn exclusive_locking_story(journal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_url(dir.path());
    let run = |t: &Target| {
        let c = t.open();
        let lm: String = c
            .query_row("PRAGMA locking_mode=EXCLUSIVE", [], |r| r.get(0))
            .unwrap();
        assert_eq!(lm, "exclusive");
        let mode: String = c
            .query_row(&format!("PRAGMA journal_mode={journal}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, journal, "journal_mode refused");
        c.execute_batch(
            "PRAGMA wal_autocheckpoint=20; PRAGMA cache_size=10;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);",
        )
        .unwrap();
        let insert = |from: i64, to: i64| {
            c.execute(
                "WITH RECURSIVE s(value) AS (SELECT ?1 UNION ALL SELECT value + 1 FROM s WHERE value < ?2) \
                 INSERT INTO t(v, n) SELECT printf('%d %s', value, hex(zeroblob(value % 300))), value FROM s",
                [from, to],
            )
            .unwrap();
        };
        for i in 0..30 {
            insert(i * 100, i * 100 + 49);
        }
        c.execute_batch("BEGIN").unwrap();
        insert(10_000, 13_999);
        c.execute_batch("COMMIT; BEGIN").unwrap();
        insert(20_000, 22_000);
        c.execute_batch(
            "ROLLBACK; DELETE FROM t WHERE id % 3 = 0; PRAGMA wal_checkpoint(TRUNCATE)",
        )
        .unwrap();
        insert(30_000, 30_099);
        c.execute_batch("VACUUM").unwrap();
        insert(40_000, 40_009);
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        dump(&c)
    };
    let want = run(&Target {
        db: dir.path().join("local.db"),
        url: None,
    });
    let vfs = Target::vfs(dir.path());
    let got = run(&vfs);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "rows differ from local SQLite");
    let c = vfs.open();
    let again = dump(&c);
    assert!(
        again == want,
        "reopened in normal locking mode: {} rows, want {}",
        again.len(),
        want.len()
    );
    drop(c);
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    assert_eq!(sqlite::integrity(&out), "ok");
    assert!(
        dump(&Connection::open(&out).unwrap()) == want,
        "litestream restore differs from local SQLite"
    );
    eprintln!(
        "{journal} mode with locking_mode=EXCLUSIVE: {} rows equal to local SQLite and restored",
        want.len()
    );
}
