//! The checked-in CRD must be exactly what the Rust types generate.

#[test]
fn checked_in_crds_match_the_types() {
    for (legacy, file, flag) in [
        (false, "config/crd/sqlitedatabases.yaml", ""),
        (true, "config/crd/legacy/sqlitedatabases.yaml", " --legacy"),
        // The Helm chart's copies (operator/tests/helm.rs renders them).
        (
            false,
            "config/helm/sqlite-kube/files/sqlitedatabases.yaml",
            "",
        ),
        (
            true,
            "config/helm/sqlite-kube/files/sqlitedatabases-legacy.yaml",
            " --legacy",
        ),
    ] {
        let path = format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == crds::crd_yaml(legacy),
            "{file} is out of date with crds/src; regenerate it with\n  \
             cargo run -p crds --bin crdgen --{flag} > {file}"
        );
    }
}

#[test]
fn checked_in_reference_matches_the_types() {
    let path = format!("{}/../docs/reference.md", env!("CARGO_MANIFEST_DIR"));
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == crds::reference_markdown(),
        "docs/reference.md is out of date; regenerate it with\n  \
         cargo run -p crds --bin crdgen -- --reference > docs/reference.md"
    );
}

#[test]
fn legacy_crd_differs_only_by_cel_rules() {
    let modern = crds::crd_yaml(false);
    let legacy = crds::crd_yaml(true);
    assert!(modern.contains("x-kubernetes-validations"));
    assert!(!legacy.contains("x-kubernetes-validations"));
    assert!(legacy.contains("pattern:") && legacy.contains("enum:"));
}

#[test]
fn crd_has_the_parts_kubectl_users_see() {
    let crd: serde_json::Value = serde_yaml::from_str(&crds::crd_yaml(false)).unwrap();
    let v = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["group"], "sqlitekube.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "sqldb");
    assert!(v["subresources"]["status"].is_object());
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Phase", "Writer", "Last TXID", "Age"]);
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["syncInterval"]["default"], "1s");
    assert_eq!(spec["properties"]["deletionPolicy"]["default"], "Retain");
    assert!(spec["properties"]["replica"]["description"]
        .as_str()
        .unwrap()
        .contains("Exactly one"));
    assert!(spec["properties"]["replica"]["x-kubernetes-validations"].is_array());
}
