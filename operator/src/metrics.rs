//! Prometheus metrics (text exposition at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciliations: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub status_updates: Counter,
    /// 1 while this replica is the elected leader.
    pub leader: Gauge,
    pub admission_duration: Histogram,
    /// `sqlitekube_database_*`, one series per database.
    pub databases: crate::database_metrics::DatabaseMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let databases = crate::database_metrics::DatabaseMetrics::default();
        databases.register(root.sub_registry_with_prefix("sqlitekube_database"));
        let registry = root.sub_registry_with_prefix("sqlitekube_operator");
        let reconciliations = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let status_updates = Counter::default();
        let leader = Gauge::default();
        let admission_duration =
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5]);
        registry.register(
            "admission_duration_seconds",
            "Time the pod webhook took to answer (server side)",
            admission_duration.clone(),
        );
        registry.register(
            "reconciliations",
            "Reconciles of SqliteDatabase objects",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        registry.register(
            "status_updates",
            "Status writes (skipped when nothing changed)",
            status_updates.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica is the elected leader (1) or a standby (0)",
            leader.clone(),
        );
        Metrics {
            registry: root,
            databases,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            status_updates,
            leader,
            admission_duration,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The per-database gauges, from the status the controller writes.
    pub fn database(&self, db: &crds::SqliteDatabase, st: &crds::SqliteDatabaseStatus) {
        self.databases.observe(db, st);
    }

    pub fn error(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}
