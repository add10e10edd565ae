//! The pod webhook called for real by the API server over TLS: the webhook configuration
//! points at the operator by URL on 127.0.0.1 (so this needs an API server on this host,
//! as scripts/k8s-testenv.sh starts; against a remote cluster it is skipped with a note).

mod common;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use common::*;
use crds::SqliteDatabase;

#[tokio::test]
async fn api_server_calls_the_webhook_over_tls() {
    let Some(client) = client().await else { return };
    if !e2e::server_is_local() {
        let what = "an API server on this host (it calls the webhook on 127.0.0.1)";
        if e2e::may_skip(what).unwrap() {
            return;
        }
        panic!("this test needs {what}; KUBECONFIG names a remote one");
    }
    install_crd(&client).await;
    let ns = namespace(&client, "webhook").await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.patch(&ns, &PatchParams::apply("tests"), &Patch::Apply(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"sqlitekube-test": ns}}})))
        .await
        .unwrap();

    let certs = tempfile::tempdir().unwrap();
    let ca = e2e::webhook_certificates(certs.path()).unwrap();
    let port = free_port();
    let op = OperatorProcess::spawn(
        &ns,
        &[
            "--webhook-cert-dir",
            certs.path().to_str().unwrap(),
            "--webhook-addr",
            &format!("127.0.0.1:{port}"),
            "--hydrator-image",
            "ghcr.io/sqlite-kube/hydrator:test",
        ],
    );

    let whc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let whc_name = format!("sqlite-kube-test-{ns}");
    whc.patch(&whc_name, &PatchParams::apply("tests"), &Patch::Apply(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": whc_name},
        "webhooks": [{
            "name": "pods.sqlitekube.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-pods"), "caBundle": ca},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"sqlitekube-test": ns}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5
        }]
    }))).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    dbs.patch("orders", &PatchParams::apply("tests"), &Patch::Apply(json!({
        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase", "metadata": {"name": "orders"},
        "spec": {"replica": {"file": {"path": dir.path()}}, "writer": {"drainTimeout": "40s"}}})))
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = |name: &str, ann: serde_json::Value| -> Pod {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": ann},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}))
        .unwrap()
    };
    // The first create may race the webhook server starting: retry briefly.
    let created = wait_for(20, "webhook answering", || {
        let pods = pods.clone();
        let p = pod("writer", json!({"sqlitekube.dev/database": "orders"}));
        async move { pods.create(&PostParams::default(), &p).await.ok() }
    })
    .await;
    let spec = created.spec.clone().unwrap();
    let init = spec.init_containers.clone().unwrap_or_default();
    assert_eq!(init.len(), 1, "{:?}\n{}", init, op.log_tail());
    assert_eq!(init[0].name, "sqlite-kube-hydrator");
    assert_eq!(
        init[0].image.as_deref(),
        Some("ghcr.io/sqlite-kube/hydrator:test")
    );
    // A 1.20 server has no native sidecars: the classic init container path.
    let v = client.apiserver_version().await.unwrap();
    let minor: u32 = v.minor.trim_end_matches('+').parse().unwrap_or(99);
    assert_eq!(init[0].restart_policy.is_some(), minor >= 29);
    let env: Vec<(String, String)> = spec.containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        get("LITESTREAM_REPLICA_URL"),
        format!("file://{}", dir.path().display())
    );
    assert_eq!(get("LITESTREAM_WRITE_ENABLED"), "true");
    assert_eq!(spec.termination_grace_period_seconds, Some(50));
    assert_eq!(
        created
            .metadata
            .annotations
            .unwrap()
            .get("sqlitekube.dev/injected")
            .map(String::as_str),
        Some("true")
    );
    // What is stored is what was returned.
    let stored = pods.get("writer").await.unwrap();
    assert_eq!(
        stored.spec.unwrap().init_containers.unwrap()[0].name,
        "sqlite-kube-hydrator"
    );

    // A pod that did not opt in passes untouched.
    let plain = pods
        .create(&PostParams::default(), &pod("plain", json!({})))
        .await
        .unwrap();
    assert!(plain.spec.as_ref().unwrap().init_containers.is_none());
    assert!(!plain
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key("sqlitekube.dev/injected"));

    // A pod naming a missing database is refused, and the message says so.
    let err = pods
        .create(
            &PostParams::default(),
            &pod("lost", json!({"sqlitekube.dev/database": "nope"})),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("does not exist") && msg.contains("nope"),
        "{msg}"
    );

    // Server-side latency as the operator measured it.
    let m = http_get(&format!("{}/metrics", op.metrics)).unwrap_or_default();
    assert!(
        m.contains("sqlitekube_operator_admission_duration_seconds_count"),
        "{m}"
    );

    whc.delete(&whc_name, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Without cert-manager: two operator replicas issue (or find) one certificate in a Secret,
/// set the webhook configuration's caBundle, and the API server trusts it when it calls the
/// webhook. A restart reuses the Secret (the caBundle does not change).
#[tokio::test]
async fn self_issued_certificate_serves_the_webhook() {
    use k8s_openapi::api::core::v1::Secret;
    let Some(client) = client().await else { return };
    if !e2e::server_is_local() {
        let what = "an API server on this host (it calls the webhook on 127.0.0.1)";
        if e2e::may_skip(what).unwrap() {
            return;
        }
        panic!("this test needs {what}; KUBECONFIG names a remote one");
    }
    install_crd(&client).await;
    let ns = namespace(&client, "selfcert").await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.patch(&ns, &PatchParams::apply("tests"), &Patch::Apply(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"sqlitekube-test": ns}}})))
        .await
        .unwrap();
    let whc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let whc_name = format!("sqlite-kube-selfcert-{ns}");
    let port = free_port();
    // No caBundle: the operator sets it.
    whc.patch(&whc_name, &PatchParams::apply("tests"), &Patch::Apply(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": whc_name},
        "webhooks": [{
            "name": "pods.sqlitekube.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-pods")},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"sqlitekube-test": ns}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5
        }]
    }))).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let spawn = |i: usize, port: u16| {
        OperatorProcess::spawn(
            &ns,
            &[
                "--webhook-service",
                "sqlite-kube-webhook",
                "--webhook-config",
                &whc_name,
                "--webhook-extra-names",
                "127.0.0.1",
                "--webhook-work-dir",
                work.path().join(format!("r{i}")).to_str().unwrap(),
                "--webhook-addr",
                &format!("127.0.0.1:{port}"),
            ],
        )
    };
    // Two replicas at once (the second serves on another port; both race for the Secret).
    let mut a = spawn(0, port);
    let mut b = spawn(1, free_port());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = wait_for(30, "the certificate Secret", || async {
        secrets
            .get_opt("sqlite-kube-webhook-tls")
            .await
            .ok()
            .flatten()
    })
    .await;
    let ca = secret.data.as_ref().unwrap()["ca.crt"].0.clone();
    let bundle = wait_for(30, "caBundle set", || async {
        let w = whc.get(&whc_name).await.ok()?;
        w.webhooks?[0].client_config.ca_bundle.clone()
    })
    .await;
    assert_eq!(bundle.0, ca, "caBundle is the Secret's CA");
    // Both replicas serve the one certificate.
    let served = |i: usize| std::fs::read(work.path().join(format!("r{i}/tls.crt"))).ok();
    wait_for(30, "both replicas wrote the certificate", || async {
        (served(0).is_some() && served(0) == served(1)).then_some(())
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    dbs.patch("orders", &PatchParams::apply("tests"), &Patch::Apply(json!({
        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase", "metadata": {"name": "orders"},
        "spec": {"replica": {"file": {"path": dir.path()}}}})))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "writer", "annotations": {"sqlitekube.dev/database": "orders"}},
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}))
    .unwrap();
    let created = wait_for(20, "the API server calling the webhook", || {
        let (pods, pod) = (pods.clone(), pod.clone());
        async move { pods.create(&PostParams::default(), &pod).await.ok() }
    })
    .await;
    let init = created.spec.unwrap().init_containers.unwrap_or_default();
    assert_eq!(init.len(), 1, "not injected:\n{}", a.log_tail());

    // A restart finds the Secret: same CA, same caBundle.
    a.terminate();
    b.terminate();
    let _c = spawn(2, free_port());
    wait_for(
        30,
        "the restarted replica wrote the certificate",
        || async { served(2).map(|_| ()) },
    )
    .await;
    let again = secrets.get("sqlite-kube-webhook-tls").await.unwrap();
    assert_eq!(
        again.data.unwrap()["ca.crt"].0,
        ca,
        "a restart issued a new CA"
    );
    assert_eq!(
        whc.get(&whc_name).await.unwrap().webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap()
            .0,
        ca
    );
    let _ = whc.delete(&whc_name, &DeleteParams::default()).await;
}
