//! Every rule the CRD schema declares, enforced in code (servers before 1.25 ignore CEL).

use crate::spec::SqliteDatabaseSpec;
use crate::{parse_duration, parse_quantity};
use std::time::Duration;

/// One invalid field, named by its path in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems as one line (`field: message; …`), or `None` when the spec is valid: the
/// text both the status condition and the webhook's refusal show.
pub fn validation_message(spec: &SqliteDatabaseSpec) -> Option<String> {
    let errors = validate(spec);
    (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn endpoint_ok(err: &mut impl FnMut(&str, String), field: &str, e: &Option<String>) {
    if let Some(e) = e {
        let ok = (e.starts_with("http://") || e.starts_with("https://"))
            && e.len() >= 9
            && !e.contains(['?', '#', ' ']);
        if !ok {
            err(field, format!("{e:?} must be an http:// or https:// URL"));
        }
    }
}

/// All problems with a spec (empty when valid).
pub fn validate(spec: &SqliteDatabaseSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut err = |field: &str, message: String| {
        errs.push(FieldError {
            field: field.to_string(),
            message,
        })
    };
    validate_replica(&spec.replica, "spec.replica", &mut err);
    if let Some(b) = &spec.bootstrap {
        crate::bootstrap_rules(spec, b, &mut err);
        validate_replica(&b.from.replica, "spec.bootstrap.from.replica", &mut err);
    }

    let mut dur = |field: &str, v: &str, min: Duration| -> Option<Duration> {
        match parse_duration(v) {
            Ok(d) if d < min => {
                err(field, format!("{v:?} is shorter than the minimum {min:?}"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                err(field, e.to_string());
                None
            }
        }
    };
    let sync = dur(
        "spec.syncInterval",
        &spec.sync_interval,
        Duration::from_millis(100),
    );
    dur(
        "spec.snapshotInterval",
        &spec.snapshot_interval,
        Duration::from_secs(60),
    );
    let retention = dur("spec.retention", &spec.retention, Duration::from_secs(60));
    let lease = dur(
        "spec.writer.leaseDuration",
        &spec.writer.lease_duration,
        Duration::from_secs(5),
    );
    let drain = dur(
        "spec.writer.drainTimeout",
        &spec.writer.drain_timeout,
        Duration::from_secs(1),
    );
    if let (Some(s), Some(r)) = (sync, retention) {
        if r < s {
            err(
                "spec.retention",
                "must be at least the sync interval".into(),
            );
        }
    }
    if let (Some(s), Some(d)) = (sync, drain) {
        if d < s {
            err(
                "spec.writer.drainTimeout",
                "must be at least the sync interval (the final sync needs one)".into(),
            );
        }
    }
    if let (Some(s), Some(l)) = (sync, lease) {
        if l < s * 3 {
            err(
                "spec.writer.leaseDuration",
                "must be at least three sync intervals".into(),
            );
        }
    }
    if !spec.hydration.path.starts_with('/') {
        err(
            "spec.hydration.path",
            format!("{:?} must be an absolute path", spec.hydration.path),
        );
    }
    if let Err(e) = parse_quantity(&spec.hydration.cache_size) {
        err("spec.hydration.cacheSize", e.to_string());
    }
    errs
}

/// The rules for one replica spec (`spec.replica`, `spec.bootstrap.from.replica`), with
/// field names under `prefix`.
fn validate_replica(
    r: &crate::spec::ReplicaSpec,
    prefix: &str,
    err: &mut impl FnMut(&str, String),
) {
    let set = r.backends();
    if set.len() != 1 {
        let found = if set.is_empty() {
            "none".to_string()
        } else {
            set.join(", ")
        };
        err(
            prefix,
            format!("exactly one of s3, gcs, azure or file must be set (found: {found})"),
        );
    }
    // A prefix names a place of its own: no leading slash, no `..` (which would climb into
    // another database's prefix), and not only `.` and slashes (the whole bucket).
    let prefix_ok = |p: &str| {
        !p.starts_with('/')
            && !p.split('/').any(|s| s == "..")
            && p.split('/').any(|s| !s.is_empty() && s != ".")
    };
    if let Some(s3) = &r.s3 {
        if !(3..=63).contains(&s3.bucket.len()) {
            err(
                &format!("{prefix}.s3.bucket"),
                format!("{:?} must be 3 to 63 characters", s3.bucket),
            );
        }
        if !prefix_ok(&s3.path) {
            err(
                &format!("{prefix}.s3.path"),
                "must be a non-empty prefix without a leading slash or `..`".into(),
            );
        }
        endpoint_ok(err, &format!("{prefix}.s3.endpoint"), &s3.endpoint);
        if let Some(c) = &s3.credentials_secret_ref {
            if c.name.is_empty() {
                err(
                    &format!("{prefix}.s3.credentialsSecretRef.name"),
                    "must not be empty".into(),
                );
            }
        }
    }
    if let Some(g) = &r.gcs {
        endpoint_ok(err, &format!("{prefix}.gcs.endpoint"), &g.endpoint);
        if !(3..=222).contains(&g.bucket.len()) {
            err(
                &format!("{prefix}.gcs.bucket"),
                format!("{:?} must be 3 to 222 characters", g.bucket),
            );
        }
        if !prefix_ok(&g.path) {
            err(
                &format!("{prefix}.gcs.path"),
                "must be a non-empty prefix without a leading slash or `..`".into(),
            );
        }
    }
    if let Some(a) = &r.azure {
        endpoint_ok(err, &format!("{prefix}.azure.endpoint"), &a.endpoint);
        if !(3..=24).contains(&a.account_name.len()) {
            err(
                &format!("{prefix}.azure.accountName"),
                "must be 3 to 24 characters".into(),
            );
        }
        if !(3..=63).contains(&a.container.len()) {
            err(
                &format!("{prefix}.azure.container"),
                "must be 3 to 63 characters".into(),
            );
        }
        if !prefix_ok(&a.path) {
            err(
                &format!("{prefix}.azure.path"),
                "must be a non-empty prefix without a leading slash or `..`".into(),
            );
        }
    }
    if let Some(f) = &r.file {
        if !f.path.starts_with('/') || f.path.split('/').any(|s| s == "..") {
            err(
                &format!("{prefix}.file.path"),
                format!("{:?} must be an absolute path without `..`", f.path),
            );
        }
    }
}
