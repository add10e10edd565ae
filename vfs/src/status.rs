//! The status a pod exposes: the last synced TXID, buffer, sync latency, cache and
//! hydration, as JSON (`status()` for the library, `<db>-status.json` on disk).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ltx::replica::CreateOnly;

use crate::database::Database;

/// Counters of the sync path.
#[derive(Default)]
pub struct SyncStats {
    pub last_sync_ms: u64,
    pub syncs: u64,
    pub last_sync_at: Option<jiff::Timestamp>,
    /// Why the last periodic snapshot was skipped (no room next to the write buffer).
    pub snapshot_skipped: Option<String>,
    /// Write locks refused because the buffer was full, and when that was last logged.
    pub buffer_full_busy: u64,
    buffer_full_warned: Option<Instant>,
}

impl SyncStats {
    pub fn synced(&mut self, started: Instant) {
        self.syncs += 1;
        self.last_sync_ms = started.elapsed().as_millis() as u64;
        self.last_sync_at = Some(jiff::Timestamp::now());
    }

    /// A write lock refused for a full buffer: counted, and logged at most every 10 s.
    pub fn refused_buffer_full(&mut self, limit: u64, last_error: &str) {
        self.buffer_full_busy += 1;
        if self
            .buffer_full_warned
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            self.buffer_full_warned = Some(Instant::now());
            tracing::warn!(
                limit,
                refused = self.buffer_full_busy,
                last_error,
                "write buffer full: unpublished transactions reached buffer_limit (store unreachable?); writes get SQLITE_BUSY until the store catches up"
            );
        }
    }
}

impl Database {
    pub fn status_json(&self) -> serde_json::Value {
        let st = self.state();
        let cache = st.pages.stats();
        let total = cache.hits + cache.misses;
        let txid = st.pages.txid();
        serde_json::json!({
            "replica": self.cfg.replica_url,
            "mode": if self.cfg.write_enabled { "write" } else { "read" },
            // reader, standby (waiting for the writer Lease; reads served) or writer.
            "role": self.role.get().name(),
            // The writer's journal mode: "wal" while SQLite has the WAL open.
            "journal": if st.wal.is_some() { "wal" } else { "rollback" },
            "txid": txid,
            "txid_hex": format!("{txid:016x}"),
            "published_txid": st.publisher.state().published_txid,
            "unpublished_pages": st.publisher.unpublished_pages(),
            // Since when committed transactions wait to be published (null: none waits).
            "unpublished_since": st.publisher.waiting_since().map(|t| t.to_string()),
            "buffer_bytes": st.publisher.buffer_bytes(),
            "buffer_full_busy": st.stats.buffer_full_busy,
            // Commits fsynced (synchronous=FULL/EXTRA); NORMAL commits are not.
            "buffer_fsyncs": st.publisher.buffer_fsyncs(),
            "last_sync_ms": st.stats.last_sync_ms,
            "last_sync_at": st.stats.last_sync_at.map(|t| t.to_string()),
            "snapshot_skipped": st.stats.snapshot_skipped,
            "syncs": st.stats.syncs,
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "cache_hit_ratio": if total == 0 { 0.0 } else { cache.hits as f64 / total as f64 },
            "remote_gets": cache.remote_gets,
            "hydration": format!("{:?}", st.pages.local().state()),
            "store_create_only": match &self.create_only {
                None => serde_json::Value::Null,
                Some(CreateOnly::Honoured) => "honoured".into(),
                Some(CreateOnly::Ignored { detail }) => format!("ignored, allowed by allow_unfenced_store: {detail}").into(),
            },
            "fenced": st.publisher.fenced().map(|f| f.reason.clone()),
            "last_error": st.publisher.last_error(),
            "lease": self.lease().map(|l| l.status_json()),
        })
    }

    /// Writes the status file atomically (a temp file renamed over it).
    pub(crate) fn write_status(&self) {
        let body = self.status_json().to_string();
        let p = &self.cfg.status_path;
        let tmp = PathBuf::from(format!("{}.tmp", p.display()));
        if std::fs::write(&tmp, body).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
}
