//! The Argo CD health check (`config/argocd/health.lua`) run by a real Lua 5.1 interpreter
//! (Debian's `lua5.1`, the language version Argo CD embeds) over SqliteDatabase objects in
//! each state the operator writes.

use std::process::Command;

use serde_json::{json, Value};

/// A JSON value as a Lua table literal.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// (status, message) the script gives for `obj`.
pub fn health(obj: &Value) -> (String, String) {
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/argocd/health.lua"),
    )
    .unwrap();
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua(obj)
    );
    let o = Command::new("lua5.1")
        .arg("-e")
        .arg(&program)
        .output()
        .expect("lua5.1 (scripts/test-deps.sh installs it from Debian)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (s, m) = out.split_once('\n').unwrap_or((&out, ""));
    (s.to_string(), m.to_string())
}

fn db(generation: i64, status: Value) -> Value {
    json!({"apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
           "metadata": {"name": "orders", "generation": generation}, "status": status})
}

fn cond(t: &str, s: &str, msg: &str) -> Value {
    json!({"type": t, "status": s, "reason": "R", "message": msg})
}

#[test]
fn argo_cd_health_follows_the_conditions() {
    let cases = [
        (
            json!({"apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
                "metadata": {"name": "orders", "generation": 1}}),
            "Progressing",
            "waiting for the operator",
        ),
        (
            db(
                2,
                json!({"observedGeneration": 1, "phase": "Ready",
                      "conditions": [cond("Ready", "True", "replica reachable")]}),
            ),
            "Progressing",
            "latest spec",
        ),
        (
            db(
                1,
                json!({"observedGeneration": 1, "phase": "Ready",
                      "conditions": [cond("Ready", "True", "replica reachable")]}),
            ),
            "Healthy",
            "replica reachable",
        ),
        (
            db(
                1,
                json!({"observedGeneration": 1, "phase": "Failed",
                      "conditions": [cond("Ready", "False", "invalid spec: spec.syncInterval")]}),
            ),
            "Degraded",
            "invalid spec",
        ),
        (
            db(
                1,
                json!({"observedGeneration": 1, "phase": "Degraded",
                      "conditions": [cond("Ready", "False", "replica unreachable")]}),
            ),
            "Degraded",
            "unreachable",
        ),
        (
            db(
                1,
                json!({"observedGeneration": 1, "phase": "Pending",
                      "conditions": [cond("Bootstrapped", "False", "restoring the source"),
                                     cond("Ready", "False", "bootstrap: restoring the source")]}),
            ),
            "Progressing",
            "bootstrapping",
        ),
        (
            db(
                1,
                json!({"observedGeneration": 1, "phase": "Deleting",
                      "conditions": [cond("Ready", "True", "x")]}),
            ),
            "Progressing",
            "deleting",
        ),
    ];
    for (obj, want, says) in cases {
        let (got, msg) = health(&obj);
        assert_eq!(got, want, "{obj}");
        assert!(
            msg.contains(says),
            "{msg:?} does not say {says:?} for {obj}"
        );
    }
}
