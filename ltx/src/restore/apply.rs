//! Turns a restore plan's LTX streams, applied oldest first, into a plain SQLite file.
//!
//! Each file is fully decoded and verified (file checksum, index, page order) while its
//! pages are written in place; after each file the database is truncated or extended to
//! that file's commit size, so a shrink is honoured exactly as SQLite did it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::overlay::{Overlay, Patcher};
use crate::format::checksum::{page_checksum, DbChecksum};
use crate::format::{lock_pgno, Decoder, Header, LtxError, Txid};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{name}: {source}")]
    Ltx {
        name: String,
        #[source]
        source: LtxError,
    },
    #[error("{name}: page size {got} differs from the {expected} of earlier files")]
    PageSizeChanged {
        name: String,
        expected: u32,
        got: u32,
    },
    #[error("{name}: starts at TXID {min} but the database is at TXID {have}")]
    NotContiguous { name: String, min: Txid, have: Txid },
    #[error("the restored database has no data for page {pgno} (of {commit}); the replica is missing a snapshot")]
    MissingPage { pgno: u32, commit: u32 },
    #[error(
        "{name}: pre-apply checksum {expected:016x} does not match the database ({actual:016x})"
    )]
    PreApplyMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "database checksum after TXID {txid} is {actual:016x}, the replica says {expected:016x}"
    )]
    FinalChecksumMismatch {
        txid: Txid,
        expected: u64,
        actual: u64,
    },
    #[error("I/O error writing the database: {0}")]
    Io(#[from] std::io::Error),
    #[error("{name} (TXID {got}) applied out of order: TXID {expected}, decoded into the snapshot, must be folded in first")]
    OverlayOrder {
        name: String,
        expected: Txid,
        got: Txid,
    },
    #[error("{0}: nothing was decoded ahead to fold")]
    NothingToFold(String),
}

/// Builds a database file from LTX streams applied in TXID order.
pub struct DbWriter {
    out: Output,
    page_size: u32,
    commit: u32,
    txid: Txid,
    /// Each page's checksum as last written (index = page number; 0 = no data, as a
    /// checksum always has its flag bit), and their XOR over pages 1..=commit (lock page
    /// excluded): the database checksum after every file, without reading the file back
    /// (8 bytes per page).
    page_sums: Vec<u64>,
    sum: DbChecksum,
    /// Post-apply checksum of the last file, when it carries one.
    expected_checksum: Option<u64>,
    /// Empty batches, allocated once per restore.
    spare: Vec<Batch>,
    /// Offered for the next file, used if that is a snapshot (`overlay.rs`).
    overlay: Option<Arc<Overlay>>,
    /// Files whose pages a snapshot's apply already put in place and verified, to `fold`
    /// next, in order.
    ahead: VecDeque<Verified>,
    pages_from_later: u64,
}

/// Decoded bytes per batch from the decoding thread to the writing ones (one write per
/// run of consecutive pages in it), and batches in flight per queue.
const BATCH_BYTES: usize = 1 << 20;
const BATCHES: usize = 8;
/// Threads writing batches.
const WRITERS: usize = 3;
/// Batches in all (16 MiB): the two queues' worth.
const POOL: usize = 2 * BATCHES;
/// Direct I/O wants buffers, offsets and lengths in multiples of the logical block size;
/// a page is the most any filesystem asks for.
const ALIGN: usize = 4096;
/// Runs at least this long go through the `O_DIRECT` descriptor.
const DIRECT_MIN: usize = 64 << 10;

/// Decoded pages on their way to the disk, in one block-aligned buffer so a run of
/// them can go to the disk as it is.
struct Batch {
    pgnos: Vec<u32>,
    /// `ALIGN` bytes more than the batch holds; the pages start at the first aligned byte.
    buf: Vec<u8>,
    len: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            pgnos: Vec::new(),
            buf: vec![0; BATCH_BYTES + ALIGN],
            len: 0,
        }
    }

    fn start(&self) -> usize {
        self.buf.as_ptr().align_offset(ALIGN)
    }

    fn data(&self) -> &[u8] {
        let s = self.start();
        &self.buf[s..s + self.len]
    }

    /// Room for one more page of `ps` bytes, if the batch has it.
    fn slot(&mut self, ps: usize) -> Option<&mut [u8]> {
        let s = self.start() + self.len;
        (self.len + ps <= BATCH_BYTES).then(|| &mut self.buf[s..s + ps])
    }

    /// The page numbers and the pages' bytes, to patch in place.
    fn parts_mut(&mut self) -> (&[u32], &mut [u8]) {
        let s = self.start();
        (&self.pgnos, &mut self.buf[s..s + self.len])
    }

    fn clear(&mut self) {
        self.pgnos.clear();
        self.len = 0;
    }
}

/// The database file: written through the page cache, and (where the filesystem allows
/// it) long aligned runs through a second descriptor opened with `O_DIRECT`. A snapshot is
/// one long run: written directly it costs no copy into the page cache and leaves nothing
/// for the final fsync to write back, which otherwise took a quarter of a 1 GiB restore.
/// Linux keeps the two views coherent (a direct write first flushes and drops cached pages
/// in its range).
struct Output {
    file: File,
    direct: Option<File>,
    /// Set when the filesystem refused a direct write: `direct` is not used again.
    direct_refused: AtomicBool,
    /// Bytes that went through `direct`.
    direct_bytes: AtomicU64,
}

impl Output {
    fn open(path: &Path) -> std::io::Result<Output> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Output {
            file,
            direct: open_direct(path),
            direct_refused: AtomicBool::new(false),
            direct_bytes: AtomicU64::new(0),
        })
    }

    /// Allocates the file's blocks up to `len` (and sets its size), so that direct writes
    /// into it are overwrites: ext4 then lets them run side by side instead of taking the
    /// inode lock for each (3 writers spun on it for 3 % of a restore's CPU). Only an
    /// optimisation: an error leaves the writes to allocate as they go.
    fn preallocate(&self, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a descriptor this struct owns.
            let r = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, len as libc::off_t) };
            if r != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "no preallocation");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = len;
    }

    /// Writes `data` (whole pages) at `at`; `data` starts at an `ALIGN`ed address when it
    /// starts a batch's page at an aligned offset in the batch.
    fn write_at(&self, data: &[u8], at: u64) -> std::io::Result<()> {
        let aligned =
            (data.as_ptr() as usize).is_multiple_of(ALIGN) && at.is_multiple_of(ALIGN as u64);
        let direct_len = data.len() / ALIGN * ALIGN;
        let direct = self
            .direct
            .as_ref()
            .filter(|_| !self.direct_refused.load(Ordering::Relaxed));
        if let (Some(d), true, true) = (direct, aligned, direct_len >= DIRECT_MIN) {
            match d.write_all_at(&data[..direct_len], at) {
                Ok(()) => {
                    self.direct_bytes
                        .fetch_add(direct_len as u64, Ordering::Relaxed);
                    return self
                        .file
                        .write_all_at(&data[direct_len..], at + direct_len as u64);
                }
                // The filesystem wants a larger alignment, or none of this: stop trying
                // (the buffered write below rewrites the whole run).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!(error = %e, "direct writes refused; writing through the page cache");
                    self.direct_refused.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(data, at)
    }
}

/// A second descriptor with `O_DIRECT`, where the OS and filesystem support it (tmpfs,
/// for one, does not).
fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// The checksumming side of an apply: each page's checksum and the running database
/// checksum.
struct PageSums<'a> {
    sums: &'a mut Vec<u64>,
    sum: &'a mut DbChecksum,
    page_size: usize,
}

impl PageSums<'_> {
    fn add(&mut self, batch: &Batch) {
        let ps = self.page_size;
        let data = batch.data();
        for (i, &pgno) in batch.pgnos.iter().enumerate() {
            let c = page_checksum(pgno, &data[i * ps..(i + 1) * ps]);
            put_sum(self.sums, self.sum, pgno, c);
        }
    }
}

/// Records page `pgno`'s new checksum `c` in `sums` and the database checksum `sum`.
fn put_sum(sums: &mut Vec<u64>, sum: &mut DbChecksum, pgno: u32, c: u64) {
    let p = pgno as usize;
    if sums.len() <= p {
        sums.resize(p + 1, 0);
    }
    // The old checksum out (0 changes nothing), the new one in.
    sum.xor(std::mem::replace(&mut sums[p], c));
    sum.xor(c);
}

/// A file decoded and verified ahead of its turn (file checksum, index, every page, each
/// page's checksum) while a snapshot applied, its pages put in place: `DbWriter::fold`
/// applies it without decoding it again.
pub(super) struct Verified {
    pub header: Header,
    pub trailer: crate::format::Trailer,
    /// Page number and checksum of each page, in file order.
    pub sums: Vec<(u32, u64)>,
}

impl Output {
    /// Writes a batch's pages: one write per run of consecutive pages.
    fn write_batch(&self, batch: &Batch, ps: usize) -> std::io::Result<()> {
        let data = batch.data();
        let pgnos = &batch.pgnos;
        let mut i = 0;
        while i < pgnos.len() {
            let mut j = i + 1;
            while j < pgnos.len() && pgnos[j] == pgnos[j - 1] + 1 {
                j += 1;
            }
            let at = (pgnos[i] as u64 - 1) * ps as u64;
            self.write_at(&data[i * ps..j * ps], at)?;
            i = j;
        }
        Ok(())
    }
}

/// What a finished restore produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSummary {
    pub txid: Txid,
    pub page_size: u32,
    pub commit: u32,
    /// The rolling database checksum of the result (the LTX definition).
    pub checksum: u64,
    /// Whether `checksum` was compared with a checksum the replica recorded.
    pub checksum_verified: bool,
    /// Pages the snapshot's apply wrote in a later file's version (`overlay.rs`), so they
    /// were written once instead of twice.
    pub pages_from_later_files: u64,
}

impl DbWriter {
    /// Starts a database at `path`, replacing anything there.
    pub fn create(path: &Path) -> std::io::Result<DbWriter> {
        Ok(DbWriter {
            out: Output::open(path)?,
            page_size: 0,
            commit: 0,
            txid: 0,
            page_sums: Vec::new(),
            sum: DbChecksum::EMPTY,
            expected_checksum: None,
            spare: Vec::new(),
            overlay: None,
            ahead: VecDeque::new(),
            pages_from_later: 0,
        })
    }

    pub fn txid(&self) -> Txid {
        self.txid
    }

    /// Offers the staged files that follow the next one (`overlay.rs`). If the next file
    /// is a snapshot, the leading files that can take part are decoded into its batches and
    /// verified on the way; they must then be applied with `fold`, in order.
    pub fn offer_overlay(&mut self, ov: Arc<Overlay>) {
        self.overlay = Some(ov);
    }

    /// The TXID of the next file `fold` expects, if any.
    pub fn next_to_fold(&self) -> Option<Txid> {
        self.ahead.front().map(|v| v.header.max_txid)
    }

    /// Applies one LTX stream (`name` labels errors). The stream is consumed to its end
    /// and verified, and so is the database it leaves (its checksum against the file's
    /// post-apply checksum); on error the database is left partially written and must be
    /// dropped.
    pub fn apply<R: Read>(&mut self, name: &str, r: R) -> Result<Header, ApplyError> {
        let ltx = |source| ApplyError::Ltx {
            name: name.to_string(),
            source,
        };
        // The snapshot's own checksum is the database's after it: checked below.
        let mut dec = Decoder::new(r).map_err(ltx)?.without_db_checksum();
        let h = *dec.header();
        self.check_next(name, &h)?;
        if let Some(v) = self.ahead.front() {
            return Err(ApplyError::OverlayOrder {
                name: name.into(),
                expected: v.header.max_txid,
                got: h.max_txid,
            });
        }
        let ps = h.page_size as usize;
        let overlay = self.overlay.take().filter(|_| h.is_snapshot());
        let mut patcher = overlay.as_deref().map(|ov| Patcher::new(ov, &h));
        if h.is_snapshot() {
            self.out.preallocate(h.commit as u64 * ps as u64);
        }
        // A pipeline: this thread decodes (read, decompress, file checksum) straight into
        // a batch, the next checksums its pages (and, for a snapshot with an overlay,
        // decodes the later files' pages over them), `WRITERS` more write them (a direct
        // write waits for the disk: no reason to hold up the checksums meanwhile). Batches
        // come back empty to be filled again.
        let mut sums = PageSums {
            sums: &mut self.page_sums,
            sum: &mut self.sum,
            page_size: ps,
        };
        let out = &self.out;
        let spare = &mut self.spare;
        while spare.len() < POOL {
            spare.push(Batch::new());
        }
        type Ahead = Option<(VecDeque<Verified>, u64)>;
        let decoded = std::thread::scope(|scope| -> Result<Ahead, ApplyError> {
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES);
            let (summed_tx, summed_rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES);
            let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
            let summer = scope.spawn(move || -> Result<Ahead, ApplyError> {
                for mut batch in full_rx {
                    sums.add(&batch);
                    if let Some(p) = &mut patcher {
                        // After the checksums: those are of this file's pages.
                        let (pgnos, data) = batch.parts_mut();
                        p.patch(pgnos, data)?;
                    }
                    if summed_tx.send(batch).is_err() {
                        // The writers stopped; their error is reported.
                        break;
                    }
                }
                patcher.map(Patcher::finish).transpose()
            });
            // Several writers: one direct write waits for the disk, and a virtual disk
            // takes a few at once (1 MiB writes: 2.1 GB/s one at a time, 4.4 GB/s four at
            // once, measured here). Batches of one file never overlap, so their order does
            // not matter.
            let summed_rx = Arc::new(Mutex::new(summed_rx));
            let writers: Vec<_> = (0..WRITERS)
                .map(|_| {
                    let (summed_rx, empty_tx) = (summed_rx.clone(), empty_tx.clone());
                    scope.spawn(move || -> Result<(), ApplyError> {
                        loop {
                            let next = summed_rx.lock().expect("writer panicked").recv();
                            let Ok(mut batch) = next else {
                                return Ok(());
                            };
                            out.write_batch(&batch, ps)?;
                            batch.clear();
                            let _ = empty_tx.send(batch);
                        }
                    })
                })
                .collect();
            drop(empty_tx);
            let mut batch = spare.pop().expect("the pool is full");
            let mut writer_gone = false;
            let mut result = Ok(());
            loop {
                let slot = match batch.slot(ps) {
                    Some(slot) => slot,
                    None => {
                        // A fixed set of batches: wait for one to come back rather than
                        // allocate (fresh memory costs a page fault per 4 KiB).
                        let Some(next) = spare.pop().or_else(|| empty_rx.recv().ok()) else {
                            writer_gone = true;
                            break;
                        };
                        if full_tx.send(std::mem::replace(&mut batch, next)).is_err() {
                            writer_gone = true;
                            break;
                        }
                        continue;
                    }
                };
                match dec.next_page(slot) {
                    Ok(Some(pgno)) => {
                        batch.pgnos.push(pgno);
                        batch.len += ps;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(ltx(e));
                        break;
                    }
                }
            }
            if !writer_gone && !batch.pgnos.is_empty() {
                let _ = full_tx.send(batch);
            } else {
                batch.clear();
                spare.push(batch);
            }
            drop(full_tx);
            // A write or overlay error (which stopped the pipeline) is the one to report.
            let placed = match summer.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            };
            let mut written = Ok(());
            for w in writers {
                match w.join() {
                    Ok(r) => written = written.and(r),
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
            let written = written
                .and(placed)
                .and_then(|placed| result.map(|()| placed));
            spare.extend(empty_rx.try_iter());
            written
        });
        let ahead = decoded?;
        let trailer = dec.finish().map_err(ltx)?;
        if let Some((ahead, patched)) = ahead {
            tracing::debug!(
                name,
                files = ahead.len(),
                pages = patched,
                "later files decoded into the snapshot"
            );
            self.pages_from_later += patched;
            self.ahead = ahead;
        }
        self.end_file(name, &h, &trailer)?;
        Ok(h)
    }

    /// Applies the next file verified while the snapshot applied (`next_to_fold`): the
    /// same checks as `apply`, its page checksums taken into the database's, nothing
    /// decoded or written again.
    pub fn fold(&mut self, name: &str) -> Result<Header, ApplyError> {
        let Some(v) = self.ahead.pop_front() else {
            return Err(ApplyError::NothingToFold(name.into()));
        };
        let h = v.header;
        self.check_next(name, &h)?;
        for &(pgno, c) in &v.sums {
            put_sum(&mut self.page_sums, &mut self.sum, pgno, c);
        }
        self.end_file(name, &h, &v.trailer)?;
        Ok(h)
    }

    /// Checks that the file with header `h` can follow what is applied: same page size,
    /// contiguous TXIDs, and (where recorded) its pre-apply checksum is the database's.
    fn check_next(&mut self, name: &str, h: &Header) -> Result<(), ApplyError> {
        if self.page_size == 0 {
            self.page_size = h.page_size;
        } else if h.page_size != self.page_size {
            return Err(ApplyError::PageSizeChanged {
                name: name.into(),
                expected: self.page_size,
                got: h.page_size,
            });
        }
        if !crate::format::extends(h.min_txid, h.max_txid, self.txid) {
            return Err(ApplyError::NotContiguous {
                name: name.into(),
                min: h.min_txid,
                have: self.txid,
            });
        }
        if h.has_checksums() && !h.is_snapshot() && h.min_txid == self.txid + 1 {
            if let Some(prev) = self.expected_checksum {
                if prev != h.pre_apply_checksum {
                    return Err(ApplyError::PreApplyMismatch {
                        name: name.into(),
                        expected: h.pre_apply_checksum,
                        actual: prev,
                    });
                }
            }
        }
        Ok(())
    }

    /// After a file's pages: the database takes its commit size (pages cut off are
    /// forgotten) and TXID, and its checksum must be the file's post-apply checksum.
    fn end_file(
        &mut self,
        name: &str,
        h: &Header,
        trailer: &crate::format::Trailer,
    ) -> Result<(), ApplyError> {
        let ps = h.page_size as u64;
        self.out.file.set_len(h.commit as u64 * ps)?;
        for p in h.commit + 1..=self.commit {
            if let Some(c) = self.page_sums.get_mut(p as usize) {
                self.sum.xor(std::mem::take(c));
            }
        }
        self.commit = h.commit;
        self.txid = h.max_txid;
        self.expected_checksum = h.has_checksums().then_some(trailer.post_apply_checksum);
        if let Some(expected) = self.expected_checksum {
            // Pages missing from the database are reported by `finish`, by number.
            if self.sum.value() != expected && self.all_pages_present().is_ok() {
                return Err(ApplyError::Ltx {
                    name: name.into(),
                    source: LtxError::PostApplyChecksumMismatch {
                        stored: expected,
                        computed: self.sum.value(),
                    },
                });
            }
        }
        Ok(())
    }

    fn all_pages_present(&self) -> Result<(), ApplyError> {
        let lock = if self.page_size == 0 {
            0
        } else {
            lock_pgno(self.page_size)
        };
        for p in 1..=self.commit {
            if p != lock && self.page_sums.get(p as usize).is_none_or(|&c| c == 0) {
                return Err(ApplyError::MissingPage {
                    pgno: p,
                    commit: self.commit,
                });
            }
        }
        Ok(())
    }

    /// Checks every page is present and the database checksum (verified against the
    /// replica's where it records one), and fsyncs. The lock page is left as zeros.
    pub fn finish(self) -> Result<DbSummary, ApplyError> {
        self.all_pages_present()?;
        // Every page 1..=commit but the lock page was written, and the running checksum
        // holds the XOR of their last writes: no read-back pass.
        let checksum = self.sum.value();
        if let Some(expected) = self.expected_checksum {
            if expected != checksum {
                return Err(ApplyError::FinalChecksumMismatch {
                    txid: self.txid,
                    expected,
                    actual: checksum,
                });
            }
        }
        tracing::debug!(
            direct_bytes = self.out.direct_bytes.load(Ordering::Relaxed),
            "restored database written"
        );
        // One fsync covers the direct writes' metadata and the drive's cache too.
        self.out.file.sync_all()?;
        Ok(DbSummary {
            txid: self.txid,
            page_size: self.page_size,
            commit: self.commit,
            checksum,
            checksum_verified: self.expected_checksum.is_some(),
            pages_from_later_files: self.pages_from_later,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Encoder;

    /// A model database: page contents by number, and its LTX checksum.
    struct Model {
        ps: usize,
        pages: Vec<Vec<u8>>,
    }

    impl Model {
        fn checksum(&self) -> u64 {
            let lock = lock_pgno(self.ps as u32);
            let mut c = DbChecksum::EMPTY;
            for (i, p) in self.pages.iter().enumerate() {
                let pgno = i as u32 + 1;
                if pgno != lock {
                    c.toggle(pgno, p);
                }
            }
            c.value()
        }

        fn bytes(&self) -> Vec<u8> {
            let lock = lock_pgno(self.ps as u32) as usize;
            let mut out = Vec::new();
            for (i, p) in self.pages.iter().enumerate() {
                if i + 1 == lock {
                    out.extend(std::iter::repeat_n(0u8, self.ps));
                } else {
                    out.extend_from_slice(p);
                }
            }
            out
        }

        /// Sets `pgnos` to new contents, resizes to `commit`, and returns the LTX file for
        /// that change (TXID `txid`; a snapshot when `txid` is 1), with checksums.
        fn change(&mut self, txid: u64, commit: u32, pgnos: &[u32]) -> Vec<u8> {
            let pre = self.checksum();
            self.pages.resize(commit as usize, vec![0; self.ps]);
            for &p in pgnos {
                let fill = (p as usize * 31 + txid as usize * 7) as u8;
                let mut page = vec![fill; self.ps];
                page[..8].copy_from_slice(&(txid << 32 | p as u64).to_be_bytes());
                self.pages[p as usize - 1] = page;
            }
            let mut h = Header::new(self.ps as u32, commit, txid, txid, 0);
            h.flags = 0;
            h.pre_apply_checksum = if txid == 1 { 0 } else { pre };
            let mut enc = Encoder::new(Vec::new(), h).unwrap();
            let lock = lock_pgno(self.ps as u32);
            let mut sorted = pgnos.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            for p in sorted.into_iter().filter(|&p| p != lock) {
                enc.write_page(p, &self.pages[p as usize - 1]).unwrap();
            }
            enc.finish(Some(self.checksum())).unwrap().0
        }
    }

    /// Snapshot (long runs: direct writes where the filesystem has them), scattered pages
    /// (through the page cache), a long run over both, a shrink and a regrowth: the file
    /// equals the model at every page size, whichever way each run was written — on the
    /// disk the tests run on, and on tmpfs (`/dev/shm`, where `O_DIRECT` may be refused).
    #[test]
    fn mixed_runs_give_the_exact_database_at_every_page_size() {
        let shm = Path::new("/dev/shm");
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if shm.is_dir() {
            dirs.push(tempfile::tempdir_in(shm).unwrap());
        }
        for (dir, ps) in dirs
            .iter()
            .flat_map(|d| [512usize, 1024, 4096, 65536].map(|ps| (d, ps)))
        {
            let path = dir.path().join("db");
            let mut w = DbWriter::create(&path).unwrap();
            let mut m = Model { ps, pages: vec![] };
            // Past the lock page at 512-byte pages (page 2,097,153 is at 1 GiB; too big
            // here), so the snapshot's run is cut by batch ends instead.
            let n = ((6 << 20) / ps) as u32;
            let all: Vec<u32> = (1..=n).collect();
            let steps: Vec<(u32, Vec<u32>)> = vec![
                (n, all),
                (n, (1..=n).step_by(7).collect()),
                (n, (n / 4..n / 2).chain((1..=n).step_by(13)).collect()),
                (n / 3, vec![1, 2, n / 3]),
                (n / 2, (n / 3..=n / 2).collect()),
            ];
            for (i, (commit, pgnos)) in steps.into_iter().enumerate() {
                let txid = i as u64 + 1;
                let file = m.change(txid, commit, &pgnos);
                w.apply(&format!("{txid}.ltx"), &file[..]).unwrap();
            }
            if ps >= ALIGN && w.out.direct.is_some() {
                assert!(
                    w.out.direct_bytes.load(Ordering::Relaxed) > 0,
                    "page size {ps}: no direct writes"
                );
            }
            let s = w.finish().unwrap();
            assert!(s.checksum_verified);
            assert_eq!(s.checksum, m.checksum());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                m.bytes(),
                "page size {ps} in {}",
                dir.path().display()
            );
        }
    }

    /// A file that grows the database without carrying the new pages leaves a hole that
    /// `finish` reports by page number (not as a checksum mismatch).
    #[test]
    fn a_page_no_file_wrote_is_reported_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DbWriter::create(&dir.path().join("db")).unwrap();
        let mut m = Model {
            ps: 4096,
            pages: vec![],
        };
        let snap = m.change(1, 10, &(1..=10).collect::<Vec<_>>());
        w.apply("snap", &snap[..]).unwrap();
        let grow = m.change(2, 12, &[11]);
        w.apply("grow", &grow[..]).unwrap();
        match w.finish() {
            Err(ApplyError::MissingPage {
                pgno: 12,
                commit: 12,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// A file whose pages do not lead to the state its trailer records is refused as
    /// soon as it is applied, naming the file.
    #[test]
    fn a_wrong_post_apply_checksum_is_caught_at_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DbWriter::create(&dir.path().join("db")).unwrap();
        let mut m = Model {
            ps: 4096,
            pages: vec![],
        };
        let snap = m.change(1, 40, &(1..=40).collect::<Vec<_>>());
        w.apply("snap", &snap[..]).unwrap();
        // An incremental built from a different base: its post-apply checksum describes
        // a database this one is not.
        let mut other = Model {
            ps: 4096,
            pages: vec![vec![9; 4096]; 40],
        };
        let mut h = Header::new(4096, 40, 2, 2, 0);
        h.flags = 0;
        h.pre_apply_checksum = m.checksum();
        let mut enc = Encoder::new(Vec::new(), h).unwrap();
        other.pages[2] = vec![3; 4096];
        enc.write_page(3, &other.pages[2]).unwrap();
        let bad = enc.finish(Some(other.checksum())).unwrap().0;
        let err = w.apply("2.ltx", &bad[..]).unwrap_err().to_string();
        assert!(err.starts_with("2.ltx:"), "{err}");
        assert!(err.contains("checksum"), "{err}");
    }

    /// Stages `files` (name, bytes) in `dir` and builds their overlay.
    fn overlay_of(dir: &Path, files: &[(String, Vec<u8>)]) -> crate::restore::Overlay {
        let named: Vec<(String, std::path::PathBuf)> = files
            .iter()
            .map(|(n, b)| {
                let p = dir.join(n);
                std::fs::write(&p, b).unwrap();
                (n.clone(), p)
            })
            .collect();
        crate::restore::Overlay::build(&named).unwrap()
    }

    /// A model history: a snapshot, incrementals that rewrite pages (some twice), and,
    /// with `shrink`, one that shrinks the database and one that grows it back.
    fn history(m: &mut Model, n: u32, shrink: bool) -> Vec<(String, Vec<u8>)> {
        let steps: Vec<(u32, Vec<u32>)> = vec![
            (n, (1..=n).collect()),
            (n, (1..=n).step_by(7).collect()),
            (n, (1..=n).step_by(5).chain([n - 1]).collect()),
            (
                if shrink { n - n / 8 } else { n },
                (n / 2..n / 2 + 40).collect(),
            ),
            (n, (n - n / 8..=n).chain([3]).collect()),
        ];
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (commit, pgnos))| {
                let txid = i as u64 + 1;
                (format!("{txid}.ltx"), m.change(txid, commit, &pgnos))
            })
            .collect()
    }

    /// Applies `files` with the later ones offered as an overlay of the snapshot: those
    /// decoded into it are folded, the rest applied. Returns the TXIDs folded.
    fn apply_with_overlay(w: &mut DbWriter, dir: &Path, files: &[(String, Vec<u8>)]) -> Vec<u64> {
        w.offer_overlay(Arc::new(overlay_of(dir, &files[1..])));
        w.apply(&files[0].0, &files[0].1[..]).unwrap();
        let mut folded = vec![];
        for (i, (name, bytes)) in files.iter().enumerate().skip(1) {
            let txid = i as u64 + 1;
            if w.next_to_fold() == Some(txid) {
                w.fold(name).unwrap();
                folded.push(txid);
            } else {
                w.apply(name, &bytes[..]).unwrap();
            }
        }
        folded
    }

    /// The files behind a snapshot are decoded into its batches and folded in afterwards
    /// (all of them; with a shrink, the run before the file whose pages lie above it), and
    /// the database is exactly the one of applying them one after another.
    #[test]
    fn later_files_decoded_into_the_snapshot_give_the_same_database() {
        for (shrink, expect) in [(false, vec![2, 3, 4, 5]), (true, vec![2, 3])] {
            let dir = tempfile::tempdir().unwrap();
            let ps = 4096;
            let mut m = Model { ps, pages: vec![] };
            let n = ((32 << 20) / ps) as u32;
            let files = history(&mut m, n, shrink);
            let path = dir.path().join("db");
            let mut w = DbWriter::create(&path).unwrap();
            let folded = apply_with_overlay(&mut w, dir.path(), &files);
            assert_eq!(folded, expect, "shrink {shrink}");
            assert!(w.next_to_fold().is_none());
            let s = w.finish().unwrap();
            assert!(s.pages_from_later_files > 0);
            assert_eq!(s.checksum, m.checksum());
            assert_eq!(std::fs::read(&path).unwrap(), m.bytes(), "shrink {shrink}");
        }
    }

    /// Random histories (page size, database size, later files that rewrite random pages,
    /// shrink the database or grow it), the later files offered as the snapshot's overlay:
    /// whichever of them are folded and whichever applied, the file and its checksum equal
    /// the model's.
    #[test]
    fn random_histories_through_the_overlay_give_the_model() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let (mut folded_total, mut applied_total) = (0, 0);
        for seed in 0..40u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let ps = [512usize, 1024, 4096, 65536][rng.random_range(0..4)];
            let mut m = Model { ps, pages: vec![] };
            let mut commit = rng.random_range(1..((4 << 20) / ps) as u32 + 2);
            let mut files = vec![(
                "1.ltx".to_string(),
                m.change(1, commit, &(1..=commit).collect::<Vec<_>>()),
            )];
            for txid in 2..rng.random_range(3..9u64) {
                let before = commit;
                commit = match rng.random_range(0..10) {
                    0 | 1 => rng.random_range(1..=before),
                    2 | 3 => before + rng.random_range(1..before / 3 + 3),
                    _ => before,
                };
                let p: f64 = [0.01, 0.1, 0.5][rng.random_range(0..3)];
                let mut pgnos: Vec<u32> = (1..=commit.min(before))
                    .filter(|_| rng.random_bool(p))
                    .collect();
                // A grown database carries its new pages, as SQLite writes them.
                pgnos.extend(before + 1..=commit);
                if pgnos.is_empty() {
                    pgnos.push(rng.random_range(1..=commit));
                }
                files.push((format!("{txid}.ltx"), m.change(txid, commit, &pgnos)));
            }
            let path = dir.path().join(format!("db-{seed}"));
            let mut w = DbWriter::create(&path).unwrap();
            let folded = apply_with_overlay(&mut w, dir.path(), &files);
            folded_total += folded.len();
            applied_total += files.len() - 1 - folded.len();
            let s = w.finish().unwrap();
            assert_eq!(s.checksum, m.checksum(), "seed {seed}");
            assert!(
                std::fs::read(&path).unwrap() == m.bytes(),
                "seed {seed}: page size {ps}, {} files, folded {folded:?}",
                files.len()
            );
            std::fs::remove_file(&path).unwrap();
        }
        assert!(
            folded_total > 0 && applied_total > 0,
            "folded {folded_total}, applied {applied_total}"
        );
    }

    /// A staged file whose frame disagrees with its index, or whose page data is damaged,
    /// is refused while the snapshot applies, naming that file; a file decoded ahead that
    /// is applied instead of folded is refused too.
    #[test]
    fn overlay_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Model {
            ps: 4096,
            pages: vec![],
        };
        let files = history(&mut m, 256, false);
        let entries = match crate::format::index::decode_index_from_tail(
            &files[1].1,
            files[1].1.len() as u64,
        )
        .unwrap()
        {
            crate::format::index::TailIndex::Entries(e) => e,
            _ => unreachable!(),
        };
        let e = entries.iter().find(|e| e.pgno == 8).unwrap();
        // The frame of page 8 in file 2 claims to be page 9; then, a byte of its data.
        let mut renumbered = files[1].clone();
        renumbered.1[e.offset as usize..e.offset as usize + 4].copy_from_slice(&9u32.to_be_bytes());
        let mut damaged = files[1].clone();
        damaged.1[(e.offset + e.size) as usize - 2] ^= 0x40;
        for (bad, says) in [(renumbered, "page 8"), (damaged, "2.ltx")] {
            let mut w = DbWriter::create(&dir.path().join("db")).unwrap();
            w.offer_overlay(Arc::new(overlay_of(dir.path(), &[bad])));
            let err = w.apply("1.ltx", &files[0].1[..]).unwrap_err().to_string();
            assert!(err.starts_with("2.ltx:"), "{err}");
            assert!(err.contains(says), "{err}");
        }

        let mut w = DbWriter::create(&dir.path().join("db2")).unwrap();
        assert!(matches!(w.fold("x"), Err(ApplyError::NothingToFold(_))));
        w.offer_overlay(Arc::new(overlay_of(dir.path(), &files[1..3])));
        w.apply("1.ltx", &files[0].1[..]).unwrap();
        let err = w.apply("2.ltx", &files[1].1[..]).unwrap_err();
        assert!(
            matches!(
                err,
                ApplyError::OverlayOrder {
                    expected: 2,
                    got: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}
