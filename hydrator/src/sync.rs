//! `hydrator sync`: publish a database's current state as the replica's next TXID.
//! A consistent copy is taken with SQLite's backup API (any journal mode), then encoded
//! as a snapshot (empty replica) or as the pages that differ from the replica's latest
//! state. Every publish is create-only, so a concurrent writer cannot be overwritten.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use ltx::replica::{LtxKey, Replica, SNAPSHOT_LEVEL};
use ltx::restore::{restore, RestoreOptions};

#[derive(Args)]
pub struct SyncArgs {
    /// The SQLite database to publish.
    #[arg(long)]
    pub db: PathBuf,
    /// Replica URL.
    #[arg(long, env = "HYDRATOR_REPLICA_URL")]
    pub replica: String,
}

fn backup(src: &Path, dst: &Path) -> Result<()> {
    let c = rusqlite::Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("open {}", src.display()))?;
    c.backup(
        rusqlite::MAIN_DB,
        dst,
        None::<fn(rusqlite::backup::Progress)>,
    )
    .with_context(|| format!("back up {}", src.display()))?;
    Ok(())
}

pub async fn run(a: SyncArgs) -> Result<()> {
    let replica = Replica::open(&a.replica)?;
    let work = tempfile::tempdir()?;
    let copy = work.path().join("copy.db");
    backup(&a.db, &copy)?;
    let files = replica.list_all().await?;
    let max = files.iter().map(|f| f.key.max_txid).max().unwrap_or(0);
    let now = jiff::Timestamp::now().as_millisecond();
    if max == 0 {
        let mut buf = Vec::new();
        ltx::dbfile::encode_db(&copy, 1, 1, now, &mut buf)?;
        let data = Bytes::from(buf);
        // L9 for restores, L0 so a Litestream taking over finds where to continue.
        replica
            .write(&LtxKey::new(SNAPSHOT_LEVEL, 1, 1), data.clone(), now, true)
            .await?;
        replica
            .write(&LtxKey::new(0, 1, 1), data, now, true)
            .await?;
        println!("published snapshot TXID {:016x} to {}", 1, replica.url());
        return Ok(());
    }
    let current = work.path().join("replica.db");
    restore(&replica, &current, &RestoreOptions::default())
        .await
        .context("reading the replica's latest state")?;
    let txid = max + 1;
    let mut buf = Vec::new();
    match ltx::dbfile::encode_db_diff(&current, &copy, txid, txid, now, &mut buf)? {
        None => println!(
            "{} is already at the replica's TXID {max:016x}; nothing to publish",
            a.db.display()
        ),
        Some(_) => {
            replica
                .write(&LtxKey::new(0, txid, txid), Bytes::from(buf), now, true)
                .await?;
            println!("published TXID {txid:016x} to {}", replica.url());
        }
    }
    Ok(())
}
