//! `SqliteDatabase.status`: what the operator last observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state, written only by the operator (status subresource).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteDatabaseStatus {
    /// Pending, Ready, Degraded (replica or writer trouble), Failed (invalid spec) or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Phase")] // not nullable: a null in an enum breaks kubectl's validation
    pub phase: Option<Phase>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, SpecValid, ReplicaExclusive, ReplicaReachable, WriterHeld.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The pod holding the writer lease, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<WriterStatus>,
    /// The highest transaction ID in the replica (16 hex digits, as in LTX file names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_txid: Option<String>,
    /// When that transaction's LTX file was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_time: Option<Time>,
    /// Total bytes of LTX files in the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_size_bytes: Option<i64>,
    /// Number of LTX files in the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_files: Option<i64>,
    /// The replica as a URL (the form `litestream restore` and the hydrator accept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_url: Option<String>,
    /// What the last drain hand-over left unsynced, if it did not finish in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsynced: Option<String>,
    /// The last time a writer stopped: who, and the last TXID it published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handoff: Option<HandoffStatus>,
    /// Progress of `spec.bootstrap`: what was copied from where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapStatus>,
}

/// A bootstrap's progress and result.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapStatus {
    /// Copying (started, nothing published yet, or interrupted) or Complete.
    pub phase: String,
    /// The source replica (URL).
    pub source: String,
    /// The point asked for: latest, a TXID or a time.
    pub target: String,
    /// The source TXID the copy holds (16 hex digits), once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_txid: Option<String>,
    /// When the copy started (RFC 3339).
    pub started: String,
    /// When it was published as TXID 1 of this database (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<String>,
}

/// A writer's stop, as it reported on the writer Lease.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandoffStatus {
    /// The pod that stopped writing.
    pub from: String,
    /// The last TXID it published (16 hex digits); the next writer continues after it.
    pub txid: String,
    /// When it stopped (RFC 3339).
    pub time: String,
    /// True when its final sync published everything before it released the lease.
    pub complete: bool,
}

/// Coarse state for `kubectl get`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Ready,
    Degraded,
    Failed,
    Deleting,
}

/// The current writer.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriterStatus {
    /// Pod name.
    pub pod: String,
    /// The Lease holder identity: the pod name, its incarnation and process
    /// (`<pod>_<uid prefix>_<pid>`), which tells a restarted container from its predecessor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Lease epoch (incremented on every acquisition; also recorded at the object store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// When the lease was acquired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Since when the writer's committed transactions wait to be published, once they have
    /// waited 10 sync intervals (at least 10 s): its store is failing (see the pod's log
    /// and status file). Absent when everything is published, also when the app is idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpublished_since: Option<Time>,
}

/// Condition types.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const SPEC_VALID: &str = "SpecValid";
    pub const REPLICA_REACHABLE: &str = "ReplicaReachable";
    pub const WRITER_HELD: &str = "WriterHeld";
    /// False when another database created earlier has an equal or nested replica root.
    pub const REPLICA_EXCLUSIVE: &str = "ReplicaExclusive";
    /// With `spec.bootstrap`: True once the source's state is TXID 1 of this database.
    pub const BOOTSTRAPPED: &str = "Bootstrapped";
}
