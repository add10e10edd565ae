//! `kubectl sqlite restore`: a database's replica into a local file, at its latest state, a
//! TXID or a time. Credentials: the Secret the database's spec references (the user needs
//! `get` on it), else the user's own environment (as `litestream restore` uses it).

use std::path::Path;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;
use ltx::replica::{Replica, ReplicaOptions, ReplicaUrl};
use ltx::restore::{restore, RestoreOptions, Target};

use crds::SqliteDatabase;

pub async fn run(
    client: &Client,
    ns: &str,
    name: &str,
    to: &Path,
    txid: Option<String>,
    timestamp: Option<jiff::Timestamp>,
    force: bool,
) -> Result<()> {
    let api: Api<SqliteDatabase> = Api::namespaced(client.clone(), ns);
    let db = api
        .get(name)
        .await
        .with_context(|| format!("SqliteDatabase {ns}/{name}"))?;
    let url = db
        .spec
        .replica
        .url()
        .with_context(|| format!("{ns}/{name} has no replica in its spec"))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let credentials = operator::credentials::load(&secrets, ns, &db.spec.replica)
        .await
        .with_context(|| format!("the credentials {ns}/{name}'s spec references"))?;
    let opts = ReplicaOptions {
        credentials,
        ambient: true,
        ..Default::default()
    };
    let replica = Replica::open_with(ReplicaUrl::parse(&url)?, &opts)?;
    let target = match (txid, timestamp) {
        (Some(t), _) => Target::Txid(
            u64::from_str_radix(&t, 16).with_context(|| format!("--txid {t:?} is not hex"))?,
        ),
        (None, Some(ts)) => Target::Time(ts.into()),
        (None, None) => Target::Latest,
    };
    let summary = restore(
        &replica,
        to,
        &RestoreOptions {
            target,
            force,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("restoring {url} at {target}"))?;
    println!(
        "restored {ns}/{name} at {target} to {}: TXID {} ({} files, {} bytes downloaded, {:.1?})",
        to.display(),
        ltx::replica::format_txid(summary.txid()),
        summary.files,
        summary.bytes_downloaded,
        summary.elapsed
    );
    Ok(())
}
