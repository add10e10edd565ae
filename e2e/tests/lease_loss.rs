//! A writer that loses its lease stops writing in time, resumes when the API server comes
//! back, and a stale writer's later publish is refused by the object store itself.
//!
//! 1. Writer A reaches the API server through a proxy; the proxy is cut, so A cannot
//!    renew. A's last committed transaction began no later than 80 % of the lease after its
//!    last successful renewal began (and within 1 s before it: it did not stop early); its
//!    writes then fail with `database is locked` (SQLITE_BUSY). The API server comes back:
//!    A writes again.
//! 2. The proxy is cut again and B takes over once A's lease has run out. Every row A
//!    acknowledged is in the replica (its store was reachable all along).
//! 3. Writer B is frozen (SIGSTOP, like a long GC pause or a hung node) while it holds
//!    acknowledged but unpublished commits (checked: they are not in the replica at the
//!    freeze). C takes over. B is thawed and tries to publish: the store refuses (C's fence
//!    file holds that TXID), B reports itself fenced, and those commits never reach the
//!    replica.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Result};
use e2e::proxy::{api_server_addr, Proxy};
use e2e::{Fixture, Kubelet, LocalPod};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(5);

/// (id, when its transaction began) as the app printed them.
fn commits(p: &LocalPod) -> Vec<(i64, SystemTime)> {
    p.containers[0]
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, l)| {
            let mut it = l.split_whitespace();
            let id = it.next()?.parse().ok()?;
            let ms: u64 = it.next()?.parse().ok()?;
            Some((id, SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
        })
        .collect()
}

fn ids(p: &LocalPod) -> BTreeSet<i64> {
    commits(p).into_iter().map(|(i, _)| i).collect()
}

async fn wait_commits(p: &LocalPod, n: usize, within: Duration) -> Result<()> {
    let end = Instant::now() + within;
    while commits(p).len() < n {
        ensure!(
            Instant::now() < end,
            "pod {} committed {} rows in {within:?} (wanted {n}):\n{}",
            p.name,
            commits(p).len(),
            p.containers[0].stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The app's env: timestamps on every commit.
fn env() -> serde_json::Value {
    json!([{"name": "SQLITE_KUBE_DEMO_TIMESTAMPS", "value": "1"}])
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_lease_stops_writes_and_the_store_refuses_the_stale_writer() -> Result<()> {
    let Some(f) = Fixture::start("leaseloss").await? else {
        return Ok(());
    };
    let url = f
        .s3_database(
            "stock",
            json!({"syncInterval": "1s", "writer": {"leaseDuration": "5s", "drainTimeout": "10s"}}),
        )
        .await?;

    // 1. API server unreachable for A, then back.
    let kubeconfig = std::path::PathBuf::from(std::env::var("KUBECONFIG")?);
    let proxy = Proxy::start(api_server_addr(&kubeconfig)?).await?;
    let proxied = f.work.path().join("kubeconfig-a");
    proxy.kubeconfig(&kubeconfig, &proxied)?;
    let kubelet_a = Kubelet {
        client: f.client.clone(),
        images: f.kubelet.images.clone(),
        work: f.work.path().to_path_buf(),
        extra_env: vec![("KUBECONFIG".into(), proxied.display().to_string())],
    };
    let pod = f.create_pod("stock-a", "stock", "write", env()).await?;
    let mut a = kubelet_a.run(&pod).await?;
    wait_commits(&a, 5, Duration::from_secs(30)).await?;
    let cut = SystemTime::now();
    proxy.cut();
    tokio::time::sleep(LEASE.mul_f64(0.8) + Duration::from_secs(2)).await;
    let before = commits(&a);
    let last = before.iter().map(|(_, t)| *t).max().unwrap();
    let stopped_after = last.duration_since(cut).unwrap_or_default();
    // The bound, exactly: writes are accepted until 80 % of the lease after the last
    // successful renewal began (A's status says when that was).
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        a.volumes["sqlite-kube-data"].join("stock.db-status.json"),
    )?)?;
    let renewed: jiff::Timestamp = status["lease"]["renewal_started_at"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no renewal time in A's status: {status}"))?
        .parse()?;
    let renewed = SystemTime::from(renewed);
    ensure!(renewed <= cut, "A renewed after the cut: {status}");
    let bound = renewed + LEASE.mul_f64(0.8);
    // Each time is when the transaction began; the lease is checked again at its commit
    // (EXCLUSIVE), so no transaction that began after the bound can have committed.
    ensure!(
        last <= bound + Duration::from_millis(50),
        "A committed a transaction that began {:?} past 80 % of its lease after its last renewal",
        last.duration_since(bound).unwrap_or_default()
    );
    // And it wrote right up to it (every 10 ms): it did not stop early.
    ensure!(
        last + Duration::from_secs(1) >= bound,
        "A stopped {:?} before its lease bound",
        bound.duration_since(last).unwrap_or_default()
    );
    let a_err = a.containers[0].stderr();
    ensure!(
        a_err.contains("not renewed in time") && a_err.contains("database is locked"),
        "A's writes must fail with SQLITE_BUSY (database is locked) and say why:\n{a_err}"
    );
    proxy.restore();
    let resumed = Instant::now();
    wait_commits(&a, before.len() + 5, Duration::from_secs(15)).await?;
    eprintln!(
        "A stopped committing {stopped_after:?} after the API server became unreachable (lease {LEASE:?}); resumed {:?} after it came back",
        resumed.elapsed()
    );

    // 2. Cut again: B takes over once A's lease has run out.
    proxy.cut();
    let mut b = f.start_pod("stock-b", "stock", "write", env()).await?;
    wait_commits(&b, 5, Duration::from_secs(30)).await?;
    let a_final = ids(&a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(ids(&a) == a_final, "A wrote again after B took over");

    // 3. B frozen with acknowledged, unpublished commits; C takes over; B thawed is refused.
    let restore_to = |n: &str| f.work.path().join(format!("{n}-{}", testkit::unique("r")));
    let of = |rows: &BTreeSet<(i64, String)>, pod: &str| -> BTreeSet<i64> {
        let tag = format!("from {pod}");
        rows.iter()
            .filter(|(_, v)| *v == tag)
            .map(|(i, _)| *i)
            .collect()
    };
    let mut published_b = BTreeSet::new();
    let mut unpublished = BTreeSet::new();
    for attempt in 0..5 {
        wait_commits(&b, commits(&b).len() + 20, Duration::from_secs(30)).await?;
        b.app().signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, rows) = f.litestream_rows_by_writer(&url, &restore_to("frozen"))?;
        published_b = of(&rows, "stock-b");
        unpublished = ids(&b).difference(&published_b).copied().collect();
        if !unpublished.is_empty() {
            break;
        }
        // Frozen right after a publish: thaw and try again.
        eprintln!("attempt {attempt}: B had published everything when frozen; retrying");
        b.app().signal(libc::SIGCONT);
    }
    ensure!(
        !unpublished.is_empty(),
        "could not freeze B with unpublished commits in 5 attempts"
    );
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    let mut c = f.start_pod("stock-c", "stock", "write", env()).await?;
    wait_commits(&c, 5, Duration::from_secs(30)).await?;
    b.app().signal(libc::SIGCONT);
    let status_file = b.volumes["sqlite-kube-data"].join("stock.db-status.json");
    let end = Instant::now() + Duration::from_secs(15);
    let fenced = loop {
        let s: serde_json::Value = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        if let Some(m) = s["fenced"].as_str() {
            break m.to_string();
        }
        ensure!(
            Instant::now() < end,
            "B was not fenced after thawing; status {s}\n{}",
            b.containers[0].stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(
        fenced.contains("already published TXID") && fenced.contains("epoch"),
        "B's fencing does not come from the store's refusal: {fenced}"
    );
    eprintln!(
        "stale writer with {} unpublished commits refused by the store: {fenced}",
        unpublished.len()
    );

    // The replica: everything A and C acknowledged, none of B's unpublished commits, intact.
    c.delete();
    ensure!(
        c.app().exited().is_some_and(|s| s.success()),
        "C did not drain cleanly"
    );
    for p in [&mut a, &mut b] {
        p.delete();
    }
    let (integrity, rows) = f.litestream_rows_by_writer(&url, &restore_to("final"))?;
    ensure!(
        integrity == "ok",
        "restored replica is not intact: {integrity}"
    );
    let a_rows = of(&rows, "stock-a");
    let lost_a: Vec<_> = a_final.difference(&a_rows).take(5).collect();
    ensure!(
        lost_a.is_empty(),
        "rows A acknowledged are missing: {lost_a:?}"
    );
    let c_rows = of(&rows, "stock-c");
    let lost_c: Vec<_> = ids(&c).difference(&c_rows).copied().take(5).collect();
    ensure!(
        lost_c.is_empty(),
        "rows C acknowledged are missing: {lost_c:?}"
    );
    ensure!(
        of(&rows, "stock-b") == published_b,
        "the fenced writer's rows in the replica changed after it was frozen: {} unpublished \
         commits must have stayed out",
        unpublished.len()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}
