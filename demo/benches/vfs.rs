//! VFS benchmark, every variant in a fresh process, ratios against plain SQLite on local
//! disk in WAL mode at the same `synchronous` level, measured in the same run:
//! - writes: 2,000 autocommit inserts plus one 100,000-row insert (then close);
//! - cached point reads: 20,000 random `SELECT … WHERE id = ?` after the writes;
//! - in-process (rusqlite's SQLite): local WAL and this VFS (file:// replica) at
//!   `synchronous=NORMAL` and `FULL`, in rollback mode and in WAL mode; this VFS with a 1 MiB `buffer_limit` (back-pressure
//!   and early publishes decide the write rate); Litestream's `litestream-vfs` 0.5.17;
//! - through Debian's `sqlite3` shell (how apps not written in Rust reach the VFS: the
//!   extension loaded): the same writes, local WAL vs this VFS (rollback and WAL mode) at
//!   NORMAL and FULL, timed by
//!   the shell's `.timer` (statements only, not process start);
//! - cold start: open + first point query on a replica of BENCH_COLD_MB (default 1024) MiB
//!   on SeaweedFS S3 on 127.0.0.1.
//!
//!   cargo bench -p sqlitekube-demo --bench vfs      (needs scripts/test-deps.sh)
//!
//! Before/after in one run: `BENCH_BASELINE=<this bench's binary built from another
//! commit>` runs each of our variants with that binary right after this build's, and prints
//! this build's ratios against it (see scripts/bench-vfs-baseline.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};

fn open_variant(variant: &str, dir: &Path) -> Connection {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI;
    let replica = format!("file://{}", dir.join("replica").display());
    match variant {
        "local-wal-normal" | "local-wal-full" => {
            let c = Connection::open(dir.join("local.db")).unwrap();
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                .unwrap();
            c
        }
        "ours-normal" | "ours-full" | "ours-1mib-buf" | "ours-wal-normal" | "ours-wal-full" => {
            sqlitekube_demo::register();
            let c = Connection::open_with_flags(
                format!(
                    "file:{}?vfs=sqlitekube&replica_url={replica}&write_enabled=true",
                    dir.join("ours.db").display()
                ),
                flags,
            )
            .unwrap();
            if variant.starts_with("ours-wal") {
                let mode: String = c
                    .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(mode, "wal");
            }
            c
        }
        "litestream-vfs" => {
            let so = std::env::var("LITESTREAM_VFS_SO")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    testkit::repo_root()
                        .join(".deps/litestream-vfs-0.5.17/litestream_vfs/litestream-vfs.so")
                });
            let boot = Connection::open_in_memory().unwrap();
            unsafe {
                let _g = rusqlite::LoadExtensionGuard::new(&boot).unwrap();
                boot.load_extension(so.with_extension(""), None::<&str>)
                    .unwrap();
            }
            std::mem::forget(boot);
            Connection::open_with_flags(
                format!(
                    "file:{}?vfs=litestream&replica_url={replica}&write_enabled=true&sync_interval=1s&buffer_path={}",
                    dir.join("ls.db").display(),
                    dir.join("ls-buffer").display()
                ),
                flags,
            )
            .unwrap()
        }
        other => panic!("unknown variant {other}"),
    }
}

/// Child: run the workload, print "write_s read_us close_s".
fn child(variant: &str, dir: &Path) {
    let c = open_variant(variant, dir);
    let level = if variant.ends_with("normal") {
        "NORMAL"
    } else {
        "FULL"
    };
    c.pragma_update(None, "synchronous", level).unwrap();
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let t = Instant::now();
    for i in 0..2000 {
        c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("autocommit row {i}")],
        )
        .unwrap();
    }
    c.execute_batch(
        "BEGIN; WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 100000)
         INSERT INTO t(v) SELECT printf('bulk row %d %s', x, hex(randomblob(16))) FROM n; COMMIT;",
    )
    .unwrap();
    let write_s = t.elapsed().as_secs_f64();
    let mut s = c.prepare("SELECT v FROM t WHERE id = ?1").unwrap();
    let mut x: u64 = 88172645463325252;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        1 + (x % 102000) as i64
    };
    for _ in 0..2000 {
        let _: String = s.query_row([next()], |r| r.get(0)).unwrap();
    }
    let n = 20000;
    let t = Instant::now();
    for _ in 0..n {
        let _: String = s.query_row([next()], |r| r.get(0)).unwrap();
    }
    let read_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(s);
    let t = Instant::now();
    drop(c);
    sqlite_kube_vfs::shutdown_all();
    let close_s = t.elapsed().as_secs_f64();
    println!("{write_s} {read_us} {close_s}");
}

/// The write workload through Debian's `sqlite3` shell with the extension loaded, against
/// local WAL in the same shell, at NORMAL and FULL. Seconds of statement time (`.timer`).
fn shell_writes() {
    let Ok(sqlite3) = which("sqlite3") else {
        println!("through the sqlite3 shell: SKIPPED (no sqlite3 on PATH; scripts/test-deps.sh installs it)");
        return;
    };
    // The loadable extension, built as the shell loads it.
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "vfs", "--lib"])
        .current_dir(testkit::repo_root())
        .status();
    let so = testkit::repo_root().join("target/release/libsqlite_kube_vfs.so");
    if !built.is_ok_and(|s| s.success()) || !so.exists() {
        println!(
            "through the sqlite3 shell: FAILED to build {}",
            so.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut sql = String::from("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n");
    for i in 0..2000 {
        sql.push_str(&format!(
            "INSERT INTO t(v) VALUES ('autocommit row {i}');\n"
        ));
    }
    sql.push_str("BEGIN; WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 100000) INSERT INTO t(v) SELECT printf('bulk row %d %s', x, hex(randomblob(16))) FROM n; COMMIT;\n");
    let script = dir.path().join("work.sql");
    std::fs::write(&script, sql).unwrap();
    println!("through the sqlite3 shell ({}), statement time, ratios against local WAL at the same level:", sqlite3.display());
    for level in ["NORMAL", "FULL"] {
        let mut local = f64::NAN;
        for (ours, wal) in [(false, true), (true, false), (true, true)] {
            let d = tempfile::tempdir().unwrap();
            let mut c = Command::new(&sqlite3);
            if ours {
                // The shell's own database first (the VFS is not registered until the
                // extension is loaded), then ours.
                let url = format!("file://{}", d.path().join("replica").display());
                c.arg("-cmd")
                    .arg(format!(".load {}", so.display()))
                    .arg(":memory:")
                    .arg(format!(
                        ".open file:{}?vfs=sqlitekube&replica_url={url}&write_enabled=true",
                        d.path().join("ours.db").display()
                    ));
                if wal {
                    c.arg("PRAGMA journal_mode=WAL;");
                }
            } else {
                c.arg(d.path().join("local.db"))
                    .arg("PRAGMA journal_mode=WAL;");
            }
            let o = c
                .arg(format!("PRAGMA synchronous={level};"))
                .arg(".timer on")
                .arg(format!(".read {}", script.display()))
                .arg(".timer off")
                .arg("PRAGMA synchronous;")
                .env("LITESTREAM_LOG_LEVEL", "error")
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            let secs: f64 = out
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("Run Time: real ")?
                        .split_whitespace()
                        .next()?
                        .parse::<f64>()
                        .ok()
                })
                .sum();
            // The level in effect, as the shell's connection reports it (1 NORMAL, 2 FULL).
            let want = if level == "NORMAL" { "1" } else { "2" };
            if out.lines().last().map(str::trim) != Some(want) {
                println!(
                    "  FAILED: synchronous is not {level} in the shell: {:?}",
                    out.lines().last()
                );
                continue;
            }
            if !o.status.success() || secs == 0.0 {
                println!(
                    "  {:<16} FAILED: {}",
                    if ours { "ours" } else { "local WAL" },
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
                continue;
            }
            if ours {
                println!(
                    "  {:<16} writes {secs:>7.3}s ({:>4.2}x local WAL {} throughput)",
                    format!(
                        "ours-{}{}",
                        if wal { "wal-" } else { "" },
                        level.to_lowercase()
                    ),
                    local / secs,
                    level.to_lowercase()
                );
            } else {
                local = secs;
                println!(
                    "  {:<16} writes {secs:>7.3}s",
                    format!("local-wal-{}", level.to_lowercase())
                );
            }
        }
    }
}

fn which(bin: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(bin))
                .find(|f| f.is_file())
        })
        .ok_or(())
}

/// Child: open a cold replica and answer one point query; print ms.
fn cold_child(url: &str, dir: &Path) {
    sqlitekube_demo::register();
    let t = Instant::now();
    let c = Connection::open_with_flags(
        format!(
            "file:{}?vfs=sqlitekube&replica_url={url}",
            dir.join("cold.db").display()
        ),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let v: String = c
        .query_row("SELECT v FROM t WHERE id = 12345", [], |r| r.get(0))
        .unwrap();
    assert!(!v.is_empty());
    println!("{}", t.elapsed().as_secs_f64() * 1e3);
}

fn run_child(args: &[&str], env: &[(&str, String)]) -> Result<String, String> {
    run_child_of(&std::env::current_exe().unwrap(), args, env)
}

/// An earlier build of this benchmark to compare against (`BENCH_BASELINE`).
fn baseline() -> Option<PathBuf> {
    std::env::var_os("BENCH_BASELINE").map(PathBuf::from)
}

fn run_child_of(exe: &Path, args: &[&str], env: &[(&str, String)]) -> Result<String, String> {
    let mut c = Command::new(exe);
    c.arg("--child")
        .args(args)
        .env("LITESTREAM_LOG_LEVEL", "error")
        .env_remove("AWS_CA_BUNDLE");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("Error") || l.contains("error"))
            .unwrap_or("failed")
            .trim()
            .to_string();
        return Err(line);
    }
    // The last line: litestream-vfs logs to stdout.
    let out = String::from_utf8_lossy(&o.stdout);
    Ok(out.trim().lines().last().unwrap_or("").trim().to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        match args[i + 1].as_str() {
            "cold" => cold_child(&args[i + 2], Path::new(&args[i + 3])),
            v => child(v, Path::new(&args[i + 2])),
        }
        return;
    }
    println!("VFS benchmark: 2,000 autocommit inserts + one 100,000-row insert; 20,000 cached point reads");
    println!("in-process (rusqlite), ratios against local WAL at the same synchronous level:");
    let mut local: std::collections::HashMap<&str, (f64, f64)> = Default::default();
    for v in [
        "local-wal-normal",
        "local-wal-full",
        "ours-normal",
        "ours-full",
        "ours-wal-normal",
        "ours-wal-full",
        "ours-1mib-buf",
        "litestream-vfs",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let env = if v == "ours-1mib-buf" {
            vec![("SQLITE_KUBE_BUFFER_LIMIT", "1MiB".to_string())]
        } else {
            vec![]
        };
        let out = match run_child(&[v, dir.path().to_str().unwrap()], &env) {
            Ok(o) => o,
            Err(e) => {
                println!("  {v:<16} FAILED: {e}");
                continue;
            }
        };
        let p: Vec<f64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        let (w, r, close) = (p[0], p[1], p[2]);
        let level = if v.ends_with("normal") {
            "normal"
        } else {
            "full"
        };
        if v.starts_with("local") {
            local.insert(level, (w, r));
        }
        let (lw, lr) = local.get(level).copied().unwrap_or((f64::NAN, f64::NAN));
        println!(
            "  {v:<16} writes {w:>7.3}s ({:>4.2}x local WAL {level} throughput)   point read {r:>6.2} us ({:>4.2}x its latency)   close {close:.3}s",
            lw / w,
            r / lr
        );
        if let Some(exe) = baseline().filter(|_| v.starts_with("ours")) {
            let dir = tempfile::tempdir().unwrap();
            match run_child_of(&exe, &[v, dir.path().to_str().unwrap()], &env) {
                Ok(o) => {
                    let p: Vec<f64> = o.split_whitespace().map(|x| x.parse().unwrap()).collect();
                    println!(
                        "  {:<16} writes {:>7.3}s   point read {:>6.2} us   close {:.3}s   => this build: throughput {:>4.2}x, read latency {:>4.2}x the baseline",
                        "  baseline", p[0], p[1], p[2], p[0] / w, r / p[1]
                    );
                }
                Err(e) => println!("    baseline FAILED: {e}"),
            }
        }
    }
    shell_writes();

    let mb: usize = std::env::var("BENCH_COLD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let s3 = testkit::seaweed::S3Server::start();
    s3.export_env();
    let url = s3.replica_url("bench/cold");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    {
        let c = Connection::open(&src).unwrap();
        c.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);").unwrap();
        c.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < ?1) INSERT INTO t(v) SELECT printf('%d-%s', x, hex(randomblob(490))) FROM n",
            [(mb * 1024) as i64],
        )
        .unwrap();
    }
    let snap = dir.path().join("snap.ltx");
    ltx::dbfile::encode_db(
        &src,
        1,
        1,
        1,
        std::io::BufWriter::new(std::fs::File::create(&snap).unwrap()),
    )
    .unwrap();
    let replica = ltx::replica::Replica::open(&url).unwrap();
    replica
        .write_file(&ltx::replica::LtxKey::new(9, 1, 1), &snap, 1, true)
        .await
        .unwrap();
    let db_mb = std::fs::metadata(&src).unwrap().len() as f64 / 1e6;
    let me = std::env::current_exe().unwrap();
    let cold = |exe: &Path, tag: &str| {
        let mut times = Vec::new();
        for i in 0..3 {
            let d = dir.path().join(format!("cold-{tag}{i}"));
            std::fs::create_dir_all(&d).unwrap();
            times.push(
                run_child_of(exe, &["cold", &url, d.to_str().unwrap()], &s3.env())
                    .expect("cold child")
                    .parse::<f64>()
                    .unwrap(),
            );
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        times[1]
    };
    let now = cold(&me, "");
    println!("  cold replica of {db_mb:.0} MB on SeaweedFS: open + first point query {now:.1} ms (median of 3; target < 100 ms)");
    if let Some(exe) = baseline() {
        let before = cold(&exe, "base");
        println!(
            "    baseline: {before:.1} ms   => this build: {:.2}x the baseline's time",
            now / before
        );
    }
}
