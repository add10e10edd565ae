//! The per-database writer Lease. The operator creates and owns it (so it goes away with
//! the database); writer pods acquire and renew it; the operator only reads the holder.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::Resource;

use crds::SqliteDatabase;
use lease::handoff::Handoff;
use lease::Holder;

use crate::Result;

/// The writer Lease's name for database `db`.
pub fn lease_name(db: &str) -> String {
    format!("{db}-writer")
}

/// Labels on every writer Lease (the controller watches Leases with these).
pub fn labels(db: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            crate::MANAGED_BY.0.to_string(),
            crate::MANAGED_BY.1.to_string(),
        ),
        ("sqlitekube.dev/database".to_string(), db.to_string()),
    ])
}

/// Metadata for a writer Lease of `db`: labels plus a controller owner reference.
pub fn template(db: &SqliteDatabase) -> ObjectMeta {
    let name = db.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(lease_name(&name)),
        namespace: db.metadata.namespace.clone(),
        labels: Some(labels(&name)),
        owner_references: db.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// What the writer Lease says: the current holder and the last writer's hand-over note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: Option<Holder>,
    pub handoff: Option<Handoff>,
    /// Writes are fenced for maintenance (`kubectl sqlite fence`): the reason given.
    pub fenced: Option<String>,
    /// The holder says its commits wait unpublished since then ([`lease::waiting`]).
    pub unpublished_since: Option<jiff::Timestamp>,
}

impl LeaseView {
    fn of(l: &Lease) -> LeaseView {
        let fenced = lease::fence::is_fenced(l).then(|| {
            l.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(lease::fence::REASON))
                .cloned()
                .unwrap_or_default()
        });
        LeaseView {
            holder: lease::holder_of(l),
            handoff: lease::handoff::of(l),
            fenced,
            unpublished_since: lease::waiting::of(l),
        }
    }
}

/// Creates the writer Lease if it does not exist; returns what it says.
pub async fn ensure(
    leases: &Api<Lease>,
    db: &SqliteDatabase,
    lease_secs: i32,
) -> Result<LeaseView> {
    let name = lease_name(db.metadata.name.as_deref().unwrap_or_default());
    if let Some(l) = leases.get_opt(&name).await? {
        return Ok(LeaseView::of(&l));
    }
    let l = Lease {
        metadata: template(db),
        spec: Some(LeaseSpec {
            lease_duration_seconds: Some(lease_secs),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    match leases.create(&PostParams::default(), &l).await {
        Ok(l) => Ok(LeaseView::of(&l)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(leases
            .get_opt(&name)
            .await?
            .as_ref()
            .map(LeaseView::of)
            .unwrap_or_default()),
        Err(e) => Err(e.into()),
    }
}
