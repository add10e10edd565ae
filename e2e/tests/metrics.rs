//! The per-database metrics during a writer's life, scraped from the operator's `/metrics`
//! (resync 2 s): the replication lag (`time() - last_publish_timestamp_seconds`) stays
//! small while the writer writes, grows while it is frozen (SIGSTOP), and falls once it
//! resumes and publishes; the TXID moves on; a drain counts one complete hand-over.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context as _, Result};
use e2e::{Fixture, LocalPod};
use serde_json::json;

fn scrape(url: &str) -> String {
    let o = std::process::Command::new("curl")
        .args(["-fsS", "--max-time", "5", &format!("{url}/metrics")])
        .output();
    o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The value of `name{namespace="ns",database="db"…}` (the first such series).
fn value(text: &str, name: &str, ns: &str, db: &str) -> Option<f64> {
    let prefix = format!("{name}{{namespace=\"{ns}\",database=\"{db}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Waits until the scraped (lag, TXID) of `ledger` satisfy `ok`; returns them.
async fn wait_publish(
    metrics: &str,
    ns: &str,
    what: &str,
    ok: impl Fn(f64, f64) -> bool,
) -> Result<(f64, f64)> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let t = scrape(metrics);
        let ts = value(
            &t,
            "sqlitekube_database_last_publish_timestamp_seconds",
            ns,
            "ledger",
        );
        let txid = value(&t, "sqlitekube_database_last_txid", ns, "ledger");
        if let (Some(ts), Some(txid)) = (ts, txid) {
            if ok(now() - ts, txid) {
                return Ok((now() - ts, txid));
            }
        }
        ensure!(Instant::now() < end, "{what}:\n{t}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last lines of a log.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn committed(p: &LocalPod) -> usize {
    p.printed_ids().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_grows_while_the_writer_is_frozen_and_falls_after() -> Result<()> {
    let Some(f) = Fixture::start("metrics").await? else {
        return Ok(());
    };
    f.s3_database(
        "ledger",
        json!({"syncInterval": "1s", "writer": {"leaseDuration": "30s", "drainTimeout": "10s"}}),
    )
    .await?;
    let metrics = f.operator.as_ref().unwrap().metrics.clone();
    let ns = f.ns.clone();
    let mut p = f
        .start_pod("ledger-0", "ledger", "write", json!([]))
        .await?;
    let end = Instant::now() + Duration::from_secs(30);
    while committed(&p) < 20 {
        ensure!(Instant::now() < end, "the writer did not commit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Writing: the lag is about a sync interval plus the operator's resync.
    let (lag0, txid0) = wait_publish(
        &metrics,
        &ns,
        "no fresh publish in the metrics",
        |lag, _| lag < 5.0,
    )
    .await?;
    ensure!(
        value(
            &scrape(&metrics),
            "sqlitekube_database_writer_held",
            &ns,
            "ledger"
        ) == Some(1.0),
        "writer_held is not 1"
    );

    // Frozen: nothing is published, the lag grows.
    p.app().signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let t = scrape(&metrics);
    let ts = value(
        &t,
        "sqlitekube_database_last_publish_timestamp_seconds",
        &ns,
        "ledger",
    )
    .context("no publish time")?;
    let lag_frozen = now() - ts;
    ensure!(
        lag_frozen >= 7.0,
        "the lag did not grow while the writer was frozen: {lag_frozen:.1} s"
    );

    // Resumed: it publishes again and the lag falls.
    p.app().signal(libc::SIGCONT);
    let (lag_after, txid1) = wait_publish(
        &metrics,
        &ns,
        "the lag did not fall after the writer resumed",
        |lag, txid| lag < 5.0 && txid > txid0,
    )
    .await?;

    // A drain: one complete hand-over.
    p.delete();
    ensure!(
        p.app().exited().is_some_and(|c| c.success()),
        "the writer did not drain"
    );
    let end = Instant::now() + Duration::from_secs(30);
    let handoffs = format!(
        "sqlitekube_database_handoffs_total{{namespace=\"{ns}\",database=\"ledger\",complete=\"true\"}} 1"
    );
    while !scrape(&metrics).contains(&handoffs) {
        ensure!(
            Instant::now() < end,
            "no complete hand-over counted:\n{}",
            scrape(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "metrics: lag {lag0:.1} s while writing (TXID {txid0}), {lag_frozen:.1} s after 9 s frozen, {lag_after:.1} s after resuming (TXID {txid1}); 1 complete hand-over counted"
    );
    f.operator.unwrap().stop().await;
    Ok(())
}

/// The value of `name` for `db`, waiting up to `secs` until `ok` holds for it (`None`:
/// the series is absent).
async fn wait_value(
    metrics: &str,
    name: &str,
    ns: &str,
    db: &str,
    secs: u64,
    what: &str,
    ok: impl Fn(Option<f64>) -> bool,
) -> Result<Option<f64>> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = scrape(metrics);
        let v = value(&t, name, ns, db);
        if ok(v) {
            return Ok(v);
        }
        ensure!(Instant::now() < end, "{what} within {secs} s:\n{t}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An idle writer publishes nothing and is fine; a writer whose store fails has commits
/// waiting and says so on its Lease, which the operator exports
/// (`unpublished_since_timestamp_seconds`, what the alert `SqliteKubeNoRecentPublish` uses)
/// and withdraws once they are published. Before, the alert used the replica's last publish
/// time and fired for idle writers.
#[tokio::test(flavor = "multi_thread")]
async fn commits_waiting_are_reported_and_an_idle_writer_is_not() -> Result<()> {
    let Some(f) = Fixture::start("waiting").await? else {
        return Ok(());
    };
    let store: std::net::SocketAddr = f.s3.endpoint.trim_start_matches("http://").parse()?;
    let proxy = e2e::proxy::Proxy::start(store).await?;
    let writer = json!({"leaseDuration": "8s", "drainTimeout": "5s"});
    f.s3_database(
        "busy",
        json!({"syncInterval": "1s", "writer": writer,
               "replica": {"s3": {"endpoint": format!("http://127.0.0.1:{}", proxy.port)}}}),
    )
    .await?;
    f.s3_database("quiet", json!({"syncInterval": "1s", "writer": writer}))
        .await?;
    let metrics = f.operator.as_ref().unwrap().metrics.clone();
    let ns = f.ns.clone();
    let mut busy = f.start_pod("busy-0", "busy", "write", json!([])).await?;
    // One row, then an hour's sleep: idle.
    let mut quiet = f
        .start_pod(
            "quiet-0",
            "quiet",
            "write",
            json!([{"name": "SQLITE_KUBE_DEMO_INTERVAL_MS", "value": "3600000"}]),
        )
        .await?;
    let end = Instant::now() + Duration::from_secs(30);
    while committed(&busy) < 20 || committed(&quiet) < 1 {
        ensure!(Instant::now() < end, "the writers did not commit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    const SINCE: &str = "sqlitekube_database_unpublished_since_timestamp_seconds";
    const HELD: &str = "sqlitekube_database_writer_held";
    wait_value(
        &metrics,
        HELD,
        &ns,
        "quiet",
        30,
        "quiet's writer_held",
        |v| v == Some(1.0),
    )
    .await?;

    proxy.cut();
    let cut = now();
    let before = committed(&busy);
    // Said on the Lease once commits waited 10 sync intervals (10 s), at the next renewal.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(f.client.clone(), &ns);
    let end = Instant::now() + Duration::from_secs(25);
    let on_lease = loop {
        if let Some(t) = lease::waiting::of(&leases.get("busy-writer").await?) {
            break t.as_millisecond() as f64 / 1000.0;
        }
        ensure!(
            Instant::now() < end,
            "the writer did not say on its Lease that commits wait; its log:\n{}",
            tail(&busy.containers[0].stderr())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let said_after = now() - cut;
    // And the operator exports it (its reconcile also checks the store, which is cut).
    let since = wait_value(
        &metrics,
        SINCE,
        &ns,
        "busy",
        40,
        "no unpublished_since for busy",
        |v| v.is_some(),
    )
    .await?
    .unwrap();
    let reported_after = now() - cut;
    ensure!(committed(&busy) > before, "commits stopped with the store");
    ensure!(since == on_lease, "metric {since} vs Lease {on_lease}");
    ensure!(
        (cut - 3.0..=cut + 3.0).contains(&since),
        "unpublished since {since:.1}, the store was cut at {cut:.1}"
    );
    let st = f.database("busy").await?.status.unwrap_or_default();
    ensure!(
        st.writer
            .as_ref()
            .and_then(|w| w.unpublished_since.as_ref())
            .is_some(),
        "status.writer.unpublishedSince missing: {:?}",
        st.writer
    );
    // The idle writer published nothing for as long, and says nothing waits.
    let t = scrape(&metrics);
    let quiet_lag = now()
        - value(
            &t,
            "sqlitekube_database_last_publish_timestamp_seconds",
            &ns,
            "quiet",
        )
        .context("no publish time for quiet")?;
    ensure!(quiet_lag > 10.0, "quiet published {quiet_lag:.1} s ago");
    ensure!(
        value(&t, SINCE, &ns, "quiet").is_none() && value(&t, HELD, &ns, "quiet") == Some(1.0),
        "the idle writer is reported:\n{t}"
    );

    // The store is back: everything is published and the report is withdrawn.
    proxy.restore();
    let back = now();
    wait_value(
        &metrics,
        SINCE,
        &ns,
        "busy",
        60,
        "unpublished_since stayed after the store came back",
        |v| v.is_none(),
    )
    .await?;
    eprintln!(
        "waiting: on the Lease {said_after:.1} s and in the metrics {reported_after:.1} s after the store was cut (since {:.1} s before the cut), withdrawn {:.1} s after it came back; the idle writer ({quiet_lag:.0} s without a publish) was not reported",
        cut - since,
        now() - back
    );
    busy.delete();
    ensure!(
        busy.app().exited().is_some_and(|c| c.success()),
        "busy did not drain"
    );
    quiet.app().kill();
    f.operator.unwrap().stop().await;
    Ok(())
}
