//! Object-store credentials from the Secret a `SqliteDatabase` references.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use ltx::replica::Credentials;

use crate::{Error, Result};
use crds::ReplicaSpec;

/// Reads the referenced Secret (if any) from `namespace`. A missing Secret or key is an
/// error naming both; no reference means ambient credentials (workload identity).
pub async fn load(
    secrets: &Api<Secret>,
    namespace: &str,
    replica: &ReplicaSpec,
) -> Result<Credentials> {
    let mut c = Credentials::default();
    if let Some(r) = replica
        .s3
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref())
    {
        let s = get(secrets, namespace, &r.name).await?;
        c.access_key_id = Some(key(&s, namespace, &r.name, &r.access_key_id_key)?);
        c.secret_access_key = Some(key(&s, namespace, &r.name, &r.secret_access_key_key)?);
        c.session_token = key(&s, namespace, &r.name, "AWS_SESSION_TOKEN").ok();
    }
    if let Some(r) = replica
        .gcs
        .as_ref()
        .and_then(|g| g.credentials_secret_ref.as_ref())
    {
        let s = get(secrets, namespace, &r.name).await?;
        c.gcs_service_account_json = Some(key(&s, namespace, &r.name, &r.key)?);
    }
    if let Some(r) = replica
        .azure
        .as_ref()
        .and_then(|a| a.credentials_secret_ref.as_ref())
    {
        let s = get(secrets, namespace, &r.name).await?;
        c.azure_account_key = Some(key(&s, namespace, &r.name, &r.key)?);
    }
    Ok(c)
}

async fn get(secrets: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret> {
    secrets
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Credentials(format!("Secret {namespace}/{name} not found")))
}

fn key(s: &Secret, namespace: &str, name: &str, key: &str) -> Result<String> {
    let v = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key)).cloned());
    match v {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::Credentials(format!(
            "Secret {namespace}/{name} has no key {key:?}"
        ))),
    }
}
