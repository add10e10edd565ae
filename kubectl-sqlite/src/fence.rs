//! `kubectl sqlite fence` / `unfence`: stop writes to a database for maintenance, by the
//! same mechanism as a lost lease. The fence takes the writer Lease (a new epoch); the
//! writer finds it gone at its next renewal and refuses writes from then on, while still
//! publishing what it had committed, and says so on the Lease. Pods that start meanwhile
//! wait as standbys. `unfence` releases the Lease once that writer has reported its
//! commits published; a waiting pod takes over.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::Client;
use lease::fence::{Fenced, Unfenced};

use crds::SqliteDatabase;

async fn database(client: &Client, ns: &str, name: &str) -> Result<SqliteDatabase> {
    let api: Api<SqliteDatabase> = Api::namespaced(client.clone(), ns);
    api.get(name)
        .await
        .with_context(|| format!("SqliteDatabase {ns}/{name}"))
}

pub async fn fence(client: &Client, ns: &str, name: &str, reason: &str) -> Result<()> {
    let db = database(client, ns, name).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let lease_name = operator::writer_lease::lease_name(name);
    let renewal = crds::parse_duration(&db.spec.writer.lease_duration)
        .map(|d| d / 4)
        .unwrap_or(Duration::from_secs(4));
    match lease::fence::fence(&leases, ns, &lease_name, reason).await? {
        Fenced::Already => println!("{ns}/{name}: already fenced"),
        Fenced::Now { from: None, epoch } => {
            println!("{ns}/{name}: fenced (epoch {epoch}); no writer held the lease")
        }
        Fenced::Now {
            from: Some(w),
            epoch,
        } => println!(
            "{ns}/{name}: fenced (epoch {epoch}); {w} stops writing at its next lease renewal (within {renewal:?}) and still publishes what it committed"
        ),
    }
    Ok(())
}

pub async fn unfence(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    force: bool,
) -> Result<()> {
    let db = database(client, ns, name).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let lease_name = operator::writer_lease::lease_name(name);
    let secs = crds::parse_duration(&db.spec.writer.lease_duration)
        .map(|d| d.as_secs().clamp(1, i32::MAX as u64) as i32)
        .unwrap_or(15);
    let started = Instant::now();
    loop {
        match lease::fence::unfence(&leases, ns, &lease_name, secs, force).await? {
            Unfenced::Released => {
                println!("{ns}/{name}: unfenced; a waiting writer pod takes over (a pod that was writing when fenced stays read-only until it restarts)");
                return Ok(());
            }
            Unfenced::NotFenced => bail!("{ns}/{name} is not fenced"),
            Unfenced::WriterNotSynced { writer } if started.elapsed() > timeout => bail!(
                "{writer}, the writer the fence stopped, has not reported its commits published within {timeout:?} (store unreachable? pod gone?); another writer taking over now would strand them: wait, or pass --force to accept that"
            ),
            Unfenced::WriterNotSynced { .. } => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
        }
    }
}
