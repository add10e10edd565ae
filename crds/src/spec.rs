//! `SqliteDatabase.spec`: where the replica lives and how the database is synced, hydrated
//! and handed between writers. Doc comments here are what `kubectl explain` shows.

// `printcolumn(type_ = "string")` repeats by design; clippy reads it as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::SqliteDatabaseStatus;

/// A SQLite database kept in object storage as an LTX replica (the format Litestream 0.5
/// uses). Pods opt in with the annotation `sqlitekube.dev/database: <name>`; the operator
/// guarantees at most one pod writes it at a time.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "sqlitekube.dev",
    version = "v1alpha1",
    kind = "SqliteDatabase",
    plural = "sqlitedatabases",
    singular = "sqlitedatabase",
    shortname = "sqldb",
    category = "sqlitekube",
    namespaced,
    status = "SqliteDatabaseStatus",
    doc = "A SQLite database replicated to object storage as LTX files, with one writer pod at a time.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Ready, Degraded, Failed or Deleting"
    ),
    printcolumn(
        name = "Writer",
        type_ = "string",
        json_path = ".status.writer.pod",
        description = "The pod holding the writer lease"
    ),
    printcolumn(
        name = "Last TXID",
        type_ = "string",
        json_path = ".status.lastSyncedTxid",
        description = "The last transaction published to the replica"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "duration(self.syncInterval) >= duration('100ms')", "message": "syncInterval must be at least 100ms"},
    {"rule": "duration(self.retention) >= duration(self.syncInterval)", "message": "retention must be at least the sync interval"},
    {"rule": "duration(self.writer.drainTimeout) >= duration(self.syncInterval)", "message": "writer.drainTimeout must be at least the sync interval"},
    {"rule": "duration(self.writer.leaseDuration) >= duration('5s')", "message": "writer.leaseDuration must be at least 5s"}
]))]
pub struct SqliteDatabaseSpec {
    /// Where the replica lives. Exactly one of s3, gcs, azure or file.
    pub replica: ReplicaSpec,

    /// How often the writer publishes its buffered transactions as one LTX file. This is
    /// also the most that can be lost if a writer's node and disk are lost together.
    #[serde(default = "default_sync_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub sync_interval: String,

    /// How often a full snapshot (level 9) is written, bounding restore time.
    #[serde(default = "default_snapshot_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub snapshot_interval: String,

    /// How long LTX files are kept; also how far back a point-in-time restore can go.
    #[serde(default = "default_retention")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub retention: String,

    /// How pods get a local copy of the database.
    #[serde(default)]
    pub hydration: HydrationSpec,

    /// The single-writer lease and the hand-over on drain.
    #[serde(default)]
    pub writer: WriterSpec,

    /// What happens to the replica's objects when this resource is deleted. Retain (the
    /// default) keeps them; Delete removes every LTX file of this database.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Start from another replica's state (a clone, or a rollback to a point in time): the
    /// operator copies it into this database's replica as TXID 1 before pods may use the
    /// database. Needs an empty replica; the source is never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<crate::bootstrap::BootstrapSpec>,
}

/// The object store holding the replica. Set exactly one backend.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.s3), has(self.gcs), has(self.azure), has(self.file)].filter(x, x).size() == 1",
    "message": "exactly one of s3, gcs, azure or file must be set"
}]))]
pub struct ReplicaSpec {
    /// Amazon S3 or an S3-compatible store (MinIO, SeaweedFS, R2, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Replica>,
    /// Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsReplica>,
    /// Azure Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureReplica>,
    /// A directory on a filesystem every pod of the database mounts (single node, dev).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileReplica>,
    /// Without a `credentialsSecretRef`, let the operator use its own identity (its
    /// environment, web identity or instance profile) to observe this replica and, with
    /// `deletionPolicy: Delete`, delete it. Honoured only when the operator runs with
    /// `--allow-operator-identity`: otherwise anyone who may create a SqliteDatabase could
    /// reach every bucket the operator can. Pods always use their own identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_operator_identity: bool,
}

/// An S3 bucket and prefix.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Replica {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix of this database inside the bucket (no leading slash), e.g. `apps/orders`.
    #[schemars(regex(pattern = r"^[^/].*$"))]
    pub path: String,
    /// Endpoint URL for S3-compatible stores, e.g. `http://minio.storage:9000`. Empty means AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://.+$"))]
    pub endpoint: Option<String>,
    /// Region; defaults to us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); defaults to true when an endpoint is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// Secret in the same namespace with the access key. Without it, pods use their
    /// ambient credentials (IRSA / workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
}

/// Keys of a Secret holding S3 credentials.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    /// Secret name (same namespace as the SqliteDatabase).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key holding the access key id.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key holding the secret access key.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

/// A Google Cloud Storage bucket and prefix.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsReplica {
    /// Bucket name.
    #[schemars(length(min = 3, max = 222))]
    pub bucket: String,
    /// Object prefix of this database (no leading slash).
    #[schemars(regex(pattern = r"^[^/].*$"))]
    pub path: String,
    /// JSON API base URL for a private endpoint or an emulator, e.g.
    /// `http://fake-gcs.storage:4443`. Empty means Google's. Without credentials, requests
    /// to an endpoint are not signed (as Google's SDKs do for an emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://.+$"))]
    pub endpoint: Option<String>,
    /// Secret key holding a service-account JSON key; without it, workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

/// An Azure Blob Storage container and prefix.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureReplica {
    /// Storage account name.
    #[schemars(length(min = 3, max = 24))]
    pub account_name: String,
    /// Container name.
    #[schemars(length(min = 3, max = 63))]
    pub container: String,
    /// Blob prefix of this database (no leading slash).
    #[schemars(regex(pattern = r"^[^/].*$"))]
    pub path: String,
    /// Blob service URL of the account for a sovereign or private cloud or an emulator,
    /// e.g. `http://azurite.storage:10000/devstoreaccount1`. Empty means
    /// `https://<accountName>.blob.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://.+$"))]
    pub endpoint: Option<String>,
    /// Secret key holding the storage account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

/// One key of a Secret in the database's namespace.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A replica directory on a shared or node-local filesystem.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileReplica {
    /// Absolute directory path, e.g. `/var/lib/sqlite-kube/replicas/orders`.
    #[schemars(regex(pattern = r"^/.*$"))]
    pub path: String,
}

/// Local copies of the database in pods.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HydrationSpec {
    /// Background: the app starts at once, pages are read remotely until the local copy is
    /// complete. Blocking: the pod waits for the full copy. Disabled: remote reads only.
    #[serde(default)]
    pub mode: HydrationMode,
    /// Directory in the pod where the local copy is kept.
    #[serde(default = "default_hydration_path")]
    #[schemars(regex(pattern = r"^/.*$"))]
    pub path: String,
    /// Memory for the page cache used before hydration completes (a quantity, e.g. 64Mi).
    #[serde(default = "default_cache_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub cache_size: String,
    /// Resources of the injected hydrator container. Default: requests 50m CPU and 64Mi
    /// memory, limit 256Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

impl Default for HydrationSpec {
    fn default() -> Self {
        HydrationSpec {
            mode: HydrationMode::default(),
            path: default_hydration_path(),
            cache_size: default_cache_size(),
            resources: None,
        }
    }
}

/// How a pod gets its local copy.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum HydrationMode {
    #[default]
    Background,
    Blocking,
    Disabled,
}

impl HydrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HydrationMode::Background => "Background",
            HydrationMode::Blocking => "Blocking",
            HydrationMode::Disabled => "Disabled",
        }
    }
}

/// The writer lease and the drain hand-over.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriterSpec {
    /// How long a writer's lease lasts without renewal. A writer that cannot renew stops
    /// accepting writes before this runs out; another pod may take over after it.
    #[serde(default = "default_lease_duration")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub lease_duration: String,
    /// How long a draining writer may take for its final sync before the operator reports
    /// unsynced data instead of handing the database on.
    #[serde(default = "default_drain_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub drain_timeout: String,
    /// Let writers start on a store that does not honour create-only writes (each writer
    /// probes its store at start and refuses such a store by default). Fencing at the store
    /// is then off: only the Lease keeps a stale writer out, so a writer paused past its
    /// lease can overwrite its successor's commits. See docs/durability.md.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unfenced_store: bool,
}

impl Default for WriterSpec {
    fn default() -> Self {
        WriterSpec {
            lease_duration: default_lease_duration(),
            drain_timeout: default_drain_timeout(),
            allow_unfenced_store: false,
        }
    }
}

/// What deleting the SqliteDatabase does to its replica.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

fn default_sync_interval() -> String {
    "1s".into()
}
fn default_snapshot_interval() -> String {
    "24h".into()
}
fn default_retention() -> String {
    "24h".into()
}
fn default_hydration_path() -> String {
    "/var/lib/sqlite-kube".into()
}
fn default_cache_size() -> String {
    "64Mi".into()
}
fn default_lease_duration() -> String {
    "15s".into()
}
fn default_drain_timeout() -> String {
    "30s".into()
}
fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}
