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
