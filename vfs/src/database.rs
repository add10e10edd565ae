//! One replicated database as every connection of this process sees it: a small
//! coordinator over parts that own their state.
//!
//! | part | file | owns |
//! |---|---|---|
//! | open transaction | `transaction.rs` | pages written since RESERVED |
//! | locks, back-pressure | `locks.rs` | which connection holds which lock |
//! | publisher | `publisher.rs` (+ `buffer.rs`) | write buffer, unpublished pages, what is published, fencing |
//! | page view | `pages.rs` (+ `remote.rs`) | remote page map, LRU cache, hydrated copy |
//! | hydration | `hydration.rs` | the local copy and the job that makes it |
//! | store door | `store.rs` | every call to the replica, bounded at drain |
//! | recovery | `recovery.rs` | start-up reconciliation and buffer replay |
//! | fencing | `fencing.rs` | epoch record and fence TXID on lease acquisition |
//! | follower | `follow.rs` | read-only mode (and standby): picking up new TXIDs |
//! | standby | `standby.rs` | a writer waiting for the Lease, and its take-over |
//! | maintenance | `maintenance.rs` | compaction, snapshots, retention |
//! | background | `background.rs` | the sync/poll thread, the hydration thread |
//! | status | `status.rs` | counters and the JSON status file |
//!
//! **Lock order** (the only locks; take them in this order, never the reverse):
//! 1. the open-database registry (`shim.rs`), only while opening or closing;
//! 2. [`Database::publishing`]: one publish or poll at a time;
//! 3. [`Database::state`]: every part's state, behind one mutex.
//!
//! The writer lease's own mutexes (and the [`Database::lease`] slot) are leaves. The state lock is never held across a store
//! call: parts answer "fetch this" or "publish this", the coordinator drops the lock, calls
//! the store, and hands the result back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use ltx::format::{Header, PageIndexEntry};
use ltx::replica::{CreateOnly, LtxKey};

use crate::buffer::PublishState;
use crate::config::Config;
use crate::error::VfsError;
use crate::ffi::*;
use crate::locks::{is_exclusive_level, LockTable, BACKPRESSURE_WAIT};
use crate::pages::{Lookup, Page, PageView};
use crate::publisher::{Publisher, PutOutcome, Taken};
use crate::standby::{Role, RoleCell};
use crate::status::SyncStats;
use crate::store::Store;
use crate::transaction::Transaction;
use crate::writer_lease::{Wait, WriterLease};

/// Every part's state; guarded by [`Database::state`].
pub(crate) struct State {
    pub txn: Transaction,
    pub locks: LockTable,
    pub publisher: Publisher,
    pub pages: PageView,
    /// Polled files waiting for readers to release their snapshot.
    pub deferred: Vec<(LtxKey, Header, Vec<PageIndexEntry>)>,
    pub stats: SyncStats,
    pub connections: usize,
    /// The WAL, while the database is in WAL mode (`wal.rs`).
    pub wal: Option<crate::wal::Wal>,
}

impl State {
    /// The committed database size in pages (what a reader or a publish sees).
    pub fn committed_size(&self) -> u32 {
        self.publisher.size().unwrap_or(self.pages.size())
    }

    /// The size as the writing connection sees it (its open transaction included).
    fn current_size(&self) -> u32 {
        self.txn.size().unwrap_or(self.committed_size())
    }

    /// The database file is in WAL mode: SQLite reads and writes it as checkpoints leave
    /// it ([`crate::wal::MainView`]). Every write to it is then a checkpoint's, whatever
    /// file lock is held: with `locking_mode=EXCLUSIVE` the connection holds an EXCLUSIVE
    /// lock for good, and taking its checkpoints for a rollback-mode transaction once
    /// recorded stale pages over newer commits. SQLite leaves WAL mode by deleting the WAL
    /// (after a full checkpoint) before it writes the file in rollback mode.
    pub fn wal_file(&self) -> bool {
        self.wal.is_some()
    }

    /// The database file's size in pages as SQLite sees it.
    fn file_pages(&self) -> u32 {
        match &self.wal {
            Some(w) if self.wal_file() => w.main.size.unwrap_or(self.committed_size()),
            _ => self.current_size(),
        }
    }
}

/// How one publish attempt ended.
enum Attempt {
    /// Nothing was waiting to be published.
    Nothing,
    Published(u64),
    /// The TXID held our own earlier object (a PUT that landed but whose response was
    /// lost): adopted; the rest goes out as the next TXID.
    Again,
}

pub struct Database {
    pub cfg: Config,
    pub path: PathBuf,
    pub(crate) store: Store,
    pub(crate) state: Mutex<State>,
    /// Signalled when a publish frees buffer space.
    pub(crate) space: Condvar,
    pub(crate) stop: AtomicBool,
    pub(crate) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// One publish or poll at a time (the final sync may overlap a background one; a
    /// standby's take-over polls next to the background poll).
    pub(crate) publishing: Mutex<()>,
    next_handle: AtomicU64,
    /// Set when unpublished bytes pass half of `buffer_limit`: the sync thread publishes
    /// now instead of at the end of its interval.
    pub(crate) publish_soon: AtomicBool,
    /// Connections at `synchronous=FULL` or `EXTRA` (SQLite's default): while there is one,
    /// a WAL sync fsyncs the write buffer; with all at NORMAL it never does, as a process
    /// crash loses nothing either way (`wal_io.rs`).
    pub(crate) full_sync: AtomicU64,
    /// The WAL index of this process's connections in WAL mode (`shm.rs`); a leaf lock.
    pub(crate) shm: Mutex<crate::shm::Shm>,
    /// The Kubernetes writer lease, when writes are lease-gated and it is ours (a
    /// standby fills it in when it takes over).
    lease: RwLock<Option<Arc<WriterLease>>>,
    /// Reader, standby or writer.
    pub(crate) role: RoleCell,
    /// What the writer's create-only probe found (`None` for readers).
    pub(crate) create_only: Option<CreateOnly>,
}

impl Database {
    pub fn open(path: &Path, cfg: Config) -> Result<Arc<Database>, VfsError> {
        // SQLite's journal (a real local file) takes its permissions from the database
        // path, so an empty placeholder must exist there; the data never lives in it.
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::File::create(path).map_err(|e| VfsError::buffer(path, e))?;
        }
        crate::journal::remove_stale_file(path);
        let store = Store::open(&cfg.replica_url, cfg.store_retries, &cfg.credentials)?;
        // Proof that the store can fence, before the lease or any write.
        let create_only = if cfg.write_enabled {
            Some(crate::fencing::check_create_only(&store, &cfg)?)
        } else {
            None
        };
        // A lease-gated writer waits for the lease before it looks at the replica, so the
        // view it starts from includes the previous writer's final sync. If another pod
        // holds it, the writer stands by (reads served) unless told to block here.
        let (lease, role) = match (&cfg.lease, cfg.write_enabled) {
            (Some(s), true) => {
                let now = WriterLease::acquire(s.clone(), Wait::Once)?;
                match now {
                    Some(l) => (Some(l), Role::Writer),
                    None if cfg.writer_standby
                        && !crate::recovery::has_unpublished(&cfg.buffer_path) =>
                    {
                        (None, Role::Standby)
                    }
                    None => (
                        WriterLease::acquire(s.clone(), Wait::Forever)?,
                        Role::Writer,
                    ),
                }
            }
            (_, true) => (None, Role::Writer),
            _ => (None, Role::Reader),
        };
        let mut view = crate::fencing::view_after_handover(&store, lease.as_deref())?;
        let publisher = if role == Role::Writer {
            crate::recovery::recover(&cfg.buffer_path, cfg.buffer_limit, &store, &mut view)?
        } else {
            Publisher::new(&cfg.buffer_path, cfg.buffer_limit, PublishState::default())
        };
        // Every acquisition records its epoch and fences, including a re-acquisition by
        // the same holder (a restarted container): nothing may write on an old fence.
        if let Some(l) = lease.as_ref() {
            crate::fencing::claim_epoch(&store, l, view.txid)?;
        }
        let st = State {
            txn: Transaction::default(),
            locks: LockTable::default(),
            publisher,
            pages: PageView::new(view, cfg.cache_size, cfg.hydration_enabled),
            deferred: Vec::new(),
            stats: SyncStats::default(),
            connections: 0,
            wal: None,
        };
        let db = Arc::new(Database {
            path: path.to_path_buf(),
            store,
            state: Mutex::new(st),
            space: Condvar::new(),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            publishing: Mutex::new(()),
            next_handle: AtomicU64::new(1),
            publish_soon: AtomicBool::new(false),
            shm: Mutex::new(crate::shm::Shm::default()),
            full_sync: AtomicU64::new(0),
            lease: RwLock::new(lease.clone()),
            role: RoleCell::new(role),
            create_only,
            cfg,
        });
        if let Some(l) = &lease {
            db.fence_store()?;
            l.start_renewal(db.state().publisher.waiting(), db.cfg.sync_interval);
        }
        crate::background::start(&db);
        tracing::info!(path = %path.display(), replica = %db.cfg.replica_url, role = role.name(), txid = db.state().pages.txid(), "database opened");
        Ok(db)
    }

    /// The writer lease, if writes are lease-gated and it is ours.
    pub(crate) fn lease(&self) -> Option<Arc<WriterLease>> {
        self.lease.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_lease(&self, l: Option<Arc<WriterLease>>) {
        *self.lease.write().unwrap_or_else(|e| e.into_inner()) = l;
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection's `synchronous` level became FULL (`true`) or stopped being FULL.
    pub fn full_sync_connections(&self, full: bool) {
        if full {
            self.full_sync.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .full_sync
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
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
        st.file_pages() as u64 * st.pages.page_size() as u64
    }

    /// Reads `buf.len()` bytes at `offset`. Returns false on a short read (zero-filled).
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<bool, VfsError> {
        let mut st = self.state();
        let ps = st.pages.page_size() as u64;
        if ps == 0 {
            buf.fill(0);
            return Ok(false);
        }
        let size = st.file_pages() as u64 * ps;
        let wal_file = st.wal_file();
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
            let kept = match st.wal.as_ref().filter(|_| wal_file) {
                Some(w) => w
                    .main
                    .page(pgno, ps as u32)
                    .map_err(|e| VfsError::buffer(&self.path, e))?,
                None => None,
            };
            let page = match kept {
                Some(p) => Arc::new(p),
                None => {
                    let (guard, page) = self.page(st, pgno)?;
                    st = guard;
                    page
                }
            };
            let out = &mut buf[done..done + n];
            out.copy_from_slice(&page[in_page..in_page + n]);
            if pgno == 1 {
                patch_page1(
                    out,
                    in_page,
                    st.pages.txid(),
                    self.role.get() == Role::Writer,
                );
            }
            done += n;
        }
        Ok(true)
    }

    /// The current content of a page for this process: the open transaction → the
    /// unpublished commits → the page view (local copy → cache → store). Releases the state
    /// lock around a store fetch.
    pub(crate) fn page<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        pgno: u32,
    ) -> Result<(MutexGuard<'a, State>, Page), VfsError> {
        let mut st = st;
        if let Some(p) = st.txn.page(pgno) {
            let p = Arc::new(p.to_vec());
            return Ok((st, p));
        }
        if let Some(p) = st.publisher.page(pgno) {
            let p = p.clone();
            return Ok((st, p));
        }
        let loc = match st.pages.lookup(pgno) {
            Lookup::Found(p) => return Ok((st, p)),
            Lookup::Zeros => {
                let z = Arc::new(vec![0u8; st.pages.page_size() as usize]);
                return Ok((st, z));
            }
            Lookup::Remote(loc) => loc,
        };
        let (ps, at) = (st.pages.page_size(), st.pages.txid());
        drop(st);
        let (data, reloaded) = crate::pages::fetch(&self.store, &loc, ps, at)?;
        let data = Arc::new(data);
        let mut st = self.state();
        if let Some(v) = reloaded {
            st.pages.adopt_reloaded(v);
        }
        st.pages.fetched(pgno, &loc, &data);
        Ok((st, data))
    }

    pub fn write(&self, data: &[u8], offset: u64) -> Result<(), VfsError> {
        let mut st = self.state();
        if st.pages.page_size() == 0 {
            // A new database: the first write (page 1) fixes the page size.
            if offset != 0 || !ltx::format::header::is_valid_page_size(data.len() as u32) {
                return Err(VfsError::Misuse(format!(
                    "first write to a new database must be page 1, got {} bytes at {offset}",
                    data.len()
                )));
            }
            st.pages.set_page_size(data.len() as u32);
        }
        let ps = st.pages.page_size() as u64;
        if st.wal_file() {
            return self.checkpoint_write(st, data, offset);
        }
        if !st.publisher.has_buffer() {
            st.publisher.open_buffer(ps as u32)?;
        }
        let mut done = 0usize;
        while done < data.len() {
            let off = offset + done as u64;
            let pgno = (off / ps) as u32 + 1;
            let in_page = (off % ps) as usize;
            let n = (data.len() - done).min(ps as usize - in_page);
            let page = if in_page != 0 || n != ps as usize {
                let (guard, cur) = self.page(st, pgno)?;
                st = guard;
                let mut p = cur.as_ref().clone();
                p[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
                p
            } else {
                data[done..done + n].to_vec()
            };
            let size = st.current_size();
            st.txn.write(pgno, page, size);
            done += n;
        }
        Ok(())
    }

    pub fn truncate(&self, size: u64) {
        let mut st = self.state();
        if let Some(pages) = size.checked_div(st.pages.page_size() as u64) {
            if st.wal_file() {
                if let Some(w) = st.wal.as_mut() {
                    w.main.truncate(pages as u32);
                }
            } else {
                st.txn.truncate(pages as u32);
            }
        }
    }

    pub fn sync(&self) {
        let mut st = self.state();
        if !st.wal_file() {
            st.txn.mark_synced();
        }
    }

    /// The transaction is committed (SQLITE_FCNTL_COMMIT_PHASETWO): record it in the write
    /// buffer before SQLite's COMMIT returns.
    pub fn commit(&self) -> Result<(), VfsError> {
        let mut st = self.state();
        let committed = st.committed_size();
        let Some(c) = st.txn.commit(committed) else {
            return Ok(());
        };
        if st.publisher.record(c)? {
            self.publish_soon.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    pub fn lock(&self, handle: u64, from: i32, to: i32) -> i32 {
        let mut st = self.state();
        if to == SQLITE_LOCK_SHARED {
            return st.locks.shared(handle, from);
        }
        if to == SQLITE_LOCK_RESERVED {
            return match self.admit_writer(st) {
                Ok(mut st) => st.locks.reserved(handle),
                Err(rc) => rc,
            };
        }
        if is_exclusive_level(to) {
            // Checked again right before the commit writes: a transaction that outlived
            // the lease does not commit.
            if self.role.get() != Role::Reader {
                if let Some(rc) = self.lease().and_then(|l| l.write_gate()) {
                    return rc;
                }
            }
            return st.locks.exclusive(handle, to);
        }
        SQLITE_OK
    }

    /// Whether a write transaction may begin (RESERVED, or the WAL write lock): this
    /// process is the writer, not fenced, its lease is current, and the buffer has room
    /// (waiting briefly for the publisher when it is full).
    pub(crate) fn admit_writer<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, i32> {
        match self.role.get() {
            Role::Reader => return Err(SQLITE_READONLY),
            // Waiting for the Lease: SQLite's busy handler retries.
            Role::Standby => return Err(SQLITE_BUSY),
            Role::Writer => {}
        }
        if let Some(f) = st.publisher.fenced() {
            tracing::error!(reason = %f, "write refused: this writer is fenced");
            return Err(SQLITE_READONLY);
        }
        if let Some(rc) = self.lease().and_then(|l| l.write_gate()) {
            return Err(rc);
        }
        // Back-pressure: wait briefly for the publisher to drain the buffer.
        let (mut st, _) = self
            .space
            .wait_timeout_while(st, BACKPRESSURE_WAIT, |s| s.publisher.is_full())
            .unwrap_or_else(|e| e.into_inner());
        if st.publisher.is_full() {
            let error = st.publisher.last_error().unwrap_or("").to_string();
            let limit = st.publisher.buffer_limit();
            st.stats.refused_buffer_full(limit, &error);
            return Err(SQLITE_BUSY);
        }
        Ok(st)
    }

    pub fn unlock(&self, handle: u64, from: i32, to: i32) {
        let mut st = self.state();
        let u = st.locks.unlock(handle, from, to);
        if u.ended_write {
            // Ended without COMMIT_PHASETWO: a rollback (after a commit, nothing is left).
            st.txn.rollback();
        }
        if u.no_readers {
            for (k, h, e) in std::mem::take(&mut st.deferred) {
                st.pages.apply_remote(k, &h, &e);
            }
        }
    }

    pub fn check_reserved(&self) -> bool {
        self.state().locks.has_reserved()
    }

    /// Publishes every committed, unpublished transaction as the next L0 TXID.
    /// Returns the TXID published, if any.
    pub fn publish(&self) -> Result<Option<u64>, VfsError> {
        let _turn = self.publish_turn()?;
        // A second round only after finding our own earlier object at the TXID.
        for _ in 0..3 {
            match self.publish_once()? {
                Attempt::Nothing => return Ok(None),
                Attempt::Published(txid) => return Ok(Some(txid)),
                Attempt::Again => {}
            }
        }
        Err(VfsError::Internal(
            "publishing kept finding its own earlier objects".into(),
        ))
    }

    /// One publish attempt.
    fn publish_once(&self) -> Result<Attempt, VfsError> {
        let started = Instant::now();
        let batch = {
            let mut st = self.state();
            let (txid, ps, size) = (st.pages.txid(), st.pages.page_size(), st.committed_size());
            let view_size = st.pages.size();
            st.publisher.take_batch(txid, view_size, ps, size)?
        };
        let Some(batch) = batch else {
            self.space.notify_all();
            return Ok(Attempt::Nothing);
        };
        match crate::publisher::put(&self.store, &batch) {
            Ok(PutOutcome::Published(enc)) => {
                let mut guard = self.state();
                let st = &mut *guard;
                crate::publisher::landed(&mut st.publisher, &mut st.pages, &enc, &batch)?;
                st.stats.synced(started);
                drop(guard);
                self.space.notify_all();
                tracing::debug!(
                    txid = batch.txid,
                    pages = batch.pages.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "published"
                );
                Ok(Attempt::Published(batch.txid))
            }
            Ok(PutOutcome::Taken(path)) => {
                if let Taken::Ours { seq, view } = crate::publisher::whose(&self.store, &batch)? {
                    tracing::warn!(txid = batch.txid, %path, "this TXID already holds our own earlier publish (its response was lost); continuing after it");
                    let mut guard = self.state();
                    let st = &mut *guard;
                    crate::publisher::adopted(&mut st.publisher, &mut st.pages, &batch, seq, view)?;
                    return Ok(Attempt::Again);
                }
                let detail = self.lease().and_then(|l| {
                    let e = self.store.latest_epoch().ok()??;
                    Some(format!(
                        "the store records writer epoch {} by {} from TXID {:016x}; this writer holds epoch {}",
                        e.epoch, e.holder, e.txid + 1, l.epoch()
                    ))
                });
                let f = self.state().publisher.taken(&batch, &path, detail);
                Err(f.into())
            }
            Err(e) => {
                self.state().publisher.set_last_error(&e);
                Err(e)
            }
        }
    }

    /// Waits for our turn to publish; while draining, only until the drain deadline (a
    /// background publish stuck on the store must not hold the hand-over past it).
    fn publish_turn(&self) -> Result<MutexGuard<'_, ()>, VfsError> {
        let Some(d) = self.store.deadline() else {
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
                    let txid = self.state().pages.txid() + 1;
                    return Err(VfsError::DrainDeadline {
                        what: format!("publishing TXID {txid}"),
                    });
                }
            }
        }
    }
}

/// For readers and standbys, page 1's bytes 18/19 say "rollback journal" (they follow the
/// replica; a writer's WAL is in its own process) and the change counter (bytes 24..28)
/// follows the TXID so SQLite notices polled updates. The writer sees page 1 as stored: a
/// database in WAL mode opens in WAL mode. `out` holds page 1's bytes from offset `at`.
fn patch_page1(out: &mut [u8], at: usize, txid: u64, writer: bool) {
    let mut set = |i: usize, v: u8| {
        if i >= at && i - at < out.len() {
            out[i - at] = v;
        }
    };
    if !writer {
        set(18, 1);
        set(19, 1);
        for (i, b) in (txid as u32).to_be_bytes().into_iter().enumerate() {
            set(24 + i, b);
        }
    }
}
