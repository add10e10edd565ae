//! The deployable manifests in `config/`: they render deterministically, and the real API
//! server accepts them (server-side dry run).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// Our kustomizations use only `resources:`; resolve them here so the test does not depend on
/// the kustomize version inside whatever kubectl is installed.
fn render(dir: &Path) -> Vec<String> {
    let k: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let keys: Vec<String> = k
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        ["resources"],
        "{}: only `resources:` is supported here",
        dir.display()
    );
    let mut docs = Vec::new();
    for r in k["resources"].as_sequence().unwrap() {
        let p = dir.join(r.as_str().unwrap());
        if p.is_dir() {
            docs.extend(render(&p));
        } else {
            let text = std::fs::read_to_string(&p).unwrap();
            for d in text.split("\n---\n") {
                let v: serde_yaml::Value = serde_yaml::from_str(d).unwrap();
                if !v.is_null() {
                    docs.push(serde_yaml::to_string(&v).unwrap());
                }
            }
        }
    }
    docs
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut c = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    if let Some(s) = stdin {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let o = c.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn overlays_render_every_part_and_kustomize_agrees_when_available() {
    for overlay in ["default", "legacy"] {
        let docs = render(&config().join(overlay));
        let kinds: Vec<String> = docs
            .iter()
            .map(|d| {
                serde_yaml::from_str::<serde_yaml::Value>(d).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for k in [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Namespace",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration",
        ] {
            assert!(
                kinds.contains(&k.to_string()),
                "{overlay} lacks {k}: {kinds:?}"
            );
        }
        let crd = docs
            .iter()
            .find(|d| d.contains("kind: CustomResourceDefinition"))
            .unwrap();
        assert_eq!(
            overlay == "default",
            crd.contains("x-kubernetes-validations")
        );
        // `kubectl kustomize` (kustomize v3+ inside kubectl) renders the same, twice the same.
        let (ok, v) = kubectl(&["version", "--client"], None);
        if ok && !v.contains("Kustomize Version: v2") && v.contains("Kustomize Version") {
            let dir = config().join(overlay);
            let (ok1, a) = kubectl(&["kustomize", dir.to_str().unwrap()], None);
            let (ok2, b) = kubectl(&["kustomize", dir.to_str().unwrap()], None);
            assert!(ok1 && ok2, "{a}");
            assert_eq!(a, b, "kubectl kustomize is not deterministic");
            assert_eq!(
                a.matches("\nkind: ").count() + usize::from(a.starts_with("kind: ")),
                docs.len(),
                "{a}"
            );
        } else {
            eprintln!("note: kubectl's built-in kustomize is older than v3; compared with our own rendering only");
        }
    }
}

#[test]
fn the_api_server_accepts_the_manifests_and_samples() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(client) = rt.block_on(client()) else {
        return;
    };
    let v = rt.block_on(client.apiserver_version()).unwrap();
    let minor: u32 = v.minor.trim_end_matches('+').parse().unwrap_or(99);
    let overlay = if minor >= 25 { "default" } else { "legacy" };
    let docs = render(&config().join(overlay));
    // Namespaced objects need their namespace to exist even for a dry run.
    let (ok, out) = kubectl(&["create", "namespace", "sqlite-kube-system"], None);
    assert!(ok || out.contains("AlreadyExists"), "{out}");
    let (ok, out) = kubectl(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=tests",
            "-f",
            "-",
        ],
        Some(&docs.join("---\n")),
    );
    assert!(ok, "server rejected config/{overlay}:\n{out}");
    for kind in [
        "customresourcedefinition",
        "clusterrole",
        "deployment",
        "mutatingwebhookconfiguration",
    ] {
        assert!(out.contains(kind), "{kind} missing in:\n{out}");
    }
    // The samples need the CRD for real (a dry run cannot validate against a dry-run CRD).
    rt.block_on(install_crd(&client));
    let samples = render(&config().join("samples"));
    let (ok, out) = kubectl(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=tests",
            "-f",
            "-",
        ],
        Some(&samples.join("---\n")),
    );
    assert!(ok, "server rejected config/samples:\n{out}");
    assert!(
        out.contains("sqlitedatabase.sqlitekube.dev/orders"),
        "{out}"
    );
}

/// The RBAC in `config/rbac` is enough for everything the operator does — leader election,
/// writer Leases, the credentials Secret, status, Events, the finalizer and a `Delete`
/// cleanup — when the operator runs as its ServiceAccount (impersonated), and no more than
/// the comments in those files say: no `update` of writer Leases, no Secret listing, no
/// other leader Lease.
#[test]
fn the_operator_runs_with_exactly_its_rbac() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};
    use serde_json::json;
    use testkit::seaweed::{S3Server, ACCESS_KEY, SECRET_KEY};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(client) = rt.block_on(client()) else {
        return;
    };
    rt.block_on(install_crd(&client));
    let (ok, out) = kubectl(&["create", "namespace", "sqlite-kube-system"], None);
    assert!(ok || out.contains("AlreadyExists"), "{out}");
    let rbac = render(&config().join("rbac"));
    let (ok, out) = kubectl(
        &["apply", "--server-side", "--field-manager=tests", "-f", "-"],
        Some(&rbac.join("---\n")),
    );
    assert!(ok, "{out}");
    let sa = "system:serviceaccount:sqlite-kube-system:sqlite-kube-operator";
    let as_sa = format!("--as={sa}");
    for (args, want) in [
        (&["get", "secrets", "-n", "default"][..], true),
        (&["list", "secrets", "-n", "default"], false),
        (&["create", "leases", "-n", "default"], true),
        (&["delete", "leases", "-n", "default"], true),
        (&["update", "leases", "-n", "default"], false),
        (
            &[
                "update",
                "leases/sqlite-kube-operator",
                "-n",
                "sqlite-kube-system",
            ],
            true,
        ),
        (
            &["update", "leases/someone-else", "-n", "sqlite-kube-system"],
            false,
        ),
        (
            &["delete", "sqlitedatabases.sqlitekube.dev", "-n", "default"],
            false,
        ),
        (&["create", "pods", "-n", "default"], false),
        (&["create", "secrets", "-n", "sqlite-kube-system"], true),
        (&["create", "secrets", "-n", "default"], false),
        (
            &[
                "update",
                "secrets/sqlite-kube-webhook-tls",
                "-n",
                "sqlite-kube-system",
            ],
            true,
        ),
        (
            &["update", "secrets/someone-else", "-n", "sqlite-kube-system"],
            false,
        ),
        (
            &["patch", "mutatingwebhookconfigurations/sqlite-kube"],
            true,
        ),
        (
            &["patch", "mutatingwebhookconfigurations/someone-else"],
            false,
        ),
    ] {
        let mut a = vec!["auth", "can-i"];
        a.extend_from_slice(args);
        a.push(&as_sa);
        let (allowed, out) = kubectl(&a, None);
        assert_eq!(allowed, want, "kubectl {} -> {out}", a.join(" "));
    }

    // The operator as its ServiceAccount: a kubeconfig that impersonates it.
    let dir = tempfile::tempdir().unwrap();
    let src = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let mut kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&src).unwrap()).unwrap();
    for u in kc["users"].as_sequence_mut().unwrap() {
        u["user"]["as"] = sa.into();
        u["user"]["as-groups"] = serde_yaml::to_value([
            "system:serviceaccounts",
            "system:serviceaccounts:sqlite-kube-system",
            "system:authenticated",
        ])
        .unwrap();
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, serde_yaml::to_string(&kc).unwrap()).unwrap();

    let ns = rt.block_on(namespace(&client, "op-rbac"));
    let s3 = S3Server::shared();
    let bucket = testkit::unique("rbac").to_lowercase();
    s3.create_bucket(&bucket);
    let dbs: Api<crds::SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    rt.block_on(async {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        secrets
            .patch("s3-creds", &PatchParams::apply("tests"), &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
                "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}})))
            .await
            .unwrap();
        dbs.patch("orders", &PatchParams::apply("tests"), &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": "orders"},
            "spec": {"replica": {"s3": {"bucket": bucket, "path": "dbs/orders", "endpoint": s3.endpoint,
                                        "region": "us-east-1", "forcePathStyle": true,
                                        "credentialsSecretRef": {"name": "s3-creds"}}},
                     "deletionPolicy": "Delete"}})))
            .await
            .unwrap();
    });
    // The shipped webhook configuration (its caBundle is the operator's to set).
    let webhook = render(&config().join("webhook"))
        .into_iter()
        .find(|d| d.contains("MutatingWebhookConfiguration"))
        .unwrap();
    let (ok, out) = kubectl(
        &["apply", "--server-side", "--field-manager=tests", "-f", "-"],
        Some(&webhook),
    );
    assert!(ok, "{out}");
    let log = dir.path().join("operator.log");
    let mut op = Command::new(env!("CARGO_BIN_EXE_sqlite-kube-operator"))
        .args(["--namespace", &ns, "--resync", "2s", "--metrics-addr"])
        .arg(format!("127.0.0.1:{}", free_port()))
        // The self-issued webhook certificate: Secret in its namespace, caBundle patched.
        .args(["--webhook-service", "sqlite-kube-webhook", "--webhook-addr"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--webhook-work-dir")
        .arg(dir.path().join("webhook"))
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "sqlite-kube-system")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log_tail = || std::fs::read_to_string(&log).unwrap_or_default();
    let ready = rt.block_on(async {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(60) {
            let ready = dbs
                .get_opt("orders")
                .await
                .ok()
                .flatten()
                .and_then(|d| d.status)
                .is_some_and(|s| {
                    s.phase == Some(crds::Phase::Ready)
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "ReplicaReachable" && c.status == "True")
                });
            if ready {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        false
    });
    assert!(
        ready,
        "not Ready as the ServiceAccount; operator log:\n{}",
        log_tail()
    );
    let deleted = rt.block_on(async {
        dbs.delete("orders", &DeleteParams::default())
            .await
            .unwrap();
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(30) {
            if matches!(dbs.get_opt("orders").await, Ok(None)) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        false
    });
    let _ = op.kill();
    let _ = op.wait();
    assert!(
        deleted,
        "cleanup failed as the ServiceAccount; operator log:\n{}",
        log_tail()
    );
    let (ok, out) = kubectl(
        &[
            "get",
            "secret",
            "sqlite-kube-webhook-tls",
            "-n",
            "sqlite-kube-system",
            "-o",
            "name",
        ],
        None,
    );
    assert!(
        ok,
        "no self-issued certificate Secret: {out}\n{}",
        log_tail()
    );
    let (ok, out) = kubectl(
        &[
            "get",
            "mutatingwebhookconfiguration",
            "sqlite-kube",
            "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ],
        None,
    );
    assert!(
        ok && out.len() > 100,
        "caBundle not set: {out}\n{}",
        log_tail()
    );
    let log = log_tail();
    assert!(
        !log.contains("forbidden"),
        "a request was forbidden:\n{log}"
    );
}
