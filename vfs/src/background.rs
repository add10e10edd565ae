//! The database's threads and its clean close.
//!
//! - `sqlitekube-sync` (writer): publishes every `sync_interval`, or at once when the
//!   buffer passes half its limit; backs off while the store fails.
//! - `sqlitekube-poll` (reader): follows the writer every `poll_interval`; the writer's
//!   sync thread does the same while it is a standby.
//! - `sqlitekube-standby` (standby writer): waits for the Lease and takes over (`standby.rs`).
//! - `sqlitekube-compact` (writer): maintenance (`maintenance.rs`).
//! - `sqlitekube-hydrate`: pulls the whole database into the local copy.
//!
//! [`Database::shutdown`] is the drain: stop the threads, publish what is left, release
//! the lease with the last TXID, all within the drain timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::database::Database;
use crate::error::VfsError;
use crate::hydration::{HydrationState, Hydrator};
use crate::standby::Role;

/// How often a panicked background thread is restarted before the database gives up on
/// it (and says so in its status and log).
const RESTARTS: u32 = 10;

/// Starts the threads `db` needs. A thread that panics is restarted (its panic logged and
/// put in the status as `last_error`), so background work never vanishes silently.
pub fn start(db: &Arc<Database>) {
    let spawn = |name: &'static str, f: fn(Arc<Database>)| {
        let me = db.clone();
        let run = move || {
            for attempt in 1..=RESTARTS + 1 {
                let d = me.clone();
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(d))) {
                    Ok(()) => return,
                    Err(p) => {
                        let msg =
                            format!("the {name} thread panicked: {}", crate::panic_message(&*p));
                        me.state().publisher.set_last_error_text(&msg);
                        if me.stop.load(Ordering::Relaxed) || attempt > RESTARTS {
                            tracing::error!("{msg}; not restarting it");
                            return;
                        }
                        tracing::error!("{msg}; restarting it ({attempt} of {RESTARTS})");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        };
        match std::thread::Builder::new().name(name.into()).spawn(run) {
            Ok(h) => db.threads.lock().unwrap_or_else(|e| e.into_inner()).push(h),
            Err(e) => tracing::error!(error = %e, thread = name, "cannot start a VFS thread"),
        }
    };
    if db.cfg.write_enabled {
        spawn("sqlitekube-sync", sync_loop);
        if !db.cfg.compaction_interval.is_zero() {
            spawn("sqlitekube-compact", |db| db.maintenance_loop());
        }
        if db.role.get() == Role::Standby {
            spawn("sqlitekube-standby", |db| db.standby_loop());
        }
    } else {
        spawn("sqlitekube-poll", sync_loop);
    }
    if db.cfg.hydration_enabled {
        spawn("sqlitekube-hydrate", hydrate);
    }
}

/// Publishes (writer) or polls (reader, standby) until stopped.
fn sync_loop(db: Arc<Database>) {
    let interval = |writer: bool| {
        if writer {
            db.cfg.sync_interval
        } else {
            db.cfg.poll_interval
        }
    };
    let mut backoff = interval(db.role.get() == Role::Writer);
    while !db.stop.load(Ordering::Relaxed) {
        let writer = db.role.get() == Role::Writer;
        // Early publishes only while the store is healthy (not while backing off).
        let early = (writer && backoff == interval(writer)).then_some(&db.publish_soon);
        db.sleep_or(backoff, early);
        if db.stop.load(Ordering::Relaxed) {
            break;
        }
        crate::fault("sync-thread");
        let writer = db.role.get() == Role::Writer;
        let interval = interval(writer);
        let res = if writer {
            db.publish().map(|_| ())
        } else {
            db.poll()
        };
        match res {
            Ok(()) => {
                backoff = interval;
                if writer {
                    db.report_if_fenced();
                }
            }
            Err(VfsError::Fenced(_)) => backoff = interval * 10,
            Err(e) => {
                tracing::warn!(error = %e, "background sync failed; retrying with backoff");
                db.state().publisher.set_last_error(&e);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        db.write_status();
    }
}

impl Database {
    /// A writer stopped by a maintenance fence tells the Lease once all it committed is
    /// published (`WriterLease::report_fenced_synced`).
    fn report_if_fenced(&self) {
        let Some(lease) = self.lease().filter(|l| l.check().is_err()) else {
            return;
        };
        let (pending, txid) = {
            let st = self.state();
            (st.publisher.unpublished_pages(), st.pages.txid())
        };
        if pending == 0 {
            lease.report_fenced_synced(txid);
        }
    }
}

/// Pulls the whole database into `hydration_path`, then serves reads from it.
fn hydrate(db: Arc<Database>) {
    let txid = db.state().pages.txid();
    if txid == 0 {
        db.state().pages.local_mut().set_state(HydrationState::Off);
        return;
    }
    let job = Hydrator {
        target: db.cfg.hydration_path.clone(),
    };
    match job.run(&db.store, txid) {
        Ok((file, restored)) => {
            let mut st = db.state();
            st.pages.hydrated(file, restored);
            tracing::info!(txid = restored, path = %job.target.display(), stale = st.pages.local().stale_pages(), "hydration complete; reads are local");
        }
        Err(e) => {
            tracing::error!(error = %e, "hydration failed; reads stay remote");
            db.state()
                .pages
                .local_mut()
                .set_state(HydrationState::Failed);
        }
    }
}

impl Database {
    pub(crate) fn sleep(&self, d: Duration) {
        self.sleep_or(d, None)
    }

    /// Sleeps for `d`, or until stop, or until `wake` is set (and clears it).
    fn sleep_or(&self, d: Duration, wake: Option<&AtomicBool>) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
            if wake.is_some_and(|w| w.swap(false, Ordering::Relaxed)) {
                return;
            }
            let step = if wake.is_some() { 5 } else { 50 };
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(step)));
        }
    }

    /// Publishes what is left (clean shutdown) and stops background work.
    pub fn shutdown(&self) {
        // Everything below fits in the drain timeout, so the pod's grace period (drain
        // timeout + 10 s) is never exceeded and the lease hand-over always runs.
        let deadline = Instant::now() + self.cfg.drain_timeout;
        self.store.set_deadline(deadline);
        self.stop.store(true, Ordering::Relaxed);
        let handles: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for h in handles {
            // A hydration or a store call in flight is not waited for past the deadline
            // (the thread is left to finish or die with the process).
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        if self.cfg.write_enabled {
            // A standby that never took over has nothing to publish or release.
            self.final_sync(deadline);
        }
        {
            let st = self.state();
            if st.publisher.unpublished_pages() == 0 {
                st.pages
                    .local()
                    .close(&self.cfg.hydration_path, st.pages.txid());
            }
        }
        self.write_status();
        tracing::info!(txid = self.state().pages.txid(), "database closed");
    }

    /// The writer's last publish, then the lease hand-over with what it reached.
    fn final_sync(&self, deadline: Instant) {
        loop {
            match self.publish() {
                Ok(_) | Err(VfsError::Fenced(_)) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(error = %e, "final sync failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    tracing::error!(error = %e, buffer = %self.cfg.buffer_path.display(), "final sync failed; unpublished transactions stay in the write buffer and are published on the next open");
                    break;
                }
            }
        }
        self.state().publisher.sync_buffer();
        let Some(l) = self.lease() else {
            return;
        };
        let st = self.state();
        let (txid, left) = (st.pages.txid(), st.publisher.unpublished_pages());
        let fenced = st.publisher.fenced().cloned();
        drop(st);
        match (left, fenced) {
            (0, None) => l.release(txid),
            (_, Some(f)) => l.report_unsynced(txid, &format!("this writer was fenced: {f}")),
            (n, None) => l.report_unsynced(
                txid,
                &format!(
                    "the final sync did not finish within the drain timeout ({:?}): published through TXID {txid:016x}; {n} page(s) of committed transactions remain only in {}",
                    self.cfg.drain_timeout,
                    self.cfg.buffer_path.display()
                ),
            ),
        }
    }
}
