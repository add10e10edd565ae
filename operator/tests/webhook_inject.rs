//! The mutated pod, pinned as JSON for both hydrator placements (classic init container and
//! native sidecar), plus the rules around it. Regenerate the golden files after an intended
//! change with `UPDATE_GOLDEN=1 cargo test -p operator --test webhook_inject`.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crds::SqliteDatabase;
use operator::webhook::inject::{inject, inject_all, opt_in, InjectConfig, Mode};

fn pod(annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app-0", "namespace": "shop", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "example/app:1",
                                 "env": [{"name": "KEEP", "value": "me"}]}]}
    }))
    .unwrap()
}

fn db() -> SqliteDatabase {
    serde_json::from_value(json!({
        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"replica": {"s3": {"bucket": "bkt", "path": "shop/orders", "endpoint": "http://minio:9000",
                                    "region": "eu-west-1", "credentialsSecretRef": {"name": "s3-creds"}}},
                 "writer": {"drainTimeout": "45s"}}
    }))
    .unwrap()
}

fn check_golden(name: &str, got: &Pod) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let got = serde_json::to_string_pretty(got).unwrap() + "\n";
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        // Rewriting the expectation makes the comparison below pass by construction:
        // never where a pass must be earned.
        assert!(
            std::env::var_os("CI").is_none(),
            "UPDATE_GOLDEN is refused under CI"
        );
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == got,
        "{name} differs from the injected pod (UPDATE_GOLDEN=1 to accept):\n{got}"
    );
}

fn cfg(native_sidecar: bool) -> InjectConfig {
    InjectConfig {
        hydrator_image: "ghcr.io/sqlite-kube/hydrator:test".into(),
        native_sidecar,
    }
}

#[test]
fn classic_init_container_injection_is_pinned() {
    let p = pod(json!({"sqlitekube.dev/database": "orders"}));
    let opt = opt_in(&p).unwrap().unwrap();
    assert_eq!(opt.mode, Mode::Write);
    let out = inject(&p, &db(), &opt, &cfg(false)).unwrap();
    check_golden("pod-classic-init.json", &out);
    let init = &out.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    assert!(init.restart_policy.is_none());
}

#[test]
fn native_sidecar_injection_is_pinned() {
    let p = pod(
        json!({"sqlitekube.dev/database": "orders", "sqlitekube.dev/mode": "read",
                      "sqlitekube.dev/mount-path": "/data"}),
    );
    let opt = opt_in(&p).unwrap().unwrap();
    let out = inject(&p, &db(), &opt, &cfg(true)).unwrap();
    check_golden("pod-native-sidecar.json", &out);
    let init = &out.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    assert_eq!(init.restart_policy.as_deref(), Some("Always"));
}

#[test]
fn secrets_are_referenced_never_inlined_and_grace_covers_the_drain() {
    let p = pod(json!({"sqlitekube.dev/database": "orders"}));
    let out = inject(&p, &db(), &opt_in(&p).unwrap().unwrap(), &cfg(false)).unwrap();
    let text = serde_json::to_string(&out).unwrap();
    assert!(text.contains("secretKeyRef"));
    let app = &out.spec.as_ref().unwrap().containers[0];
    for e in app.env.as_ref().unwrap() {
        if e.name.starts_with("AWS_ACCESS") || e.name.starts_with("AWS_SECRET") {
            assert!(e.value.is_none() && e.value_from.is_some(), "{e:?}");
        }
    }
    assert!(app.env.as_ref().unwrap().iter().any(|e| e.name == "KEEP"));
    assert_eq!(
        out.spec.as_ref().unwrap().termination_grace_period_seconds,
        Some(55)
    );
}

#[test]
fn injection_is_idempotent_and_other_pods_are_untouched() {
    let p = pod(json!({"sqlitekube.dev/database": "orders"}));
    let out = inject(&p, &db(), &opt_in(&p).unwrap().unwrap(), &cfg(false)).unwrap();
    // An injected pod is not opted in again.
    assert_eq!(opt_in(&out).unwrap(), None);
    // Injecting twice gives the same pod (no duplicated containers, env or volumes).
    let twice = inject(&out, &db(), &opt_in(&p).unwrap().unwrap(), &cfg(false)).unwrap();
    let mut out_ann = out.clone();
    out_ann.metadata.annotations = twice.metadata.annotations.clone();
    assert_eq!(
        serde_json::to_value(&twice).unwrap(),
        serde_json::to_value(&out_ann).unwrap()
    );
    assert_eq!(opt_in(&pod(json!({"other": "x"}))).unwrap(), None);
}

#[test]
fn bad_annotations_are_refused_with_a_reason() {
    let e = opt_in(&pod(
        json!({"sqlitekube.dev/database": "orders", "sqlitekube.dev/mode": "rw"}),
    ))
    .unwrap_err();
    assert!(
        e.contains("sqlitekube.dev/mode") && e.contains("\"rw\""),
        "{e}"
    );
    let e = opt_in(&pod(
        json!({"sqlitekube.dev/database": "orders", "sqlitekube.dev/mount-path": "data"}),
    ))
    .unwrap_err();
    assert!(e.contains("absolute"), "{e}");
    for (value, says) in [
        ("orders, orders", "named twice"),
        ("orders:rw", "\"rw\""),
        ("Orders", "not a SqliteDatabase name"),
        (" , ", "names no database"),
    ] {
        let e = opt_in(&pod(json!({"sqlitekube.dev/database": value}))).unwrap_err();
        assert!(e.contains(says), "{value:?}: {e}");
    }
}

/// Two databases in one pod (`orders, sessions:read`): a hydrator each (the second with
/// its own ready file), one `SQLITE_KUBE_DATABASES` entry each with its own replica, mode,
/// lease and credentials, Secrets referenced under names of their own that come before
/// the entry (the kubelet expands `$(…)` only from earlier variables), and the VFS opening
/// each database with its own settings from that environment.
#[test]
fn two_databases_in_one_pod_get_their_own_settings() {
    let orders = db();
    let sessions: SqliteDatabase = serde_json::from_value(json!({
        "apiVersion": "sqlitekube.dev/v1alpha1", "kind": "SqliteDatabase",
        "metadata": {"name": "sessions", "namespace": "shop"},
        "spec": {"replica": {"s3": {"bucket": "other", "path": "shop/sessions",
                                    "region": "us-east-1", "credentialsSecretRef": {"name": "s3-sessions"}}},
                 "writer": {"drainTimeout": "20s"}}
    }))
    .unwrap();
    let p = pod(json!({"sqlitekube.dev/database": "orders, sessions:read"}));
    let opt = opt_in(&p).unwrap().unwrap();
    assert_eq!(
        opt.databases,
        vec![
            ("orders".into(), Mode::Write),
            ("sessions".into(), Mode::Read)
        ]
    );
    let out = inject_all(
        &p,
        &[(&orders, Mode::Write), (&sessions, Mode::Read)],
        &opt,
        &cfg(true),
    )
    .unwrap();
    let ps = out.spec.as_ref().unwrap();
    let inits: Vec<&str> = ps
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits, ["sqlite-kube-hydrator", "sqlite-kube-hydrator-1"]);
    let second = &ps.init_containers.as_ref().unwrap()[1];
    let probe = second
        .startup_probe
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap();
    assert_eq!(
        probe.command.as_ref().unwrap().last().unwrap(),
        "/sqlite-kube/lib/ready-1"
    );
    assert!(second
        .env
        .iter()
        .flatten()
        .any(|e| e.name == "SQLITE_KUBE_INIT_INDEX" && e.value.as_deref() == Some("1")));
    assert_eq!(
        ps.termination_grace_period_seconds,
        Some(45 + 20 + 10),
        "room for both final syncs"
    );

    let app = &ps.containers[0];
    let env = app.env.as_ref().unwrap();
    let at = |n: &str| env.iter().position(|e| e.name == n);
    let dbs_at = at("SQLITE_KUBE_DATABASES").expect("SQLITE_KUBE_DATABASES");
    for secret in [
        "SQLITE_KUBE_DB0_AWS_ACCESS_KEY_ID",
        "SQLITE_KUBE_DB1_AWS_SECRET_ACCESS_KEY",
    ] {
        let i = at(secret).unwrap_or_else(|| panic!("{secret} missing"));
        assert!(
            i < dbs_at,
            "{secret} must come before the entry that names it"
        );
        assert!(
            env[i].value.is_none() && env[i].value_from.is_some(),
            "{secret} is a reference"
        );
    }
    assert!(
        at("LITESTREAM_REPLICA_URL").is_none(),
        "no single-database variables"
    );
    let raw = env[dbs_at].value.clone().unwrap();
    let entries: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&raw).unwrap();
    let path = |name: &str| {
        entries
            .keys()
            .find(|k| k.ends_with(&format!("/{name}.db")))
            .unwrap_or_else(|| panic!("no entry for {name}: {raw}"))
            .clone()
    };
    let (orders_db, sessions_db) = (path("orders"), path("sessions"));
    assert_eq!(
        entries[&orders_db]["AWS_ACCESS_KEY_ID"],
        "$(SQLITE_KUBE_DB0_AWS_ACCESS_KEY_ID)"
    );
    assert_eq!(
        env.iter()
            .find(|e| e.name == "SQLITE_KUBE_DB_PATH")
            .and_then(|e| e.value.clone()),
        Some(orders_db.clone()),
        "apps reading one path get the first database"
    );
    assert!(!raw.contains("secretKeyRef"));

    // The VFS, with the environment as the kubelet makes it (references expanded; the
    // optional session token absent, so its reference stays as written).
    let mut plain: std::collections::HashMap<String, String> = env
        .iter()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    plain.insert("SQLITE_KUBE_POD_NAME".into(), "app-0".into());
    plain.insert("SQLITE_KUBE_NAMESPACE".into(), "shop".into());
    let expanded = raw
        .replace("$(SQLITE_KUBE_DB0_AWS_ACCESS_KEY_ID)", "key-orders")
        .replace("$(SQLITE_KUBE_DB1_AWS_ACCESS_KEY_ID)", "key-sessions");
    plain.insert("SQLITE_KUBE_DATABASES".into(), expanded);
    let open = |path: &str| {
        sqlite_kube_vfs::Config::from_env(std::path::Path::new(path), &Default::default(), |k| {
            plain.get(k).cloned()
        })
        .expect("the VFS accepts the entry")
    };
    let o = open(&orders_db);
    assert!(o.replica_url.starts_with("s3://bkt/shop/orders"));
    assert!(o.write_enabled);
    assert_eq!(o.lease.as_ref().unwrap().name, "orders-writer");
    assert_eq!(o.credentials.access_key_id.as_deref(), Some("key-orders"));
    assert!(
        o.credentials.session_token.is_none(),
        "an unexpanded reference is unset"
    );
    let s = open(&sessions_db);
    assert!(s.replica_url.starts_with("s3://other/shop/sessions"));
    assert!(!s.write_enabled && s.lease.is_none());
    assert_eq!(s.credentials.access_key_id.as_deref(), Some("key-sessions"));
    assert_eq!(
        s.buffer_path,
        std::path::PathBuf::from(format!("{sessions_db}-buffer"))
    );
    assert!(
        o.conflicts_with(&s).is_none(),
        "each has its own replica, buffer and lease"
    );
}

/// What the CRD accepts, the VFS accepts: a database with Go-style compound durations is
/// injected, and the VFS builds its settings from exactly the injected container's
/// environment (downward-API fields filled in as the kubelet would).
#[test]
fn vfs_opens_with_the_injected_settings() {
    let mut d = db();
    d.spec.sync_interval = "1m30s".into();
    d.spec.retention = "1h30m".into();
    d.spec.snapshot_interval = "2h30m".into();
    d.spec.writer.lease_duration = "4m45s".into();
    d.spec.writer.drain_timeout = "2m30s".into();
    d.spec.writer.allow_unfenced_store = true;
    let errors = crds::validate(&d.spec);
    assert!(errors.is_empty(), "the spec is valid: {errors:?}");
    let p = pod(json!({"sqlitekube.dev/database": "orders"}));
    let opt = opt_in(&p).unwrap().unwrap();
    let out = inject(&p, &d, &opt, &cfg(false)).unwrap();
    let app = &out.spec.as_ref().unwrap().containers[0];
    let env: std::collections::HashMap<String, String> = app
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let v = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(f)) => match f.field_ref.as_ref().map(|r| r.field_path.as_str()) {
                    Some("metadata.name") => "app-0".into(),
                    Some("metadata.namespace") => "shop".into(),
                    Some("metadata.uid") => "uid-1".into(),
                    _ => return None, // secrets: not settings
                },
                _ => return None,
            };
            Some((e.name.clone(), v))
        })
        .collect();
    let db_path = std::path::PathBuf::from(&env[settings::env::DB_PATH]);
    let c = sqlite_kube_vfs::Config::from_lookup(&db_path, &Default::default(), |k| {
        env.get(k).cloned()
    })
    .expect("the VFS accepts every injected setting");
    use std::time::Duration;
    assert_eq!(c.sync_interval, Duration::from_secs(90));
    assert_eq!(c.snapshot_retention, Duration::from_secs(5400));
    assert_eq!(c.snapshot_interval, Duration::from_secs(9000));
    assert_eq!(c.drain_timeout, Duration::from_secs(150));
    assert!(c.write_enabled);
    assert!(
        c.allow_unfenced_store,
        "spec.writer.allowUnfencedStore reaches the VFS"
    );
    let lease = c.lease.expect("a write-mode pod is lease-gated");
    assert_eq!(lease.duration, Duration::from_secs(285));
    assert_eq!(
        (lease.identity.as_str(), lease.namespace.as_str()),
        ("app-0", "shop")
    );
    assert_eq!(c.cache_size, 64 << 20, "the default cacheSize, 64Mi");
}

/// What Pod Security "restricted" (the Pod Security Standards, as the API server's
/// PodSecurity admission enforces them) finds wrong with `pod`; empty when it passes.
fn restricted_violations(pod: &Pod) -> Vec<String> {
    let ps = pod.spec.as_ref().unwrap();
    let psc = ps.security_context.clone().unwrap_or_default();
    let mut v = Vec::new();
    if ps.host_network == Some(true) || ps.host_pid == Some(true) || ps.host_ipc == Some(true) {
        v.push("host namespaces".to_string());
    }
    for vol in ps.volumes.iter().flatten() {
        let ok = vol.config_map.is_some()
            || vol.csi.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.ephemeral.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some();
        if !ok {
            v.push(format!("volume {} has a restricted type", vol.name));
        }
    }
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|s| s.type_.clone());
    let all = ps
        .init_containers
        .iter()
        .flatten()
        .chain(ps.containers.iter());
    for c in all {
        let sc = c.security_context.clone().unwrap_or_default();
        let name = &c.name;
        if sc.privileged == Some(true) {
            v.push(format!("{name}: privileged"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!("{name}: allowPrivilegeEscalation != false"));
        }
        if sc.run_as_non_root.or(psc.run_as_non_root) != Some(true) {
            v.push(format!("{name}: runAsNonRoot != true"));
        }
        if sc.run_as_user.or(psc.run_as_user) == Some(0) {
            v.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = sc.seccomp_profile.map(|s| s.type_).or(pod_seccomp.clone());
        if !matches!(seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("{name}: seccompProfile {seccomp:?}"));
        }
        let caps = sc.capabilities.unwrap_or_default();
        if !caps.drop.unwrap_or_default().iter().any(|d| d == "ALL") {
            v.push(format!("{name}: capabilities do not drop ALL"));
        }
        if caps
            .add
            .unwrap_or_default()
            .iter()
            .any(|a| a != "NET_BIND_SERVICE")
        {
            v.push(format!("{name}: adds capabilities"));
        }
        if c.ports
            .iter()
            .flatten()
            .any(|p| p.host_port.is_some_and(|h| h != 0))
        {
            v.push(format!("{name}: hostPort"));
        }
    }
    v
}

/// An app pod that passes Pod Security "restricted" still passes once injected, for both
/// hydrator placements and whether the pod or only its container names the user; the
/// hydrator runs as the app's user (it writes the local copy the app then writes) and has
/// resource requests and a memory limit.
#[test]
fn injected_pods_pass_pod_security_restricted() {
    let restricted_app = json!({"runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
    let pods = [
        // Only the container says it.
        json!({"containers": [{"name": "app", "image": "example/app:1", "securityContext": restricted_app}]}),
        // The pod says most of it.
        json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
               "containers": [{"name": "app", "image": "example/app:1",
                               "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}),
    ];
    for spec in pods {
        let p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app-0", "namespace": "shop",
                         "annotations": {"sqlitekube.dev/database": "orders"}},
            "spec": spec,
        }))
        .unwrap();
        assert!(
            restricted_violations(&p).is_empty(),
            "the app pod itself must pass"
        );
        for native in [false, true] {
            let opt = opt_in(&p).unwrap().unwrap();
            let out = inject(&p, &db(), &opt, &cfg(native)).unwrap();
            let v = restricted_violations(&out);
            assert!(
                v.is_empty(),
                "injected pod (native sidecar {native}) fails restricted: {v:?}"
            );
            let h = &out.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
            let sc = h.security_context.as_ref().unwrap();
            let pod_user = out
                .spec
                .as_ref()
                .unwrap()
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_user);
            assert_eq!(
                sc.run_as_user.or(pod_user),
                Some(1000),
                "the hydrator runs as the app's user"
            );
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            let r = h.resources.as_ref().expect("hydrator resources");
            assert!(r
                .requests
                .as_ref()
                .is_some_and(|q| q.contains_key("cpu") && q.contains_key("memory")));
            assert!(r.limits.as_ref().is_some_and(|q| q.contains_key("memory")));
        }
    }
    // The checker is not vacuous: the plain app pod of the other tests runs as whatever its
    // image says, which restricted refuses.
    assert!(!restricted_violations(&pod(json!({}))).is_empty());
}

/// The pod gets the S3 session token from the same Secret key the operator reads
/// (optional: long-term keys have none).
#[test]
fn pods_get_the_session_token_the_operator_uses() {
    let p = pod(json!({"sqlitekube.dev/database": "orders"}));
    let out = inject(&p, &db(), &opt_in(&p).unwrap().unwrap(), &cfg(false)).unwrap();
    let app = &out.spec.as_ref().unwrap().containers[0];
    let tok = app
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "AWS_SESSION_TOKEN")
        .expect("AWS_SESSION_TOKEN injected");
    let r = tok
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (r.name.as_str(), r.key.as_str(), r.optional),
        (
            "s3-creds",
            operator::credentials::SESSION_TOKEN_KEY,
            Some(true)
        )
    );
}

#[test]
fn the_preload_annotation_puts_the_library_first_in_ld_preload() {
    let ld = |p: &Pod| {
        p.spec.as_ref().unwrap().containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "LD_PRELOAD")
            .and_then(|e| e.value.clone())
    };
    let ours = "/sqlite-kube/lib/libsqlite_kube_preload.so";
    // Off unless asked for.
    let p = pod(json!({"sqlitekube.dev/database": "orders"}));
    let out = inject(&p, &db(), &opt_in(&p).unwrap().unwrap(), &cfg(false)).unwrap();
    assert_eq!(ld(&out), None);
    let p = pod(json!({"sqlitekube.dev/database": "orders", "sqlitekube.dev/preload": "true"}));
    let out = inject(&p, &db(), &opt_in(&p).unwrap().unwrap(), &cfg(false)).unwrap();
    assert_eq!(ld(&out).as_deref(), Some(ours));
    // What the app already preloads stays, after ours.
    let mut p = pod(json!({"sqlitekube.dev/database": "orders", "sqlitekube.dev/preload": "true"}));
    p.spec.as_mut().unwrap().containers[0]
        .env
        .as_mut()
        .unwrap()
        .push(
            serde_json::from_value(
                json!({"name": "LD_PRELOAD", "value": "/usr/lib/libjemalloc.so.2"}),
            )
            .unwrap(),
        );
    let out = inject(&p, &db(), &opt_in(&p).unwrap().unwrap(), &cfg(false)).unwrap();
    assert_eq!(
        ld(&out).as_deref(),
        Some(format!("{ours}:/usr/lib/libjemalloc.so.2").as_str())
    );
    let p = pod(json!({"sqlitekube.dev/database": "orders", "sqlitekube.dev/preload": "yes"}));
    let e = opt_in(&p).unwrap_err();
    assert!(
        e.contains("sqlitekube.dev/preload") && e.contains("\"yes\""),
        "{e}"
    );
}
