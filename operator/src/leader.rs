//! Leader election between operator replicas, on a Lease. Only the leader reconciles; a
//! standby waits. A leader that cannot renew before its lease could have expired stops
//! its work and returns an error (the process exits and is restarted as a standby), so two
//! replicas never reconcile at once. On shutdown the lease is released for a fast hand-over.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lease::{Attempt, LeaseLock};
use tracing::{info, warn};

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost leadership: {0}")]
    Lost(String),
}

/// Waits to become leader, then runs `work` while renewing. Returns when `shutdown`
/// resolves (after releasing the lease) or `work` ends; errors when leadership is lost.
pub async fn run_as_leader<W, S>(
    lock: LeaseLock,
    metrics: Arc<Metrics>,
    shutdown: S,
    work: W,
) -> Result<(), LeaderError>
where
    W: Future<Output = ()> + Send + 'static,
    S: Future<Output = ()>,
{
    let retry = lock.duration() / 5;
    tokio::pin!(shutdown);
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(Attempt::Held { epoch, .. }) => {
                info!(identity = lock.identity(), epoch, "became leader");
                break;
            }
            Ok(Attempt::HeldBy(h)) => {
                tracing::debug!(holder = %h.identity, "standing by");
            }
            Err(e) => warn!(error = %e, "leader election"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
    metrics.leader.set(1);
    let mut renewed = Instant::now();
    let mut task = tokio::spawn(work);
    let outcome = loop {
        tokio::select! {
            _ = tokio::time::sleep(retry) => {
                match lock.try_acquire_or_renew().await {
                    Ok(Attempt::Held { .. }) => renewed = Instant::now(),
                    Ok(Attempt::HeldBy(h)) => break Err(LeaderError::Lost(format!("now held by {}", h.identity))),
                    Err(e) => {
                        warn!(error = %e, "could not renew the leader lease");
                        if Instant::now() >= lock.safe_until(renewed) {
                            break Err(LeaderError::Lost(format!("no renewal for {:?}", renewed.elapsed())));
                        }
                    }
                }
            }
            _ = &mut shutdown => break Ok(()),
            _ = &mut task => break Ok(()),
        }
    };
    task.abort();
    metrics.leader.set(0);
    if outcome.is_ok() {
        // Bounded: a shutdown must not hang on an unreachable API server.
        match tokio::time::timeout(Duration::from_secs(5), lock.release()).await {
            Ok(Ok(true)) => info!("released the leader lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not release the leader lease"),
            Err(_) => warn!("releasing the leader lease timed out"),
        }
    }
    outcome
}
