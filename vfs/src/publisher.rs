//! The publisher: committed transactions go into the write buffer (so a crash loses
//! nothing) and into the unpublished overlay (so this process reads them at once); about
//! once a second they leave together as the next L0 TXID, written create-only so that a
//! TXID another writer already holds fences this one; then the buffer lets go of them.
//!
//! [`Publisher`] owns the buffer and everything about "what is published". The store call
//! in the middle is made by the caller without any lock held:
//! [`Publisher::take_batch`] → [`Batch::encode`] → [`Store::put_create_only`] →
//! [`Publisher::published`] (or [`Publisher::put_failed`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ltx::format::{Encoder, Header, PageIndexEntry};
use ltx::replica::{LtxKey, ReplicaError};

use crate::buffer::{save_state, PublishState, TxRecord, WriteBuffer};
use crate::error::{Fenced, VfsError};
use crate::pages::Page;
use crate::remote::RemoteView;
use crate::store::Store;
use crate::transaction::Committed;

pub struct Publisher {
    buffer_path: PathBuf,
    buffer_limit: u64,
    buffer: Option<WriteBuffer>,
    state: PublishState,
    /// Committed pages not yet in the replica, and the database size they imply.
    unpublished: HashMap<u32, Page>,
    unpublished_size: Option<u32>,
    /// When the oldest commit not yet published was recorded (replayed ones: when they were
    /// replayed). What tells a writer whose store is failing from an idle one.
    waiting_since: WaitingSince,
    fenced: Option<Fenced>,
    last_error: Option<String>,
}

/// Since when commits wait to be published, shared with the lease thread, which must see it
/// even while a publish hangs on a dead store (the state lock is not needed to read it).
#[derive(Clone, Default)]
pub struct WaitingSince(Arc<AtomicI64>);

impl WaitingSince {
    /// Milliseconds since the epoch; 0 means none waits.
    fn set(&self, t: Option<jiff::Timestamp>) {
        let ms = t.map_or(0, |t| t.as_millisecond().max(1));
        self.0.store(ms, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<jiff::Timestamp> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => jiff::Timestamp::from_millisecond(ms).ok(),
        }
    }
}

/// One publish: every unpublished page, as the next TXID.
pub struct Batch {
    pub txid: u64,
    pub page_size: u32,
    /// Database size in pages.
    pub size: u32,
    /// The newest buffer record included (recorded in the header's WAL offset field, so a
    /// restarted writer can tell which of its records a file holds).
    pub last_seq: u64,
    pub writer_id: u64,
    pub pages: Vec<(u32, Page)>,
    /// When it was taken: commits still unpublished after it is published came later.
    pub taken_at: jiff::Timestamp,
}

/// A batch as an LTX file.
pub struct Encoded {
    pub key: LtxKey,
    pub header: Header,
    pub entries: Vec<PageIndexEntry>,
    pub bytes: Bytes,
    pub timestamp_ms: i64,
}

impl Publisher {
    pub fn new(buffer_path: &Path, buffer_limit: u64, state: PublishState) -> Self {
        Publisher {
            buffer_path: buffer_path.to_path_buf(),
            buffer_limit,
            buffer: None,
            state,
            unpublished: HashMap::new(),
            unpublished_size: None,
            waiting_since: WaitingSince::default(),
            fenced: None,
            last_error: None,
        }
    }

    /// Opens the write buffer and replays what it holds beyond the published records.
    /// Returns how many transactions were replayed.
    pub fn open_buffer(&mut self, page_size: u32) -> Result<usize, VfsError> {
        let (buf, records) =
            WriteBuffer::open(&self.buffer_path, page_size, self.state.published_seq)
                .map_err(|e| VfsError::buffer(&self.buffer_path, e))?;
        let n = records.len();
        if n > 0 {
            tracing::info!(transactions = n, buffer = %self.buffer_path.display(), "replaying committed transactions from the write buffer");
        }
        for TxRecord { size, pages, .. } in records {
            self.apply(size, pages);
        }
        self.buffer = Some(buf);
        // Records a crash left behind after their publish go now, not at the next publish:
        // commits in between would otherwise grow the file past its bound.
        self.release_buffer(self.state.published_seq)?;
        Ok(n)
    }

    pub fn has_buffer(&self) -> bool {
        self.buffer.is_some()
    }

    fn apply(&mut self, size: u32, pages: Vec<(u32, Vec<u8>)>) {
        for (p, d) in pages {
            self.unpublished.insert(p, Arc::new(d));
        }
        self.unpublished.retain(|&p, _| p <= size);
        self.unpublished_size = Some(size);
        if self.waiting_since.get().is_none() {
            self.waiting_since.set(Some(jiff::Timestamp::now()));
        }
    }

    /// Records a committed transaction (before SQLite's COMMIT returns). Returns true when
    /// unpublished bytes passed half the limit: publish now rather than at the interval.
    pub fn record(&mut self, c: Committed) -> Result<bool, VfsError> {
        let buf = self
            .buffer
            .as_mut()
            .ok_or_else(|| VfsError::Misuse("commit before the write buffer was opened".into()))?;
        let refs: Vec<(u32, &[u8])> = c.pages.iter().map(|(p, d)| (*p, d.as_slice())).collect();
        buf.append(c.size, &refs, c.durable)
            .map_err(|e| VfsError::buffer(&self.buffer_path, e))?;
        let soon = buf.unpublished_bytes(self.state.published_seq) > self.buffer_limit / 2;
        self.apply(c.size, c.pages);
        Ok(soon)
    }

    pub fn page(&self, pgno: u32) -> Option<&Page> {
        self.unpublished.get(&pgno)
    }

    /// The database size the unpublished commits imply, if they changed it.
    pub fn size(&self) -> Option<u32> {
        self.unpublished_size
    }

    pub fn unpublished_pages(&self) -> usize {
        self.unpublished.len()
    }

    /// Since when committed transactions wait to be published (`None`: none does).
    pub fn waiting_since(&self) -> Option<jiff::Timestamp> {
        self.waiting_since.get()
    }

    /// A handle that reads [`waiting_since`](Self::waiting_since) without the state lock.
    pub fn waiting(&self) -> WaitingSince {
        self.waiting_since.clone()
    }

    /// Unpublished bytes over `buffer_limit`: new write transactions wait.
    pub fn is_full(&self) -> bool {
        self.buffer
            .as_ref()
            .is_some_and(|b| b.unpublished_bytes(self.state.published_seq) > self.buffer_limit)
    }

    pub fn buffer_bytes(&self) -> u64 {
        self.buffer.as_ref().map_or(0, |b| b.bytes())
    }

    /// Commits fsynced in the write buffer since it was opened.
    pub fn buffer_fsyncs(&self) -> u64 {
        self.buffer.as_ref().map_or(0, |b| b.fsyncs)
    }

    pub fn buffer_limit(&self) -> u64 {
        self.buffer_limit
    }

    pub fn state(&self) -> PublishState {
        self.state
    }

    pub fn fenced(&self) -> Option<&Fenced> {
        self.fenced.as_ref()
    }

    pub fn fence(&mut self, f: Fenced) {
        tracing::error!("{f}");
        self.fenced = Some(f);
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn set_last_error(&mut self, e: &VfsError) {
        self.last_error = Some(e.to_string());
    }

    pub fn set_last_error_text(&mut self, e: &str) {
        self.last_error = Some(e.to_string());
    }

    /// Everything unpublished, as TXID `view_txid + 1` at `size` pages; `None` when there
    /// is nothing new (then records already published are dropped from the buffer: after a
    /// crash before its truncation, back-pressure would count them forever).
    ///
    /// Pages past `view_size` (the replica's size) that no commit wrote go in as zeros,
    /// which is how they read: SQLite leaves pages it allocated and freed in the same
    /// transaction unwritten (holes), and a restore needs every page up to the size, as
    /// Litestream fills its "WAL growth" pages from the file.
    pub fn take_batch(
        &mut self,
        view_txid: u64,
        view_size: u32,
        page_size: u32,
        size: u32,
    ) -> Result<Option<Batch>, VfsError> {
        if let Some(f) = &self.fenced {
            return Err(f.clone().into());
        }
        if self.unpublished.is_empty() && self.unpublished_size.is_none() {
            self.release_buffer(self.state.published_seq)?;
            return Ok(None);
        }
        let mut pages: Vec<(u32, Page)> = self
            .unpublished
            .iter()
            .map(|(p, d)| (*p, d.clone()))
            .collect();
        let lock = ltx::format::lock_pgno(page_size);
        let mut zeros: Option<Page> = None;
        for pgno in view_size + 1..=size {
            if pgno != lock && !self.unpublished.contains_key(&pgno) {
                let z = zeros.get_or_insert_with(|| Arc::new(vec![0; page_size as usize]));
                pages.push((pgno, z.clone()));
            }
        }
        pages.sort_by_key(|(p, _)| *p);
        Ok(Some(Batch {
            txid: view_txid + 1,
            page_size,
            size,
            last_seq: self.buffer.as_ref().map_or(0, |b| b.last_seq()),
            writer_id: self.state.writer_id,
            pages,
            taken_at: jiff::Timestamp::now(),
        }))
    }

    /// The batch is in the replica: drop exactly its pages from the overlay (a page
    /// committed again meanwhile stays), persist the publish state, release the buffer.
    pub fn published(&mut self, b: &Batch) -> Result<(), VfsError> {
        for (pgno, data) in &b.pages {
            if self
                .unpublished
                .get(pgno)
                .is_some_and(|cur| Arc::ptr_eq(cur, data))
            {
                self.unpublished.remove(pgno);
            }
        }
        if self.unpublished.is_empty() {
            self.unpublished_size = None;
            self.waiting_since.set(None);
        } else {
            self.waiting_since.set(Some(b.taken_at));
        }
        self.state.published_txid = b.txid;
        self.state.published_seq = b.last_seq;
        save_state(&self.buffer_path, &self.state)
            .map_err(|e| VfsError::buffer(&self.buffer_path, e))?;
        self.release_buffer(b.last_seq)?;
        self.last_error = None;
        Ok(())
    }

    /// The store refused the batch's TXID: another writer owns it. Fences this writer and
    /// returns the error to report.
    pub fn taken(&mut self, b: &Batch, path: &str, detail: Option<String>) -> Fenced {
        let mut reason = format!(
            "another writer already published TXID {} ({path}); this writer is fenced and its {} unpublished page(s) are kept in {}",
            b.txid,
            b.pages.len(),
            self.buffer_path.display()
        );
        if let Some(d) = detail {
            reason.push_str(&format!(" ({d})"));
        }
        let f = Fenced::new(reason);
        self.fence(f.clone());
        f
    }

    /// TXID `txid` turned out to hold our own earlier publish, of the buffer records up to
    /// `seq`. They are published; every page stays in the overlay (a later commit may have
    /// changed it again, and republishing an unchanged page in the next TXID is harmless).
    pub fn adopt_own(&mut self, txid: u64, seq: u64) -> Result<(), VfsError> {
        self.state.published_txid = txid;
        self.state.published_seq = self.state.published_seq.max(seq);
        save_state(&self.buffer_path, &self.state)
            .map_err(|e| VfsError::buffer(&self.buffer_path, e))?;
        self.last_error = None;
        Ok(())
    }

    /// Starts over at a replica that moved on (the fence TXID was taken): whatever was
    /// unpublished was only our own fence page.
    pub fn reset_to(&mut self, txid: u64) {
        self.fenced = None;
        self.unpublished.clear();
        self.unpublished_size = None;
        self.waiting_since.set(None);
        self.state.published_txid = txid;
    }

    /// Stages `page` as unpublished without a buffer record (the fence page: it is
    /// already in the replica, so a crash loses nothing).
    pub fn stage(&mut self, pgno: u32, page: Page) {
        self.unpublished.insert(pgno, page);
    }

    /// Fsyncs the commits recorded without a sync (see `WriteBuffer::sync_commits`).
    pub fn sync_commits(&mut self) -> Result<(), VfsError> {
        match self.buffer.as_mut() {
            Some(b) => b
                .sync_commits()
                .map_err(|e| VfsError::buffer(&self.buffer_path, e)),
            None => Ok(()),
        }
    }

    pub fn sync_buffer(&mut self) {
        if let Some(b) = self.buffer.as_mut() {
            if let Err(e) = b.sync() {
                tracing::warn!(error = %e, "cannot fsync the write buffer");
            }
        }
    }

    fn release_buffer(&mut self, published_seq: u64) -> Result<(), VfsError> {
        // Published records are cut from the front once they take this much (a rewrite
        // of the unpublished tail): the file stays within about 1.25× the limit.
        let compact_min = (self.buffer_limit / 4).min(4 << 20);
        if let Some(b) = self.buffer.as_mut().filter(|b| b.bytes() > 0) {
            b.release_published(published_seq, compact_min)
                .map_err(|e| VfsError::buffer(&self.buffer_path, e))?;
        }
        Ok(())
    }
}

impl Batch {
    /// The batch as an LTX file. TXID 1 is a snapshot: every page, zeros where never
    /// written.
    pub fn encode(&self) -> Result<Encoded, VfsError> {
        let ts = jiff::Timestamp::now().as_millisecond();
        let (txid, ps) = (self.txid, self.page_size);
        let enc_err = |source| VfsError::Encode { txid, source };
        let mut h = Header::new(ps, self.size, txid, txid, ts);
        h.wal_offset = self.last_seq as i64;
        h.node_id = self.writer_id;
        let mut enc = Encoder::new(Vec::new(), h).map_err(enc_err)?;
        if txid == 1 {
            let zero = vec![0u8; ps as usize];
            let mut it = self.pages.iter().peekable();
            for pgno in 1..=self.size {
                let data = match it.peek() {
                    Some((p, d)) if *p == pgno => {
                        it.next();
                        d.as_slice()
                    }
                    _ => zero.as_slice(),
                };
                enc.write_db_page(pgno, data).map_err(enc_err)?;
            }
        } else {
            for (pgno, data) in self.pages.iter().filter(|(p, _)| *p <= self.size) {
                enc.write_db_page(*pgno, data).map_err(enc_err)?;
            }
        }
        let entries = enc.index_entries().to_vec();
        let (bytes, _) = enc.finish(None).map_err(enc_err)?;
        Ok(Encoded {
            key: LtxKey::new(0, txid, txid),
            header: h,
            entries,
            bytes: Bytes::from(bytes),
            timestamp_ms: ts,
        })
    }
}

/// How a PUT of a batch ended.
pub enum PutOutcome {
    Published(Encoded),
    /// The TXID is taken (by another writer): the object's path.
    Taken(String),
}

/// Whose object holds the TXID a create-only PUT found taken.
pub enum Taken {
    /// Ours: a PUT of ours landed although we never saw the answer (a lost response, then
    /// retries gave up). It holds our buffer records up to `seq`; `view` is the replica
    /// with it. Adopt it and publish the rest as the next TXID.
    Ours { seq: u64, view: RemoteView },
    /// Another writer's: this writer is fenced.
    Theirs,
}

/// Tells our own earlier object from another writer's: same writer id, records we still
/// hold, and the replica ends exactly there.
pub fn whose(store: &Store, batch: &Batch) -> Result<Taken, VfsError> {
    let h = store.read_header(LtxKey::new(0, batch.txid, batch.txid))?;
    let seq = h.wal_offset.max(0) as u64;
    if h.node_id != batch.writer_id || seq > batch.last_seq {
        return Ok(Taken::Theirs);
    }
    let view = store.load_view()?;
    if view.txid != batch.txid {
        return Ok(Taken::Theirs);
    }
    Ok(Taken::Ours { seq, view })
}

/// Encodes and PUTs `batch` create-only. Called without any lock held.
/// The batch's PUT landed: the page view takes the new file first, then the publisher drops
/// the batch's pages from the overlay and saves its state. The replica holds the batch
/// whatever happens to that local bookkeeping, so a failure there (a full disk) is returned
/// but never leaves reads without those pages; the next publish continues after this TXID.
pub fn landed(
    p: &mut Publisher,
    view: &mut crate::pages::PageView,
    enc: &Encoded,
    b: &Batch,
) -> Result<(), VfsError> {
    view.published(enc.key, &enc.header, &enc.entries, &b.pages);
    p.published(b)
}

/// The batch's TXID holds our own earlier publish (its response was lost): the page view
/// moves to it first, then the publisher records it as published, so a state file that
/// cannot be saved does not make the next publish try this TXID again.
pub fn adopted(
    p: &mut Publisher,
    view: &mut crate::pages::PageView,
    b: &Batch,
    seq: u64,
    remote: RemoteView,
) -> Result<(), VfsError> {
    view.advance_to(remote);
    p.adopt_own(b.txid, seq)
}

pub fn put(store: &Store, batch: &Batch) -> Result<PutOutcome, VfsError> {
    let enc = batch.encode()?;
    match store.put_create_only(enc.key, enc.bytes.clone(), enc.timestamp_ms) {
        Ok(()) => Ok(PutOutcome::Published(enc)),
        Err(VfsError::Store(ReplicaError::AlreadyExists { path })) => Ok(PutOutcome::Taken(path)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::PageView;
    use crate::testutil::*;

    /// A PUT that fails keeps everything (overlay, buffer, TXID); the retry publishes the
    /// same TXID once the store is back, and only then is the buffer released.
    #[test]
    fn failed_put_is_retried_with_nothing_lost() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        p.record(commit(2, &[1, 2])).unwrap();
        // The store fails: a file sits where the level directory must go.
        std::fs::create_dir_all(f.replica_root()).unwrap();
        std::fs::write(f.replica_root().join("ltx"), b"in the way").unwrap();
        let err = publish(&f.store, &mut p, &mut pv).unwrap_err();
        assert!(matches!(err, VfsError::Store(_)), "{err}");
        assert!(p.fenced().is_none(), "a store failure is not fencing");
        assert!(p.last_error().is_some());
        assert_eq!(p.unpublished_pages(), 2);
        assert!(p.buffer_bytes() > 0, "the buffer keeps the commit");
        assert_eq!(p.state().published_txid, 0);
        // The store is back: the same TXID, the same pages.
        std::fs::remove_file(f.replica_root().join("ltx")).unwrap();
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 1);
        assert_eq!(p.unpublished_pages(), 0);
        assert_eq!(p.buffer_bytes(), 0, "released once published");
        assert_eq!(p.state().published_txid, 1);
        assert!(p.last_error().is_none());
        let v = f.store.load_view().unwrap();
        assert_eq!((v.txid, v.commit), (1, 2));
        let got = f.store.read_page(&v.pages[&2], PS).unwrap();
        assert_eq!(got, page(2));
    }

    /// A PUT that landed but whose answer was lost (then retries gave up): the next publish
    /// rebuilds that TXID with more records, finds it taken, recognises its own object and
    /// carries on with the next TXID. Before, the writer fenced itself with no other writer
    /// around, and nothing it committed afterwards reached the replica.
    #[test]
    fn own_object_from_a_lost_response_is_adopted_not_fenced() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        p.record(commit(2, &[1, 2])).unwrap();
        // The PUT lands; the writer never hears back (an error, as after retries gave up).
        let b = p.take_batch(0, 0, PS, 2).unwrap().unwrap();
        assert!(matches!(
            put(&f.store, &b).unwrap(),
            PutOutcome::Published(_)
        ));
        p.set_last_error(&VfsError::Misuse("response lost".into()));
        // More commits, then the next publish: TXID 1 again, with different bytes.
        p.record(commit(3, &[3])).unwrap();
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 2);
        assert!(p.fenced().is_none(), "fenced by its own object");
        assert_eq!(p.unpublished_pages(), 0);
        assert_eq!(p.state().published_txid, 2);
        let v = f.store.load_view().unwrap();
        assert_eq!((v.txid, v.commit), (2, 3));
        for n in 1..=3 {
            assert_eq!(f.store.read_page(&v.pages[&n], PS).unwrap(), page(n as u8));
        }
        // And the replica at TXID 1 is the first commit exactly.
        let v1 = f.store.load_view_at(1).unwrap();
        assert_eq!((v1.txid, v1.commit), (1, 2));
    }

    /// Commits that wait say since when; an idle writer (all published) says nothing. A
    /// commit made while a batch was in flight waits from when the batch was taken.
    #[test]
    fn waiting_since_tells_failing_from_idle() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        assert_eq!(p.waiting_since(), None, "nothing committed");
        let before = jiff::Timestamp::now();
        p.record(commit(2, &[1, 2])).unwrap();
        let since = p.waiting_since().expect("a commit waits");
        assert!(since.as_millisecond() >= before.as_millisecond());
        std::fs::create_dir_all(f.replica_root()).unwrap();
        std::fs::write(f.replica_root().join("ltx"), b"in the way").unwrap();
        publish(&f.store, &mut p, &mut pv).unwrap_err();
        p.record(commit(2, &[2])).unwrap();
        assert_eq!(
            p.waiting_since(),
            Some(since),
            "the oldest commit still waits"
        );
        std::fs::remove_file(f.replica_root().join("ltx")).unwrap();

        let b = p.take_batch(0, 0, PS, 2).unwrap().unwrap();
        p.record(commit(3, &[3])).unwrap();
        assert!(matches!(
            put(&f.store, &b).unwrap(),
            PutOutcome::Published(_)
        ));
        p.published(&b).unwrap();
        assert_eq!(
            p.waiting_since().map(|t| t.as_millisecond()),
            Some(b.taken_at.as_millisecond()),
            "page 3 came after the batch"
        );
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 2);
        assert_eq!(p.waiting_since(), None, "all published: idle");
    }

    /// The page as this process reads it: the unpublished overlay, then the page view.
    fn read(f: &Fixture, p: &Publisher, pv: &mut PageView, pgno: u32) -> Vec<u8> {
        if let Some(d) = p.page(pgno) {
            return d.to_vec();
        }
        match pv.lookup(pgno) {
            crate::pages::Lookup::Found(d) => d.to_vec(),
            crate::pages::Lookup::Zeros => vec![0; PS as usize],
            crate::pages::Lookup::Remote(loc) => {
                crate::pages::fetch(&f.store, &loc, PS, pv.txid())
                    .unwrap()
                    .0
            }
        }
    }

    /// Makes saving writer `name`'s publish state fail (a directory takes the state file's
    /// temporary name, as a full disk would); remove the returned path to undo it.
    fn block_state_save(f: &Fixture, name: &str) -> String {
        let tmp = format!(
            "{}.tmp",
            crate::buffer::state_path(&f.buffer(name)).display()
        );
        std::fs::create_dir_all(&tmp).unwrap();
        tmp
    }

    /// The PUT landed but the publish state cannot be saved (a full disk): the batch is in
    /// the replica whatever the local file says, so this process must go on reading its
    /// pages and publish the next TXID after it. Before, the overlay had dropped them while
    /// the page view never learnt of the new file: reads went back to the old pages (and
    /// commits built on them) until the next publish.
    #[test]
    fn a_publish_whose_state_cannot_be_saved_keeps_reads_current() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        p.record(commit(2, &[1, 2])).unwrap();
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 1);
        let mut newer = commit(2, &[2]);
        newer.pages[0].1 = page(77);
        p.record(newer).unwrap();
        let tmp = block_state_save(&f, "a");
        assert!(
            publish(&f.store, &mut p, &mut pv).is_err(),
            "saving the state failed"
        );
        assert_eq!(
            read(&f, &p, &mut pv, 2),
            page(77),
            "page 2 went back to an older version"
        );
        assert_eq!(pv.txid(), 2, "the page view knows the TXID that landed");
        std::fs::remove_dir_all(&tmp).unwrap();
        p.record(commit(3, &[3])).unwrap();
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 3);
        assert_eq!(read(&f, &p, &mut pv, 2), page(77));
        let v = f.store.load_view().unwrap();
        assert_eq!(f.store.read_page(&v.pages[&2], PS).unwrap(), page(77));
    }

    /// Our own earlier object found at the TXID while the state file cannot be saved: the
    /// page view still moves past it, so the next publish does not try that TXID again.
    #[test]
    fn adopting_our_own_object_moves_on_even_if_the_state_cannot_be_saved() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        p.record(commit(2, &[1, 2])).unwrap();
        let b = p.take_batch(0, 0, PS, 2).unwrap().unwrap();
        assert!(matches!(
            put(&f.store, &b).unwrap(),
            PutOutcome::Published(_)
        ));
        p.record(commit(3, &[3])).unwrap();
        let tmp = block_state_save(&f, "a");
        assert!(publish(&f.store, &mut p, &mut pv).is_err());
        assert_eq!(pv.txid(), 1, "the page view moved to our own TXID 1");
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 2);
        for n in 1..=3 {
            assert_eq!(read(&f, &p, &mut pv, n), page(n as u8));
        }
    }

    /// A commit that grows the database without writing every new page (SQLite leaves
    /// free pages it allocated and freed in one transaction unwritten: holes in the file)
    /// is published with those pages as zeros, as they read. Before, the LTX file lacked
    /// them and neither `litestream restore` ("nonsequential page numbers") nor ours
    /// ("page N was never written") could restore the replica.
    #[test]
    fn a_grown_database_publishes_the_pages_it_did_not_write_as_zeros() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        p.record(commit(2, &[1, 2])).unwrap();
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 1);
        p.record(commit(6, &[1, 6])).unwrap();
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 2);
        let v = f.store.load_view().unwrap();
        assert_eq!(v.commit, 6);
        for n in 3..=5 {
            let loc = v
                .pages
                .get(&n)
                .unwrap_or_else(|| panic!("page {n} is in no file"));
            assert_eq!(f.store.read_page(loc, PS).unwrap(), vec![0; PS as usize]);
            assert_eq!(read(&f, &p, &mut pv, n), vec![0; PS as usize]);
        }
        assert_eq!(f.store.read_page(&v.pages[&6], PS).unwrap(), page(6));
    }

    /// A TXID another writer published fences this one (and only that does).
    #[test]
    fn taken_txid_fences() {
        let f = Fixture::new();
        let (mut a, va) = f.writer("a");
        let (mut b, vb) = f.writer("b");
        let (mut pa, mut pb) = (
            PageView::new(va, 1 << 20, false),
            PageView::new(vb, 1 << 20, false),
        );
        a.record(commit(1, &[1])).unwrap();
        b.record(commit(1, &[1])).unwrap();
        assert_eq!(publish(&f.store, &mut a, &mut pa).unwrap(), 1);
        let err = publish(&f.store, &mut b, &mut pb).unwrap_err();
        assert!(matches!(err, VfsError::Fenced(_)), "{err}");
        assert!(b.fenced().is_some());
        assert!(matches!(
            b.take_batch(0, 0, PS, 1),
            Err(VfsError::Fenced(_))
        ));
    }
}
