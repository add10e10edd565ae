//! `kubectl sqlite status`: one row per database, from its status (what the operator
//! observed). A pure function of the objects and the time, so its output is pinned by tests.

use serde::Serialize;

use crds::{SqliteDatabase, SqliteDatabaseStatus};
use kube::ResourceExt;

/// One database as the command reports it (`-o json|yaml` prints these).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub writer: Option<String>,
    pub epoch: Option<i64>,
    pub last_txid: Option<String>,
    /// Seconds since the replica's newest LTX file was written.
    pub lag_seconds: Option<i64>,
    pub last_handoff: Option<String>,
    /// The condition Ready's message when it is not True.
    pub problem: Option<String>,
}

pub fn row(db: &SqliteDatabase, now: jiff::Timestamp) -> Row {
    let st: SqliteDatabaseStatus = db.status.clone().unwrap_or_default();
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready");
    Row {
        namespace: db.namespace().unwrap_or_default(),
        name: db.name_any(),
        phase: st
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Unknown".into()),
        writer: st.writer.as_ref().map(|w| w.pod.clone()),
        epoch: st.writer.as_ref().and_then(|w| w.epoch),
        last_txid: st.last_synced_txid.clone(),
        lag_seconds: st
            .last_synced_time
            .as_ref()
            .map(|t| (now.as_second() - t.0.as_second()).max(0)),
        last_handoff: st.last_handoff.as_ref().map(|h| {
            format!(
                "{} at {}{}",
                h.from,
                h.txid,
                if h.complete { "" } else { " (INCOMPLETE)" }
            )
        }),
        problem: ready
            .filter(|c| c.status != "True")
            .map(|c| c.message.clone()),
    }
}

/// `3s`, `4m05s`, `2h10m`, `3d4h`.
pub fn age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// The table `kubectl get` style: left-aligned columns, two spaces apart.
pub fn table(rows: &[Row], with_namespace: bool) -> String {
    let mut head = vec![
        "NAME",
        "PHASE",
        "WRITER",
        "EPOCH",
        "LAST TXID",
        "LAG",
        "LAST HAND-OVER",
    ];
    if with_namespace {
        head.insert(0, "NAMESPACE");
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut lines: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let mut l = vec![
            r.name.clone(),
            r.phase.clone(),
            dash(r.writer.clone()),
            dash(r.epoch.map(|e| e.to_string())),
            dash(r.last_txid.clone()),
            dash(r.lag_seconds.map(age)),
            dash(r.last_handoff.clone()),
        ];
        if with_namespace {
            l.insert(0, r.namespace.clone());
        }
        lines.push(l);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    // Problems under the table, one per database that has one.
    for r in rows.iter().filter(|r| r.problem.is_some()) {
        out.push_str(&format!(
            "{}/{}: {}\n",
            r.namespace,
            r.name,
            r.problem.as_deref().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(ns: &str, name: &str, status: serde_json::Value) -> SqliteDatabase {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replica": {"file": {"path": "/r"}}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn the_table_is_pinned() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let dbs = [
            db(
                "shop",
                "orders",
                serde_json::json!({
                    "phase": "Ready",
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "replica reachable", "lastTransitionTime": "2026-12-01T00:00:00Z"}],
                    "writer": {"pod": "orders-app-7c9d-x2x4z", "epoch": 12},
                    "lastSyncedTxid": "00000000000004d2", "lastSyncedTime": "2026-12-01T11:59:57Z",
                    "lastHandoff": {"from": "orders-app-5b7d-qq8rt", "txid": "00000000000004c0", "time": "2026-12-01T11:58:00Z", "complete": true}
                }),
            ),
            db(
                "shop",
                "ledger",
                serde_json::json!({
                    "phase": "Degraded",
                    "conditions": [{"type": "Ready", "status": "False", "reason": "ReplicaUnreachable", "message": "replica s3://b/ledger: connection refused", "lastTransitionTime": "2026-12-01T00:00:00Z"}],
                    "lastSyncedTxid": "0000000000000009", "lastSyncedTime": "2026-12-01T09:40:00Z",
                    "lastHandoff": {"from": "ledger-0", "txid": "0000000000000009", "time": "2026-12-01T09:41:00Z", "complete": false}
                }),
            ),
            db("shop", "fresh", serde_json::json!(null)),
        ];
        let rows: Vec<Row> = dbs.iter().map(|d| row(d, now)).collect();
        let want = "\
NAME    PHASE     WRITER                 EPOCH  LAST TXID         LAG    LAST HAND-OVER
orders  Ready     orders-app-7c9d-x2x4z  12     00000000000004d2  3s     orders-app-5b7d-qq8rt at 00000000000004c0
ledger  Degraded  -                      -      0000000000000009  2h20m  ledger-0 at 0000000000000009 (INCOMPLETE)
fresh   Unknown   -                      -      -                 -      -
shop/ledger: replica s3://b/ledger: connection refused
";
        assert_eq!(table(&rows, false), want);
        assert!(table(&rows, true).starts_with("NAMESPACE  NAME"));
        assert_eq!(age(125), "2m05s");
        assert_eq!(age(90061), "1d1h");
    }
}
