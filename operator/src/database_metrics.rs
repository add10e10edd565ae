//! Per-database metrics (`sqlitekube_database_*`, labels `namespace` and `database`), set
//! from what the controller writes to each `SqliteDatabase`'s status, so `/metrics` and
//! `kubectl get sqldb` never disagree. Replication lag as a user sees it is
//! `time() - sqlitekube_database_last_publish_timestamp_seconds`, observed at every
//! reconcile (the operator's resync interval, 30 s by default, bounds its resolution).
//! Series of a deleted database are removed.

use std::sync::atomic::AtomicU64;

use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crds::condition::{READY, REPLICA_REACHABLE, WRITER_HELD};
use crds::{SqliteDatabase, SqliteDatabaseStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbLabels {
    pub namespace: String,
    pub database: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandoffLabels {
    pub namespace: String,
    pub database: String,
    /// "true" when the writer published everything before it released the lease.
    pub complete: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

#[derive(Default)]
pub struct DatabaseMetrics {
    last_txid: Family<DbLabels, Gauge>,
    last_publish: Family<DbLabels, F64Gauge>,
    unpublished_since: Family<DbLabels, F64Gauge>,
    sync_interval: Family<DbLabels, F64Gauge>,
    replica_size: Family<DbLabels, Gauge>,
    replica_files: Family<DbLabels, Gauge>,
    ready: Family<DbLabels, Gauge>,
    reachable: Family<DbLabels, Gauge>,
    writer_held: Family<DbLabels, Gauge>,
    writer_epoch: Family<DbLabels, Gauge>,
    drain_incomplete: Family<DbLabels, Gauge>,
    handoffs: Family<HandoffLabels, Counter>,
    fenced: Family<DbLabels, Counter>,
}

impl DatabaseMetrics {
    /// Registers every family under `r` (prefix `sqlitekube_database`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "last_txid",
            "The replica's latest TXID",
            self.last_txid.clone(),
        );
        r.register(
            "last_publish_timestamp_seconds",
            "When the replica's latest LTX file was written (Unix time); time() minus this is the replication lag",
            self.last_publish.clone(),
        );
        r.register(
            "unpublished_since_timestamp_seconds",
            "Since when the writer's commits wait to be published (Unix time), once they have waited 10 sync intervals; absent when none waits (also when the app is idle)",
            self.unpublished_since.clone(),
        );
        r.register(
            "sync_interval_seconds",
            "spec.syncInterval: how often a writer publishes",
            self.sync_interval.clone(),
        );
        r.register(
            "replica_size_bytes",
            "Bytes of LTX files in the replica",
            self.replica_size.clone(),
        );
        r.register(
            "replica_files",
            "LTX files in the replica",
            self.replica_files.clone(),
        );
        r.register(
            "ready",
            "Condition Ready (1 True, 0 False)",
            self.ready.clone(),
        );
        r.register(
            "replica_reachable",
            "Condition ReplicaReachable (1 True, 0 False; absent when the operator does not observe the replica)",
            self.reachable.clone(),
        );
        r.register(
            "writer_held",
            "A pod holds the writer Lease (1) or none does (0)",
            self.writer_held.clone(),
        );
        r.register(
            "writer_epoch",
            "The writer Lease's epoch (incremented on every acquisition)",
            self.writer_epoch.clone(),
        );
        r.register(
            "drain_incomplete",
            "The last hand-over left committed work unsynced (1) or not (0)",
            self.drain_incomplete.clone(),
        );
        r.register(
            "handoffs",
            "Writer hand-overs seen, by whether the final sync completed",
            self.handoffs.clone(),
        );
        r.register(
            "fenced_writers",
            "Hand-overs of a writer that was fenced at the store",
            self.fenced.clone(),
        );
    }

    /// Sets the gauges from `st`.
    pub fn observe(&self, db: &SqliteDatabase, st: &SqliteDatabaseStatus) {
        let l = labels(db);
        let cond = |t: &str| st.conditions.iter().find(|c| c.type_ == t);
        let flag = |t: &str| cond(t).is_some_and(|c| c.status == "True") as i64;
        if let Some(t) = st
            .last_synced_txid
            .as_deref()
            .and_then(|t| u64::from_str_radix(t, 16).ok())
        {
            self.last_txid
                .get_or_create(&l)
                .set(t.min(i64::MAX as u64) as i64);
        }
        if let Some(t) = &st.last_synced_time {
            self.last_publish
                .get_or_create(&l)
                .set(t.0.as_millisecond() as f64 / 1000.0);
        }
        match st
            .writer
            .as_ref()
            .and_then(|w| w.unpublished_since.as_ref())
        {
            Some(t) => {
                self.unpublished_since
                    .get_or_create(&l)
                    .set(t.0.as_millisecond() as f64 / 1000.0);
            }
            None => {
                self.unpublished_since.remove(&l);
            }
        }
        if let Ok(d) = crds::parse_duration(&db.spec.sync_interval) {
            self.sync_interval.get_or_create(&l).set(d.as_secs_f64());
        }
        if let Some(n) = st.replica_size_bytes {
            self.replica_size.get_or_create(&l).set(n);
        }
        if let Some(n) = st.replica_files {
            self.replica_files.get_or_create(&l).set(n);
        }
        self.ready.get_or_create(&l).set(flag(READY));
        match cond(REPLICA_REACHABLE).map(|c| c.status.as_str()) {
            Some("True") => {
                self.reachable.get_or_create(&l).set(1);
            }
            Some("False") => {
                self.reachable.get_or_create(&l).set(0);
            }
            _ => {
                self.reachable.remove(&l);
            }
        }
        self.writer_held.get_or_create(&l).set(flag(WRITER_HELD));
        if let Some(e) = st.writer.as_ref().and_then(|w| w.epoch) {
            self.writer_epoch.get_or_create(&l).set(e);
        }
        let incomplete = st.last_handoff.as_ref().is_some_and(|h| !h.complete);
        self.drain_incomplete
            .get_or_create(&l)
            .set(incomplete as i64);
    }

    /// A hand-over seen for the first time.
    pub fn handoff(&self, db: &SqliteDatabase, complete: bool, fenced: bool) {
        let l = labels(db);
        self.handoffs
            .get_or_create(&HandoffLabels {
                namespace: l.namespace.clone(),
                database: l.database.clone(),
                complete: complete.to_string(),
            })
            .inc();
        if fenced {
            self.fenced.get_or_create(&l).inc();
        }
    }

    /// Drops every series of a deleted database.
    pub fn forget(&self, db: &SqliteDatabase) {
        let l = labels(db);
        for f in [
            &self.last_txid,
            &self.replica_size,
            &self.replica_files,
            &self.ready,
            &self.reachable,
            &self.writer_held,
            &self.writer_epoch,
            &self.drain_incomplete,
        ] {
            f.remove(&l);
        }
        self.last_publish.remove(&l);
        self.unpublished_since.remove(&l);
        self.sync_interval.remove(&l);
        self.fenced.remove(&l);
        for complete in ["true", "false"] {
            self.handoffs.remove(&HandoffLabels {
                namespace: l.namespace.clone(),
                database: l.database.clone(),
                complete: complete.into(),
            });
        }
    }
}

fn labels(db: &SqliteDatabase) -> DbLabels {
    DbLabels {
        namespace: db.namespace().unwrap_or_default(),
        database: db.name_any(),
    }
}
