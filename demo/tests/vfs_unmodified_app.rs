//! Unmodified applications on the system libsqlite3, with no `load_extension` and no `vfs=`
//! in their database name: a Python script on Debian's CPython (`sqlite3` module, four
//! threads) and a Go program built with Debian's mattn/go-sqlite3 (`database/sql`, four
//! goroutines). Only the environment is what the webhook sets up for a pod annotated
//! `sqlitekube.dev/preload: "true"` (`LD_PRELOAD` of `libsqlite_kube_preload.so`,
//! `SQLITE_KUBE_DB_PATH`, `LITESTREAM_*`). The database ends up in the replica and
//! `litestream restore` gives back exactly the rows the app committed; another SQLite file
//! the Python app opens stays an ordinary local file.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use testkit::{litestream, sqlite};

const APP: &str = r#"
import sqlite3, sys, threading
db = sys.argv[1]
out = threading.Lock()
c = sqlite3.connect(db, timeout=30)
c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, who TEXT NOT NULL)")
c.commit()
def work(n):
    conn = sqlite3.connect(db, timeout=30)
    for i in range(100):
        cur = conn.execute("INSERT INTO t(who) VALUES (?)", (f"thread {n} row {i}",))
        conn.commit()
        with out:
            print(cur.lastrowid, flush=True)
    conn.close()
threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
# Rows written by other threads are visible to this connection too.
print("total", c.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
other = sqlite3.connect("other.db")
other.execute("CREATE TABLE o(x)")
other.execute("INSERT INTO o VALUES (42)")
other.commit()
"#;

fn preload() -> std::path::PathBuf {
    let p = common::demo()
        .parent()
        .unwrap()
        .join("libsqlite_kube_preload.so");
    assert!(
        p.exists(),
        "{} missing: build it with cargo build --workspace --lib",
        p.display()
    );
    p
}

const GO_APP: &str = r#"package main

import (
	"database/sql"
	"fmt"
	"os"
	"sync"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	db, err := sql.Open("sqlite3", "file:"+os.Args[1]+"?_busy_timeout=30000")
	if err != nil {
		panic(err)
	}
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, who TEXT NOT NULL)"); err != nil {
		panic(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				r, err := db.Exec("INSERT INTO t(who) VALUES (?)", fmt.Sprintf("goroutine %d row %d", g, i))
				if err != nil {
					panic(err)
				}
				id, _ := r.LastInsertId()
				mu.Lock()
				fmt.Println(id)
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		panic(err)
	}
	fmt.Println("total", n)
	db.Close()
}
"#;

/// Builds the Go app against Debian's mattn/go-sqlite3 (GOPATH mode, offline).
fn go_app(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("gopath/src/app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("main.go"), GO_APP).unwrap();
    let bin = dir.join("go-app");
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env(
            "GOPATH",
            format!("/usr/share/gocode:{}", dir.join("gopath").display()),
        )
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .expect("go (scripts/test-deps.sh installs golang-go)");
    assert!(
        o.status.success(),
        "building the Go app (scripts/test-deps.sh installs golang-github-mattn-go-sqlite3-dev): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

fn run(dir: &std::path::Path, url: &str, with_preload: bool) -> (BTreeSet<i64>, String) {
    std::fs::write(dir.join("app.py"), APP).unwrap();
    let mut c = Command::new("python3");
    c.arg("app.py");
    run_app(c, dir, url, with_preload)
}

fn run_app(
    mut c: Command,
    dir: &std::path::Path,
    url: &str,
    with_preload: bool,
) -> (BTreeSet<i64>, String) {
    let db = dir.join("app.db");
    c.arg(&db)
        .current_dir(dir)
        .env(settings::env::DB_PATH, &db)
        .env("LITESTREAM_REPLICA_URL", url)
        .env("LITESTREAM_WRITE_ENABLED", "true")
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .env_remove("AWS_CA_BUNDLE");
    if with_preload {
        c.env("LD_PRELOAD", preload());
    }
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "the app failed: {}\n{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ids = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (ids, out)
}

/// The app's database is in the replica, not in a local file at its path, and
/// `litestream restore` gives exactly the rows it committed (their count).
fn assert_replicated(dir: &std::path::Path, url: &str, acked: &BTreeSet<i64>) -> usize {
    let placeholder = std::fs::metadata(dir.join("app.db")).unwrap().len();
    assert_eq!(placeholder, 0, "the database went to a local file");
    let restored = dir.join("restored.db");
    litestream::restore(url, &restored, &[], &[]);
    assert_eq!(sqlite::integrity(&restored), "ok");
    let rows = common::ids_in(&restored);
    assert_eq!(&rows, acked, "litestream restore is exact");
    rows.len()
}

#[test]
fn an_unmodified_python_app_writes_through_the_vfs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("replica").display());
    let (acked, out) = run(dir.path(), &url, true);
    assert_eq!(acked.len(), 400, "{out}");
    assert!(out.contains("total 400"), "{out}");
    let restored = assert_replicated(dir.path(), &url, &acked);
    // Every other file is left alone: an ordinary SQLite file on disk.
    let other = rusqlite::Connection::open(dir.path().join("other.db")).unwrap();
    let x: i64 = other
        .query_row("SELECT x FROM o", [], |r| r.get(0))
        .unwrap();
    assert_eq!(x, 42);
    eprintln!(
        "unmodified CPython app, 4 threads: {} rows committed, {} restored by litestream",
        acked.len(),
        restored
    );
}

#[test]
fn without_the_preload_the_same_app_writes_a_local_file() {
    // The control: the environment alone does nothing; the preload library is what routes
    // the database to the VFS.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("replica").display());
    let (acked, _) = run(dir.path(), &url, false);
    assert_eq!(acked.len(), 400);
    assert!(std::fs::metadata(dir.path().join("app.db")).unwrap().len() > 0);
    assert!(
        !dir.path().join("replica").exists(),
        "nothing went to the replica"
    );
}

#[test]
fn an_unmodified_go_app_writes_through_the_vfs() {
    let dir = tempfile::tempdir().unwrap();
    let bin = go_app(dir.path());
    let url = format!("file://{}", dir.path().join("replica").display());
    let (acked, out) = run_app(Command::new(&bin), dir.path(), &url, true);
    assert_eq!(acked.len(), 400, "{out}");
    assert!(out.contains("total 400"), "{out}");
    assert_replicated(dir.path(), &url, &acked);
    eprintln!(
        "unmodified Go app (mattn/go-sqlite3 on the system libsqlite3), 4 goroutines: {} rows committed and restored",
        acked.len()
    );
}
