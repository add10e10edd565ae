//! Differential test: seeded random sequences of statements — writes of every kind,
//! explicit transactions that commit or roll back, savepoints, checkpoints of every mode,
//! journal-mode switches, VACUUM, index changes, a second connection that reads (and in WAL
//! mode holds a snapshot across writes) — run on local SQLite and through the VFS. Every
//! statement must give the same answer (or the same error code) on both, the rows must be
//! equal after every step, after a reopen, for a fresh reader of the replica at each reopen,
//! and in what `litestream restore` gives.
//!
//! `SQLITE_KUBE_DIFF_SEEDS` (default 30) and `SQLITE_KUBE_DIFF_STEPS` (default 150) bound it;
//! a failure names the seed and step and prints the statements so far.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use testkit::{litestream, sqlite};

/// One database, opened twice: the writer `a` and a second connection `b`.
struct Side {
    a: Connection,
    b: Connection,
}

impl Side {
    fn open(db: &Path, url: Option<&str>, setup: &[String]) -> Side {
        let open = || {
            let c = match url {
                Some(u) => open_vfs(db, u, true),
                None => Connection::open(db).unwrap(),
            };
            c.busy_timeout(Duration::ZERO).unwrap();
            c
        };
        let a = open();
        for s in setup {
            let _ = answer(&a, s);
        }
        let b = open();
        Side { a, b }
    }
}

/// What a statement answered: its rows as text, or the error's code.
fn answer(c: &Connection, sql: &str) -> Result<Vec<String>, String> {
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut st = c.prepare(sql)?;
        let n = st.column_count();
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let cols: Vec<String> = (0..n)
                .map(|i| match r.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => String::from_utf8_lossy(t).into(),
                    Ok(v) => format!("{v:?}"),
                    Err(e) => format!("<{e}>"),
                })
                .collect();
            out.push(cols.join("|"));
        }
        Ok(out)
    };
    run().map_err(|e| match e.sqlite_error_code() {
        Some(code) => format!("{code:?}"),
        None => e.to_string(),
    })
}

/// A statement and which connection runs it; `compare` is false where only success or
/// failure must agree (checkpoint counters depend on frame layout details).
struct Step {
    on_b: bool,
    sql: String,
    compare: bool,
}

fn step(on_b: bool, sql: impl Into<String>) -> Step {
    Step {
        on_b,
        sql: sql.into(),
        compare: true,
    }
}

/// The next random statement (or a few, for a transaction).
fn next_steps(rng: &mut StdRng, b_in_txn: bool) -> Vec<Step> {
    // Deterministic content (SQLite's random() would differ between the two sides).
    let row = |rng: &mut StdRng| {
        let n: i64 = rng.random_range(0..1000);
        let len: usize = rng.random_range(0..1500);
        let text: String = (0..len / 4)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        format!("({n}, '{n}-{text}', zeroblob({len}))")
    };
    let write = |rng: &mut StdRng| -> String {
        match rng.random_range(0..6) {
            0 | 1 => {
                let k = rng.random_range(1..20);
                let rows: Vec<String> = (0..k).map(|_| row(rng)).collect();
                format!("INSERT INTO t(n, v, pad) VALUES {}", rows.join(","))
            }
            2 => format!(
                "INSERT INTO t(n, v, pad) SELECT n + 1, v || 'x', pad FROM t WHERE n % {} = 0 LIMIT 200",
                rng.random_range(3..30)
            ),
            3 => format!(
                "UPDATE t SET v = v || '{}', pad = zeroblob({}) WHERE n % {} = {}",
                rng.random_range(0..9),
                rng.random_range(0..3000),
                rng.random_range(2..9),
                rng.random_range(0..2)
            ),
            4 => format!(
                "DELETE FROM t WHERE n % {} = {}",
                rng.random_range(3..12),
                rng.random_range(0..3)
            ),
            _ => format!(
                "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY n, id LIMIT {})",
                rng.random_range(0..30)
            ),
        }
    };
    match rng.random_range(0..120) {
        0..=39 => vec![step(false, write(rng))],
        40..=49 => {
            let mut v = vec![step(false, "BEGIN")];
            for _ in 0..rng.random_range(1..6) {
                v.push(step(false, write(rng)));
            }
            v.push(step(
                false,
                if rng.random_bool(0.7) {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                },
            ));
            v
        }
        50..=54 => {
            let mut v = vec![step(false, "SAVEPOINT s1"), step(false, write(rng))];
            v.push(step(false, "SAVEPOINT s2"));
            v.push(step(false, write(rng)));
            v.push(step(false, "ROLLBACK TO s2"));
            v.push(step(false, write(rng)));
            v.push(step(
                false,
                if rng.random_bool(0.5) {
                    "RELEASE s1"
                } else {
                    "ROLLBACK TO s1"
                },
            ));
            v.push(step(false, "RELEASE s1"));
            v
        }
        55..=64 => {
            let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][rng.random_range(0..4)];
            vec![Step {
                on_b: false,
                sql: format!("PRAGMA wal_checkpoint({mode})"),
                compare: false,
            }]
        }
        65..=69 => {
            let mode = ["WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY"][rng.random_range(0..5)];
            vec![step(false, format!("PRAGMA journal_mode={mode}"))]
        }
        70..=71 => vec![step(false, "VACUUM")],
        72..=74 => vec![step(
            false,
            if rng.random_bool(0.5) {
                "CREATE INDEX IF NOT EXISTS t_v ON t(v)"
            } else {
                "DROP INDEX IF EXISTS t_v"
            },
        )],
        75..=76 => vec![step(false, "PRAGMA incremental_vacuum(20)")],
        77..=84 => vec![step(
            true,
            "SELECT count(*), sum(n), sum(length(pad)) FROM t",
        )],
        85..=89 if !b_in_txn => vec![
            step(true, "BEGIN"),
            step(true, "SELECT count(*), sum(n) FROM t"),
        ],
        85..=89 => vec![
            step(true, "SELECT count(*), sum(n) FROM t"),
            step(true, "COMMIT"),
        ],
        90..=93 => vec![
            step(
                false,
                format!("PRAGMA user_version={}", rng.random_range(0..1_000_000)),
            ),
            step(true, "PRAGMA user_version"),
        ],
        94..=97 => vec![step(
            false,
            match rng.random_range(0..3) {
                0 => "CREATE TABLE IF NOT EXISTS u(x BLOB)".to_string(),
                1 => format!(
                    "INSERT INTO u SELECT zeroblob({}) FROM t LIMIT {}",
                    rng.random_range(0..5000),
                    rng.random_range(0..50)
                ),
                _ => "DROP TABLE IF EXISTS u".to_string(),
            },
        )],
        // The second connection writes too (BUSY, or BUSY_SNAPSHOT after an old read, alike).
        98..=101 => vec![step(true, write(rng))],
        102..=104 => vec![step(false, REOPEN)],
        105..=109 => vec![step(
            false,
            format!(
                "INSERT INTO t(n, v, pad) VALUES ({}, 'big', zeroblob({}))",
                rng.random_range(0..1000),
                rng.random_range(10_000..200_000)
            ),
        )],
        _ => vec![step(false, "PRAGMA journal_mode")],
    }
}

/// Not SQL: close both connections on both sides (the VFS publishes at the last close)
/// and open them again.
const REOPEN: &str = "<reopen>";

fn check_rows(want: &Connection, got: &Connection, what: &str, log: &[String]) {
    for q in [
        "SELECT id, n, v, length(pad) FROM t ORDER BY id",
        "SELECT count(*), sum(length(x)) FROM u",
        "PRAGMA user_version",
    ] {
        let (w, g) = (answer(want, q), answer(got, q));
        assert!(
            w == g,
            "{what}: `{q}` differs ({} rows local, {} through the VFS)\n{}",
            w.as_ref().map_or(0, Vec::len),
            g.as_ref().map_or(0, Vec::len),
            log.join("\n")
        );
    }
}

/// A plain connection to the local database (between the sides' lives).
fn la_of(db: &Path) -> Connection {
    Connection::open(db).unwrap()
}

fn run_seed(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_url(dir.path());
    let mut rng = StdRng::seed_from_u64(seed);
    // Per seed: page size, auto-vacuum, locking mode, cache size, synchronous.
    let page_size = [1024, 4096, 8192][rng.random_range(0..3)];
    let auto_vacuum = ["NONE", "FULL", "INCREMENTAL"][rng.random_range(0..3)];
    let exclusive = rng.random_bool(0.25);
    let mut setup = vec![
        format!("PRAGMA page_size={page_size}"),
        format!("PRAGMA auto_vacuum={auto_vacuum}"),
        format!(
            "PRAGMA cache_size={}",
            [5, 50, 2000][rng.random_range(0..3)]
        ),
        format!(
            "PRAGMA synchronous={}",
            ["OFF", "NORMAL", "FULL"][rng.random_range(0..3)]
        ),
    ];
    if exclusive {
        setup.push("PRAGMA locking_mode=EXCLUSIVE".into());
    }
    setup.push(format!(
        "PRAGMA journal_mode={}",
        if rng.random_bool(0.6) {
            "WAL"
        } else {
            "DELETE"
        }
    ));
    setup.push(
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, v TEXT NOT NULL, pad BLOB)"
            .into(),
    );
    let local_db = dir.path().join("local.db");
    let mut local = Side::open(&local_db, None, &setup);
    let vfs_db = dir.path().join("app.db");
    let mut ours = Side::open(&vfs_db, Some(&url), &setup);
    let mut log: Vec<String> = setup.iter().map(|s| format!("-- setup: {s}")).collect();
    log.insert(0, format!("seed {seed}: exclusive={exclusive}"));
    let mut b_in_txn = false;
    for i in 0..steps {
        for s in next_steps(&mut rng, b_in_txn) {
            // With an exclusive lock the second connection can do nothing: skip it.
            if s.on_b && exclusive {
                continue;
            }
            if s.sql == REOPEN {
                log.push(format!("{i}: {REOPEN}"));
                drop(local);
                drop(ours);
                // Everything was published at the close: a reader of the replica (another
                // database file, write_enabled=false) sees exactly the local rows.
                let reader = open_vfs(&dir.path().join(format!("reader-{i}.db")), &url, false);
                check_rows(
                    &la_of(&local_db),
                    &reader,
                    &format!("seed {seed} step {i} reader"),
                    &log,
                );
                drop(reader);
                local = Side::open(&local_db, None, &setup);
                ours = Side::open(&vfs_db, Some(&url), &setup);
                b_in_txn = false;
                continue;
            }
            let (lc, oc) = if s.on_b {
                (&local.b, &ours.b)
            } else {
                (&local.a, &ours.a)
            };
            let (w, g) = (answer(lc, &s.sql), answer(oc, &s.sql));
            log.push(format!(
                "{i}: {}{} -> {w:?}",
                if s.on_b { "[b] " } else { "" },
                s.sql
            ));
            if s.on_b && s.sql == "BEGIN" && w.is_ok() {
                b_in_txn = true;
            }
            if s.on_b && s.sql == "COMMIT" {
                b_in_txn = false;
            }
            let same = if s.compare {
                w == g
            } else {
                w.is_ok() == g.is_ok() && (w.is_ok() || w == g)
            };
            assert!(
                same,
                "seed {seed} step {i}: `{}` answered {w:?} locally, {g:?} through the VFS\n{}",
                s.sql,
                log.join("\n")
            );
        }
        if !b_in_txn {
            check_rows(&local.a, &ours.a, &format!("seed {seed} step {i}"), &log);
        }
    }
    let _ = answer(&ours.b, "COMMIT");
    let _ = answer(&local.b, "COMMIT");
    let _ = answer(&ours.a, "COMMIT");
    let _ = answer(&local.a, "COMMIT");
    let ok = answer(&ours.a, "PRAGMA integrity_check");
    assert_eq!(ok, Ok(vec!["ok".to_string()]), "seed {seed}");
    let Side { a: la, b: lb } = local;
    drop(lb);
    drop(ours);
    // Reopened through the VFS (the buffer published at close), and restored by litestream.
    let again = open_vfs(&vfs_db, &url, true);
    check_rows(&la, &again, &format!("seed {seed} after reopen"), &log);
    drop(again);
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    assert_eq!(sqlite::integrity(&out), "ok", "seed {seed}");
    check_rows(
        &la,
        &Connection::open(&out).unwrap(),
        &format!("seed {seed} litestream restore"),
        &log,
    );
}

#[test]
fn random_statements_match_local_sqlite() {
    let seeds: u64 = std::env::var("SQLITE_KUBE_DIFF_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let steps: usize = std::env::var("SQLITE_KUBE_DIFF_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let first: u64 = std::env::var("SQLITE_KUBE_DIFF_FIRST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in first..first + seeds {
        run_seed(seed, steps);
    }
    eprintln!("differential: {seeds} seeds x {steps} steps equal to local SQLite and restored");
}
