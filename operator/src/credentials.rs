//! Object-store credentials from the Secret a `SqliteDatabase` references.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use ltx::replica::Credentials;

use crate::{Error, Result};
use crds::ReplicaSpec;

/// The Secret key of an S3 session token (temporary credentials), optional.
pub const SESSION_TOKEN_KEY: &str = "AWS_SESSION_TOKEN";

/// What the operator may use to reach a database's replica.
#[derive(Debug)]
pub enum Access {
    /// Credentials from the database's Secret (or none needed: a `file` replica), and
    /// whether the operator's own identity may fill in (only when the database asks and
    /// the operator allows it).
    Given {
        credentials: Credentials,
        ambient: bool,
    },
    /// Nothing the operator may use: the replica is not observed (the reason says why).
    NotAllowed(String),
}

/// Opens `replica` (at `url`) as the operator may: with what [`access`] allows; `Ok(Err)`
/// says why it may not.
pub async fn open_replica(
    ctx: &crate::context::Context,
    namespace: &str,
    replica: &ReplicaSpec,
    url: &str,
) -> Result<std::result::Result<ltx::replica::Replica, String>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let allow = ctx.settings.allow_operator_identity;
    match access(&secrets, namespace, replica, allow).await? {
        Access::Given {
            credentials,
            ambient,
        } => Ok(Ok(crate::observe::open(
            url,
            credentials,
            ambient,
            ctx.settings.replica_timeout,
        )?)),
        Access::NotAllowed(why) => Ok(Err(why)),
    }
}

/// Decides how the operator reaches `replica`: its Secret, its own identity (both the
/// database and `allow_own_identity` must say so), or not at all.
pub async fn access(
    secrets: &Api<Secret>,
    namespace: &str,
    replica: &ReplicaSpec,
    allow_own_identity: bool,
) -> Result<Access> {
    let has_ref = replica
        .s3
        .as_ref()
        .is_some_and(|s| s.credentials_secret_ref.is_some())
        || replica
            .gcs
            .as_ref()
            .is_some_and(|g| g.credentials_secret_ref.is_some())
        || replica
            .azure
            .as_ref()
            .is_some_and(|a| a.credentials_secret_ref.is_some());
    // A GCS endpoint (an emulator or a private endpoint) reached without credentials:
    // requests go unsigned, so no identity is lent.
    let unsigned = replica
        .gcs
        .as_ref()
        .is_some_and(|g| g.endpoint.is_some() && g.credentials_secret_ref.is_none());
    if has_ref || replica.file.is_some() || unsigned {
        return Ok(Access::Given {
            credentials: load(secrets, namespace, replica).await?,
            ambient: false,
        });
    }
    match (replica.use_operator_identity, allow_own_identity) {
        (true, true) => Ok(Access::Given {
            credentials: Credentials::default(),
            ambient: true,
        }),
        (true, false) => Ok(Access::NotAllowed(
            "spec.replica.useOperatorIdentity is set, but the operator does not lend its identity \
             (it runs without --allow-operator-identity); give a credentialsSecretRef"
                .into(),
        )),
        (false, _) => Ok(Access::NotAllowed(
            "no credentialsSecretRef: the operator does not use its own identity for a replica \
             (pods use theirs); give a credentialsSecretRef for the operator to observe it"
                .into(),
        )),
    }
}

/// Reads the referenced Secret (if any) from `namespace`. A missing Secret or key is an
/// error naming both.
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
        c.session_token = key(&s, namespace, &r.name, SESSION_TOKEN_KEY).ok();
    }
    if let Some(r) = replica
        .gcs
        .as_ref()
        .and_then(|g| g.credentials_secret_ref.as_ref())
    {
        let s = get(secrets, namespace, &r.name).await?;
        let json = key(&s, namespace, &r.name, &r.key)?;
        check_service_account(&json).map_err(|why| {
            Error::Credentials(format!(
                "Secret {namespace}/{} key {:?} is not a Google service-account key: {why}",
                r.name, r.key
            ))
        })?;
        c.gcs_service_account_json = Some(json);
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

/// A service-account key file: JSON with `type: service_account`, `client_email` and
/// `private_key` (what Google's console downloads).
fn check_service_account(json: &str) -> std::result::Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON ({e})"))?;
    if v["type"] != "service_account" {
        return Err(format!(
            "\"type\" is {}, not \"service_account\"",
            v["type"]
        ));
    }
    for field in ["client_email", "private_key"] {
        if !v[field].is_string() {
            return Err(format!("no \"{field}\""));
        }
    }
    Ok(())
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
