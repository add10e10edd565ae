//! One replicated database as seen by every connection in this process: the page view
//! (pending transaction → committed-unpublished overlay → hydrated file → LRU cache →
//! ranged GET), in-process locks, the commit path into the write buffer, publishing,
//! polling (read-only mode) and hydration.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;
use ltx::format::{lock_pgno, Encoder, Header};
use ltx::replica::{LtxKey, Replica, ReplicaError};

use crate::buffer::{load_state, save_state, PublishState, WriteBuffer};
use crate::config::Config;
use crate::remote::{PageLoc, RemoteView};
use crate::runtime::{block_on, rt};
use crate::writer_lease::{Gate, WriterLease};

/// Errors surfaced to SQLite as I/O errors (and logged with this text).
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("replica: {0}")]
    Remote(#[from] crate::remote::RemoteError),
    #[error("replica: {0}")]
    Replica(#[from] ReplicaError),
    #[error("write buffer {path}: {source}")]
    Buffer {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Fenced(String),
    #[error("publishing TXID {txid} did not finish before the drain deadline")]
    DrainDeadline { txid: u64 },
    #[error(transparent)]
    Lease(#[from] crate::writer_lease::LeaseFailure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hydration {
    Off,
    Running,
    Complete,
    Failed,
}

#[derive(Default)]
struct Stats {
    cache_hits: u64,
    cache_misses: u64,
    remote_gets: u64,
    last_sync_ms: u64,
    syncs: u64,
    last_sync_at: Option<jiff::Timestamp>,
    /// Write locks refused because the buffer was full, and when that was last logged.
    buffer_full_busy: u64,
    buffer_full_warned: Option<Instant>,
}

struct State {
    view: RemoteView,
    page_size: u32,
    cache: LruCache<u32, Arc<Vec<u8>>>,
    overlay: HashMap<u32, Arc<Vec<u8>>>,
    overlay_commit: Option<u32>,
    pending: BTreeMap<u32, Vec<u8>>,
    pending_commit: Option<u32>,
    pending_synced: bool,
    buffer: Option<WriteBuffer>,
    publish: PublishState,
    shared: u32,
    reserved: Option<u64>,
    exclusive: Option<u64>,
    pending_lock: Option<u64>,
    fenced: Option<String>,
    last_error: Option<String>,
    hydration: Hydration,
    hydrated: Option<File>,
    /// Pages changed remotely after hydration started / that the local copy lacks.
    hydrate_stale: HashSet<u32>,
    /// Polled files waiting for readers to release their snapshot.
    deferred: Vec<(LtxKey, Header, Vec<ltx::format::PageIndexEntry>)>,
    stats: Stats,
    connections: usize,
}

pub struct Database {
    pub cfg: Config,
    pub path: PathBuf,
    replica: Replica,
    state: Mutex<State>,
    space: Condvar,
    stop: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// One publish at a time (the final sync may overlap a background one).
    publishing: Mutex<()>,
    /// Set during shutdown: no store write may run past it (the pod's grace period).
    drain_deadline: Mutex<Option<Instant>>,
    next_handle: AtomicU64,
    /// Set when unpublished bytes pass half of `buffer_limit`: the sync thread publishes
    /// now instead of at the end of its interval, so a fast writer meets back-pressure
    /// only when the store really cannot keep up.
    publish_soon: AtomicBool,
    /// The Kubernetes writer lease, when writes are lease-gated.
    lease: Option<Arc<WriterLease>>,
}

/// How long one lock attempt waits for buffer space (store unreachable) before SQLITE_BUSY.
/// Short on purpose: SQLite's busy handler then paces the retries, and it counts only its
/// own sleeps, so a long wait here would stretch the app's busy_timeout many times over
/// (and keep a SIGTERMed app from reaching its close and final sync).
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(25);

impl Database {
    pub fn open(path: &Path, cfg: Config) -> Result<Arc<Database>, VfsError> {
        // SQLite's journal (a real local file) takes its permissions from the database
        // path, so an empty placeholder must exist there; the data never lives in it.
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::File::create(path).map_err(|source| VfsError::Buffer {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let replica = Replica::open(&cfg.replica_url)?;
        // A lease-gated writer waits for the lease before it looks at the replica, so the
        // view it starts from includes the previous writer's final sync.
        let lease = match (&cfg.lease, cfg.write_enabled) {
            (Some(s), true) => Some(WriterLease::acquire(s.clone())?),
            _ => None,
        };
        let mut view = {
            let r = replica.clone();
            block_on(async move { RemoteView::load(&r).await })
        }?;
        if let Some(want) = lease.as_ref().and_then(|l| l.released_txid) {
            // The previous writer said it published `want`; a store that lists less is
            // catching up (or lost data): wait a little, then say so.
            let deadline = Instant::now() + Duration::from_secs(10);
            while view.txid < want && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                let r = replica.clone();
                view = block_on(async move { RemoteView::load(&r).await })?;
            }
            if view.txid < want {
                tracing::error!(
                    listed = view.txid,
                    released = want,
                    "the previous writer reported publishing a TXID the replica does not list"
                );
            }
        }
        let page_size = view.page_size;
        let cache_pages = (cfg.cache_size / page_size.max(4096) as u64).max(16) as usize;
        let mut st = State {
            page_size,
            cache: LruCache::new(NonZeroUsize::new(cache_pages).unwrap()),
            overlay: HashMap::new(),
            overlay_commit: None,
            pending: BTreeMap::new(),
            pending_commit: None,
            pending_synced: false,
            buffer: None,
            publish: PublishState::default(),
            shared: 0,
            reserved: None,
            exclusive: None,
            pending_lock: None,
            fenced: None,
            last_error: None,
            hydration: Hydration::Off,
            hydrated: None,
            hydrate_stale: HashSet::new(),
            deferred: Vec::new(),
            stats: Stats::default(),
            connections: 0,
            view,
        };
        if cfg.write_enabled {
            recover(&cfg, &replica, &mut st)?;
        }
        if let Some(l) = lease.as_ref().filter(|l| l.fresh) {
            claim_epoch(&replica, l, st.view.txid)?;
        }
        let db = Arc::new(Database {
            path: path.to_path_buf(),
            replica,
            state: Mutex::new(st),
            space: Condvar::new(),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            publishing: Mutex::new(()),
            drain_deadline: Mutex::new(None),
            next_handle: AtomicU64::new(1),
            publish_soon: AtomicBool::new(false),
            lease,
            cfg,
        });
        if let Some(l) = &db.lease {
            if l.fresh {
                db.fence_store()?;
            }
            l.start_renewal();
        }
        let me = db.clone();
        let name = if db.cfg.write_enabled {
            "sqlitekube-sync"
        } else {
            "sqlitekube-poll"
        };
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || me.background_loop())
            .expect("spawn");
        db.threads.lock().unwrap().push(h);
        if db.cfg.write_enabled && !db.cfg.compaction_interval.is_zero() {
            let me = db.clone();
            let h = std::thread::Builder::new()
                .name("sqlitekube-compact".into())
                .spawn(move || me.maintenance_loop())
                .expect("spawn");
            db.threads.lock().unwrap().push(h);
        }
        if db.cfg.hydration_enabled {
            let me = db.clone();
            let h = std::thread::Builder::new()
                .name("sqlitekube-hydrate".into())
                .spawn(move || me.hydrate())
                .expect("spawn");
            db.threads.lock().unwrap().push(h);
        }
        tracing::info!(path = %path.display(), replica = %db.cfg.replica_url, write = db.cfg.write_enabled, txid = db.state().view.txid, "database opened");
        Ok(db)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn new_handle(&self) -> u64 {
        self.state().connections += 1;
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// Called when a connection closes; returns true when it was the last one.
    pub fn close_handle(&self) -> bool {
        let mut st = self.state();
        st.connections -= 1;
        st.connections == 0
    }

    pub fn file_size(&self) -> u64 {
        let st = self.state();
        size_pages(&st) as u64 * st.page_size as u64
    }

    /// Reads `buf.len()` bytes at `offset`. Returns false on a short read (zero-filled).
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<bool, VfsError> {
        let mut st = self.state();
        if st.page_size == 0 {
            buf.fill(0);
            return Ok(false);
        }
        let ps = st.page_size as u64;
        let size = size_pages(&st) as u64 * ps;
        let mut done = 0usize;
        while done < buf.len() {
            let off = offset + done as u64;
            if off >= size {
                buf[done..].fill(0);
                return Ok(false);
            }
            let pgno = (off / ps) as u32 + 1;
            let in_page = (off % ps) as usize;
            let n = (buf.len() - done).min(ps as usize - in_page);
            let (guard, page) = self.page(st, pgno)?;
            st = guard;
            buf[done..done + n].copy_from_slice(&page[in_page..in_page + n]);
            if pgno == 1 && in_page == 0 && n >= 28 {
                patch_page1(
                    &mut buf[done..done + n],
                    st.view.txid,
                    self.cfg.write_enabled,
                );
            } else if pgno == 1 && in_page <= 18 && in_page + n > 19 {
                // Partial header reads still must not announce WAL mode.
                buf[done + 18 - in_page] = 1;
                buf[done + 19 - in_page] = 1;
            }
            done += n;
        }
        Ok(true)
    }

    /// The current content of a page for this process (may release and retake the lock
    /// around a remote fetch).
    fn page<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        pgno: u32,
    ) -> Result<(MutexGuard<'a, State>, Arc<Vec<u8>>), VfsError> {
        if let Some(p) = st.pending.get(&pgno) {
            let p = Arc::new(p.clone());
            return Ok((st, p));
        }
        if let Some(p) = st.overlay.get(&pgno) {
            let p = p.clone();
            return Ok((st, p));
        }
        let ps = st.page_size as usize;
        if st.hydration == Hydration::Complete && !st.hydrate_stale.contains(&pgno) {
            if let Some(f) = &st.hydrated {
                let mut v = vec![0u8; ps];
                if f.read_exact_at(&mut v, (pgno as u64 - 1) * ps as u64)
                    .is_ok()
                {
                    st.stats.cache_hits += 1;
                    return Ok((st, Arc::new(v)));
                }
            }
        }
        if let Some(p) = st.cache.get(&pgno) {
            let p = p.clone();
            st.stats.cache_hits += 1;
            return Ok((st, p));
        }
        st.stats.cache_misses += 1;
        let Some(loc) = st.view.pages.get(&pgno).copied() else {
            // Never written (new database or grown in a pending transaction): zeros.
            return Ok((st, Arc::new(vec![0u8; ps])));
        };
        let page_size = st.page_size;
        st.stats.remote_gets += 1;
        drop(st);
        let data = Arc::new(self.fetch(&loc, page_size)?);
        let mut st = self.state();
        // Only cache if the location is still current (a poll may have moved it).
        if st.view.pages.get(&pgno).is_some_and(|l| l.key == loc.key) {
            st.cache.put(pgno, data.clone());
            if st.hydration == Hydration::Complete && st.hydrate_stale.remove(&pgno) {
                if let Some(f) = &st.hydrated {
                    let _ = f.write_all_at(&data, (pgno as u64 - 1) * page_size as u64);
                }
            }
        }
        Ok((st, data))
    }

    fn fetch(&self, loc: &PageLoc, page_size: u32) -> Result<Vec<u8>, VfsError> {
        let mut attempt = 0;
        loop {
            let (r, l) = (self.replica.clone(), *loc);
            match block_on(async move { r.read_page(&l.key, &l.entry, page_size).await }) {
                Ok(p) => return Ok(p),
                Err(ReplicaError::NotFound { path }) => {
                    // Retention removed the file; reload the page map and read again.
                    tracing::info!(%path, "page's file is gone (compacted); reloading the replica's page map");
                    let r = self.replica.clone();
                    let view = block_on(async move { RemoteView::load(&r).await })?;
                    let Some(newloc) = view.pages.get(&loc.entry.pgno).copied() else {
                        return Err(ReplicaError::NotFound { path }.into());
                    };
                    let mut st = self.state();
                    for (p, l) in &view.pages {
                        if let Some(cur) = st.view.pages.get_mut(p) {
                            if cur.key.max_txid <= l.key.max_txid {
                                *cur = *l;
                            }
                        }
                    }
                    drop(st);
                    let r = self.replica.clone();
                    return Ok(block_on(async move {
                        r.read_page(&newloc.key, &newloc.entry, page_size).await
                    })?);
                }
                Err(e) if attempt < 5 && !matches!(e, ReplicaError::Ltx { .. }) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "page fetch failed; retrying");
                    std::thread::sleep(Duration::from_millis(20 * attempt));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn write(&self, data: &[u8], offset: u64) -> Result<(), VfsError> {
        let mut st = self.state();
        if st.page_size == 0 {
            // A new database: the first write (page 1) fixes the page size.
            if offset != 0 || !ltx::format::header::is_valid_page_size(data.len() as u32) {
                return Err(VfsError::Fenced(format!(
                    "first write to a new database must be page 1, got {} bytes at {offset}",
                    data.len()
                )));
            }
            st.page_size = data.len() as u32;
            let cap =
                NonZeroUsize::new((self.cfg.cache_size / st.page_size as u64).max(16) as usize)
                    .unwrap();
            st.cache.resize(cap);
            open_buffer(&self.cfg, &mut st)?;
        }
        let ps = st.page_size as u64;
        let mut done = 0usize;
        while done < data.len() {
            let off = offset + done as u64;
            let pgno = (off / ps) as u32 + 1;
            let in_page = (off % ps) as usize;
            let n = (data.len() - done).min(ps as usize - in_page);
            if in_page != 0 || n != ps as usize {
                let (guard, cur) = self.page(st, pgno)?;
                st = guard;
                let mut p = cur.as_ref().clone();
                p[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
                st.pending.insert(pgno, p);
            } else {
                st.pending.insert(pgno, data[done..done + n].to_vec());
            }
            let size = size_pages(&st);
            if pgno > size {
                st.pending_commit = Some(pgno);
            }
            done += n;
        }
        Ok(())
    }

    pub fn truncate(&self, size: u64) {
        let mut st = self.state();
        if st.page_size == 0 {
            return;
        }
        let pages = (size / st.page_size as u64) as u32;
        st.pending_commit = Some(pages);
        st.pending.retain(|&p, _| p <= pages);
    }

    pub fn sync(&self) {
        self.state().pending_synced = true;
    }

    /// The transaction is committed (SQLITE_FCNTL_COMMIT_PHASETWO): record it in the write
    /// buffer before SQLite's COMMIT returns.
    pub fn commit(&self) -> Result<(), VfsError> {
        let mut st = self.state();
        if st.pending.is_empty() && st.pending_commit.is_none() {
            return Ok(());
        }
        let commit = size_pages(&st);
        let pending = std::mem::take(&mut st.pending);
        st.pending_commit = None;
        let durable = std::mem::take(&mut st.pending_synced);
        let lock = lock_pgno(st.page_size);
        let pages: Vec<(u32, Vec<u8>)> = pending
            .into_iter()
            .filter(|(p, _)| *p <= commit && *p != lock)
            .collect();
        let refs: Vec<(u32, &[u8])> = pages.iter().map(|(p, d)| (*p, d.as_slice())).collect();
        let path = self.cfg.buffer_path.clone();
        let published_seq = st.publish.published_seq;
        let buf = st
            .buffer
            .as_mut()
            .ok_or_else(|| VfsError::Fenced("write buffer not open".into()))?;
        buf.append(commit, &refs, durable)
            .map_err(|source| VfsError::Buffer { path, source })?;
        if buf.unpublished_bytes(published_seq) > self.cfg.buffer_limit / 2 {
            self.publish_soon.store(true, Ordering::Relaxed);
        }
        for (p, d) in pages {
            st.overlay.insert(p, Arc::new(d));
        }
        st.overlay.retain(|&p, _| p <= commit);
        st.overlay_commit = Some(commit);
        Ok(())
    }

    pub fn lock(&self, handle: u64, from: i32, to: i32) -> i32 {
        use crate::ffi::*;
        let mut st = self.state();
        match to {
            SQLITE_LOCK_SHARED => {
                if st.exclusive.is_some_and(|h| h != handle)
                    || st.pending_lock.is_some_and(|h| h != handle)
                {
                    return SQLITE_BUSY;
                }
                if from < SQLITE_LOCK_SHARED {
                    st.shared += 1;
                }
                SQLITE_OK
            }
            SQLITE_LOCK_RESERVED => {
                if !self.cfg.write_enabled {
                    return SQLITE_READONLY;
                }
                if let Some(f) = &st.fenced {
                    tracing::error!(reason = %f, "write refused: this writer is fenced");
                    return SQLITE_READONLY;
                }
                if let Some(rc) = self.lease_gate() {
                    return rc;
                }
                if st.reserved.is_some_and(|h| h != handle) {
                    return SQLITE_BUSY;
                }
                // Back-pressure: wait for the publisher to drain the buffer.
                let deadline = Instant::now() + BACKPRESSURE_WAIT;
                while st.buffer.as_ref().is_some_and(|b| {
                    b.unpublished_bytes(st.publish.published_seq) > self.cfg.buffer_limit
                }) {
                    if Instant::now() > deadline {
                        st.stats.buffer_full_busy += 1;
                        if st
                            .stats
                            .buffer_full_warned
                            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                        {
                            st.stats.buffer_full_warned = Some(Instant::now());
                            tracing::warn!(
                                limit = self.cfg.buffer_limit,
                                refused = st.stats.buffer_full_busy,
                                last_error = st.last_error.as_deref().unwrap_or(""),
                                "write buffer full: unpublished transactions reached buffer_limit (store unreachable?); writes get SQLITE_BUSY until the store catches up"
                            );
                        }
                        return SQLITE_BUSY;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    st = self
                        .space
                        .wait_timeout(st, left.max(Duration::from_millis(1)))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                st.reserved = Some(handle);
                SQLITE_OK
            }
            SQLITE_LOCK_PENDING | SQLITE_LOCK_EXCLUSIVE => {
                // Checked again right before the commit writes: a transaction that
                // outlived the lease does not commit.
                if self.cfg.write_enabled {
                    if let Some(rc) = self.lease_gate() {
                        return rc;
                    }
                }
                st.pending_lock = Some(handle);
                if st.shared > 1 {
                    return SQLITE_BUSY;
                }
                if to == SQLITE_LOCK_EXCLUSIVE {
                    st.exclusive = Some(handle);
                }
                SQLITE_OK
            }
            _ => SQLITE_OK,
        }
    }

    pub fn unlock(&self, handle: u64, from: i32, to: i32) {
        use crate::ffi::*;
        let mut st = self.state();
        if to < SQLITE_LOCK_RESERVED && from >= SQLITE_LOCK_RESERVED {
            if !st.pending.is_empty() || st.pending_commit.is_some() {
                // Ended without COMMIT_PHASETWO: a rollback; the file already holds the
                // committed pages again.
                st.pending.clear();
                st.pending_commit = None;
            }
            if st.reserved == Some(handle) {
                st.reserved = None;
            }
            if st.exclusive == Some(handle) {
                st.exclusive = None;
            }
            if st.pending_lock == Some(handle) {
                st.pending_lock = None;
            }
        }
        if to == SQLITE_LOCK_NONE && from >= SQLITE_LOCK_SHARED {
            st.shared = st.shared.saturating_sub(1);
            if st.shared == 0 && !st.deferred.is_empty() {
                let d = std::mem::take(&mut st.deferred);
                for (k, h, e) in d {
                    apply_remote(&mut st, k, &h, &e);
                }
            }
        }
    }

    /// `Some(rc)` when the writer lease does not allow writing now.
    fn lease_gate(&self) -> Option<i32> {
        use crate::ffi::*;
        match self.lease.as_ref()?.check() {
            Ok(()) => None,
            Err(Gate::Expired) => {
                tracing::warn!("write refused: the writer lease was not renewed in time");
                Some(SQLITE_BUSY)
            }
            Err(Gate::Lost(m)) => {
                tracing::error!(reason = %m, "write refused");
                Some(SQLITE_READONLY)
            }
        }
    }

    /// A new lease holder claims the next TXID at once (page 1 unchanged, or its own
    /// replayed transactions), so any stale writer's next publish collides with it at
    /// the store. A stale writer that got its last files in first only moves us on.
    fn fence_store(&self) -> Result<(), VfsError> {
        for _ in 0..10 {
            {
                let st = self.state();
                if st.fenced.is_some() {
                    return Ok(());
                }
                if st.view.txid == 0 || !st.overlay.is_empty() {
                    // Empty replica: nothing to fence with; TXID 1 is create-only anyway.
                    drop(st);
                    return match self.publish() {
                        Ok(_) | Err(VfsError::Fenced(_)) => Ok(()),
                        Err(e) => Err(e),
                    };
                }
            }
            let st = self.state();
            let (st, page1) = self.page(st, 1)?;
            let mut st = st;
            st.overlay.insert(1, page1);
            drop(st);
            match self.publish() {
                Ok(t) => {
                    tracing::info!(
                        txid = t,
                        epoch = self.lease.as_ref().map(|l| l.epoch()),
                        "fenced the replica for this writer"
                    );
                    return Ok(());
                }
                Err(VfsError::Fenced(m)) => {
                    // Someone published that TXID after we took the lease: reload and
                    // claim the next one.
                    tracing::warn!(reason = %m, "fence TXID taken; reloading the replica");
                    let r = self.replica.clone();
                    let view = block_on(async move { RemoteView::load(&r).await })?;
                    let mut st = self.state();
                    st.fenced = None;
                    st.overlay.clear();
                    st.overlay_commit = None;
                    st.cache.clear();
                    st.hydrate_stale.extend(view.pages.keys().copied());
                    st.publish.published_txid = view.txid;
                    st.view = view;
                }
                Err(e) => return Err(e),
            }
        }
        Err(VfsError::Fenced(
            "could not claim a TXID at the store after 10 attempts".into(),
        ))
    }

    pub fn check_reserved(&self) -> bool {
        self.state().reserved.is_some()
    }

    /// Publishes every committed, unpublished transaction as the next L0 TXID.
    /// Returns the TXID published, if any.
    pub fn publish(&self) -> Result<Option<u64>, VfsError> {
        let _one = self.publish_turn()?;
        let started = Instant::now();
        let (ps, commit, txid, seq_hi, writer, pages) = {
            let mut st = self.state();
            if let Some(f) = &st.fenced {
                return Err(VfsError::Fenced(f.clone()));
            }
            if st.overlay.is_empty() && st.overlay_commit.is_none() {
                // Nothing new, but the buffer may still hold records published earlier (a
                // crash before its truncation): drop them, or back-pressure would count them
                // as unpublished forever.
                let published = st.publish.published_seq;
                let path = self.cfg.buffer_path.clone();
                if let Some(b) = st.buffer.as_mut().filter(|b| b.bytes() > 0) {
                    b.release_published(published, self.compact_min())
                        .map_err(|source| VfsError::Buffer { path, source })?;
                    drop(st);
                    self.space.notify_all();
                }
                return Ok(None);
            }
            let seq_hi = st.buffer.as_ref().map(|b| b.last_seq()).unwrap_or(0);
            let mut pages: Vec<(u32, Arc<Vec<u8>>)> =
                st.overlay.iter().map(|(p, d)| (*p, d.clone())).collect();
            pages.sort_by_key(|(p, _)| *p);
            (
                st.page_size,
                size_pages(&st),
                st.view.txid + 1,
                seq_hi,
                st.publish.writer_id,
                pages,
            )
        };
        let ts = jiff::Timestamp::now().as_millisecond();
        let mut h = Header::new(ps, commit, txid, txid, ts);
        h.wal_offset = seq_hi as i64; // marks which buffer records this file holds
        h.node_id = writer;
        let mut enc = Encoder::new(Vec::new(), h).map_err(|e| VfsError::Fenced(e.to_string()))?;
        let lock = lock_pgno(ps);
        if txid == 1 {
            // The first file is a snapshot: every page, zeros where never written.
            let zero = vec![0u8; ps as usize];
            let mut it = pages.iter().peekable();
            for pgno in 1..=commit {
                let data = match it.peek() {
                    Some((p, d)) if *p == pgno => {
                        it.next();
                        d.as_slice()
                    }
                    _ => zero.as_slice(),
                };
                if pgno != lock {
                    enc.write_page(pgno, data)
                        .map_err(|e| VfsError::Fenced(e.to_string()))?;
                }
            }
        } else {
            for (pgno, data) in pages.iter().filter(|(p, _)| *p <= commit && *p != lock) {
                enc.write_page(*pgno, data)
                    .map_err(|e| VfsError::Fenced(e.to_string()))?;
            }
        }
        let entries = enc.index_entries().to_vec();
        let (bytes, _) = enc
            .finish(None)
            .map_err(|e| VfsError::Fenced(e.to_string()))?;
        let key = LtxKey::new(0, txid, txid);
        let r = self.replica.clone();
        let deadline = *self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Unbounded outside a drain (tokio treats Duration::MAX as "never").
        let left = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let written = block_on(async move {
            tokio::time::timeout(left, r.write(&key, Bytes::from(bytes), ts, true)).await
        })
        .map_err(|_| VfsError::DrainDeadline { txid })?;
        match written {
            Ok(()) => {}
            Err(ReplicaError::AlreadyExists { path }) => {
                let mut msg = format!(
                    "another writer already published TXID {txid} ({path}); this writer is fenced and its {} unpublished page(s) are kept in {}",
                    pages.len(),
                    self.cfg.buffer_path.display()
                );
                if let Some(l) = &self.lease {
                    let r = self.replica.clone();
                    if let Ok(Some(e)) = block_on(async move { r.latest_epoch().await }) {
                        msg.push_str(&format!(
                            " (the store records writer epoch {} by {} from TXID {:016x}; this writer holds epoch {})",
                            e.epoch, e.holder, e.txid + 1, l.epoch()
                        ));
                    }
                }
                tracing::error!("{msg}");
                self.state().fenced = Some(msg.clone());
                return Err(VfsError::Fenced(msg));
            }
            Err(e) => {
                self.state().last_error = Some(e.to_string());
                return Err(e.into());
            }
        }
        let mut st = self.state();
        for (pgno, data) in &pages {
            if st
                .overlay
                .get(pgno)
                .is_some_and(|cur| Arc::ptr_eq(cur, data))
            {
                st.overlay.remove(pgno);
                st.cache.put(*pgno, data.clone());
            }
        }
        for e in &entries {
            st.view.pages.insert(e.pgno, PageLoc { key, entry: *e });
        }
        if commit < st.view.commit {
            st.view.pages.retain(|&p, _| p <= commit);
        }
        st.view.commit = commit;
        st.view.txid = txid;
        st.view.last_header = Some(h);
        if st.overlay.is_empty() {
            st.overlay_commit = None;
        }
        if let Some(f) = &st.hydrated {
            for (pgno, data) in &pages {
                let _ = f.write_all_at(data, (*pgno as u64 - 1) * ps as u64);
            }
            let _ = f.set_len(commit as u64 * ps as u64);
        } else if st.hydration == Hydration::Running {
            let changed: Vec<u32> = pages.iter().map(|(p, _)| *p).collect();
            st.hydrate_stale.extend(changed);
        }
        st.publish.published_txid = txid;
        st.publish.published_seq = seq_hi;
        let state = st.publish;
        save_state(&self.cfg.buffer_path, &state).map_err(|source| VfsError::Buffer {
            path: self.cfg.buffer_path.clone(),
            source,
        })?;
        let path = self.cfg.buffer_path.clone();
        if let Some(b) = st.buffer.as_mut() {
            b.release_published(seq_hi, self.compact_min())
                .map_err(|source| VfsError::Buffer { path, source })?;
        }
        st.last_error = None;
        st.stats.syncs += 1;
        st.stats.last_sync_ms = started.elapsed().as_millis() as u64;
        st.stats.last_sync_at = Some(jiff::Timestamp::now());
        drop(st);
        self.space.notify_all();
        tracing::debug!(
            txid,
            pages = pages.len(),
            ms = started.elapsed().as_millis() as u64,
            "published"
        );
        Ok(Some(txid))
    }

    /// Published records are cut from the front of the buffer once they take this much
    /// (a rewrite of the unpublished tail): the file stays within about 1.25× the limit.
    fn compact_min(&self) -> u64 {
        (self.cfg.buffer_limit / 4).min(4 << 20)
    }

    /// Waits for our turn to publish; while draining, only until the drain deadline (a
    /// background publish stuck on the store must not hold the hand-over past it).
    fn publish_turn(&self) -> Result<MutexGuard<'_, ()>, VfsError> {
        let deadline = *self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(d) = deadline else {
            return Ok(self.publishing.lock().unwrap_or_else(|e| e.into_inner()));
        };
        loop {
            match self.publishing.try_lock() {
                Ok(g) => return Ok(g),
                Err(std::sync::TryLockError::Poisoned(e)) => return Ok(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < d => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    let txid = self.state().view.txid + 1;
                    return Err(VfsError::DrainDeadline { txid });
                }
            }
        }
    }

    /// Read-only mode: picks up TXIDs the writer published since our view.
    pub fn poll(&self) -> Result<(), VfsError> {
        let from = self.state().view.txid;
        let r = self.replica.clone();
        let files = block_on(async move { r.list_level(0).await })?;
        let mut next = from + 1;
        for f in files.iter().filter(|f| f.key.max_txid > from) {
            if f.key.min_txid != next {
                if from > 0 || next > 1 {
                    // Gap (L0 compacted away): rebuild from the restore plan.
                    let r = self.replica.clone();
                    let view = block_on(async move { RemoteView::load(&r).await })?;
                    let mut st = self.state();
                    if st.shared == 0 {
                        st.cache.clear();
                        st.hydrate_stale.extend(view.pages.keys().copied());
                        st.view = view;
                    }
                }
                return Ok(());
            }
            let (r, fc) = (self.replica.clone(), f.clone());
            let idx = block_on(async move { r.read_file_index(&fc).await })?;
            let mut st = self.state();
            if st.shared == 0 {
                apply_remote(&mut st, f.key, &idx.header, &idx.pages);
            } else {
                st.deferred.push((f.key, idx.header, idx.pages));
            }
            next = f.key.max_txid + 1;
        }
        Ok(())
    }

    fn background_loop(self: Arc<Self>) {
        let interval = if self.cfg.write_enabled {
            self.cfg.sync_interval
        } else {
            self.cfg.poll_interval
        };
        let mut backoff = interval;
        while !self.stop.load(Ordering::Relaxed) {
            // Early publishes only while the store is healthy (not while backing off).
            let early =
                (self.cfg.write_enabled && backoff == interval).then_some(&self.publish_soon);
            self.sleep_or(backoff, early);
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let res = if self.cfg.write_enabled {
                self.publish().map(|_| ())
            } else {
                self.poll()
            };
            match res {
                Ok(()) => backoff = interval,
                Err(VfsError::Fenced(_)) => backoff = interval * 10,
                Err(e) => {
                    tracing::warn!(error = %e, "background sync failed; retrying with backoff");
                    self.state().last_error = Some(e.to_string());
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            self.write_status();
        }
    }

    /// Writer only: compaction (L0 → L1), periodic snapshots (L9) and retention.
    fn maintenance_loop(self: Arc<Self>) {
        let mut last_snapshot = Instant::now();
        let mut snapshot_txid = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            self.sleep(self.cfg.compaction_interval);
            if self.stop.load(Ordering::Relaxed)
                || self.state().fenced.is_some()
                || self.lease.as_ref().is_some_and(|l| l.check().is_err())
            {
                continue;
            }
            let (r, me) = (self.replica.clone(), self.clone());
            let compacted = block_on(async move { ltx::compact::compact_l0(&r).await });
            match compacted {
                Ok(Some(info)) => me.repoint(&info),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "compaction failed; will retry"),
            }
            let txid = self.state().view.txid;
            if txid > snapshot_txid
                && (snapshot_txid == 0 || last_snapshot.elapsed() >= self.cfg.snapshot_interval)
            {
                let r = self.replica.clone();
                let work = PathBuf::from(format!("{}-snapshot", self.cfg.buffer_path.display()));
                // Our own thread: block_on is safe (the restore future is not Send-friendly).
                match rt().block_on(ltx::compact::snapshot(&r, txid, &work)) {
                    Ok(_) => {
                        snapshot_txid = txid;
                        last_snapshot = Instant::now();
                    }
                    Err(e) => tracing::warn!(error = %e, "snapshot failed; will retry"),
                }
            }
            let r = self.replica.clone();
            let ret = ltx::compact::Retention {
                l0: self.cfg.l0_retention,
                snapshots: self.cfg.snapshot_retention,
            };
            match block_on(async move { ltx::compact::enforce_retention(&r, ret).await }) {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
            }
        }
    }

    /// Points pages that live in L0 files now covered by a compacted file at that file,
    /// so the L0 files can be deleted later without breaking reads.
    fn repoint(&self, info: &ltx::replica::LtxFileInfo) {
        let (r, i) = (self.replica.clone(), info.clone());
        let Ok(idx) = block_on(async move { r.read_file_index(&i).await }) else {
            return;
        };
        let mut st = self.state();
        for e in &idx.pages {
            if let Some(loc) = st.view.pages.get_mut(&e.pgno) {
                if loc.key.level == 0 && loc.key.max_txid <= info.key.max_txid {
                    *loc = PageLoc {
                        key: info.key,
                        entry: *e,
                    };
                }
            }
        }
    }

    fn sleep(&self, d: Duration) {
        self.sleep_or(d, None)
    }

    /// Sleeps for `d`, or until stop, or until `wake` is set (and clears it).
    fn sleep_or(&self, d: Duration, wake: Option<&AtomicBool>) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
            if wake.is_some_and(|w| w.swap(false, Ordering::Relaxed)) {
                return;
            }
            let step = if wake.is_some() { 5 } else { 50 };
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(step)));
        }
    }

    /// Pulls the whole database into `hydration_path`, then serves reads from it.
    fn hydrate(self: Arc<Self>) {
        let target = self.cfg.hydration_path.clone();
        {
            let mut st = self.state();
            if st.view.txid == 0 {
                st.hydration = Hydration::Off;
                return;
            }
            st.hydration = Hydration::Running;
        }
        // A copy left by an earlier run (its TXID in `<path>.meta`) is reused: pages that
        // may have changed since are marked stale and fetched on first read.
        let meta = meta_path(&target);
        let reusable = std::fs::read_to_string(&meta)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|t| *t <= self.state().view.txid && target.exists());
        let _ = std::fs::remove_file(&meta); // the copy changes from here on
        let restored = match reusable {
            Some(t) => {
                tracing::info!(txid = t, path = %target.display(), "reusing the hydrated copy from an earlier run");
                t
            }
            None => {
                let opts = ltx::restore::RestoreOptions {
                    force: true,
                    ..Default::default()
                };
                // This is our own thread, never inside a runtime, so block_on is safe here.
                match rt().block_on(ltx::restore::restore(&self.replica, &target, &opts)) {
                    Ok(s) => s.db.txid,
                    Err(e) => {
                        tracing::error!(error = %e, "hydration failed; reads stay remote");
                        self.state().hydration = Hydration::Failed;
                        return;
                    }
                }
            }
        };
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&target)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot open hydrated file");
                self.state().hydration = Hydration::Failed;
                return;
            }
        };
        let mut st = self.state();
        // Pages that changed after the restored TXID come from the normal read path.
        let newer: Vec<u32> = st
            .view
            .pages
            .iter()
            .filter(|(_, l)| l.key.max_txid > restored)
            .map(|(p, _)| *p)
            .collect();
        st.hydrate_stale.extend(newer);
        let _ = file.set_len(st.view.commit as u64 * st.page_size as u64);
        st.hydrated = Some(file);
        st.hydration = Hydration::Complete;
        tracing::info!(txid = restored, path = %target.display(), stale = st.hydrate_stale.len(), "hydration complete; reads are local");
    }

    /// Publishes what is left (clean shutdown) and stops background work.
    pub fn shutdown(&self) {
        // Everything below fits in the drain timeout, so the pod's grace period (drain
        // timeout + 10 s) is never exceeded and the lease hand-over always runs.
        let deadline = Instant::now() + self.cfg.drain_timeout;
        *self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.stop.store(true, Ordering::Relaxed);
        let handles: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        for h in handles {
            // A hydration or a store call in flight is not waited for past the deadline
            // (the thread is left to finish or die with the process).
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        if self.cfg.write_enabled {
            loop {
                match self.publish() {
                    Ok(_) => break,
                    Err(VfsError::Fenced(_)) => break,
                    Err(e) if Instant::now() < deadline => {
                        tracing::warn!(error = %e, "final sync failed; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, buffer = %self.cfg.buffer_path.display(), "final sync failed; unpublished transactions stay in the write buffer and are published on the next open");
                        break;
                    }
                }
            }
            if let Some(b) = self.state().buffer.as_mut() {
                let _ = b.sync();
            }
            if let Some(l) = &self.lease {
                let st = self.state();
                let (txid, left) = (st.view.txid, st.overlay.len());
                let fenced = st.fenced.clone();
                drop(st);
                match (left, fenced) {
                    (0, None) => l.release(txid),
                    (_, Some(f)) => l.report_unsynced(txid, &format!("this writer was fenced: {f}")),
                    (n, None) => l.report_unsynced(
                        txid,
                        &format!(
                            "the final sync did not finish within the drain timeout ({:?}): published through TXID {txid:016x}; {n} page(s) of committed transactions remain only in {}",
                            self.cfg.drain_timeout,
                            self.cfg.buffer_path.display()
                        ),
                    ),
                }
            }
        }
        {
            let st = self.state();
            if let (Some(f), true) = (
                &st.hydrated,
                st.hydrate_stale.is_empty() && st.overlay.is_empty(),
            ) {
                if f.sync_all().is_ok() {
                    let _ = std::fs::write(
                        meta_path(&self.cfg.hydration_path),
                        format!("{}\n", st.view.txid),
                    );
                }
            }
        }
        self.write_status();
        tracing::info!(txid = self.state().view.txid, "database closed");
    }

    pub fn status_json(&self) -> serde_json::Value {
        let st = self.state();
        let total = st.stats.cache_hits + st.stats.cache_misses;
        serde_json::json!({
            "replica": self.cfg.replica_url,
            "mode": if self.cfg.write_enabled { "write" } else { "read" },
            "txid": st.view.txid,
            "txid_hex": format!("{:016x}", st.view.txid),
            "published_txid": st.publish.published_txid,
            "unpublished_pages": st.overlay.len(),
            "buffer_bytes": st.buffer.as_ref().map(|b| b.bytes()).unwrap_or(0),
            "buffer_full_busy": st.stats.buffer_full_busy,
            "last_sync_ms": st.stats.last_sync_ms,
            "last_sync_at": st.stats.last_sync_at.map(|t| t.to_string()),
            "syncs": st.stats.syncs,
            "cache_hits": st.stats.cache_hits,
            "cache_misses": st.stats.cache_misses,
            "cache_hit_ratio": if total == 0 { 0.0 } else { st.stats.cache_hits as f64 / total as f64 },
            "remote_gets": st.stats.remote_gets,
            "hydration": format!("{:?}", st.hydration),
            "fenced": st.fenced,
            "last_error": st.last_error,
            "lease": self.lease.as_ref().map(|l| l.status_json()),
        })
    }

    fn write_status(&self) {
        let body = self.status_json().to_string();
        let p = &self.cfg.status_path;
        let tmp = PathBuf::from(format!("{}.tmp", p.display()));
        if std::fs::write(&tmp, body).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
}

/// `<hydration_path>.meta`: the TXID a hydrated copy holds (decimal), as Litestream does.
fn meta_path(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.meta", p.display()))
}

fn size_pages(st: &State) -> u32 {
    st.pending_commit
        .or(st.overlay_commit)
        .unwrap_or(st.view.commit)
}

fn apply_remote(st: &mut State, key: LtxKey, h: &Header, entries: &[ltx::format::PageIndexEntry]) {
    match st.view.apply(key, h, entries) {
        Ok(changed) => {
            for p in changed {
                st.cache.pop(&p);
                st.hydrate_stale.insert(p);
            }
            if st.page_size == 0 {
                st.page_size = h.page_size;
            }
            if let Some(f) = &st.hydrated {
                let _ = f.set_len(h.commit as u64 * h.page_size as u64);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot apply polled file"),
    }
}

/// Pages 1's bytes 18/19 say "rollback journal" (the VFS has no WAL), and in read-only
/// mode the change counter follows the TXID so SQLite notices polled updates.
fn patch_page1(p: &mut [u8], txid: u64, writer: bool) {
    p[18] = 1;
    p[19] = 1;
    if !writer {
        p[24..28].copy_from_slice(&(txid as u32).to_be_bytes());
    }
}

fn open_buffer(cfg: &Config, st: &mut State) -> Result<(), VfsError> {
    let (buf, records) =
        WriteBuffer::open(&cfg.buffer_path, st.page_size, st.publish.published_seq).map_err(
            |source| VfsError::Buffer {
                path: cfg.buffer_path.clone(),
                source,
            },
        )?;
    if !records.is_empty() {
        tracing::info!(transactions = records.len(), buffer = %cfg.buffer_path.display(), "replaying committed transactions from the write buffer");
    }
    for r in records {
        for (p, d) in r.pages {
            st.overlay.insert(p, Arc::new(d));
        }
        st.overlay.retain(|&p, _| p <= r.commit);
        st.overlay_commit = Some(r.commit);
    }
    st.buffer = Some(buf);
    Ok(())
}

/// Writer start-up: reconcile the publish state with the replica, then replay the buffer.
fn recover(cfg: &Config, replica: &Replica, st: &mut State) -> Result<(), VfsError> {
    let mut state = load_state(&cfg.buffer_path).unwrap_or(PublishState {
        writer_id: rand::random::<u64>() | 1,
        ..Default::default()
    });
    let remote = st.view.txid;
    if remote > state.published_txid
        && st
            .view
            .last_header
            .is_some_and(|h| h.node_id != state.writer_id)
    {
        // The newest file may be a compaction (no writer id); the newest L0 file has it.
        let (r, key) = (replica.clone(), LtxKey::new(0, remote, remote));
        let head =
            block_on(async move { r.read_range(&key, 0..ltx::format::HEADER_SIZE as u64).await });
        let decoded = head
            .ok()
            .and_then(|b| <[u8; ltx::format::HEADER_SIZE]>::try_from(b.as_ref()).ok())
            .and_then(|b| Header::decode(&b).ok());
        if let Some(h) = decoded {
            st.view.last_header = Some(h);
        }
    }
    if remote > state.published_txid {
        let ours = st
            .view
            .last_header
            .filter(|h| h.node_id == state.writer_id && h.max_txid == remote);
        match ours {
            // We published it but crashed before recording that.
            Some(h) => {
                state.published_txid = remote;
                state.published_seq = state.published_seq.max(h.wal_offset as u64);
            }
            None => {
                // Another writer moved the replica on. Any unpublished local records
                // cannot be applied on top of it.
                state.published_txid = remote;
            }
        }
    }
    st.publish = state;
    if st.page_size != 0 || cfg.buffer_path.exists() {
        if st.page_size == 0 {
            // New database with a buffer from a crashed first session: take its page size.
            if let Ok(b) = std::fs::read(&cfg.buffer_path) {
                if b.len() >= 12 {
                    st.page_size = u32::from_be_bytes(b[8..12].try_into().unwrap());
                }
            }
        }
        if st.page_size != 0 {
            let before = st.publish;
            open_buffer(cfg, st)?;
            if remote > before.published_txid
                && st
                    .view
                    .last_header
                    .is_some_and(|h| h.node_id != before.writer_id)
                && !st.overlay.is_empty()
            {
                let msg = format!(
                    "the replica moved to TXID {remote} by another writer while {} unpublished page(s) wait in {}; refusing to fork history",
                    st.overlay.len(),
                    cfg.buffer_path.display()
                );
                tracing::error!("{msg}");
                st.fenced = Some(msg);
            }
        }
    }
    save_state(&cfg.buffer_path, &st.publish).map_err(|source| VfsError::Buffer {
        path: cfg.buffer_path.clone(),
        source,
    })?;
    Ok(())
}

/// Records a fresh lease's epoch at the store (create-only). If the store has seen this
/// epoch or a higher one (a Lease deleted and created again), the Lease's epoch is raised
/// past it first; if the record belongs to someone else at the same epoch, we are fenced.
fn claim_epoch(replica: &Replica, lease: &WriterLease, txid: u64) -> Result<(), VfsError> {
    for _ in 0..5 {
        let rec = ltx::replica::EpochRecord {
            epoch: lease.epoch().max(0) as u64,
            holder: lease.settings.identity.clone(),
            txid,
            claimed_at: jiff::Timestamp::now(),
        };
        let r = replica.clone();
        let rc = rec.clone();
        match block_on(async move { r.claim_epoch(&rc).await }) {
            Ok(()) => {
                tracing::info!(
                    epoch = rec.epoch,
                    txid,
                    "writer epoch recorded at the store"
                );
                return Ok(());
            }
            Err(ReplicaError::AlreadyExists { .. }) => {
                let r = replica.clone();
                let latest = block_on(async move { r.latest_epoch().await })?
                    .map(|l| l.epoch)
                    .unwrap_or(rec.epoch);
                tracing::warn!(
                    epoch = rec.epoch,
                    latest,
                    "the store already has this epoch; raising the lease's epoch past it"
                );
                lease
                    .raise_epoch(latest as i64 + 1)
                    .map_err(VfsError::Fenced)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let msg = "could not record a writer epoch at the store after 5 attempts".to_string();
    lease.fence(msg.clone());
    Err(VfsError::Fenced(msg))
}
