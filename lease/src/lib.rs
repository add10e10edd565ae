//! A lock on a Kubernetes `coordination.k8s.io/v1` Lease.
//!
//! Acquire, renew and release are read-modify-write updates guarded by the Lease's
//! `resourceVersion`, so two contenders can never both believe they won: the API server
//! rejects the slower write with 409 Conflict. `leaseTransitions` is bumped on every change
//! of holder and serves as the *epoch*: a number that only grows, which writers also record
//! at the object store so that a holder who missed losing its lease is fenced there too.
//!
//! Time never crosses machines. A contender judges expiry as client-go's leader election
//! does: by how long, on its own monotonic clock, the record has gone unchanged since it
//! last saw it change — never by comparing the holder's `renewTime` (another node's clock)
//! with its own. A holder stops acting before its lease can have expired for anyone else
//! (see [`LeaseLock::safe_until`]), also measured on its own clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Who holds a lease, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub identity: String,
    /// `leaseTransitions` at acquisition: the fencing epoch.
    pub epoch: i64,
    pub acquired: Option<jiff::Timestamp>,
    pub renewed: Option<jiff::Timestamp>,
    pub duration: Duration,
}

impl Holder {
    /// Whether the lease has run out (by the local clock).
    pub fn expired(&self, now: jiff::Timestamp) -> bool {
        match self.renewed {
            Some(r) => {
                let end = r + jiff::SignedDuration::try_from(self.duration).unwrap_or_default();
                now >= end
            }
            None => true,
        }
    }
}

/// The outcome of one acquire-or-renew attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it (newly acquired when `acquired` is true) with this epoch.
    Held { epoch: i64, acquired: bool },
    /// Someone else holds a live lease.
    HeldBy(Holder),
}

/// One named Lease and our identity for it.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    /// Labels and owner references for a Lease this lock has to create.
    template: ObjectMeta,
    /// The holder's record as last seen, and when it last changed on our clock.
    observed: Arc<Mutex<Option<(Record, Instant)>>>,
}

/// The parts of a Lease that change when its holder renews or changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew: Option<String>,
    transitions: Option<i32>,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity,
            renew: spec.renew_time.map(|t| t.0.to_string()),
            transitions: spec.lease_transitions,
        }
    }
}

impl LeaseLock {
    pub fn new(
        api: Api<Lease>,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            template: ObjectMeta::default(),
            observed: Arc::default(),
        }
    }

    /// Whether `holder`'s lease has run out for us: its record (`lease`) has not changed for
    /// the lease duration, on our own clock since we first saw it that way.
    fn expired_for_us(&self, lease: &Lease, holder: &Holder) -> bool {
        let rec = Record::of(lease);
        let mut seen = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let since = match &*seen {
            Some((r, at)) if *r == rec => *at,
            _ => {
                *seen = Some((rec, now));
                now
            }
        };
        now.duration_since(since) >= holder.duration
    }

    /// Metadata (labels, owner references) used if the Lease has to be created.
    pub fn with_template(mut self, meta: ObjectMeta) -> Self {
        self.template = meta;
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How long after a successful renewal at `renewed_at` the holder may still act: the
    /// lease duration minus a safety margin for clock rate differences and request latency.
    pub fn safe_until(&self, renewed_at: std::time::Instant) -> std::time::Instant {
        renewed_at + self.duration.mul_f64(0.8)
    }

    fn err(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// The current holder, if any (expired or not).
    pub async fn holder(&self) -> Result<Option<Holder>, LeaseError> {
        let lease = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        Ok(lease.as_ref().and_then(holder_of))
    }

    /// Takes the lease if it is free or expired, renews it if we hold it. A write refused
    /// with 409 because someone else edited the Lease (a label, an annotation) is re-read
    /// and retried; only a real change of holder is reported as lost.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaseError> {
        for _ in 0..3 {
            if let Some(a) = self.attempt().await? {
                return Ok(a);
            }
        }
        self.contended().await
    }

    /// One read-modify-write; `None` after a 409 (the Lease changed under us).
    async fn attempt(&self) -> Result<Option<Attempt>, LeaseError> {
        let now = jiff::Timestamp::now();
        let secs = self.duration.as_secs().clamp(1, i32::MAX as u64) as i32;
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            let mut meta = self.template.clone();
            meta.name = Some(self.name.clone());
            let lease = Lease {
                metadata: meta,
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(1),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Some(Attempt::Held {
                    epoch: 1,
                    acquired: true,
                })),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(self.err(e)),
            };
        };
        let current = holder_of(&lease);
        let ours = current
            .as_ref()
            .is_some_and(|h| h.identity == self.identity);
        if let Some(h) = current.as_ref().filter(|_| !ours) {
            if !self.expired_for_us(&lease, h) {
                return Ok(Some(Attempt::HeldBy(h.clone())));
            }
        }
        let spec = lease.spec.get_or_insert_with(Default::default);
        let transitions = spec.lease_transitions.unwrap_or(0) as i64;
        let (epoch, acquired) = if ours {
            (transitions, false)
        } else {
            (transitions + 1, true)
        };
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(secs);
        spec.renew_time = Some(MicroTime(now));
        if acquired {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(epoch.clamp(0, i32::MAX as i64) as i32);
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Some(Attempt::Held { epoch, acquired })),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// After losing a write race: report whoever won.
    async fn contended(&self) -> Result<Attempt, LeaseError> {
        match self.holder().await? {
            // Another holder, or ourselves after a retried request (the next try renews).
            Some(h) => Ok(Attempt::HeldBy(h)),
            None => Ok(Attempt::HeldBy(Holder {
                identity: String::new(),
                epoch: 0,
                acquired: None,
                renewed: None,
                duration: self.duration,
            })),
        }
    }

    /// Gives the lease up (clears the holder) if we hold it, so a successor need not wait
    /// for it to expire. The epoch is kept: the next holder gets a higher one.
    pub async fn release(&self) -> Result<bool, LeaseError> {
        self.release_with(BTreeMap::new()).await
    }

    /// The Lease object as stored, if it exists.
    pub async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.api.get_opt(&self.name).await.map_err(|e| self.err(e))
    }

    /// [`release`](Self::release), setting `annotations` on the Lease in the same update
    /// (a hand-over note for the next holder and the operator: which TXID was published).
    pub async fn release_with(
        &self,
        annotations: BTreeMap<String, String>,
    ) -> Result<bool, LeaseError> {
        self.update_held(|lease| {
            annotate(lease, annotations);
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
        })
        .await
    }

    /// Sets `annotations` on the Lease while keeping it (e.g. "this drain left work
    /// unsynced"). Returns false when we no longer hold it.
    pub async fn annotate(
        &self,
        annotations: BTreeMap<String, String>,
    ) -> Result<bool, LeaseError> {
        self.update_held(|lease| annotate(lease, annotations)).await
    }

    /// Raises the epoch of a lease we hold to at least `min` (the store may already have
    /// seen higher epochs, e.g. from a Lease that was deleted and created again).
    pub async fn raise_epoch(&self, min: i64) -> Result<bool, LeaseError> {
        let min = min.clamp(0, i32::MAX as i64) as i32;
        self.update_held(|lease| {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.lease_transitions.unwrap_or(0) < min {
                spec.lease_transitions = Some(min);
            }
        })
        .await
    }

    /// Read-modify-write of a Lease we hold; false if we do not hold it or lost a race.
    async fn update_held(&self, f: impl FnOnce(&mut Lease)) -> Result<bool, LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(false);
        };
        if holder_of(&lease).is_none_or(|h| h.identity != self.identity) {
            return Ok(false);
        }
        f(&mut lease);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }
}

fn annotate(lease: &mut Lease, annotations: BTreeMap<String, String>) {
    lease
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(annotations);
}

/// The holder recorded in a Lease, if one is named.
pub fn holder_of(lease: &Lease) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    Some(Holder {
        identity,
        epoch: spec.lease_transitions.unwrap_or(0) as i64,
        acquired: spec.acquire_time.as_ref().map(|t| t.0),
        renewed: spec.renew_time.as_ref().map(|t| t.0),
        duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64),
    })
}

/// The hand-over note a writer leaves on its Lease when it stops: which TXID it
/// published last and, if its final sync did not finish, what it left unsynced. Written by
/// the VFS, read by the next writer and by the operator (which copies it to status).
pub mod handoff {
    use k8s_openapi::api::coordination::v1::Lease;

    pub const RELEASED_TXID: &str = "sqlitekube.dev/released-txid";
    pub const RELEASED_BY: &str = "sqlitekube.dev/released-by";
    pub const RELEASED_AT: &str = "sqlitekube.dev/released-at";
    /// Empty after a clean drain.
    pub const UNSYNCED: &str = "sqlitekube.dev/unsynced";

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Handoff {
        pub by: String,
        /// The last TXID the writer published (16 hex digits).
        pub txid: String,
        pub at: String,
        /// `None` after a clean drain.
        pub unsynced: Option<String>,
    }

    impl Handoff {
        /// The annotations that carry this note (what [`of`] reads back).
        pub fn annotations(&self) -> std::collections::BTreeMap<String, String> {
            std::collections::BTreeMap::from([
                (RELEASED_TXID.to_string(), self.txid.clone()),
                (RELEASED_BY.to_string(), self.by.clone()),
                (RELEASED_AT.to_string(), self.at.clone()),
                (
                    UNSYNCED.to_string(),
                    self.unsynced.clone().unwrap_or_default(),
                ),
            ])
        }
    }

    /// The note on `lease`, if a writer left one.
    pub fn of(lease: &Lease) -> Option<Handoff> {
        let a = lease.metadata.annotations.as_ref()?;
        Some(Handoff {
            by: a.get(RELEASED_BY)?.clone(),
            txid: a.get(RELEASED_TXID)?.clone(),
            at: a.get(RELEASED_AT)?.clone(),
            unsynced: a.get(UNSYNCED).filter(|u| !u.is_empty()).cloned(),
        })
    }
}

/// A writer whose commits cannot be published says since when on the Lease it renews, once
/// they have waited a while. An idle writer publishes nothing and is healthy; one with
/// commits waiting is not, and only the writer can tell the two apart. The operator shows
/// this in status and as a metric, and the "no recent publish" alert uses it.
pub mod waiting {
    use std::collections::BTreeMap;

    use k8s_openapi::api::coordination::v1::Lease;

    /// RFC 3339 time of the oldest commit not yet published; empty when none waits.
    pub const UNPUBLISHED_SINCE: &str = "sqlitekube.dev/unpublished-since";

    /// The annotation that says `since` (`None`: nothing waits).
    pub fn annotations(since: Option<jiff::Timestamp>) -> BTreeMap<String, String> {
        BTreeMap::from([(
            UNPUBLISHED_SINCE.to_string(),
            since.map(|t| t.to_string()).unwrap_or_default(),
        )])
    }

    /// Since when the holder's commits wait, if it says so.
    pub fn of(lease: &Lease) -> Option<jiff::Timestamp> {
        lease
            .metadata
            .annotations
            .as_ref()?
            .get(UNPUBLISHED_SINCE)?
            .parse()
            .ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn says_since_when_or_nothing() {
            let mut l = Lease::default();
            assert_eq!(of(&l), None);
            let t: jiff::Timestamp = "2026-12-02T07:00:00.25Z".parse().unwrap();
            l.metadata.annotations = Some(annotations(Some(t)));
            assert_eq!(of(&l), Some(t));
            l.metadata.annotations = Some(annotations(None));
            assert_eq!(of(&l), None, "cleared");
        }
    }
}

/// Maintenance fences (`kubectl sqlite fence`): the writer Lease taken by [`IDENTITY`],
/// which never renews and never runs out, so writers stop exactly as when another writer
/// takes their lease, and waiting pods keep waiting until [`unfence`].
///
/// The fence records whose lease it took ([`FROM`]). That writer, once everything it had
/// committed is published, writes [`FROM_SYNCED`] (its last TXID); [`unfence`] waits for
/// that note, since a new writer taking over earlier would strand those commits.
pub mod fence {
    use std::collections::BTreeMap;

    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    use kube::api::{Api, PostParams};

    use super::{holder_of, LeaseError};

    pub const IDENTITY: &str = "fenced-by-kubectl-sqlite";
    pub const REASON: &str = "sqlitekube.dev/fence-reason";
    pub const AT: &str = "sqlitekube.dev/fenced-at";
    /// The holder the fence took the lease from (empty: nobody held it).
    pub const FROM: &str = "sqlitekube.dev/fenced-from";
    /// Written by that holder once everything it committed is published: its last TXID.
    pub const FROM_SYNCED: &str = "sqlitekube.dev/fenced-from-synced";
    /// A fence never runs out (the longest duration a Lease can say).
    const FOREVER: i32 = i32::MAX;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Fenced {
        /// Taken from this holder (`None`: nobody held it); the new epoch.
        Now {
            from: Option<String>,
            epoch: i64,
        },
        Already,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Unfenced {
        /// Released: the next writer takes it with a higher epoch.
        Released,
        NotFenced,
        /// The writer the fence stopped has not reported that its commits are published.
        WriterNotSynced {
            writer: String,
        },
    }

    fn err(ns: &str, name: &str, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: ns.to_string(),
            name: name.to_string(),
            source,
        }
    }

    /// Whether `lease` is held by a fence.
    pub fn is_fenced(lease: &Lease) -> bool {
        holder_of(lease).is_some_and(|h| h.identity == IDENTITY)
    }

    /// Takes the Lease `name` for the fence, whoever holds it (a new epoch).
    pub async fn fence(
        api: &Api<Lease>,
        ns: &str,
        name: &str,
        reason: &str,
    ) -> Result<Fenced, LeaseError> {
        loop {
            let now = MicroTime(jiff::Timestamp::now());
            let existing = api.get_opt(name).await.map_err(|e| err(ns, name, e))?;
            let mut lease = existing.clone().unwrap_or_else(|| Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec::default()),
            });
            if is_fenced(&lease) {
                return Ok(Fenced::Already);
            }
            let from = holder_of(&lease).map(|h| h.identity);
            let a = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
            a.insert(REASON.into(), reason.to_string());
            a.insert(AT.into(), now.0.to_string());
            a.insert(FROM.into(), from.clone().unwrap_or_default());
            a.remove(FROM_SYNCED);
            let spec = lease.spec.get_or_insert_with(Default::default);
            let epoch = spec.lease_transitions.unwrap_or(0) as i64 + 1;
            spec.holder_identity = Some(IDENTITY.to_string());
            spec.lease_transitions = Some(epoch.clamp(0, i32::MAX as i64) as i32);
            spec.lease_duration_seconds = Some(FOREVER);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            let done = if existing.is_some() {
                api.replace(name, &PostParams::default(), &lease).await
            } else {
                api.create(&PostParams::default(), &lease).await
            };
            match done {
                Ok(_) => return Ok(Fenced::Now { from, epoch }),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err(ns, name, e)),
            }
        }
    }

    /// Releases a fence (the Lease goes back to `duration_secs`, nobody holding it). Unless
    /// `force`, only once the writer it stopped has reported its commits published.
    pub async fn unfence(
        api: &Api<Lease>,
        ns: &str,
        name: &str,
        duration_secs: i32,
        force: bool,
    ) -> Result<Unfenced, LeaseError> {
        loop {
            let Some(mut lease) = api.get_opt(name).await.map_err(|e| err(ns, name, e))? else {
                return Ok(Unfenced::NotFenced);
            };
            if !is_fenced(&lease) {
                return Ok(Unfenced::NotFenced);
            }
            let a = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
            let from = a.get(FROM).cloned().unwrap_or_default();
            if !force && !from.is_empty() && !a.contains_key(FROM_SYNCED) {
                return Ok(Unfenced::WriterNotSynced { writer: from });
            }
            for k in [REASON, AT, FROM, FROM_SYNCED] {
                a.remove(k);
            }
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = None;
            spec.lease_duration_seconds = Some(duration_secs.max(1));
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => return Ok(Unfenced::Released),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err(ns, name, e)),
            }
        }
    }

    /// The writer `identity`, fenced, reports that everything it committed is published
    /// (through `txid`). False if the Lease is not a fence taken from it.
    pub async fn report_synced(
        api: &Api<Lease>,
        ns: &str,
        name: &str,
        identity: &str,
        txid: u64,
    ) -> Result<bool, LeaseError> {
        loop {
            let Some(mut lease) = api.get_opt(name).await.map_err(|e| err(ns, name, e))? else {
                return Ok(false);
            };
            let fenced = is_fenced(&lease);
            let a = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
            if !fenced || !is_fenced_from(a, identity) {
                return Ok(false);
            }
            a.insert(FROM_SYNCED.into(), format!("{txid:016x}"));
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(err(ns, name, e)),
            }
        }
    }

    fn is_fenced_from(a: &BTreeMap<String, String>, identity: &str) -> bool {
        a.get(FROM).is_some_and(|f| f == identity)
    }
}
