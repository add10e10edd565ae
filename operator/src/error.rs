//! Reconcile errors. Each names what failed; the controller requeues them with backoff.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("{0}")]
    Lease(#[from] lease::LeaseError),

    /// The Secret named by the spec, or a key in it, is missing.
    #[error("credentials: {0}")]
    Credentials(String),

    #[error("replica {url}: {source}")]
    Replica {
        url: String,
        #[source]
        source: Box<ltx::replica::ReplicaError>,
    },

    #[error("replica {url}: no answer within {secs} s")]
    ReplicaTimeout { url: String, secs: u64 },

    #[error("object has no {0}")]
    MissingField(&'static str),

    /// Copying `spec.bootstrap`'s source failed locally (scratch space, encoding).
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

impl Error {
    /// A short CamelCase name for metrics labels and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApi",
            Error::Finalizer(_) => "Finalizer",
            Error::Lease(_) => "Lease",
            Error::Credentials(_) => "CredentialsMissing",
            Error::Replica { .. } | Error::ReplicaTimeout { .. } => "ReplicaUnreachable",
            Error::MissingField(_) => "InvalidObject",
            Error::Bootstrap(_) => "BootstrapFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
