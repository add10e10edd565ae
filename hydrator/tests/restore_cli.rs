//! The `hydrator` binary against real replicas: written by the real `litestream
//! replicate` (file and SeaweedFS S3) and by us, point in time by TXID and timestamp,
//! resume after a kill, corrupt objects, missing credentials.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use ltx::replica::{LtxKey, Replica};
use rusqlite::Connection;
use testkit::{litestream, seaweed::S3Server, sqlite};

fn hydrator(env: &[(&str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hydrator"));
    c.env_remove("AWS_CA_BUNDLE")
        .env("HYDRATOR_LOG_LEVEL", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "hydrator failed:\n{text}");
    text
}

/// Litestream replicates a database through `batches` write batches, one TXID each: a batch
/// is written once the previous one is listed.
async fn litestream_history(dir: &Path, url: &str, env: &[(&str, String)], batches: usize) {
    let db = dir.join("app.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    let mut rep = litestream::Replicate::start(&db, url, env, &dir.join("litestream.log"));
    let replica = Replica::open(url).unwrap();
    let mut have = rep
        .wait_published(0, "the initial state", || async {
            replica.latest_txid().await.unwrap_or(0)
        })
        .await;
    for b in 0..batches {
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..200 {
            tx.execute("INSERT INTO t(v) VALUES (?1)", [format!("{b}/{i}")])
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
}

async fn point_in_time(url: &str, env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    litestream_history(dir.path(), url, env, 4).await;
    let replica = Replica::open(url).unwrap();
    let files = replica.list_level(0).await.unwrap();
    assert!(files.len() >= 4, "{files:?}");

    // By TXID: the same bytes as litestream's restore of that TXID.
    let mid = files[files.len() / 2].key.max_txid;
    let (ours, theirs) = (
        dir.path().join("ours-txid.db"),
        dir.path().join("theirs-txid.db"),
    );
    ok(hydrator(env)
        .args([
            "restore",
            "--replica",
            url,
            "--txid",
            &format!("{mid:016x}"),
            "-o",
        ])
        .arg(&ours)
        .output()
        .unwrap());
    litestream::restore(url, &theirs, &["-txid", &format!("{mid:016x}")], env);
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap()
    );
    assert_eq!(sqlite::integrity(&ours), "ok");

    // By timestamp: a moment between two L0 files. Litestream sometimes writes two files
    // within milliseconds, and refuses ("timestamp does not exist") a timestamp later than
    // its newest file's listed time, which S3 truncates to the second. So take the midpoint
    // of a gap of at least 100 ms that lies before that truncated time, newest gap first.
    let mut times = Vec::new();
    for f in &files {
        times.push(replica.creation_time(f).await.unwrap());
    }
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap();
    let newest_listed = Duration::from_secs(secs(*times.last().unwrap()).as_secs());
    let mid = |i: usize| times[i] + times[i + 1].duration_since(times[i]).unwrap() / 2;
    let i = (0..files.len() - 1)
        .rev()
        .find(|&i| {
            times[i + 1]
                .duration_since(times[i])
                .is_ok_and(|d| d >= Duration::from_millis(100))
                && secs(mid(i)) < newest_listed
        })
        .expect("two L0 files at least 100 ms apart before the newest file's second");
    let f = &files[i];
    let t = mid(i);
    let ts = format!("{:.3}", jiff::Timestamp::try_from(t).unwrap());
    let (ours, theirs) = (
        dir.path().join("ours-ts.db"),
        dir.path().join("theirs-ts.db"),
    );
    let out = ok(hydrator(env)
        .args([
            "restore",
            "--json",
            "--replica",
            url,
            "--timestamp",
            &ts,
            "-o",
        ])
        .arg(&ours)
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("\"txid\":\"{:016x}\"", f.key.max_txid)),
        "{out}"
    );
    litestream::restore(url, &theirs, &["-timestamp", &ts], env);
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap()
    );
    assert_eq!(sqlite::integrity(&ours), "ok");
}

#[tokio::test]
async fn point_in_time_file() {
    let dir = tempfile::tempdir().unwrap();
    point_in_time(&format!("file://{}", dir.path().join("r").display()), &[]).await;
}

#[tokio::test]
async fn point_in_time_s3() {
    let s3 = S3Server::shared();
    s3.export_env();
    point_in_time(&s3.replica_url("dbs/pit"), &s3.env()).await;
}

/// A replica of `n` incremental files of ~1 MB of incompressible pages each.
async fn big_history(replica: &Replica, n: u64) {
    history(replica, n, 256, |_| 256).await
}

/// A replica of `n` files of incompressible pages, `commit` pages long; TXID t writes pages
/// 1..=pages(t).
async fn history(replica: &Replica, n: u64, commit: u32, pages: impl Fn(u64) -> u32) {
    shaped_history(replica, n, |t| (commit, 1..=pages(t))).await
}

/// Like `history`, with each TXID's commit size and pages given by `shape`.
async fn shaped_history(
    replica: &Replica,
    n: u64,
    shape: impl Fn(u64) -> (u32, std::ops::RangeInclusive<u32>),
) {
    let page_size = 4096u32;
    for txid in 1..=n {
        let (commit, pages) = shape(txid);
        let mut enc = ltx::format::Encoder::new(
            Vec::new(),
            ltx::format::Header::new(page_size, commit, txid, txid, txid as i64),
        )
        .unwrap();
        let mut x = txid.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        for p in pages {
            let data: Vec<u8> = (0..page_size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            enc.write_page(p, &data).unwrap();
        }
        let (buf, _) = enc.finish(None).unwrap();
        replica
            .write(
                &LtxKey::new(0, txid, txid),
                Bytes::from(buf),
                txid as i64,
                true,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn killed_restore_resumes_without_refetching() {
    let s3 = S3Server::shared();
    s3.export_env();
    let url = s3.replica_url("dbs/resume");
    let replica = Replica::open(&url).unwrap();
    big_history(&replica, 40).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("db");
    let staging = dir.path().join("db.restore");

    let mut child = hydrator(&s3.env())
        .args(["restore", "--concurrency", "1", "--replica", &url, "-o"])
        .arg(&out)
        .spawn()
        .unwrap();
    // Kill it once a few downloads are complete in the staging directory.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = std::fs::read_dir(&staging)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "ltx")
                })
                .count()
            })
            .unwrap_or(0);
        if done >= 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "restore finished before it could be killed"
        );
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "a killed restore must not leave an output");
    let staged = std::fs::read_dir(&staging)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "ltx")
        })
        .count();
    assert!(
        staged < 40,
        "everything downloaded before the kill; test is not exercising resume"
    );

    let text = ok(hydrator(&s3.env())
        .args(["restore", "--json", "--replica", &url, "-o"])
        .arg(&out)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(v["files"], 40);
    assert_eq!(
        v["files_resumed"].as_u64().unwrap(),
        staged as u64,
        "{text}"
    );
    let fetched: u64 = v["bytes_downloaded"].as_u64().unwrap();
    let total: u64 = replica
        .list_level(0)
        .await
        .unwrap()
        .iter()
        .map(|f| f.size)
        .sum();
    assert!(
        fetched < total,
        "resumed restore downloaded {fetched} of {total} bytes"
    );
    assert!(!staging.exists(), "staging removed after success");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 256 * 4096);
}

#[tokio::test]
async fn corrupt_object_fails_naming_it_and_leaves_output_alone() {
    let s3 = S3Server::shared();
    s3.export_env();
    let url = s3.replica_url("dbs/corrupt");
    let replica = Replica::open(&url).unwrap();
    big_history(&replica, 5).await;
    // Flip one bit in the middle of TXID 3's object.
    let key = LtxKey::new(0, 3, 3);
    let mut b = replica.read(&key).await.unwrap().to_vec();
    let mid = b.len() / 2;
    b[mid] ^= 0x04;
    replica.write(&key, Bytes::from(b), 3, false).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("db");
    let o = hydrator(&s3.env())
        .args(["restore", "--replica", &url, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("0000/0000000000000003-0000000000000003.ltx"),
        "error must name the file: {err}"
    );
    assert!(
        err.contains("checksum mismatch") || err.contains("decompress"),
        "{err}"
    );
    assert!(!out.exists());

    // With --force over an existing database: still untouched.
    std::fs::write(&out, b"precious").unwrap();
    let o = hydrator(&s3.env())
        .args(["restore", "--force", "--replica", &url, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
}

/// A big file is applied while it downloads (here every file from 1 MiB up; by default
/// from 64 MiB), without a staged copy: the result is byte-identical to `litestream
/// restore`, and a corrupt one fails naming it, leaving no output and nothing staged.
#[tokio::test]
async fn a_streamed_file_matches_litestream_and_a_corrupt_one_fails_cleanly() {
    let s3 = S3Server::shared();
    s3.export_env();
    let url = s3.replica_url("dbs/stream");
    let replica = Replica::open(&url).unwrap();
    // TXID 1: 5,000 pages (20 MB); then smaller ones over its first pages.
    history(&replica, 4, 5000, |t| if t == 1 { 5000 } else { 256 }).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ltx::restore::RestoreOptions {
        stream_min: 1 << 20,
        ..Default::default()
    };
    let out = dir.path().join("db");
    ltx::restore::restore(&replica, &out, &opts).await.unwrap();
    let theirs = dir.path().join("theirs");
    litestream::restore(&url, &theirs, &[], &s3.env());
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 5000 * 4096);
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&theirs).unwrap(),
        "streamed restore differs from litestream restore"
    );

    // Flip a bit three quarters into the big object.
    let bad = dir.path().join("bad");
    let err = damaged_restore(&replica, 1, 0.75, &bad, &opts).await;
    assert!(
        err.contains("0000/0000000000000001-0000000000000001.ltx"),
        "error must name the file: {err}"
    );
    assert!(!bad.exists());
    let staged: Vec<_> = std::fs::read_dir(dir.path().join("bad.restore"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        !staged.iter().any(|n| n
            .to_string_lossy()
            .contains("0000000000000001-0000000000000001")),
        "the corrupt download must not stay staged: {staged:?}"
    );
}

/// A streamed snapshot takes the newest version of its pages from the smaller files staged
/// behind it (so those pages are written and decoded once), as long as their pages lie
/// below every commit size among them: here a shrink to 4,000 pages, then a regrowth that
/// is applied the usual way. The result is byte-identical to `litestream restore`.
#[tokio::test]
async fn a_streamed_snapshot_takes_later_pages_and_matches_litestream() {
    let s3 = S3Server::shared();
    s3.export_env();
    let url = s3.replica_url("dbs/overlay");
    let replica = Replica::open(&url).unwrap();
    shaped_history(&replica, 4, |t| match t {
        1 => (5000, 1..=5000),
        2 => (5000, 1..=64),
        3 => (4000, 1..=32),
        _ => (5000, 3990..=5000),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ltx::restore::RestoreOptions {
        stream_min: 8 << 20,
        ..Default::default()
    };
    let out = dir.path().join("db");
    let s = ltx::restore::restore(&replica, &out, &opts).await.unwrap();
    // TXID 2's 64 pages and TXID 3's 32 are decoded into the snapshot; TXID 4 writes pages
    // above TXID 3's commit size, so it is applied after them the usual way.
    assert_eq!(s.db.pages_from_later_files, 64 + 32);
    let theirs = dir.path().join("theirs");
    litestream::restore(&url, &theirs, &[], &s3.env());
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&theirs).unwrap(),
        "restore with an overlay differs from litestream restore"
    );

    // A damaged small file behind the snapshot: its decoder refuses it while the snapshot
    // applies, naming it, and no output appears.
    let bad = dir.path().join("bad");
    let err = damaged_restore(&replica, 2, 0.5, &bad, &opts).await;
    assert!(
        err.contains("0000000000000002-0000000000000002.ltx"),
        "error must name the file: {err}"
    );
    assert!(!bad.exists());
}

/// Flips a bit `at` (a fraction) into TXID `txid`'s object, restores to `out` and returns
/// the error.
async fn damaged_restore(
    replica: &Replica,
    txid: u64,
    at: f64,
    out: &Path,
    opts: &ltx::restore::RestoreOptions,
) -> String {
    let key = LtxKey::new(0, txid, txid);
    let mut b = replica.read(&key).await.unwrap().to_vec();
    let i = (b.len() as f64 * at) as usize;
    b[i] ^= 0x10;
    replica
        .write(&key, Bytes::from(b), txid as i64, false)
        .await
        .unwrap();
    ltx::restore::restore(replica, out, opts)
        .await
        .unwrap_err()
        .to_string()
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.db");
    let run = |args: &[&str], env: &[(&str, String)]| {
        let mut c = hydrator(env);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "LITESTREAM_ACCESS_KEY_ID",
            "LITESTREAM_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", dir.path());
        let o = c.args(args).arg("-o").arg(&out).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let empty = format!("file://{}", dir.path().join("nothing").display());
    assert!(run(&["restore", "--replica", &empty], &[]).contains("no replica at"));
    let e = run(
        &[
            "restore",
            "--replica",
            "s3://b/p?endpoint=http://127.0.0.1:1",
        ],
        &[],
    );
    assert!(
        e.contains("missing credentials") && e.contains("AWS_ACCESS_KEY_ID"),
        "{e}"
    );
    std::fs::write(&out, b"x").unwrap();
    assert!(run(&["restore", "--replica", &empty], &[]).contains("already exists"));
    std::fs::remove_file(&out).unwrap();
    // --if-replica-exists turns "no replica" into success.
    let o = hydrator(&[])
        .args(["restore", "--if-replica-exists", "--replica", &empty, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
}
