//! `hydrator restore`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use ltx::replica::{parse_txid, Replica};
use ltx::restore::{restore, RestoreError, RestoreOptions, Target};

use crate::cli::ReplicaArgs;
use crate::progress::RestoreProgress;

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub replica: ReplicaArgs,
    /// Where to write the database (must not exist unless --force).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Restore up to this TXID (16 hex digits as Litestream prints them, or decimal).
    #[arg(long, conflicts_with = "timestamp")]
    pub txid: Option<String>,
    /// Restore the state as of this time (RFC 3339): files created strictly before it.
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Downloads in flight at once.
    #[arg(long, default_value_t = 16, env = "HYDRATOR_CONCURRENCY")]
    pub concurrency: usize,
    /// Overwrite an existing output file.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Exit successfully (doing nothing) when the replica holds no files.
    #[arg(long)]
    pub if_replica_exists: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn target(txid: Option<&str>, timestamp: Option<&str>) -> Result<Target> {
    Ok(match (txid, timestamp) {
        (Some(t), _) => {
            Target::Txid(parse_txid(t).with_context(|| {
                format!("--txid {t:?} is not a TXID (16 hex digits or decimal)")
            })?)
        }
        (None, Some(ts)) => {
            let t: jiff::Timestamp = ts
                .parse()
                .with_context(|| format!("--timestamp {ts:?} is not an RFC 3339 time"))?;
            Target::Time(t.into())
        }
        (None, None) => Target::Latest,
    })
}

pub async fn run(a: RestoreArgs) -> Result<()> {
    let url = a.replica.resolve()?;
    let replica = Replica::open(&url)?;
    let progress = Arc::new(RestoreProgress::new());
    let opts = RestoreOptions {
        target: target(a.txid.as_deref(), a.timestamp.as_deref())?,
        concurrency: a.concurrency.max(1),
        force: a.force,
        staging_dir: None,
        progress: progress.clone(),
        ..Default::default()
    };
    let res = restore(&replica, &a.output, &opts).await;
    progress.finish();
    let s = match res {
        Err(RestoreError::NoReplica(u)) if a.if_replica_exists => {
            tracing::info!(replica = %u, "no replica found; nothing restored");
            return Ok(());
        }
        r => r.with_context(|| format!("restore from {url} failed"))?,
    };
    let secs = s.elapsed.as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "db_path": a.output, "replica": url, "txid": format!("{:016x}", s.db.txid),
                "pages": s.db.commit, "page_size": s.db.page_size, "files": s.files,
                "files_resumed": s.files_resumed, "bytes_downloaded": s.bytes_downloaded,
                "checksum": format!("{:016x}", s.db.checksum), "checksum_verified": s.db.checksum_verified,
                "pages_from_later_files": s.db.pages_from_later_files,
                "duration_ms": s.elapsed.as_millis() as u64,
            })
        );
    } else {
        println!(
            "restored {} to TXID {:016x} ({} pages of {} bytes) from {} files ({} resumed), {:.1} MB downloaded in {:.2}s",
            a.output.display(),
            s.db.txid,
            s.db.commit,
            s.db.page_size,
            s.files,
            s.files_resumed,
            s.bytes_downloaded as f64 / 1e6,
            secs
        );
    }
    Ok(())
}
