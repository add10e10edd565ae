//! `kubectl sqlite` (the binary `kubectl-sqlite` on PATH): the databases the operator runs,
//! from the command line.
//!
//!   kubectl sqlite status [NAME…] [-A] [-o table|json|yaml]
//!   kubectl sqlite restore NAME --to FILE [--txid HEX | --timestamp RFC3339]
//!   kubectl sqlite switchover NAME [--timeout 120s]
//!   kubectl sqlite fence NAME [--reason TEXT]
//!   kubectl sqlite unfence NAME [--timeout 120s] [--force]
//!   kubectl sqlite logs NAME [-f] [--tail N]
//!
//! `--namespace`/`-n` and `--context` as kubectl takes them.

mod fence;
mod restore;
mod status;
mod switchover;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crds::SqliteDatabase;

#[derive(Parser)]
#[command(
    name = "kubectl sqlite",
    about = "SQLite databases replicated by sqlite-kube"
)]
struct Cli {
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
    /// Databases with their phase, writer, epoch, last TXID, lag and last hand-over.
    Status {
        /// Only these databases.
        names: Vec<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
        /// The time lags are measured against (RFC 3339; default now).
        #[arg(long, hide = true)]
        now: Option<jiff::Timestamp>,
    },
    /// Restores a database from its replica into a local file (latest, a TXID or a time),
    /// with the credentials its spec references.
    Restore {
        name: String,
        /// The file to write.
        #[arg(long)]
        to: std::path::PathBuf,
        /// Up to and including this TXID (hex).
        #[arg(long, conflicts_with = "timestamp")]
        txid: Option<String>,
        /// As of this time (RFC 3339).
        #[arg(long)]
        timestamp: Option<jiff::Timestamp>,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Asks the writer pod to drain (an eviction: its final sync, then the Lease released)
    /// and waits until another pod writes.
    Switchover {
        name: String,
        /// How long to wait for the new writer.
        #[arg(long, default_value = "120s")]
        timeout: String,
    },
    /// Stops writes for maintenance: takes the writer Lease, as if another writer had;
    /// the writer refuses writes from its next renewal on (and still publishes what it
    /// committed). Pods wait until `unfence`.
    Fence {
        name: String,
        /// Why (shown in the database's status).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Ends a fence once the writer it stopped has published everything it committed; a
    /// waiting pod takes over.
    Unfence {
        name: String,
        /// How long to wait for the fenced writer's report.
        #[arg(long, default_value = "120s")]
        timeout: String,
        /// Release even if the fenced writer has not reported (its unpublished commits
        /// would be lost when another writer takes over).
        #[arg(long)]
        force: bool,
    },
    /// The writer pod's logs (`kubectl logs`).
    Logs {
        name: String,
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(long)]
        tail: Option<i64>,
    },
}

async fn client(context: Option<&str>) -> Result<(Client, String)> {
    let opts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match Kubeconfig::read() {
        Ok(kc) => Config::from_custom_kubeconfig(kc, &opts).await?,
        Err(_) if context.is_none() => Config::infer().await?,
        Err(e) => return Err(e).context("reading the kubeconfig"),
    };
    let ns = config.default_namespace.clone();
    Ok((Client::try_from(config)?, ns))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (client, default_ns) = client(cli.context.as_deref()).await?;
    let ns = cli.namespace.clone().unwrap_or(default_ns);
    match cli.command {
        Command::Status {
            names,
            all_namespaces,
            output,
            now,
        } => {
            let api: Api<SqliteDatabase> = if all_namespaces {
                Api::all(client)
            } else {
                Api::namespaced(client, &ns)
            };
            let mut dbs = api.list(&ListParams::default()).await?.items;
            if !names.is_empty() {
                dbs.retain(|d| names.iter().any(|n| Some(n) == d.metadata.name.as_ref()));
                for n in &names {
                    if !dbs.iter().any(|d| d.metadata.name.as_ref() == Some(n)) {
                        bail!("SqliteDatabase {ns}/{n} not found");
                    }
                }
            }
            let now = now.unwrap_or_else(jiff::Timestamp::now);
            let rows: Vec<status::Row> = dbs.iter().map(|d| status::row(d, now)).collect();
            match output {
                Output::Table if rows.is_empty() => {
                    eprintln!(
                        "No SqliteDatabases in {}.",
                        if all_namespaces { "any namespace" } else { &ns }
                    )
                }
                Output::Table => print!("{}", status::table(&rows, all_namespaces)),
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Yaml => print!("{}", serde_yaml::to_string(&rows)?),
            }
        }
        Command::Restore {
            name,
            to,
            txid,
            timestamp,
            force,
        } => restore::run(&client, &ns, &name, &to, txid, timestamp, force).await?,
        Command::Switchover { name, timeout } => {
            let timeout = crds::parse_duration(&timeout)
                .map_err(|e| anyhow::anyhow!("--timeout {timeout:?}: {e}"))?;
            switchover::run(&client, &ns, &name, timeout).await?
        }
        Command::Fence { name, reason } => fence::fence(&client, &ns, &name, &reason).await?,
        Command::Unfence {
            name,
            timeout,
            force,
        } => {
            let timeout = crds::parse_duration(&timeout)
                .map_err(|e| anyhow::anyhow!("--timeout {timeout:?}: {e}"))?;
            fence::unfence(&client, &ns, &name, timeout, force).await?
        }
        Command::Logs { name, follow, tail } => {
            let api: Api<SqliteDatabase> = Api::namespaced(client, &ns);
            let db = api
                .get(&name)
                .await
                .with_context(|| format!("SqliteDatabase {ns}/{name}"))?;
            let Some(pod) = db.status.and_then(|s| s.writer).map(|w| w.pod) else {
                bail!("no pod holds the writer lease of {ns}/{name}");
            };
            let mut c = std::process::Command::new("kubectl");
            if let Some(ctx) = &cli.context {
                c.args(["--context", ctx]);
            }
            c.args(["-n", &ns, "logs", &pod, "--all-containers", "--prefix"]);
            if follow {
                c.arg("-f");
            }
            if let Some(t) = tail {
                c.arg(format!("--tail={t}"));
            }
            let st = c.status().context("running kubectl logs")?;
            std::process::exit(st.code().unwrap_or(1));
        }
    }
    Ok(())
}
