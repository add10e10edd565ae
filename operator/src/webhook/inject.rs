//! What the webhook does to an opted-in pod, as a pure function of the pod, its
//! `SqliteDatabase` and the server's capabilities (so unit tests can pin the result).
//!
//! The pod gets: the hydrator (a native sidecar on servers with them, else a classic init
//! container) that installs the VFS extension into a shared volume and hydrates; volumes for
//! the extension and the local database; the VFS settings as environment variables on every
//! app container, credentials only as `secretKeyRef`s; a grace period long enough for the
//! final sync. A pod already carrying [`INJECTED`] is left as it is (idempotent).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, KeyToPath,
    ObjectFieldSelector, Pod, PodSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use settings::env;

use crds::{
    parse_duration, parse_quantity, HydrationMode, SqliteDatabase, ANNOTATION_DATABASE,
    ANNOTATION_MODE, ANNOTATION_MOUNT_PATH, ANNOTATION_PRELOAD,
};

/// Set on a pod once injected.
pub const INJECTED: &str = "sqlitekube.dev/injected";
pub const HYDRATOR_NAME: &str = "sqlite-kube-hydrator";
pub const LIB_VOLUME: &str = "sqlite-kube-lib";
pub const DATA_VOLUME: &str = "sqlite-kube-data";
pub const GCS_VOLUME: &str = "sqlite-kube-gcs";
/// Where the extension and `vfs.env` appear in every container.
pub const LIB_DIR: &str = "/sqlite-kube/lib";
const GCS_DIR: &str = "/var/run/sqlite-kube/gcs";

/// Webhook settings.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    pub hydrator_image: String,
    /// Inject the hydrator as a native sidecar (`restartPolicy: Always` init container,
    /// Kubernetes ≥ 1.29) instead of a classic init container.
    pub native_sidecar: bool,
}

/// Whether a server of this version (`1.<minor>`) runs native sidecars by default.
pub fn supports_native_sidecars(minor: u32) -> bool {
    minor >= 29
}

/// Read or write access to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    Read,
}

/// The annotation values of an opted-in pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptIn {
    /// The first database the annotation names, and its mode.
    pub database: String,
    pub mode: Mode,
    /// Every database the annotation names (`orders, sessions:read`), the first included,
    /// in order.
    pub databases: Vec<(String, Mode)>,
    pub mount_path: Option<String>,
    /// `LD_PRELOAD` the preload library (unmodified apps on the system libsqlite3).
    pub preload: bool,
}

/// Reads the opt-in annotations: `None` for pods that did not opt in or are already
/// injected, `Err` with a message for bad values.
pub fn opt_in(pod: &Pod) -> Result<Option<OptIn>, String> {
    let ann = pod.metadata.annotations.clone().unwrap_or_default();
    if ann.contains_key(INJECTED) {
        return Ok(None);
    }
    let Some(raw) = ann.get(ANNOTATION_DATABASE).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let mode = match ann.get(ANNOTATION_MODE).map(String::as_str) {
        None | Some("write") => Mode::Write,
        Some("read") => Mode::Read,
        Some(other) => {
            return Err(format!(
                "annotation {ANNOTATION_MODE}: {other:?} is not \"write\" or \"read\""
            ))
        }
    };
    let mount_path = ann.get(ANNOTATION_MOUNT_PATH).cloned();
    if let Some(p) = &mount_path {
        if !p.starts_with('/') {
            return Err(format!(
                "annotation {ANNOTATION_MOUNT_PATH}: {p:?} must be an absolute path"
            ));
        }
    }
    let preload = match ann.get(ANNOTATION_PRELOAD).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!(
                "annotation {ANNOTATION_PRELOAD}: {other:?} is not \"true\" or \"false\""
            ))
        }
    };
    let databases = databases(raw, mode)?;
    Ok(Some(OptIn {
        database: databases[0].0.clone(),
        mode: databases[0].1,
        databases,
        mount_path,
        preload,
    }))
}

/// The databases an annotation value names: `name` or `name:write|read`, comma-separated
/// (`default` for entries without a mode).
fn databases(raw: &str, default: Mode) -> Result<Vec<(String, Mode)>, String> {
    let mut out: Vec<(String, Mode)> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, mode) = match item.split_once(':') {
            None => (item, default),
            Some((n, "write")) => (n.trim(), Mode::Write),
            Some((n, "read")) => (n.trim(), Mode::Read),
            Some((_, other)) => {
                return Err(format!(
                    "annotation {ANNOTATION_DATABASE}: {item:?}: mode {other:?} is not \"write\" or \"read\""
                ))
            }
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "annotation {ANNOTATION_DATABASE}: {name:?} is not a SqliteDatabase name"
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "annotation {ANNOTATION_DATABASE}: {name:?} is named twice"
            ));
        }
        out.push((name.to_string(), mode));
    }
    if out.is_empty() {
        return Err(format!(
            "annotation {ANNOTATION_DATABASE}: {raw:?} names no database"
        ));
    }
    Ok(out)
}

/// Puts the preload library first in `LD_PRELOAD`, keeping what the container already
/// preloads (a value from a reference cannot be merged, so ours replaces it).
fn preload(envs: &mut Vec<EnvVar>) {
    let ours = format!("{LIB_DIR}/{PRELOAD_FILE}");
    match envs.iter_mut().find(|e| e.name == "LD_PRELOAD") {
        Some(e) => {
            let theirs = e.value.clone().unwrap_or_default();
            if !theirs.split([':', ' ']).any(|p| p == ours) {
                e.value = Some(if theirs.trim().is_empty() || e.value_from.is_some() {
                    ours
                } else {
                    format!("{ours}:{theirs}")
                });
                e.value_from = None;
            }
        }
        None => envs.push(set_env("LD_PRELOAD", ours)),
    }
}

/// File name of the preload library in the shared volume (`hydrator init` puts it there).
pub const PRELOAD_FILE: &str = "libsqlite_kube_preload.so";

fn set_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The downward API: a field of the pod itself.
fn field_env(name: &str, field: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    secret_env_opt(name, secret, key, false)
}

fn secret_env_opt(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..Default::default()
        }),
    }
}

/// Credentials as environment (secret references only) plus any volume they need; `i`:
/// the database's place in the pod (its GCS key gets its own volume).
fn credentials(db: &SqliteDatabase, i: usize) -> (Vec<EnvVar>, Vec<Volume>, Vec<VolumeMount>) {
    let (gcs_volume, gcs_dir) = if i == 0 {
        (GCS_VOLUME.to_string(), GCS_DIR.to_string())
    } else {
        (format!("{GCS_VOLUME}-{i}"), format!("{GCS_DIR}-{i}"))
    };
    let r = &db.spec.replica;
    let mut envs = Vec::new();
    let mut vols = Vec::new();
    let mut mounts = Vec::new();
    if let Some(s3) = &r.s3 {
        if let Some(c) = &s3.credentials_secret_ref {
            envs.push(secret_env(
                "AWS_ACCESS_KEY_ID",
                &c.name,
                &c.access_key_id_key,
            ));
            envs.push(secret_env(
                "AWS_SECRET_ACCESS_KEY",
                &c.name,
                &c.secret_access_key_key,
            ));
            // Temporary credentials: the operator uses the same key of the same Secret.
            envs.push(secret_env_opt(
                "AWS_SESSION_TOKEN",
                &c.name,
                crate::credentials::SESSION_TOKEN_KEY,
                true,
            ));
        }
        if let Some(region) = &s3.region {
            envs.push(set_env("AWS_REGION", region));
        }
    }
    if let Some(a) = &r.azure {
        envs.push(set_env("AZURE_STORAGE_ACCOUNT", &a.account_name));
        if let Some(c) = &a.credentials_secret_ref {
            envs.push(secret_env("AZURE_STORAGE_KEY", &c.name, &c.key));
        }
    }
    if let Some(c) = r
        .gcs
        .as_ref()
        .and_then(|g| g.credentials_secret_ref.as_ref())
    {
        vols.push(Volume {
            name: gcs_volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(c.name.clone()),
                items: Some(vec![KeyToPath {
                    key: c.key.clone(),
                    path: "service-account.json".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: gcs_volume,
            mount_path: gcs_dir.clone(),
            read_only: Some(true),
            ..Default::default()
        });
        envs.push(set_env(
            env::GOOGLE_APPLICATION_CREDENTIALS,
            format!("{gcs_dir}/service-account.json"),
        ));
    }
    (envs, vols, mounts)
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// The user the hydrator runs as when the pod names none: the conventional "nonroot".
pub const HYDRATOR_UID: i64 = 65532;

/// The hydrator's security context: what Pod Security "restricted" asks of a container.
/// It runs as the app's user when the pod or its first container names one (the local
/// copy it writes must be writable by the app), else as [`HYDRATOR_UID`].
fn hydrator_security(ps: &PodSpec) -> SecurityContext {
    let pod = ps.security_context.as_ref();
    let app = ps
        .containers
        .first()
        .and_then(|c| c.security_context.as_ref());
    let pod_user = pod.and_then(|p| p.run_as_user);
    let user = app.and_then(|c| c.run_as_user).or(pod_user);
    let group = app
        .and_then(|c| c.run_as_group)
        .or(pod.and_then(|p| p.run_as_group));
    SecurityContext {
        run_as_non_root: Some(true),
        // Only when the pod level does not already say it (then it applies as it is).
        run_as_user: match (user, pod_user) {
            (Some(u), Some(p)) if u == p => None,
            (Some(u), _) if u != 0 => Some(u),
            _ => Some(HYDRATOR_UID),
        },
        run_as_group: group.filter(|g| *g != 0).or(Some(HYDRATOR_UID)),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The hydrator's resources: the spec's, or small defaults (it streams; as a native
/// sidecar it stays for the pod's life, so its requests count the whole time).
fn hydrator_resources(db: &SqliteDatabase) -> ResourceRequirements {
    db.spec.hydration.resources.clone().unwrap_or_else(|| {
        let q = |s: &str| Quantity(s.to_string());
        ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), q("50m")),
                    ("memory".to_string(), q("64Mi")),
                ]
                .into(),
            ),
            limits: Some([("memory".to_string(), q("256Mi"))].into()),
            ..Default::default()
        }
    })
}

/// Adds `add` to `list`, replacing entries of the same name.
fn upsert<T: Clone>(list: &mut Vec<T>, add: &[T], name: impl Fn(&T) -> &str) {
    for a in add {
        list.retain(|x| name(x) != name(a));
        list.push(a.clone());
    }
}

/// The mutated pod. `db` must have a valid spec (the caller rejects invalid ones).
pub fn inject(
    pod: &Pod,
    db: &SqliteDatabase,
    opt: &OptIn,
    cfg: &InjectConfig,
) -> Result<Pod, String> {
    inject_all(pod, &[(db, opt.mode)], opt, cfg)
}

/// One database's part of the pod: its hydrator, the app's settings for it (standard
/// variable names; credentials as Secret references), the volumes its credentials need.
struct Part {
    hydrator: Container,
    env: Vec<EnvVar>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    db_file: String,
    drain: std::time::Duration,
}

fn part(
    db: &SqliteDatabase,
    mode: Mode,
    i: usize,
    data_dir: &str,
    ps: &PodSpec,
    cfg: &InjectConfig,
) -> Result<Part, String> {
    let spec = &db.spec;
    let name = db.metadata.name.clone().unwrap_or_default();
    let url = spec
        .replica
        .url()
        .ok_or_else(|| format!("SqliteDatabase {name} has no single replica backend"))?;
    // The name the app opens (virtual: the VFS serves it), and the real local copy.
    let db_file = format!("{}/{}.db", data_dir.trim_end_matches('/'), name);
    let hydrated = format!("{db_file}-hydrated");
    let cache = parse_quantity(&spec.hydration.cache_size)
        .map_err(|e| format!("spec.hydration.cacheSize: {e}"))?;
    let drain = parse_duration(&spec.writer.drain_timeout)
        .map_err(|e| format!("spec.writer.drainTimeout: {e}"))?;
    let (cred_env, cred_vols, cred_mounts) = credentials(db, i);

    // The hydrator: installs the extension, writes vfs.env, hydrates per spec.
    let mut hyd_env = vec![
        set_env(env::INIT_REPLICA_URL, &url),
        set_env(env::DB_PATH, &hydrated),
        set_env(env::INIT_HYDRATION, spec.hydration.mode.as_str()),
        set_env(env::INIT_SHARED_DIR, LIB_DIR),
    ];
    if i > 0 {
        hyd_env.push(set_env(env::INIT_INDEX, i.to_string()));
    }
    hyd_env.extend(cred_env.iter().cloned());
    let mut hyd_mounts = vec![
        mount(LIB_VOLUME, LIB_DIR, false),
        mount(DATA_VOLUME, data_dir, false),
    ];
    hyd_mounts.extend(cred_mounts.iter().cloned());
    let mut hydrator = Container {
        name: hydrator_name(i),
        image: Some(cfg.hydrator_image.clone()),
        args: Some(vec!["init".into()]),
        env: Some(hyd_env),
        volume_mounts: Some(hyd_mounts),
        security_context: Some(hydrator_security(ps)),
        resources: Some(hydrator_resources(db)),
        ..Default::default()
    };
    if cfg.native_sidecar {
        // Runs beside the app for the pod's life; the app starts once init is done (the
        // startup probe on the `ready` file the hydrator writes last).
        let ready = if i == 0 {
            "ready".to_string()
        } else {
            format!("ready-{i}")
        };
        hydrator.args = Some(vec!["init".into(), "--stay".into()]);
        hydrator.restart_policy = Some("Always".into());
        hydrator.startup_probe = Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "test".into(),
                    "-f".into(),
                    format!("{LIB_DIR}/{ready}"),
                ]),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(600),
            ..Default::default()
        });
    }

    let write = mode == Mode::Write;
    let hydrate = spec.hydration.mode != HydrationMode::Disabled;
    let mut app_env = vec![
        set_env(env::DATABASE, &name),
        set_env(env::DB_PATH, &db_file),
        set_env(env::VFS_PATH, format!("{LIB_DIR}/libsqlite_kube_vfs.so")),
        set_env(env::REPLICA_URL, &url),
        set_env(env::WRITE_ENABLED, if write { "true" } else { "false" }),
        set_env(env::SYNC_INTERVAL, &spec.sync_interval),
        set_env(
            env::HYDRATION_ENABLED,
            if hydrate { "true" } else { "false" },
        ),
        set_env(env::HYDRATION_PATH, &hydrated),
        set_env(env::BUFFER_PATH, format!("{db_file}-buffer")),
        set_env(env::CACHE_SIZE, cache.to_string()),
        set_env(env::SNAPSHOT_INTERVAL, &spec.snapshot_interval),
        set_env(env::SNAPSHOT_RETENTION, &spec.retention),
    ];
    if write {
        // Lease-gated writes: the VFS holds the database's writer Lease while it writes.
        app_env.extend([
            set_env(env::LEASE, crate::writer_lease::lease_name(&name)),
            field_env(env::NAMESPACE, "metadata.namespace"),
            field_env(env::POD_NAME, "metadata.name"),
            field_env(env::POD_UID, "metadata.uid"),
            set_env(env::LEASE_DURATION, &spec.writer.lease_duration),
            set_env(env::DRAIN_TIMEOUT, &spec.writer.drain_timeout),
        ]);
        if spec.writer.allow_unfenced_store {
            app_env.push(set_env(env::ALLOW_UNFENCED_STORE, "true"));
        }
    }
    app_env.extend(cred_env);
    Ok(Part {
        hydrator,
        env: app_env,
        volumes: cred_vols,
        mounts: cred_mounts,
        db_file,
        drain,
    })
}

/// The hydrator of the database at place `i` in the pod.
pub fn hydrator_name(i: usize) -> String {
    if i == 0 {
        HYDRATOR_NAME.to_string()
    } else {
        format!("{HYDRATOR_NAME}-{i}")
    }
}

/// The app containers' environment for several databases: per database, its settings
/// become its entry in `SQLITE_KUBE_DATABASES` (JSON, path -> settings) and its Secret
/// references variables of its own (`SQLITE_KUBE_DB<i>_<NAME>`) that the entry names as
/// `$(…)`, which the kubelet expands (they come first in the list, as it requires). The
/// pod's own fields, the extension's path and the first database's path stay plain.
fn several(parts: &[Part]) -> Result<Vec<EnvVar>, String> {
    let mut common: Vec<EnvVar> = Vec::new();
    let mut entries = serde_json::Map::new();
    for (i, p) in parts.iter().enumerate() {
        let mut entry = serde_json::Map::new();
        for e in &p.env {
            let field = e.value_from.as_ref().is_some_and(|f| f.field_ref.is_some());
            if field || e.name == env::VFS_PATH || e.name == env::DB_PATH {
                if !common.iter().any(|c| c.name == e.name) {
                    common.push(e.clone());
                }
                if e.name != env::DB_PATH {
                    continue;
                }
            }
            match (&e.value, &e.value_from) {
                (_, Some(_)) => {
                    let own = format!("SQLITE_KUBE_DB{i}_{}", e.name);
                    entry.insert(e.name.clone(), format!("$({own})").into());
                    common.push(EnvVar {
                        name: own,
                        ..e.clone()
                    });
                }
                (Some(v), None) => {
                    entry.insert(e.name.clone(), v.clone().into());
                }
                (None, None) => {}
            }
        }
        entries.insert(p.db_file.clone(), entry.into());
    }
    let json = serde_json::to_string(&entries).map_err(|e| e.to_string())?;
    common.push(set_env(env::DATABASES, json));
    Ok(common)
}

/// The mutated pod for the databases `dbs` (each with a valid spec; the caller rejects
/// invalid ones). One database keeps the plain variables; several get
/// `SQLITE_KUBE_DATABASES` ([`several`]), a hydrator each, and a grace period for all their
/// final syncs.
pub fn inject_all(
    pod: &Pod,
    dbs: &[(&SqliteDatabase, Mode)],
    opt: &OptIn,
    cfg: &InjectConfig,
) -> Result<Pod, String> {
    let first = dbs.first().ok_or("no database to inject")?.0;
    let data_dir = opt
        .mount_path
        .clone()
        .unwrap_or_else(|| first.spec.hydration.path.clone());
    let mut out = pod.clone();
    let ann = out.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(INJECTED.into(), "true".into());
    let ps = out.spec.get_or_insert_with(Default::default);

    let parts = dbs
        .iter()
        .enumerate()
        .map(|(i, (db, mode))| part(db, *mode, i, &data_dir, ps, cfg))
        .collect::<Result<Vec<Part>, String>>()?;

    let mut volumes = vec![
        Volume {
            name: LIB_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: DATA_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    let mut app_mounts = vec![
        mount(LIB_VOLUME, LIB_DIR, true),
        mount(DATA_VOLUME, &data_dir, false),
    ];
    for p in &parts {
        volumes.extend(p.volumes.iter().cloned());
        app_mounts.extend(p.mounts.iter().cloned());
    }
    upsert(ps.volumes.get_or_insert_with(Vec::new), &volumes, |v| {
        &v.name
    });

    let inits = ps.init_containers.get_or_insert_with(Vec::new);
    inits.retain(|c| c.name != HYDRATOR_NAME && !c.name.starts_with(&format!("{HYDRATOR_NAME}-")));
    for (i, p) in parts.iter().enumerate() {
        inits.insert(i, p.hydrator.clone());
    }

    // Every app container gets the VFS settings and the volumes.
    let app_env = if parts.len() == 1 {
        parts[0].env.clone()
    } else {
        several(&parts)?
    };
    for c in ps.containers.iter_mut() {
        upsert(c.env.get_or_insert_with(Vec::new), &app_env, |e| &e.name);
        if opt.preload {
            preload(c.env.get_or_insert_with(Vec::new));
        }
        upsert(
            c.volume_mounts.get_or_insert_with(Vec::new),
            &app_mounts,
            |m| &m.name,
        );
    }

    // Long enough for every final sync (one after the other at exit) plus the releases.
    let need = parts.iter().map(|p| p.drain.as_secs() as i64).sum::<i64>() + 10;
    let grace = ps.termination_grace_period_seconds.unwrap_or(30);
    ps.termination_grace_period_seconds = Some(grace.max(need));
    Ok(out)
}
