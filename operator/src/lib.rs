//! The sqlite-kube operator.
//!
//! - [`controller`]: the `SqliteDatabase` controller (watch, reconcile, error backoff).
//! - [`reconcile`]: what one reconcile does: validate, check the replica, own the writer
//!   Lease, write status, and clean up through a finalizer.
//! - [`leader`]: leader election between operator replicas.
//! - [`metrics`], [`http`]: Prometheus metrics and health endpoints.

pub mod bootstrap;
pub mod conditions;
pub mod conflict;
pub mod context;
pub mod controller;
pub mod credentials;
pub mod database_metrics;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod telemetry;
pub mod webhook;
pub mod writer_lease;

pub use context::{Context, Settings};
pub use error::{Error, Result};

/// The name the operator reports Events and field ownership under.
pub const MANAGER: &str = "sqlite-kube-operator";
/// The hydrator image injected into pods (same tag as the manifests in `config/`).
pub const DEFAULT_HYDRATOR_IMAGE: &str = "ghcr.io/sqlite-kube/hydrator:0.1.0";
/// Label on objects the operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "sqlite-kube");
