//! VFS settings: URI parameters (`file:app.db?vfs=sqlitekube&replica_url=…`) override
//! environment variables, which are read at open time. Names follow Litestream's VFS so
//! its users can swap extensions without other changes.
//!
//! | URI parameter | environment variable | default | meaning |
//! |---|---|---|---|
//! | `replica_url` | `LITESTREAM_REPLICA_URL` | (required) | where the database lives (`file://`, `s3://`, …) |
//! | `write_enabled` | `LITESTREAM_WRITE_ENABLED` | `false` | accept writes (single writer; fenced at the store) |
//! | `sync_interval` | `LITESTREAM_SYNC_INTERVAL` | `1s` | how often committed transactions are published |
//! | `buffer_path` | `LITESTREAM_BUFFER_PATH` | `<db>-buffer` | the local write buffer (crash recovery) |
//! | `buffer_limit` | `SQLITE_KUBE_BUFFER_LIMIT` | `64MiB` | unpublished bytes before writers wait |
//! | `hydration_enabled` | `LITESTREAM_HYDRATION_ENABLED` | `false` | copy the whole database locally in the background |
//! | `hydration_path` | `LITESTREAM_HYDRATION_PATH` | `<db>-hydrated` | where the local copy goes |
//! | `poll_interval` | `LITESTREAM_POLL_INTERVAL` | `1s` | read-only mode: how often to look for new TXIDs |
//! | `cache_size` | `LITESTREAM_CACHE_SIZE` | `64MiB` | LRU page cache for remote pages, in bytes |
//! | `status_path` | `SQLITE_KUBE_STATUS_PATH` | `<db>-status.json` | JSON status (last TXID, buffer, latency, cache, hydration) |
//! | `compaction_interval` | `SQLITE_KUBE_COMPACTION_INTERVAL` | `30s` | writer: merge L0 into L1 (`0` disables compaction and retention) |
//! | `snapshot_interval` | `SQLITE_KUBE_SNAPSHOT_INTERVAL` | `1h` | writer: full snapshot to L9 |
//! | `l0_retention` | `SQLITE_KUBE_L0_RETENTION` | `5m` | keep L0 files this long after L1 covers them |
//! | `snapshot_retention` | `SQLITE_KUBE_SNAPSHOT_RETENTION` | `24h` | keep older snapshots this long |
//! | `store_retries` | `SQLITE_KUBE_STORE_RETRIES` | `4` | retries of a failed store request (backoff 1 s, doubling) before that sync fails and the next one tries again |
//! | `allow_unfenced_store` | `SQLITE_KUBE_ALLOW_UNFENCED_STORE` | `false` | writer: accept a store that ignores create-only writes (see `docs/durability.md`) |
//! | `writer_standby` | `SQLITE_KUBE_WRITER_STANDBY` | `true` | lease-gated writer: while another pod holds the Lease, open at once serving reads (writes get `SQLITE_BUSY`) and take over when it is free; `false` blocks in open instead |
//! | `drain_timeout` | `SQLITE_KUBE_DRAIN_TIMEOUT` | `30s` | writer: how long the final sync on close may take |
//! | — | `SQLITE_KUBE_LEASE` | (none) | writer: the Kubernetes Lease to hold while writing (`<db>-writer`); enables lease-gated writes |
//! | — | `SQLITE_KUBE_NAMESPACE` | the service account's namespace | the Lease's namespace |
//! | — | `SQLITE_KUBE_POD_NAME` | `HOSTNAME` | the holder identity |
//! | — | `SQLITE_KUBE_POD_UID` | (none) | for Events on the pod |
//! | — | `SQLITE_KUBE_LEASE_DURATION` | `15s` | the Lease duration; writes stop at 80 % of it without a renewal |
//! | — | `LITESTREAM_LOG_LEVEL` | `info` | tracing level (`debug`, `info`, …) or directives (`a::b=debug,warn`) |
//! | — | `LITESTREAM_ACCESS_KEY_ID`, `LITESTREAM_SECRET_ACCESS_KEY`, `AWS_*` | | S3 credentials |

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use settings::{env, parse_duration, parse_size};

use crate::writer_lease::LeaseSettings;

#[derive(Debug, Clone)]
pub struct Config {
    pub replica_url: String,
    pub write_enabled: bool,
    pub sync_interval: Duration,
    pub buffer_path: PathBuf,
    pub buffer_limit: u64,
    pub hydration_enabled: bool,
    pub hydration_path: PathBuf,
    pub poll_interval: Duration,
    pub cache_size: u64,
    pub status_path: PathBuf,
    pub compaction_interval: Duration,
    pub snapshot_interval: Duration,
    pub l0_retention: Duration,
    pub snapshot_retention: Duration,
    pub drain_timeout: Duration,
    /// Retries of one store request before it fails.
    pub store_retries: usize,
    /// Write even if the store's create-only probe fails (no fencing at the store).
    pub allow_unfenced_store: bool,
    /// A lease-gated writer whose Lease is held elsewhere opens as a standby instead of
    /// blocking in open.
    pub writer_standby: bool,
    /// Lease-gated writes (Kubernetes); `None` outside Kubernetes.
    pub lease: Option<LeaseSettings>,
    /// This database's own store credentials (several databases in one pod); empty: the
    /// store client reads the environment.
    pub credentials: ltx::replica::Credentials,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid VFS setting {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Builds the settings for the database at `db` from `params` (URI), its entry in
    /// `SQLITE_KUBE_DATABASES` (several databases in one pod), and the process environment.
    pub fn load(db: &Path, params: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Self::from_env(db, params, |k| std::env::var(k).ok())
    }

    /// [`Config::load`] with the environment given as a lookup, `SQLITE_KUBE_DATABASES`
    /// included (tests of what the webhook injects for several databases).
    pub fn from_env(
        db: &Path,
        params: &HashMap<String, String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let entry = database_entry(db, lookup(env::DATABASES))?;
        let mut cfg = Self::from_lookup(db, params, |k| match &entry {
            Some(e) if e.contains_key(k) => e.get(k).cloned(),
            _ => lookup(k),
        })?;
        if let Some(e) = &entry {
            cfg.credentials = credentials(e)?;
        }
        Ok(cfg)
    }

    /// [`Config::load`] with the environment given as a lookup (a pod spec's `env`, in
    /// tests of what the webhook injects).
    pub fn from_lookup(
        db: &Path,
        params: &HashMap<String, String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env_var = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let get = |uri: &str, envs: &[&str]| -> Option<(String, String)> {
            if let Some(v) = params.get(uri) {
                return Some((uri.to_string(), v.clone()));
            }
            envs.iter()
                .find_map(|e| env_var(e).map(|v| (e.to_string(), v)))
        };
        let err = |(name, value): (String, String), reason: &str| ConfigError {
            name,
            value,
            reason: reason.to_string(),
        };
        let boolean = |uri, envs: &[&str], default| match get(uri, envs) {
            None => Ok(default),
            Some(kv) => parse_bool(&kv.1).ok_or_else(|| err(kv, "expected true or false")),
        };
        let duration = |uri, envs: &[&str], default| match get(uri, envs) {
            None => Ok(default),
            Some(kv) => parse_duration(&kv.1).map_err(|e| {
                let m = e.to_string();
                err(kv, &m)
            }),
        };
        let bytes = |uri, envs: &[&str], default| match get(uri, envs) {
            None => Ok(default),
            Some(kv) => parse_size(&kv.1).map_err(|e| {
                let m = e.to_string();
                err(kv, &m)
            }),
        };
        let path = |uri, envs: &[&str], suffix: &str| {
            get(uri, envs)
                .map(|(_, v)| PathBuf::from(v))
                .unwrap_or_else(|| PathBuf::from(format!("{}{suffix}", db.display())))
        };
        let replica_url = get("replica_url", &[env::REPLICA_URL, env::INIT_REPLICA_URL])
            .map(|(_, v)| v)
            .ok_or_else(|| {
                ConfigError {
            name: "replica_url".into(),
            value: String::new(),
            reason:
                "no replica configured: set LITESTREAM_REPLICA_URL or the replica_url URI parameter"
                    .into(),
        }
            })?;
        let sync_interval = duration(
            "sync_interval",
            &[env::SYNC_INTERVAL],
            Duration::from_secs(1),
        )?;
        if sync_interval.is_zero() {
            return Err(err(
                ("sync_interval".into(), "0".into()),
                "must be positive",
            ));
        }
        Ok(Config {
            replica_url,
            write_enabled: boolean("write_enabled", &[env::WRITE_ENABLED], false)?,
            sync_interval,
            buffer_path: path("buffer_path", &[env::BUFFER_PATH], "-buffer"),
            buffer_limit: bytes("buffer_limit", &[env::BUFFER_LIMIT], 64 << 20)?,
            hydration_enabled: boolean("hydration_enabled", &[env::HYDRATION_ENABLED], false)?,
            hydration_path: path("hydration_path", &[env::HYDRATION_PATH], "-hydrated"),
            poll_interval: duration(
                "poll_interval",
                &[env::POLL_INTERVAL],
                Duration::from_secs(1),
            )?,
            cache_size: bytes("cache_size", &[env::CACHE_SIZE], 64 << 20)?,
            status_path: path("status_path", &[env::STATUS_PATH], "-status.json"),
            compaction_interval: duration(
                "compaction_interval",
                &[env::COMPACTION_INTERVAL],
                Duration::from_secs(30),
            )?,
            snapshot_interval: duration(
                "snapshot_interval",
                &[env::SNAPSHOT_INTERVAL],
                Duration::from_secs(3600),
            )?,
            l0_retention: duration(
                "l0_retention",
                &[env::L0_RETENTION],
                Duration::from_secs(300),
            )?,
            snapshot_retention: duration(
                "snapshot_retention",
                &[env::SNAPSHOT_RETENTION],
                Duration::from_secs(86400),
            )?,
            drain_timeout: duration(
                "drain_timeout",
                &[env::DRAIN_TIMEOUT],
                Duration::from_secs(30),
            )?,
            store_retries: match get("store_retries", &[env::STORE_RETRIES]) {
                None => 4,
                Some(kv) => {
                    kv.1.parse::<usize>()
                        .ok()
                        .filter(|n| *n <= 20)
                        .ok_or_else(|| err(kv, "expected a whole number from 0 to 20"))?
                }
            },
            allow_unfenced_store: boolean(
                "allow_unfenced_store",
                &[env::ALLOW_UNFENCED_STORE],
                false,
            )?,
            writer_standby: boolean("writer_standby", &[env::WRITER_STANDBY], true)?,
            credentials: ltx::replica::Credentials::default(),
            lease: match get("lease", &[env::LEASE]) {
                None => None,
                Some((_, name)) => {
                    let env = |k: &str| env_var(k);
                    let namespace = env(env::NAMESPACE)
                        .or_else(|| {
                            std::fs::read_to_string(
                                "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                            )
                            .ok()
                            .map(|s| s.trim().to_string())
                        })
                        .unwrap_or_else(|| "default".into());
                    let identity =
                        env(env::POD_NAME)
                            .or_else(|| env("HOSTNAME"))
                            .ok_or_else(|| ConfigError {
                                name: env::POD_NAME.into(),
                                value: String::new(),
                                reason: "a lease-gated writer needs an identity (the pod name)"
                                    .into(),
                            })?;
                    let duration = duration(
                        "lease_duration",
                        &[env::LEASE_DURATION],
                        Duration::from_secs(15),
                    )?;
                    if duration < Duration::from_secs(1) {
                        return Err(err(
                            (env::LEASE_DURATION.into(), format!("{duration:?}")),
                            "must be at least 1s",
                        ));
                    }
                    let pod_uid = env(env::POD_UID);
                    Some(LeaseSettings {
                        namespace,
                        name,
                        holder: holder_identity(&identity, pod_uid.as_deref()),
                        identity,
                        pod_uid,
                        database: env(env::DATABASE),
                        duration,
                    })
                }
            },
        })
    }
}

/// The paths of the databases `SQLITE_KUBE_DATABASES` configures (several in one pod).
pub fn configured_paths() -> Vec<PathBuf> {
    databases()
        .map(|m| m.keys().map(PathBuf::from).collect())
        .unwrap_or_default()
}

type Entry = HashMap<String, String>;

fn databases() -> Option<HashMap<String, Entry>> {
    let raw = std::env::var(env::DATABASES)
        .ok()
        .filter(|v| !v.trim().is_empty())?;
    serde_json::from_str(&raw).ok()
}

/// The entry of `db` in `SQLITE_KUBE_DATABASES`, if that variable names it. A value still
/// reading `$(VAR)` is a reference the kubelet could not expand (an optional Secret key
/// that is absent): unset.
fn database_entry(db: &Path, raw: Option<String>) -> Result<Option<Entry>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let all: HashMap<String, Entry> = serde_json::from_str(&raw).map_err(|e| ConfigError {
        name: env::DATABASES.into(),
        value: raw.chars().take(80).collect(),
        reason: format!("not a JSON object of path -> settings: {e}"),
    })?;
    Ok(all
        .into_iter()
        .find(|(p, _)| Path::new(p) == db)
        .map(|(_, mut e)| {
            e.retain(|_, v| !(v.starts_with("$(") && v.ends_with(')')));
            e
        }))
}

/// A database's own credentials from its entry (the key file's content for GCS).
fn credentials(e: &Entry) -> Result<ltx::replica::Credentials, ConfigError> {
    let get = |k: &str| e.get(k).filter(|v| !v.is_empty()).cloned();
    let gcs = match get(env::GOOGLE_APPLICATION_CREDENTIALS) {
        None => None,
        Some(path) => Some(std::fs::read_to_string(&path).map_err(|err| ConfigError {
            name: env::GOOGLE_APPLICATION_CREDENTIALS.into(),
            value: path.clone(),
            reason: format!("cannot read the service-account key: {err}"),
        })?),
    };
    Ok(ltx::replica::Credentials {
        access_key_id: get(env::AWS_ACCESS_KEY_ID),
        secret_access_key: get(env::AWS_SECRET_ACCESS_KEY),
        session_token: get(env::AWS_SESSION_TOKEN),
        azure_account_key: get(env::AZURE_STORAGE_KEY),
        gcs_service_account_json: gcs,
    })
}

/// The Lease holder identity: unique per pod incarnation and process, so a pod that comes
/// back with the same name (a StatefulSet) is a new holder that must take the lease over
/// and fence, never "the same holder renewing". Outside Kubernetes (no pod UID) a random
/// nonce stands in for it.
pub fn holder_identity(pod: &str, pod_uid: Option<&str>) -> String {
    let incarnation = pod_uid
        .map(|u| u.chars().take(8).collect::<String>())
        .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    format!("{pod}_{incarnation}_{}", std::process::id())
}

impl Config {
    /// Why a second database in this process cannot open with these settings next to
    /// `other`'s: two databases on one replica, buffer, local copy or lease would fork
    /// each other's history.
    pub fn conflicts_with(&self, other: &Config) -> Option<String> {
        let same = |what: &str, v: String| {
            Some(format!(
                "its {what} {v} is already used by the database open at the same time in this process"
            ))
        };
        if self.replica_url == other.replica_url {
            return same("replica", self.replica_url.clone());
        }
        if self.buffer_path == other.buffer_path {
            return same("write buffer", self.buffer_path.display().to_string());
        }
        if self.hydration_enabled && self.hydration_path == other.hydration_path {
            return same("hydrated copy", self.hydration_path.display().to_string());
        }
        match (&self.lease, &other.lease) {
            (Some(a), Some(b)) if a.namespace == b.namespace && a.name == b.name => {
                same("writer lease", format!("{}/{}", a.namespace, a.name))
            }
            _ => None,
        }
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_in_every_spelling_the_crd_allows() {
        let mut p = HashMap::new();
        p.insert("replica_url".to_string(), "file:///r".to_string());
        let env = |k: &str| match k {
            env::SYNC_INTERVAL => Some("1m30s".to_string()),
            env::SNAPSHOT_RETENTION => Some("1h30m".to_string()),
            env::CACHE_SIZE => Some("64Mi".to_string()),
            env::BUFFER_LIMIT => Some("1MiB".to_string()),
            _ => None,
        };
        let c = Config::from_lookup(Path::new("/d/app.db"), &p, env).unwrap();
        assert_eq!(c.sync_interval, Duration::from_secs(90));
        assert_eq!(c.snapshot_retention, Duration::from_secs(5400));
        assert_eq!(c.cache_size, 64 << 20);
        assert_eq!(c.buffer_limit, 1 << 20);
    }

    /// Two incarnations of a pod with the same name (a StatefulSet's web-0, recreated) are
    /// different Lease holders; the pod name stays what people see.
    #[test]
    fn same_pod_name_new_incarnation_is_a_new_holder() {
        let mut p = HashMap::new();
        p.insert("replica_url".to_string(), "file:///r".to_string());
        let lease = |uid: &'static str| {
            let e = move |k: &str| match k {
                env::LEASE => Some("db-writer".to_string()),
                env::NAMESPACE => Some("shop".to_string()),
                env::POD_NAME => Some("web-0".to_string()),
                env::POD_UID => Some(uid.to_string()),
                _ => None,
            };
            Config::from_lookup(Path::new("/d/app.db"), &p, e)
                .unwrap()
                .lease
                .unwrap()
        };
        let (a, b) = (lease("1111aaaa-x"), lease("2222bbbb-y"));
        assert_eq!(
            (a.identity.as_str(), b.identity.as_str()),
            ("web-0", "web-0")
        );
        assert_ne!(a.holder, b.holder);
        assert!(a.holder.starts_with("web-0_1111aaaa_"), "{}", a.holder);
    }

    #[test]
    fn uri_overrides_and_errors() {
        let mut p = HashMap::new();
        p.insert("replica_url".to_string(), "file:///r".to_string());
        p.insert("sync_interval".to_string(), "250ms".to_string());
        let c = Config::load(Path::new("/d/app.db"), &p).unwrap();
        assert_eq!(c.sync_interval, Duration::from_millis(250));
        assert_eq!(c.buffer_path, PathBuf::from("/d/app.db-buffer"));
        p.insert("cache_size".to_string(), "abc".to_string());
        let e = Config::load(Path::new("/d/app.db"), &p).unwrap_err();
        assert!(e.to_string().contains("cache_size"), "{e}");
    }
}
