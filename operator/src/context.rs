//! State shared by every reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resync: Duration::from_secs(30),
            replica_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
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
        }
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
