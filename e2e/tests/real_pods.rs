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
        "first rows in the replica ({rows}); status: {status}; {:?}",
        t0.elapsed()
    );

    // Every id any app container acknowledged (printed after its COMMIT returned), from
    // the container logs: followed live, and read back for a container that was killed.
    let acked = Acked::default();
    let mut seen_pods = vec![writer_pod(&ns)?];
    acked.follow(&ns, &seen_pods[0]);

    // A read-mode Deployment follows the writer.
    let reader = std::fs::read_to_string(root().join("config/samples/app-deployment.yaml"))?
        .replace("namespace: default", &format!("namespace: {ns}"))
        .replace("orders-app", "orders-reader")
        .replace(
            "serviceAccountName: orders-reader",
            "serviceAccountName: orders-app",
        )
        .replace("sqlitekube.dev/mode: write", "sqlitekube.dev/mode: read");
    kubectl(&["apply", "-f", "-"], Some(&reader))?;
    wait("the reader follows the writer", 120, || {
        let logs = kubectl(
            &["-n", &ns, "logs", "deployment/orders-reader", "-c", "app"],
            None,
        )?;
        let counts: Vec<i64> = logs
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        Ok(counts.len() >= 2 && counts.last() > counts.first())
    })?;
    eprintln!("a read-mode pod follows the writer ({:?})", t0.elapsed());

    // kubectl rollout restart: the writer gets SIGTERM, makes its final sync, releases the
    // Lease with its TXID, and the new pod writes.
    let before = seen_pods[0].clone();
    kubectl(
        &["-n", &ns, "rollout", "restart", "deployment/orders-app"],
        None,
    )?;
    wait("a new writer pod writing", 180, || {
        let p = writer_pod(&ns).unwrap_or_default();
        Ok(!p.is_empty() && p != before && acked.follow_once(&ns, &p))
    })?;
    seen_pods.push(writer_pod(&ns)?);
    wait("the hand-over recorded", 60, || {
        let h = kubectl(
            &[
                "-n",
                &ns,
                "get",
                "sqldb",
                "orders",
                "-o",
                "jsonpath={.status.lastHandoff.from} {.status.lastHandoff.complete}",
            ],
            None,
        )?;
        Ok(h.starts_with(&before) && h.trim_end().ends_with("true"))
    })?;
    eprintln!(
        "rollout restart: {before} drained and handed over ({:?})",
        t0.elapsed()
    );

    // A crash: the app container is killed (SIGKILL through containerd); the kubelet
    // restarts it in the same pod, and the write buffer in the pod's volume is replayed.
    let pod = seen_pods.last().unwrap().clone();
    let id = kubectl(
        &[
            "-n",
            &ns,
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ],
        None,
    )?;
    let id = id.trim().trim_start_matches("containerd://").to_string();
    let sock = dir.join("containerd/containerd.sock");
    let killed = Command::new("ctr")
        .arg("-a")
        .arg(&sock)
        .args(["-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", &id])
        .status()?;
    ensure!(killed.success(), "could not kill container {id}");
    wait("the killed container restarted and writing", 120, || {
        let n = kubectl(
            &[
                "-n",
                &ns,
                "get",
                "pod",
                &pod,
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ],
            None,
        )?;
        Ok(n.trim() == "1" && acked.follow_once(&ns, &pod))
    })?;
    let previous = kubectl(&["-n", &ns, "logs", &pod, "-c", "app", "--previous"], None)?;
    acked.add(&previous);
    eprintln!(
        "container killed and restarted in {pod} ({:?})",
        t0.elapsed()
    );

    // A graceful stop of the last writer, then the replica holds every acknowledged row.
    std::thread::sleep(Duration::from_secs(2));
    kubectl(
        &["-n", &ns, "scale", "deployment/orders-app", "--replicas=0"],
        None,
    )?;
    wait("the writer pods gone", 120, || {
        Ok(kubectl(
            &[
                "-n",
                &ns,
                "get",
                "pods",
                "-l",
                "app=orders-app",
                "-o",
                "name",
            ],
            None,
        )?
        .trim()
        .is_empty())
    })?;
    acked.join();
    let db = out.path().join("final.db");
    let _ = std::fs::remove_file(&db);
    let o = testkit::litestream::try_restore(&url, &db, &[], &env);
    ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = rusqlite::Connection::open(&db)?;
    let restored: std::collections::BTreeSet<i64> = c
        .prepare("SELECT id FROM t")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let acked = acked.ids();
    let lost: Vec<_> = acked.iter().filter(|i| !restored.contains(i)).collect();
    eprintln!(
        "real pods: {} writer pods, 1 hand-over, 1 container crash; {} rows acknowledged, {} restored by litestream, {} lost ({:?} in all)",
        seen_pods.len(),
        acked.len(),
        restored.len(),
        lost.len(),
        t0.elapsed()
    );
    ensure!(
        acked.len() > 100,
        "too few acknowledged rows to prove anything: {}",
        acked.len()
    );

    // Point-in-time restore of the story's replica: a TXID half-way holds a prefix of the
    // rows (by id), and is a valid database.
    let latest = ltx_latest(&url, &env)?;
    let mid = latest / 2;
    let pit = out.path().join("pit.db");
    let o = testkit::litestream::try_restore(&url, &pit, &["-txid", &format!("{mid:016x}")], &env);
    ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = rusqlite::Connection::open(&pit)?;
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let at_mid: std::collections::BTreeSet<i64> = c
        .prepare("SELECT id FROM t")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ensure!(ok == "ok", "TXID {mid:x}: integrity_check {ok}");
    let max_mid = at_mid.iter().max().copied().unwrap_or(0);
    let prefix: std::collections::BTreeSet<i64> =
        restored.iter().copied().filter(|i| *i <= max_mid).collect();
    ensure!(
        at_mid.len() < restored.len() && at_mid == prefix,
        "TXID {mid:x} of {latest:x} is not a prefix: {} rows of {}",
        at_mid.len(),
        restored.len()
    );
    eprintln!(
        "point in time: TXID {mid} of {latest} restored by litestream: {} of {} rows, a prefix",
        at_mid.len(),
        restored.len()
    );
    ensure!(
        lost.is_empty(),
        "acknowledged rows lost: {:?}",
        &lost[..lost.len().min(10)]
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"], None)?;
    Ok(())
}

/// The replica's newest TXID, as `litestream ltx` lists it (level, min, max, size, time).
fn ltx_latest(url: &str, env: &[(&str, String)]) -> Result<u64> {
    let o = testkit::litestream::command(env)
        .args(["ltx", "-level", "all", url])
        .output()?;
    ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(2)?, 16).ok())
        .max()
        .context("no LTX files listed")
}

/// The running writer pod of the sample app (none while it is being replaced).
fn writer_pod(ns: &str) -> Result<String> {
    let out = kubectl(
        &[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            "app=orders-app",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        None,
    )?;
    let pods: Vec<&str> = out.split_whitespace().collect();
    Ok(if pods.len() == 1 {
        pods[0].to_string()
    } else {
        String::new()
    })
}

/// A `kubectl logs -f` thread, by pod.
type Followers = Vec<(String, std::thread::JoinHandle<()>)>;

/// Ids the app containers printed, collected from `kubectl logs -f` per container.
#[derive(Default, Clone)]
struct Acked {
    ids: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<i64>>>,
    followers: std::sync::Arc<std::sync::Mutex<Followers>>,
}

impl Acked {
    fn add(&self, logs: &str) {
        let mut ids = self.ids.lock().unwrap();
        ids.extend(logs.lines().filter_map(|l| l.trim().parse::<i64>().ok()));
    }

    /// Follows `pod`'s app container until it ends (all its output since it started).
    fn follow(&self, ns: &str, pod: &str) {
        let (ns, pod2, me) = (ns.to_string(), pod.to_string(), self.clone());
        let h = std::thread::spawn(move || {
            use std::io::BufRead;
            let Ok(mut c) = Command::new("kubectl")
                .args(["-n", &ns, "logs", "-f", &pod2, "-c", "app"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
            else {
                return;
            };
            let out = c.stdout.take().unwrap();
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                me.add(&line);
            }
            let _ = c.wait();
        });
        self.followers.lock().unwrap().push((pod.to_string(), h));
    }

    /// Starts following `pod` (again, after a restart) unless a follower is still
    /// running for it; true once its container has printed an id.
    fn follow_once(&self, ns: &str, pod: &str) -> bool {
        let running = self
            .followers
            .lock()
            .unwrap()
            .iter()
            .any(|(p, h)| p == pod && !h.is_finished());
        if !running {
            self.follow(ns, pod);
        }
        let logs =
            kubectl(&["-n", ns, "logs", pod, "-c", "app", "--tail", "5"], None).unwrap_or_default();
        logs.lines().any(|l| l.trim().parse::<i64>().is_ok())
    }

    fn join(&self) {
        for (_, h) in self.followers.lock().unwrap().drain(..) {
            let _ = h.join();
        }
    }

    fn ids(&self) -> std::collections::BTreeSet<i64> {
        self.ids.lock().unwrap().clone()
    }
}
