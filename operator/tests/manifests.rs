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
