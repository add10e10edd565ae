//! A kubelet stand-in: the test API server has no kubelet, so a pod's containers run here
//! as local processes with exactly the command, arguments and environment stored in the
//! pod (as the webhook mutated it). What a kubelet would add is emulated and nothing else:
//!
//! - images are mapped to this workspace's binaries ([`Images`]): an image's entrypoint is
//!   a binary, the files an image carries (the VFS extension) are passed by path;
//! - each volume is a directory under the pod's root, and each container's `mountPath`
//!   prefix in env values and arguments is rewritten to it (the only change to the env);
//! - `fieldRef` (metadata.name/namespace/uid) and `secretKeyRef` values are resolved from
//!   the stored pod and the API server;
//! - the pod's service-account credentials are `KUBECONFIG` (the VFS uses the usual
//!   in-cluster-or-kubeconfig discovery);
//! - lifecycle: classic init containers run to completion in order, then the app containers
//!   start; [`Proc`] offers SIGTERM (with the grace period), SIGKILL, SIGSTOP/SIGCONT.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use kube::Client;

/// Image name (without tag) → the binary that is its entrypoint, plus extra environment
/// that stands for files inside the image.
#[derive(Clone, Default)]
pub struct Images {
    map: HashMap<String, (PathBuf, Vec<(String, String)>)>,
}

impl Images {
    pub fn add(mut self, image: &str, binary: PathBuf, image_env: &[(&str, String)]) -> Self {
        let env = image_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.map.insert(
            image.split(':').next().unwrap_or(image).to_string(),
            (binary, env),
        );
        self
    }

    fn get(&self, image: &str) -> Result<&(PathBuf, Vec<(String, String)>)> {
        let name = image.split(':').next().unwrap_or(image);
        self.map
            .get(name)
            .ok_or_else(|| anyhow!("no local binary stands for image {image}"))
    }
}

/// A running (or finished) container process. Stdout lines are collected with the time
/// they arrived; stderr goes to `log`.
pub struct Proc {
    pub name: String,
    child: Child,
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
    pub log: PathBuf,
    pub started: Instant,
    /// Signalled when the stdout reader reached the end of the pipe.
    eof: Option<std::sync::mpsc::Receiver<()>>,
}

impl Proc {
    /// After the process exited: waits (up to 5 s) until every line it printed has been
    /// collected, so rows acknowledged just before a kill are counted.
    fn drain_output(&mut self) {
        if let Some(rx) = self.eof.take() {
            if rx.recv_timeout(Duration::from_secs(5)).is_err() {
                eprintln!("{}: stdout not closed 5 s after exit", self.name);
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Lines printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    pub fn line_count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The exit status once the process has exited (its output then fully collected).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let s = self.child.try_wait().ok().flatten();
        if s.is_some() {
            self.drain_output();
        }
        s
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// What a kubelet does on pod deletion: SIGTERM, then SIGKILL after the grace period.
    pub fn terminate(&mut self, grace: Duration) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        if let Some(s) = self.wait_exit(grace) {
            return s;
        }
        self.kill()
    }

    pub fn kill(&mut self) -> std::process::ExitStatus {
        let _ = self.child.kill();
        let s = self.child.wait().expect("wait");
        self.drain_output();
        s
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.signal(libc::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A pod being "run" on this host.
pub struct LocalPod {
    pub name: String,
    pub root: PathBuf,
    pub grace: Duration,
    pub containers: Vec<Proc>,
    /// Local directory of each volume.
    pub volumes: BTreeMap<String, PathBuf>,
}

impl LocalPod {
    /// The ids the app container printed (the demo app prints each once committed,
    /// first on its line).
    pub fn printed_ids(&self) -> Vec<i64> {
        self.containers[0]
            .output()
            .iter()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    pub fn app(&mut self) -> &mut Proc {
        &mut self.containers[0]
    }

    /// Deletes the pod as a kubelet would: SIGTERM every container, SIGKILL after the
    /// grace period.
    pub fn delete(&mut self) {
        for c in &self.containers {
            c.signal(libc::SIGTERM);
        }
        let end = Instant::now() + self.grace;
        for c in &mut self.containers {
            let left = end.saturating_duration_since(Instant::now());
            if c.wait_exit(left).is_none() {
                c.kill();
            }
        }
    }
}

/// The runner: how images map to binaries and how the pod reaches the API server.
pub struct Kubelet {
    pub client: Client,
    pub images: Images,
    pub work: PathBuf,
    /// Extra environment every container gets (e.g. `RUST_LOG`); never overrides the pod's.
    pub extra_env: Vec<(String, String)>,
}

impl Kubelet {
    /// The resolved environment of `c` in `pod`, before path rewriting.
    pub async fn env_of(&self, pod: &Pod, c: &Container) -> Result<Vec<(String, String)>> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        let mut out = Vec::new();
        for e in c.env.clone().unwrap_or_default() {
            if let Some(v) = e.value {
                let v = expand(&v, &out);
                out.push((e.name, v));
                continue;
            }
            let Some(from) = e.value_from else {
                out.push((e.name, String::new()));
                continue;
            };
            if let Some(f) = from.field_ref {
                let v = match f.field_path.as_str() {
                    "metadata.name" => pod.metadata.name.clone(),
                    "metadata.namespace" => pod.metadata.namespace.clone(),
                    "metadata.uid" => pod.metadata.uid.clone(),
                    other => bail!("fieldRef {other} is not emulated"),
                };
                out.push((e.name, v.unwrap_or_default()));
            } else if let Some(s) = from.secret_key_ref {
                // As the kubelet: a missing Secret or key fails the container unless the
                // reference is optional, in which case the variable is left unset.
                let optional = s.optional == Some(true);
                let secret = match secrets.get_opt(&s.name).await? {
                    Some(secret) => secret,
                    None if optional => continue,
                    None => bail!("Secret {} not found", s.name),
                };
                let data = secret.data.unwrap_or_default();
                match data.get(&s.key) {
                    Some(v) => out.push((e.name, String::from_utf8_lossy(&v.0).into_owned())),
                    None if optional => {}
                    None => bail!("Secret {} has no key {}", s.name, s.key),
                }
            } else {
                bail!("env {} uses a source that is not emulated", e.name);
            }
        }
        Ok(out)
    }

    /// Runs `pod` (as stored by the API server): init containers to completion, then the
    /// app containers. Native sidecars (init containers with `restartPolicy: Always`) are
    /// started and left running beside the app.
    pub async fn run(&self, pod: &Pod) -> Result<LocalPod> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let root = self.work.join(&name);
        std::fs::create_dir_all(&root)?;
        let spec = pod
            .spec
            .clone()
            .ok_or_else(|| anyhow!("pod {name} has no spec"))?;
        let mut volumes = BTreeMap::new();
        for v in spec.volumes.clone().unwrap_or_default() {
            let dir = root.join("volumes").join(&v.name);
            std::fs::create_dir_all(&dir)?;
            volumes.insert(v.name.clone(), dir);
        }
        let mut local = LocalPod {
            name: name.clone(),
            root: root.clone(),
            grace: Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30) as u64),
            containers: Vec::new(),
            volumes: volumes.clone(),
        };
        let mut sidecars = Vec::new();
        for c in spec.init_containers.clone().unwrap_or_default() {
            let mut p = self.start(pod, &c, &volumes, &root).await?;
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars.push(p);
                continue;
            }
            let status = p
                .wait_exit(Duration::from_secs(120))
                .ok_or_else(|| anyhow!("init container {} did not finish in 120 s", c.name))?;
            if !status.success() {
                bail!(
                    "init container {} failed ({status}):\n{}",
                    c.name,
                    p.stderr()
                );
            }
        }
        for c in spec.containers.clone() {
            let p = self.start(pod, &c, &volumes, &root).await?;
            local.containers.push(p);
        }
        local.containers.extend(sidecars);
        Ok(local)
    }

    /// Restarts the app container of a running local pod after it died (what a kubelet
    /// does under `restartPolicy: Always`): same volumes, same identity.
    pub async fn restart_app(&self, pod: &Pod, local: &mut LocalPod) -> Result<()> {
        let spec = pod.spec.clone().ok_or_else(|| anyhow!("pod has no spec"))?;
        let p = self
            .start(pod, &spec.containers[0], &local.volumes, &local.root)
            .await?;
        local.containers[0] = p;
        Ok(())
    }

    async fn start(
        &self,
        pod: &Pod,
        c: &Container,
        volumes: &BTreeMap<String, PathBuf>,
        root: &Path,
    ) -> Result<Proc> {
        let image = c.image.clone().unwrap_or_default();
        let (entry, image_env) = self.images.get(&image)?.clone();
        // Longest mount path first, so nested mounts map correctly.
        let mut mounts: Vec<(String, PathBuf)> = c
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| volumes.get(&m.name).map(|d| (m.mount_path, d.clone())))
            .collect();
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let rewrite = |v: &str| -> String {
            for (from, to) in &mounts {
                if v == from || v.starts_with(&format!("{from}/")) {
                    return format!("{}{}", to.display(), &v[from.len()..]);
                }
            }
            v.to_string()
        };
        let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
        let program = if argv.is_empty() {
            entry
        } else {
            // A command naming the entrypoint binary by name or path runs that binary.
            let first = argv.remove(0);
            if Path::new(&first).file_name() == entry.file_name() {
                entry
            } else {
                bail!(
                    "container {} runs {first}, which is not the image's binary",
                    c.name
                )
            }
        };
        argv.extend(c.args.clone().unwrap_or_default());
        let argv: Vec<String> = argv.iter().map(|a| rewrite(a)).collect();
        let log = root.join(format!("{}.log", c.name));
        let mut cmd = Command::new(&program);
        cmd.args(&argv)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", root)
            .env("HOSTNAME", pod.metadata.name.clone().unwrap_or_default())
            .env(
                "KUBECONFIG",
                std::env::var("KUBECONFIG").unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        for (k, v) in image_env.iter().chain(self.extra_env.iter()) {
            cmd.env(k, v);
        }
        for (k, v) in self.env_of(pod, c).await? {
            // A JSON object of settings (several databases in one pod) names paths in its
            // keys and values: those are mapped like any other.
            let v = match serde_json::from_str::<serde_json::Value>(&v) {
                Ok(j @ serde_json::Value::Object(_)) => rewrite_json(j, &rewrite).to_string(),
                _ => rewrite(&v),
            };
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        let (eof_tx, eof) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                l.lock().unwrap().push((Instant::now(), line));
            }
            let _ = eof_tx.send(());
        });
        Ok(Proc {
            name: c.name.clone(),
            child,
            lines,
            log,
            started: Instant::now(),
            eof: Some(eof),
        })
    }
}

/// `$(NAME)` references to variables defined earlier in the list, expanded as the kubelet
/// does (`$$` is a literal `$`; an unknown name stays as written).
fn expand(v: &str, earlier: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let (Some(r), Some(end)) = (after.strip_prefix('('), after.find(')')) {
            let name = &r[..end - 1];
            match earlier.iter().rev().find(|(k, _)| k == name) {
                Some((_, val)) => out.push_str(val),
                None => out.push_str(&rest[i..i + 2 + end]),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn rewrite_json(v: serde_json::Value, rewrite: &dyn Fn(&str) -> String) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(rewrite(&s)),
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .map(|(k, v)| (rewrite(&k), rewrite_json(v, rewrite)))
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(|v| rewrite_json(v, rewrite)).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_expand_like_the_kubelet() {
        let earlier = vec![("A".to_string(), "1".to_string())];
        assert_eq!(super::expand("x$(A)y$(B)z$$(A)", &earlier), "x1y$(B)z$(A)");
        assert_eq!(super::expand("plain $ end", &earlier), "plain $ end");
    }
}
