//! The database's WAL-mode entry points: the `-wal` file's reads and writes (where commits
//! are captured into the write buffer), checkpoint writes to the database file, and the
//! WAL index in process memory. The reasoning is in `wal.rs` and `shm.rs`.

use std::sync::MutexGuard;

use crate::database::{Database, State};
use crate::error::VfsError;
use crate::ffi::*;
use crate::transaction::Committed;
use crate::wal::Wal;

impl Database {
    fn shm(&self) -> MutexGuard<'_, crate::shm::Shm> {
        self.shm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SQLite opens the `-wal` file: the database is (or becomes) in WAL mode.
    pub fn wal_open(&self) {
        let mut st = self.state();
        if st.wal.is_none() {
            let dir = self
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| std::path::PathBuf::from("."), |d| d.to_path_buf());
            st.wal = Some(Wal::new(dir));
            tracing::debug!(path = %self.path.display(), "WAL opened");
        }
    }

    pub fn wal_exists(&self) -> bool {
        self.state().wal.is_some()
    }

    /// SQLite deletes the `-wal` file: every frame is in the database file (it only does
    /// so after a complete checkpoint), so rollback mode may follow.
    pub fn wal_delete(&self) -> bool {
        self.state().wal.take().is_some()
    }

    pub fn wal_len(&self) -> u64 {
        self.state().wal.as_ref().map_or(0, Wal::len)
    }

    /// Reads the WAL; false on a short read (zero-filled).
    pub fn wal_read(&self, buf: &mut [u8], off: u64) -> Result<bool, VfsError> {
        let st = self.state();
        let Some(w) = st.wal.as_ref() else {
            buf.fill(0);
            return Ok(false);
        };
        let got = w
            .read(buf, off)
            .map_err(|e| VfsError::buffer(&self.path, e))?;
        Ok(got == buf.len())
    }

    pub fn wal_truncate(&self, size: u64) -> Result<(), VfsError> {
        let mut st = self.state();
        match st.wal.as_mut() {
            Some(w) => w
                .truncate(size)
                .map_err(|e| VfsError::buffer(&self.path, e)),
            None => Ok(()),
        }
    }

    /// SQLite synced the WAL (after a commit at `synchronous=FULL`, before a checkpoint):
    /// the commits recorded since are fsynced in the write buffer, unless every connection
    /// runs at NORMAL. Then SQLite still syncs before each checkpoint (local WAL fsyncs its
    /// WAL and database there), but here a checkpoint only changes memory and the commits
    /// are already in the buffer, which is what a process crash replays: nothing to make
    /// durable, as NORMAL promises.
    pub fn wal_sync(&self) -> Result<(), VfsError> {
        if self.full_sync.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.state().publisher.sync_commits()
    }

    /// Writes to the WAL. When the write completes a commit frame, the transaction goes
    /// into the write buffer before the write returns; if it cannot (buffer full or
    /// broken, fenced, lease lost) the write fails, so SQLite's commit fails and the WAL
    /// frames are written over by the next transaction. Errors are SQLite result codes.
    pub fn wal_write(&self, data: &[u8], off: u64) -> Result<(), i32> {
        let mut st = self.state();
        let Some(w) = st.wal.as_mut() else {
            return Err(SQLITE_IOERR_WRITE);
        };
        let done = w.write(data, off).map_err(|e| {
            tracing::error!(error = %e, "writing the WAL failed");
            SQLITE_IOERR_WRITE
        })?;
        let Some((end, size)) = done else {
            return Ok(());
        };
        if let Some(f) = st.publisher.fenced() {
            tracing::error!(reason = %f, "commit refused: this writer is fenced");
            return Err(SQLITE_READONLY);
        }
        if let Some(rc) = self.lease().and_then(|l| l.write_gate()) {
            return Err(rc);
        }
        self.capture(st, end, size).map_err(|e| {
            tracing::error!(error = %e, "commit could not be recorded in the write buffer");
            SQLITE_IOERR_WRITE
        })
    }

    /// Records the WAL transaction ending at `end` in the write buffer, first keeping the
    /// database file's content of each page it changes (see `MainView`).
    fn capture<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        end: u64,
        size: u32,
    ) -> Result<(), VfsError> {
        let w = st.wal.as_ref().expect("WAL open");
        let ps = w.page_size();
        let commit = w
            .commit(end, size)
            .map_err(|e| VfsError::buffer(&self.path, e))?;
        if st.pages.page_size() == 0 {
            // A new database created in WAL mode: its first pages arrive here.
            st.pages.set_page_size(ps);
        } else if st.pages.page_size() != ps {
            return Err(VfsError::Misuse(format!(
                "the WAL has {ps}-byte pages, the database {}-byte pages",
                st.pages.page_size()
            )));
        }
        let file_pages = st
            .wal
            .as_ref()
            .and_then(|w| w.main.size)
            .unwrap_or(st.committed_size());
        for (pgno, _) in &commit.pages {
            let kept = st.wal.as_ref().is_some_and(|w| w.main.has(*pgno));
            if *pgno > file_pages || kept {
                continue;
            }
            let (guard, page) = self.page(st, *pgno)?;
            st = guard;
            if let Some(w) = st.wal.as_mut() {
                w.main
                    .keep_before(*pgno, &page)
                    .map_err(|e| VfsError::buffer(&self.path, e))?;
            }
        }
        if !st.publisher.has_buffer() {
            st.publisher.open_buffer(ps)?;
        }
        let soon = st.publisher.record(Committed {
            size: commit.size,
            pages: commit.pages,
            durable: false,
        })?;
        if let Some(w) = st.wal.as_mut() {
            w.main.size.get_or_insert(file_pages);
            w.captured(commit.end);
        }
        if soon {
            self.publish_soon
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// A checkpoint writes pages back into the database file: whole pages, kept as what
    /// the file holds (they are already in the write buffer, as the commits they came in).
    pub(crate) fn checkpoint_write(
        &self,
        mut st: MutexGuard<'_, State>,
        data: &[u8],
        offset: u64,
    ) -> Result<(), VfsError> {
        let ps = st.pages.page_size() as u64;
        if !offset.is_multiple_of(ps) || !(data.len() as u64).is_multiple_of(ps) {
            return Err(VfsError::Misuse(format!(
                "a WAL-mode write to the database file must be whole pages, got {} bytes at {offset}",
                data.len()
            )));
        }
        let committed = st.committed_size();
        let w = st.wal.as_mut().expect("WAL open");
        for (i, page) in data.chunks(ps as usize).enumerate() {
            let pgno = (offset / ps) as u32 + 1 + i as u32;
            w.main
                .write(pgno, page, committed)
                .map_err(|e| VfsError::buffer(&self.path, e))?;
        }
        Ok(())
    }

    /// `xShmMap`.
    pub fn shm_map(&self, handle: u64, region: usize, size: usize, extend: bool) -> *mut u8 {
        self.shm()
            .map(handle, region, size, extend)
            .unwrap_or(std::ptr::null_mut())
    }

    /// `xShmLock`. Taking the WAL write lock is beginning a write transaction: the same
    /// admission as RESERVED in rollback mode (writer role, not fenced, lease, buffer room).
    pub fn shm_lock(&self, handle: u64, first: usize, n: usize, flags: i32) -> i32 {
        if first + n > crate::shm::NLOCK || n == 0 {
            return SQLITE_IOERR_SHMLOCK;
        }
        let exclusive = flags & SQLITE_SHM_EXCLUSIVE != 0;
        if flags & SQLITE_SHM_UNLOCK != 0 {
            self.shm().unlock(handle, first, n, exclusive);
            return SQLITE_OK;
        }
        if !exclusive {
            return self.shm().lock_shared(handle, first);
        }
        if first == crate::shm::WRITE_LOCK {
            if let Err(rc) = self.admit_writer(self.state()) {
                return rc;
            }
        }
        self.shm().lock_exclusive(handle, first, n)
    }

    /// `xShmUnmap`, and a connection's close: its WAL-index locks are released.
    pub fn shm_unmap(&self, handle: u64) {
        self.shm().unmap(handle);
    }
}
