//! The product as a user runs it, on real pods: the local single-node cluster
//! (`scripts/k8s-cluster.sh start`: kubelet, containerd, runc, CNI bridge, kube-proxy,
//! controller-manager, scheduler), the images built here without a registry and loaded into
//! it, `kubectl apply -k config/legacy` (the cluster is 1.20), a SqliteDatabase on the
//! cluster's SeaweedFS, and the sample app Deployment opted in by annotation. The webhook
//! injects the hydrator (a real init container), the app writes through the VFS holding the
//! writer Lease with its ServiceAccount token, and the rows reach the replica, where
//! `litestream restore` finds them. Then: a read-mode Deployment follows; ten rolling
//! updates hand the Lease over with the write pause of each printed; a container crash is
//! replayed; a force-deleted writer is replaced within the node-loss bound; and at the end
//! every acknowledged row is in the replica (docs/local-cluster.md lists the figures).
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
    // The sample as it is, plus commit times on every printed id (for the write pauses).
    let busy = r#"- {name: SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS, value: "10000"}"#;
    for f in ["app-rbac.yaml", "app-deployment.yaml"] {
        let y = std::fs::read_to_string(root().join("config/samples").join(f))?
            .replace("namespace: default", &format!("namespace: {ns}"));
        let y = if f == "app-deployment.yaml" {
            ensure!(y.contains(busy), "the sample no longer sets {busy}");
            y.replace(
                busy,
                &format!("{busy}\n        - {{name: SQLITE_KUBE_DEMO_TIMESTAMPS, value: \"1\"}}"),
            )
        } else {
            y
        };
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

    // Rolling updates (the sample's strategy: maxSurge 1, maxUnavailable 0). The new pod's
    // VFS stands by while the old pod holds the Lease: it reads, so it becomes Ready (a VFS
    // that blocked in open would stall the rollout here), and its writes wait in SQLite's
    // busy handler. The old pod gets SIGTERM, makes its final sync and releases the Lease
    // with its TXID; the new pod takes over and the waiting write goes through, with no
    // error reaching the app. The write pause: the new pod's first commit after the old
    // pod's last (same node, same clock).
    let mut pauses = Vec::new();
    for round in 1..=ROLLOUTS {
        let before = seen_pods.last().unwrap().clone();
        kubectl(
            &["-n", &ns, "rollout", "restart", "deployment/orders-app"],
            None,
        )?;
        let next = wait_new_writer(&ns, &before, &acked, &format!("rollout {round}"))?;
        wait(
            &format!("rollout {round}: the hand-over recorded"),
            60,
            || {
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
            },
        )?;
        acked.finished(&before, 30);
        let pause = acked
            .pause(&before, &next)
            .with_context(|| format!("rollout {round}: no commits to time"))?;
        let logs = kubectl(&["-n", &ns, "logs", &next, "-c", "app"], None)?;
        ensure!(
            !logs.contains("write failed"),
            "rollout {round}: an error reached the app in {next}:\n{logs}"
        );
        eprintln!(
            "rollout {round}: {before} drained, {next} took over; write pause {pause:?} ({:?})",
            t0.elapsed()
        );
        pauses.push(pause);
        seen_pods.push(next);
    }
    pauses.sort();
    let (p50, max) = (pauses[pauses.len() / 2], pauses[pauses.len() - 1]);
    eprintln!(
        "write pause during a rolling update over {ROLLOUTS} rollouts: p50 {p50:?}, max {max:?}"
    );

    // `kubectl sqlite switchover`: the writer is evicted, the Deployment's replacement
    // takes over, the plugin returns once the status shows it; then its status table.
    let before = seen_pods.last().unwrap().clone();
    let plugin = e2e::binary("kubectl-sqlite")?;
    let path = format!(
        "{}:{}",
        plugin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("kubectl")
        .args([
            "sqlite",
            "switchover",
            "orders",
            "-n",
            &ns,
            "--timeout",
            "180s",
        ])
        .env("PATH", &path)
        .output()?;
    ensure!(
        o.status.success(),
        "kubectl sqlite switchover: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let next = wait_new_writer(&ns, &before, &acked, "after the switchover")?;
    acked.finished(&before, 30);
    eprintln!(
        "{}  (write pause {:?})",
        String::from_utf8_lossy(&o.stdout).trim(),
        acked.pause(&before, &next).unwrap_or_default()
    );
    seen_pods.push(next);
    let o = Command::new("kubectl")
        .args(["sqlite", "status", "-n", &ns])
        .env("PATH", &path)
        .output()?;
    ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!(
        "$ kubectl sqlite status\n{}",
        String::from_utf8_lossy(&o.stdout)
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
    acked.add(&pod, &previous);
    eprintln!(
        "container killed and restarted in {pod} ({:?})",
        t0.elapsed()
    );

    // Node loss, as far as one node can show it: the writer pod is force-deleted (its API
    // object goes at once, the kubelet kills its containers, its volume goes with it) and
    // the Deployment's replacement takes over. Only rows committed within a sync interval
    // (plus a publish) before the delete may be lost.
    let victim = seen_pods.last().unwrap().clone();
    let forced_at = unix_ms();
    kubectl(
        &[
            "-n",
            &ns,
            "delete",
            "pod",
            &victim,
            "--grace-period=0",
            "--force",
        ],
        None,
    )?;
    let next = wait_new_writer(&ns, &victim, &acked, "after the force delete")?;
    acked.finished(&victim, 30);
    eprintln!(
        "force delete: {victim} gone, {next} took over; write pause {:?} ({:?})",
        acked.pause(&victim, &next).unwrap_or_default(),
        t0.elapsed()
    );
    seen_pods.push(next);

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
    let acked = acked.all();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(i, _)| !restored.contains(i))
        .collect();
    // The node-loss bound: a lost row must be the force-deleted pod's, committed at most one
    // sync interval (1 s) plus a publish (1 s) before the delete.
    let beyond: Vec<_> = lost
        .iter()
        .filter(|(_, (pod, at))| *pod != victim || *at + 2000 < forced_at)
        .collect();
    eprintln!(
        "real pods: {} writer pods started, {} hand-overs ({ROLLOUTS} rolling updates, 1 switchover, 1 force delete), 1 container crash; {} rows acknowledged, {} restored by litestream, {} lost ({} of them beyond the node-loss bound); write pause p50 {p50:?}, max {max:?} ({:?} in all)",
        seen_pods.len(),
        ROLLOUTS + 2,
        acked.len(),
        restored.len(),
        lost.len(),
        beyond.len(),
        t0.elapsed()
    );
    ensure!(
        beyond.is_empty(),
        "acknowledged rows lost beyond the node-loss bound: {:?}",
        &beyond[..beyond.len().min(10)]
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
    // A forced delete gives the kubelet's minimum grace: the app drains, so nothing is lost
    // here in practice; the bound above is the contract.
    ensure!(
        lost.iter().all(|(_, (pod, _))| *pod == victim),
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

/// Rolling updates the story times.
const ROLLOUTS: usize = 10;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Waits until `old` is gone and a single new writer pod has committed a row; follows its
/// log. Returns its name.
fn wait_new_writer(ns: &str, old: &str, acked: &Acked, what: &str) -> Result<String> {
    let mut next = String::new();
    wait(&format!("{what}: a new writer pod writing"), 180, || {
        let p = writer_pod(ns).unwrap_or_default();
        let ok = !p.is_empty() && p != old && acked.follow_once(ns, &p);
        if ok {
            next = p;
        }
        Ok(ok)
    })
    .with_context(|| kubectl(&["-n", ns, "get", "pods", "-o", "wide"], None).unwrap_or_default())?;
    Ok(next)
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

/// Every id an app container printed once its COMMIT returned ("id began_ms
/// committed_ms"), with the pod and the commit time; from `kubectl logs -f` per container.
#[derive(Default, Clone)]
struct Acked {
    ids: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<i64, (String, u64)>>>,
    followers: std::sync::Arc<std::sync::Mutex<Followers>>,
}

impl Acked {
    fn add(&self, pod: &str, logs: &str) {
        let mut ids = self.ids.lock().unwrap();
        for l in logs.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let (Some(Ok(id)), Some(Ok(at))) = (
                f.first().map(|v| v.parse::<i64>()),
                f.get(2).map(|v| v.parse::<u64>()),
            ) {
                ids.insert(id, (pod.to_string(), at));
            }
        }
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
                me.add(&pod2, &line);
            }
            let _ = c.wait();
        });
        self.followers.lock().unwrap().push((pod.to_string(), h));
    }

    /// Starts following `pod` (again, after a restart) unless a follower is still
    /// running for it; true once its container has committed a row.
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
        self.commits(pod).next().is_some()
    }

    /// Waits (up to `secs`) for the followers of `pod` to reach the end of its log.
    fn finished(&self, pod: &str, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end
            && self
                .followers
                .lock()
                .unwrap()
                .iter()
                .any(|(p, h)| p == pod && !h.is_finished())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Commit times (Unix ms) of `pod`'s rows.
    fn commits(&self, pod: &str) -> impl Iterator<Item = u64> {
        let ids = self.ids.lock().unwrap();
        let v: Vec<u64> = ids
            .values()
            .filter(|(p, _)| p == pod)
            .map(|(_, t)| *t)
            .collect();
        v.into_iter()
    }

    /// The write pause of a hand-over from `old` to `new`: `new`'s first commit after
    /// `old`'s last.
    fn pause(&self, old: &str, new: &str) -> Option<Duration> {
        let last = self.commits(old).max()?;
        let first = self.commits(new).min()?;
        Some(Duration::from_millis(first.saturating_sub(last)))
    }

    fn join(&self) {
        for (_, h) in self.followers.lock().unwrap().drain(..) {
            let _ = h.join();
        }
    }

    fn all(&self) -> std::collections::BTreeMap<i64, (String, u64)> {
        self.ids.lock().unwrap().clone()
    }
}
