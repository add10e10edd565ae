//! One test's world: namespace, operator + webhook, SeaweedFS bucket, kubelet stand-in.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use testkit::seaweed::S3Server;

use crate::cluster::{self, Operator, HYDRATOR_IMAGE};
use crate::kubelet::{Images, Kubelet, LocalPod};

pub const DEMO_IMAGE: &str = "ghcr.io/sqlite-kube/demo:0.1.0";

pub struct Fixture {
    pub client: Client,
    pub ns: String,
    pub operator: Option<Operator>,
    pub kubelet: Kubelet,
    pub s3: S3Server,
    pub work: tempfile::TempDir,
}

impl Fixture {
    /// `None` only when skipping is allowed ([`cluster::may_skip`]); a missing or remote API
    /// server is otherwise an error (a remote one could not call a webhook on 127.0.0.1).
    pub async fn start(prefix: &str) -> Result<Option<Fixture>> {
        let Some(client) = cluster::client().await? else {
            return Ok(None);
        };
        if !cluster::server_is_local() {
            let what = "an API server on this host (it calls the webhook on 127.0.0.1; KUBECONFIG names a remote one)";
            if cluster::may_skip(what)? {
                return Ok(None);
            }
            anyhow::bail!("this test needs {what}");
        }
        cluster::install_crd(&client).await?;
        let ns = cluster::namespace(&client, prefix).await?;
        let operator = Operator::start(&client, &ns).await?;
        let work = tempfile::tempdir()?;
        let vfs = cluster::binary("libsqlite_kube_vfs.so")?;
        let images = Images::default()
            .add(
                HYDRATOR_IMAGE,
                cluster::binary("hydrator")?,
                &[("SQLITE_KUBE_VFS_SOURCE", vfs.display().to_string())],
            )
            .add(DEMO_IMAGE, cluster::binary("sqlitekube-demo")?, &[]);
        let kubelet = Kubelet {
            client: client.clone(),
            images,
            work: work.path().to_path_buf(),
            extra_env: vec![(
                "LITESTREAM_LOG_LEVEL".into(),
                std::env::var("E2E_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            )],
        };
        Ok(Some(Fixture {
            client,
            ns,
            operator: Some(operator),
            kubelet,
            s3: S3Server::shared(),
            work,
        }))
    }

    /// A `SqliteDatabase` on a fresh SeaweedFS bucket with a credentials Secret; `spec`
    /// is merged over the defaults. Returns the replica URL.
    pub async fn s3_database(&self, name: &str, spec: Value) -> Result<String> {
        let bucket = testkit::unique("e2e").to_lowercase();
        self.s3.create_bucket(&bucket);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let env: std::collections::BTreeMap<&str, String> = self.s3.env().into_iter().collect();
        secrets
            .patch(&format!("{name}-s3"), &PatchParams::apply("e2e"), &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-s3")},
                "stringData": {"AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"]}})))
            .await?;
        let mut full = json!({
            "replica": {"s3": {"bucket": bucket, "path": name, "endpoint": self.s3.endpoint, "region": "us-east-1",
                "forcePathStyle": true, "credentialsSecretRef": {"name": format!("{name}-s3")}}},
            "hydration": {"mode": "Background", "path": "/var/lib/sqlite-kube"},
        });
        merge(&mut full, spec);
        let dbs: Api<crds::SqliteDatabase> = Api::namespaced(self.client.clone(), &self.ns);
        dbs.patch(
            name,
            &PatchParams::apply("e2e"),
            &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": name}, "spec": full})),
        )
        .await?;
        Ok(format!(
            "s3://{bucket}/{name}?endpoint={}&region=us-east-1&forcePathStyle=true",
            self.s3.endpoint
        ))
    }

    /// Creates an opted-in demo pod through the API server (so the webhook mutates it) and
    /// returns the pod as stored.
    pub async fn create_pod(
        &self,
        name: &str,
        database: &str,
        mode: &str,
        env: Value,
    ) -> Result<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"sqlitekube.dev/database": database, "sqlitekube.dev/mode": mode}},
            "spec": {"containers": [{"name": "app", "image": DEMO_IMAGE, "args": ["app"], "env": env}]}}))?;
        // The first create may race the webhook server starting.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match pods.create(&PostParams::default(), &pod).await {
                Ok(p) => return Ok(p),
                Err(e)
                    if std::time::Instant::now() < deadline
                        && e.to_string().contains("calling webhook") =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("creating pod {name}")),
            }
        }
    }

    /// Creates the pod and runs it locally.
    pub async fn start_pod(
        &self,
        name: &str,
        database: &str,
        mode: &str,
        env: Value,
    ) -> Result<LocalPod> {
        let pod = self.create_pod(name, database, mode, env).await?;
        self.kubelet.run(&pod).await
    }

    pub async fn database(&self, name: &str) -> Result<crds::SqliteDatabase> {
        let dbs: Api<crds::SqliteDatabase> = Api::namespaced(self.client.clone(), &self.ns);
        Ok(dbs.get(name).await?)
    }

    /// Credentials for processes of the test itself (litestream restore).
    pub fn s3_env(&self) -> Vec<(&'static str, String)> {
        self.s3.env()
    }

    /// The replica at `url`, opened with the test server's credentials.
    pub fn replica(&self, url: &str) -> Result<ltx::replica::Replica> {
        let env: std::collections::BTreeMap<&str, String> = self.s3.env().into_iter().collect();
        let opts = ltx::replica::ReplicaOptions {
            credentials: ltx::replica::Credentials {
                access_key_id: Some(env["AWS_ACCESS_KEY_ID"].clone()),
                secret_access_key: Some(env["AWS_SECRET_ACCESS_KEY"].clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(ltx::replica::Replica::open_with(
            ltx::replica::ReplicaUrl::parse(url)?,
            &opts,
        )?)
    }

    /// Restores the latest state of `url` with the real `litestream restore` into `out`;
    /// returns its `integrity_check` result and the ids in table `t`.
    pub fn litestream_rows(&self, url: &str, out: &Path) -> Result<(String, BTreeSet<i64>)> {
        let (integrity, rows) = self.litestream_rows_by_writer(url, out)?;
        Ok((integrity, rows.into_iter().map(|(id, _)| id).collect()))
    }

    /// [`Fixture::litestream_rows`] with each row's value (the demo app writes
    /// `from <pod>`), to tell whose rows the replica holds.
    pub fn litestream_rows_by_writer(
        &self,
        url: &str,
        out: &Path,
    ) -> Result<(String, BTreeSet<(i64, String)>)> {
        let o = testkit::litestream::command(&self.s3_env())
            .args(["restore", "-o"])
            .arg(out)
            .arg(url)
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "litestream restore {url}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let integrity = testkit::sqlite::integrity(out);
        let c = rusqlite::Connection::open(out)?;
        let mut s = c.prepare("SELECT id, v FROM t ORDER BY id")?;
        let rows = s
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<BTreeSet<(i64, String)>>>()?;
        Ok((integrity, rows))
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}
