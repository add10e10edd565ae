//! The test cluster: the API server named by `KUBECONFIG` (the one `scripts/test.sh`
//! starts, or any real cluster), the CRD, a fresh namespace, and the operator binary with
//! its webhook registered by URL on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;

/// Whether a test that needs `what` may skip instead of failing: only when the user asked
/// for it with `SQLITE_KUBE_SKIP_K8S=1`, and never under CI (`CI` set), where a skipped
/// test would report a pass it did not earn. Prints the skip loudly.
pub fn may_skip(what: &str) -> Result<bool> {
    let asked = std::env::var("SQLITE_KUBE_SKIP_K8S").as_deref() == Ok("1");
    if asked && std::env::var_os("CI").is_some() {
        bail!("SQLITE_KUBE_SKIP_K8S=1 is refused under CI: this test needs {what}");
    }
    if asked {
        eprintln!("SKIPPED (SQLITE_KUBE_SKIP_K8S=1): this test needs {what}");
    }
    Ok(asked)
}

/// A client for `KUBECONFIG`; `None` (test skipped, said loudly) only when
/// [`may_skip`] allows it, otherwise a missing `KUBECONFIG` is an error.
pub async fn client() -> Result<Option<Client>> {
    if std::env::var("KUBECONFIG").is_err() {
        if may_skip("a Kubernetes API server (KUBECONFIG)")? {
            return Ok(None);
        }
        bail!("KUBECONFIG is not set: run scripts/test.sh (it starts a local API server), point KUBECONFIG at a cluster, or set SQLITE_KUBE_SKIP_K8S=1 to skip (refused under CI)");
    }
    Ok(Some(Client::try_default().await.context("KUBECONFIG")?))
}

/// Whether the API server runs on this host (so it can call a webhook on 127.0.0.1).
pub fn server_is_local() -> bool {
    let cfg = std::fs::read_to_string(std::env::var("KUBECONFIG").unwrap_or_default())
        .unwrap_or_default();
    cfg.contains("https://127.0.0.1:") || cfg.contains("https://localhost:")
}

/// The server's minor version.
pub async fn server_minor(client: &Client) -> Result<u32> {
    let v = client.apiserver_version().await?;
    Ok(v.minor.trim_end_matches('+').parse().unwrap_or(99))
}

/// Applies the CRD variant the server understands and waits until it is Established.
pub async fn install_crd(client: &Client) -> Result<()> {
    let crd = crds::crd_for_server_minor(server_minor(client).await?);
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "sqlitedatabases.sqlitekube.dev";
    api.patch(
        name,
        &PatchParams::apply("sqlite-kube-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    wait_for(30, "the CRD to be Established", || async {
        let c = api.get(name).await.ok()?;
        c.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await
}

/// A fresh namespace labelled `sqlitekube-e2e=<name>` (the webhook's selector).
pub async fn namespace(client: &Client, prefix: &str) -> Result<String> {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let name = format!("{prefix}-{}-{:x}", std::process::id(), n & 0xffffff);
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("sqlite-kube-e2e"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"sqlitekube-e2e": name}}})),
    )
    .await?;
    Ok(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Polls `f` every 50 ms until it returns `Some`, failing after `secs`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A binary of this workspace (built by `cargo build --workspace --bins`, which
/// `scripts/test.sh` does first).
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> or target/<profile>/<bench>
    for dir in exe.ancestors().skip(1).take(3) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{name} is not built next to {}: run `cargo build --workspace --bins` first",
        exe.display()
    )
}

/// A CA and a serving certificate for IP 127.0.0.1 (openssl CLI); returns the CA as base64.
pub fn webhook_certificates(dir: &Path) -> Result<String> {
    let run = |args: &[&str]| -> Result<()> {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("openssl")?;
        if !o.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=e2e-ca",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "tls.crt",
    ])?;
    Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("ca.crt"))?))
}

/// The operator binary for one namespace, serving the pod webhook that the API server
/// calls by URL.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    pub metrics: String,
    pub webhook: String,
    webhook_config: String,
    client: Client,
    _certs: tempfile::TempDir,
}

pub const HYDRATOR_IMAGE: &str = "ghcr.io/sqlite-kube/hydrator:0.1.0";

impl Operator {
    pub async fn start(client: &Client, ns: &str) -> Result<Operator> {
        let certs = tempfile::tempdir()?;
        let ca = webhook_certificates(certs.path())?;
        let (mport, wport) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("sqlite-kube-e2e-operator-{ns}.log"));
        let child = Command::new(binary("sqlite-kube-operator")?)
            .args([
                "--namespace",
                ns,
                "--leader-namespace",
                ns,
                "--resync",
                "2s",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{mport}")])
            .args(["--webhook-addr", &format!("127.0.0.1:{wport}")])
            .args(["--webhook-cert-dir", certs.path().to_str().unwrap()])
            .args(["--hydrator-image", HYDRATOR_IMAGE])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting the operator")?;
        let webhook = format!("https://127.0.0.1:{wport}/mutate-pods");
        let name = format!("sqlite-kube-e2e-{ns}");
        let whc: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        whc.patch(&name, &PatchParams::apply("sqlite-kube-e2e"), &Patch::Apply(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "pods.sqlitekube.dev",
                "clientConfig": {"url": webhook, "caBundle": ca},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"sqlitekube-e2e": ns}},
                "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5
            }]
        }))).await?;
        Ok(Operator {
            child,
            log,
            metrics: format!("http://127.0.0.1:{mport}"),
            webhook,
            webhook_config: name,
            client: client.clone(),
            _certs: certs,
        })
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Removes the webhook configuration and stops the operator. Called when a test passed,
    /// so its log goes too; a failed test leaves it in the temp dir.
    pub async fn stop(mut self) {
        let whc: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = whc
            .delete(&self.webhook_config, &DeleteParams::default())
            .await;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
