//! Reads a Litestream YAML config so an existing Litestream user can point the hydrator
//! at the same replica: `dbs: [{path, replica: {url | type, bucket, path, endpoint, …}}]`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Config {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    #[serde(default)]
    dbs: Vec<Db>,
}

#[derive(Deserialize)]
struct Db {
    path: String,
    replica: Option<Replica>,
    /// Deprecated list form; the first entry is used.
    #[serde(default)]
    replicas: Vec<Replica>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Replica {
    url: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<String>,
    bucket: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    force_path_style: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    /// Azure: `account-name`, `account-key`.
    account_name: Option<String>,
    account_key: Option<String>,
}

/// `$VAR` / `${VAR}` expansion, as Litestream does by default.
fn expand_env(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = it.peek() == Some(&'{');
        if braced {
            it.next();
        }
        let mut name = String::new();
        while let Some(&n) = it.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                it.next();
            } else {
                break;
            }
        }
        if braced && it.peek() == Some(&'}') {
            it.next();
        }
        out.push_str(&std::env::var(&name).unwrap_or_default());
    }
    out
}

/// The replica URL of the chosen database; sets the S3 credential variables from the
/// config (replica-level over top-level) unless they are already set.
pub fn replica_url(path: &Path, db: Option<&Path>) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    let cfg: Config = serde_yaml::from_str(&expand_env(&text)).context("invalid YAML")?;
    let entry = match db {
        Some(want) => cfg
            .dbs
            .iter()
            .find(|d| Path::new(&d.path) == want)
            .ok_or_else(|| anyhow!("no entry with path {} under dbs:", want.display()))?,
        None => match cfg.dbs.as_slice() {
            [one] => one,
            [] => bail!("no databases under dbs:"),
            _ => bail!(
                "{} databases under dbs:; choose one with --db PATH",
                cfg.dbs.len()
            ),
        },
    };
    let r = entry
        .replica
        .as_ref()
        .or(entry.replicas.first())
        .ok_or_else(|| anyhow!("database {} has no replica", entry.path))?;
    let key = r.access_key_id.clone().or(cfg.access_key_id.clone());
    let secret = r
        .secret_access_key
        .clone()
        .or(cfg.secret_access_key.clone());
    if let (Some(k), Some(s)) = (key, secret) {
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            // Called once at start-up, before other threads read the environment.
            std::env::set_var("AWS_ACCESS_KEY_ID", k);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", s);
        }
    }
    if let Some(u) = &r.url {
        return Ok(u.clone());
    }
    let kind = r
        .kind
        .as_deref()
        .unwrap_or(if r.bucket.is_some() { "s3" } else { "file" });
    match kind {
        "file" => {
            let p = r
                .path
                .as_deref()
                .ok_or_else(|| anyhow!("file replica needs path"))?;
            Ok(format!("file://{}", std::path::absolute(p)?.display()))
        }
        "s3" => {
            let bucket = r
                .bucket
                .as_deref()
                .ok_or_else(|| anyhow!("s3 replica needs bucket"))?;
            let mut u = format!(
                "s3://{bucket}/{}",
                r.path.as_deref().unwrap_or("").trim_matches('/')
            );
            let mut q = Vec::new();
            if let Some(e) = &r.endpoint {
                q.push(format!("endpoint={e}"));
            }
            if let Some(reg) = &r.region {
                q.push(format!("region={reg}"));
            }
            if let Some(f) = r.force_path_style {
                q.push(format!("forcePathStyle={f}"));
            }
            if !q.is_empty() {
                u = format!("{u}?{}", q.join("&"));
            }
            Ok(u)
        }
        "gs" | "gcs" => Ok(format!(
            "gs://{}/{}{}",
            r.bucket.as_deref().unwrap_or(""),
            r.path.as_deref().unwrap_or("").trim_matches('/'),
            r.endpoint
                .as_ref()
                .map(|e| format!("?endpoint={e}"))
                .unwrap_or_default()
        )),
        "abs" => {
            if let Some(k) = &r.account_key {
                if std::env::var_os("AZURE_STORAGE_KEY").is_none() {
                    // Called once at start-up, before other threads read the environment.
                    std::env::set_var("AZURE_STORAGE_KEY", k);
                }
            }
            let account = r
                .account_name
                .as_ref()
                .map(|a| format!("{a}@"))
                .unwrap_or_default();
            Ok(format!(
                "abs://{account}{}/{}{}",
                r.bucket
                    .as_deref()
                    .ok_or_else(|| anyhow!("abs replica needs bucket (the container)"))?,
                r.path.as_deref().unwrap_or("").trim_matches('/'),
                r.endpoint
                    .as_ref()
                    .map(|e| format!("?endpoint={e}"))
                    .unwrap_or_default()
            ))
        }
        other => bail!("replica type {other:?} is not supported (file, s3, gs, abs)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_litestream_s3_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("litestream.yml");
        std::fs::write(
            &p,
            "dbs:\n  - path: /data/app.db\n    replica:\n      type: s3\n      bucket: lsbucket\n      path: dbs/app\n      endpoint: http://127.0.0.1:9000\n      region: us-east-1\n      force-path-style: true\n",
        )
        .unwrap();
        let u = replica_url(&p, None).unwrap();
        assert_eq!(u, "s3://lsbucket/dbs/app?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true");
        assert!(replica_url(&p, Some(Path::new("/other.db"))).is_err());
    }

    #[test]
    fn reads_litestream_abs_and_gs_configs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("litestream.yml");
        std::fs::write(
            &p,
            "dbs:\n  - path: /data/app.db\n    replica:\n      type: abs\n      account-name: devstoreaccount1\n      bucket: dbs\n      path: app\n      endpoint: http://127.0.0.1:10000/devstoreaccount1\n",
        )
        .unwrap();
        assert_eq!(
            replica_url(&p, None).unwrap(),
            "abs://devstoreaccount1@dbs/app?endpoint=http://127.0.0.1:10000/devstoreaccount1"
        );
        std::fs::write(
            &p,
            "dbs:\n  - path: /data/app.db\n    replica:\n      type: gs\n      bucket: bkt\n      path: /app/\n",
        )
        .unwrap();
        assert_eq!(replica_url(&p, None).unwrap(), "gs://bkt/app");
    }

    #[test]
    fn expands_env() {
        std::env::set_var("HYDRATOR_TEST_X", "abc");
        assert_eq!(
            expand_env("a/$HYDRATOR_TEST_X/${HYDRATOR_TEST_X}b"),
            "a/abc/abcb"
        );
    }
}
