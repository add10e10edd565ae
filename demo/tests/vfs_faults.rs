//! Faults inside the VFS stay inside it: a panic in a callback becomes an SQLite error
//! (not an abort of the host), a background thread that panics comes back, and a second
//! database in the process never shares the first one's replica.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ltx::replica::Replica;
use testkit::litestream;

/// Runs the sqlite3 shell with our extension on `script`.
fn shell(script: &str, env: &[(&str, String)]) -> Output {
    let mut c = Command::new("sqlite3");
    c.env_remove("AWS_CA_BUNDLE")
        .env("LITESTREAM_LOG_LEVEL", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut p = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                ".load {}\n{script}",
                extension().with_extension("").display()
            )
            .as_bytes(),
        )
        .unwrap();
    p.wait_with_output().unwrap()
}

/// Without the guard, Rust aborts the process when a panic reaches an `extern "C"`
/// callback: the app dies with SIGABRT. With it, the statement fails and the app goes on.
#[test]
fn panic_in_a_callback_is_an_error_not_an_abort() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("r").display());
    let o = shell(
        &format!(
            ".open file:{}?vfs=sqlitekube&replica_url={url}&write_enabled=true\n\
             CREATE TABLE t(x);\nSELECT 40 + 2;\n",
            dir.path().join("app.db").display()
        ),
        &[("SQLITE_KUBE_FAULT", "panic-in-read".into())],
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(
        o.status.signal(),
        None,
        "the host was killed: {}\n{err}",
        o.status
    );
    assert!(err.contains("a VFS callback panicked"), "{err}");
    assert!(
        err.contains("disk I/O error"),
        "the statement must fail: {err}"
    );
    assert!(
        out.contains("42"),
        "the host must go on after the error: {out}\n{err}"
    );
}

/// The sync thread panics once (an injected fault at its first round); it is restarted and
/// publishes while the writer is still running, and the status says what happened.
#[test]
fn a_sync_thread_that_panics_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("r").display());
    let env = [
        ("LITESTREAM_SYNC_INTERVAL", "100ms".to_string()),
        ("SQLITE_KUBE_FAULT", "panic-in-sync-thread-once".to_string()),
    ];
    let w = Writer::start(&dir.path().join("app.db"), &url, &env);
    let replica = Replica::open(&url).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = Instant::now();
    loop {
        let txid = rt.block_on(replica.latest_txid()).unwrap_or(0);
        if txid >= 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing published while the writer ran: the sync thread did not come back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    w.signal(15);
    let (ok, err, ids) = w.wait();
    assert!(ok, "{err}");
    assert!(
        err.contains("the sqlitekube-sync thread panicked") && err.contains("restarting it"),
        "{err}"
    );
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    let restored = ids_in(&out);
    assert!(
        ids.iter().all(|i| restored.contains(i)),
        "committed rows lost"
    );
}

/// `ATTACH` of a second database through the VFS with nothing of its own would share the
/// main database's replica: refused, with the reason in the log. Given its own replica, it
/// works and its rows go there, not into the main database's replica.
#[test]
fn attach_needs_its_own_replica() {
    let dir = tempfile::tempdir().unwrap();
    let (r1, r2) = (dir.path().join("r1"), dir.path().join("r2"));
    let (u1, u2) = (
        format!("file://{}", r1.display()),
        format!("file://{}", r2.display()),
    );
    let o = shell(
        &format!(
            ".open file:{main}?vfs=sqlitekube&write_enabled=true\n\
             CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n\
             ATTACH 'file:{other}?vfs=sqlitekube' AS o;\n\
             ATTACH 'file:{other}?vfs=sqlitekube&replica_url={u2}&write_enabled=true' AS o2;\n\
             CREATE TABLE o2.u(y);\nINSERT INTO o2.u VALUES (7);\nSELECT count(*) FROM o2.u;\n",
            main = dir.path().join("main.db").display(),
            other = dir.path().join("other.db").display(),
        ),
        &[("LITESTREAM_REPLICA_URL", u1.clone())],
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(err.contains("unable to open database"), "{err}");
    assert!(
        err.contains("is already used by the database open at the same time"),
        "the log must say why: {err}"
    );
    assert_eq!(out.trim(), "1", "{out}\n{err}");
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    litestream::restore(&u1, &a, &[], &[]);
    litestream::restore(&u2, &b, &[], &[]);
    let tables = |p: &std::path::Path| {
        let c = rusqlite::Connection::open(p).unwrap();
        let mut s = c
            .prepare("SELECT name FROM sqlite_master ORDER BY name")
            .unwrap();
        let v: Vec<String> = s
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        v
    };
    assert_eq!(
        tables(&a),
        ["t"],
        "the main replica holds only the main database"
    );
    assert_eq!(
        tables(&b),
        ["u"],
        "the attached database has its own replica"
    );
}
