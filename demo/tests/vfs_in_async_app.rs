//! An async application calling SQLite from inside a tokio runtime: the VFS's object-store
//! I/O must not try to start a runtime inside it (that panics and aborts the process).

use rusqlite::{Connection, OpenFlags};

#[tokio::test(flavor = "current_thread")]
async fn writes_and_reads_from_inside_a_runtime() {
    sqlitekube_demo::register();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("r").display());
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI;
    let db = dir.path().join("app.db");
    let c = Connection::open_with_flags(
        format!(
            "file:{}?vfs=sqlitekube&replica_url={url}&write_enabled=true",
            db.display()
        ),
        flags,
    )
    .unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")
        .unwrap();
    drop(c); // last connection: final sync
    let status_published = std::fs::read_to_string(dir.path().join("app.db-status.json")).unwrap();
    assert!(
        status_published.contains("\"published_txid\":"),
        "{status_published}"
    );
    // A second path reads it back through ranged reads, still inside the runtime.
    let c = Connection::open_with_flags(
        format!(
            "file:{}?vfs=sqlitekube&replica_url={url}",
            dir.path().join("b.db").display()
        ),
        flags,
    )
    .unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}
