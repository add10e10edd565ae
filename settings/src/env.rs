//! Environment variable names: what the webhook sets on injected pods, what `hydrator init`
//! reads and passes on in `vfs.env`, and what the VFS reads at open. The VFS's names
//! follow Litestream's VFS (`LITESTREAM_*`) so its users can swap extensions; ours are
//! `SQLITE_KUBE_*`.

// --- The VFS (app containers) ---

/// Where the database lives (`file://`, `s3://`, `gs://`, `abs://`).
pub const REPLICA_URL: &str = "LITESTREAM_REPLICA_URL";
/// `true`: this process writes (single writer, fenced at the store).
pub const WRITE_ENABLED: &str = "LITESTREAM_WRITE_ENABLED";
/// How often committed transactions are published (a duration).
pub const SYNC_INTERVAL: &str = "LITESTREAM_SYNC_INTERVAL";
/// The local write buffer (crash recovery).
pub const BUFFER_PATH: &str = "LITESTREAM_BUFFER_PATH";
/// Unpublished bytes before writers wait (a size).
pub const BUFFER_LIMIT: &str = "SQLITE_KUBE_BUFFER_LIMIT";
/// `true`: copy the whole database locally in the background.
pub const HYDRATION_ENABLED: &str = "LITESTREAM_HYDRATION_ENABLED";
/// Where the hydrated local copy goes.
pub const HYDRATION_PATH: &str = "LITESTREAM_HYDRATION_PATH";
/// Read-only mode: how often to look for new TXIDs (a duration).
pub const POLL_INTERVAL: &str = "LITESTREAM_POLL_INTERVAL";
/// LRU page cache for remote pages (a size).
pub const CACHE_SIZE: &str = "LITESTREAM_CACHE_SIZE";
/// The JSON status file.
pub const STATUS_PATH: &str = "SQLITE_KUBE_STATUS_PATH";
/// Writer: how often L0 is merged into L1 (`0` disables compaction and retention).
pub const COMPACTION_INTERVAL: &str = "SQLITE_KUBE_COMPACTION_INTERVAL";
/// Writer: how often a full snapshot is written to L9.
pub const SNAPSHOT_INTERVAL: &str = "SQLITE_KUBE_SNAPSHOT_INTERVAL";
/// Writer: how long L0 files are kept after L1 covers them.
pub const L0_RETENTION: &str = "SQLITE_KUBE_L0_RETENTION";
/// Writer: how long older snapshots are kept (the CRD's `retention`).
pub const SNAPSHOT_RETENTION: &str = "SQLITE_KUBE_SNAPSHOT_RETENTION";
/// Writer: how long the final sync on close may take.
pub const DRAIN_TIMEOUT: &str = "SQLITE_KUBE_DRAIN_TIMEOUT";
/// How many times a failed store request is retried (with backoff) before the operation
/// fails and is tried again at the next sync.
pub const STORE_RETRIES: &str = "SQLITE_KUBE_STORE_RETRIES";
/// Writer: accept a store that does not honour create-only writes (no fencing at the
/// store; only the Lease keeps a second writer out). Off by default.
pub const ALLOW_UNFENCED_STORE: &str = "SQLITE_KUBE_ALLOW_UNFENCED_STORE";
/// Lease-gated writer: while another pod holds the Lease, open at once as a standby
/// (reads served, writes wait with SQLITE_BUSY) and take over when the Lease comes free.
/// `false`: open blocks until the Lease is ours. On by default (RollingUpdate needs it).
pub const WRITER_STANDBY: &str = "SQLITE_KUBE_WRITER_STANDBY";
/// Writer: the Kubernetes Lease to hold while writing; enables lease-gated writes.
pub const LEASE: &str = "SQLITE_KUBE_LEASE";
/// The Lease's namespace (default: the service account's).
pub const NAMESPACE: &str = "SQLITE_KUBE_NAMESPACE";
/// The holder identity (the pod name; falls back to `HOSTNAME`).
pub const POD_NAME: &str = "SQLITE_KUBE_POD_NAME";
/// The pod's UID, for Events on the pod.
pub const POD_UID: &str = "SQLITE_KUBE_POD_UID";
/// The Lease duration; writes stop at 80 % of it without a renewal.
pub const LEASE_DURATION: &str = "SQLITE_KUBE_LEASE_DURATION";
/// The `SqliteDatabase` name (Events, status).
pub const DATABASE: &str = "SQLITE_KUBE_DATABASE";
/// A tracing level or directives.
pub const LOG_LEVEL: &str = "LITESTREAM_LOG_LEVEL";

/// Every VFS setting `hydrator init` may pass on in `vfs.env`: plain settings only. Any
/// other variable (credentials above all: `AWS_*`, `LITESTREAM_*_KEY`, `AZURE_*`) is never
/// written there, whatever its name looks like.
pub const VFS_SETTINGS: &[&str] = &[
    REPLICA_URL,
    WRITE_ENABLED,
    SYNC_INTERVAL,
    BUFFER_PATH,
    BUFFER_LIMIT,
    HYDRATION_ENABLED,
    HYDRATION_PATH,
    POLL_INTERVAL,
    CACHE_SIZE,
    STATUS_PATH,
    COMPACTION_INTERVAL,
    SNAPSHOT_INTERVAL,
    L0_RETENTION,
    SNAPSHOT_RETENTION,
    DRAIN_TIMEOUT,
    STORE_RETRIES,
    ALLOW_UNFENCED_STORE,
    WRITER_STANDBY,
    LOG_LEVEL,
];

// --- Set by the webhook for the app's own use (not read by the VFS) ---

/// The path the app opens (virtual: the VFS serves it).
pub const DB_PATH: &str = "SQLITE_KUBE_DB_PATH";
/// Where the VFS extension is in the shared volume.
pub const VFS_PATH: &str = "SQLITE_KUBE_VFS";
/// Several databases in one pod: a JSON object from each database's path to its settings
/// (these same variable names; secrets as `$(VAR)` references the kubelet expands). The VFS
/// reads a database's entry first, then the process environment.
pub const DATABASES: &str = "SQLITE_KUBE_DATABASES";
/// Credentials the VFS reads per database (only from a [`DATABASES`] entry; with one
/// database the object-store client reads them from the environment itself).
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
pub const AZURE_STORAGE_KEY: &str = "AZURE_STORAGE_KEY";
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";

// --- `hydrator init` ---

/// The replica URL as the init container gets it (falls back to [`REPLICA_URL`]).
pub const INIT_REPLICA_URL: &str = "SQLITE_KUBE_REPLICA_URL";
/// `Blocking`, `Background` or `Disabled`.
pub const INIT_HYDRATION: &str = "SQLITE_KUBE_HYDRATION";
/// The volume shared with the app (extension, `vfs.env`, `ready`).
pub const INIT_SHARED_DIR: &str = "SQLITE_KUBE_SHARED_DIR";
/// Where the extension is inside the hydrator image.
pub const INIT_VFS_SOURCE: &str = "SQLITE_KUBE_VFS_SOURCE";
/// Several databases in one pod: this hydrator's index (> 0 for all but the first), so
/// its `ready` and `vfs.env` files get their own names (`ready-1`, `vfs-1.env`).
pub const INIT_INDEX: &str = "SQLITE_KUBE_INIT_INDEX";
/// Prefix of extra VFS settings `hydrator init` passes through to `vfs.env`: the rest of
/// the name must be one of [`VFS_SETTINGS`] (`SQLITE_KUBE_VFS_LITESTREAM_SYNC_INTERVAL=2s`
/// is written as `LITESTREAM_SYNC_INTERVAL=2s`).
pub const VFS_PASSTHROUGH_PREFIX: &str = "SQLITE_KUBE_VFS_";
