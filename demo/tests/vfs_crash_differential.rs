//! Crash differential: a writer process runs seeded random statements (the differential
//! test's generator: writes, transactions, savepoints, checkpoints, journal-mode switches,
//! VACUUM, schema changes) one at a time, acknowledging each, and is killed with SIGKILL
//! while one runs. Reopened through the VFS, the database must hold exactly what local
//! SQLite holds after the acknowledged statements — plus the one in flight, if it got that
//! far — with any open transaction rolled back; several rounds per seed, then
//! `litestream restore` gives the same. This is the durability contract ("none lost on a
//! process crash") over every kind of statement, not only inserts.
//!
//! `SQLITE_KUBE_CRASH_SEEDS` (default 8) bounds it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use common::statements::*;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use testkit::sqlite;

/// `sqlitekube-demo sql`: one statement per line in, one answer per line out.
struct SqlProcess {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl SqlProcess {
    fn start(db: &Path, url: &str, sync_interval: &str, log: &Path) -> SqlProcess {
        let mut child = Command::new(demo())
            .args(["sql"])
            .arg(db)
            .arg(url)
            .env_remove("AWS_CA_BUNDLE")
            .env("LITESTREAM_WRITE_ENABLED", "true")
            .env("LITESTREAM_SYNC_INTERVAL", sync_interval)
            .env("LITESTREAM_LOG_LEVEL", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        SqlProcess {
            child,
            stdin,
            answers,
        }
    }

    fn send(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Runs `sql` and waits for its answer.
    fn run(&mut self, sql: &str) -> String {
        self.send(sql);
        self.answers
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no answer to `{sql}`: {e}"))
    }

    /// SIGKILL; returns whether the statement in flight was answered before it.
    fn kill(mut self) -> bool {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.answers.recv_timeout(Duration::from_secs(5)).is_ok()
    }
}

/// Local SQLite after `history` (statement answers ignored), in a fresh file; any
/// transaction left open is rolled back, as a crash does.
fn model(dir: &Path, history: &[String], name: &str) -> Connection {
    let p = dir.join(name);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
    }
    let c = Connection::open(&p).unwrap();
    for s in history {
        let _ = answer(&c, s);
    }
    if !c.is_autocommit() {
        c.execute_batch("ROLLBACK").unwrap();
    }
    c
}

fn run_seed(seed: u64) -> (usize, [usize; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_url(dir.path());
    let db = dir.path().join("app.db");
    let mut rng = StdRng::seed_from_u64(seed);
    let (setup, _) = setup(&mut rng, &["NORMAL", "FULL"]);
    let sync_interval = ["100ms", "1s", "1h"][rng.random_range(0..3)];
    // What local SQLite replays: every statement the writer acknowledged, in order, with
    // a ROLLBACK where a kill left a transaction open.
    let mut history: Vec<String> = Vec::new();
    let mut log = vec![format!("seed {seed}: sync_interval={sync_interval}")];
    let mut acked = 0;
    // Kills whose statement in flight changed something: [lost with the crash, landed].
    let mut outcomes = [0usize; 2];
    for round in 0..4 {
        let mut w = SqlProcess::start(
            &db,
            &url,
            sync_interval,
            &dir.path().join(format!("writer-{round}.log")),
        );
        for s in &setup {
            w.run(s);
            history.push(s.clone());
        }
        let n = rng.random_range(5..40);
        let mut sent = 0;
        let in_flight = loop {
            let steps: Vec<String> = next_steps(&mut rng, false)
                .into_iter()
                .filter(|s| !s.on_b && s.sql != REOPEN)
                .map(|s| s.sql)
                .collect();
            let mut killed = None;
            for s in steps {
                sent += 1;
                if sent < n {
                    let a = w.run(&s);
                    log.push(format!("{round}: {s} -> {a}"));
                    history.push(s);
                    acked += 1;
                } else {
                    w.send(&s);
                    // Mostly while it runs (most statements take well under a millisecond).
                    let us = [0, 50, 200, 1000][rng.random_range(0..4)];
                    std::thread::sleep(Duration::from_micros(rng.random_range(0..=us)));
                    killed = Some(s);
                    break;
                }
            }
            if let Some(s) = killed {
                break s;
            }
        };
        let answered = w.kill();
        log.push(format!(
            "{round}: {in_flight} -> killed ({})",
            if answered { "answered" } else { "in flight" }
        ));
        // Reopened through the VFS (replaying the write buffer); closing publishes.
        let got = open_vfs(&db, &url, true);
        let ok = answer(&got, "PRAGMA integrity_check");
        assert_eq!(
            ok,
            Ok(vec!["ok".to_string()]),
            "seed {seed} round {round}: integrity after the kill\n{}",
            log.join("\n")
        );
        let mut with = history.clone();
        with.push(in_flight.clone());
        let (with_db, without_db) = (
            model(dir.path(), &with, "with.db"),
            model(dir.path(), &history, "without.db"),
        );
        let landed = same(&with_db, &got);
        let without = same(&without_db, &got);
        assert!(
            landed || (!answered && without),
            "seed {seed} round {round}: after the kill the database is neither the acknowledged state{} (log in {})\n{}",
            if answered { " (the statement in flight was acknowledged)" } else { " nor that plus the statement in flight" },
            dir.path().display(),
            log.join("\n")
        );
        if !same(&with_db, &without_db) {
            // The kill could tell: count where the statement in flight ended up.
            outcomes[landed as usize] += 1;
        }
        if landed {
            history.push(in_flight);
        }
        // The crash rolled back whatever transaction was open.
        history.push("ROLLBACK".into());
        drop(got);
    }
    let want = model(dir.path(), &history, "final.db");
    let out = restore_both(&url, &dir.path().join("restored.db"));
    assert_eq!(sqlite::integrity(&out), "ok", "seed {seed}");
    assert!(
        same(&want, &Connection::open(&out).unwrap()),
        "seed {seed}: litestream restore differs from the acknowledged state\n{}",
        log.join("\n")
    );
    (acked, outcomes)
}

#[test]
fn sigkill_during_random_statements_loses_nothing_acknowledged() {
    let seeds: u64 = std::env::var("SQLITE_KUBE_CRASH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let first: u64 = std::env::var("SQLITE_KUBE_CRASH_FIRST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (mut acked, mut outcomes) = (0, [0usize; 2]);
    for seed in first..first + seeds {
        let (a, o) = run_seed(seed);
        acked += a;
        outcomes[0] += o[0];
        outcomes[1] += o[1];
    }
    eprintln!(
        "crash differential: {seeds} seeds x 4 kills, {acked} acknowledged statements kept; of the statements in flight that would change something, {} were cut off by the kill and {} had landed",
        outcomes[0], outcomes[1]
    );
}
