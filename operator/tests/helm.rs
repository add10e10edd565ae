//! The Helm chart (`config/helm/sqlite-kube`) renders the same objects as the kustomize
//! manifests, so the two cannot drift: default values = `config/default`, `crds.legacy` =
//! `config/legacy`, `monitoring.enabled` adds exactly `config/monitoring`. Rendered by Helm's
//! own engine (`scripts/helm-render.py`: Helm's Go SDK from PyPI, as no helm binary is on a
//! package registry), compared with `kubectl kustomize`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const NS: &str = "sqlite-kube-system";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Objects of a multi-document YAML stream by (kind, namespace, name).
fn objects(yaml: &str) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
        if v.is_null() {
            continue;
        }
        let key = (
            v["kind"].as_str().unwrap_or_default().to_string(),
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        assert!(out.insert(key.clone(), v).is_none(), "{key:?} twice");
    }
    out
}

/// `helm template sqlite-kube config/helm/sqlite-kube -n sqlite-kube-system` with `values`.
fn helm(values: Value) -> Result<String, String> {
    let python = testkit::dep_binary("HELM_PYTHON", "helm/bin/python");
    let o = Command::new(python)
        .arg(root().join("scripts/helm-render.py"))
        .arg(root().join("config/helm/sqlite-kube"))
        .arg(NS)
        .arg(values.to_string())
        .output()
        .expect("running scripts/helm-render.py");
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn kustomize(dir: &str) -> String {
    let o = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("config").join(dir))
        .output()
        .expect("kubectl on PATH (scripts/k8s-testenv.sh installs it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_same(helm: &str, kustomize: &str, what: &str) {
    let (h, k) = (objects(helm), objects(kustomize));
    let (hk, kk): (Vec<_>, Vec<_>) = (h.keys().collect(), k.keys().collect());
    assert_eq!(
        hk, kk,
        "{what}: the chart renders other objects than kustomize"
    );
    for (key, want) in &k {
        assert!(
            &h[key] == want,
            "{what}: {key:?} differs\nchart:     {}\nkustomize: {}",
            h[key],
            want
        );
    }
}

#[test]
fn default_values_render_exactly_config_default() {
    assert_same(
        &helm(json!({})).unwrap(),
        &kustomize("default"),
        "default values",
    );
}

#[test]
fn legacy_crds_render_exactly_config_legacy() {
    assert_same(
        &helm(json!({"crds": {"legacy": true}})).unwrap(),
        &kustomize("legacy"),
        "crds.legacy",
    );
}

#[test]
fn monitoring_adds_exactly_config_monitoring() {
    let both = format!("{}\n---\n{}", kustomize("default"), kustomize("monitoring"));
    assert_same(
        &helm(json!({"monitoring": {"enabled": true}})).unwrap(),
        &both,
        "monitoring.enabled",
    );
}

#[test]
fn values_for_images_replicas_resources_and_namespace_apply() {
    let out = objects(
        &helm(json!({
            "image": {"operator": "registry.example/op:1", "hydrator": "registry.example/hy:1", "pullPolicy": "Always"},
            "replicas": 3,
            "resources": {"requests": {"cpu": "10m"}},
            "createNamespace": false,
            "crds": {"install": false},
        }))
        .unwrap(),
    );
    let d = &out[&(
        "Deployment".into(),
        NS.into(),
        "sqlite-kube-operator".into(),
    )];
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example/op:1");
    assert_eq!(c["imagePullPolicy"], "Always");
    // Helm merges values: the other defaults stay.
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}})
    );
    let env = c["env"].as_array().unwrap();
    assert!(env.contains(&json!({"name": "HYDRATOR_IMAGE", "value": "registry.example/hy:1"})));
    assert!(!out
        .keys()
        .any(|k| k.0 == "Namespace" || k.0 == "CustomResourceDefinition"));
}

/// cert-manager mode: a Certificate (self-signed Issuer unless one is named) mounted into
/// the operator, which reads it from --webhook-cert-dir; cert-manager injects the CA; the
/// operator loses the RBAC it only needs to issue its own certificate.
#[test]
fn cert_manager_mode_mounts_a_certificate_and_drops_self_issuing() {
    let out = objects(&helm(json!({"webhook": {"certificate": "cert-manager"}})).unwrap());
    let cert = &out[&(
        "Certificate".into(),
        NS.into(),
        "sqlite-kube-webhook".into(),
    )];
    assert_eq!(cert["spec"]["secretName"], "sqlite-kube-webhook-cert");
    assert_eq!(
        cert["spec"]["dnsNames"][0],
        "sqlite-kube-webhook.sqlite-kube-system.svc"
    );
    assert_eq!(
        cert["spec"]["issuerRef"],
        json!({"name": "sqlite-kube-selfsigned", "kind": "Issuer"})
    );
    assert!(out.contains_key(&("Issuer".into(), NS.into(), "sqlite-kube-selfsigned".into())));
    let d = &out[&(
        "Deployment".into(),
        NS.into(),
        "sqlite-kube-operator".into(),
    )];
    let pod = &d["spec"]["template"]["spec"];
    let args = pod["containers"][0]["args"].as_array().unwrap();
    assert!(args.contains(&json!("--webhook-cert-dir=/certs")));
    assert!(!args
        .iter()
        .any(|a| a.as_str().unwrap().starts_with("--webhook-service")));
    assert!(pod["volumes"].as_array().unwrap().contains(
        &json!({"name": "webhook-cert", "secret": {"secretName": "sqlite-kube-webhook-cert"}})
    ));
    let mwc = &out[&(
        "MutatingWebhookConfiguration".into(),
        String::new(),
        "sqlite-kube".into(),
    )];
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "sqlite-kube-system/sqlite-kube-webhook"
    );
    let cr = &out[&(
        "ClusterRole".into(),
        String::new(),
        "sqlite-kube-operator".into(),
    )];
    assert!(!cr.to_string().contains("mutatingwebhookconfigurations"));
    let role = &out[&("Role".into(), NS.into(), "sqlite-kube-operator".into())];
    assert!(!role.to_string().contains("secrets"));
    // A named issuer replaces the self-signed one.
    let out = objects(
        &helm(json!({"webhook": {"certificate": "cert-manager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}))
        .unwrap(),
    );
    assert!(!out.keys().any(|k| k.0 == "Issuer"));
    let cert = &out[&(
        "Certificate".into(),
        NS.into(),
        "sqlite-kube-webhook".into(),
    )];
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
}

#[test]
fn an_unknown_certificate_mode_is_refused_by_name() {
    let err = helm(json!({"webhook": {"certificate": "letsencrypt"}})).unwrap_err();
    assert!(
        err.contains("webhook.certificate must be self-issued or cert-manager"),
        "{err}"
    );
}

#[test]
fn the_chart_passes_helm_lint_strict() {
    let python = testkit::dep_binary("HELM_PYTHON", "helm/bin/python");
    let o = Command::new(python)
        .arg(root().join("scripts/helm-render.py"))
        .arg("--lint")
        .arg(root().join("config/helm/sqlite-kube"))
        .output()
        .expect("running scripts/helm-render.py");
    assert!(
        o.status.success(),
        "helm lint --strict:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
