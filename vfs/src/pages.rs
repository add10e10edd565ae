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
use crate::remote::{PageLoc, RemoteView};
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

    /// A freshly loaded map where the page's file was gone: adopt its newer locations.
    pub fn adopt_newer_locations(&mut self, view: &RemoteView) {
        for (p, l) in &view.pages {
            if let Some(cur) = self.remote.pages.get_mut(p) {
                if cur.key.max_txid <= l.key.max_txid {
                    *cur = *l;
                }
            }
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

/// Fetches a page from the store. When retention removed its file, the page map is
/// reloaded and the page read from its new home; the reloaded map is returned so the
/// caller can adopt it.
pub fn fetch(
    store: &Store,
    loc: &PageLoc,
    page_size: u32,
) -> Result<(Vec<u8>, Option<RemoteView>), VfsError> {
    match store.read_page(loc, page_size) {
        Ok(p) => Ok((p, None)),
        Err(VfsError::Store(ReplicaError::NotFound { path })) => {
            tracing::info!(%path, "page's file is gone (compacted); reloading the replica's page map");
            let view = store.load_view()?;
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

    fn read(store: &Store, pv: &mut PageView, pgno: u32) -> Page {
        match pv.lookup(pgno) {
            Lookup::Found(p) => p,
            Lookup::Zeros => Arc::new(vec![0; PS as usize]),
            Lookup::Remote(loc) => {
                let (d, reloaded) = fetch(store, &loc, PS).unwrap();
                if let Some(v) = reloaded {
                    pv.adopt_newer_locations(&v);
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
}
