//! A drain that cannot finish is not handed on silently: the object store becomes
//! unreachable (a proxy in front of SeaweedFS is cut), the writer gets SIGTERM, its final
//! sync cannot publish within `drainTimeout`; the Lease is kept (not released), says what
//! is unsynced, and the operator reports it in status and with a Warning Event.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use e2e::proxy::Proxy;
use e2e::Fixture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn unfinished_drain_keeps_the_lease_and_says_what_is_unsynced() -> Result<()> {
    let Some(f) = Fixture::start("drainfail").await? else {
        return Ok(());
    };
    let store: std::net::SocketAddr = f.s3.endpoint.trim_start_matches("http://").parse()?;
    let proxy = Proxy::start(store).await?;
    f.s3_database(
        "audit",
        json!({"syncInterval": "1s", "writer": {"leaseDuration": "5s", "drainTimeout": "2s"},
               "replica": {"s3": {"endpoint": format!("http://127.0.0.1:{}", proxy.port)}}}),
    )
    .await?;
    let mut w = f.start_pod("audit-0", "audit", "write", json!([])).await?;
    let end = Instant::now() + Duration::from_secs(30);
    while w.containers[0].line_count() < 5 {
        ensure!(
            Instant::now() < end,
            "writer never wrote:\n{}",
            w.containers[0].stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    // Commits go on into the write buffer while the store is away.
    let before = w.containers[0].line_count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        w.containers[0].line_count() > before,
        "writes stopped with the store"
    );
    let t = Instant::now();
    w.delete();
    let code = w.app().exited();
    ensure!(code.is_some(), "writer did not exit");
    let drain = t.elapsed();
    // The hand-over note must be written before the kubelet's SIGKILL (drainTimeout + 10 s).
    ensure!(
        drain < Duration::from_secs(12),
        "the drain took {drain:?}, past the grace period"
    );
    ensure!(code.is_some_and(|c| c.success()), "writer exit {code:?}");

    let leases: Api<Lease> = Api::namespaced(f.client.clone(), &f.ns);
    let lease = leases.get("audit-writer").await?;
    let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
    // Holder identities are the pod name plus its incarnation and process.
    ensure!(
        holder.as_deref().is_some_and(|h| h.starts_with("audit-0_")),
        "the lease was handed on: holder {holder:?}"
    );
    let unsynced = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("sqlitekube.dev/unsynced").cloned())
        .filter(|u| !u.is_empty())
        .context("no unsynced note on the lease")?;
    ensure!(
        unsynced.contains("did not finish within the drain timeout"),
        "{unsynced}"
    );

    let status = e2e::wait_for(20, "status.unsynced", || async {
        let st = f.database("audit").await.ok()?.status?;
        st.unsynced.is_some().then_some(st)
    })
    .await?;
    let h = status.last_handoff.context("no lastHandoff")?;
    ensure!(!h.complete && h.from == "audit-0", "{h:?}");
    let events: Api<Event> = Api::namespaced(f.client.clone(), &f.ns);
    e2e::wait_for(10, "a DrainIncomplete event on the database", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("DrainIncomplete")
                && e.involved_object.kind.as_deref() == Some("SqliteDatabase")
        })
    })
    .await?;
    eprintln!("drain gave up after {drain:?}: {unsynced}");
    f.operator.unwrap().stop().await;
    Ok(())
}
