//! The webhook resolves a pod's database in the pod's own namespace only: a pod in `b`
//! naming a database that exists only in `a` is refused, and nothing of `a`'s database
//! (its URL, its credentials Secret) reaches the answer.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::runtime::{reflector, watcher};
use kube::Client;
use serde_json::json;

use crds::SqliteDatabase;
use operator::metrics::Metrics;
use operator::webhook::inject::InjectConfig;
use operator::webhook::{decide, WebhookState};

fn database_in_a() -> SqliteDatabase {
    serde_json::from_value(json!({
        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
        "metadata": {"name": "orders", "namespace": "a", "resourceVersion": "1", "uid": "u-a"},
        "spec": {"replica": {"s3": {"bucket": "secret-bucket-of-a", "path": "p",
                                    "endpoint": "http://store-of-a:9000",
                                    "credentialsSecretRef": {"name": "creds-of-a"}}}}
    }))
    .unwrap()
}

/// The webhook as the server runs it, with `cache` as the watch filled it.
fn state(client: Client, cache: reflector::Store<SqliteDatabase>) -> WebhookState {
    WebhookState {
        client,
        config: InjectConfig {
            hydrator_image: "hydrator:test".into(),
            native_sidecar: false,
        },
        metrics: Arc::new(Metrics::default()),
        cache: Some(cache),
    }
}

fn admission(ns: &str) -> AdmissionRequest<Pod> {
    let review: AdmissionReview<Pod> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "r-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": ns, "name": "app-0",
            "userInfo": {"username": "someone-in-b"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "app-0", "namespace": ns,
                                    "annotations": {"sqlitekube.dev/database": "orders"}},
                       "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
        }
    }))
    .unwrap();
    review.try_into().unwrap()
}

#[tokio::test]
async fn a_database_in_another_namespace_is_never_injected() {
    // The cache (as the watch fills it, all namespaces) holds a's database only.
    let (cache, mut writer) = reflector::store::<SqliteDatabase>();
    writer.apply_watcher_event(&watcher::Event::Apply(database_in_a()));
    // The API fallback: record every path asked for, answer 404.
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            seen.lock().unwrap().push(req.uri().path().to_string());
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "reason": "NotFound", "code": 404, "message": "not found"});
            send.send_response(
                Response::builder()
                    .status(404)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    let state = state(Client::new(svc, "default"), cache);
    let resp = tokio::time::timeout(Duration::from_secs(10), decide(&state, &admission("b")))
        .await
        .expect("admission answered");
    assert!(!resp.allowed, "a pod in b got a's database");
    let text = serde_json::to_string(&resp.into_review()).unwrap();
    assert!(
        text.contains("b/orders"),
        "the refusal names b/orders: {text}"
    );
    for leaked in ["secret-bucket-of-a", "store-of-a", "creds-of-a"] {
        assert!(
            !text.contains(leaked),
            "{leaked} leaked into the answer: {text}"
        );
    }
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked.iter().all(|p| p.contains("/namespaces/b/")),
        "the webhook looked outside the pod's namespace: {asked:?}"
    );

    // The same database is injected for a pod in a (the test would pass vacuously if the
    // webhook refused everything).
    let resp = decide(&state, &admission("a")).await;
    assert!(resp.allowed, "a pod in a must get a's database");
    assert!(resp.patch.is_some(), "and a patch injecting it");
}

/// A pod of a database whose replica root another database (created earlier) already
/// uses is refused, and the refusal does not name a database of another namespace. The
/// earlier database's pods are still injected.
#[tokio::test]
async fn pods_of_a_database_on_a_taken_replica_root_are_refused() {
    let db = |ns: &str, created: &str| -> SqliteDatabase {
        serde_json::from_value(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": "orders", "namespace": ns, "resourceVersion": "1",
                         "uid": format!("u-{ns}"), "creationTimestamp": created},
            "spec": {"replica": {"s3": {"bucket": "shared", "path": "apps/orders",
                                        "endpoint": "http://store:9000"}}}
        }))
        .unwrap()
    };
    let (cache, mut writer) = reflector::store::<SqliteDatabase>();
    writer.apply_watcher_event(&watcher::Event::Apply(db("a", "2026-01-01T00:00:00Z")));
    writer.apply_watcher_event(&watcher::Event::Apply(db("b", "2026-02-01T00:00:00Z")));
    let (svc, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = state(Client::new(svc, "default"), cache);
    let resp = decide(&state, &admission("b")).await;
    assert!(!resp.allowed, "b's database shares a's replica root");
    let text = serde_json::to_string(&resp.into_review()).unwrap();
    assert!(text.contains("another namespace"), "{text}");
    assert!(
        !text.contains("namespace a") && !text.contains("a/orders"),
        "{text}"
    );
    let resp = decide(&state, &admission("a")).await;
    assert!(resp.allowed, "the first claim keeps its root");
}

/// Pods of a database whose `spec.bootstrap` has not finished are refused with the reason;
/// once the condition Bootstrapped is True they are injected.
#[tokio::test]
async fn pods_wait_for_the_bootstrap() {
    let db = |bootstrapped: Option<&str>| -> SqliteDatabase {
        let mut v = json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": "orders", "namespace": "a", "resourceVersion": "1", "uid": "u-a"},
            "spec": {"replica": {"s3": {"bucket": "bkt", "path": "apps/clone",
                                        "endpoint": "http://store:9000"}},
                     "bootstrap": {"from": {"replica": {"s3": {"bucket": "bkt", "path": "apps/orders",
                                                               "endpoint": "http://store:9000"}},
                                            "txid": "00000000000000a0"}}}
        });
        if let Some(status) = bootstrapped {
            v["status"] = json!({"conditions": [{"type": "Bootstrapped", "status": status,
                "reason": "SourceUnavailable", "message": "restoring the source: no file covers TXID 160",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        }
        serde_json::from_value(v).unwrap()
    };
    let state_with = |d: SqliteDatabase| {
        let (cache, mut writer) = reflector::store::<SqliteDatabase>();
        writer.apply_watcher_event(&watcher::Event::Apply(d));
        let (svc, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (state(Client::new(svc, "default"), cache), _handle)
    };
    for (status, why) in [
        (None, "not started yet"),
        (Some("False"), "no file covers TXID 160"),
    ] {
        let (state, _h) = state_with(db(status));
        let resp = decide(&state, &admission("a")).await;
        assert!(!resp.allowed, "admitted during the bootstrap ({status:?})");
        let text = serde_json::to_string(&resp.into_review()).unwrap();
        assert!(
            text.contains("still being bootstrapped") && text.contains(why),
            "{text}"
        );
    }
    let mut done = db(Some("True"));
    done.status.as_mut().unwrap().conditions[0].reason = "Copied".into();
    let (state, _h) = state_with(done);
    let resp = decide(&state, &admission("a")).await;
    assert!(resp.allowed, "a bootstrapped database's pods are injected");
}
