//! A pod that comes back with the same name (a StatefulSet's `web-0`, recreated after its
//! node was lost) is a new writer: it must wait for the old holder's lease to run out, take
//! it over with a new epoch, record that epoch at the store and fence the next TXID. Before,
//! it matched the old holder's identity (the pod name), "renewed" the lease as if it had
//! always held it, and fenced nothing.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use e2e::{Fixture, LocalPod};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::json;

/// Ids a writer printed (each after its COMMIT returned).
fn ids(p: &LocalPod) -> Vec<i64> {
    p.printed_ids()
}

async fn wait_ids(p: &LocalPod, n: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(60);
    while ids(p).len() < n {
        ensure!(
            Instant::now() < end,
            "pod {} wrote {} rows in 60 s:\n{}",
            p.name,
            ids(p).len(),
            p.containers[0].stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_back_with_the_same_name_takes_over_and_fences() -> Result<()> {
    let Some(f) = Fixture::start("samename").await? else {
        return Ok(());
    };
    let url = f
        .s3_database(
            "web",
            json!({"syncInterval": "1s", "writer": {"leaseDuration": "5s", "drainTimeout": "10s"}}),
        )
        .await?;
    let replica = f.replica(&url)?;
    let mut old = f.start_pod("web-0", "web", "write", json!([])).await?;
    wait_ids(&old, 5).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let epochs_before = replica.epochs().await?;
    // The node is lost: the process dies without releasing, the pod object is removed.
    old.app().kill();
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), &f.ns);
    pods.delete(
        "web-0",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    e2e::wait_for(30, "the old web-0 gone", || async {
        matches!(pods.get_opt("web-0").await, Ok(None)).then_some(())
    })
    .await?;
    let txid_before = replica.latest_txid().await?;
    let mut new = f.start_pod("web-0", "web", "write", json!([])).await?;
    wait_ids(&new, 5).await?;

    let epochs = replica.epochs().await?;
    ensure!(
        epochs.len() == epochs_before.len() + 1,
        "the new web-0 recorded no epoch of its own: {epochs:?}"
    );
    let (was, now) = (epochs_before.last().unwrap(), epochs.last().unwrap());
    ensure!(
        now.epoch > was.epoch,
        "epoch did not move on: {was:?} → {now:?}"
    );
    ensure!(
        now.holder != was.holder && now.holder.starts_with("web-0_"),
        "the new incarnation must be a different holder: {} then {}",
        was.holder,
        now.holder
    );
    ensure!(
        now.txid >= txid_before,
        "the new writer took over at TXID {:x}, behind the replica's {txid_before:x}",
        now.txid
    );
    new.delete();
    ensure!(
        new.app().exited().is_some_and(|s| s.success()),
        "the new web-0 did not drain cleanly"
    );
    let (integrity, rows) = f.litestream_rows(&url, &f.work.path().join("final.db"))?;
    ensure!(integrity == "ok", "integrity_check: {integrity}");
    let lost: Vec<_> = ids(&new)
        .into_iter()
        .filter(|i| !rows.contains(i))
        .collect();
    ensure!(
        lost.is_empty(),
        "rows the new web-0 acknowledged are missing: {lost:?}"
    );
    eprintln!(
        "same name: epoch {} ({}) → {} ({}), fenced from TXID {:x}",
        was.epoch,
        was.holder,
        now.epoch,
        now.holder,
        now.txid + 1
    );
    f.operator.unwrap().stop().await;
    Ok(())
}
