//! Helpers for tests against a real API server: the one `scripts/k8s-testenv.sh` starts,
//! or any cluster named by `KUBECONFIG` (kind, k3d, a cloud cluster).
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

/// A client for the cluster in `KUBECONFIG`. Without one the test fails with a message,
/// unless `SQLITE_KUBE_SKIP_K8S=1` asks to skip (returns `None`; refused under CI).
pub async fn client() -> Option<Client> {
    e2e::cluster::client().await.expect("Kubernetes API server")
}

/// Applies the CRD variant the server understands and waits until it is Established.
pub async fn install_crd(client: &Client) {
    e2e::install_crd(client).await.expect("CRD installed");
}

/// A fresh namespace (never waited on when deleted: a bare API server cannot finish it).
/// The `s3-creds` Secret in `ns` with the test S3 server's keys.
#[allow(dead_code)]
pub async fn s3_secret(client: &Client, ns: &str) {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .patch(
            "s3-creds",
            &PatchParams::apply("tests"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
                "stringData": {"AWS_ACCESS_KEY_ID": testkit::seaweed::ACCESS_KEY,
                               "AWS_SECRET_ACCESS_KEY": testkit::seaweed::SECRET_KEY}}),
            ),
        )
        .await
        .unwrap();
}

pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}-{}", std::process::id(), rand_suffix());
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("sqlite-kube-tests"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
    )
    .await
    .unwrap();
    name
}

fn rand_suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}", n & 0xffffff)
}

pub use e2e::free_port;

/// The operator binary running against the test cluster, watching one namespace.
pub struct OperatorProcess {
    pub child: Child,
    pub metrics: String,
    pub log: std::path::PathBuf,
}

impl OperatorProcess {
    pub fn spawn(namespace: &str, extra: &[&str]) -> OperatorProcess {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("sqlite-kube-operator-{namespace}-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        // Tests refresh status quickly unless they ask for another interval.
        let resync: &[&str] = if extra.contains(&"--resync") {
            &[]
        } else {
            &["--resync", "2s"]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_sqlite-kube-operator"))
            .args([
                "--namespace",
                namespace,
                "--leader-namespace",
                namespace,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args(resync)
            .args(extra)
            .env("RUST_LOG", "info,operator=debug")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("operator binary");
        OperatorProcess {
            child,
            metrics: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, then wait (bounded).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    /// Stops the operator; its log stays in the temp dir only when the test failed.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// GET on 127.0.0.1 (metrics/health), via the shell's curl-free route: a raw HTTP/1.0 request.
pub fn http_get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Polls `f` every 100 ms until it returns `Some` or `secs` pass.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
