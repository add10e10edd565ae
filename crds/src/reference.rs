//! The configuration reference (`docs/reference.md`), generated from the CRD's schema so
//! the field descriptions are the doc comments on the Rust types.

use std::fmt::Write as _;

use serde_json::Value;

/// Markdown tables of every `spec` and `status` field: path, type, default, description.
pub fn reference_markdown() -> String {
    let crd = serde_json::to_value(crate::crd()).expect("CRD serialises");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the Rust types (`cargo run -p crds --bin crdgen -- --reference`); a test \
         fails when it is out of date.\n",
    );
    for part in ["spec", "status"] {
        let _ = write!(
            out,
            "\n## `SqliteDatabase.{part}`\n\n| field | type | default | description |\n|---|---|---|---|\n"
        );
        walk(&schema[part], part, &mut out);
    }
    out.push_str(concat!(
        "\n## Pod annotations\n\n| annotation | meaning |\n|---|---|\n",
        "| `sqlitekube.dev/database` | the `SqliteDatabase` (same namespace) the pod uses; opts the pod in |\n",
        "| `sqlitekube.dev/mode` | `write` (default: holds the writer Lease) or `read` (follows the writer) |\n",
        "| `sqlitekube.dev/mount-path` | absolute directory for the local copy and write buffer (default `spec.hydration.path`) |\n",
        "| `sqlitekube.dev/injected` | set by the webhook; an injected pod is never changed again |\n",
        "\nWith the shipped webhook configuration the pod also needs the label `sqlitekube.dev/inject: \"true\"`.\n",
        "\n## Environment of injected containers\n\n",
        "The VFS settings (`LITESTREAM_*`, `SQLITE_KUBE_*`) are listed in [vfs.md](vfs.md#settings); ",
        "the webhook's choices are described in [operator.md](operator.md#the-pod-webhook).\n",
    ));
    out
}

fn walk(node: &Value, path: &str, out: &mut String) {
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    for (name, p) in props {
        let here = format!("{path}.{name}");
        let ty = match (p["type"].as_str(), p["enum"].as_array()) {
            (_, Some(e)) => e
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" \\| "),
            (Some("array"), _) => "array".into(),
            (Some(t), _) => t.to_string(),
            (None, _) => "object".into(),
        };
        let default = match &p["default"] {
            Value::Null => String::new(),
            Value::String(s) => format!("`{s}`"),
            v if v.is_object() => String::new(),
            v => format!("`{v}`"),
        };
        let desc = p["description"]
            .as_str()
            .unwrap_or("")
            .replace('\n', " ")
            .replace('|', "\\|");
        let _ = writeln!(out, "| `{here}` | {ty} | {default} | {desc} |");
        walk(p, &here, out);
    }
}
