//! Writer benchmark (`scripts/bench-writers.sh`): pod admission latency through the
//! webhook and writer hand-off time on drain, each against a baseline measured in the same
//! run.
//!
//! - Admission: creating opted-in pods (the API server calls the operator's webhook over
//!   TLS) vs creating the same pods in a namespace the webhook does not cover; plus the
//!   webhook's own server-side p99 from its histogram. Target: p99 < 10 ms.
//! - Hand-off: SIGTERM to the writer → first commit of the waiting successor (final sync,
//!   lease release, successor's acquisition, fence, first commit) vs a writer's cold
//!   start → first commit. Target: < 3 s.
//!
//! `BENCH_PODS` (default 200) and `BENCH_HANDOFFS` (default 10).

use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::Fixture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

fn env_n(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn create_pods(api: &Api<Pod>, prefix: &str, n: usize, opted: bool) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ann = if opted {
            json!({"sqlitekube.dev/database": "bench", "sqlitekube.dev/mode": "read"})
        } else {
            json!({})
        };
        let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{prefix}-{i}"), "annotations": ann},
            "spec": {"containers": [{"name": "app", "image": e2e::fixture::DEMO_IMAGE, "args": ["app"]}]}}))?;
        let t = Instant::now();
        api.create(&PostParams::default(), &pod).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return String::new();
    };
    let _ = write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The smallest histogram bucket holding ≥ 99 % of webhook requests.
fn server_p99(metrics: &str) -> Option<String> {
    let count: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sqlitekube_operator_admission_duration_seconds_count"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()?;
    metrics
        .lines()
        .filter(|l| l.starts_with("sqlitekube_operator_admission_duration_seconds_bucket"))
        .find_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_string();
            let n: f64 = l.split_whitespace().last()?.parse().ok()?;
            (n >= 0.99 * count).then_some(le)
        })
        .map(|le| format!("≤ {le} s ({count} requests)"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let Some(f) = Fixture::start("bench").await? else {
        return Ok(());
    };
    f.s3_database(
        "bench",
        json!({"syncInterval": "1s", "writer": {"leaseDuration": "5s", "drainTimeout": "10s"}}),
    )
    .await?;
    let n = env_n("BENCH_PODS", 200);

    // Admission.
    let plain_ns = e2e::namespace(&f.client, "bench-plain").await?;
    let plain: Api<Pod> = Api::namespaced(f.client.clone(), &plain_ns);
    // Make sure the webhook answers before timing it.
    f.create_pod("warmup", "bench", "read", json!([])).await?;
    let hooked: Api<Pod> = Api::namespaced(f.client.clone(), &f.ns);
    create_pods(&plain, "warm", 20, false).await?;
    let mut base = create_pods(&plain, "p", n, false).await?;
    let mut with = create_pods(&hooked, "w", n, true).await?;
    let (b50, b99) = (pct(&mut base, 0.5), pct(&mut base, 0.99));
    let (w50, w99) = (pct(&mut with, 0.5), pct(&mut with, 0.99));
    let metrics = http_get(&format!("{}/metrics", f.operator.as_ref().unwrap().metrics));
    println!("admission ({n} pods each)");
    println!(
        "  pod create, no webhook (baseline): p50 {}  p99 {}",
        ms(b50),
        ms(b99)
    );
    println!(
        "  pod create, through the webhook:   p50 {}  p99 {}  ({:.2}x / {:.2}x baseline)",
        ms(w50),
        ms(w99),
        w50.as_secs_f64() / b50.as_secs_f64(),
        w99.as_secs_f64() / b99.as_secs_f64()
    );
    println!(
        "  added by admission: p50 {}  p99 {}  (target p99 < 10 ms)",
        ms(w50.saturating_sub(b50)),
        ms(w99.saturating_sub(b99))
    );
    println!(
        "  webhook server side p99: {}",
        server_p99(&metrics).unwrap_or_else(|| "n/a".into())
    );

    // Hand-off.
    let rounds = env_n("BENCH_HANDOFFS", 10);
    let t = Instant::now();
    let mut cur = f.start_pod("writer-0", "bench", "write", json!([])).await?;
    while cur.containers[0].line_count() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cold = t.elapsed();
    let mut handoffs = Vec::new();
    for i in 1..=rounds {
        let next = f
            .start_pod(&format!("writer-{i}"), "bench", "write", json!([]))
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        cur.delete();
        while next.containers[0].line_count() < 1 {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(60),
                "successor never wrote"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handoffs.push(t0.elapsed());
        cur = next;
    }
    cur.delete();
    let (h50, hmax) = (pct(&mut handoffs, 0.5), *handoffs.iter().max().unwrap());
    println!("hand-off on drain ({rounds} rounds)");
    println!(
        "  writer cold start → first commit (baseline): {}",
        ms(cold)
    );
    println!(
        "  SIGTERM → successor's first commit: p50 {}  max {}  ({:.2}x baseline; target < 3 s)",
        ms(h50),
        ms(hmax),
        h50.as_secs_f64() / cold.as_secs_f64()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}
