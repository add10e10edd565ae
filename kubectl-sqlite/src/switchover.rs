//! `kubectl sqlite switchover`: the writer pod is evicted (so PodDisruptionBudgets apply),
//! which is a SIGTERM: its final sync, then the Lease released with its TXID. A waiting pod
//! (a standby, or the Deployment's replacement) takes over. Done when the status shows the
//! complete hand-over from the old pod and another pod holding the Lease.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, EvictParams};
use kube::Client;

use crds::SqliteDatabase;

pub async fn run(client: &Client, ns: &str, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<SqliteDatabase> = Api::namespaced(client.clone(), ns);
    let db = api
        .get(name)
        .await
        .with_context(|| format!("SqliteDatabase {ns}/{name}"))?;
    let Some(old) = db.status.and_then(|s| s.writer).map(|w| w.pod) else {
        bail!("no pod holds the writer lease of {ns}/{name}: nothing to switch over");
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    match pods.evict(&old, &EvictParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 429 => {
            bail!(
                "a PodDisruptionBudget does not allow evicting {ns}/{old} now: {}",
                e.message
            )
        }
        // Servers without policy/v1 evictions (before 1.22): a graceful delete is the same
        // SIGTERM, without the budget check.
        Err(kube::Error::Api(e)) if matches!(e.code, 400 | 404 | 415) => {
            eprintln!(
                "eviction not available ({}); deleting {old} gracefully",
                e.message
            );
            pods.delete(&old, &DeleteParams::default())
                .await
                .with_context(|| format!("deleting the writer pod {ns}/{old}"))?;
        }
        Err(e) => return Err(e).with_context(|| format!("evicting the writer pod {ns}/{old}")),
    }
    eprintln!("{ns}/{name}: evicted the writer {old}; waiting for its hand-over");
    loop {
        let st = api.get(name).await?.status.unwrap_or_default();
        let handed = st.last_handoff.as_ref().filter(|h| h.from == old);
        if let Some(h) = handed {
            if !h.complete {
                bail!(
                    "{old} stopped with work unsynced: {}",
                    st.unsynced.unwrap_or_default()
                );
            }
            if let Some(w) = st.writer.as_ref().filter(|w| w.pod != old) {
                println!(
                    "{ns}/{name}: {old} published through TXID {} and handed over; {} writes now (epoch {}), after {:.1?}",
                    h.txid,
                    w.pod,
                    w.epoch.unwrap_or_default(),
                    started.elapsed()
                );
                return Ok(());
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "no new writer within {timeout:?} (last hand-over: {:?}; writer: {:?}); a pod must be waiting for the lease",
                st.last_handoff,
                st.writer.map(|w| w.pod)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
