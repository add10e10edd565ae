//! Errors from talking to a replica. Each names the replica object or setting involved.

use crate::format::LtxError;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("invalid replica URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("missing credentials for {url}: {hint}")]
    MissingCredentials { url: String, hint: String },

    #[error("{path} not found in the replica")]
    NotFound { path: String },

    /// A create-only write found the name taken by other content: another writer
    /// published this TXID first.
    #[error("{path} already exists with different content: another writer published it (fenced)")]
    AlreadyExists { path: String },

    #[error("object store error on {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: opendal::Error,
    },

    #[error("{path}: {source}")]
    Ltx {
        path: String,
        #[source]
        source: LtxError,
    },

    #[error("local I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ReplicaError {
    pub(crate) fn store(path: &str, e: opendal::Error) -> Self {
        match e.kind() {
            opendal::ErrorKind::NotFound => ReplicaError::NotFound {
                path: path.to_string(),
            },
            _ => ReplicaError::Store {
                path: path.to_string(),
                source: e,
            },
        }
    }

    pub(crate) fn ltx(path: &str, e: LtxError) -> Self {
        ReplicaError::Ltx {
            path: path.to_string(),
            source: e,
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, e: std::io::Error) -> Self {
        ReplicaError::Io {
            path: path.as_ref().display().to_string(),
            source: e,
        }
    }
}

pub type Result<T, E = ReplicaError> = std::result::Result<T, E>;
