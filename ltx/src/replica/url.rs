//! Replica URLs, in the forms Litestream accepts:
//!
//! | URL | backend |
//! |---|---|
//! | `file:///var/lib/replica` or a plain path | local directory (the embedded default) |
//! | `s3://bucket/path?endpoint=http://host:port&region=us-east-1&forcePathStyle=true` | S3 / S3-compatible |
//! | `gs://bucket/path[?endpoint=http://host:port]` | Google Cloud Storage |
//! | `abs://[account@]container/path[?endpoint=http://host:port/account]` | Azure Blob Storage |
//!
//! `endpoint` points a store at an emulator or a private or sovereign cloud: for S3 the
//! service URL, for GCS the JSON API's base URL (also from `STORAGE_EMULATOR_HOST`, as
//! Google's SDKs and Litestream read it), for Azure the blob service URL of the account
//! (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
//!
//! S3 credentials come from the standard AWS variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`),
//! or Litestream's names (`LITESTREAM_ACCESS_KEY_ID`, `LITESTREAM_SECRET_ACCESS_KEY`).

use std::path::PathBuf;

use super::error::{ReplicaError, Result};

/// A parsed replica location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaUrl {
    File {
        path: PathBuf,
    },
    S3(S3Url),
    Gcs {
        bucket: String,
        path: String,
        endpoint: Option<String>,
    },
    Azure {
        account: Option<String>,
        container: String,
        path: String,
        endpoint: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub path: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). On by default when an endpoint is
    /// given, as Litestream does for S3-compatible servers.
    pub force_path_style: bool,
}

impl ReplicaUrl {
    pub fn parse(s: &str) -> Result<ReplicaUrl> {
        let bad = |reason: &str| ReplicaError::InvalidUrl {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        if !s.contains("://") {
            if s.is_empty() {
                return Err(bad("empty"));
            }
            return Ok(ReplicaUrl::File {
                path: PathBuf::from(s),
            });
        }
        let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let query = |names: &[&str]| {
            u.query_pairs()
                .find(|(k, _)| names.contains(&k.as_ref()))
                .map(|(_, v)| v.into_owned())
        };
        let host = || -> Result<String> {
            match u.host_str() {
                Some(h) if !h.is_empty() => Ok(h.to_string()),
                _ => Err(bad("missing bucket/container name")),
            }
        };
        let path = u.path().trim_matches('/').to_string();
        match u.scheme() {
            "file" => {
                if u.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("file URLs need an absolute path: file:///dir"));
                }
                let p = u.to_file_path().map_err(|_| bad("not a local path"))?;
                Ok(ReplicaUrl::File { path: p })
            }
            "s3" => {
                let endpoint = query(&["endpoint"])
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                    .filter(|e| !e.is_empty());
                let force = match query(&["forcePathStyle", "force-path-style"]) {
                    Some(v) => {
                        parse_bool(&v).ok_or_else(|| bad("forcePathStyle must be true or false"))?
                    }
                    None => endpoint.is_some(),
                };
                Ok(ReplicaUrl::S3(S3Url {
                    bucket: host()?,
                    path,
                    endpoint,
                    region: query(&["region"]),
                    force_path_style: force,
                }))
            }
            "gs" => Ok(ReplicaUrl::Gcs {
                bucket: host()?,
                path,
                endpoint: check_endpoint(query(&["endpoint"]).or_else(|| {
                    std::env::var("STORAGE_EMULATOR_HOST")
                        .ok()
                        .filter(|h| !h.is_empty())
                        .map(|h| {
                            if h.contains("://") {
                                h
                            } else {
                                format!("http://{h}")
                            }
                        })
                }))
                .map_err(|r| bad(&r))?,
            }),
            "abs" => {
                let account = (!u.username().is_empty()).then(|| u.username().to_string());
                Ok(ReplicaUrl::Azure {
                    account,
                    container: host()?,
                    path,
                    endpoint: check_endpoint(query(&["endpoint"])).map_err(|r| bad(&r))?,
                })
            }
            other => Err(bad(&format!(
                "unsupported scheme {other:?} (use file, s3, gs or abs)"
            ))),
        }
    }
}

impl std::fmt::Display for ReplicaUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaUrl::File { path } => write!(f, "file://{}", path.display()),
            ReplicaUrl::S3(s) => write!(f, "s3://{}/{}", s.bucket, s.path),
            ReplicaUrl::Gcs { bucket, path, .. } => write!(f, "gs://{bucket}/{path}"),
            ReplicaUrl::Azure {
                container, path, ..
            } => write!(f, "abs://{container}/{path}"),
        }
    }
}

/// An endpoint must be an http(s) URL; empty means none.
fn check_endpoint(e: Option<String>) -> std::result::Result<Option<String>, String> {
    match e.map(|e| e.trim().trim_end_matches('/').to_string()) {
        None => Ok(None),
        Some(e) if e.is_empty() => Ok(None),
        Some(e) if e.starts_with("http://") || e.starts_with("https://") => Ok(Some(e)),
        Some(e) => Err(format!("endpoint {e:?} must be an http:// or https:// URL")),
    }
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
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
    fn parses_litestream_forms() {
        assert_eq!(
            ReplicaUrl::parse("file:///tmp/r").unwrap(),
            ReplicaUrl::File {
                path: "/tmp/r".into()
            }
        );
        assert_eq!(
            ReplicaUrl::parse("/tmp/r").unwrap(),
            ReplicaUrl::File {
                path: "/tmp/r".into()
            }
        );
        let ReplicaUrl::S3(s) =
            ReplicaUrl::parse("s3://bkt/dbs/app?endpoint=http://127.0.0.1:9000&region=us-east-1")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bkt", "dbs/app"));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.force_path_style);
        assert!(ReplicaUrl::parse("ftp://x/y")
            .unwrap_err()
            .to_string()
            .contains("unsupported scheme"));
        assert!(ReplicaUrl::parse("s3:///nobucket").is_err());
    }
}
