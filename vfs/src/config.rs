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
    /// Lease-gated writes (Kubernetes); `None` outside Kubernetes.
    pub lease: Option<LeaseSettings>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid VFS setting {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Builds the settings for the database at `db` from `params` (URI) and the environment.
    pub fn load(db: &Path, params: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |uri: &str, envs: &[&str]| -> Option<(String, String)> {
            if let Some(v) = params.get(uri) {
                return Some((uri.to_string(), v.clone()));
            }
            envs.iter().find_map(|e| {
                std::env::var(e)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (e.to_string(), v))
            })
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
            Some(kv) => parse_duration(&kv.1)
                .ok_or_else(|| err(kv, "expected a duration like 500ms, 1s, 2m")),
        };
        let bytes = |uri, envs: &[&str], default| match get(uri, envs) {
            None => Ok(default),
            Some(kv) => parse_bytes(&kv.1)
                .ok_or_else(|| err(kv, "expected a byte count like 1048576, 64MiB")),
        };
        let path = |uri, envs: &[&str], suffix: &str| {
            get(uri, envs)
                .map(|(_, v)| PathBuf::from(v))
                .unwrap_or_else(|| PathBuf::from(format!("{}{suffix}", db.display())))
        };
        let replica_url = get(
            "replica_url",
            &["LITESTREAM_REPLICA_URL", "SQLITE_KUBE_REPLICA_URL"],
        )
        .map(|(_, v)| v)
        .ok_or_else(|| ConfigError {
            name: "replica_url".into(),
            value: String::new(),
            reason:
                "no replica configured: set LITESTREAM_REPLICA_URL or the replica_url URI parameter"
                    .into(),
        })?;
        let sync_interval = duration(
            "sync_interval",
            &["LITESTREAM_SYNC_INTERVAL"],
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
            write_enabled: boolean("write_enabled", &["LITESTREAM_WRITE_ENABLED"], false)?,
            sync_interval,
            buffer_path: path("buffer_path", &["LITESTREAM_BUFFER_PATH"], "-buffer"),
            buffer_limit: bytes("buffer_limit", &["SQLITE_KUBE_BUFFER_LIMIT"], 64 << 20)?,
            hydration_enabled: boolean(
                "hydration_enabled",
                &["LITESTREAM_HYDRATION_ENABLED"],
                false,
            )?,
            hydration_path: path(
                "hydration_path",
                &["LITESTREAM_HYDRATION_PATH"],
                "-hydrated",
            ),
            poll_interval: duration(
                "poll_interval",
                &["LITESTREAM_POLL_INTERVAL"],
                Duration::from_secs(1),
            )?,
            cache_size: bytes("cache_size", &["LITESTREAM_CACHE_SIZE"], 64 << 20)?,
            status_path: path("status_path", &["SQLITE_KUBE_STATUS_PATH"], "-status.json"),
            compaction_interval: duration(
                "compaction_interval",
                &["SQLITE_KUBE_COMPACTION_INTERVAL"],
                Duration::from_secs(30),
            )?,
            snapshot_interval: duration(
                "snapshot_interval",
                &["SQLITE_KUBE_SNAPSHOT_INTERVAL"],
                Duration::from_secs(3600),
            )?,
            l0_retention: duration(
                "l0_retention",
                &["SQLITE_KUBE_L0_RETENTION"],
                Duration::from_secs(300),
            )?,
            snapshot_retention: duration(
                "snapshot_retention",
                &["SQLITE_KUBE_SNAPSHOT_RETENTION"],
                Duration::from_secs(86400),
            )?,
            drain_timeout: duration(
                "drain_timeout",
                &["SQLITE_KUBE_DRAIN_TIMEOUT"],
                Duration::from_secs(30),
            )?,
            lease: match get("lease", &["SQLITE_KUBE_LEASE"]) {
                None => None,
                Some((_, name)) => {
                    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                    let namespace = env("SQLITE_KUBE_NAMESPACE")
                        .or_else(|| {
                            std::fs::read_to_string(
                                "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                            )
                            .ok()
                            .map(|s| s.trim().to_string())
                        })
                        .unwrap_or_else(|| "default".into());
                    let identity = env("SQLITE_KUBE_POD_NAME")
                        .or_else(|| env("HOSTNAME"))
                        .ok_or_else(|| ConfigError {
                            name: "SQLITE_KUBE_POD_NAME".into(),
                            value: String::new(),
                            reason: "a lease-gated writer needs an identity (the pod name)".into(),
                        })?;
                    let duration = duration(
                        "lease_duration",
                        &["SQLITE_KUBE_LEASE_DURATION"],
                        Duration::from_secs(15),
                    )?;
                    if duration < Duration::from_secs(1) {
                        return Err(err(
                            ("SQLITE_KUBE_LEASE_DURATION".into(), format!("{duration:?}")),
                            "must be at least 1s",
                        ));
                    }
                    Some(LeaseSettings {
                        namespace,
                        name,
                        identity,
                        pod_uid: env("SQLITE_KUBE_POD_UID"),
                        database: env("SQLITE_KUBE_DATABASE"),
                        duration,
                    })
                }
            },
        })
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Go-style durations: `1s`, `500ms`, `2m`, `1h`, `250us`, or bare seconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `1048576`, `64MiB`, `64MB`, `1GiB`, `512KiB`.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "kb" => 1000,
        "mib" | "m" => 1 << 20,
        "mb" => 1_000_000,
        "gib" | "g" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("abc"), None);
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
