//! The webhook's serving certificate without cert-manager: the operator issues a CA and a
//! serving certificate itself (rcgen), keeps both in a `kubernetes.io/tls` Secret in its
//! own namespace (so every replica and every restart serves the same one), writes them
//! where the TLS server reloads files from, and puts the CA into its
//! MutatingWebhookConfiguration's `caBundle`. The serving certificate is renewed a month
//! before it expires, signed by the same CA, so the `caBundle` does not change.
//!
//! Several replicas start at once: the Secret is created create-only and a replica that
//! loses the race uses the winner's; a renewal is an update with the Secret's
//! `resourceVersion`, so two replicas cannot overwrite each other either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tracing::{info, warn};

/// Secret annotations: when the serving certificate expires, and the names it is for.
const NOT_AFTER: &str = "sqlitekube.dev/not-after";
const NAMES: &str = "sqlitekube.dev/names";
/// Renew when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
const SERVING_DAYS: i64 = 365;
const CA_YEARS: i16 = 10;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("issuing the webhook certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("Secret {namespace}/{name}: {source}")]
    Secret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name} is not a certificate this operator issued: {why}")]
    Foreign {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("patching the caBundle of MutatingWebhookConfiguration {name}: {source}")]
    WebhookConfig {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the certificate goes and what it is for.
#[derive(Debug, Clone)]
pub struct SelfIssued {
    pub namespace: String,
    /// The Secret holding CA and serving certificate.
    pub secret: String,
    /// DNS names and IP addresses the webhook is reached by (`<service>.<ns>.svc`, …).
    pub names: Vec<String>,
    /// The MutatingWebhookConfiguration whose `caBundle` is set (none: leave it).
    pub webhook_config: Option<String>,
    /// Where `tls.crt` / `tls.key` are written for the TLS server to read.
    pub dir: PathBuf,
}

impl SelfIssued {
    /// The names a Service `service` in `namespace` is reached by, plus `extra`.
    pub fn service_names(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
        let mut n = vec![
            service.to_string(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        n.extend(extra.iter().cloned());
        n
    }
}

/// The PEM files of one issue.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Issued {
    ca_crt: String,
    ca_key: String,
    tls_crt: String,
    tls_key: String,
    not_after: jiff::Timestamp,
}

/// The UTC calendar date of `t` (rcgen's validity fields are dates).
fn date(t: jiff::Timestamp) -> (i32, u8, u8) {
    let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
    (d.year() as i32, d.month() as u8, d.day() as u8)
}

/// A new serving certificate for `names`, signed by the CA (issued anew without one).
fn issue(names: &[String], ca: Option<(&str, &str)>) -> Result<Issued, CertError> {
    let now = jiff::Timestamp::now();
    let (ca_crt, ca_key) = match ca {
        Some((c, k)) => (c.to_string(), k.to_string()),
        None => {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p.distinguished_name
                .push(DnType::CommonName, "sqlite-kube webhook CA");
            let from = date(now - jiff::SignedDuration::from_hours(24));
            p.not_before = date_time_ymd(from.0, from.1, from.2);
            p.not_after = date_time_ymd(from.0 + CA_YEARS as i32, from.1, from.2.min(28));
            let cert = p.self_signed(&key)?;
            (cert.pem(), key.serialize_pem())
        }
    };
    let issuer_key = KeyPair::from_pem(&ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_crt, issuer_key)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = now + jiff::SignedDuration::from_hours(24 * SERVING_DAYS);
    let (from, until) = (
        date(now - jiff::SignedDuration::from_hours(24)),
        date(not_after),
    );
    p.not_before = date_time_ymd(from.0, from.1, from.2);
    p.not_after = date_time_ymd(until.0, until.1, until.2);
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Issued {
        ca_crt,
        ca_key,
        tls_crt: cert.pem(),
        tls_key: key.serialize_pem(),
        // The date, as written into the certificate (midnight UTC).
        not_after: jiff::civil::date(until.0 as i16, until.1 as i8, until.2 as i8)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(not_after),
    })
}

fn get_str(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The issue kept in `s`, if it is one of ours.
fn read(s: &Secret) -> Result<(Issued, Vec<String>), String> {
    let ann = s.metadata.annotations.clone().unwrap_or_default();
    let not_after = ann
        .get(NOT_AFTER)
        .ok_or(format!("no {NOT_AFTER} annotation"))?
        .parse()
        .map_err(|e| format!("{NOT_AFTER}: {e}"))?;
    let names = ann
        .get(NAMES)
        .map(|n| n.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let field = |k: &str| get_str(s, k).ok_or(format!("no {k}"));
    Ok((
        Issued {
            ca_crt: field("ca.crt")?,
            ca_key: field("ca.key")?,
            tls_crt: field("tls.crt")?,
            tls_key: field("tls.key")?,
            not_after,
        },
        names,
    ))
}

fn secret(cfg: &SelfIssued, i: &Issued, resource_version: Option<String>) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("ca.crt", &i.ca_crt),
        ("ca.key", &i.ca_key),
        ("tls.crt", &i.tls_crt),
        ("tls.key", &i.tls_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect();
    let mut s = Secret {
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    };
    s.metadata.name = Some(cfg.secret.clone());
    s.metadata.namespace = Some(cfg.namespace.clone());
    s.metadata.resource_version = resource_version;
    s.metadata.labels = Some(
        [(
            crate::MANAGED_BY.0.to_string(),
            crate::MANAGED_BY.1.to_string(),
        )]
        .into(),
    );
    s.metadata.annotations = Some(
        [
            (NOT_AFTER.to_string(), i.not_after.to_string()),
            (NAMES.to_string(), cfg.names.join(",")),
        ]
        .into(),
    );
    s
}

/// Makes sure a valid certificate for `cfg.names` is in the Secret, on disk and in the
/// `caBundle`; returns when it was issued anew.
pub async fn ensure(client: &Client, cfg: &SelfIssued) -> Result<bool, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let secret_err = |source| CertError::Secret {
        namespace: cfg.namespace.clone(),
        name: cfg.secret.clone(),
        source,
    };
    let mut renewed = false;
    let issued = loop {
        let current = api.get_opt(&cfg.secret).await.map_err(secret_err)?;
        let Some(current) = current else {
            let fresh = issue(&cfg.names, None)?;
            match api
                .create(&PostParams::default(), &secret(cfg, &fresh, None))
                .await
            {
                Ok(_) => {
                    info!(secret = %cfg.secret, not_after = %fresh.not_after, "issued the webhook CA and serving certificate");
                    renewed = true;
                    break fresh;
                }
                // Another replica created it first: use theirs.
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(secret_err(e)),
            }
        };
        let (have, names) = read(&current).map_err(|why| CertError::Foreign {
            namespace: cfg.namespace.clone(),
            name: cfg.secret.clone(),
            why,
        })?;
        let left = have.not_after.duration_since(jiff::Timestamp::now());
        let fresh_enough = left > jiff::SignedDuration::try_from(RENEW_BEFORE).unwrap_or_default();
        if fresh_enough && names == cfg.names {
            break have;
        }
        let next = issue(&cfg.names, Some((&have.ca_crt, &have.ca_key)))?;
        let rv = current.metadata.resource_version.clone();
        match api
            .replace(&cfg.secret, &PostParams::default(), &secret(cfg, &next, rv))
            .await
        {
            Ok(_) => {
                info!(secret = %cfg.secret, not_after = %next.not_after, "renewed the webhook serving certificate (same CA)");
                renewed = true;
                break next;
            }
            // Another replica renewed it meanwhile: read again.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(secret_err(e)),
        }
    };
    write_files(&cfg.dir, &issued)?;
    if let Some(name) = &cfg.webhook_config {
        patch_ca_bundle(client, name, &issued.ca_crt).await?;
    }
    Ok(renewed)
}

/// Checks every `every` (and renews when due) until the process ends.
pub async fn keep_fresh(client: Client, cfg: SelfIssued, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = ensure(&client, &cfg).await {
            warn!(error = %e, "could not check or renew the webhook certificate; serving the current one");
        }
    }
}

fn write_files(dir: &Path, i: &Issued) -> Result<(), CertError> {
    let err = |p: &Path, source| CertError::Write {
        path: p.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    // Key first, then the certificate: the reloader reads both; each is replaced whole.
    for (name, body) in [
        ("tls.key", &i.tls_key),
        ("tls.crt", &i.tls_crt),
        ("ca.crt", &i.ca_crt),
    ] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(body.as_str()) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
    }
    Ok(())
}

/// Sets `caBundle` on every webhook of the configuration (a JSON patch per webhook, so
/// nothing else in it is touched).
async fn patch_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> Result<(), CertError> {
    use base64::Engine as _;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let err = |source| CertError::WebhookConfig {
        name: name.to_string(),
        source,
    };
    let current = api.get(name).await.map_err(err)?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let n = current.webhooks.as_ref().map_or(0, Vec::len);
    let unchanged = current.webhooks.iter().flatten().all(|w| {
        w.client_config
            .ca_bundle
            .as_ref()
            .is_some_and(|b| b.0 == ca_pem.as_bytes())
    });
    if n == 0 || unchanged {
        return Ok(());
    }
    let ops: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle})
        })
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .expect("a list of JSON patch operations");
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(err)?;
    info!(webhook_config = name, "caBundle set to the operator's CA");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_keeps_the_ca_and_changes_the_names() {
        let first = issue(&["svc.ns.svc".into(), "127.0.0.1".into()], None).unwrap();
        let again = issue(
            &["svc.ns.svc".into(), "other.ns.svc".into()],
            Some((&first.ca_crt, &first.ca_key)),
        )
        .unwrap();
        assert_eq!(
            first.ca_crt, again.ca_crt,
            "a renewal keeps the CA (caBundle)"
        );
        assert_ne!(first.tls_crt, again.tls_crt);
        assert!(
            again.not_after > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 300)
        );
    }
}
