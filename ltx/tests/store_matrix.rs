//! Every store the product lists, against every replica capability it relies on: one
//! matrix, printed, every cell run. Stores: a directory, SeaweedFS and moto (two S3
//! implementations), Azurite (Azure Blob Storage) and fake-gcs-server (GCS), each a real
//! server on 127.0.0.1 (`testkit::stores`).
//!
//! What must hold everywhere: publish, list, ranged page reads, creation times, our restore,
//! `litestream restore`, delete. Create-only publishing is *observed* (a second write of a
//! TXID, and 8 writers racing for one), and the start-up probe must agree with what was
//! observed: a store that lets a second create-only write through must be reported as not
//! fencing. Wrong credentials must be refused where the store checks them.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ltx::replica::{
    CreateOnly, Credentials, LtxKey, Replica, ReplicaError, ReplicaOptions, ReplicaUrl,
};
use ltx::restore::{restore, RestoreOptions, Target};
use testkit::stores::{Kind, Store};

mod common;
use common::{file_with, page};

/// Our client for `url` with the store's credentials given explicitly (tests of several
/// stores share one process environment).
fn open(store: &Store, url: &str, bad_key: bool) -> Replica {
    let env: std::collections::HashMap<_, _> = store.env().into_iter().collect();
    // A wrong key of the right shape (Azure keys are base64).
    let spoil = |v: &String| {
        if !bad_key {
            v.clone()
        } else if v.ends_with("==") {
            "AAAA".repeat(21) + "AA=="
        } else {
            "wrong-secret".into()
        }
    };
    let opts = ReplicaOptions {
        timeout: Duration::from_secs(20),
        io_timeout: Duration::from_secs(20),
        retries: 1,
        credentials: Credentials {
            access_key_id: env.get("AWS_ACCESS_KEY_ID").cloned(),
            secret_access_key: env.get("AWS_SECRET_ACCESS_KEY").map(spoil),
            azure_account_key: env.get("AZURE_STORAGE_KEY").map(spoil),
            ..Default::default()
        },
        ambient: false,
    };
    Replica::open_with(ReplicaUrl::parse(url).unwrap(), &opts).unwrap()
}

/// One cell of the matrix.
enum Cell {
    Ok(String),
    /// The store does not do this; the product handles it (the note says how).
    Not(String),
    Failed(String),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Ok(s) if s.is_empty() => "ok".into(),
            Cell::Ok(s) => format!("ok: {s}"),
            Cell::Not(s) => format!("NO: {s}"),
            Cell::Failed(s) => format!("FAILED: {s}"),
        }
    }
}

fn cell(r: Result<String, String>) -> Cell {
    match r {
        Ok(s) => Cell::Ok(s),
        Err(e) => Cell::Failed(e),
    }
}

async fn publish_list_read(r: &Replica) -> Result<String, String> {
    let ts = 1_764_000_000_123;
    let small = file_with(4, 4096, 1, 1, ts);
    // 6000 pages of 512 bytes: the index is larger than the 32 KiB tail read.
    let big = file_with(6000, 512, 1, 2, ts + 1000);
    let e = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    r.check_reachable().await.map_err(|x| e("reach", &x))?;
    r.write(&LtxKey::new(0, 1, 1), small.clone(), ts, true)
        .await
        .map_err(|x| e("write", &x))?;
    r.write(&LtxKey::new(9, 1, 2), big, ts + 1000, true)
        .await
        .map_err(|x| e("write big", &x))?;
    let all = r.list_all().await.map_err(|x| e("list", &x))?;
    let keys: Vec<_> = all.iter().map(|f| (f.key.level, f.key.max_txid)).collect();
    if keys != [(0, 1), (9, 2)] {
        return Err(format!("listed {keys:?}"));
    }
    if all[0].size != small.len() as u64 {
        return Err(format!("size {} != {}", all[0].size, small.len()));
    }
    for (info, ps) in [(&all[0], 4096u32), (&all[1], 512)] {
        let idx = r.read_file_index(info).await.map_err(|x| e("index", &x))?;
        let (Some(first), Some(last)) = (idx.pages.first(), idx.pages.last()) else {
            return Err("empty page index".into());
        };
        for en in [*first, *last] {
            let got = r
                .read_page(&info.key, &en, ps)
                .await
                .map_err(|x| e("ranged read", &x))?;
            if got != page(en.pgno, ps as usize) {
                return Err(format!("page {} differs", en.pgno));
            }
        }
    }
    Ok(format!("{} files, ranged reads", all.len()))
}

async fn timestamps(r: &Replica) -> Result<String, String> {
    let l0 = r.list_level(0).await.map_err(|e| e.to_string())?;
    let first = l0.first().ok_or("nothing listed at L0")?;
    let created = r.creation_time(first).await.map_err(|e| e.to_string())?;
    let want = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
    if created != want {
        return Err(format!("creation time {created:?}, want {want:?}"));
    }
    Ok(String::new())
}

/// A real database as the replica's next snapshot, restored by us and by litestream.
async fn seed_db(r: &Replica, work: &std::path::Path) -> Result<(), String> {
    let db = work.join("seed.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<500) INSERT INTO t SELECT i FROM n;",
    )
    .unwrap();
    drop(c);
    let (buf, _) = ltx::dbfile::encode_db(&db, 1, 3, 1_764_000_100_000, Vec::new()).unwrap();
    r.write(
        &LtxKey::new(9, 1, 3),
        Bytes::from(buf),
        1_764_000_100_000,
        true,
    )
    .await
    .map_err(|e| format!("write snapshot: {e}"))
}

fn rows(db: &std::path::Path) -> Result<i64, String> {
    let c = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if ok != "ok" {
        return Err(format!("integrity_check: {ok}"));
    }
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

async fn restore_ours(r: &Replica, work: &std::path::Path) -> Result<String, String> {
    let out = work.join("ours.db");
    let opts = RestoreOptions {
        target: Target::Latest,
        ..Default::default()
    };
    let s = restore(r, &out, &opts).await.map_err(|e| e.to_string())?;
    let n = rows(&out)?;
    if n != 500 {
        return Err(format!("{n} rows, want 500"));
    }
    Ok(format!("TXID {}", s.db.txid))
}

fn restore_litestream(store: &Store, url: &str, work: &std::path::Path) -> Result<String, String> {
    let testkit::stores::LitestreamRestore { args, env } =
        store.litestream_restore_args(url, work)?;
    let out = work.join("litestream.db");
    let o = testkit::litestream::command(&env)
        .arg("restore")
        .arg("-o")
        .arg(&out)
        .args(&args)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let n = rows(&out)?;
    if n != 500 {
        return Err(format!("{n} rows, want 500"));
    }
    Ok(if args.iter().any(|a| a == "-config") {
        "via a config file (abs:// URLs carry no endpoint)".into()
    } else if env.iter().any(|(k, _)| *k == "STORAGE_EMULATOR_HOST") {
        "via STORAGE_EMULATOR_HOST".into()
    } else {
        String::new()
    })
}

/// A second create-only write of TXID 1 with other bytes: refused (and the first kept)?
async fn second_write(r: &Replica) -> Cell {
    let other = file_with(4, 4096, 1, 1, 1_764_000_000_999);
    match r.write(&LtxKey::new(0, 1, 1), other.clone(), 1, true).await {
        Err(ReplicaError::AlreadyExists { .. }) => match r.read(&LtxKey::new(0, 1, 1)).await {
            Ok(b) if b != other => Cell::Ok("refused, first kept".into()),
            Ok(_) => Cell::Failed("refused but overwritten".into()),
            Err(e) => Cell::Failed(e.to_string()),
        },
        Ok(()) => Cell::Not("overwrote the first publish".into()),
        Err(e) => Cell::Failed(e.to_string()),
    }
}

/// Eight writers publish different bytes at one TXID at the same moment.
async fn race(r: &Replica) -> Cell {
    let key = LtxKey::new(0, 7, 7);
    let n = 8;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (r, b) = (r.clone(), barrier.clone());
        let f = file_with(2 + i as u32, 4096, 7, 7, 1_764_000_000_000 + i as i64);
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            r.write(&key, f, 1, true).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(ReplicaError::AlreadyExists { .. }) => {}
            Err(e) => return Cell::Failed(e.to_string()),
        }
    }
    match won {
        1 => Cell::Ok("1 of 8 won".into()),
        w => Cell::Not(format!("{w} of 8 won")),
    }
}

async fn probe(r: &Replica) -> (Cell, Option<bool>) {
    match r.probe_create_only("matrix_0000beef_1").await {
        Ok(CreateOnly::Honoured) => (Cell::Ok("honoured".into()), Some(true)),
        Ok(CreateOnly::Ignored { detail }) => (
            Cell::Not(format!(
                "ignored ({detail}): writers refuse it unless allowUnfencedStore"
            )),
            Some(false),
        ),
        Err(e) => (Cell::Failed(e.to_string()), None),
    }
}

async fn delete(r: &Replica) -> Result<String, String> {
    let n = r.delete_all().await.map_err(|e| e.to_string())?;
    let left = r.list_all().await.map_err(|e| e.to_string())?;
    if !left.is_empty() {
        return Err(format!("{} files left", left.len()));
    }
    Ok(format!("{n} files"))
}

async fn bad_key(store: &Store, url: &str) -> Cell {
    if matches!(store.kind, Kind::File) {
        return Cell::Ok("n/a (no credentials)".into());
    }
    if matches!(store.kind, Kind::FakeGcs) {
        return Cell::Not("the emulator takes any or no credentials".into());
    }
    let r = open(store, url, true);
    match r.list_all().await {
        Err(e) => Cell::Ok(format!(
            "refused: {}",
            e.to_string().chars().take(60).collect::<String>()
        )),
        Ok(_) if store.kind == Kind::Moto => Cell::Not("moto does not check signatures".into()),
        Ok(_) => Cell::Failed("a wrong key was accepted".into()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_against_every_capability() {
    let columns = [
        "publish+list+ranged",
        "creation time",
        "restore (ours)",
        "litestream restore",
        "2nd create-only",
        "8-way race",
        "probe",
        "delete",
        "wrong key",
    ];
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for kind in Kind::ALL {
        let store = Store::start(kind);
        let url = store.replica_url("matrix/db");
        let work = tempfile::tempdir().unwrap();
        let r = open(&store, &url, false);
        let mut cells = vec![
            cell(publish_list_read(&r).await),
            cell(timestamps(&r).await),
        ];
        let seeded = seed_db(&r, work.path()).await;
        cells.push(match &seeded {
            Ok(()) => cell(restore_ours(&r, work.path()).await),
            Err(e) => Cell::Failed(e.clone()),
        });
        cells.push(match &seeded {
            Ok(()) => cell(restore_litestream(&store, &url, work.path())),
            Err(e) => Cell::Failed(e.clone()),
        });
        let second = second_write(&r).await;
        let raced = race(&r).await;
        let (probed, honoured) = probe(&r).await;
        let fences = matches!(second, Cell::Ok(_)) && matches!(raced, Cell::Ok(_));
        if honoured.is_some_and(|h| h != fences) {
            failures.push(format!(
                "{}: the probe says create-only {} but {} / {}",
                kind.name(),
                if honoured == Some(true) {
                    "works"
                } else {
                    "does not work"
                },
                second.text(),
                raced.text()
            ));
        }
        cells.extend([second, raced, probed]);
        cells.push(cell(delete(&r).await));
        cells.push(bad_key(&store, &url).await);
        for (c, col) in cells.iter().zip(columns) {
            if let Cell::Failed(e) = c {
                failures.push(format!("{} / {col}: {e}", kind.name()));
            }
        }
        eprintln!(
            "{}: {}",
            kind.name(),
            cells.iter().map(Cell::text).collect::<Vec<_>>().join(" | ")
        );
        table.push((kind.name(), cells));
    }
    let mut out = String::from("\nstore matrix (backend × capability; every cell run)\n");
    for (name, cells) in &table {
        writeln!(out, "{name}").unwrap();
        for (c, col) in cells.iter().zip(columns) {
            writeln!(out, "    {col:<20} {}", c.text()).unwrap();
        }
    }
    eprintln!("{out}");
    assert!(failures.is_empty(), "{}\n{out}", failures.join("\n"));
}
