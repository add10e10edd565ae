//! The operator-side validation names each bad field.

use crds::*;

fn valid() -> SqliteDatabaseSpec {
    serde_json::from_value(serde_json::json!({
        "replica": {"file": {"path": "/data/replica"}}
    }))
    .unwrap()
}

#[test]
fn defaults_fill_in_and_validate() {
    let s = valid();
    assert_eq!(s.sync_interval, "1s");
    assert_eq!(s.writer.lease_duration, "15s");
    assert_eq!(s.hydration.mode, HydrationMode::Background);
    assert_eq!(s.deletion_policy, DeletionPolicy::Retain);
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
}

#[test]
fn each_rule_names_its_field() {
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (serde_json::json!({"replica": {}}), "spec.replica"),
        (
            serde_json::json!({"replica": {"file": {"path": "/a"}, "s3": {"bucket": "bkt", "path": "p"}}}),
            "spec.replica",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "rel"}}}),
            "spec.replica.file.path",
        ),
        (
            serde_json::json!({"replica": {"s3": {"bucket": "b", "path": "p"}}}),
            "spec.replica.s3.bucket",
        ),
        (
            serde_json::json!({"replica": {"s3": {"bucket": "bkt", "path": "/p"}}}),
            "spec.replica.s3.path",
        ),
        (
            serde_json::json!({"replica": {"s3": {"bucket": "bkt", "path": "apps/../other"}}}),
            "spec.replica.s3.path",
        ),
        (
            serde_json::json!({"replica": {"s3": {"bucket": "bkt", "path": "./"}}}),
            "spec.replica.s3.path",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "/data/../etc"}}}),
            "spec.replica.file.path",
        ),
        (
            serde_json::json!({"replica": {"s3": {"bucket": "bkt", "path": "p", "endpoint": "ftp://x"}}}),
            "spec.replica.s3.endpoint",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "/a"}}, "syncInterval": "1 sec"}),
            "spec.syncInterval",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "/a"}}, "syncInterval": "10ms"}),
            "spec.syncInterval",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "/a"}}, "retention": "30s"}),
            "spec.retention",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "/a"}}, "writer": {"leaseDuration": "2s"}}),
            "spec.writer.leaseDuration",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "/a"}}, "syncInterval": "10s", "writer": {"drainTimeout": "5s", "leaseDuration": "60s"}}),
            "spec.writer.drainTimeout",
        ),
        (
            serde_json::json!({"replica": {"file": {"path": "/a"}}, "hydration": {"cacheSize": "lots"}}),
            "spec.hydration.cacheSize",
        ),
    ];
    for (json, field) in cases {
        let spec: SqliteDatabaseSpec = serde_json::from_value(json.clone()).unwrap();
        let errs = validate(&spec);
        assert!(
            errs.iter().any(|e| e.field == field),
            "{json}: expected an error on {field}, got {errs:?}"
        );
    }
}
