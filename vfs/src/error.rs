//! What can go wrong in the VFS, by what happened. Callers decide by kind: only
//! [`VfsError::Fenced`] means "another writer owns the replica"; a store failure is retried;
//! misuse and encoder errors are bugs to report, never mistaken for fencing.

use std::path::PathBuf;

use ltx::format::LtxError;
use ltx::replica::ReplicaError;

/// Errors surfaced to SQLite as I/O errors (and logged with this text).
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("replica: {0}")]
    Remote(#[from] crate::remote::RemoteError),
    /// The store failed (after its own retries) or refused the credentials.
    #[error("replica: {0}")]
    Store(#[from] ReplicaError),
    #[error("write buffer {path}: {source}")]
    Buffer {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hydrated copy {path}: {source}")]
    LocalCopy {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another writer owns the replica: this writer must not publish again.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// Our own pages did not make a valid LTX file (a bug, not a store problem).
    #[error("encoding TXID {txid}: {source}")]
    Encode { txid: u64, source: LtxError },
    /// SQLite (or the host) used the VFS in a way it does not support.
    #[error("{0}")]
    Misuse(String),
    /// Shutdown's deadline (the drain timeout) passed while the store call was running.
    #[error("{what} did not finish before the drain deadline")]
    DrainDeadline { what: String },
    /// Compaction, snapshot or retention failed (the writer retries later).
    #[error("maintenance: {0}")]
    Maintenance(#[from] ltx::compact::CompactError),
    /// Hydration's restore failed (reads stay remote).
    #[error("hydration: {0}")]
    Restore(#[from] ltx::restore::RestoreError),
    /// A reader's snapshot is gone: retention deleted the files that held TXID `txid` before
    /// the reader moved past it (it fell behind by more than `l0_retention`). The read
    /// fails; the next read transaction starts from the latest TXID.
    #[error("the replica no longer holds TXID {txid} (retention deleted its files while this reader was still reading it); retry the transaction")]
    SnapshotGone { txid: u64 },
    /// A bug caught at the boundary (a panicked task), reported instead of crashing the app.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store accepted a second create-only write of one object: it cannot fence a
    /// stale writer, so this writer refuses to start unless the user opted in.
    #[error("the replica store {url} does not honour create-only writes ({detail}): a stale writer could overwrite this writer's commits there. Use a store with conditional writes (If-None-Match: * on S3 and Azure, ifGenerationMatch=0 on GCS), or accept the risk with allow_unfenced_store=true / SQLITE_KUBE_ALLOW_UNFENCED_STORE=true (spec.writer.allowUnfencedStore)")]
    UnfencedStore { url: String, detail: String },
    #[error(transparent)]
    Lease(#[from] crate::writer_lease::LeaseFailure),
}

/// This writer may not publish: another writer published the TXID it tried to claim, or
/// the replica moved on while it had unpublished commits. The reason says which, and where
/// the unpublished pages are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Fenced {
    pub reason: String,
}

impl Fenced {
    pub fn new(reason: impl Into<String>) -> Self {
        Fenced {
            reason: reason.into(),
        }
    }
}

impl VfsError {
    pub(crate) fn buffer(path: &std::path::Path, source: std::io::Error) -> Self {
        VfsError::Buffer {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn local_copy(path: &std::path::Path, source: std::io::Error) -> Self {
        VfsError::LocalCopy {
            path: path.to_path_buf(),
            source,
        }
    }
}
