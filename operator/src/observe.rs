//! What the replica holds: latest TXID, its time, total size. One listing per reconcile.

use std::time::Duration;

use ltx::replica::{Credentials, Replica, ReplicaOptions, ReplicaUrl};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Highest TXID in any level, `None` for an empty replica.
    pub latest_txid: Option<u64>,
    pub latest_time: Option<jiff::Timestamp>,
    pub size_bytes: u64,
    pub files: u64,
}

/// Opens the replica at `url` with the credentials the database's Secret gave. The
/// operator's own (environment, web identity, instance profile) only with `ambient`, which
/// [`crate::credentials::access`] grants: otherwise anyone who may create a
/// `SqliteDatabase` could list or delete any bucket the operator can reach.
pub fn open(
    url: &str,
    credentials: Credentials,
    ambient: bool,
    timeout: Duration,
) -> Result<Replica> {
    let parsed = ReplicaUrl::parse(url).map_err(|e| Error::Replica {
        url: url.to_string(),
        source: Box::new(e),
    })?;
    let opts = ReplicaOptions {
        timeout,
        io_timeout: timeout,
        retries: 1,
        credentials,
        ambient,
    };
    Replica::open_with(parsed, &opts).map_err(|e| Error::Replica {
        url: url.to_string(),
        source: Box::new(e),
    })
}

/// Lists the replica within `timeout`.
pub async fn observe(replica: &Replica, timeout: Duration) -> Result<Observation> {
    let url = replica.url().to_string();
    let work = async {
        replica.check_reachable().await?;
        replica.list_all().await
    };
    let files = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::ReplicaTimeout {
            url: url.clone(),
            secs: timeout.as_secs(),
        })?
        .map_err(|e| Error::Replica {
            url,
            source: Box::new(e),
        })?;
    let latest = files.iter().max_by_key(|f| (f.key.max_txid, f.created_at));
    Ok(Observation {
        latest_txid: latest.map(|f| f.key.max_txid),
        latest_time: latest.and_then(|f| jiff::Timestamp::try_from(f.created_at).ok()),
        size_bytes: files.iter().map(|f| f.size).sum(),
        files: files.len() as u64,
    })
}
