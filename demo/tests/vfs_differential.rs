//! Differential test: seeded random sequences of statements — writes of every kind,
//! explicit transactions that commit or roll back, savepoints, checkpoints of every mode,
//! journal-mode switches, VACUUM, index changes, a second connection that reads (and in WAL
//! mode holds a snapshot across writes) — run on local SQLite and through the VFS. Every
//! statement must give the same answer (or the same error code) on both, the rows must be
//! equal after every step, after a reopen, for a fresh reader of the replica at each reopen,
//! and in what `litestream restore` and our restore give (byte-identical to each other).
//!
//! `SQLITE_KUBE_DIFF_SEEDS` (default 30) and `SQLITE_KUBE_DIFF_STEPS` (default 150) bound it;
//! a failure names the seed and step and prints the statements so far.

mod common;

use std::path::Path;
use std::time::Duration;

use common::statements::*;
use common::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rusqlite::Connection;
use testkit::sqlite;

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

/// A plain connection to the local database (between the sides' lives).
fn la_of(db: &Path) -> Connection {
    Connection::open(db).unwrap()
}

/// Runs one seed; returns how often local SQLite (the reference) broke down itself.
fn run_seed(seed: u64, steps: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_url(dir.path());
    let mut rng = StdRng::seed_from_u64(seed);
    let (setup, exclusive) = setup(&mut rng, &["OFF", "NORMAL", "FULL"]);
    let local_db = dir.path().join("local.db");
    let mut local = Side::open(&local_db, None, &setup);
    let vfs_db = dir.path().join("app.db");
    let mut ours = Side::open(&vfs_db, Some(&url), &setup);
    let mut log: Vec<String> = setup.iter().map(|s| format!("-- setup: {s}")).collect();
    log.insert(0, format!("seed {seed}: exclusive={exclusive}"));
    let mut b_in_txn = false;
    let mut local_broke = 0;
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
            // SQLite's own unix VFS sometimes reports a malformed database after a rollback
            // under an exclusive lock (seed 497, SQLite 3.54.1); a reopen shows the data
            // intact. The reference is then the reopened file.
            if answer(&local.a, STATE[0]) == Err("DatabaseCorrupt".to_string()) {
                eprintln!("seed {seed} step {i}: local SQLite reports corruption; reopened as the reference");
                log.push(format!("{i}: <local SQLite reported corruption; reopened>"));
                local_broke += 1;
                drop(local);
                local = Side::open(&local_db, None, &setup);
            }
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
    let out = restore_both(&url, &dir.path().join("restored.db"));
    assert_eq!(sqlite::integrity(&out), "ok", "seed {seed}");
    check_rows(
        &la,
        &Connection::open(&out).unwrap(),
        &format!("seed {seed} litestream restore"),
        &log,
    );
    local_broke
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
    // Seeds that found defects (with this generator): 126 grew the database without
    // writing its new free pages (the LTX file lacked them; neither restore could apply
    // it), 254 rolled back over a journal whose zeroed header left the previous
    // transaction's records behind (exclusive locking, journal_mode=MEMORY); in 497 local
    // SQLite itself reports corruption after a rollback under an exclusive lock, and the
    // VFS must still agree with the reopened file.
    let mut broke = 0;
    for seed in [126, 254, 497] {
        broke += run_seed(seed, 200);
    }
    for seed in first..first + seeds {
        broke += run_seed(seed, steps);
    }
    eprintln!(
        "differential: {seeds} seeds x {steps} steps equal to local SQLite and restored (local SQLite itself reported corruption {broke} times; reopened)"
    );
}
