//! The monitoring kit in `config/monitoring` against what the operator exports:
//! - every metric an alert rule or a dashboard query names is one `/metrics` has (the
//!   names as exported after a database is observed, a hand-over and a fencing seen);
//! - the alert rules fire, and only when they should, in `promtool test rules` (Debian's
//!   `prometheus` package, installed by scripts/test-deps.sh).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::json;

use crds::SqliteDatabase;
use operator::metrics::Metrics;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Sample names in the exposition after one database was observed (status filled in),
/// a complete and a fenced hand-over.
fn exported() -> BTreeSet<String> {
    let m = Metrics::default();
    let db: SqliteDatabase = serde_json::from_value(json!({
        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"replica": {"file": {"path": "/r"}}}
    }))
    .unwrap();
    let st: crds::SqliteDatabaseStatus = serde_json::from_value(json!({
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "ReplicaReachable", "status": "True", "reason": "Reachable", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "WriterHeld", "status": "True", "reason": "Held", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ],
        "writer": {"pod": "app-0", "epoch": 3, "unpublishedSince": "2026-01-01T00:00:30Z"},
        "lastSyncedTxid": "00000000000000ff", "lastSyncedTime": "2026-01-01T00:00:00Z",
        "replicaSizeBytes": 4096, "replicaFiles": 2,
        "lastHandoff": {"from": "app-0", "txid": "00000000000000fe", "time": "2026-01-01T00:00:00Z", "complete": true}
    }))
    .unwrap();
    m.database(&db, &st);
    m.databases.handoff(&db, true, false);
    m.databases.handoff(&db, false, true);
    let text = m.encode();
    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    // The values made it through, not only the names.
    for want in [
        r#"sqlitekube_database_last_txid{namespace="shop",database="orders"} 255"#,
        r#"sqlitekube_database_writer_epoch{namespace="shop",database="orders"} 3"#,
        r#"sqlitekube_database_replica_files{namespace="shop",database="orders"} 2"#,
        r#"sqlitekube_database_sync_interval_seconds{namespace="shop",database="orders"} 1.0"#,
        r#"sqlitekube_database_last_publish_timestamp_seconds{namespace="shop",database="orders"} 1767225600.0"#,
        r#"sqlitekube_database_fenced_writers_total{namespace="shop",database="orders"} 1"#,
        r#"sqlitekube_database_unpublished_since_timestamp_seconds{namespace="shop",database="orders"} 1767225630.0"#,
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    m.databases.forget(&db);
    assert!(
        !m.encode().contains(r#"database="orders""#),
        "a deleted database's series stay:\n{}",
        m.encode()
    );
    names
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(p) = expr[i..].find("sqlitekube_") {
        let s = i + p;
        let mut e = s;
        while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_') {
            e += 1;
        }
        out.push(expr[s..e].to_string());
        i = e;
    }
    out
}

fn rules() -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(root().join("config/monitoring/prometheus_rule.yaml")).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    v["spec"].clone()
}

#[test]
fn rules_and_dashboard_name_only_exported_metrics() {
    let have = exported();
    let mut exprs = Vec::new();
    for g in rules()["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            exprs.push(r["expr"].as_str().unwrap().to_string());
        }
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("config/monitoring/grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let mut named = 0;
    for e in &exprs {
        for n in metric_names(e) {
            named += 1;
            assert!(
                have.contains(&n),
                "{n} (in {e:?}) is not exported; exported: {have:?}"
            );
        }
    }
    assert!(named >= 15, "only {named} metric references checked");
}

/// `promtool test rules`: each alert fires for the database in trouble, after its `for`,
/// and never for the healthy one.
#[test]
fn alert_rules_fire_in_promtool() {
    let promtool =
        which("promtool").expect("promtool (scripts/test-deps.sh installs Debian's prometheus)");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&rules()).unwrap(),
    )
    .unwrap();
    // The annotations each alert carries, with the labels filled in.
    let annotations = |alert: &str, db: &str| -> serde_yaml::Value {
        for g in rules()["groups"].as_sequence().unwrap() {
            for r in g["rules"].as_sequence().unwrap() {
                if r["alert"].as_str() == Some(alert) {
                    let mut a = r["annotations"].clone();
                    for (_, v) in a.as_mapping_mut().unwrap().iter_mut() {
                        let s = v
                            .as_str()
                            .unwrap()
                            .replace("{{ $labels.namespace }}", "shop")
                            .replace("{{ $labels.database }}", db);
                        *v = serde_yaml::Value::String(s);
                    }
                    return a;
                }
            }
        }
        panic!("no alert {alert}");
    };
    let fires = |alert: &str, at: &str, severity: &str| {
        json!({"eval_time": at, "alertname": alert, "exp_alerts": [{
            "exp_labels": {"severity": severity, "namespace": "shop", "database": "orders"},
            "exp_annotations": serde_json::to_value(annotations(alert, "orders")).unwrap()}]})
    };
    let quiet =
        |alert: &str, at: &str| json!({"eval_time": at, "alertname": alert, "exp_alerts": []});
    let s = |m: &str, db: &str, v: &str| json!({"series": format!("sqlitekube_database_{m}{{namespace=\"shop\",database=\"{db}\"}}"), "values": v});
    let test = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                // orders: unreachable from 2m, drain incomplete from 2m, fenced at 2m,
                // not Ready from 1m, last publish at 0 while a writer holds the Lease, and
                // the writer says its commits wait since 0 (from 1m; absent before).
                s("replica_reachable", "orders", "1 1 0x40"),
                s("drain_incomplete", "orders", "0 0 1x40"),
                s("fenced_writers_total", "orders", "0 0 1x40"),
                s("ready", "orders", "1 0x40"),
                s("writer_held", "orders", "1x40"),
                s("sync_interval_seconds", "orders", "1x40"),
                s("last_publish_timestamp_seconds", "orders", "0x40"),
                s("unpublished_since_timestamp_seconds", "orders", "_ 0x40"),
                // fine: publishing every minute, all well.
                s("replica_reachable", "fine", "1x40"),
                s("drain_incomplete", "fine", "0x40"),
                s("fenced_writers_total", "fine", "0x40"),
                s("ready", "fine", "1x40"),
                s("writer_held", "fine", "1x40"),
                s("sync_interval_seconds", "fine", "1x40"),
                s("last_publish_timestamp_seconds", "fine", "0+60x40"),
                // idle: a writer holds the Lease, nothing published since 0, nothing waits.
                s("replica_reachable", "idle", "1x40"),
                s("drain_incomplete", "idle", "0x40"),
                s("fenced_writers_total", "idle", "0x40"),
                s("ready", "idle", "1x40"),
                s("writer_held", "idle", "1x40"),
                s("sync_interval_seconds", "idle", "1x40"),
                s("last_publish_timestamp_seconds", "idle", "0x40"),
            ],
            "alert_rule_test": [
                quiet("SqliteKubeReplicaUnreachable", "4m"),
                fires("SqliteKubeReplicaUnreachable", "8m", "critical"),
                fires("SqliteKubeDrainIncomplete", "3m", "warning"),
                fires("SqliteKubeWriterFenced", "3m", "critical"),
                quiet("SqliteKubeWriterFenced", "25m"),
                quiet("SqliteKubeDatabaseNotReady", "10m"),
                fires("SqliteKubeDatabaseNotReady", "20m", "warning"),
                quiet("SqliteKubeNoRecentPublish", "5m"),
                fires("SqliteKubeNoRecentPublish", "20m", "warning"),
            ]
        }]
    });
    std::fs::write(
        dir.path().join("test.yaml"),
        serde_yaml::to_string(&test).unwrap(),
    )
    .unwrap();
    let o = Command::new(promtool)
        .args(["test", "rules", "test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|f| f.is_file())
}
