//! The product as a user runs it, on real pods: the local single-node cluster
//! (`scripts/k8s-cluster.sh start`: kubelet, containerd, runc, CNI bridge, kube-proxy,
//! controller-manager, scheduler), the images built here without a registry and loaded into
//! it, `kubectl apply -k config/legacy` (the cluster is 1.20), a SqliteDatabase on the
//! cluster's SeaweedFS, and the sample app Deployment opted in by annotation. The webhook
//! injects the hydrator (a real init container), the app writes through the VFS holding the
//! writer Lease with its ServiceAccount token, and the rows reach the replica, where
//! `litestream restore` finds them.
//!
//! Needs the cluster's environment (`eval "$(scripts/k8s-cluster.sh start)"`); without it
//! the test fails, unless SQLITE_KUBE_SKIP_K8S=1 asks to skip (refused under CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut c = Command::new("kubectl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("kubectl")?;
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes())?;
    }
    let o = c.wait_with_output()?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    ensure!(
        o.status.success(),
        "kubectl {}: {}{}",
        args.join(" "),
        out,
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(out)
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    loop {
        match f() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > end {
            bail!("{what}: not within {secs}s {last}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn cluster_logs(dir: &Path) -> String {
    let mut out = String::new();
    for n in [
        "kubelet",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        let s = std::fs::read_to_string(dir.join(format!("logs/{n}.log"))).unwrap_or_default();
        let lines: Vec<_> = s.lines().rev().take(8).collect();
        out.push_str(&format!(
            "--- {n}\n{}\n",
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    out
}

#[test]
#[ignore = "runs in the real-pods phase of scripts/test.sh, on the local cluster (scripts/k8s-cluster.sh)"]
fn the_story_on_real_pods() -> Result<()> {
    let Ok(dir) = std::env::var("SQLITE_KUBE_CLUSTER_DIR") else {
        if e2e::may_skip("a real node (eval \"$(scripts/k8s-cluster.sh start)\")")? {
            return Ok(());
        }
        bail!("SQLITE_KUBE_CLUSTER_DIR is not set: start the local cluster with scripts/k8s-cluster.sh start");
    };
    let dir = PathBuf::from(dir);
    let s3 = std::env::var("SQLITE_KUBE_CLUSTER_S3")?;
    let filer = std::env::var("SQLITE_KUBE_CLUSTER_S3_FILER")?;
    let t0 = Instant::now();

    // Images, built here and loaded into the node.
    let images = tempfile::tempdir()?;
    let bins = e2e::binary("hydrator")?;
    let o = Command::new("python3")
        .arg(root().join("scripts/images.py"))
        .args(["build", "--bin-dir"])
        .arg(bins.parent().unwrap())
        .arg("--out")
        .arg(images.path())
        .output()?;
    ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut load = Command::new("bash");
    load.arg(root().join("scripts/k8s-cluster.sh")).arg("load");
    for n in ["operator", "hydrator", "demo"] {
        load.arg(images.path().join(format!("{n}.tar")));
    }
    ensure!(load.status()?.success(), "loading the images failed");
    eprintln!("images built and loaded in {:?}", t0.elapsed());

    // The product, as a user installs it.
    kubectl(
        &[
            "apply",
            "-k",
            root().join("config/legacy").to_str().unwrap(),
        ],
        None,
    )?;
    wait("the operator Deployment available", 180, || {
        let out = kubectl(
            &[
                "-n",
                "sqlite-kube-system",
                "get",
                "deployment",
                "sqlite-kube-operator",
                "-o",
                "jsonpath={.status.availableReplicas}",
            ],
            None,
        )?;
        Ok(out.trim() == "2")
    })
    .with_context(|| cluster_logs(&dir))?;
    eprintln!("operator running (2 replicas) after {:?}", t0.elapsed());

    // A database on the cluster's S3 store, and the sample app.
    let bucket = format!("real-{}", std::process::id());
    let code = Command::new("curl")
        .args(["-fsS", "-X", "POST", &format!("{filer}/buckets/{bucket}/")])
        .status()?;
    ensure!(code.success(), "creating bucket {bucket}");
    let ns = format!("real-{}", std::process::id());
    kubectl(&["create", "namespace", &ns], None)?;
    let manifests = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: s3-creds, namespace: {ns}}}
stringData: {{AWS_ACCESS_KEY_ID: testkey, AWS_SECRET_ACCESS_KEY: testsecret}}
---
apiVersion: sqlitekube.dev/v1alpha1
kind: SqliteDatabase
metadata: {{name: orders, namespace: {ns}}}
spec:
  replica:
    s3: {{bucket: {bucket}, path: {ns}/orders, endpoint: "{s3}", region: us-east-1, forcePathStyle: true,
          credentialsSecretRef: {{name: s3-creds}}}}
  syncInterval: 1s
"#
    );
    kubectl(&["apply", "-f", "-"], Some(&manifests))?;
    for f in ["app-rbac.yaml", "app-deployment.yaml"] {
        let y = std::fs::read_to_string(root().join("config/samples").join(f))?
            .replace("namespace: default", &format!("namespace: {ns}"));
        kubectl(&["apply", "-f", "-"], Some(&y))?;
    }
    wait(
        "the app pod running with the injected hydrator",
        180,
        || {
            let out = kubectl(
                &[
                    "-n",
                    &ns,
                    "get",
                    "pods",
                    "-l",
                    "app=orders-app",
                    "-o",
                    "jsonpath={.items[0].status.phase} {.items[0].spec.initContainers[0].name}",
                ],
                None,
            )?;
            Ok(out.trim() == "Running sqlite-kube-hydrator")
        },
    )
    .with_context(|| {
        let pods = kubectl(&["-n", &ns, "describe", "pods"], None).unwrap_or_default();
        format!("{pods}\n{}", cluster_logs(&dir))
    })?;
    eprintln!("app pod running after {:?}", t0.elapsed());

    // Rows reach the replica: restore it with litestream from the host.
    let url =
        format!("s3://{bucket}/{ns}/orders?endpoint={s3}&region=us-east-1&forcePathStyle=true");
    let out = tempfile::tempdir()?;
    let env = [
        ("AWS_ACCESS_KEY_ID", "testkey".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testsecret".to_string()),
    ];
    let mut rows = 0i64;
    wait("rows written by the pod in the replica", 120, || {
        let db = out.path().join("restored.db");
        let _ = std::fs::remove_file(&db);
        let o = testkit::litestream::try_restore(&url, &db, &[], &env);
        if !o.status.success() {
            return Ok(false);
        }
        let c = rusqlite::Connection::open(&db)?;
        rows = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
        Ok(rows >= 10)
    })
    .with_context(|| {
        let logs = kubectl(
            &[
                "-n",
                &ns,
                "logs",
                "-l",
                "app=orders-app",
                "--all-containers",
            ],
            None,
        )
        .unwrap_or_else(|e| e.to_string());
        format!("app logs:\n{logs}")
    })?;
    let status = kubectl(
        &[
            "-n",
            &ns,
            "get",
            "sqldb",
            "orders",
            "-o",
            "jsonpath={.status.phase} writer={.status.writer.pod} txid={.status.lastSyncedTxid}",
        ],
        None,
    )?;
    eprintln!(
        "real pods: {rows} rows written by a pod through the VFS restored by litestream; status: {status}; {:?} in all",
        t0.elapsed()
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"], None)?;
    Ok(())
}
