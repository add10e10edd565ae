//! Writer maintenance, every `compaction_interval`: L0 → L1 compaction (then the page map
//! is repointed at the compacted file, so L0 files can go), a full snapshot to L9 every
//! `snapshot_interval`, and retention. Skipped while fenced, standing by, or without a valid lease.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::database::Database;

impl Database {
    pub(crate) fn maintenance_loop(self: Arc<Self>) {
        let mut last_snapshot = Instant::now();
        let mut snapshot_txid = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            self.sleep(self.cfg.compaction_interval);
            if self.stop.load(Ordering::Relaxed)
                || self.role.get() != crate::standby::Role::Writer
                || self.state().publisher.fenced().is_some()
                || self.lease().is_some_and(|l| l.check().is_err())
            {
                continue;
            }
            match self.store.compact_l0() {
                Ok(Some(info)) => match self.store.read_index(&info) {
                    Ok(idx) => self.state().pages.repoint(info.key, &idx.pages),
                    Err(e) => tracing::warn!(error = %e, "cannot read the compacted file's index"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "compaction failed; will retry"),
            }
            let txid = self.state().pages.txid();
            if txid > snapshot_txid
                && (snapshot_txid == 0 || last_snapshot.elapsed() >= self.cfg.snapshot_interval)
            {
                let work = PathBuf::from(format!("{}-snapshot", self.cfg.buffer_path.display()));
                let space = {
                    let st = self.state();
                    ltx::compact::SnapshotSpace {
                        db_bytes: st.committed_size() as u64 * st.pages.page_size() as u64,
                        // The buffer may reach its limit plus a quarter before it is cut.
                        reserve: self.cfg.buffer_limit + self.cfg.buffer_limit / 4,
                    }
                };
                match self.store.snapshot(txid, work, space) {
                    Ok(()) => {
                        snapshot_txid = txid;
                        last_snapshot = Instant::now();
                        self.state().stats.snapshot_skipped = None;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let no_space = matches!(
                            &e,
                            crate::error::VfsError::Maintenance(
                                ltx::compact::CompactError::NoSpace { .. }
                            )
                        );
                        let mut st = self.state();
                        // Said once per spell of skipping, not at every interval.
                        if no_space && st.stats.snapshot_skipped.is_none() {
                            tracing::warn!("{msg}; retrying every compaction interval");
                        } else if !no_space {
                            tracing::warn!(error = %msg, "snapshot failed; will retry");
                        }
                        st.stats.snapshot_skipped = no_space.then_some(msg);
                    }
                }
            }
            let ret = ltx::compact::Retention {
                l0: self.cfg.l0_retention,
                snapshots: self.cfg.snapshot_retention,
            };
            match self.store.enforce_retention(ret) {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
            }
        }
    }
}
