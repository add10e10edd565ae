//! Wires the reconciler into a kube-runtime `Controller`: watches `SqliteDatabase`s and the
//! writer Leases they own, runs reconciles concurrently, requeues errors with backoff.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use tracing::{debug, info};

use crds::SqliteDatabase;

use crate::reconcile::{error_policy, reconcile};
use crate::{Context, Result};

/// Which namespaces the controller watches.
#[derive(Debug, Clone, Default)]
pub enum Scope {
    #[default]
    All,
    Namespace(String),
}

/// Runs the controller until the stream ends (on shutdown). Fails at once when the
/// `SqliteDatabase` CRD is not installed, with a message that says so.
pub async fn run(
    ctx: Arc<Context>,
    scope: Scope,
    concurrency: u16,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let client = ctx.client.clone();
    let (dbs, leases): (Api<SqliteDatabase>, Api<Lease>) = match &scope {
        Scope::All => (Api::all(client.clone()), Api::all(client.clone())),
        Scope::Namespace(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
    };
    dbs.list(&ListParams::default().limit(1))
        .await
        .map_err(|e| {
            crate::Error::Kube(match e {
                kube::Error::Api(mut s) if s.code == 404 => {
                    s.message = format!(
                    "the SqliteDatabase CRD is not installed (kubectl apply -f config/crd/): {}",
                    s.message
                );
                    kube::Error::Api(s)
                }
                e => e,
            })
        })?;
    ready.store(true, Ordering::Relaxed);
    info!(?scope, concurrency, "controller started");
    let label = format!("{}={}", crate::MANAGED_BY.0, crate::MANAGED_BY.1);
    let controller = Controller::new(dbs, watcher::Config::default().any_semantic());
    ctx.set_databases(controller.store());
    controller
        .owns(leases, watcher::Config::default().labels(&label))
        .with_config(controller::Config::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "controller event");
            }
        })
        .await;
    Ok(())
}
