//! The reconciler against a mocked API server (kube-rs style): each test scripts the
//! requests the reconciler must make, in order, and what the "server" answers.
//! Replicas are real (`file://` directories, and a closed port for the unreachable case).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};

use crds::SqliteDatabase;
use operator::metrics::Metrics;
use operator::reconcile::reconcile;
use operator::{Context, Settings};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn context() -> (Arc<Context>, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let settings = Settings {
        replica_timeout: Duration::from_secs(3),
        ..Settings::default()
    };
    let ctx = Context::new(client, Arc::new(Metrics::default()), settings, "test");
    (Arc::new(ctx), handle)
}

fn db(spec: Value, finalizer: bool, deleting: bool) -> SqliteDatabase {
    let mut meta = json!({"name": "orders", "namespace": "shop", "uid": "u-1", "generation": 3,
                          "resourceVersion": "7"});
    if finalizer {
        meta["finalizers"] = json!(["sqlitekube.dev/cleanup"]);
    }
    if deleting {
        meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    serde_json::from_value(json!({
        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
        "metadata": meta, "spec": spec,
    }))
    .unwrap()
}

/// The next request must be `method` on a path containing `path`; answers `status`/`body`
/// and returns the request body as JSON (Null when empty).
async fn expect(h: &mut Handle, method: Method, path: &str, status: u16, body: Value) -> Value {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), h.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
        .expect("service dropped");
    let uri = req.uri().to_string();
    assert_eq!(
        req.method(),
        method,
        "unexpected request {} {uri}",
        req.method()
    );
    assert!(uri.contains(path), "expected {method} …{path}…, got {uri}");
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let sent = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let resp = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    send.send_response(resp);
    sent
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

const DB_PATH: &str = "/apis/sqlitekube.dev/v1alpha1/namespaces/shop/sqlitedatabases/orders";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

fn echo_event() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "shop"},
           "eventTime": "2026-01-01T00:00:00.000000Z"})
}

fn condition(status: &Value, t: &str) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t)
        .cloned()
        .unwrap_or_else(|| panic!("no {t} condition in {status}"))
}

#[tokio::test]
async fn create_adds_finalizer_then_becomes_ready_with_a_lease() {
    let replica = tempfile::tempdir().unwrap();
    let spec = json!({"replica": {"file": {"path": replica.path()}}});

    // First pass: only the finalizer is added.
    let (ctx, mut h) = context();
    let obj = db(spec.clone(), false, false);
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        let patch = expect(&mut h, Method::PATCH, DB_PATH, 200, echo).await;
        assert!(
            patch.to_string().contains("sqlitekube.dev/cleanup"),
            "{patch}"
        );
    });
    let action = reconcile(Arc::new(obj), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    server.await.unwrap();

    // Second pass: lease created, replica observed, event published, status written.
    let (ctx, mut h) = context();
    let obj = db(spec, true, false);
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(
            &mut h,
            Method::GET,
            &format!("{LEASES}/orders-writer"),
            404,
            not_found(),
        )
        .await;
        let lease = expect(
            &mut h,
            Method::POST,
            LEASES,
            201,
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "orders-writer"}, "spec": {}}),
        )
        .await;
        assert_eq!(
            lease["metadata"]["ownerReferences"][0]["kind"],
            "SqliteDatabase"
        );
        assert_eq!(lease["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
        let ev = expect(&mut h, Method::POST, EVENTS, 201, echo_event()).await;
        assert_eq!(ev["reason"], "ReplicaReachable");
        expect(
            &mut h,
            Method::PATCH,
            &format!("{DB_PATH}/status"),
            200,
            echo,
        )
        .await
    });
    let action = reconcile(Arc::new(obj), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let st = server.await.unwrap();
    let status = &st["status"];
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["replicaFiles"], 0);
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(condition(status, "SpecValid")["status"], "True");
    assert_eq!(condition(status, "ReplicaReachable")["status"], "True");
    assert_eq!(condition(status, "WriterHeld")["status"], "False");
}

#[tokio::test]
async fn invalid_spec_gets_a_condition_and_a_warning_event() {
    let (ctx, mut h) = context();
    let obj = db(
        json!({"replica": {"file": {"path": "/r"}, "s3": {"bucket": "bkt", "path": "p"}}, "syncInterval": "5ms"}),
        true,
        false,
    );
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        let ev = expect(&mut h, Method::POST, EVENTS, 201, echo_event()).await;
        let st = expect(
            &mut h,
            Method::PATCH,
            &format!("{DB_PATH}/status"),
            200,
            echo,
        )
        .await;
        (ev, st)
    });
    // Invalid specs wait for a change instead of retrying.
    let action = reconcile(Arc::new(obj), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let (ev, st) = server.await.unwrap();
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["reason"], "InvalidSpec");
    let note = ev["note"].as_str().unwrap();
    assert!(
        note.contains("spec.replica: exactly one of s3, gcs, azure or file"),
        "{note}"
    );
    assert!(note.contains("spec.syncInterval"), "{note}");
    assert_eq!(st["status"]["phase"], "Failed");
    let spec_valid = condition(&st["status"], "SpecValid");
    assert_eq!(spec_valid["status"], "False");
    assert_eq!(spec_valid["reason"], "InvalidSpec");
}

#[tokio::test]
async fn unreachable_replica_is_degraded_and_retried_with_backoff() {
    let (ctx, mut h) = context();
    let obj = db(
        json!({"replica": {"s3": {"bucket": "bkt", "path": "p", "endpoint": "http://127.0.0.1:1",
                                  "credentialsSecretRef": {"name": "s3-creds"}}}}),
        true,
        false,
    );
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(
            &mut h,
            Method::GET,
            &format!("{LEASES}/orders-writer"),
            200,
            json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "orders-writer"},
            "spec": {"holderIdentity": "app-0", "leaseTransitions": 4, "leaseDurationSeconds": 15,
                     "renewTime": jiff::Timestamp::now().to_string()}}),
        )
        .await;
        expect(
            &mut h,
            Method::GET,
            "/api/v1/namespaces/shop/secrets/s3-creds",
            200,
            json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
            "data": {"AWS_ACCESS_KEY_ID": "a2V5", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0"}}),
        )
        .await;
        let ev = expect(&mut h, Method::POST, EVENTS, 201, echo_event()).await;
        let st = expect(
            &mut h,
            Method::PATCH,
            &format!("{DB_PATH}/status"),
            200,
            echo,
        )
        .await;
        (ev, st)
    });
    let err = reconcile(Arc::new(obj.clone()), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let (ev, st) = server.await.unwrap();
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["reason"], "ReplicaUnreachable");
    assert_eq!(st["status"]["phase"], "Degraded");
    assert_eq!(
        condition(&st["status"], "ReplicaReachable")["status"],
        "False"
    );
    assert_eq!(st["status"]["writer"]["pod"], "app-0");
    assert_eq!(st["status"]["writer"]["epoch"], 4);
    // Errors back off exponentially per object.
    let a1 = operator::reconcile::error_policy(Arc::new(obj.clone()), &err, ctx.clone());
    let a2 = operator::reconcile::error_policy(Arc::new(obj), &err, ctx);
    assert_eq!(a1, Action::requeue(Duration::from_secs(2)));
    assert_eq!(a2, Action::requeue(Duration::from_secs(4)));
}

#[tokio::test]
async fn missing_secret_names_the_secret() {
    let (ctx, mut h) = context();
    let obj = db(
        json!({"replica": {"s3": {"bucket": "bkt", "path": "p", "credentialsSecretRef": {"name": "nope"}}}}),
        true,
        false,
    );
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut h, Method::GET, &format!("{LEASES}/orders-writer"), 200, json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "orders-writer"}, "spec": {}}))
        .await;
        expect(&mut h, Method::GET, "/secrets/nope", 404, not_found()).await;
        let ev = expect(&mut h, Method::POST, EVENTS, 201, echo_event()).await;
        expect(
            &mut h,
            Method::PATCH,
            &format!("{DB_PATH}/status"),
            200,
            echo,
        )
        .await;
        ev
    });
    let err = reconcile(Arc::new(obj), ctx).await.unwrap_err();
    assert!(
        err.to_string().contains("Secret shop/nope not found"),
        "{err}"
    );
    let ev = server.await.unwrap();
    assert_eq!(ev["reason"], "CredentialsMissing");
}

fn fake_ltx_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let dir = root.join("ltx/0");
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<_> = [(1u64, 1u64), (2, 2)]
        .iter()
        .map(|(a, b)| dir.join(format!("{a:016x}-{b:016x}.ltx")))
        .collect();
    for f in &files {
        std::fs::write(f, b"x").unwrap();
    }
    files
}

/// Deletes a database whose replica holds two LTX files; with `Delete`, the cluster's
/// listing of databases also holds `others` (placed at the same replica root when
/// `share_root`).
async fn run_deletion_among(
    policy: &str,
    share_root: bool,
) -> (tempfile::TempDir, Vec<std::path::PathBuf>, Value) {
    let replica = tempfile::tempdir().unwrap();
    let files = fake_ltx_files(replica.path());
    let (ctx, mut h) = context();
    let obj = db(
        json!({"replica": {"file": {"path": replica.path()}}, "deletionPolicy": policy}),
        true,
        true,
    );
    let echo = serde_json::to_value(&obj).unwrap();
    let mut other = echo.clone();
    other["metadata"]["name"] = json!("orders-copy");
    other["metadata"]["namespace"] = json!("elsewhere");
    if share_root {
        // The same directory, spelled differently.
        other["spec"]["replica"]["file"]["path"] = json!(format!("{}//", replica.path().display()));
    } else {
        other["spec"]["replica"]["file"]["path"] = json!("/somewhere/else");
    }
    let delete = policy == "Delete";
    let server = tokio::spawn(async move {
        let st = expect(
            &mut h,
            Method::PATCH,
            &format!("{DB_PATH}/status"),
            200,
            echo.clone(),
        )
        .await;
        assert_eq!(st["status"]["phase"], "Deleting");
        if delete {
            let list = json!({"apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabaseList",
                              "metadata": {}, "items": [echo.clone(), other]});
            expect(
                &mut h,
                Method::GET,
                "/apis/sqlitekube.dev/v1alpha1/sqlitedatabases",
                200,
                list,
            )
            .await;
        }
        let ev = expect(&mut h, Method::POST, EVENTS, 201, echo_event()).await;
        expect(
            &mut h,
            Method::DELETE,
            &format!("{LEASES}/orders-writer"),
            404,
            not_found(),
        )
        .await;
        let fin = expect(&mut h, Method::PATCH, DB_PATH, 200, echo).await;
        (ev, fin)
    });
    let action = reconcile(Arc::new(obj), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let (ev, fin) = server.await.unwrap();
    // The finalizer removal is a JSON patch on metadata.finalizers.
    assert!(fin.to_string().contains("/metadata/finalizers"), "{fin}");
    (replica, files, ev)
}

async fn run_deletion(policy: &str) -> (tempfile::TempDir, Vec<std::path::PathBuf>, Value) {
    run_deletion_among(policy, false).await
}

/// Another database (in another namespace) names the same replica root: deleting this one
/// with `deletionPolicy: Delete` must not remove the objects the other one reads.
#[tokio::test]
async fn deletion_with_delete_keeps_a_replica_another_database_shares() {
    let (_dir, files, ev) = run_deletion_among("Delete", true).await;
    assert_eq!(ev["reason"], "ReplicaRetained");
    let note = ev["note"].as_str().unwrap();
    assert!(note.contains("another namespace"), "{note}");
    assert!(
        !note.contains("elsewhere"),
        "another namespace's database is not named: {note}"
    );
    assert!(
        files.iter().all(|f| f.exists()),
        "a shared replica was deleted"
    );
}

#[tokio::test]
async fn deletion_with_retain_keeps_the_replica() {
    let (_dir, files, ev) = run_deletion("Retain").await;
    assert_eq!(ev["reason"], "ReplicaRetained");
    assert!(files.iter().all(|f| f.exists()));
}

#[tokio::test]
async fn deletion_with_delete_removes_every_ltx_file() {
    let (_dir, files, ev) = run_deletion("Delete").await;
    assert_eq!(ev["reason"], "ReplicaDeleted");
    assert!(
        ev["note"]
            .as_str()
            .unwrap()
            .starts_with("deleted 2 LTX files"),
        "{ev}"
    );
    assert!(files.iter().all(|f| !f.exists()));
}
