//! State shared by every reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::Client;

use crds::SqliteDatabase;

use crate::metrics::Metrics;

/// Operator settings (from the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a healthy database's status is refreshed from its replica.
    pub resync: Duration,
    /// Limit for one replica check (listing the replica).
    pub replica_timeout: Duration,
    /// First retry delay after an error; doubles per consecutive error.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Whether a database may ask for the operator's own cloud identity
    /// (`spec.replica.useOperatorIdentity`).
    pub allow_operator_identity: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resync: Duration::from_secs(30),
            replica_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            allow_operator_identity: false,
        }
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Consecutive failures per object (`namespace/name`), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The controller's cache of every watched `SqliteDatabase` (set when it starts).
    databases: OnceLock<Store<SqliteDatabase>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, settings: Settings, instance: &str) -> Self {
        let reporter = Reporter {
            controller: crate::MANAGER.into(),
            instance: Some(instance.to_string()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            failures: Mutex::new(HashMap::new()),
            databases: OnceLock::new(),
        }
    }

    /// Gives reconciles the controller's cache of all watched databases.
    pub fn set_databases(&self, store: Store<SqliteDatabase>) {
        let _ = self.databases.set(store);
    }

    /// Every watched database, from the controller's cache once it has synced; `None`
    /// when reconcile runs without a controller (tests calling it directly).
    pub async fn cached_databases(&self) -> Option<Vec<Arc<SqliteDatabase>>> {
        let store = self.databases.get()?;
        // The cache fills with the controller's first listing; until then it is empty,
        // which would hide an overlap.
        if tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready())
            .await
            .is_err()
        {
            return None;
        }
        Some(store.state())
    }

    /// Every database, from the cache or (without one) a listing of the whole cluster:
    /// for decisions that must not miss one, such as deleting a replica.
    pub async fn all_databases(&self) -> crate::Result<Vec<Arc<SqliteDatabase>>> {
        if let Some(all) = self.cached_databases().await {
            return Ok(all);
        }
        let api: Api<SqliteDatabase> = Api::all(self.client.clone());
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    /// Records one more failure of `key` and returns how long to wait before retrying.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let d = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << (*n - 1).min(16));
        d.min(self.settings.backoff_max)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(key);
    }
}
