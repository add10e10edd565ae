//! The write buffer's disk fills up (a real 1 MiB tmpfs, mounted for the test; needs root,
//! which CI has). A commit whose append is cut short fails, and leaves the buffer exactly as
//! before it: the commits after the disk has room again must survive a kill -9, and after a
//! reopen the replica holds exactly the acknowledged commits, no more and no fewer.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use testkit::{litestream, sqlite};

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_commit_and_loses_nothing_acknowledged() {
    full_disk(None);
}

/// The same in WAL mode: the commit frame's write fails, SQLite rolls the transaction back,
/// and the next one writes over its frames.
#[test]
fn a_full_disk_fails_a_wal_commit_and_loses_nothing_acknowledged() {
    full_disk(Some("WAL"));
}

fn full_disk(journal_mode: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("fs"), "1m");
    let filler = fs.0.join("filler");
    // Leave about 200 KiB: room for some commits, then ENOSPC.
    std::fs::write(&filler, vec![0u8; 800 << 10]).unwrap();
    let url = format!("file://{}", dir.path().join("r").display());
    let db = dir.path().join("app.db");
    let buffer = fs.0.join("app.db-buffer");
    let mut env = vec![
        ("LITESTREAM_REPLICA_URL", url.clone()),
        // Nothing is published during the test: the buffer only grows.
        ("LITESTREAM_SYNC_INTERVAL", "1h".to_string()),
        ("LITESTREAM_BUFFER_PATH", buffer.display().to_string()),
        (
            "SQLITE_KUBE_STATUS_PATH",
            dir.path().join("status.json").display().to_string(),
        ),
        ("LITESTREAM_LOG_LEVEL", "warn".to_string()),
    ];
    if let Some(m) = journal_mode {
        env.push(("SQLITE_KUBE_DEMO_JOURNAL_MODE", m.to_string()));
    }
    let mut child = Command::new(demo())
        .args(["write"])
        .arg(&db)
        .arg(&url)
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .env("SQLITE_KUBE_DEMO_KEEP_GOING", "1")
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the writer went quiet")
    };
    let mut acked: Vec<i64> = Vec::new();
    let failed = loop {
        let l = next();
        match l.parse() {
            Ok(id) => acked.push(id),
            Err(_) => break l,
        }
        assert!(acked.len() < 5000, "the disk never filled up");
    };
    assert!(!acked.is_empty(), "nothing fitted before the disk was full");
    eprintln!("{} commits, then: {failed}", acked.len());
    // Room again: later commits succeed and go into the buffer after the failed one(s).
    std::fs::remove_file(&filler).unwrap();
    let mut after = 0;
    while after < 10 {
        let l = next();
        if let Ok(id) = l.parse() {
            acked.push(id);
            after += 1;
        }
    }
    // Crash: only the buffer holds the commits.
    let _ = child.kill();
    let _ = child.wait();
    // The ids printed before the kill that the reader had not handed over yet.
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        if let Ok(id) = l.parse() {
            acked.push(id);
        }
    }
    let o = Command::new(demo())
        .args(["count"])
        .arg(&db)
        .arg(&url)
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .env("LITESTREAM_WRITE_ENABLED", "true")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &[]);
    assert_eq!(sqlite::integrity(&out), "ok");
    let mut restored: Vec<i64> = ids_in(&out).into_iter().collect();
    // The kill can land between a commit and its printed id: that one commit (the next id)
    // is in the buffer without having been acknowledged. Nothing else may differ.
    let last = acked.last().copied().unwrap_or(0);
    if restored.last() == Some(&(last + 1)) {
        restored.pop();
    }
    assert_eq!(
        restored, acked,
        "the replica must hold exactly the acknowledged commits (plus at most the one in flight at the kill)"
    );
}

/// A periodic snapshot restores the database next to the write buffer to encode it. On a
/// volume without room for that, it must be skipped (and say so), not fill the disk under
/// the commits that share it: every commit succeeds, and the snapshot work leaves nothing.
#[test]
fn a_snapshot_never_takes_the_space_commits_need() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("fs"), "6m");
    let url = format!("file://{}", dir.path().join("r").display());
    let db = dir.path().join("app.db");
    let status = dir.path().join("status.json");
    let log = dir.path().join("writer.log");
    let mut child = Command::new(demo())
        .args(["sql"])
        .arg(&db)
        .arg(&url)
        .env("LITESTREAM_WRITE_ENABLED", "true")
        .env("LITESTREAM_SYNC_INTERVAL", "100ms")
        .env(
            "LITESTREAM_BUFFER_PATH",
            fs.0.join("app.db-buffer").display().to_string(),
        )
        .env("SQLITE_KUBE_STATUS_PATH", status.display().to_string())
        .env("SQLITE_KUBE_BUFFER_LIMIT", "1MiB")
        .env("SQLITE_KUBE_COMPACTION_INTERVAL", "200ms")
        .env("SQLITE_KUBE_SNAPSHOT_INTERVAL", "300ms")
        .env("LITESTREAM_LOG_LEVEL", "info")
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut run = |sql: &str| -> String {
        use std::io::Write;
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
        out.next().unwrap().unwrap()
    };
    assert_eq!(run("CREATE TABLE big(b BLOB); CREATE TABLE small(x)"), "ok");
    // About 2.5 MiB that does not compress, in parts the 1 MiB buffer limit lets through.
    for _ in 0..5 {
        let a = run("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 125) INSERT INTO big SELECT randomblob(4000) FROM s");
        assert_eq!(a, "ok");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Commits for a few snapshot intervals.
    let mut errors = Vec::new();
    let t = std::time::Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(4) {
        let a = run(&format!("INSERT INTO small VALUES ({n})"));
        if a != "ok" {
            errors.push(a);
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(stdin);
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        errors.is_empty(),
        "{} of {n} commits failed while snapshots ran, first {:?}; writer log:\n{}",
        errors.len(),
        errors.first(),
        logged.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(
        logged.contains("snapshot skipped"),
        "no skipped snapshot logged:\n{logged}"
    );
    let left: Vec<_> = std::fs::read_dir(&fs.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("snapshot"))
        .collect();
    assert!(left.is_empty(), "snapshot work left behind: {left:?}");
    let restored = dir.path().join("restored.db");
    litestream::restore(&url, &restored, &[], &[]);
    assert_eq!(sqlite::integrity(&restored), "ok");
    eprintln!("{n} commits while snapshots were skipped for space, none failed");
}
