//! The writer Lease: in Kubernetes a write-mode VFS holds the database's
//! `coordination.k8s.io/v1` Lease (`<db>-writer`, created by the operator) for as long as it
//! accepts writes.
//!
//! - A writer whose lease is held elsewhere waits for it: as a standby (`standby.rs`: the
//!   database is open, reads are served, writes get SQLITE_BUSY) or, with
//!   `writer_standby=false`, blocked in open. Either way it says who holds the database in
//!   an Event on its pod.
//! - Every acquisition bumps the Lease's epoch; the VFS records it at the object store
//!   create-only ([`ltx::replica::EpochRecord`]) and publishes a fence file at the next TXID,
//!   so a stale writer that missed losing its lease is refused by the store's create-only
//!   publish of that TXID.
//! - A renewal thread renews at a quarter of the lease duration. Writes are accepted only
//!   until 80 % of the duration after the last successful renewal started: if the API server
//!   cannot be reached, the writer stops accepting writes before anyone else can take over
//!   (fail closed). Losing the lease to someone else stops writes for good.
//! - On close, after the final sync, the lease is released with the last published TXID in
//!   its annotations (the operator copies it to the `SqliteDatabase` status); if the final
//!   sync did not finish within the drain timeout the lease is kept (it expires) and the
//!   annotation says what was left unsynced.
//! - Commits that cannot be published for a while (the store fails) are announced on the
//!   Lease at the next renewal ([`lease::waiting`]), and the announcement is withdrawn once
//!   they are published: the operator alerts on that, never on a writer that is just idle.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use lease::handoff::{Handoff, RELEASED_TXID};
use lease::{Attempt, LeaseLock};

use crate::publisher::WaitingSince;
use crate::runtime::block_on;

/// Where the lease is and who we are (from the environment the webhook injects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// The pod name: what Events, hand-over notes and messages show.
    pub identity: String,
    /// The Lease holder identity: the pod name plus its incarnation and process
    /// ([`crate::config::holder_identity`]).
    pub holder: String,
    pub pod_uid: Option<String>,
    pub database: Option<String>,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseFailure {
    #[error("writer lease {namespace}/{name}: cannot reach the Kubernetes API: {reason}")]
    Client {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// Commits waiting this many sync intervals (and at least [`WAITING_MIN`]) are announced
/// on the Lease: a healthy writer publishes within one or two, so it never writes the
/// Lease for this.
const WAITING_INTERVALS: u32 = 10;
const WAITING_MIN: Duration = Duration::from_secs(10);

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Not renewed in time (API server unreachable?): transient.
    Expired,
    /// Someone else holds the lease now: permanent.
    Lost(String),
}

/// How long [`WriterLease::acquire`] waits for a lease someone else holds.
#[derive(Clone, Copy)]
pub enum Wait<'a> {
    /// Until it is ours.
    Forever,
    /// One attempt, silently: `None` if it is held elsewhere or the API cannot be reached.
    Once,
    /// Until it is ours or the flag is set (the database is closing).
    UntilStopped(&'a AtomicBool),
}

pub struct WriterLease {
    pub settings: LeaseSettings,
    lock: LeaseLock,
    client: kube::Client,
    epoch: AtomicI64,
    /// The TXID the previous holder reported on release, if any.
    pub released_txid: Option<u64>,
    valid_until: Mutex<Instant>,
    /// When the last successful acquisition or renewal began (wall clock, for status).
    renewal_started: Mutex<std::time::SystemTime>,
    lost: Mutex<Option<String>>,
    /// Whom the lease went to, when another holder took it.
    lost_to: Mutex<Option<String>>,
    /// This writer, stopped by a maintenance fence, has reported its commits published.
    fence_reported: AtomicBool,
    /// What the Lease says about commits waiting (`None`: not known yet).
    waiting_said: Mutex<Option<Option<jiff::Timestamp>>>,
    stop: AtomicBool,
    renewal: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WriterLease {
    /// Takes the lease, waiting as `wait` says. Waiting is logged and announced once per
    /// holder as an Event on our pod.
    pub fn acquire(
        settings: LeaseSettings,
        wait: Wait<'_>,
    ) -> Result<Option<Arc<WriterLease>>, LeaseFailure> {
        let fail = |reason: String| LeaseFailure::Client {
            namespace: settings.namespace.clone(),
            name: settings.name.clone(),
            reason,
        };
        let client = block_on(async { kube::Client::try_default().await })
            .map_err(|e| fail(e.to_string()))?;
        let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
        let lock = LeaseLock::new(
            api,
            &settings.namespace,
            &settings.name,
            &settings.holder,
            settings.duration,
        );
        let poll =
            (settings.duration / 4).clamp(Duration::from_millis(100), Duration::from_millis(250));
        let mut announced: Option<String> = None;
        let mut errors = 0u32;
        loop {
            let started = Instant::now();
            let started_wall = std::time::SystemTime::now();
            let l = lock.clone();
            let prior = {
                let l = lock.clone();
                block_on(async move { l.get().await }).ok().flatten()
            };
            match block_on(async move { l.try_acquire_or_renew().await }) {
                Ok(Attempt::Held { epoch, acquired }) => {
                    let released_txid = prior
                        .as_ref()
                        .and_then(|l| l.metadata.annotations.as_ref())
                        .and_then(|a| a.get(RELEASED_TXID))
                        .and_then(|t| u64::from_str_radix(t, 16).ok());
                    tracing::info!(lease = %settings.name, epoch, fresh = acquired, released_txid, "writer lease acquired");
                    let wl = Arc::new(WriterLease {
                        valid_until: Mutex::new(lock.safe_until(started)),
                        renewal_started: Mutex::new(started_wall),
                        lock,
                        client,
                        epoch: AtomicI64::new(epoch),
                        released_txid,
                        lost: Mutex::new(None),
                        lost_to: Mutex::new(None),
                        fence_reported: AtomicBool::new(false),
                        waiting_said: Mutex::new(prior.as_ref().map(lease::waiting::of)),
                        stop: AtomicBool::new(false),
                        renewal: Mutex::new(None),
                        settings,
                    });
                    return Ok(Some(wl));
                }
                Ok(Attempt::HeldBy(_)) | Err(_) if matches!(wait, Wait::Once) => return Ok(None),
                Ok(Attempt::HeldBy(h)) => {
                    errors = 0;
                    if announced.as_deref() != Some(h.identity.as_str()) {
                        let msg = format!(
                            "database {}: the writer lease {}/{} is held by {} (epoch {}); this pod waits and takes over when it is released or expires",
                            settings.database.as_deref().unwrap_or("?"),
                            settings.namespace,
                            settings.name,
                            if h.identity.is_empty() { "another writer" } else { &h.identity },
                            h.epoch
                        );
                        tracing::warn!("{msg}");
                        post_event(
                            &client,
                            &settings,
                            EventType::Normal,
                            "WaitingForWriterLease",
                            &msg,
                        );
                        announced = Some(h.identity.clone());
                    }
                }
                Err(e) => {
                    errors += 1;
                    if errors == 1 || errors.is_multiple_of(30) {
                        tracing::warn!(error = %e, "cannot read the writer lease yet; retrying");
                    }
                }
            }
            if let Wait::UntilStopped(stop) = wait {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
            }
            std::thread::sleep(poll);
        }
    }

    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Raises our epoch on the Lease to `min` (the store already saw higher ones).
    pub fn raise_epoch(&self, min: i64) -> Result<(), String> {
        let l = self.lock.clone();
        match block_on(async move { l.raise_epoch(min).await }) {
            Ok(true) => {
                self.epoch.fetch_max(min, Ordering::SeqCst);
                Ok(())
            }
            Ok(false) => Err("lost the writer lease while raising its epoch".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether writes may go ahead now.
    pub fn check(&self) -> Result<(), Gate> {
        if let Some(m) = self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(Gate::Lost(m));
        }
        if Instant::now() >= *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Gate::Expired);
        }
        Ok(())
    }

    /// `Some(rc)` (an SQLite result code) when the lease does not allow writing now:
    /// BUSY while a renewal is overdue (transient), READONLY once the lease is lost.
    pub fn write_gate(&self) -> Option<i32> {
        match self.check() {
            Ok(()) => None,
            Err(Gate::Expired) => {
                tracing::warn!("write refused: the writer lease was not renewed in time");
                Some(crate::ffi::SQLITE_BUSY)
            }
            Err(Gate::Lost(m)) => {
                tracing::error!(reason = %m, "write refused");
                Some(crate::ffi::SQLITE_READONLY)
            }
        }
    }

    /// Starts renewing in the background. At each renewal the Lease is also told whether
    /// commits have waited to be published (`waiting`) for [`WAITING_INTERVALS`] sync
    /// intervals (at least [`WAITING_MIN`]).
    pub fn start_renewal(self: &Arc<Self>, waiting: WaitingSince, sync_interval: Duration) {
        let me = self.clone();
        let after = (sync_interval * WAITING_INTERVALS).max(WAITING_MIN);
        let h = std::thread::Builder::new()
            .name("sqlitekube-lease".into())
            .spawn(move || me.renew_loop(&waiting, after))
            .expect("spawn");
        *self.renewal.lock().unwrap() = Some(h);
    }

    fn renew_loop(self: Arc<Self>, waiting: &WaitingSince, after: Duration) {
        let every =
            (self.settings.duration / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut failing = false;
        while !self.stop.load(Ordering::Relaxed) {
            let end = Instant::now() + every;
            while Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
            }
            if self.stop.load(Ordering::Relaxed)
                || self.check().is_err_and(|g| matches!(g, Gate::Lost(_)))
            {
                continue;
            }
            let started = Instant::now();
            let started_wall = std::time::SystemTime::now();
            let l = self.lock.clone();
            // A black-holed API server must not stall renewals past the lease.
            let limit = every.max(Duration::from_millis(500));
            let res =
                block_on(
                    async move { tokio::time::timeout(limit, l.try_acquire_or_renew()).await },
                );
            match res {
                Ok(Ok(Attempt::Held { epoch, acquired: false })) if epoch == self.epoch() => {
                    *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = self.lock.safe_until(started);
                    *self.renewal_started.lock().unwrap_or_else(|e| e.into_inner()) = started_wall;
                    if failing {
                        tracing::info!("writer lease renewed again; writes accepted");
                        failing = false;
                    }
                    self.say_waiting(waiting.get(), after, limit);
                }
                Ok(Ok(Attempt::Held { epoch, .. })) => self.mark_lost(format!(
                    "the writer lease changed hands while this writer could not renew it (now epoch {epoch}, ours {}); this writer is fenced",
                    self.epoch()
                )),
                Ok(Ok(Attempt::HeldBy(h))) => {
                    *self.lost_to.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(h.identity.clone());
                    self.mark_lost(if h.identity == lease::fence::IDENTITY {
                        format!(
                            "writes are fenced for maintenance (kubectl sqlite fence; epoch {}); committed transactions are still published",
                            h.epoch
                        )
                    } else {
                        format!(
                            "the writer lease was taken by {} (epoch {}); this writer is fenced",
                            if h.identity.is_empty() { "nobody (released)" } else { &h.identity },
                            h.epoch
                        )
                    })
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot renew the writer lease; writes stop when it runs out");
                    }
                    failing = true;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!("renewing the writer lease timed out; writes stop when it runs out");
                    }
                    failing = true;
                }
            }
        }
    }

    /// Brings the Lease's "unpublished since" up to date (one update, only on a change):
    /// `since` once it is `after` old, else nothing.
    /// Bounded by `limit`, like a renewal: a black-holed API server must not hold up the
    /// next renewal.
    fn say_waiting(&self, since: Option<jiff::Timestamp>, after: Duration, limit: Duration) {
        let due = since.filter(|t| {
            jiff::Timestamp::now()
                .duration_since(*t)
                .try_into()
                .is_ok_and(|age: Duration| age >= after)
        });
        if *self.waiting_said.lock().unwrap_or_else(|e| e.into_inner()) == Some(due) {
            return;
        }
        let l = self.lock.clone();
        let ann = lease::waiting::annotations(due);
        match block_on(async move { tokio::time::timeout(limit, l.annotate(ann)).await }) {
            Ok(Ok(true)) => {
                match due {
                    Some(t) => {
                        tracing::warn!(since = %t, "committed transactions wait unpublished (see last_error); said so on the writer lease")
                    }
                    None => tracing::info!(
                        "every committed transaction is published; the writer lease says so again"
                    ),
                }
                *self.waiting_said.lock().unwrap_or_else(|e| e.into_inner()) = Some(due);
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot annotate the writer lease; retrying at the next renewal")
            }
            Err(_) => tracing::debug!(
                "annotating the writer lease timed out; retrying at the next renewal"
            ),
        }
    }

    fn mark_lost(&self, msg: String) {
        tracing::error!("{msg}");
        *self.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }

    /// Stopped by a maintenance fence and everything committed is published (through
    /// `txid`): says so on the Lease, once, so `kubectl sqlite unfence` may let another
    /// writer take over without stranding anything.
    pub fn report_fenced_synced(&self, txid: u64) {
        let fenced = self
            .lost_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            == Some(lease::fence::IDENTITY);
        if !fenced || self.fence_reported.load(Ordering::Relaxed) {
            return;
        }
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let s = self.settings.clone();
        match block_on(async move {
            lease::fence::report_synced(&api, &s.namespace, &s.name, &s.holder, txid).await
        }) {
            Ok(true) => {
                self.fence_reported.store(true, Ordering::Relaxed);
                tracing::info!(
                    txid = format!("{txid:016x}"),
                    "fenced: everything committed is published; reported on the writer lease"
                );
            }
            Ok(false) => self.fence_reported.store(true, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "fenced: cannot report the last publish on the writer lease; retrying")
            }
        }
    }

    /// Marks the lease lost (e.g. the store refused our epoch).
    pub fn fence(&self, msg: String) {
        self.mark_lost(msg);
    }

    /// Stops renewing without releasing (a lease lost while taking over).
    pub fn stop(&self) {
        self.stop_renewal();
    }

    fn stop_renewal(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.renewal.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    /// The hand-over note this writer leaves on the Lease.
    fn note(
        &self,
        txid: u64,
        unsynced: Option<&str>,
    ) -> std::collections::BTreeMap<String, String> {
        Handoff {
            by: self.settings.identity.clone(),
            txid: format!("{txid:016x}"),
            at: jiff::Timestamp::now().to_string(),
            unsynced: unsynced.map(str::to_string),
        }
        .annotations()
    }

    /// Clean hand-over: everything up to `txid` is published. Releases the lease with a
    /// note for the operator and the next writer.
    pub fn release(&self, txid: u64) {
        self.stop_renewal();
        let mut ann = self.note(txid, None);
        ann.extend(lease::waiting::annotations(None));
        let l = self.lock.clone();
        match block_on(async move { l.release_with(ann).await }) {
            Ok(true) => tracing::info!(
                txid = format!("{txid:016x}"),
                "final sync published; writer lease released"
            ),
            Ok(false) => tracing::warn!("writer lease was no longer ours at release"),
            Err(e) => {
                tracing::error!(error = %e, "cannot release the writer lease; the next writer waits for it to expire")
            }
        }
    }

    /// Unclean hand-over: the final sync did not finish. The lease is kept (it runs out)
    /// and says what is left, so the hand-over is never silent.
    pub fn report_unsynced(&self, txid: u64, what: &str) {
        self.stop_renewal();
        let ann = self.note(txid, Some(what));
        let l = self.lock.clone();
        if let Err(e) = block_on(async move { l.annotate(ann).await }) {
            tracing::error!(error = %e, "cannot record the unsynced drain on the writer lease");
        }
        post_event(
            &self.client,
            &self.settings,
            EventType::Warning,
            "DrainIncomplete",
            what,
        );
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.settings.name,
            "namespace": self.settings.namespace,
            "identity": self.settings.identity,
            "holder": self.settings.holder,
            "epoch": self.epoch(),
            "valid": self.check().is_ok(),
            // Writes are accepted until 80 % of the lease after the last renewal began.
            "renewal_started_at": jiff::Timestamp::try_from(
                *self.renewal_started.lock().unwrap_or_else(|e| e.into_inner())
            )
            .ok()
            .map(|t| format!("{t:.3}")),
            "lost": self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            // What the Lease says: since when commits wait unpublished (null: none).
            "unpublished_since": self.waiting_said.lock().unwrap_or_else(|e| e.into_inner()).flatten().map(|t| t.to_string()),
        })
    }
}

/// An Event on our pod (what `kubectl describe pod` shows); failures are only logged.
fn post_event(client: &kube::Client, s: &LeaseSettings, kind: EventType, reason: &str, note: &str) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sqlite-kube-vfs".into(),
            instance: Some(s.identity.clone()),
        },
    );
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(s.identity.clone()),
        namespace: Some(s.namespace.clone()),
        uid: s.pod_uid.clone(),
        ..Default::default()
    };
    let ev = Event {
        type_: kind,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "WriterLease".into(),
        secondary: None,
    };
    let res = block_on(async move { recorder.publish(&ev, &reference).await });
    if let Err(e) = res {
        tracing::debug!(error = %e, "cannot post the event");
    }
}
