//! `kubectl sqlite` as kubectl runs it (the `kubectl-sqlite` binary found on PATH), against
//! the real API server, the operator and SeaweedFS: `status` (table and JSON) shows what the
//! operator observed; `restore` writes the same database `litestream restore` does;
//! `switchover` evicts the writer and returns once the waiting pod writes, with 0
//! acknowledged rows lost. The pods run on the kubelet stand-in, which the test plays for
//! the eviction: when the API marks the writer pod deleted, its process gets SIGTERM.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use e2e::{Fixture, LocalPod};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;

fn kubectl_sqlite(args: &[&str]) -> Result<std::process::Output> {
    let bin = e2e::binary("kubectl-sqlite")?;
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ok(Command::new("kubectl")
        .arg("sqlite")
        .args(args)
        .env("PATH", path)
        .env_remove("AWS_CA_BUNDLE")
        .output()?)
}

fn ok(o: std::process::Output) -> Result<String> {
    ensure!(
        o.status.success(),
        "kubectl sqlite failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn ids(p: &LocalPod) -> Vec<i64> {
    p.printed_ids()
}

async fn wait_ids(p: &LocalPod, n: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    while ids(p).len() < n {
        ensure!(Instant::now() < end, "{} did not write", p.name);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Every row `pods` acknowledged is in the replica (restored by `litestream restore`, which
/// passes integrity_check); returns them.
fn none_lost(f: &Fixture, url: &str, pods: &[&LocalPod], when: &str) -> Result<BTreeSet<i64>> {
    let acked: BTreeSet<i64> = pods.iter().flat_map(|p| ids(p)).collect();
    let (integrity, rows) = f.litestream_rows(url, &f.work.path().join(testkit::unique("end")))?;
    ensure!(integrity == "ok", "integrity_check: {integrity}");
    let lost: Vec<_> = acked.difference(&rows).take(10).collect();
    ensure!(lost.is_empty(), "acknowledged rows lost {when}: {lost:?}");
    Ok(acked)
}

#[tokio::test(flavor = "multi_thread")]
async fn status_restore_and_switchover() -> Result<()> {
    let Some(f) = Fixture::start("plugin").await? else {
        return Ok(());
    };
    let url = f
        .s3_database(
            "orders",
            json!({"syncInterval": "1s", "writer": {"leaseDuration": "10s", "drainTimeout": "10s"}}),
        )
        .await?;
    let ns = f.ns.clone();
    let mut a = f
        .start_pod("orders-a", "orders", "write", json!([]))
        .await?;
    wait_ids(&a, 30).await?;
    let mut b = f
        .start_pod(
            "orders-b",
            "orders",
            "write",
            json!([{"name": "SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS", "value": "30000"}]),
        )
        .await?;

    // status: the operator's view, as a table and as JSON.
    let st = e2e::wait_for(30, "the writer and a TXID in status", || {
        let f = &f;
        async move {
            let st = f.database("orders").await.ok()?.status?;
            (st.writer.as_ref()?.pod == "orders-a" && st.last_synced_txid.is_some()).then_some(st)
        }
    })
    .await?;
    let table = ok(kubectl_sqlite(&["status", "-n", &ns])?)?;
    let row = table
        .lines()
        .find(|l| l.starts_with("orders "))
        .with_context(|| format!("no row for orders:\n{table}"))?;
    ensure!(
        row.contains("Ready") && row.contains("orders-a"),
        "status row: {row}\n{table}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&ok(kubectl_sqlite(&["status", "-n", &ns, "-o", "json"])?)?)?;
    ensure!(
        rows[0]["name"] == "orders" && rows[0]["writer"] == "orders-a",
        "{rows}"
    );
    ensure!(
        rows[0]["epoch"].as_i64() == st.writer.as_ref().unwrap().epoch,
        "{rows}"
    );

    // restore: the same rows litestream restores.
    let out = f.work.path().join("plugin-restore.db");
    let said = ok(kubectl_sqlite(&[
        "restore",
        "orders",
        "-n",
        &ns,
        "--to",
        out.to_str().unwrap(),
    ])?)?;
    let (_, want) = f.litestream_rows(&url, &f.work.path().join(testkit::unique("ls")))?;
    let c = rusqlite::Connection::open(&out)?;
    let got: BTreeSet<i64> = c
        .prepare("SELECT id FROM t")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // Both read the replica while A writes: litestream's later restore holds at least ours.
    ensure!(
        !got.is_empty() && got.is_subset(&want),
        "restore: {said}; {} rows, litestream {}",
        got.len(),
        want.len()
    );

    // switchover: evict A; the test plays the kubelet (SIGTERM once the pod is deleted).
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), &ns);
    let ns2 = ns.clone();
    let cmd = tokio::task::spawn_blocking(move || {
        kubectl_sqlite(&["switchover", "orders", "-n", &ns2, "--timeout", "60s"])
    });
    e2e::wait_for(30, "the eviction of orders-a", || {
        let pods = pods.clone();
        async move {
            match pods.get_opt("orders-a").await.ok()? {
                None => Some(()),
                Some(p) => p.metadata.deletion_timestamp.map(|_| ()),
            }
        }
    })
    .await?;
    a.delete();
    ensure!(
        a.app().exited().is_some_and(|c| c.success()),
        "orders-a did not drain"
    );
    let said = ok(cmd.await??)?;
    ensure!(
        said.contains("orders-a published through TXID") && said.contains("orders-b writes now"),
        "{said}"
    );
    wait_ids(&b, 10).await?;
    b.delete();
    ensure!(
        b.app().exited().is_some_and(|c| c.success()),
        "orders-b did not drain"
    );
    let acked = none_lost(&f, &url, &[&a, &b], "in the switchover")?;
    eprintln!(
        "kubectl sqlite: status, restore ({} rows), switchover: {} — {} rows acknowledged, 0 lost",
        got.len(),
        said.trim(),
        acked.len()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}

/// `fence` stops writes the way a lost lease does: the writer refuses writes from its next
/// renewal (and still publishes what it committed), the status says Fenced, a new pod waits
/// as a standby. `unfence` waits for the fenced writer's report, then the waiting pod
/// takes over; every acknowledged row is in the replica.
#[tokio::test(flavor = "multi_thread")]
async fn fence_stops_writes_and_unfence_lets_a_waiting_pod_take_over() -> Result<()> {
    let Some(f) = Fixture::start("fence").await? else {
        return Ok(());
    };
    let url = f
        .s3_database(
            "shelf",
            json!({"syncInterval": "1s", "writer": {"leaseDuration": "5s", "drainTimeout": "10s"}}),
        )
        .await?;
    let ns = f.ns.clone();
    let status = |p: &LocalPod| -> Result<serde_json::Value> {
        let file = p.volumes["sqlite-kube-data"].join("shelf.db-status.json");
        Ok(serde_json::from_str(&std::fs::read_to_string(file)?)?)
    };
    let mut a = f.start_pod("shelf-a", "shelf", "write", json!([])).await?;
    wait_ids(&a, 20).await?;

    let said = ok(kubectl_sqlite(&[
        "fence",
        "shelf",
        "-n",
        &ns,
        "--reason",
        "disk swap",
    ])?)?;
    ensure!(
        said.contains("fenced (epoch") && said.contains("shelf-a"),
        "{said}"
    );
    // A's writes stop within a renewal period (1.25 s) plus a write attempt.
    e2e::wait_for(10, "the fenced writer refusing writes", || {
        let err = a.containers[0].stderr();
        async move { err.contains("write failed").then_some(()) }
    })
    .await?;
    let stopped = ids(&a).len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        ids(&a).len() == stopped,
        "the fenced writer still commits: {} -> {}",
        stopped,
        ids(&a).len()
    );
    e2e::wait_for(30, "status condition WriterHeld=False/Fenced", || {
        let f = &f;
        async move {
            let st = f.database("shelf").await.ok()?.status?;
            let c = st.conditions.iter().find(|c| c.type_ == "WriterHeld")?;
            (c.status == "False" && c.reason == "Fenced" && c.message.contains("disk swap"))
                .then_some(())
        }
    })
    .await?;

    // A new pod waits while fenced.
    let mut b = f
        .start_pod(
            "shelf-b",
            "shelf",
            "write",
            json!([{"name": "SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS", "value": "30000"}]),
        )
        .await?;
    e2e::wait_for(20, "shelf-b standing by", || {
        let s = status(&b).ok();
        async move { s.filter(|s| s["role"] == "standby") }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(ids(&b).is_empty(), "shelf-b wrote while fenced");

    // unfence waits for A's "all published" note, then B takes over.
    let said = ok(kubectl_sqlite(&[
        "unfence",
        "shelf",
        "-n",
        &ns,
        "--timeout",
        "30s",
    ])?)?;
    ensure!(said.contains("unfenced"), "{said}");
    wait_ids(&b, 10).await?;
    a.delete();
    b.delete();
    ensure!(
        b.app().exited().is_some_and(|c| c.success()),
        "shelf-b did not drain"
    );
    let acked = none_lost(&f, &url, &[&a, &b], "across the fence")?;
    eprintln!(
        "fence: shelf-a stopped after {stopped} rows, shelf-b took over after unfence; {} acknowledged, 0 lost",
        acked.len()
    );
    f.operator.unwrap().stop().await;
    Ok(())
}
