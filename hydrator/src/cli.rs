//! Command-line interface.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::litestream_config;

#[derive(Parser)]
#[command(
    name = "hydrator",
    version,
    about = "Restore and hydrate SQLite databases from LTX replicas (Litestream 0.5 compatible)"
)]
pub struct Cli {
    /// Log output format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "HYDRATOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "HYDRATOR_LOG_LEVEL"
    )]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Restore a database from a replica, to the latest state or a point in time.
    Restore(crate::restore::RestoreArgs),
    /// List a replica's LTX files: TXID range, files per level, sizes, times.
    Ls(crate::ls::LsArgs),
    /// Publish a database's current state to a replica as the next TXID (a snapshot if
    /// the replica is empty): seeds a replica from an existing database.
    Sync(crate::sync::SyncArgs),
    /// Init-container mode, configured by SQLITE_KUBE_* environment variables: install the
    /// VFS into the shared volume, write its settings, hydrate (Blocking) or not.
    Init(crate::init::InitArgs),
}

/// Where the replica is: a URL, or a Litestream config file (plus which database in it).
#[derive(Args, Clone)]
pub struct ReplicaArgs {
    /// Replica URL: file:///dir, s3://bucket/path?endpoint=…, gs://bucket/path, abs://container/path.
    #[arg(long, env = "HYDRATOR_REPLICA_URL", conflicts_with = "config")]
    pub replica: Option<String>,
    /// A Litestream YAML config (`dbs:` with `replica:`) to read the replica from.
    #[arg(long, env = "LITESTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// With --config: the `path` of the database entry to use (optional when there is one).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

impl ReplicaArgs {
    /// Resolves to a replica URL, exporting credentials a config file carries.
    pub fn resolve(&self) -> Result<String> {
        match (&self.replica, &self.config) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(cfg)) => litestream_config::replica_url(cfg, self.db.as_deref())
                .with_context(|| format!("reading Litestream config {}", cfg.display())),
            (None, None) => {
                bail!("no replica given: pass --replica URL or --config litestream.yml")
            }
        }
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Restore(a) => crate::restore::run(a).await,
        Command::Ls(a) => crate::ls::run(a).await,
        Command::Sync(a) => crate::sync::run(a).await,
        Command::Init(a) => crate::init::run(a).await,
    }
}
