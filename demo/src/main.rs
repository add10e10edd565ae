//! The example application: an unmodified rusqlite program (bundled SQLite) that opens
//! its database through the VFS. Used by the quickstart and the tests.
//!
//!   sqlitekube-demo write DB REPLICA_URL [N]   insert N rows (default: forever), one per
//!                                              transaction, printing each id once committed
//!   sqlitekube-demo count DB REPLICA_URL       print "rows max_id integrity"
//!   sqlitekube-demo follow DB REPLICA_URL SECS read-only: for SECS seconds, scan the whole
//!                                              table again and again, printing
//!                                              "rows max_id bytes" per scan; any error fails
//!   sqlitekube-demo probe DB REPLICA_URL       read-only: time the first point query, wait for
//!                                              hydration, scan everything; print JSON with the
//!                                              object-store GETs at each step
//!   sqlitekube-demo app                        the container entry point: everything from the
//!                                              environment the webhook injects
//!                                              (SQLITE_KUBE_DB_PATH, LITESTREAM_*,
//!                                              SQLITE_KUBE_LEASE …). Write mode inserts a row
//!                                              every SQLITE_KUBE_DEMO_INTERVAL_MS (default 10)
//!                                              and prints each id once committed (with
//!                                              SQLITE_KUBE_DEMO_TIMESTAMPS=1: "id began_ms
//!                                              committed_ms", Unix milliseconds); read mode
//!                                              prints "rows max_id" every 500 ms. Once the
//!                                              database is open and readable it creates
//!                                              `<db>-app-ready` (the readiness probe). Its
//!                                              busy timeout: SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS
//!                                              (default 500). SIGTERM: close cleanly (final
//!                                              sync, lease hand-over).
//!                                              With several databases (SQLITE_KUBE_DATABASES)
//!                                              it writes a row to each per round and prints
//!                                              "name id" (same busy timeout and journal mode).
//!   sqlitekube-demo ready                      the readiness probe: exit 0 once `app` has
//!                                              opened its database
//! Other settings come from the environment (LITESTREAM_* as documented).

use std::io::Write;

use sqlitekube_demo::register;

use rusqlite::{Connection, OpenFlags};

fn open(db: &str, url: &str, write: bool) -> rusqlite::Result<Connection> {
    let uri = format!("file:{db}?vfs=sqlitekube&replica_url={url}&write_enabled={write}");
    let c = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    // SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS: how long a write waits for the lock (default 30 s).
    let busy = std::env::var("SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    c.busy_timeout(std::time::Duration::from_millis(busy))?;
    if write {
        journal_mode(&c)?;
    }
    // SQLITE_KUBE_DEMO_WAL_AUTOCHECKPOINT: PRAGMA wal_autocheckpoint (pages).
    if let Ok(n) = std::env::var("SQLITE_KUBE_DEMO_WAL_AUTOCHECKPOINT") {
        c.pragma_update(None, "wal_autocheckpoint", n)?;
    }
    // SQLITE_KUBE_DEMO_SYNCHRONOUS: PRAGMA synchronous (default: SQLite's, FULL).
    if let Ok(level) = std::env::var("SQLITE_KUBE_DEMO_SYNCHRONOUS") {
        c.pragma_update(None, "synchronous", level)?;
    }
    Ok(c)
}

/// SQLITE_KUBE_DEMO_JOURNAL_MODE: `PRAGMA journal_mode=…` (e.g. WAL), as apps do at start;
/// the answer goes to stderr (a standby or reader stays in rollback mode and says so).
/// SQLITE_KUBE_DEMO_LOCKING_MODE (e.g. EXCLUSIVE) is set before it, as SQLite requires for
/// WAL without shared memory.
fn journal_mode(c: &Connection) -> rusqlite::Result<()> {
    if let Ok(mode) = std::env::var("SQLITE_KUBE_DEMO_LOCKING_MODE") {
        let got: String = c.query_row(&format!("PRAGMA locking_mode={mode}"), [], |r| r.get(0))?;
        eprintln!("sqlitekube-demo: locking_mode={got}");
    }
    if let Ok(mode) = std::env::var("SQLITE_KUBE_DEMO_JOURNAL_MODE") {
        let got: String = c.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))?;
        eprintln!("sqlitekube-demo: journal_mode={got}");
    }
    Ok(())
}

/// Opens a database of the pod as `app` does (the VFS configured from the environment):
/// read-write or read-only, the busy timeout from SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS (default
/// 500 ms: how long a write waits for the lock), and SQLITE_KUBE_DEMO_JOURNAL_MODE.
fn open_app_db(path: &str, write: bool) -> Result<Connection, String> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_URI;
    let c = Connection::open_with_flags(format!("file:{path}?vfs=sqlitekube"), flags)
        .map_err(|e| format!("open {path}: {e}"))?;
    let busy = std::env::var("SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    c.busy_timeout(std::time::Duration::from_millis(busy))
        .map_err(|e| e.to_string())?;
    journal_mode(&c).map_err(|e| format!("{path}: journal_mode: {e}"))?;
    Ok(c)
}

/// The file `app` creates once its database is open and readable.
fn ready_file() -> Option<String> {
    std::env::var("SQLITE_KUBE_DB_PATH")
        .ok()
        .map(|db| format!("{db}-app-ready"))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("ready") {
        let ready = ready_file().is_some_and(|f| std::path::Path::new(&f).exists());
        return if ready {
            std::process::ExitCode::SUCCESS
        } else {
            eprintln!("sqlitekube-demo: the database is not open yet");
            std::process::ExitCode::FAILURE
        };
    }
    if args.get(1).map(String::as_str) == Some("app") {
        register();
        return match app() {
            Ok(()) => {
                sqlite_kube_vfs::shutdown_all();
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sqlitekube-demo: {e}");
                sqlite_kube_vfs::shutdown_all();
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.len() < 4 {
        eprintln!("usage: sqlitekube-demo write|count|follow|probe|sql DB REPLICA_URL [N]");
        return std::process::ExitCode::from(2);
    }
    register();
    let (db, url) = (&args[2], &args[3]);
    let res = match args[1].as_str() {
        "write" => write(db, url, args.get(4).and_then(|n| n.parse().ok())),
        "count" => count(db, url),
        "follow" => follow(
            db,
            url,
            args.get(4).and_then(|n| n.parse().ok()).unwrap_or(5),
        ),
        "probe" => probe(db, url),
        "sql" => sql(db, url),
        other => {
            eprintln!("unknown command {other}");
            return std::process::ExitCode::from(2);
        }
    };
    match res {
        Ok(()) => {
            sqlite_kube_vfs::shutdown_all();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sqlitekube-demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn write(db: &str, url: &str, n: Option<u64>) -> rusqlite::Result<()> {
    let c = open(db, url, true)?;
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    // SIGTERM: finish the current transaction, close cleanly (final sync), exit 0.
    term_requested();
    std::thread::spawn(move || loop {
        if term_requested() {
            s.store(true, std::sync::atomic::Ordering::SeqCst);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    });
    let mut out = std::io::stdout().lock();
    let mut i = 0u64;
    // SQLITE_KUBE_DEMO_KEEP_GOING=1: a failed commit prints "error <message>" and the loop
    // goes on (tests of faults that fail some commits).
    let keep_going = std::env::var("SQLITE_KUBE_DEMO_KEEP_GOING").is_ok_and(|v| v == "1");
    while n.is_none_or(|n| i < n) && !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let r = c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("row {i} {}", "x".repeat((i % 64) as usize))],
        );
        if let (Err(e), true) = (&r, keep_going) {
            writeln!(out, "error {e}").ok();
            out.flush().ok();
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        r?;
        let id = c.last_insert_rowid();
        writeln!(out, "{id}").ok();
        out.flush().ok();
        i += 1;
    }
    drop(c);
    Ok(())
}

/// The databases of a pod set up for several (`SQLITE_KUBE_DATABASES`): (name, path,
/// writable), in path order.
fn several_databases() -> Vec<(String, String, bool)> {
    let Ok(raw) = std::env::var("SQLITE_KUBE_DATABASES") else {
        return Vec::new();
    };
    let all: std::collections::BTreeMap<String, std::collections::HashMap<String, String>> =
        serde_json::from_str(&raw).unwrap_or_default();
    all.into_iter()
        .map(|(path, e)| {
            let name = e.get("SQLITE_KUBE_DATABASE").cloned().unwrap_or_default();
            let write = e
                .get("LITESTREAM_WRITE_ENABLED")
                .is_some_and(|v| v == "true");
            (name, path, write)
        })
        .collect()
}

/// `app` for a pod with several databases: one connection each; each round inserts a row
/// into every writable one and prints "name id" once committed. SIGTERM: close all (their
/// final syncs), exit 0.
fn app_several(dbs: Vec<(String, String, bool)>) -> Result<(), String> {
    let every = std::time::Duration::from_millis(
        std::env::var("SQLITE_KUBE_DEMO_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    );
    term_requested();
    let mut conns = Vec::new();
    for (name, path, write) in &dbs {
        let c = open_app_db(path, *write)?;
        if *write {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            )
            .map_err(|e| format!("{name}: {e}"))?;
        }
        eprintln!(
            "sqlitekube-demo: opened {name} at {path} ({})",
            if *write { "write" } else { "read" }
        );
        conns.push((name.clone(), c, *write));
    }
    let mut out = std::io::stdout().lock();
    while !term_requested() {
        for (name, c, write) in &conns {
            if !write {
                continue;
            }
            match c.execute("INSERT INTO t(v) VALUES (?1)", [name]) {
                Ok(_) => {
                    writeln!(out, "{name} {}", c.last_insert_rowid()).ok();
                    out.flush().ok();
                }
                Err(e) => eprintln!("sqlitekube-demo: write failed ({name}): {e}"),
            }
        }
        std::thread::sleep(every);
    }
    drop(conns);
    Ok(())
}

fn app() -> Result<(), String> {
    let several = several_databases();
    if several.len() > 1 {
        return app_several(several);
    }
    let db = std::env::var("SQLITE_KUBE_DB_PATH")
        .map_err(|_| "SQLITE_KUBE_DB_PATH is not set (is the pod opted in?)".to_string())?;
    let write = std::env::var("LITESTREAM_WRITE_ENABLED").is_ok_and(|v| v == "true");
    let every = std::time::Duration::from_millis(
        std::env::var("SQLITE_KUBE_DEMO_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    );
    // SIGTERM while still waiting for the writer lease: nothing is held, just leave.
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    term_requested();
    {
        let opened = opened.clone();
        std::thread::spawn(move || loop {
            if term_requested() {
                if !opened.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("sqlitekube-demo: SIGTERM before the database opened; exiting");
                    std::process::exit(0);
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        });
    }
    if let Some(f) = ready_file() {
        let _ = std::fs::remove_file(f);
    }
    let c = open_app_db(&db, write)?;
    let mut out = std::io::stdout().lock();
    if write {
        let setup = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)";
        loop {
            match c.execute_batch(setup) {
                Ok(()) => break,
                Err(e) => eprintln!("sqlitekube-demo: {e}"),
            }
            if term_requested() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    opened.store(true, std::sync::atomic::Ordering::SeqCst);
    // Readable now (a writer waiting for the Lease serves reads too).
    let rows: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap_or(-1);
    eprintln!(
        "sqlitekube-demo: opened {db} ({}), {rows} rows",
        if write { "write" } else { "read" }
    );
    if let Some(f) = ready_file() {
        if let Err(e) = std::fs::write(&f, b"") {
            eprintln!("sqlitekube-demo: cannot create {f}: {e}");
        }
    }
    let mut last_err = String::new();
    let timestamps = std::env::var("SQLITE_KUBE_DEMO_TIMESTAMPS").is_ok_and(|v| v == "1");
    // Who wrote each row, so tests can tell writers apart in a restored replica.
    let row = format!(
        "from {}",
        std::env::var("SQLITE_KUBE_POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default()
    );
    while !term_requested() {
        if write {
            // When the transaction began, for tests that time the lease bound.
            let began = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            match c.execute("INSERT INTO t(v) VALUES (?1)", [&row]) {
                Ok(_) => {
                    if timestamps {
                        let done = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis());
                        writeln!(out, "{} {began} {done}", c.last_insert_rowid()).ok();
                    } else {
                        writeln!(out, "{}", c.last_insert_rowid()).ok();
                    }
                    out.flush().ok();
                    last_err.clear();
                }
                Err(e) => {
                    // Lease not renewed / lost: keep trying (a real app would report
                    // unhealthy); print each new error once.
                    if e.to_string() != last_err {
                        eprintln!("sqlitekube-demo: write failed: {e}");
                        last_err = e.to_string();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        } else {
            let r: rusqlite::Result<(i64, Option<i64>)> =
                c.query_row("SELECT count(*), max(id) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                });
            match r {
                Ok((n, m)) => {
                    writeln!(out, "{n} {}", m.unwrap_or(0)).ok();
                    out.flush().ok();
                }
                Err(e) => eprintln!("sqlitekube-demo: read failed: {e}"),
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        std::thread::sleep(every);
    }
    drop(c);
    Ok(())
}

/// `sql`: runs each line of stdin as SQL on one writing connection and answers each with a
/// line, `ok` or `err <code>`, once it returned (the crash tests' acknowledgement).
fn sql(db: &str, url: &str) -> rusqlite::Result<()> {
    use std::io::BufRead;
    let c = open(db, url, true)?;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match c.execute_batch(&line) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!(
                "err {}",
                e.sqlite_error_code()
                    .map_or_else(|| e.to_string(), |c| format!("{c:?}"))
            ),
        };
        writeln!(out, "{answer}").ok();
        out.flush().ok();
    }
    drop(c);
    Ok(())
}

fn count(db: &str, url: &str) -> rusqlite::Result<()> {
    let c = open(
        db,
        url,
        std::env::var("LITESTREAM_WRITE_ENABLED").is_ok_and(|v| v == "true"),
    )?;
    let (n, max): (i64, Option<i64>) = c.query_row("SELECT count(*), max(id) FROM t", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    println!("{n} {} {ok}", max.unwrap_or(0));
    Ok(())
}

/// Full scans in a loop while the writer moves on (and its maintenance deletes files the
/// follower's page map may still point at): every scan must succeed.
fn follow(db: &str, url: &str, secs: u64) -> rusqlite::Result<()> {
    let c = open(db, url, false)?;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut out = std::io::stdout().lock();
    while std::time::Instant::now() < end {
        let (n, max, bytes): (i64, Option<i64>, Option<i64>) =
            c.query_row("SELECT count(*), max(id), sum(length(v)) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        writeln!(out, "{n} {} {}", max.unwrap_or(0), bytes.unwrap_or(0)).ok();
        out.flush().ok();
    }
    Ok(())
}

fn probe(db: &str, url: &str) -> rusqlite::Result<()> {
    let c = open(db, url, false)?;
    let path = std::path::Path::new(db);
    let t = std::time::Instant::now();
    let n: i64 = c.query_row("SELECT count(*) FROM t WHERE id = 1", [], |r| r.get(0))?;
    let v: String = c
        .query_row("SELECT v FROM t WHERE id = ?1", [1000], |r| r.get(0))
        .unwrap_or_default();
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let at_first = sqlite_kube_vfs::status(path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while sqlite_kube_vfs::status(path).is_some_and(|s| s["hydration"] != "Complete")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let hydrated = sqlite_kube_vfs::status(path).unwrap_or_default();
    let total: i64 = c.query_row("SELECT sum(length(v)) FROM t", [], |r| r.get(0))?;
    let after_scan = sqlite_kube_vfs::status(path).unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "first_query_ms": first_ms, "found": n, "value_len": v.len(), "scan_bytes": total,
            "hydration_at_first_query": at_first["hydration"], "gets_at_first_query": at_first["remote_gets"],
            "hydration_after_wait": hydrated["hydration"], "gets_after_hydration": hydrated["remote_gets"],
            "gets_after_scan": after_scan["remote_gets"],
        })
    );
    Ok(())
}

static TERM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn term_requested() -> bool {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| unsafe {
        extern "C" fn on_term(_: i32) {
            TERM.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        signal(15, on_term as *const () as usize);
    });
    TERM.load(std::sync::atomic::Ordering::SeqCst)
}

extern "C" {
    fn signal(sig: i32, handler: usize) -> usize;
}
