//! Stores that misbehave, with a real S3 server (SeaweedFS) behind a proxy that loses PUT
//! responses or hides create-only refusals, and the real VFS in the demo app in front.

mod common;

use std::time::{Duration, Instant};

use common::*;
use testkit::s3_proxy::{Fault, S3Proxy};
use testkit::{litestream, seaweed::S3Server, sqlite};

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every PUT reaches the store but no answer comes back for 10 s, longer than the store
/// client's retries (1 here, after a second or two), so a publish gives up although its
/// object landed. The next publish of that TXID carries more commits (other bytes) and
/// finds the name taken: the writer must recognise its own object and carry on, not
/// fence itself. Afterwards every acknowledged commit restores with litestream.
#[test]
fn lost_put_responses_do_not_fence_the_writer_and_lose_nothing() {
    let s3 = S3Server::shared();
    let proxy = S3Proxy::start(&s3.endpoint);
    let direct = s3.replica_url("vfs/lost-responses");
    let url = proxy.url(&direct);
    let dir = tempfile::tempdir().unwrap();
    let mut env = s3.env();
    env.push(("LITESTREAM_SYNC_INTERVAL", "200ms".into()));
    env.push(("SQLITE_KUBE_DEMO_BUSY_TIMEOUT_MS", "120000".into()));
    env.push(("SQLITE_KUBE_STORE_RETRIES", "1".into()));
    let w = Writer::start(&dir.path().join("app.db"), &url, &env);
    wait_for(
        "50 commits with the store answering",
        Duration::from_secs(60),
        || w.committed() >= 50,
    );
    proxy.set(Fault::LosePutResponses, true);
    std::thread::sleep(Duration::from_secs(10));
    proxy.set(Fault::LosePutResponses, false);
    let lost = proxy.lost_responses();
    let before = w.committed();
    wait_for(
        "commits after the responses came back",
        Duration::from_secs(60),
        || w.committed() > before + 50,
    );
    std::thread::sleep(Duration::from_secs(2));
    w.signal(15);
    let (ok, err, ids) = w.wait();
    assert!(ok, "the writer failed:\n{err}");
    assert!(
        lost >= 4,
        "only {lost} PUT responses were lost: the retries did not give up, so this test proves nothing:\n{err}"
    );
    assert!(
        err.contains("already holds our own earlier publish"),
        "the writer never met its own landed object (the fault did not hit a publish?):\n{err}"
    );
    assert!(
        !err.to_lowercase().contains("fenced"),
        "the writer fenced itself with no other writer around:\n{err}"
    );
    let out = dir.path().join("restored.db");
    litestream::restore(&direct, &out, &[], &s3.env());
    assert_eq!(sqlite::integrity(&out), "ok");
    let restored = ids_in(&out);
    let missing: Vec<_> = ids.iter().filter(|i| !restored.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged commits missing after lost responses ({lost} lost): {:?}",
        missing.len(),
        ids.len(),
        &missing[..missing.len().min(10)]
    );
}

/// A store that answers 200 to a second `If-None-Match: *` write cannot fence a stale
/// writer. The writer's probe at open finds that out and refuses to write, naming the
/// store and the opt-in; with the opt-in it writes (and warns), its status says the store
/// is unfenced, and the replica is still a valid one.
#[test]
fn a_store_that_ignores_create_only_writes_is_refused_unless_allowed() {
    let s3 = S3Server::shared();
    let proxy = S3Proxy::start(&s3.endpoint);
    proxy.set(Fault::AcceptRefusedCreateOnly, true);
    let direct = s3.replica_url("vfs/unfenced");
    let url = proxy.url(&direct);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");

    let (ok, err) = write_rows(&db, &url, 10, &s3.env());
    assert!(
        !ok,
        "a writer started on a store that does not fence:\n{err}"
    );
    assert!(
        err.contains("does not honour create-only writes")
            && err.contains("SQLITE_KUBE_ALLOW_UNFENCED_STORE"),
        "the refusal must name the problem and the opt-in:\n{err}"
    );
    assert!(proxy.accepted_refusals() >= 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    s3.export_env();
    let replica = ltx::replica::Replica::open(&direct).unwrap();
    assert_eq!(
        rt.block_on(replica.latest_txid()).unwrap_or(0),
        0,
        "the refused writer published something"
    );

    let mut env = s3.env();
    env.push(("SQLITE_KUBE_ALLOW_UNFENCED_STORE", "true".into()));
    env.push((
        "SQLITE_KUBE_STATUS_PATH",
        dir.path().join("status.json").display().to_string(),
    ));
    let (ok, err) = write_rows(&db, &url, 10, &env);
    assert!(ok, "the opted-in writer failed:\n{err}");
    assert!(
        err.contains("NOT fenced at the store"),
        "no warning:\n{err}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("status.json")).unwrap())
            .unwrap();
    let said = status["store_create_only"].as_str().unwrap_or_default();
    assert!(said.starts_with("ignored"), "status: {status}");
    let out = dir.path().join("restored.db");
    litestream::restore(&direct, &out, &[], &s3.env());
    assert_eq!(sqlite::integrity(&out), "ok");
    assert_eq!(ids_in(&out).len(), 10);
}

/// A Secret made from a file (`kubectl create secret --from-file`) ends in a newline; the
/// operator trims what it reads, and so must the VFS reading the same Secret as env.
#[test]
fn credentials_with_a_trailing_newline_work() {
    let s3 = S3Server::shared();
    let url = s3.replica_url("vfs/trimmed");
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| (k, format!("{v}\n")))
        .collect();
    let (ok, err) = write_rows(&dir.path().join("app.db"), &url, 5, &env);
    assert!(ok, "credentials ending in a newline were refused:\n{err}");
    let out = dir.path().join("restored.db");
    litestream::restore(&url, &out, &[], &s3.env());
    assert_eq!(ids_in(&out).len(), 5);
}
