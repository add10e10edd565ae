//! The VFS on every store the product lists (a directory, SeaweedFS, moto, Azurite,
//! fake-gcs-server): an app writes through the VFS while a reader in another process
//! follows, the writer closes cleanly, and the replica restores — with our hydrator and
//! with `litestream restore` — to exactly the acknowledged rows. A store that does not
//! honour create-only writes (fake-gcs-server) is refused until the user opts in.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use testkit::stores::{Kind, Store};
use testkit::{litestream, sqlite};

fn hydrator() -> std::path::PathBuf {
    let p = demo().parent().unwrap().join("hydrator");
    assert!(
        p.exists(),
        "{} missing: build it with `cargo build --workspace --bins`",
        p.display()
    );
    p
}

/// `sqlitekube-demo follow` for `secs`: the row counts it saw, first to last.
fn follow(
    db: &std::path::Path,
    url: &str,
    env: &[(&str, String)],
    secs: u64,
) -> std::thread::JoinHandle<(Vec<i64>, String)> {
    let mut c = Command::new(demo());
    c.args(["follow"])
        .arg(db)
        .arg(url)
        .arg(secs.to_string())
        .env_remove("AWS_CA_BUNDLE")
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .env("LITESTREAM_POLL_INTERVAL", "100ms");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::spawn(move || {
        let out = child.stdout.take().unwrap();
        let counts: Vec<i64> = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        let o = child.wait_with_output().unwrap();
        (counts, String::from_utf8_lossy(&o.stderr).into_owned())
    })
}

fn story(kind: Kind) -> String {
    let store = Store::start(kind);
    let url = store.replica_url("vfs/story");
    let dir = tempfile::tempdir().unwrap();
    let env = store.env();
    let mut wenv = env.clone();
    wenv.push(("LITESTREAM_SYNC_INTERVAL", "100ms".into()));
    let mut note = String::new();
    if kind == Kind::FakeGcs {
        let (ok, err) = write_rows(&dir.path().join("refused.db"), &url, 5, &wenv);
        assert!(
            !ok && err.contains("does not honour create-only writes"),
            "{}: a writer started on a store that does not fence:\n{err}",
            kind.name()
        );
        wenv.push(("SQLITE_KUBE_ALLOW_UNFENCED_STORE", "true".into()));
        note = "writer refused until allow_unfenced_store; ".into();
    }
    // A first commit creates the table, so the follower has something to open.
    let db = dir.path().join("app.db");
    let (ok, err) = write_rows(&db, &url, 1, &wenv);
    assert!(ok, "{}: first write failed:\n{err}", kind.name());
    let w = Writer::start(&db, &url, &wenv);
    let t = Instant::now();
    while w.committed() < 20 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{}: the writer is stuck",
            kind.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let reader = follow(&dir.path().join("reader.db"), &url, &env, 3);
    let (counts, rerr) = reader.join().unwrap();
    w.signal(15);
    let (ok, err, ids) = w.wait();
    assert!(ok, "{}: the writer failed:\n{err}", kind.name());
    let (first, last) = (
        counts.first().copied().unwrap_or(-1),
        counts.last().copied().unwrap_or(-1),
    );
    assert!(
        first >= 1 && last > first,
        "{}: the reader did not follow the writer (saw {first} then {last} rows):\n{rerr}",
        kind.name()
    );
    let acked = ids.len() as i64 + 1;

    // Our hydrator.
    let ours = dir.path().join("hydrator.db");
    let mut c = Command::new(hydrator());
    c.args(["restore", "--replica", &url, "-o"]).arg(&ours);
    for (k, v) in &env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{}: hydrator restore failed:\n{}",
        kind.name(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(sqlite::integrity(&ours), "ok");
    let restored = ids_in(&ours);
    assert!(
        ids.iter().all(|i| restored.contains(i)) && restored.len() as i64 == acked,
        "{}: hydrator restored {} rows, {acked} acknowledged",
        kind.name(),
        restored.len()
    );

    // Litestream.
    let ls = dir.path().join("litestream.db");
    let how = store.litestream_restore_args(&url, dir.path()).unwrap();
    let o = litestream::command(&how.env)
        .arg("restore")
        .arg("-o")
        .arg(&ls)
        .args(&how.args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}: litestream restore failed:\n{}",
        kind.name(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(sqlite::integrity(&ls), "ok");
    assert_eq!(
        ids_in(&ls),
        restored,
        "{}: litestream and hydrator differ",
        kind.name()
    );
    format!(
        "{}: {note}{acked} rows acknowledged, reader saw {first}→{last}, hydrator and litestream restore all",
        kind.name()
    )
}

#[test]
fn the_vfs_story_on_every_store() {
    let mut lines = Vec::new();
    for kind in Kind::ALL {
        lines.push(story(kind));
    }
    eprintln!("\nVFS on every store:\n  {}", lines.join("\n  "));
}
