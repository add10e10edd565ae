//! `spec.bootstrap`: a database that starts from another replica's state (a clone, or a
//! rollback to a point in time). The operator restores the source at the chosen point and
//! publishes it as TXID 1 of this database's own replica before any pod may use it; the
//! source is only read.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{ReplicaSpec, SqliteDatabaseSpec};

/// Where a new database's first state comes from.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// The replica to copy from, at a point in time. It is never written.
    pub from: BootstrapSource,
}

/// A replica and a point in it: the latest state, a TXID, or a time.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.txid) && has(self.timestamp))",
    "message": "set at most one of txid and timestamp"
}]))]
pub struct BootstrapSource {
    /// The source replica, with its own credentials. It must not overlap this database's
    /// replica.
    pub replica: ReplicaSpec,
    /// Restore up to and including this TXID (16 hex digits, as `litestream ltx` and
    /// `status.lastSyncedTxid` print it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{1,16}$"))]
    pub txid: Option<String>,
    /// Restore the state as of this time (RFC 3339): the files created before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// The point to restore, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapPoint {
    Latest,
    Txid(u64),
    Time(jiff::Timestamp),
}

impl BootstrapSource {
    /// The point, or why it is not one.
    pub fn point(&self) -> Result<BootstrapPoint, String> {
        match (&self.txid, &self.timestamp) {
            (Some(_), Some(_)) => Err("set at most one of txid and timestamp".into()),
            (Some(t), None) => u64::from_str_radix(t, 16)
                .ok()
                .filter(|t| *t > 0)
                .map(BootstrapPoint::Txid)
                .ok_or_else(|| format!("txid {t:?} is not a TXID (1 to 16 hex digits, not 0)")),
            (None, Some(ts)) => ts
                .parse::<jiff::Timestamp>()
                .map(BootstrapPoint::Time)
                .map_err(|e| format!("timestamp {ts:?} is not an RFC 3339 time: {e}")),
            (None, None) => Ok(BootstrapPoint::Latest),
        }
    }
}

/// The bootstrap rules beyond each replica's own (see `validate.rs`).
pub(crate) fn bootstrap_rules(
    spec: &SqliteDatabaseSpec,
    b: &BootstrapSpec,
    err: &mut impl FnMut(&str, String),
) {
    if let Err(e) = b.from.point() {
        let field = if b.from.timestamp.is_some() && b.from.txid.is_none() {
            "spec.bootstrap.from.timestamp"
        } else {
            "spec.bootstrap.from.txid"
        };
        err(field, e);
    }
    if let (Some(mine), Some(theirs)) = (spec.replica.root(), b.from.replica.root()) {
        if mine.overlaps(&theirs) {
            err(
                "spec.bootstrap.from.replica",
                format!("{theirs} overlaps this database's own replica {mine}; a clone needs a replica of its own"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::SqliteDatabaseSpec;

    fn spec(bootstrap: serde_json::Value) -> SqliteDatabaseSpec {
        serde_json::from_value(serde_json::json!({
            "replica": {"s3": {"bucket": "bkt", "path": "apps/clone", "endpoint": "http://s:9000"}},
            "bootstrap": bootstrap
        }))
        .unwrap()
    }

    fn source(path: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut from = serde_json::json!({"replica": {"s3": {"bucket": "bkt", "path": path, "endpoint": "http://s:9000"}}});
        from.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::json!({ "from": from })
    }

    #[test]
    fn bootstrap_specs_are_checked() {
        let ok = spec(source(
            "apps/orders",
            serde_json::json!({"txid": "00000000000000a0"}),
        ));
        assert_eq!(crate::validation_message(&ok), None);
        let both = spec(source(
            "apps/orders",
            serde_json::json!({"txid": "a0", "timestamp": "2026-01-01T00:00:00Z"}),
        ));
        assert!(crate::validation_message(&both)
            .unwrap()
            .contains("at most one of txid and timestamp"));
        let bad = spec(source("apps/orders", serde_json::json!({"txid": "0"})));
        assert!(crate::validation_message(&bad)
            .unwrap()
            .contains("spec.bootstrap.from.txid"));
        let when = spec(source(
            "apps/orders",
            serde_json::json!({"timestamp": "yesterday"}),
        ));
        assert!(crate::validation_message(&when)
            .unwrap()
            .contains("spec.bootstrap.from.timestamp"));
        // Its own replica, or one nested in it, is not a source.
        let nested = spec(source("apps/clone/old", serde_json::json!({})));
        assert!(crate::validation_message(&nested)
            .unwrap()
            .contains("overlaps this database's own replica"));
        let broken =
            spec(serde_json::json!({"from": {"replica": {"s3": {"bucket": "b", "path": "/x"}}}}));
        let m = crate::validation_message(&broken).unwrap();
        assert!(m.contains("spec.bootstrap.from.replica.s3.bucket"), "{m}");
        assert!(m.contains("spec.bootstrap.from.replica.s3.path"), "{m}");
    }
}
