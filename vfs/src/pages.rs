//! The page view: where a committed page comes from when this process holds no newer
//! copy of it. [`Database::page`](crate::database::Database) first asks the open
//! transaction and the unpublished commits; then this view answers, in order: the
//! hydrated local copy → the LRU cache → a ranged GET of the page's frame in the newest
//! LTX file that holds it (the remote page map, kept current by our own publishes,
//! polling, and compaction's repointing).

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use ltx::format::{Header, PageIndexEntry};
use ltx::replica::{LtxKey, ReplicaError};

use crate::error::VfsError;
use crate::hydration::LocalCopy;
use crate::remote::{PageLoc, RemoteError, RemoteView};
use crate::store::Store;

pub type Page = Arc<Vec<u8>>;

/// Where a page is, as far as the view knows without calling the store.
pub enum Lookup {
    Found(Page),
    /// Never written (a new database, or grown in this transaction): zeros.
    Zeros,
    /// Fetch it from the store, then hand it to [`PageView::fetched`].
    Remote(PageLoc),
}

#[derive(Default, Clone, Copy)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub remote_gets: u64,
}

pub struct PageView {
    remote: RemoteView,
    cache: LruCache<u32, Page>,
    cache_bytes: u64,
    local: LocalCopy,
    stats: CacheStats,
}

impl PageView {
    pub fn new(remote: RemoteView, cache_bytes: u64, hydration: bool) -> Self {
        let cap = capacity(cache_bytes, remote.page_size);
        PageView {
            remote,
            cache: LruCache::new(cap),
            cache_bytes,
            local: LocalCopy::new(hydration),
            stats: CacheStats::default(),
        }
    }

    pub fn page_size(&self) -> u32 {
        self.remote.page_size
    }

    /// A new database: the first write (page 1) fixes the page size.
    pub fn set_page_size(&mut self, ps: u32) {
        self.remote.page_size = ps;
        self.cache.resize(capacity(self.cache_bytes, ps));
    }

    /// The newest TXID this view includes.
    pub fn txid(&self) -> u64 {
        self.remote.txid
    }

    /// The database size in pages as of [`Self::txid`].
    pub fn size(&self) -> u32 {
        self.remote.commit
    }

    pub fn local(&self) -> &LocalCopy {
        &self.local
    }

    pub fn local_mut(&mut self) -> &mut LocalCopy {
        &mut self.local
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn lookup(&mut self, pgno: u32) -> Lookup {
        let ps = self.remote.page_size;
        if let Some(v) = self.local.read(pgno, ps) {
            self.stats.hits += 1;
            return Lookup::Found(Arc::new(v));
        }
        if let Some(p) = self.cache.get(&pgno) {
            self.stats.hits += 1;
            return Lookup::Found(p.clone());
        }
        self.stats.misses += 1;
        match self.remote.pages.get(&pgno) {
            Some(loc) => {
                self.stats.remote_gets += 1;
                Lookup::Remote(*loc)
            }
            None => Lookup::Zeros,
        }
    }

    /// A page fetched from `loc`: cached (and written into a stale local copy) only if
    /// `loc` is still where the page lives (a poll may have moved it meanwhile).
    pub fn fetched(&mut self, pgno: u32, loc: &PageLoc, data: &Page) {
        if self
            .remote
            .pages
            .get(&pgno)
            .is_some_and(|l| l.key == loc.key)
        {
            self.cache.put(pgno, data.clone());
            self.local.repair(pgno, data);
        }
    }

    /// A map reloaded at this view's own TXID (a file was gone): its locations are as
    /// valid as ours and point at files that exist, so it replaces the map; cached pages
    /// stay (same TXID, same content).
    pub fn adopt_reloaded(&mut self, view: RemoteView) {
        if view.txid == self.remote.txid {
            self.remote.pages = view.pages;
        }
    }

    /// This process published `pages` as `key`: they live there now, and stay cached.
    pub fn published(
        &mut self,
        key: LtxKey,
        header: &Header,
        entries: &[PageIndexEntry],
        pages: &[(u32, Page)],
    ) {
        for (pgno, data) in pages {
            self.cache.put(*pgno, data.clone());
        }
        for e in entries {
            self.remote.pages.insert(e.pgno, PageLoc { key, entry: *e });
        }
        if header.commit < self.remote.commit {
            self.remote.pages.retain(|&p, _| p <= header.commit);
        }
        self.remote.commit = header.commit;
        self.remote.txid = header.max_txid;
        self.remote.last_header = Some(*header);
        self.local.published(pages, header.commit, header.page_size);
    }

    /// Another process published `key`: its pages replace ours in the map and the cache.
    pub fn apply_remote(&mut self, key: LtxKey, h: &Header, entries: &[PageIndexEntry]) {
        match self.remote.apply(key, h, entries) {
            Ok(changed) => {
                for p in &changed {
                    self.cache.pop(p);
                }
                self.local.mark_stale(changed);
                self.local.resize(h.commit, h.page_size);
            }
            Err(e) => tracing::error!(error = %e, "cannot apply polled file"),
        }
    }

    /// Moves to a newer map whose new TXIDs are all this process's own writes (every page
    /// they changed is still in the unpublished overlay, which takes precedence): the
    /// cache and the local copy stay valid.
    pub fn advance_to(&mut self, view: RemoteView) {
        self.remote = view;
    }

    /// Starts over from a freshly loaded map (history we cannot follow file by file).
    pub fn replace(&mut self, view: RemoteView) {
        self.cache.clear();
        self.local.mark_stale(view.pages.keys().copied());
        self.remote = view;
    }

    /// Compaction wrote `key` covering older L0 files: point their pages at it, so the
    /// L0 files can be deleted later without breaking reads.
    pub fn repoint(&mut self, key: LtxKey, entries: &[PageIndexEntry]) {
        for e in entries {
            if let Some(loc) = self.remote.pages.get_mut(&e.pgno) {
                if loc.key.level == 0 && loc.key.max_txid <= key.max_txid {
                    *loc = PageLoc { key, entry: *e };
                }
            }
        }
    }

    /// Hydration finished at `restored`: pages changed after it stay remote for now.
    pub fn hydrated(&mut self, file: std::fs::File, restored: u64) {
        let newer: Vec<u32> = self
            .remote
            .pages
            .iter()
            .filter(|(_, l)| l.key.max_txid > restored)
            .map(|(p, _)| *p)
            .collect();
        let (size, ps) = (self.remote.commit, self.remote.page_size);
        self.local.complete(file, newer, size, ps);
    }
}

/// Fetches a page from the store as of the view's TXID `at`. When retention removed its
/// file, the page map *at that TXID* is reloaded (never the latest: pages of a newer TXID
/// mixed into a read transaction at `at` corrupt what SQLite sees) and the page read from
/// there; the reloaded map is returned for the caller to adopt. If the replica no longer
/// holds TXID `at`, the read fails with [`VfsError::SnapshotGone`].
pub fn fetch(
    store: &Store,
    loc: &PageLoc,
    page_size: u32,
    at: u64,
) -> Result<(Vec<u8>, Option<RemoteView>), VfsError> {
    match store.read_page(loc, page_size) {
        Ok(p) => Ok((p, None)),
        Err(VfsError::Store(ReplicaError::NotFound { path })) => {
            tracing::info!(%path, txid = at, "page's file is gone (compacted); reloading the page map at this TXID");
            let view = match store.load_view_at(at) {
                Ok(v) if v.txid == at => v,
                // Nothing (or not all) of the history up to `at` is left.
                Ok(_) | Err(VfsError::Remote(RemoteError::Plan(_))) => {
                    return Err(VfsError::SnapshotGone { txid: at })
                }
                Err(e) => return Err(e),
            };
            let Some(newloc) = view.pages.get(&loc.entry.pgno).copied() else {
                return Err(ReplicaError::NotFound { path }.into());
            };
            let data = store.read_page(&newloc, page_size)?;
            Ok((data, Some(view)))
        }
        Err(e) => Err(e),
    }
}

fn capacity(cache_bytes: u64, page_size: u32) -> NonZeroUsize {
    let pages = (cache_bytes / page_size.max(4096) as u64).max(16);
    NonZeroUsize::new(pages as usize).unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::transaction::Committed;

    fn read(store: &Store, pv: &mut PageView, pgno: u32) -> Page {
        match pv.lookup(pgno) {
            Lookup::Found(p) => p,
            Lookup::Zeros => Arc::new(vec![0; PS as usize]),
            Lookup::Remote(loc) => {
                let (d, reloaded) = fetch(store, &loc, PS, pv.txid()).unwrap();
                if let Some(v) = reloaded {
                    pv.adopt_reloaded(v);
                }
                let d = Arc::new(d);
                pv.fetched(pgno, &loc, &d);
                d
            }
        }
    }

    /// Pages come from the store once, then from the cache; an evicted page is fetched
    /// again with the same bytes.
    #[test]
    fn evicted_page_is_fetched_again() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        let all: Vec<u32> = (1..=40).collect();
        p.record(commit(40, &all)).unwrap();
        publish(&f.store, &mut p, &mut pv).unwrap();
        // A reader's view: 16 pages of cache.
        let mut r = PageView::new(f.store.load_view().unwrap(), 16 * PS as u64, false);
        for n in 1..=40 {
            assert_eq!(*read(&f.store, &mut r, n), page(n as u8), "page {n}");
        }
        assert_eq!(r.stats().remote_gets, 40);
        assert!(
            matches!(r.lookup(40), Lookup::Found(_)),
            "recent pages are cached"
        );
        assert_eq!(
            *read(&f.store, &mut r, 1),
            page(1),
            "evicted page 1, fetched again"
        );
        assert_eq!(r.stats().remote_gets, 41);
        assert!(
            matches!(r.lookup(41), Lookup::Zeros),
            "beyond the map: never written"
        );
    }

    /// A page whose file retention deleted is found again in the file that replaced it.
    #[test]
    fn page_whose_file_is_gone_is_read_from_its_new_home() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        p.record(commit(2, &[1, 2])).unwrap();
        publish(&f.store, &mut p, &mut pv).unwrap();
        p.record(commit(2, &[2])).unwrap();
        publish(&f.store, &mut p, &mut pv).unwrap();
        let mut r = PageView::new(f.store.load_view().unwrap(), 1 << 20, false);
        // Compaction merges both into L1; retention deletes the L0 files.
        f.store.compact_l0().unwrap().expect("compacted");
        for t in 1..=2 {
            let (r, k) = (
                f.store.replica().clone(),
                ltx::replica::LtxKey::new(0, t, t),
            );
            crate::runtime::block_on(async move { r.delete(&k).await }).unwrap();
        }
        assert_eq!(*read(&f.store, &mut r, 2), page(2));
        assert_eq!(*read(&f.store, &mut r, 1), page(1));
    }

    /// A reader still at TXID 1 when the files of TXID 1 are compacted away must never be
    /// handed a page of TXID 2 (a read transaction mixing two TXIDs is a corrupt database
    /// to SQLite): its read fails with SnapshotGone instead.
    #[test]
    fn reader_behind_retention_gets_an_error_not_newer_pages() {
        let f = Fixture::new();
        let (mut p, view) = f.writer("a");
        let mut pv = PageView::new(view, 1 << 20, false);
        p.record(commit(2, &[1, 2])).unwrap();
        publish(&f.store, &mut p, &mut pv).unwrap();
        let mut r = PageView::new(f.store.load_view().unwrap(), 1 << 20, false);
        assert_eq!(r.txid(), 1);
        p.record(Committed {
            size: 2,
            pages: vec![(2, page(0xee))],
            durable: true,
        })
        .unwrap();
        publish(&f.store, &mut p, &mut pv).unwrap();
        f.store.compact_l0().unwrap().expect("compacted");
        for t in 1..=2 {
            let (rr, k) = (
                f.store.replica().clone(),
                ltx::replica::LtxKey::new(0, t, t),
            );
            crate::runtime::block_on(async move { rr.delete(&k).await }).unwrap();
        }
        let Lookup::Remote(loc) = r.lookup(2) else {
            panic!("page 2 is remote")
        };
        match fetch(&f.store, &loc, PS, r.txid()) {
            Err(VfsError::SnapshotGone { txid: 1 }) => {}
            Ok((d, _)) => panic!("a reader at TXID 1 got page 2 = {:#x}..", d[0]),
            Err(e) => panic!("{e}"),
        }
    }
}
