//! The operator binary against a real API server (scripts/k8s-testenv.sh, or `KUBECONFIG`)
//! with a real S3 server (SeaweedFS on 127.0.0.1): become Ready with status filled, report an
//! invalid spec, run the finalizer per deletion policy, elect one leader among two replicas.

mod common;

use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use common::*;
use crds::SqliteDatabase;
use ltx::replica::{LtxKey, Replica, ReplicaOptions, ReplicaUrl};
use testkit::seaweed::{S3Server, ACCESS_KEY, SECRET_KEY};

/// [`seed_with`] with the test S3 server's keys.
async fn seed_replica(url: &str, txid: u64) -> Replica {
    let credentials = ltx::replica::Credentials {
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        ..Default::default()
    };
    seed_with(url, credentials, txid).await
}

async fn s3_database(
    client: &kube::Client,
    ns: &str,
    name: &str,
    policy: &str,
) -> (S3Server, String) {
    let s3 = S3Server::shared();
    let url = s3_database_on(&s3, client, ns, name, policy).await;
    (s3, url)
}

async fn s3_database_on(
    s3: &S3Server,
    client: &kube::Client,
    ns: &str,
    name: &str,
    policy: &str,
) -> String {
    let bucket = testkit::unique("op").to_lowercase();
    s3.create_bucket(&bucket);
    s3_secret(client, ns).await;
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), ns);
    dbs.patch(
        name,
        &PatchParams::apply("tests"),
        &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": name},
            "spec": {
                "replica": {"s3": {"bucket": bucket, "path": format!("dbs/{name}"), "endpoint": s3.endpoint,
                                   "region": "us-east-1", "forcePathStyle": true,
                                   "credentialsSecretRef": {"name": "s3-creds"}}},
                "deletionPolicy": policy,
            }
        })),
    )
    .await
    .unwrap();
    format!(
        "s3://{bucket}/dbs/{name}?endpoint={}&region=us-east-1&forcePathStyle=true",
        s3.endpoint
    )
}

async fn status_when<F>(
    dbs: &Api<SqliteDatabase>,
    name: &str,
    secs: u64,
    what: &str,
    f: F,
) -> crds::SqliteDatabaseStatus
where
    F: Fn(&crds::SqliteDatabaseStatus) -> bool,
{
    wait_for(secs, what, || async {
        let db = dbs.get_opt(name).await.ok().flatten()?;
        db.status.filter(|s| f(s))
    })
    .await
}

#[tokio::test]
async fn s3_database_becomes_ready_with_status_then_delete_policy_cleans_the_replica() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-ready").await;
    let (_s3, url) = s3_database(&client, &ns, "orders", "Delete").await;
    let replica = seed_replica(&url, 5).await;
    let op = OperatorProcess::spawn(&ns, &[]);

    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    let st = status_when(&dbs, "orders", 60, "Ready", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;
    assert_eq!(
        st.last_synced_txid.as_deref(),
        Some("0000000000000005"),
        "{st:?}"
    );
    assert_eq!(st.replica_files, Some(1));
    assert!(st.replica_size_bytes.unwrap() > 0);
    assert!(st.last_synced_time.is_some());
    assert!(st.replica_url.as_deref().unwrap().starts_with("s3://"));
    let db = dbs.get("orders").await.unwrap();
    assert_eq!(st.observed_generation, db.metadata.generation);
    assert!(db
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&crds::FINALIZER.to_string()));
    for t in ["Ready", "SpecValid", "ReplicaReachable"] {
        assert!(
            st.conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True"),
            "{t} not True: {:?}",
            st.conditions
        );
    }
    // The writer Lease exists and is owned by the database.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let lease = wait_for(10, "writer lease", || async {
        leases.get_opt("orders-writer").await.ok().flatten()
    })
    .await;
    assert_eq!(lease.metadata.owner_references.unwrap()[0].name, "orders");

    // Metrics and health are served.
    let m = http_get(&format!("{}/metrics", op.metrics)).unwrap_or_default();
    assert!(
        m.contains("sqlitekube_operator_reconciliations_total"),
        "{m}"
    );
    // `kubectl wait` on the Ready condition, as GitOps pipelines use it.
    let o = std::process::Command::new("kubectl")
        .args([
            "-n",
            &ns,
            "wait",
            "--for=condition=Ready",
            "sqldb/orders",
            "--timeout=30s",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kubectl wait: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // The database's own series, as its status says.
    let m = wait_for(30, "per-database metrics", || async {
        http_get(&format!("{}/metrics", op.metrics)).filter(|m| {
            m.contains(&format!(
                "sqlitekube_database_last_txid{{namespace=\"{ns}\",database=\"orders\"}} 5"
            ))
        })
    })
    .await;
    for want in [
        format!("sqlitekube_database_replica_files{{namespace=\"{ns}\",database=\"orders\"}} 1"),
        format!("sqlitekube_database_ready{{namespace=\"{ns}\",database=\"orders\"}} 1"),
        format!(
            "sqlitekube_database_replica_reachable{{namespace=\"{ns}\",database=\"orders\"}} 1"
        ),
        format!("sqlitekube_database_writer_held{{namespace=\"{ns}\",database=\"orders\"}} 0"),
    ] {
        assert!(m.contains(&want), "{want} missing:\n{m}");
    }
    assert!(
        m.lines().any(|l| l == "sqlitekube_operator_leader 1"),
        "{m}"
    );
    assert!(http_get(&format!("{}/readyz", op.metrics))
        .unwrap()
        .contains("200 OK"));

    // A new LTX file shows up in status on the next resync.
    let mut opts = ReplicaOptions::default();
    opts.credentials.access_key_id = Some(ACCESS_KEY.into());
    opts.credentials.secret_access_key = Some(SECRET_KEY.into());
    let data = replica.read(&LtxKey::new(0, 1, 5)).await.unwrap();
    replica
        .write(&LtxKey::new(9, 1, 5), data, 1_700_000_000_000, true)
        .await
        .unwrap();
    status_when(&dbs, "orders", 30, "2 files", |s| {
        s.replica_files == Some(2)
    })
    .await;

    // Delete policy: the finalizer removes every LTX file, then the object goes away.
    dbs.delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(30, "object deleted", || async {
        match dbs.get_opt("orders").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(
        replica.list_all().await.unwrap().is_empty(),
        "replica not cleaned"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"ReplicaDeleted".to_string()),
        "{reasons:?}\n{}",
        op.log_tail()
    );
}

/// `deletionPolicy: Delete` while the store is down: the finalizer stays (the object is not
/// gone while its replica is), a Warning Event says why, the operator retries, and the
/// deletion completes once the store is back, with the replica empty.
#[tokio::test]
async fn delete_policy_waits_for_an_unreachable_store() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-del-down").await;
    let mut s3 = S3Server::start();
    let url = s3_database_on(&s3, &client, &ns, "orders", "Delete").await;
    let replica = seed_replica(&url, 3).await;
    let op = OperatorProcess::spawn(&ns, &[]);
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    status_when(&dbs, "orders", 60, "Ready", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;

    s3.stop();
    dbs.delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let failed = wait_for(90, "a ReplicaDeleteFailed event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ReplicaDeleteFailed"))
    })
    .await;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert!(
        failed
            .note
            .as_deref()
            .unwrap_or("")
            .contains(crds::FINALIZER),
        "the event says how to give up: {:?}",
        failed.note
    );
    let db = dbs
        .get_opt("orders")
        .await
        .unwrap()
        .expect("kept while its replica is");
    assert!(db.metadata.deletion_timestamp.is_some());
    assert!(db
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&crds::FINALIZER.to_string()));
    assert_eq!(db.status.and_then(|s| s.phase), Some(crds::Phase::Deleting));

    s3.resume();
    wait_for(120, "the object deleted once the store is back", || async {
        matches!(dbs.get_opt("orders").await, Ok(None)).then_some(())
    })
    .await;
    assert!(
        replica.list_all().await.unwrap().is_empty(),
        "replica not cleaned:\n{}",
        op.log_tail()
    );
}

#[tokio::test]
async fn retain_policy_keeps_the_replica() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-retain").await;
    let (_s3, url) = s3_database(&client, &ns, "keep", "Retain").await;
    let replica = seed_replica(&url, 2).await;
    let _op = OperatorProcess::spawn(&ns, &[]);
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    status_when(&dbs, "keep", 60, "Ready", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;
    dbs.delete("keep", &DeleteParams::default()).await.unwrap();
    wait_for(30, "object deleted", || async {
        matches!(dbs.get_opt("keep").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(
        replica.list_all().await.unwrap().len(),
        1,
        "Retain deleted the replica"
    );
}

#[tokio::test]
async fn invalid_spec_missing_secret_and_unreachable_store_each_get_their_condition() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-invalid").await;
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    // Passes the schema a 1.20 server enforces (patterns, enums) but breaks rules it
    // ignores (CEL): two backends, and a lease shorter than allowed.
    dbs.patch(
        "bad",
        &PatchParams::apply("tests"),
        &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase", "metadata": {"name": "bad"},
            "spec": {"replica": {"file": {"path": "/tmp/x"}, "s3": {"bucket": "bkt", "path": "p"}},
                     "writer": {"leaseDuration": "1s"}}
        })),
    )
    .await
    .unwrap();
    // A valid Secret, a store that does not answer (nothing listens on the port).
    s3_secret(&client, &ns).await;
    let closed = free_port();
    dbs.patch(
        "unreachable",
        &PatchParams::apply("tests"),
        &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase", "metadata": {"name": "unreachable"},
            "spec": {"replica": {"s3": {"bucket": "bkt", "path": "p", "endpoint": format!("http://127.0.0.1:{closed}"),
                                         "region": "us-east-1", "forcePathStyle": true,
                                         "credentialsSecretRef": {"name": "s3-creds"}}}}
        })),
    )
    .await
    .unwrap();
    // A spec naming a Secret that does not exist.
    dbs.patch(
        "down",
        &PatchParams::apply("tests"),
        &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase", "metadata": {"name": "down"},
            "spec": {"replica": {"s3": {"bucket": "bkt", "path": "p", "endpoint": format!("http://127.0.0.1:{}", free_port()),
                                         "credentialsSecretRef": {"name": "missing-secret"}}}}
        })),
    )
    .await
    .unwrap();
    let op = OperatorProcess::spawn(&ns, &[]);
    let st = status_when(&dbs, "bad", 60, "Failed", |s| {
        s.phase == Some(crds::Phase::Failed)
    })
    .await;
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "SpecValid")
        .unwrap();
    assert_eq!(c.status, "False");
    assert!(
        c.message.contains("spec.replica: exactly one of"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("spec.writer.leaseDuration"),
        "{}",
        c.message
    );

    let st = status_when(&dbs, "down", 60, "Degraded", |s| {
        s.phase == Some(crds::Phase::Degraded)
    })
    .await;
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "ReplicaReachable")
        .unwrap();
    assert_eq!(c.reason, "CredentialsMissing");
    assert!(c.message.contains("missing-secret"), "{}", c.message);

    let st = status_when(&dbs, "unreachable", 90, "Degraded (store down)", |s| {
        s.phase == Some(crds::Phase::Degraded)
    })
    .await;
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "ReplicaReachable")
        .unwrap();
    assert_eq!(c.status, "False");
    assert_eq!(c.reason, "ReplicaUnreachable", "{}", c.message);
    assert!(
        c.message.contains(&closed.to_string()) || c.message.contains("127.0.0.1"),
        "the message names the store: {}",
        c.message
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let evs = wait_for(20, "warning events", || async {
        let l = events.list(&ListParams::default()).await.ok()?.items;
        let reasons: Vec<String> = l.iter().filter_map(|e| e.reason.clone()).collect();
        (reasons.contains(&"InvalidSpec".to_string())
            && reasons.contains(&"CredentialsMissing".to_string())
            && reasons.contains(&"ReplicaUnreachable".to_string()))
        .then_some(l)
    })
    .await;
    let invalid = evs
        .iter()
        .find(|e| e.reason.as_deref() == Some("InvalidSpec"))
        .unwrap();
    assert_eq!(invalid.type_.as_deref(), Some("Warning"));
    assert!(invalid.note.as_deref().unwrap().contains("spec.replica"));

    // Fixing the spec makes it valid (generation moves, status follows).
    let dir = tempfile::tempdir().unwrap();
    dbs.patch(
        "bad",
        &PatchParams::apply("tests").force(),
        &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase", "metadata": {"name": "bad"},
            "spec": {"replica": {"file": {"path": dir.path()}}}
        })),
    )
    .await
    .unwrap();
    status_when(&dbs, "bad", 30, "Ready after fix", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;
    drop(op);
}

#[tokio::test]
async fn two_operator_replicas_elect_one_leader_and_hand_over() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-leader").await;
    let mut procs = [
        OperatorProcess::spawn(&ns, &["--leader-lease-duration", "6s"]),
        OperatorProcess::spawn(&ns, &["--leader-lease-duration", "6s"]),
    ];
    let leader_of = |p: &OperatorProcess| {
        http_get(&format!("{}/metrics", p.metrics))
            .is_some_and(|m| m.lines().any(|l| l == "sqlitekube_operator_leader 1"))
    };
    wait_for(30, "a leader", || async {
        (leader_of(&procs[0]) || leader_of(&procs[1])).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (l0, l1) = (leader_of(&procs[0]), leader_of(&procs[1]));
    assert!(
        l0 ^ l1,
        "exactly one leader expected ({l0}, {l1})\n--- a:\n{}\n--- b:\n{}",
        procs[0].log_tail(),
        procs[1].log_tail()
    );
    let li = if leader_of(&procs[0]) { 0 } else { 1 };
    // Stop the leader gracefully: it releases the lease and the standby takes over fast
    // (well within the 6 s lease it would otherwise wait out).
    procs[li].terminate();
    let standby = &procs[1 - li];
    wait_for(5, "standby takes over", || async {
        leader_of(standby).then_some(())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    dbs.patch(
        "after",
        &PatchParams::apply("tests"),
        &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase", "metadata": {"name": "after"},
            "spec": {"replica": {"file": {"path": dir.path()}}}
        })),
    )
    .await
    .unwrap();
    status_when(&dbs, "after", 30, "Ready under the new leader", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_descriptions() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    // Discovery of a new CRD can lag a little behind Established.
    let out = wait_for(30, "kubectl explain", || async {
        let o = std::process::Command::new("kubectl")
            .args(["explain", "sqlitedatabase.spec"])
            .output()
            .expect("kubectl on PATH (scripts/k8s-testenv.sh installs it)");
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).to_string())
    })
    .await;
    for want in [
        "Where the replica lives. Exactly one of s3, gcs, azure or file.",
        "syncInterval",
        "deletionPolicy",
    ] {
        assert!(out.contains(want), "kubectl explain lacks {want:?}:\n{out}");
    }
    let o = std::process::Command::new("kubectl")
        .args(["explain", "sqlitedatabase.spec.writer.leaseDuration"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("stops") && s.contains("accepting writes"), "{s}");
}

/// A second database naming the same replica root (spelled differently) is refused with a
/// condition and an Event, and deleting it with `deletionPolicy: Delete` leaves the first
/// database's objects alone; once it is gone, the first one's own deletion cleans up.
#[tokio::test]
async fn a_second_database_on_the_same_root_is_refused_and_cannot_delete_it() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-overlap").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let url = format!("file://{}", root.display());
    let replica = seed_replica(&url, 2).await;
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    let create = |name: &'static str, path: String| {
        let dbs = dbs.clone();
        async move {
            dbs.patch(
                name,
                &PatchParams::apply("tests"),
                &Patch::Apply(json!({
                    "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
                    "metadata": {"name": name},
                    "spec": {"replica": {"file": {"path": path}}, "deletionPolicy": "Delete"}
                })),
            )
            .await
            .unwrap();
        }
    };
    let _op = OperatorProcess::spawn(&ns, &[]);
    create("first", root.display().to_string()).await;
    status_when(&dbs, "first", 60, "first Ready", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;
    // The same directory: a doubled slash and a trailing one.
    create("second", format!("{}//r/", dir.path().display())).await;
    let st = status_when(&dbs, "second", 60, "second refused", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "ReplicaExclusive" && c.status == "False")
    })
    .await;
    let c = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ReplicaInUse")
    );
    assert!(c.message.contains("SqliteDatabase first"), "{}", c.message);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    wait_for(30, "ReplicaInUse event", || async {
        let evs = events.list(&ListParams::default()).await.ok()?;
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ReplicaInUse"))
            .then_some(())
    })
    .await;
    assert!(
        dbs.get("first").await.unwrap().status.unwrap().phase == Some(crds::Phase::Ready),
        "the first database must stay Ready"
    );

    dbs.delete("second", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(30, "second deleted", || async {
        matches!(dbs.get_opt("second").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(
        replica.list_all().await.unwrap().len(),
        1,
        "deleting the refused database removed the first one's replica"
    );

    dbs.delete("first", &DeleteParams::default()).await.unwrap();
    wait_for(30, "first deleted", || async {
        matches!(dbs.get_opt("first").await, Ok(None)).then_some(())
    })
    .await;
    assert!(
        replica.list_all().await.unwrap().is_empty(),
        "with no overlap left, Delete removes the replica"
    );
}

/// The operator's own environment holds working keys for the store, yet a database without
/// a credentials Secret is not observed with them, nor deleted with `deletionPolicy:
/// Delete`; one that asks for the operator's identity gets it only when the operator runs
/// with `--allow-operator-identity`.
#[tokio::test]
async fn the_operator_never_lends_its_own_credentials() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-ambient").await;
    let s3 = S3Server::shared();
    // The operator process inherits these: ambient credentials that work.
    s3.export_env();
    let bucket = testkit::unique("amb").to_lowercase();
    s3.create_bucket(&bucket);
    let url = |p: &str| {
        format!(
            "s3://{bucket}/{p}?endpoint={}&region=us-east-1&forcePathStyle=true",
            s3.endpoint
        )
    };
    let kept = seed_replica(&url("dbs/nosecret"), 2).await;
    seed_replica(&url("dbs/asks"), 3).await;
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    for (name, asks, policy) in [("nosecret", false, "Delete"), ("asks", true, "Retain")] {
        dbs.patch(
            name,
            &PatchParams::apply("tests"),
            &Patch::Apply(json!({
                "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
                "metadata": {"name": name},
                "spec": {
                    "replica": {"s3": {"bucket": bucket, "path": format!("dbs/{name}"),
                                       "endpoint": s3.endpoint, "region": "us-east-1",
                                       "forcePathStyle": true},
                                "useOperatorIdentity": asks},
                    "deletionPolicy": policy,
                }
            })),
        )
        .await
        .unwrap();
    }
    let not_observed = |s: &crds::SqliteDatabaseStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "ReplicaReachable")
            .and_then(|c| {
                (c.status == "Unknown" && c.reason == "NotObserved").then(|| c.message.clone())
            })
    };
    let mut op = OperatorProcess::spawn(&ns, &[]);
    let st = status_when(&dbs, "nosecret", 60, "nosecret not observed", |s| {
        not_observed(s).is_some()
    })
    .await;
    assert!(not_observed(&st).unwrap().contains("credentialsSecretRef"));
    assert_eq!(
        st.last_synced_txid, None,
        "the operator listed the replica anyway"
    );
    assert_eq!(st.phase, Some(crds::Phase::Ready));
    let st = status_when(&dbs, "asks", 60, "asks not observed", |s| {
        not_observed(s).is_some()
    })
    .await;
    assert!(
        not_observed(&st)
            .unwrap()
            .contains("--allow-operator-identity"),
        "{st:?}"
    );

    dbs.delete("nosecret", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(30, "nosecret deleted", || async {
        matches!(dbs.get_opt("nosecret").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(
        kept.list_all().await.unwrap().len(),
        1,
        "the operator deleted a replica with its own credentials"
    );

    op.terminate();
    let _op = OperatorProcess::spawn(&ns, &["--allow-operator-identity", "true"]);
    status_when(
        &dbs,
        "asks",
        60,
        "asks observed with the operator's identity",
        |s| s.last_synced_txid.as_deref() == Some(ltx::replica::format_txid(3).as_str()),
    )
    .await;
}

/// A replica opened with explicit credentials, seeded with TXIDs 1..=`txid` (a real
/// one-table SQLite database as one snapshot LTX).
async fn seed_with(url: &str, credentials: ltx::replica::Credentials, txid: u64) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seed.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
    }
    let (buf, _) = ltx::dbfile::encode_db(&db, 1, txid, 1_700_000_000_000, Vec::new()).unwrap();
    let opts = ReplicaOptions {
        credentials,
        ..Default::default()
    };
    let r = Replica::open_with(ReplicaUrl::parse(url).unwrap(), &opts).unwrap();
    r.write(
        &LtxKey::new(0, 1, txid),
        Bytes::from(buf),
        1_700_000_000_000,
        true,
    )
    .await
    .unwrap();
    r
}

/// The `SqliteDatabase` spec for Azure and GCS against their emulators (Azurite,
/// fake-gcs-server): a custom endpoint, the account key from a Secret (Azure), unsigned
/// requests to a GCS endpoint without a Secret; a wrong key and a malformed service-account
/// key each get a condition that names the problem; `deletionPolicy: Delete` empties the
/// Azure replica.
#[tokio::test]
async fn gcs_and_azure_specs_against_their_emulators() {
    use testkit::stores::{Kind, Store, AZURITE_ACCOUNT, AZURITE_KEY};
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-clouds").await;
    let (azurite, gcs) = (Store::start(Kind::Azurite), Store::start(Kind::FakeGcs));
    let az_url = azurite.replica_url("dbs/az");
    let container = url::Url::parse(&az_url)
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();
    let az_endpoint = format!("{}/{AZURITE_ACCOUNT}", azurite.endpoint);
    seed_with(
        &az_url,
        ltx::replica::Credentials {
            azure_account_key: Some(AZURITE_KEY.into()),
            ..Default::default()
        },
        4,
    )
    .await;
    let gcs_url = gcs.replica_url("dbs/gcs");
    let bucket = url::Url::parse(&gcs_url)
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();
    seed_with(&gcs_url, Default::default(), 5).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, key, value) in [
        ("az-creds", "accountKey", AZURITE_KEY.to_string()),
        ("az-wrong", "accountKey", "AAAA".repeat(21) + "AA=="),
        (
            "gcs-bad",
            "key.json",
            "{not a service account key".to_string(),
        ),
    ] {
        secrets
            .patch(
                name,
                &PatchParams::apply("tests"),
                &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "stringData": {key: value}})),
            )
            .await
            .unwrap();
    }
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    let azure = |path: &str, secret: &str| {
        json!({"azure": {"accountName": AZURITE_ACCOUNT, "container": container, "path": path,
                         "endpoint": az_endpoint,
                         "credentialsSecretRef": {"name": secret, "key": "accountKey"}}})
    };
    for (name, replica, policy) in [
        ("az", azure("dbs/az", "az-creds"), "Delete"),
        ("az-wrong", azure("dbs/az-wrong", "az-wrong"), "Retain"),
        (
            "gcs",
            json!({"gcs": {"bucket": bucket, "path": "dbs/gcs", "endpoint": gcs.endpoint}}),
            "Retain",
        ),
        (
            "gcs-bad",
            json!({"gcs": {"bucket": bucket, "path": "dbs/gcs-bad", "endpoint": gcs.endpoint,
                                  "credentialsSecretRef": {"name": "gcs-bad", "key": "key.json"}}}),
            "Retain",
        ),
    ] {
        dbs.patch(
            name,
            &PatchParams::apply("tests"),
            &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": name},
            "spec": {"replica": replica, "deletionPolicy": policy}})),
        )
        .await
        .unwrap();
    }
    let op = OperatorProcess::spawn(&ns, &[]);
    let reachable = |s: &crds::SqliteDatabaseStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "ReplicaReachable")
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    let st = status_when(&dbs, "az", 60, "az Ready", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;
    assert_eq!(
        st.last_synced_txid,
        Some(ltx::replica::format_txid(4)),
        "{:?}",
        op.log_tail()
    );
    let st = status_when(&dbs, "gcs", 60, "gcs Ready", |s| {
        s.phase == Some(crds::Phase::Ready)
    })
    .await;
    assert_eq!(st.last_synced_txid, Some(ltx::replica::format_txid(5)));
    let st = status_when(&dbs, "az-wrong", 60, "az-wrong refused", |s| {
        reachable(s).is_some_and(|(st, _)| st == "False")
    })
    .await;
    let (_, msg) = reachable(&st).unwrap();
    assert!(
        msg.contains("abs://") && msg.contains("PermissionDenied"),
        "{msg}"
    );
    let st = status_when(&dbs, "gcs-bad", 60, "gcs-bad refused", |s| {
        reachable(s).is_some_and(|(st, _)| st == "False")
    })
    .await;
    let (_, msg) = reachable(&st).unwrap();
    assert!(
        msg.contains("gcs-bad") && msg.contains("is not a Google service-account key: not JSON"),
        "{msg}"
    );

    dbs.delete("az", &DeleteParams::default()).await.unwrap();
    wait_for(30, "az deleted", || async {
        matches!(dbs.get_opt("az").await, Ok(None)).then_some(())
    })
    .await;
    let r = Replica::open_with(
        ReplicaUrl::parse(&az_url).unwrap(),
        &ReplicaOptions {
            credentials: ltx::replica::Credentials {
                azure_account_key: Some(AZURITE_KEY.into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        r.list_all().await.unwrap().is_empty(),
        "Delete left Azure objects"
    );
}
