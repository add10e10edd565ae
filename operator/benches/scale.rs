//! Reconcile throughput and operator memory with many `SqliteDatabase` objects on a real
//! API server: `scripts/bench-operator.sh` (or `cargo bench -p operator --bench scale` with
//! KUBECONFIG set). Targets: all Ready within 60 s, operator RSS < 50 MiB.
//!
//! Baseline measured in the same run: the time the API server takes just to accept the
//! creates (the floor for any controller); the report prints Ready time against it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use common::*;
use crds::{Phase, SqliteDatabase};

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_DATABASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "bench").await;
    let replicas = tempfile::tempdir().unwrap();
    let op = OperatorProcess::spawn(&ns, &["--resync", "30s"]);
    let pid = op.child.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");

    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let dbs = dbs.clone();
            let dir = replicas.path().join(format!("db{i}"));
            async move {
                let name = format!("db-{i:04}");
                dbs.patch(
                    &name,
                    &PatchParams::apply("bench"),
                    &Patch::Apply(json!({
                        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
                        "metadata": {"name": name},
                        "spec": {"replica": {"file": {"path": dir}}}
                    })),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("creating databases");
    let created = t0.elapsed();

    let mut peak_rss = 0;
    let ready_at = loop {
        peak_rss = peak_rss.max(rss_kib(pid, "VmRSS:"));
        let list = dbs.list(&ListParams::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Ready))
            .count();
        if ready == n {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(300) {
            eprintln!("{}", op.log_tail());
            panic!("only {ready}/{n} Ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Keep watching through a resync round to see steady-state memory.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(35) {
        peak_rss = peak_rss.max(rss_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let hwm = rss_kib(pid, "VmHWM:");
    let metrics = http_get(&format!("{}/metrics", op.metrics)).unwrap_or_default();
    let reconciles = metrics
        .lines()
        .find(|l| l.starts_with("sqlitekube_operator_reconciliations_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();

    println!(
        "operator scale bench: {n} SqliteDatabase objects (file replicas), one operator process"
    );
    println!(
        "  baseline: API server accepted {n} creates in {:.2} s ({:.0}/s)",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64()
    );
    println!(
        "  all {n} Ready after {:.2} s from the first create = {:.2}x the create baseline  (target: < 60 s) {}",
        ready_at.as_secs_f64(),
        ready_at.as_secs_f64() / created.as_secs_f64(),
        if ready_at < Duration::from_secs(60) { "MET" } else { "NOT MET" }
    );
    println!(
        "  operator RSS: idle {:.1} MiB, peak sampled {:.1} MiB, VmHWM {:.1} MiB  (target: < 50 MiB) {}",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        if hwm < 50 * 1024 { "MET" } else { "NOT MET" }
    );
    println!("  reconciles so far: {reconciles} (one resync round included)");
    drop(op);
}
