//! Running the demo application (and the sqlite3 shell) against replicas.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub use sqlitekube_demo::register;

pub mod statements;

/// Opens `db` in-process through the VFS, replicated to `url`.
pub fn open_vfs(db: &Path, url: &str, write: bool) -> rusqlite::Connection {
    register();
    rusqlite::Connection::open_with_flags(
        format!(
            "file:{}?vfs=sqlitekube&replica_url={url}&write_enabled={write}",
            db.display()
        ),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap()
}

/// The rows of the tests' table `t(id, v, n)`, by id.
pub fn dump(c: &rusqlite::Connection) -> Vec<(i64, String, i64)> {
    c.prepare("SELECT id, v, n FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Restores `url` to `out` with our restore (`ltx::restore`), and with the real
/// `litestream restore` to `<out>.litestream`; both must succeed and give the same bytes.
/// Returns our output's path.
pub fn restore_both(url: &str, out: &Path) -> PathBuf {
    let theirs = PathBuf::from(format!("{}.litestream", out.display()));
    testkit::litestream::restore(url, &theirs, &[], &[]);
    let replica = ltx::replica::Replica::open(url).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ltx::restore::restore(
            &replica,
            out,
            &ltx::restore::RestoreOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("our restore of {url}: {e}"));
    assert!(
        std::fs::read(out).unwrap() == std::fs::read(&theirs).unwrap(),
        "our restore and litestream's differ"
    );
    out.to_path_buf()
}

/// A `file://` replica URL for `<dir>/r`.
pub fn replica_url(dir: &Path) -> String {
    format!("file://{}", dir.join("r").display())
}

pub fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sqlitekube-demo"))
}

/// The loadable extension, built next to the demo binary.
pub fn extension() -> PathBuf {
    let p = demo().parent().unwrap().join("libsqlite_kube_vfs.so");
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// A running `sqlitekube-demo write`, collecting the ids it reports as committed.
pub struct Writer {
    pub child: Child,
    pub ids: Arc<Mutex<Vec<i64>>>,
    /// When each id was read from the writer's stdout (just after its COMMIT returned).
    pub reported_at: Arc<Mutex<Vec<std::time::Instant>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Drained as it comes, so a chatty log never blocks the writer on a full pipe.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Writer {
    pub fn start(db: &Path, url: &str, env: &[(&str, String)]) -> Writer {
        let mut c = Command::new(demo());
        c.args(["write"])
            .arg(db)
            .arg(url)
            .env_remove("AWS_CA_BUNDLE")
            .env("LITESTREAM_LOG_LEVEL", "warn");
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            use std::io::Read;
            let _ = err.read_to_string(&mut s);
            s
        });
        let out = child.stdout.take().unwrap();
        let ids = Arc::new(Mutex::new(Vec::new()));
        let reported_at = Arc::new(Mutex::new(Vec::new()));
        let (ids2, at2) = (ids.clone(), reported_at.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(id) = line.trim().parse() {
                    // Time first: whoever sees the id also sees its time.
                    at2.lock().unwrap().push(std::time::Instant::now());
                    ids2.lock().unwrap().push(id);
                }
            }
        });
        Writer {
            child,
            ids,
            reported_at,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }

    pub fn committed(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    pub fn signal(&self, sig: i32) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for exit; returns (success, stderr, ids).
    pub fn wait(self) -> (bool, String, Vec<i64>) {
        let (st, err, ids) = self.wait_status();
        (st.success(), err, ids)
    }

    /// Waits for a process this test sent SIGKILL: it must have died of that signal, not
    /// of anything else first (a writer that crashed on its own would prove nothing).
    /// Returns (stderr, ids).
    pub fn wait_killed(self) -> (String, Vec<i64>) {
        use std::os::unix::process::ExitStatusExt;
        let (st, err, ids) = self.wait_status();
        assert_eq!(
            st.signal(),
            Some(9),
            "the writer was expected to die of SIGKILL, it ended with {st}:\n{err}"
        );
        (err, ids)
    }

    /// Waits for exit; returns (status, stderr, ids), every printed id collected.
    pub fn wait_status(mut self) -> (std::process::ExitStatus, String, Vec<i64>) {
        let st = self.child.wait().unwrap();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let ids = self.ids.lock().unwrap().clone();
        (st, err, ids)
    }
}

/// Ids in table `t` of a plain database file.
pub fn ids_in(db: &Path) -> BTreeSet<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT id FROM t").unwrap();
    let ids = s
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids
}

/// Runs `sqlitekube-demo write <db> <url> <n>` to completion.
pub fn write_rows(
    db: &std::path::Path,
    url: &str,
    n: u32,
    env: &[(&str, String)],
) -> (bool, String) {
    let mut c = Command::new(demo());
    c.arg("write")
        .arg(db)
        .arg(url)
        .arg(n.to_string())
        .env_remove("AWS_CA_BUNDLE")
        .env("LITESTREAM_LOG_LEVEL", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
