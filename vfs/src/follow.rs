//! Read-only mode (and a standby writer): the follower picks up the TXIDs the writer
//! published since its view.
//! A file is applied only while no connection holds a read snapshot (SQLite expects the
//! file not to change under a SHARED lock); otherwise it waits until the last reader
//! leaves. A gap (the L0 files it needed were compacted away) reloads the whole map.

use crate::database::Database;
use crate::error::VfsError;

impl Database {
    pub fn poll(&self) -> Result<(), VfsError> {
        let _turn = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        // Files already waiting for readers to leave are not fetched again.
        let from = {
            let st = self.state();
            st.deferred
                .last()
                .map_or(st.pages.txid(), |(k, _, _)| k.max_txid)
        };
        let files = self.store.list_level(0)?;
        let mut have = from;
        for f in files.iter().filter(|f| f.key.max_txid > from) {
            if !f.key.follows(have) {
                let view = self.store.load_view()?;
                let mut st = self.state();
                if st.locks.no_readers() {
                    st.deferred.clear();
                    st.pages.replace(view);
                }
                return Ok(());
            }
            let idx = self.store.read_index(f)?;
            let mut st = self.state();
            if st.locks.no_readers() {
                st.pages.apply_remote(f.key, &idx.header, &idx.pages);
            } else {
                st.deferred.push((f.key, idx.header, idx.pages));
            }
            have = f.key.max_txid;
        }
        Ok(())
    }
}
