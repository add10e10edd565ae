//! A writer that loses its lease stops writing within the lease duration, and a stale
//! writer's later publish is refused by the object store itself.
//!
//! 1. Writer A reaches the API server through a proxy; the proxy is cut, so A cannot
//!    renew. A must stop committing within the lease duration; writer B takes over once
//!    the lease has run out.
//! 2. Writer B is frozen (SIGSTOP, like a long GC pause or a hung node) with committed but
//!    unpublished transactions; C takes over. B is thawed and tries to publish: the store
//!    refuses (C's fence file holds that TXID) and B reports itself fenced.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use e2e::proxy::{api_server_addr, Proxy};
use e2e::{Fixture, Kubelet, LocalPod};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(5);

fn ids(p: &LocalPod) -> Vec<(Instant, i64)> {
    p.containers[0]
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(t, l)| l.trim().parse().ok().map(|i| (*t, i)))
        .collect()
}

async fn wait_ids(p: &LocalPod, n: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    while ids(p).len() < n {
        ensure!(
            Instant::now() < end,
            "pod {} wrote {} rows in 30 s:\n{}",
            p.name,
            ids(p).len(),
            p.containers[0].stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
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

    // 1. API server unreachable for A.
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
    let pod = f.create_pod("stock-a", "stock", "write", json!([])).await?;
    let mut a = kubelet_a.run(&pod).await?;
    wait_ids(&a, 5).await?;
    let cut = Instant::now();
    proxy.cut();
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    let a_ids = ids(&a);
    let (last_t, _) = *a_ids.last().unwrap();
    let stopped_after = last_t.saturating_duration_since(cut);
    ensure!(
        stopped_after < LEASE,
        "A kept committing {stopped_after:?} after losing the API server (lease {LEASE:?})"
    );
    ensure!(
        a.containers[0].stderr().contains("not renewed in time"),
        "A does not say why writes stopped:\n{}",
        a.containers[0].stderr()
    );
    // B takes over once A's lease has run out.
    let mut b = f.start_pod("stock-b", "stock", "write", json!([])).await?;
    wait_ids(&b, 5).await?;
    ensure!(
        ids(&a).len() == a_ids.len(),
        "A wrote again after B took over"
    );
    eprintln!(
        "A stopped committing {stopped_after:?} after the API server became unreachable (lease {LEASE:?})"
    );

    // 2. B frozen with unpublished commits; C takes over; B thawed is refused by the store.
    wait_ids(&b, ids(&b).len() + 3).await?;
    b.app().signal(libc::SIGSTOP);
    let frozen_at = ids(&b).len();
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    let mut c = f.start_pod("stock-c", "stock", "write", json!([])).await?;
    wait_ids(&c, 5).await?;
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
    ensure!(
        ids(&b).len() <= frozen_at + 1,
        "B kept committing after it was thawed"
    );
    eprintln!("stale writer refused by the store: {fenced}");

    // Everything C committed is in the replica; it is intact.
    c.delete();
    ensure!(
        c.app().exited().is_some_and(|s| s.success()),
        "C did not drain cleanly"
    );
    for p in [&mut a, &mut b] {
        p.delete();
    }
    let (integrity, rows) = f.litestream_rows(&url, &f.work.path().join("restored.db"))?;
    ensure!(
        integrity == "ok",
        "restored replica is not intact: {integrity}"
    );
    let c_ids: BTreeSet<i64> = ids(&c).into_iter().map(|(_, i)| i).collect();
    ensure!(c_ids.is_subset(&rows), "rows C committed are missing");
    f.operator.unwrap().stop().await;
    Ok(())
}
