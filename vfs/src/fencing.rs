//! Fencing on lease acquisition: a new writer records its lease epoch at the store and
//! claims the next TXID at once, so a stale writer that missed losing its lease is
//! refused by the store's create-only publish of that TXID. Also: the view a successor
//! starts from, which must include the previous writer's final sync.

use std::time::{Duration, Instant};

use ltx::replica::{CreateOnly, EpochRecord, ReplicaError};

use crate::config::Config;
use crate::database::Database;
use crate::error::{Fenced, VfsError};
use crate::remote::RemoteView;
use crate::store::Store;
use crate::writer_lease::WriterLease;

/// How long a successor waits for the store to list the TXID the previous writer said it
/// published. A store whose listing lags catches up within this; one that does not has
/// lost data, which the successor cannot bring back by waiting, so it logs the gap as an
/// error and continues from what the store lists (its own fence then claims the next TXID).
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// The replica's page map; for a writer that took over from one that released the lease
/// at TXID `n`, a map that includes `n` (or, after [`HANDOVER_WAIT`], what there is).
pub fn view_after_handover(
    store: &Store,
    lease: Option<&WriterLease>,
) -> Result<RemoteView, VfsError> {
    let mut view = store.load_view()?;
    let Some(want) = lease.and_then(|l| l.released_txid) else {
        return Ok(view);
    };
    let deadline = Instant::now() + HANDOVER_WAIT;
    while view.txid < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        view = store.load_view()?;
    }
    if view.txid < want {
        tracing::error!(
            listed = view.txid,
            released = want,
            "the previous writer reported publishing a TXID the replica does not list"
        );
    }
    Ok(view)
}

/// Before a writer accepts writes: proof that the store refuses a second create-only write,
/// since every fence below rests on that. A store that ignores it is refused unless the
/// settings allow an unfenced store, in which case the writer runs with a loud warning and
/// its status says so. Returns what the probe found.
pub fn check_create_only(store: &Store, cfg: &Config) -> Result<CreateOnly, VfsError> {
    let who = match &cfg.lease {
        Some(l) => l.holder.clone(),
        None => crate::config::holder_identity(
            &std::env::var("HOSTNAME").unwrap_or_else(|_| "writer".into()),
            None,
        ),
    };
    let found = store.probe_create_only(&who)?;
    if let CreateOnly::Ignored { detail } = &found {
        if !cfg.allow_unfenced_store {
            return Err(VfsError::UnfencedStore {
                url: cfg.replica_url.clone(),
                detail: detail.clone(),
            });
        }
        tracing::warn!(
            replica = %cfg.replica_url,
            detail,
            "the store does not honour create-only writes and allow_unfenced_store is set: a stale writer is NOT fenced at the store; only the Lease keeps a second writer out"
        );
    }
    Ok(found)
}

/// Records this acquisition's epoch at the store (create-only). If the store has seen this
/// epoch or a higher one (a Lease deleted and created again), the Lease's epoch is raised
/// past it first.
pub fn claim_epoch(store: &Store, lease: &WriterLease, txid: u64) -> Result<(), VfsError> {
    for _ in 0..5 {
        let rec = EpochRecord {
            epoch: lease.epoch().max(0) as u64,
            holder: lease.settings.holder.clone(),
            txid,
            claimed_at: jiff::Timestamp::now(),
        };
        let epoch = rec.epoch;
        match store.claim_epoch(rec) {
            Ok(()) => {
                tracing::info!(epoch, txid, "writer epoch recorded at the store");
                return Ok(());
            }
            Err(VfsError::Store(ReplicaError::AlreadyExists { .. })) => {
                let latest = store.latest_epoch()?.map(|l| l.epoch).unwrap_or(epoch);
                tracing::warn!(
                    epoch,
                    latest,
                    "the store already has this epoch; raising the lease's epoch past it"
                );
                lease
                    .raise_epoch(latest as i64 + 1)
                    .map_err(|m| VfsError::Fenced(Fenced::new(m)))?;
            }
            Err(e) => return Err(e),
        }
    }
    let msg = "could not record a writer epoch at the store after 5 attempts".to_string();
    lease.fence(msg.clone());
    Err(Fenced::new(msg).into())
}

impl Database {
    /// A new lease holder claims the next TXID at once (page 1 unchanged, or its own
    /// replayed transactions), so any stale writer's next publish collides with it at
    /// the store. A stale writer that got its last files in first only moves us on.
    pub(crate) fn fence_store(&self) -> Result<(), VfsError> {
        self.fence_store_above(None)
    }

    /// [`Self::fence_store`]; a standby taking over passes the highest change counter it
    /// reported on page 1 (TXIDs), and the fence page's counter goes above it, so no
    /// connection's cached snapshot can match the writer's pages (`standby.rs`).
    pub(crate) fn fence_store_above(&self, reported: Option<u32>) -> Result<(), VfsError> {
        for _ in 0..10 {
            let st = self.state();
            if st.publisher.fenced().is_some() {
                return Ok(());
            }
            if st.pages.txid() == 0 || st.publisher.unpublished_pages() > 0 {
                // An empty replica (TXID 1 is create-only anyway), or replayed
                // transactions: publishing them is the claim. If that TXID is taken, the
                // replayed transactions must not be dropped: stay fenced.
                drop(st);
                return match self.publish() {
                    Ok(_) | Err(VfsError::Fenced(_)) => Ok(()),
                    Err(e) => Err(e),
                };
            }
            // Claim with page 1 as it is (its change counter raised past `reported`).
            let (mut st, page1) = self.page(st, 1)?;
            let page1 = match reported {
                Some(r) => {
                    std::sync::Arc::new(counter_above(&page1, r.max(st.pages.txid() as u32)))
                }
                None => page1,
            };
            st.publisher.stage(1, page1);
            drop(st);
            match self.publish() {
                Ok(t) => {
                    tracing::info!(
                        txid = t,
                        epoch = self.lease().map(|l| l.epoch()),
                        "fenced the replica for this writer"
                    );
                    return Ok(());
                }
                Err(VfsError::Fenced(f)) => {
                    // Someone published that TXID after we took the lease: reload and
                    // claim the next one (what we staged was only page 1 as it was).
                    tracing::warn!(reason = %f, "fence TXID taken; reloading the replica");
                    let view = self.store.load_view()?;
                    let mut st = self.state();
                    st.publisher.reset_to(view.txid);
                    st.pages.replace(view);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Fenced::new("could not claim a TXID at the store after 10 attempts").into())
    }
}

/// Page 1 with its change counter (offset 24) and version-valid-for (92) set above both
/// its own counter and `reported`, as SQLite itself would on a commit.
fn counter_above(page1: &[u8], reported: u32) -> Vec<u8> {
    let mut p = page1.to_vec();
    if p.len() < 100 {
        return p;
    }
    let own = u32::from_be_bytes([p[24], p[25], p[26], p[27]]);
    let next = own.max(reported).wrapping_add(1).to_be_bytes();
    p[24..28].copy_from_slice(&next);
    p[92..96].copy_from_slice(&next);
    p
}

#[cfg(test)]
mod tests {
    use super::counter_above;

    #[test]
    fn the_fence_counter_goes_above_what_a_standby_reported() {
        let mut p = vec![0u8; 4096];
        p[24..28].copy_from_slice(&7u32.to_be_bytes());
        let raised = counter_above(&p, 40);
        assert_eq!(&raised[24..28], &41u32.to_be_bytes());
        assert_eq!(&raised[92..96], &41u32.to_be_bytes());
        // Its own counter, when that is higher.
        assert_eq!(&counter_above(&p, 3)[24..28], &8u32.to_be_bytes());
        assert_eq!(&raised[28..92], &p[28..92], "nothing else changes");
    }
}
