//! Restore benchmark on a real S3 server (SeaweedFS on 127.0.0.1): our restore vs the
//! real `litestream restore` of the same replica, and our achieved MB/s vs a raw parallel
//! download of the same objects, all measured in one run.
//!
//!   cargo bench -p hydrator --bench restore            # 256 MiB and 1 GiB
//!   BENCH_SIZES_MB=64 cargo bench -p hydrator --bench restore
//!   BENCH_REPEAT=5 cargo bench -p hydrator --bench restore   # alternating runs (default 3)
//!   BENCH_TIMELINE=1 ...   # when each file of our restore was downloaded and applied
//!   PERF_CTL_FIFO=F perf record -D -1 --control=fifo:F -- <bench binary>   # profile ours only
//! Needs scripts/test-deps.sh to have run (litestream and SeaweedFS in .deps/).

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use ltx::replica::{LtxKey, Replica, SNAPSHOT_LEVEL};
use ltx::restore::{plan, restore, RestoreOptions, Target};
use rusqlite::Connection;
use testkit::{litestream, seaweed::S3Server};

/// A database of about `mb` MiB: rows half random, half zeros (compresses ~2x like real data).
fn make_db(path: &Path, mb: usize) {
    let c = Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);").unwrap();
    let rows = mb * 1024;
    c.execute("WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v+1 FROM n WHERE v < ?1) INSERT INTO t(b) SELECT CAST(randomblob(500) || zeroblob(480) AS BLOB) FROM n", [rows as i64]).unwrap();
}

/// Snapshot at L9 plus 10 incrementals at L0 that each update ~1% of rows.
async fn build_replica(replica: &Replica, db: &Path, work: &Path) {
    let ts = jiff::Timestamp::now().as_millisecond();
    let snap = work.join("snap.ltx");
    ltx::dbfile::encode_db(
        db,
        1,
        1,
        ts,
        std::io::BufWriter::new(std::fs::File::create(&snap).unwrap()),
    )
    .unwrap();
    replica
        .write_file(&LtxKey::new(SNAPSHOT_LEVEL, 1, 1), &snap, ts, true)
        .await
        .unwrap();
    let prev = work.join("prev.db");
    std::fs::copy(db, &prev).unwrap();
    let c = Connection::open(db).unwrap();
    for txid in 2..=11u64 {
        c.execute(
            "UPDATE t SET b = randomblob(980) WHERE id % 100 = ?1",
            [txid as i64],
        )
        .unwrap();
        let mut buf = Vec::new();
        ltx::dbfile::encode_db_diff(&prev, db, txid, txid, ts, &mut buf)
            .unwrap()
            .unwrap();
        replica
            .write(&LtxKey::new(0, txid, txid), Bytes::from(buf), ts, true)
            .await
            .unwrap();
        std::fs::copy(db, &prev).unwrap();
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES_MB")
        .unwrap_or_else(|_| "256,1024".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SIZES_MB: comma-separated MiB")
        })
        .collect();
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .map(|s| s.parse().expect("BENCH_REPEAT: a count"))
        .unwrap_or(3);
    let s3 = S3Server::start();
    let weed = s3.pid().expect("a private server");
    s3.export_env();
    println!(
        "restore benchmark, SeaweedFS S3 on 127.0.0.1, litestream {}",
        String::from_utf8_lossy(
            &litestream::command(&[])
                .arg("version")
                .output()
                .unwrap()
                .stdout
        )
        .trim()
    );
    for mb in sizes {
        let work = tempfile::tempdir().unwrap();
        let db = work.path().join("src.db");
        make_db(&db, mb);
        let url = s3.replica_url(&format!("bench/{mb}"));
        let replica = Replica::open(&url).unwrap();
        build_replica(&replica, &db, work.path()).await;
        let files = replica.list_all().await.unwrap();
        let chosen = plan(&files, Target::Latest).unwrap();
        let replica_mb = chosen.iter().map(|f| f.size).sum::<u64>() as f64 / 1e6;
        let db_mb = std::fs::metadata(&db).unwrap().len() as f64 / 1e6;

        // Raw parallel download of the same objects (no decode, no apply): the ceiling.
        // Both vary run to run on a shared machine: alternate them `repeat` times and
        // compare medians.
        let mut raws = Vec::new();
        let mut ourses = Vec::new();
        // CPU seconds of (this process, the S3 server) per run: on a small machine both
        // share the cores, so this says whether a run waited or computed.
        let (mut raw_cpu, mut ours_cpu) = (Vec::new(), Vec::new());
        let ours_out = work.path().join("ours.db");
        for _ in 0..repeat {
            let raw_dir = work.path().join("raw");
            std::fs::create_dir_all(&raw_dir).unwrap();
            let cpu0 = cpu_now(weed);
            let t = Instant::now();
            futures::stream::iter(chosen.iter().map(|f| {
                let dest = raw_dir.join(f.key.file_name());
                let r = &replica;
                async move { r.download_to(&f.key, &dest, 16).await.unwrap() }
            }))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
            raws.push(t.elapsed().as_secs_f64());
            raw_cpu.push(cpu_since(cpu0, weed));
            std::fs::remove_dir_all(&raw_dir).unwrap();

            let _ = std::fs::remove_file(&ours_out);
            perf_ctl("enable");
            let cpu0 = cpu_now(weed);
            let t = Instant::now();
            restore(
                &replica,
                &ours_out,
                &RestoreOptions {
                    concurrency: 16,
                    progress: std::sync::Arc::new(Timeline(Instant::now())),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            ourses.push(t.elapsed().as_secs_f64());
            perf_ctl("disable");
            ours_cpu.push(cpu_since(cpu0, weed));
        }
        let raw = median(&mut raws);
        let ours = median(&mut ourses);
        // `median` sorted them: the fastest of each, the run least disturbed by the host.
        let (raw_best, ours_best) = (raws[0], ourses[0]);

        let theirs_out = work.path().join("theirs.db");
        let t = Instant::now();
        litestream::restore(&url, &theirs_out, &[], &s3.env());
        let theirs = t.elapsed().as_secs_f64();
        assert!(
            std::fs::read(&ours_out).unwrap() == std::fs::read(&theirs_out).unwrap(),
            "both restores must produce the same bytes"
        );

        println!(
            "{mb} MiB database ({db_mb:.0} MB; replica {replica_mb:.0} MB in {} files):",
            chosen.len()
        );
        println!("  ({repeat} alternating runs each, medians; raw {raws:.2?}, ours {ourses:.2?})");
        println!(
            "  raw parallel download   {raw:>7.2}s  {:>7.0} MB/s of replica",
            replica_mb / raw
        );
        println!(
            "  ours (hydrator restore) {ours:>7.2}s  {:>7.0} MB/s of replica = {:.0}% of raw",
            replica_mb / ours,
            raw / ours * 100.0
        );
        println!(
            "  fastest runs            raw {raw_best:.2}s, ours {ours_best:.2}s = {:.0}% of raw",
            raw_best / ours_best * 100.0
        );
        let show = |v: &[(f64, f64)]| {
            v.iter()
                .map(|(a, b)| format!("{a:.2}+{b:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  CPU s (client+store) on {} cores: raw [{}], ours [{}]",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            show(&raw_cpu),
            show(&ours_cpu)
        );
        println!(
            "  litestream restore      {theirs:>7.2}s  {:>7.0} MB/s of replica",
            replica_mb / theirs
        );
        println!(
            "  speed-up vs litestream  {:>7.2}x  (target >= 2x)",
            theirs / ours
        );
    }
}

/// CPU seconds (user + system, all threads) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is 3rd, utime 14th, stime 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of (this process, the S3 server process `store`) so far.
fn cpu_now(store: u32) -> (f64, f64) {
    (cpu_secs(std::process::id()), cpu_secs(store))
}

/// CPU seconds of (this process, `store`) since `cpu_now` returned `then`.
fn cpu_since(then: (f64, f64), store: u32) -> (f64, f64) {
    let now = cpu_now(store);
    (now.0 - then.0, now.1 - then.1)
}

/// With `BENCH_TIMELINE` set, when each file of our restore was downloaded and applied,
/// and this process's CPU seconds so far.
struct Timeline(Instant);

impl Timeline {
    fn event(&self, what: &str, f: &ltx::replica::LtxFileInfo) {
        if std::env::var_os("BENCH_TIMELINE").is_some() {
            eprintln!(
                "{:>6.3}s {what} {} ({} bytes), CPU {:.2}s",
                self.0.elapsed().as_secs_f64(),
                f.key.file_name(),
                f.size,
                cpu_secs(std::process::id())
            );
        }
    }
}

impl ltx::restore::Progress for Timeline {
    fn downloaded(&self, f: &ltx::replica::LtxFileInfo, _resumed: bool) {
        self.event("downloaded", f);
    }
    fn applied(&self, f: &ltx::replica::LtxFileInfo) {
        self.event("applied", f);
    }
}

/// `perf record -D -1 --control=fifo:F` with `PERF_CTL_FIFO=F` profiles our restores only.
fn perf_ctl(cmd: &str) {
    if let Ok(p) = std::env::var("PERF_CTL_FIFO") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        writeln!(f, "{cmd}").unwrap();
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
