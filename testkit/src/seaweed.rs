//! A real S3-compatible server (SeaweedFS) on 127.0.0.1.
//!
//! `S3Server::shared()` reuses the server named by `TEST_S3_ENDPOINT` (+ `TEST_S3_FILER`)
//! when the test script started one; otherwise every call starts a private server that
//! stops when dropped. Tests that stop and restart the store use `start()`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "testkey";
pub const SECRET_KEY: &str = "testsecret";

pub struct S3Server {
    pub endpoint: String,
    filer: String,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    args: Vec<String>,
}

impl S3Server {
    pub fn shared() -> S3Server {
        match (
            std::env::var("TEST_S3_ENDPOINT"),
            std::env::var("TEST_S3_FILER"),
        ) {
            (Ok(endpoint), Ok(filer)) => S3Server {
                endpoint,
                filer,
                child: None,
                dir: None,
                args: vec![],
            },
            _ => S3Server::start(),
        }
    }

    pub fn start() -> S3Server {
        let weed = crate::dep_binary("WEED_BIN", "seaweedfs/bin/weed");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let cfg = dir.path().join("s3.json");
        std::fs::write(
            &cfg,
            format!(
                r#"{{"identities":[{{"name":"test","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let (s3, filer) = (crate::free_port(), crate::free_port());
        let args = vec![
            // glog files go with the server, not into the shared temp dir.
            format!("-logdir={}", dir.path().display()),
            "server".to_string(),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-dir={}", data.display()),
            format!("-master.port={}", crate::free_port()),
            format!("-volume.port={}", crate::free_port()),
            format!("-filer.port={filer}"),
            "-s3".into(),
            format!("-s3.port={s3}"),
            format!("-s3.config={}", cfg.display()),
            "-master.volumeSizeLimitMB=64".into(),
            // Every bucket is a collection that grows its own volumes (7 at once by default,
            // WEED_MASTER_VOLUME_GROWTH_COPY_1 below makes it 1); the default cap of 8 runs
            // out after a bucket or two, and the tests make hundreds of buckets.
            "-volume.max=2000".into(),
            // Volumes turn read-only (PUT -> 500 InternalError) below 1% free disk by default:
            // gigabytes on a big shared disk while cargo is still writing.
            "-volume.minFreeSpace=256MiB".into(),
            // Fixed default ports that would collide between parallel servers.
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-master.telemetry=false".into(),
        ];
        let mut s = S3Server {
            endpoint: format!("http://127.0.0.1:{s3}"),
            filer: format!("http://127.0.0.1:{filer}"),
            child: None,
            dir: Some(dir),
            args,
        };
        let _ = weed;
        s.resume();
        s
    }

    /// (Re)starts a private server after [`S3Server::stop`], keeping its data.
    pub fn resume(&mut self) {
        assert!(self.dir.is_some(), "only a private server can be restarted");
        let weed = crate::dep_binary("WEED_BIN", "seaweedfs/bin/weed");
        let log =
            std::fs::File::create(self.dir.as_ref().unwrap().path().join("weed.log")).unwrap();
        let child = Command::new(weed)
            .args(&self.args)
            .env("WEED_MASTER_VOLUME_GROWTH_COPY_1", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed");
        self.child = Some(child);
        self.wait_ready();
    }

    /// The server process, when this handle started it (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills a private server (its data stays), simulating a store outage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        let filer = self.filer.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if http_status(&addr, "GET", "/").is_some() && http_status(&filer, "GET", "/").is_some()
            {
                // The filer answers before it can create directories; probe with a bucket.
                if http_status(&filer, "POST", "/buckets/.ready/")
                    .is_some_and(|c| c < 300 || c == 409)
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(
            self.dir
                .as_ref()
                .map(|d| d.path().join("weed.log"))
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "SeaweedFS did not become ready at {}; log tail:\n{tail}",
            self.endpoint
        );
    }

    /// Creates a bucket (a directory under the filer's `/buckets`).
    pub fn create_bucket(&self, name: &str) {
        let filer = self.filer.trim_start_matches("http://");
        let code =
            http_status(filer, "POST", &format!("/buckets/{name}/")).expect("filer reachable");
        assert!(code < 300, "create bucket {name}: HTTP {code}");
    }

    /// A fresh bucket and the `s3://` URL of a prefix in it.
    pub fn replica_url(&self, prefix: &str) -> String {
        let bucket = crate::unique("b").to_lowercase();
        self.create_bucket(&bucket);
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1&forcePathStyle=true",
            self.endpoint
        )
    }

    /// Environment for clients (ours and litestream) to authenticate.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Sets the credentials in this process's environment (tests only).
    pub fn export_env(&self) {
        for (k, v) in self.env() {
            std::env::set_var(k, v);
        }
    }

    pub fn data_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("data"))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Minimal HTTP/1.0 request returning the status code (no dependency on an HTTP client).
fn http_status(addr: &str, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}
