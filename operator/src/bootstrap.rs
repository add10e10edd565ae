//! `spec.bootstrap`: a new database starts from another replica's state. The operator
//! restores the source at the chosen point (latest, a TXID, a time) into a scratch file and
//! publishes it create-only as TXID 1 of this database's replica (L0 for writers, L9 for
//! restores), before the webhook admits any pod for the database. The source is only read.
//!
//! Crash safety: status records `phase: Copying` with the source TXID *before* anything is
//! published, so a replica that already holds TXID 1 is recognised as this bootstrap's own
//! work after a restart; a replica that was not empty before the bootstrap started is
//! refused (it is someone else's history).

use std::path::Path;

use bytes::Bytes;
use kube::api::Api;
use ltx::replica::{LtxKey, Replica, ReplicaError, SNAPSHOT_LEVEL};
use ltx::restore::{restore, RestoreOptions, Target};

use crds::{BootstrapPoint, BootstrapSpec, BootstrapStatus, SqliteDatabase, SqliteDatabaseStatus};

use crate::credentials;
use crate::Context;

pub const COPYING: &str = "Copying";
pub const COMPLETE: &str = "Complete";

/// How a bootstrap step ended.
#[derive(Debug)]
pub enum Step {
    /// The source's state is TXID 1 of this database (now, or earlier).
    Done { source_txid: String },
    /// Cannot go on: `reason` (CamelCase) and a message naming the problem.
    Blocked {
        reason: &'static str,
        message: String,
    },
}

fn blocked(reason: &'static str, message: impl Into<String>) -> Step {
    Step::Blocked {
        reason,
        message: message.into(),
    }
}

/// The restore target for a point.
pub fn target(p: BootstrapPoint) -> Target {
    match p {
        BootstrapPoint::Latest => Target::Latest,
        BootstrapPoint::Txid(t) => Target::Txid(t),
        BootstrapPoint::Time(t) => Target::Time(t.into()),
    }
}

/// Opens a replica spec with the credentials the operator may use for it.
async fn open(
    ctx: &Context,
    ns: &str,
    spec: &crds::ReplicaSpec,
    what: &str,
) -> crate::Result<Result<(Replica, String), Step>> {
    let Some(url) = spec.url() else {
        return Ok(Err(blocked(
            "InvalidSpec",
            format!("{what}: no replica URL"),
        )));
    };
    match credentials::open_replica(ctx, ns, spec, &url).await? {
        Ok(r) => Ok(Ok((r, url))),
        Err(why) => Ok(Err(blocked(
            "NoAccess",
            format!("the operator cannot read or write the {what} replica {url}: {why}"),
        ))),
    }
}

/// One bootstrap step. `st.bootstrap` is updated as it goes and written (over `old`)
/// before anything is published.
pub async fn step(
    ctx: &Context,
    db: &SqliteDatabase,
    ns: &str,
    b: &BootstrapSpec,
    old: &SqliteDatabaseStatus,
    st: &mut SqliteDatabaseStatus,
) -> crate::Result<Step> {
    let point = match b.from.point() {
        Ok(p) => p,
        Err(e) => return Ok(blocked("InvalidSpec", e)),
    };
    let (dest, dest_url) = match open(ctx, ns, &db.spec.replica, "database's own").await? {
        Ok(r) => r,
        Err(s) => return Ok(s),
    };
    let (source, source_url) = match open(ctx, ns, &b.from.replica, "source").await? {
        Ok(r) => r,
        Err(s) => return Ok(s),
    };
    let existing = list(&dest, &dest_url).await?;
    let started_here = st
        .bootstrap
        .as_ref()
        .filter(|s| s.phase == COPYING && s.source == source_url)
        .and_then(|s| s.source_txid.clone());
    if let Some(max) = existing {
        return Ok(match started_here {
            // Our own publish, interrupted before status said so: finish the L9 copy too.
            Some(txid) if max == 1 => {
                finish_snapshot(&dest, &dest_url).await?;
                Step::Done { source_txid: txid }
            }
            _ => blocked(
                "ReplicaNotEmpty",
                format!(
                    "the database's replica {dest_url} already holds TXIDs up to {}; a bootstrap needs an empty replica (remove spec.bootstrap to use it as it is)",
                    ltx::replica::format_txid(max)
                ),
            ),
        });
    }

    // Restore the source into a scratch file.
    let work = tempfile::tempdir()
        .map_err(|e| crate::Error::Bootstrap(format!("scratch directory: {e}")))?;
    let copy = work.path().join("source.db");
    let opts = RestoreOptions {
        target: target(point),
        ..Default::default()
    };
    let summary = match restore(&source, &copy, &opts).await {
        Ok(s) => s,
        Err(e) => {
            return Ok(blocked(
                "SourceUnavailable",
                format!("restoring {source_url} at {}: {e}", opts.target),
            ))
        }
    };
    let source_txid = ltx::replica::format_txid(summary.txid());
    let now = jiff::Timestamp::now();
    st.bootstrap = Some(BootstrapStatus {
        phase: COPYING.into(),
        source: source_url.clone(),
        target: opts.target.to_string(),
        source_txid: Some(source_txid.clone()),
        started: now.to_string(),
        completed: None,
    });
    let api: Api<SqliteDatabase> = Api::namespaced(ctx.client.clone(), ns);
    crate::reconcile::write_status(ctx, &api, db, old, st).await?;
    publish(&dest, &dest_url, &copy).await?;
    tracing::info!(db = %db.metadata.name.as_deref().unwrap_or(""), source = %source_url, source_txid, "bootstrap published as TXID 1");
    Ok(Step::Done { source_txid })
}

/// The replica's highest TXID, `None` when it holds no LTX file.
async fn list(r: &Replica, url: &str) -> crate::Result<Option<u64>> {
    let files = r.list_all().await.map_err(|e| crate::Error::Replica {
        url: url.to_string(),
        source: Box::new(e),
    })?;
    Ok(files.iter().map(|f| f.key.max_txid).max())
}

/// Publishes `db` as TXID 1: L0 (where a writer continues) then L9 (for restores).
async fn publish(dest: &Replica, url: &str, db: &Path) -> crate::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut buf = Vec::new();
    ltx::dbfile::encode_db(db, 1, 1, now, &mut buf)
        .map_err(|e| crate::Error::Bootstrap(format!("encoding the copy for {url}: {e}")))?;
    let data = Bytes::from(buf);
    for level in [0, SNAPSHOT_LEVEL] {
        match dest
            .write(&LtxKey::new(level, 1, 1), data.clone(), now, true)
            .await
        {
            Ok(()) | Err(ReplicaError::AlreadyExists { .. }) => {}
            Err(e) => {
                return Err(crate::Error::Replica {
                    url: url.to_string(),
                    source: Box::new(e),
                })
            }
        }
    }
    Ok(())
}

/// After a restart between the L0 and the L9 write: the L9 copy of TXID 1 from the L0 one.
async fn finish_snapshot(dest: &Replica, url: &str) -> crate::Result<()> {
    let err = |e: ReplicaError| crate::Error::Replica {
        url: url.to_string(),
        source: Box::new(e),
    };
    let files = dest.list_all().await.map_err(err)?;
    if files.iter().any(|f| f.key.level == SNAPSHOT_LEVEL) {
        return Ok(());
    }
    let Some(l0) = files
        .iter()
        .find(|f| f.key.level == 0 && f.key.max_txid == 1)
    else {
        return Ok(());
    };
    let data = dest.read(&l0.key).await.map_err(err)?;
    let now = jiff::Timestamp::now().as_millisecond();
    match dest
        .write(&LtxKey::new(SNAPSHOT_LEVEL, 1, 1), data, now, true)
        .await
    {
        Ok(()) | Err(ReplicaError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(err(e)),
    }
}
