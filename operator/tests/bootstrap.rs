//! `spec.bootstrap` against a real API server and SeaweedFS: a source replica written by
//! the VFS (the demo app), cloned at a TXID and at a time. Each clone restores (with the
//! real `litestream restore`) to exactly what `litestream restore -txid` / `-timestamp`
//! gives for the source; the source's objects are the same before and after; a clone onto
//! a replica that already has a history is refused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use common::*;
use crds::condition::BOOTSTRAPPED;
use crds::SqliteDatabase;
use ltx::replica::{Replica, ReplicaOptions, ReplicaUrl};
use testkit::seaweed::{S3Server, ACCESS_KEY, SECRET_KEY};

fn replica(url: &str) -> Replica {
    let opts = ReplicaOptions {
        credentials: ltx::replica::Credentials {
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Replica::open_with(ReplicaUrl::parse(url).unwrap(), &opts).unwrap()
}

/// Every object of a replica: key → size.
async fn objects(url: &str) -> BTreeMap<String, u64> {
    replica(url)
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (format!("{:?}", f.key), f.size))
        .collect()
}

/// `sqlitekube-demo write` of `n` rows through the VFS (its final sync publishes them).
fn write_rows(s3: &S3Server, url: &str, n: u32) {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(e2e::binary("sqlitekube-demo").unwrap())
        .args(["write"])
        .arg(dir.path().join("src.db"))
        .arg(url)
        .arg(n.to_string())
        .envs(s3.env())
        .env("LITESTREAM_SYNC_INTERVAL", "200ms")
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// All rows of a `litestream restore` of `url` (with `extra` flags), after an integrity check.
fn restored_rows(s3: &S3Server, url: &str, extra: &[&str]) -> Vec<(i64, String)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.db");
    let o = testkit::litestream::try_restore(url, &out, extra, &s3.env());
    assert!(
        o.status.success(),
        "litestream restore {url} {extra:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let c = rusqlite::Connection::open(&out).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let rows = c
        .prepare("SELECT id, v FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    rows
}

fn s3_spec(s3: &S3Server, url: &str) -> serde_json::Value {
    let u = url::Url::parse(url).unwrap();
    json!({"s3": {"bucket": u.host_str().unwrap(), "path": u.path().trim_start_matches('/'),
                  "endpoint": s3.endpoint, "region": "us-east-1", "forcePathStyle": true,
                  "credentialsSecretRef": {"name": "s3-creds"}}})
}

async fn clone(
    dbs: &Api<SqliteDatabase>,
    name: &str,
    s3: &S3Server,
    dest: &str,
    source: &str,
    point: serde_json::Value,
) {
    let mut from = json!({"replica": s3_spec(s3, source)});
    from.as_object_mut()
        .unwrap()
        .extend(point.as_object().unwrap().clone());
    dbs.patch(
        name,
        &PatchParams::apply("tests"),
        &Patch::Apply(json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": name},
            "spec": {"replica": s3_spec(s3, dest), "bootstrap": {"from": from}}
        })),
    )
    .await
    .unwrap();
}

async fn condition(dbs: &Api<SqliteDatabase>, name: &str, status: &str, secs: u64) -> String {
    wait_for(secs, &format!("{name}: Bootstrapped={status}"), || async {
        let db = dbs.get_opt(name).await.ok().flatten()?;
        let st = db.status?;
        let c = st.conditions.iter().find(|c| c.type_ == BOOTSTRAPPED)?;
        (c.status == status).then(|| format!("{}: {}", c.reason, c.message))
    })
    .await
}

#[tokio::test]
async fn clones_at_a_txid_and_a_time_equal_litestream_restores_of_the_source() {
    let Some(client) = client().await else { return };
    install_crd(&client).await;
    let ns = namespace(&client, "op-boot").await;
    let s3 = S3Server::shared();
    s3_secret(&client, &ns).await;

    // The source: written through the VFS in two rounds (of two runs each), a second apart.
    let source = s3.replica_url("apps/source");
    write_rows(&s3, &source, 30);
    write_rows(&s3, &source, 30);
    let mid_txid = replica(&source)
        .list_all()
        .await
        .unwrap()
        .iter()
        .map(|f| f.key.max_txid)
        .max()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mid_time = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    write_rows(&s3, &source, 30);
    write_rows(&s3, &source, 30);
    let before = objects(&source).await;

    let dbs: Api<SqliteDatabase> = Api::namespaced(client.clone(), &ns);
    let at_txid = s3.replica_url("apps/at-txid");
    let at_time = s3.replica_url("apps/at-time");
    let txid_hex = format!("{mid_txid:016x}");
    clone(
        &dbs,
        "at-txid",
        &s3,
        &at_txid,
        &source,
        json!({"txid": txid_hex}),
    )
    .await;
    clone(
        &dbs,
        "at-time",
        &s3,
        &at_time,
        &source,
        json!({"timestamp": mid_time.to_string()}),
    )
    .await;
    // A clone onto a replica with a history of its own is refused.
    let taken = s3.replica_url("apps/taken");
    write_rows(&s3, &taken, 3);
    clone(&dbs, "taken", &s3, &taken, &source, json!({})).await;

    let op = OperatorProcess::spawn(&ns, &[]);
    let msg = condition(&dbs, "at-txid", "True", 90).await;
    eprintln!("at-txid: {msg}");
    let msg_time = condition(&dbs, "at-time", "True", 90).await;
    eprintln!("at-time: {msg_time}");
    let refused = condition(&dbs, "taken", "False", 60).await;
    assert!(refused.starts_with("ReplicaNotEmpty"), "{refused}");

    let st = dbs.get("at-txid").await.unwrap().status.unwrap();
    let b = st.bootstrap.clone().unwrap();
    assert_eq!(b.phase, "Complete", "{b:?}");
    assert_eq!(b.source_txid.as_deref(), Some(txid_hex.as_str()));
    assert!(b.completed.is_some());
    // Ready, with the copy as its TXID 1.
    let st = wait_for(60, "at-txid Ready", || async {
        dbs.get("at-txid")
            .await
            .ok()?
            .status
            .filter(|s| s.phase == Some(crds::Phase::Ready))
    })
    .await;
    assert_eq!(st.last_synced_txid.as_deref(), Some("0000000000000001"));

    // Identical to litestream's own point-in-time restores of the source.
    let want = restored_rows(&s3, &source, &["-txid", &txid_hex]);
    let got = restored_rows(&s3, &at_txid, &[]);
    assert!(
        mid_txid >= 2 && want.len() == 60,
        "{} rows at TXID {mid_txid}",
        want.len()
    );
    assert_eq!(got, want, "clone at TXID {txid_hex}");
    let want_t = restored_rows(&s3, &source, &["-timestamp", &mid_time.to_string()]);
    let got_t = restored_rows(&s3, &at_time, &[]);
    assert_eq!(got_t, want_t, "clone at {mid_time}");
    assert_eq!(
        want_t.len(),
        want.len(),
        "the time lies between the two rounds"
    );

    // The source was only read.
    assert_eq!(objects(&source).await, before, "the source replica changed");
    eprintln!(
        "bootstrap: clone at TXID {txid_hex} and at {mid_time}: {} rows each, identical to litestream restore of the source; source untouched ({} objects)",
        got.len(),
        before.len()
    );
    drop(op);
}
