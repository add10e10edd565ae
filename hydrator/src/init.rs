//! `hydrator init`: the init container. Configured only by environment variables (the
//! operator's webhook sets them), it
//! 1. copies the VFS extension from the image into the volume shared with the app,
//! 2. writes the VFS settings there as `vfs.env` (`KEY=value` lines, Litestream names),
//! 3. hydrates: `Blocking` restores the database before the app starts; `Background`
//!    leaves it to the VFS so the app starts at once; `Disabled` reads stay remote.
//!
//! Bad configuration exits non-zero with a message naming the variable, so
//! `kubectl describe pod` shows why the pod does not start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ltx::replica::Replica;
use ltx::restore::{restore, RestoreError, RestoreOptions, Target};
use settings::env;

use crate::progress::RestoreProgress;

/// Default location of the VFS extension inside the hydrator image.
pub const DEFAULT_VFS_SOURCE: &str = "/usr/local/lib/sqlite-kube/libsqlite_kube_vfs.so";
/// File name of the extension in the shared volume.
pub const VFS_FILE: &str = "libsqlite_kube_vfs.so";
/// The `LD_PRELOAD` library for unmodified apps, next to the extension in the image and in
/// the shared volume.
pub const PRELOAD_FILE: &str = "libsqlite_kube_preload.so";

#[derive(Args)]
pub struct InitArgs {
    /// Keep running after init until SIGTERM (native sidecar mode: Kubernetes restarts a
    /// sidecar that exits). Readiness is the file `ready` in the shared directory.
    #[arg(long)]
    pub stay: bool,
}

/// Written to the shared directory once init (including a Blocking hydration) is done.
pub const READY_FILE: &str = "ready";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hydration {
    Blocking,
    Background,
    Disabled,
}

#[derive(Debug)]
pub struct InitConfig {
    pub replica_url: String,
    pub db_path: Option<PathBuf>,
    pub hydration: Hydration,
    pub shared_dir: PathBuf,
    pub vfs_source: PathBuf,
    /// Extra VFS settings for `vfs.env`, from an allow-list ([`passthrough`]).
    pub passthrough: Vec<(String, String)>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl InitConfig {
    pub fn from_env() -> Result<InitConfig> {
        let replica_url = var(env::INIT_REPLICA_URL)
            .or_else(|| var(env::REPLICA_URL))
            .ok_or_else(|| {
                anyhow!(
                    "SQLITE_KUBE_REPLICA_URL is not set: the init container needs the replica URL"
                )
            })?;
        ltx::replica::ReplicaUrl::parse(&replica_url).context(env::INIT_REPLICA_URL)?;
        let hydration = match var(env::INIT_HYDRATION)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("background") => Hydration::Background,
            Some("blocking") => Hydration::Blocking,
            Some("disabled") => Hydration::Disabled,
            Some(other) => bail!(
                "SQLITE_KUBE_HYDRATION={other:?} is not one of Blocking, Background, Disabled"
            ),
        };
        let db_path = var(env::DB_PATH).map(PathBuf::from);
        if hydration != Hydration::Disabled && db_path.is_none() {
            bail!("SQLITE_KUBE_DB_PATH is not set: hydration needs a local path for the database");
        }
        let shared_dir =
            PathBuf::from(var(env::INIT_SHARED_DIR).ok_or_else(|| {
                anyhow!("SQLITE_KUBE_SHARED_DIR is not set: nowhere to put the VFS")
            })?);
        let vfs_source =
            PathBuf::from(var(env::INIT_VFS_SOURCE).unwrap_or_else(|| DEFAULT_VFS_SOURCE.into()));
        let passthrough = passthrough(std::env::vars());
        Ok(InitConfig {
            replica_url,
            db_path,
            hydration,
            shared_dir,
            vfs_source,
            passthrough,
        })
    }

    /// The `vfs.env` contents. Credentials are never written: the app container gets
    /// them from the same Secret through its own environment.
    pub fn vfs_env(&self) -> String {
        let mut lines = vec![format!("{}={}", env::REPLICA_URL, self.replica_url)];
        match (&self.db_path, self.hydration) {
            (Some(p), Hydration::Blocking | Hydration::Background) => {
                lines.push(format!("{}=true", env::HYDRATION_ENABLED));
                lines.push(format!("{}={}", env::HYDRATION_PATH, p.display()));
            }
            _ => lines.push(format!("{}=false", env::HYDRATION_ENABLED)),
        }
        let mut extra = self.passthrough.clone();
        extra.sort();
        for (k, v) in extra {
            if !lines.iter().any(|l| l.starts_with(&format!("{k}="))) {
                lines.push(format!("{k}={v}"));
            }
        }
        lines.join("\n") + "\n"
    }
}

/// The VFS settings among `vars` for `vfs.env`: names on the allow-list
/// ([`env::VFS_SETTINGS`]), as they are or behind [`env::VFS_PASSTHROUGH_PREFIX`]. Anything
/// else that looks meant for the VFS is dropped with a warning naming the variable (never
/// its value): a credential must not land in a file every container of the pod can read.
pub fn passthrough(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in vars {
        if k == env::INIT_VFS_SOURCE {
            continue;
        }
        let name = k.strip_prefix(env::VFS_PASSTHROUGH_PREFIX).unwrap_or(&k);
        if env::VFS_SETTINGS.contains(&name) && !v.contains('\n') {
            out.push((name.to_string(), v));
        } else if k.starts_with(env::VFS_PASSTHROUGH_PREFIX) || k.starts_with("LITESTREAM_") {
            tracing::warn!(
                variable = %k,
                "not a VFS setting: left out of vfs.env (credentials reach the app from its own environment)"
            );
        }
    }
    out
}

/// Copies `from` to `to` through a temporary name, streaming: the libraries are large (debug
/// info) and the init container's memory limit small.
fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("rename to {}", to.display()))?;
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// `name` for the first database's hydrator, `name` with `-<index>` before the extension
/// for the others (several databases in one pod: `ready-1`, `vfs-1.env`).
pub fn indexed(name: &str) -> String {
    match var(env::INIT_INDEX).filter(|i| i != "0") {
        None => name.to_string(),
        Some(i) => match name.split_once('.') {
            Some((stem, ext)) => format!("{stem}-{i}.{ext}"),
            None => format!("{name}-{i}"),
        },
    }
}

pub async fn run(a: InitArgs) -> Result<()> {
    let cfg = InitConfig::from_env()?;
    let ready = cfg.shared_dir.join(indexed(READY_FILE));
    let _ = std::fs::remove_file(&ready);
    setup(&cfg).await?;
    write_atomic(&ready, b"ok\n")?;
    if a.stay {
        tracing::info!("init done; staying until SIGTERM (sidecar)");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing a SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    Ok(())
}

async fn setup(cfg: &InitConfig) -> Result<()> {
    std::fs::create_dir_all(&cfg.shared_dir)
        .with_context(|| format!("create shared dir {}", cfg.shared_dir.display()))?;
    if cfg.vfs_source.exists() {
        let dest = cfg.shared_dir.join(VFS_FILE);
        copy_atomic(&cfg.vfs_source, &dest)?;
        tracing::info!(from = %cfg.vfs_source.display(), to = %dest.display(), "VFS extension installed");
        let preload = cfg.vfs_source.with_file_name(PRELOAD_FILE);
        if preload.exists() {
            let dest = cfg.shared_dir.join(PRELOAD_FILE);
            copy_atomic(&preload, &dest)?;
            tracing::info!(to = %dest.display(), "LD_PRELOAD library for unmodified apps installed");
        }
    } else if var(env::INIT_VFS_SOURCE).is_some() {
        bail!(
            "SQLITE_KUBE_VFS_SOURCE={} does not exist in the hydrator image",
            cfg.vfs_source.display()
        );
    } else {
        tracing::warn!(
            path = DEFAULT_VFS_SOURCE,
            "no VFS extension in this image; only the configuration is written"
        );
    }
    write_atomic(
        &cfg.shared_dir.join(indexed("vfs.env")),
        cfg.vfs_env().as_bytes(),
    )?;

    let replica = Replica::open(&cfg.replica_url).context(env::INIT_REPLICA_URL)?;
    replica
        .check_reachable()
        .await
        .with_context(|| format!("replica {} is not reachable", cfg.replica_url))?;
    match cfg.hydration {
        Hydration::Disabled | Hydration::Background => {
            tracing::info!(mode = ?cfg.hydration, "init done; the app starts now");
            Ok(())
        }
        Hydration::Blocking => hydrate(&replica, cfg.db_path.as_deref().expect("checked")).await,
    }
}

/// The app container may run as another user than this one (Pod Security "restricted"
/// makes the hydrator non-root; the app's user is its own): the local copy and its record
/// must be writable by it. They live in the pod's own volume, shared only by its containers.
fn share_with_app(db: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = ltx::restore::hydrated::meta_path(db);
    for p in [db, meta.as_path()] {
        if p.exists() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666))
                .with_context(|| format!("make {} writable by the app", p.display()))?;
        }
    }
    Ok(())
}

/// Restores the replica's latest state to `db` unless it already holds it.
async fn hydrate(replica: &Replica, db: &Path) -> Result<()> {
    let remote = replica.latest_txid().await?;
    if ltx::restore::hydrated::read_meta(db) == Some(remote) {
        tracing::info!(txid = remote, path = %db.display(), "local database already current");
        return Ok(());
    }
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let progress = Arc::new(RestoreProgress::new());
    let opts = RestoreOptions {
        target: Target::Latest,
        force: true,
        progress: progress.clone(),
        ..Default::default()
    };
    match restore(replica, db, &opts).await {
        Ok(s) => {
            progress.finish();
            ltx::restore::hydrated::write_meta(db, s.db.txid)
                .with_context(|| format!("record the hydrated TXID beside {}", db.display()))?;
            share_with_app(db)?;
            tracing::info!(txid = s.db.txid, path = %db.display(), elapsed_ms = s.elapsed.as_millis() as u64, "hydrated");
            Ok(())
        }
        Err(RestoreError::NoReplica(_)) => {
            tracing::info!("replica is empty; the database starts new");
            Ok(())
        }
        Err(e) => Err(e).context("blocking hydration failed"),
    }
}
