//! The mutating admission webhook for pods (`POST /mutate-pods`, HTTPS).
//!
//! Opted-in pods (annotation `sqlitekube.dev/database`) are injected with the hydrator and
//! the VFS settings ([`inject`]); a pod naming a database that does not exist, or one whose
//! spec is invalid, is refused with a message that says so; other pods pass untouched.
//! The serving certificate comes from files (a mounted Secret, e.g. issued by
//! cert-manager, whose CA injector fills the webhook configuration's `caBundle`).

pub mod certs;
pub mod inject;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tracing::{info, warn};

use crds::{SqliteDatabase, ANNOTATION_DATABASE};
use inject::InjectConfig;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct WebhookState {
    pub client: Client,
    pub config: InjectConfig,
    pub metrics: Arc<Metrics>,
    /// Watched SqliteDatabases, so admission rarely needs an API round trip; a miss (a
    /// database created a moment ago) falls back to a GET.
    pub cache: Option<Store<SqliteDatabase>>,
}

/// Starts a watch-backed cache of SqliteDatabases (in `namespace`, or all).
pub fn database_cache(client: Client, namespace: Option<&str>) -> Store<SqliteDatabase> {
    let api: Api<SqliteDatabase> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                warn!(error = %e, "SqliteDatabase cache watch");
            }
        }
    });
    reader
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/mutate-pods", post(mutate_pods))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(state)
}

async fn mutate_pods(State(s): State<WebhookState>, body: Bytes) -> Response {
    let started = Instant::now();
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}"),
            )
                .into_response()
        }
    };
    let req: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("AdmissionReview without a request: {e}"),
            )
                .into_response()
        }
    };
    let resp = decide(&s, &req).await;
    s.metrics
        .admission_duration
        .observe(started.elapsed().as_secs_f64());
    Json(resp.into_review()).into_response()
}

/// The SqliteDatabase `name` in `ns`, if a pod may use it now; else why not.
async fn admissible(s: &WebhookState, ns: &str, name: &str) -> Result<SqliteDatabase, String> {
    let cached = s.cache.as_ref().and_then(|c| {
        c.get(&ObjectRef::new(name).within(ns))
            .map(|d| d.as_ref().clone())
    });
    let dbs: Api<SqliteDatabase> = Api::namespaced(s.client.clone(), ns);
    let lookup = match cached {
        Some(db) => Ok(Some(db)),
        None => dbs.get_opt(name).await,
    };
    let db = match lookup {
        Ok(Some(db)) => db,
        Ok(None) => {
            return Err(format!(
                "SqliteDatabase {ns}/{name} (annotation {ANNOTATION_DATABASE}) does not exist; create it \
                 first (kubectl -n {ns} get sqlitedatabases)"
            ))
        }
        Err(e) => {
            warn!(error = %e, "reading SqliteDatabase for admission");
            return Err(format!("could not read SqliteDatabase {ns}/{name}: {e}"));
        }
    };
    if let Some(msg) = crds::validation_message(&db.spec) {
        return Err(format!(
            "SqliteDatabase {ns}/{name} has an invalid spec: {msg}"
        ));
    }
    if db.spec.bootstrap.is_some()
        && !db.status.as_ref().is_some_and(|st| {
            crate::conditions::is_true(&st.conditions, crds::condition::BOOTSTRAPPED)
        })
    {
        let why = db
            .status
            .as_ref()
            .and_then(|st| crate::conditions::get(&st.conditions, crds::condition::BOOTSTRAPPED))
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "not started yet".into());
        return Err(format!(
            "SqliteDatabase {ns}/{name} is still being bootstrapped from spec.bootstrap.from ({why}); \
             its pods are admitted once condition Bootstrapped is True"
        ));
    }
    if let Some(cache) = &s.cache {
        let all = cache.state();
        if let Some(why) = crate::conflict::refusal(&db, all.iter().map(|d| d.as_ref()), ns) {
            return Err(format!("SqliteDatabase {ns}/{name} cannot be used: {why}"));
        }
    }
    Ok(db)
}

/// Allow untouched, allow with a patch, or deny with a reason.
pub async fn decide(s: &WebhookState, req: &AdmissionRequest<Pod>) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    let Some(pod) = &req.object else {
        return resp;
    };
    let opt = match inject::opt_in(pod) {
        Ok(None) => return resp,
        Ok(Some(o)) => o,
        Err(msg) => return resp.deny(msg),
    };
    let ns = req
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let pod_name = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone())
        .unwrap_or_default();
    let mut dbs = Vec::new();
    for (name, mode) in &opt.databases {
        match admissible(s, &ns, name).await {
            Ok(db) => dbs.push((db, *mode)),
            Err(msg) => return resp.deny(msg),
        }
    }
    let refs: Vec<(&SqliteDatabase, inject::Mode)> = dbs.iter().map(|(d, m)| (d, *m)).collect();
    let mutated = match inject::inject_all(pod, &refs, &opt, &s.config) {
        Ok(p) => p,
        Err(msg) => return resp.deny(msg),
    };
    let (Ok(before), Ok(after)) = (serde_json::to_value(pod), serde_json::to_value(&mutated))
    else {
        return resp.deny("internal error serialising the pod");
    };
    let patch = json_patch::diff(&before, &after);
    let names: Vec<&str> = opt.databases.iter().map(|(n, _)| n.as_str()).collect();
    info!(namespace = %ns, pod = %pod_name, databases = ?names, mode = ?opt.mode, "injecting");
    match resp.clone().with_patch(patch) {
        Ok(r) => r,
        Err(e) => resp.deny(format!("internal error building the patch: {e}")),
    }
}
