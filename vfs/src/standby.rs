//! The standby writer: a lease-gated writer whose Lease is held by another pod opens at
//! once as a follower — reads are served and follow the replica, a write lock gets
//! `SQLITE_BUSY` (SQLite's busy handler waits within the app's busy timeout) — and takes
//! over when the Lease comes free. This is what lets a writer Deployment roll with
//! `RollingUpdate`: the new pod is Ready while the old one still writes, the old one
//! drains and releases, and the app's next write in the new pod goes through after a
//! busy wait instead of an error.
//!
//! Taking over is the blocking open's sequence in the background: catch up to the TXID
//! the previous writer released, reconcile the (empty) write buffer, record the epoch at
//! the store, install the publisher while no connection holds a read snapshot, fence the
//! next TXID, and only then grant write locks. A standby with unpublished transactions in
//! its buffer (a crashed process of this pod) does not stand by: it blocks in open as
//! before, since its reads must include those transactions.
//!
//! Page 1's change counter: a follower reports the TXID there (so SQLite's per-connection
//! caches notice polled changes); a writer reports SQLite's own counter. The fence page a
//! standby publishes on taking over carries a counter above every TXID it reported, so no
//! connection can mistake the writer's pages for a snapshot it cached as a standby.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::database::Database;
use crate::error::VfsError;
use crate::writer_lease::{Gate, Wait, WriterLease};

/// What this process does with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Read-only mode: follows the writer.
    Reader = 0,
    /// A writer waiting for the Lease: follows, refuses write locks with SQLITE_BUSY.
    Standby = 1,
    /// Writes are accepted (subject to the lease and fencing).
    Writer = 2,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Standby => "standby",
            Role::Writer => "writer",
        }
    }
}

/// The role, readable without the state lock.
#[derive(Debug)]
pub struct RoleCell(AtomicU8);

impl RoleCell {
    pub fn new(r: Role) -> Self {
        RoleCell(AtomicU8::new(r as u8))
    }

    pub fn get(&self) -> Role {
        match self.0.load(Ordering::SeqCst) {
            0 => Role::Reader,
            1 => Role::Standby,
            _ => Role::Writer,
        }
    }

    pub fn set(&self, r: Role) {
        self.0.store(r as u8, Ordering::SeqCst);
    }
}

/// How long a take-over that failed (store unreachable) waits before trying again.
const RETRY: Duration = Duration::from_secs(1);

impl Database {
    /// The `sqlitekube-standby` thread: waits for the Lease, then takes over.
    pub(crate) fn standby_loop(self: Arc<Self>) {
        let Some(settings) = self.cfg.lease.clone() else {
            return;
        };
        'acquire: loop {
            let lease = match WriterLease::acquire(settings.clone(), Wait::UntilStopped(&self.stop))
            {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "standby: cannot wait for the writer lease; retrying");
                    self.state().publisher.set_last_error_text(&e.to_string());
                    self.sleep(RETRY);
                    continue;
                }
            };
            // Renew from now on: catching up may take a while.
            lease.start_renewal(self.state().publisher.waiting(), self.cfg.sync_interval);
            self.set_lease(Some(lease.clone()));
            loop {
                if self.stop.load(Ordering::Relaxed) {
                    // Closing: the drain releases the lease (nothing of ours to publish).
                    return;
                }
                match self.take_over(&lease) {
                    Ok(()) => {
                        tracing::info!(
                            txid = self.state().pages.txid(),
                            epoch = lease.epoch(),
                            "standby took over: writes accepted"
                        );
                        self.write_status();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "standby: taking over failed; retrying");
                        self.state().publisher.set_last_error(&e);
                    }
                }
                if let Err(Gate::Lost(why)) = lease.check() {
                    tracing::warn!(reason = %why, "standby: lost the lease while taking over; waiting for it again");
                    lease.stop();
                    self.set_lease(None);
                    continue 'acquire;
                }
                self.sleep(RETRY);
            }
        }
    }

    /// The blocking open's steps, for a lease we now hold.
    fn take_over(&self, lease: &Arc<WriterLease>) -> Result<(), VfsError> {
        let mut view = crate::fencing::view_after_handover(&self.store, Some(lease))?;
        let mut publisher = crate::recovery::recover(
            &self.cfg.buffer_path,
            self.cfg.buffer_limit,
            &self.store,
            &mut view,
        )?;
        crate::fencing::claim_epoch(&self.store, lease, view.txid)?;
        // Follow up to the view (at least), then install the publisher while no
        // connection holds a read snapshot.
        let reported = loop {
            self.poll()?;
            let mut st = self.state();
            if st.locks.no_readers() {
                for (k, h, e) in std::mem::take(&mut st.deferred) {
                    st.pages.apply_remote(k, &h, &e);
                }
                let txid = st.pages.txid();
                if txid >= view.txid {
                    if txid > view.txid {
                        publisher.reset_to(txid);
                    }
                    st.publisher = publisher;
                    break txid;
                }
            }
            drop(st);
            if self.stop.load(Ordering::Relaxed) {
                return Err(VfsError::Internal("closing while taking over".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.fence_store_above(Some(reported as u32))?;
        if let Some(f) = self.state().publisher.fenced() {
            return Err(VfsError::Fenced(f.clone()));
        }
        crate::shim::promote(self);
        Ok(())
    }
}
