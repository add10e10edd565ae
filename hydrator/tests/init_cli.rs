//! `hydrator init` as the init container runs it: environment only.

use std::path::PathBuf;
use std::process::Command;

use rusqlite::Connection;

fn init(envs: &[(&str, String)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hydrator"));
    c.arg("init").env("HYDRATOR_LOG_LEVEL", "info");
    for k in [
        "SQLITE_KUBE_REPLICA_URL",
        "LITESTREAM_REPLICA_URL",
        "SQLITE_KUBE_DB_PATH",
        "SQLITE_KUBE_HYDRATION",
        "SQLITE_KUBE_SHARED_DIR",
        "SQLITE_KUBE_VFS_SOURCE",
    ] {
        c.env_remove(k);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A file replica holding one small database, published with `hydrator sync`.
fn replica_with_db(dir: &std::path::Path) -> String {
    let db = dir.join("src.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);")
        .unwrap();
    drop(c);
    let url = format!("file://{}", dir.join("replica").display());
    let o = Command::new(env!("CARGO_BIN_EXE_hydrator"))
        .args(["sync", "--db"])
        .arg(&db)
        .args(["--replica", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    url
}

/// Init refused to start: a failing exit status (so the pod does not start) and a message
/// naming the problem (so `kubectl describe pod` says why).
fn refused(o: &std::process::Output, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "init must fail with status 1 on bad configuration; stderr:\n{}",
        stderr(o)
    );
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

#[test]
fn bad_configuration_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared").display().to_string();
    let o = init(&[("SQLITE_KUBE_SHARED_DIR", shared.clone())]);
    refused(&o, "SQLITE_KUBE_REPLICA_URL is not set");

    let url = format!("file://{}", dir.path().join("r").display());
    let o = init(&[
        ("SQLITE_KUBE_REPLICA_URL", url.clone()),
        ("SQLITE_KUBE_SHARED_DIR", shared.clone()),
        ("SQLITE_KUBE_HYDRATION", "eager".into()),
    ]);
    refused(&o, "SQLITE_KUBE_HYDRATION=\"eager\" is not one of");

    let o = init(&[
        ("SQLITE_KUBE_REPLICA_URL", url.clone()),
        ("SQLITE_KUBE_SHARED_DIR", shared.clone()),
    ]);
    refused(&o, "SQLITE_KUBE_DB_PATH is not set");

    let o = init(&[
        ("SQLITE_KUBE_REPLICA_URL", "ftp://x/y".into()),
        ("SQLITE_KUBE_SHARED_DIR", shared.clone()),
    ]);
    refused(&o, "unsupported scheme");

    let o = init(&[
        ("SQLITE_KUBE_REPLICA_URL", url),
        ("SQLITE_KUBE_SHARED_DIR", shared),
        ("SQLITE_KUBE_HYDRATION", "Disabled".into()),
        ("SQLITE_KUBE_VFS_SOURCE", "/nonexistent/vfs.so".into()),
    ]);
    refused(&o, "/nonexistent/vfs.so does not exist");
}

#[test]
fn blocking_hydrates_before_the_app_and_installs_the_vfs() {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_with_db(dir.path());
    let vfs = dir.path().join("image-vfs.so");
    std::fs::write(&vfs, b"\x7fELF pretend extension").unwrap();
    let shared = dir.path().join("shared");
    let db = dir.path().join("data/app.db");
    let env = [
        ("SQLITE_KUBE_REPLICA_URL", url.clone()),
        ("SQLITE_KUBE_SHARED_DIR", shared.display().to_string()),
        ("SQLITE_KUBE_DB_PATH", db.display().to_string()),
        ("SQLITE_KUBE_HYDRATION", "Blocking".into()),
        ("SQLITE_KUBE_VFS_SOURCE", vfs.display().to_string()),
        ("LITESTREAM_SYNC_INTERVAL", "500ms".into()),
    ];
    let o = init(&env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(shared.join("libsqlite_kube_vfs.so")).unwrap(),
        std::fs::read(&vfs).unwrap()
    );
    let cfg = std::fs::read_to_string(shared.join("vfs.env")).unwrap();
    assert!(
        cfg.contains(&format!("LITESTREAM_REPLICA_URL={url}\n")),
        "{cfg}"
    );
    assert!(
        cfg.contains(&format!("LITESTREAM_HYDRATION_PATH={}\n", db.display())),
        "{cfg}"
    );
    assert!(cfg.contains("LITESTREAM_SYNC_INTERVAL=500ms\n"), "{cfg}");
    let n: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        std::fs::read_to_string(format!("{}.meta", db.display())).unwrap(),
        "1\n"
    );
    // The app may run as another user than the (non-root) hydrator: it must be able to
    // write the copy and its record.
    use std::os::unix::fs::PermissionsExt;
    for p in [db.clone(), PathBuf::from(format!("{}.meta", db.display()))] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666, "{} is {mode:o}", p.display());
    }

    // A restarted pod whose volume survived: nothing to download.
    let before = std::fs::metadata(&db).unwrap().modified().unwrap();
    let o = init(&env);
    assert!(o.status.success());
    assert!(stderr(&o).contains("already current"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&db).unwrap().modified().unwrap(), before);
}

#[test]
fn background_starts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_with_db(dir.path());
    let shared = dir.path().join("shared");
    let db = dir.path().join("data/app.db");
    let o = init(&[
        ("SQLITE_KUBE_REPLICA_URL", url),
        ("SQLITE_KUBE_SHARED_DIR", shared.display().to_string()),
        ("SQLITE_KUBE_DB_PATH", db.display().to_string()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!db.exists(), "background mode leaves hydration to the VFS");
    assert!(std::fs::read_to_string(shared.join("vfs.env"))
        .unwrap()
        .contains("LITESTREAM_HYDRATION_ENABLED=true"));
}

/// `vfs.env` is readable by every container of the pod: only allow-listed VFS settings go
/// there, never a credential, whatever the variable is called.
#[test]
fn vfs_env_holds_settings_never_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let url = replica_with_db(dir.path());
    let shared = dir.path().join("shared");
    let secrets = [
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t-aws"),
        ("AWS_SESSION_TOKEN", "s3cr3t-token"),
        ("LITESTREAM_SECRET_ACCESS_KEY", "s3cr3t-ls"),
        ("LITESTREAM_AZURE_ACCOUNT_KEY", "s3cr3t-azure"),
        ("SQLITE_KUBE_VFS_AZURE_STORAGE_KEY", "s3cr3t-prefixed"),
        ("LITESTREAM_SOMETHING_NEW", "s3cr3t-unknown"),
    ];
    let mut env: Vec<(&str, String)> = vec![
        ("SQLITE_KUBE_REPLICA_URL", url),
        ("SQLITE_KUBE_SHARED_DIR", shared.display().to_string()),
        ("SQLITE_KUBE_HYDRATION", "Disabled".into()),
        ("LITESTREAM_SYNC_INTERVAL", "2s".into()),
        ("SQLITE_KUBE_VFS_SQLITE_KUBE_BUFFER_LIMIT", "8MiB".into()),
    ];
    env.extend(secrets.iter().map(|(k, v)| (*k, v.to_string())));
    let o = init(&env);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = std::fs::read_to_string(shared.join("vfs.env")).unwrap();
    for (k, v) in secrets {
        assert!(!cfg.contains(v), "{k} leaked into vfs.env:\n{cfg}");
    }
    assert!(cfg.contains("LITESTREAM_SYNC_INTERVAL=2s\n"), "{cfg}");
    assert!(
        cfg.contains("SQLITE_KUBE_BUFFER_LIMIT=8MiB\n"),
        "a prefixed setting is passed on under its own name:\n{cfg}"
    );
    let log = stderr(&o);
    assert!(
        log.contains("LITESTREAM_SOMETHING_NEW"),
        "the dropped name is logged: {log}"
    );
    assert!(!log.contains("s3cr3t"), "a value reached the log: {log}");
}
