//! WAL journal mode through the VFS: the `-wal` file, and the database file as WAL-mode
//! readers must see it.
//!
//! **Where commits go.** The WAL's content lives in memory ([`SpillFile`]), never on disk:
//! what must survive a crash is the write buffer, as in rollback mode. SQLite appends a
//! transaction's frames and marks the last one as the commit (its header carries the new
//! database size); when that frame's page is written, the frames since the previous commit
//! are one committed transaction, and [`Wal::write`] reports it for the write buffer,
//! within the `xWrite`, so a buffer that cannot take it fails the commit. At
//! `synchronous=FULL` SQLite then syncs the WAL, which fsyncs the buffer; at NORMAL it does
//! not, exactly as local WAL. A crash loses the in-memory WAL and nothing else: the buffer
//! replays every commit into the database the next process opens.
//!
//! **What the database file holds.** In WAL mode a reader takes a page from the WAL if a
//! frame for it is in its snapshot, otherwise from the database file, which SQLite changes
//! only by checkpointing. So the file must show checkpointed content, not the newest
//! commits (which the page view already has): [`MainView`] keeps the pages checkpoints
//! wrote, and the page as it was before the first commit that changed it since the WAL
//! started over. Once the WAL starts over (every frame checkpointed), the file and the
//! newest commits agree again and both are forgotten.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::spill::SpillFile;

/// WAL file header and frame header sizes.
const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;

/// A committed transaction found in the WAL.
pub struct WalCommit {
    /// Offset just past its commit frame.
    pub end: u64,
    /// Database size in pages after it.
    pub size: u32,
    /// Its pages (the newest frame of each), ascending, within `size`.
    pub pages: Vec<(u32, Vec<u8>)>,
}

pub struct Wal {
    log: SpillFile,
    page_size: u32,
    /// Offset of the first frame after the last captured commit.
    scan: u64,
    /// A commit frame whose header was written; complete once its page is written.
    commit_at: Option<(u64, u32)>,
    pub main: MainView,
}

impl Wal {
    pub fn new(dir: PathBuf) -> Self {
        Wal {
            log: SpillFile::new(dir.clone(), "WAL"),
            page_size: 0,
            scan: WAL_HEADER,
            commit_at: None,
            main: MainView::new(dir),
        }
    }

    pub fn len(&self) -> u64 {
        self.log.len()
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn read(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        self.log.read(buf, off)
    }

    /// Takes a write to the WAL. Returns the commit whose last frame this write completed
    /// (not yet captured: call [`Self::captured`] once the write buffer holds it).
    pub fn write(&mut self, data: &[u8], off: u64) -> std::io::Result<Option<(u64, u32)>> {
        self.log.write(data, off)?;
        if off == 0 && data.len() as u64 >= WAL_HEADER {
            // A new WAL: SQLite starts over only when every frame was checkpointed.
            self.page_size = u32::from_be_bytes(data[8..12].try_into().unwrap());
            self.scan = WAL_HEADER;
            self.commit_at = None;
            self.main.clear();
            return Ok(None);
        }
        if self.page_size == 0 || off < self.scan {
            // Before the header, or a checksum rewrite of frames already captured.
            return Ok(None);
        }
        let frame = FRAME_HEADER + self.page_size as u64;
        if data.len() as u64 == FRAME_HEADER && (off - WAL_HEADER).is_multiple_of(frame) {
            let size = u32::from_be_bytes(data[4..8].try_into().unwrap());
            if size != 0 {
                self.commit_at = Some((off, size));
            } else if self.commit_at.is_some_and(|(at, _)| at == off) {
                self.commit_at = None;
            }
        }
        let end = off + data.len() as u64;
        Ok(self
            .commit_at
            .filter(|&(at, _)| off < at + frame && end >= at + frame)
            .map(|(at, size)| (at + frame, size)))
    }

    /// The transaction from the last captured commit up to the commit frame ending at `end`.
    pub fn commit(&self, end: u64, size: u32) -> std::io::Result<WalCommit> {
        let ps = self.page_size as usize;
        let frame = FRAME_HEADER + ps as u64;
        let mut pages = BTreeMap::new();
        let mut at = self.scan;
        while at + frame <= end {
            let mut hdr = [0u8; FRAME_HEADER as usize];
            self.log.read(&mut hdr, at)?;
            let pgno = u32::from_be_bytes(hdr[0..4].try_into().unwrap());
            let mut page = vec![0u8; ps];
            self.log.read(&mut page, at + FRAME_HEADER)?;
            if pgno != 0 && pgno <= size {
                pages.insert(pgno, page);
            }
            at += frame;
        }
        Ok(WalCommit {
            end,
            size,
            pages: pages.into_iter().collect(),
        })
    }

    /// The commit ending at `end` is in the write buffer.
    pub fn captured(&mut self, end: u64) {
        self.scan = end;
        self.commit_at = None;
    }

    pub fn truncate(&mut self, size: u64) -> std::io::Result<()> {
        self.log.truncate(size)?;
        if size == 0 {
            // A TRUNCATE checkpoint: every frame is in the database file.
            self.scan = WAL_HEADER;
            self.commit_at = None;
            self.page_size = 0;
            self.main.clear();
        }
        Ok(())
    }
}

/// The database file as SQLite wrote it in WAL mode: pages checkpointed since the WAL
/// started over, and the content of pages that commits changed but no checkpoint has
/// written yet. Every other page is the newest committed one.
pub struct MainView {
    /// The file's size in pages, once a commit since the start of the WAL made it differ
    /// from the newest committed size.
    pub size: Option<u32>,
    written: PageStore,
    before: PageStore,
}

impl MainView {
    fn new(dir: PathBuf) -> Self {
        MainView {
            size: None,
            written: PageStore::new(dir.clone(), "checkpointed pages"),
            before: PageStore::new(dir, "pages before the WAL"),
        }
    }

    /// The file's content of `pgno`, if it differs from the newest committed page.
    pub fn page(&self, pgno: u32, page_size: u32) -> std::io::Result<Option<Vec<u8>>> {
        match self.written.get(pgno, page_size)? {
            Some(p) => Ok(Some(p)),
            None => self.before.get(pgno, page_size),
        }
    }

    /// Whether the file's content of `pgno` is already kept here.
    pub fn has(&self, pgno: u32) -> bool {
        self.written.has(pgno) || self.before.has(pgno)
    }

    /// Keeps `page` as the file's content of `pgno` before a commit changes it.
    pub fn keep_before(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()> {
        self.before.put(pgno, page)
    }

    /// A checkpoint wrote `page`.
    pub fn write(&mut self, pgno: u32, page: &[u8], committed_size: u32) -> std::io::Result<()> {
        let size = self.size.unwrap_or(committed_size);
        self.size = Some(size.max(pgno));
        self.written.put(pgno, page)
    }

    /// A checkpoint cut the file to `pages`.
    pub fn truncate(&mut self, pages: u32) {
        self.size = Some(pages);
        self.written.retain(pages);
        self.before.retain(pages);
    }

    fn clear(&mut self) {
        self.size = None;
        self.written.clear();
        self.before.clear();
    }
}

/// Whole pages by number, in a [`SpillFile`] (a page keeps its slot when rewritten).
struct PageStore {
    file: SpillFile,
    at: HashMap<u32, u64>,
}

impl PageStore {
    fn new(dir: PathBuf, what: &'static str) -> Self {
        PageStore {
            file: SpillFile::new(dir, what),
            at: HashMap::new(),
        }
    }

    fn has(&self, pgno: u32) -> bool {
        self.at.contains_key(&pgno)
    }

    fn get(&self, pgno: u32, page_size: u32) -> std::io::Result<Option<Vec<u8>>> {
        let Some(&off) = self.at.get(&pgno) else {
            return Ok(None);
        };
        let mut p = vec![0u8; page_size as usize];
        self.file.read(&mut p, off)?;
        Ok(Some(p))
    }

    fn put(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()> {
        let off = match self.at.get(&pgno) {
            Some(&o) => o,
            None => self.file.len(),
        };
        self.file.write(page, off)?;
        self.at.insert(pgno, off);
        Ok(())
    }

    fn retain(&mut self, pages: u32) {
        self.at.retain(|&p, _| p <= pages);
    }

    fn clear(&mut self) {
        self.at.clear();
        let _ = self.file.truncate(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: u32 = 512;

    fn header() -> Vec<u8> {
        let mut h = vec![0u8; 32];
        h[0..4].copy_from_slice(&0x377f0682u32.to_be_bytes());
        h[8..12].copy_from_slice(&PS.to_be_bytes());
        h
    }

    fn frame_header(pgno: u32, commit: u32) -> Vec<u8> {
        let mut h = vec![0u8; 24];
        h[0..4].copy_from_slice(&pgno.to_be_bytes());
        h[4..8].copy_from_slice(&commit.to_be_bytes());
        h
    }

    /// Writes frame `i` (0-based) the way SQLite does: header, then page.
    fn frame(w: &mut Wal, i: u64, pgno: u32, commit: u32, fill: u8) -> Option<(u64, u32)> {
        let off = 32 + i * (24 + PS as u64);
        assert!(w.write(&frame_header(pgno, commit), off).unwrap().is_none());
        w.write(&vec![fill; PS as usize], off + 24).unwrap()
    }

    #[test]
    fn a_commit_is_the_frames_since_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::new(dir.path().to_path_buf());
        assert!(w.write(&header(), 0).unwrap().is_none());
        assert!(frame(&mut w, 0, 2, 0, 0xa).is_none());
        assert!(frame(&mut w, 1, 3, 0, 0xb).is_none());
        // A page spilled earlier in the transaction is rewritten in place.
        assert!(w.write(&vec![0xc; PS as usize], 32 + 24).unwrap().is_none());
        let (end, size) = frame(&mut w, 2, 1, 3, 0x1).expect("commit frame written");
        assert_eq!(size, 3);
        let c = w.commit(end, size).unwrap();
        let got: Vec<(u32, u8)> = c.pages.iter().map(|(p, d)| (*p, d[0])).collect();
        assert_eq!(got, vec![(1, 0x1), (2, 0xc), (3, 0xb)]);
        w.captured(end);
        // A checksum rewrite of a captured commit frame is not a new commit.
        assert!(w
            .write(&frame_header(1, 3), 32 + 2 * (24 + PS as u64))
            .unwrap()
            .is_none());
        // The next transaction shrinks the database: pages past its size are dropped.
        assert!(frame(&mut w, 3, 3, 0, 0xd).is_none());
        let (end, size) = frame(&mut w, 4, 2, 2, 0xe).unwrap();
        let c = w.commit(end, size).unwrap();
        assert_eq!(c.pages.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn an_uncaptured_commit_is_captured_with_the_next_one_that_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::new(dir.path().to_path_buf());
        w.write(&header(), 0).unwrap();
        // The write buffer refused it (not captured): SQLite rolls back and the next
        // transaction writes over the same frames.
        assert!(frame(&mut w, 0, 5, 5, 0x5).is_some());
        let (end, size) = frame(&mut w, 0, 4, 4, 0x4).unwrap();
        let c = w.commit(end, size).unwrap();
        assert_eq!(c.pages.len(), 1);
        assert_eq!((c.pages[0].0, c.pages[0].1[0]), (4, 0x4));
    }

    #[test]
    fn the_file_view_keeps_checkpointed_and_earlier_pages_until_the_wal_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::new(dir.path().to_path_buf());
        w.write(&header(), 0).unwrap();
        w.main.keep_before(2, &vec![0x2; PS as usize]).unwrap();
        assert!(w.main.has(2) && !w.main.has(3));
        assert_eq!(w.main.page(2, PS).unwrap().unwrap()[0], 0x2);
        w.main.write(2, &vec![0x22; PS as usize], 2).unwrap();
        w.main.write(4, &vec![0x44; PS as usize], 2).unwrap();
        assert_eq!(
            w.main.page(2, PS).unwrap().unwrap()[0],
            0x22,
            "checkpointed wins"
        );
        assert_eq!(w.main.size, Some(4));
        w.main.truncate(3);
        assert!(w.main.page(4, PS).unwrap().is_none());
        w.write(&header(), 0).unwrap();
        assert!(
            !w.main.has(2) && w.main.size.is_none(),
            "forgotten at a new WAL"
        );
    }
}
