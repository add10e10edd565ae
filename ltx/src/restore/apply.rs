//! Turns a restore plan's LTX streams, applied oldest first, into a plain SQLite file.
//!
//! Each file is fully decoded and verified (file checksum, index, page order) while its
//! pages are written in place; after each file the database is truncated or extended to
//! that file's commit size, so a shrink is honoured exactly as SQLite did it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

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
}

/// Builds a database file from LTX streams applied in TXID order.
pub struct DbWriter {
    file: File,
    page_size: u32,
    commit: u32,
    txid: Txid,
    /// Pages holding data from some applied file (bit per page, 1-based).
    written: Vec<u64>,
    /// Each page's checksum as last written (index = page number): the database checksum
    /// at the end is their XOR, without reading the file back (8 bytes per page).
    page_sums: Vec<u64>,
    /// Post-apply checksum of the last file, when it carries one.
    expected_checksum: Option<u64>,
    /// Consecutive pages not yet written: (first page, their bytes). One `pwrite` per run
    /// instead of one per page (a snapshot is one long run).
    run: (u32, Vec<u8>),
}

/// Bytes of consecutive pages gathered before they are written.
const RUN_BYTES: usize = 1 << 20;
/// Pages per batch from the decoding thread to the writing one, and batches in flight.
const BATCH_PAGES: usize = 256;
const BATCHES: usize = 4;

/// Decoded pages on their way to the [`PageSink`].
#[derive(Default)]
struct Batch {
    pgnos: Vec<u32>,
    data: Vec<u8>,
}

impl Batch {
    fn cleared(mut self) -> Batch {
        self.pgnos.clear();
        self.data.clear();
        self
    }
}

/// The writing side of an apply: pages into the file in runs, their checksums and the
/// bitmap of pages written.
struct PageSink<'a> {
    file: &'a File,
    run: &'a mut (u32, Vec<u8>),
    written: &'a mut Vec<u64>,
    sums: &'a mut Vec<u64>,
    page_size: u64,
}

impl PageSink<'_> {
    fn put(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()> {
        let next = self.run.0 + (self.run.1.len() as u64 / self.page_size) as u32;
        if !self.run.1.is_empty() && (pgno != next || self.run.1.len() >= RUN_BYTES) {
            self.flush()?;
        }
        if self.run.1.is_empty() {
            self.run.0 = pgno;
        }
        self.run.1.extend_from_slice(page);
        set_bit(self.written, pgno);
        let i = pgno as usize;
        if self.sums.len() <= i {
            self.sums.resize(i + 1, 0);
        }
        self.sums[i] = page_checksum(pgno, page);
        Ok(())
    }

    /// Writes the gathered run of pages.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.run.1.is_empty() {
            let at = (self.run.0 as u64 - 1) * self.page_size;
            self.file.write_all_at(&self.run.1, at)?;
            self.run.1.clear();
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
}

impl DbWriter {
    /// Starts a database at `path`, replacing anything there.
    pub fn create(path: &Path) -> std::io::Result<DbWriter> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(DbWriter {
            file,
            page_size: 0,
            commit: 0,
            txid: 0,
            written: Vec::new(),
            page_sums: Vec::new(),
            expected_checksum: None,
            run: (0, Vec::with_capacity(RUN_BYTES)),
        })
    }

    pub fn txid(&self) -> Txid {
        self.txid
    }

    /// Applies one LTX stream (`name` labels errors). The stream is consumed to its end
    /// and verified; on error the database is left partially written and must be dropped.
    pub fn apply<R: Read>(&mut self, name: &str, r: R) -> Result<Header, ApplyError> {
        let ltx = |source| ApplyError::Ltx {
            name: name.to_string(),
            source,
        };
        let mut dec = Decoder::new(r).map_err(ltx)?;
        let h = *dec.header();
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
        let ps = h.page_size as usize;
        // Two threads: this one decodes (read, decompress, file checksum), the sink writes
        // (page checksums, the file); pages cross in batches, and batches come back empty
        // to be filled again.
        let mut sink = PageSink {
            file: &self.file,
            run: &mut self.run,
            written: &mut self.written,
            sums: &mut self.page_sums,
            page_size: ps as u64,
        };
        let decoded = std::thread::scope(|scope| -> Result<(), ApplyError> {
            let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES);
            let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Batch>();
            let writer = scope.spawn(move || -> std::io::Result<()> {
                for batch in full_rx {
                    for (i, pgno) in batch.pgnos.iter().enumerate() {
                        sink.put(*pgno, &batch.data[i * ps..(i + 1) * ps])?;
                    }
                    let _ = empty_tx.send(batch);
                }
                sink.flush()
            });
            let mut page = vec![0u8; ps];
            let mut batch = Batch::default();
            let mut sink_gone = false;
            let mut result = Ok(());
            loop {
                match dec.next_page(&mut page) {
                    Ok(Some(pgno)) => {
                        batch.pgnos.push(pgno);
                        batch.data.extend_from_slice(&page);
                        if batch.pgnos.len() == BATCH_PAGES {
                            let next = empty_rx.try_recv().unwrap_or_default();
                            if full_tx
                                .send(std::mem::replace(&mut batch, next.cleared()))
                                .is_err()
                            {
                                sink_gone = true;
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(ltx(e));
                        break;
                    }
                }
            }
            if !sink_gone && !batch.pgnos.is_empty() {
                let _ = full_tx.send(batch);
            }
            drop(full_tx);
            // A write error (the sink stopped) is the one to report.
            match writer.join() {
                Ok(Ok(())) => result,
                Ok(Err(e)) => Err(e.into()),
                Err(p) => std::panic::resume_unwind(p),
            }
        });
        decoded?;
        let trailer = dec.finish().map_err(ltx)?;
        // Shrink or grow to the committed size; forget pages cut off.
        self.file.set_len(h.commit as u64 * ps as u64)?;
        if h.commit < self.commit {
            for p in h.commit + 1..=self.commit {
                clear_bit(&mut self.written, p);
            }
        }
        self.commit = h.commit;
        self.txid = h.max_txid;
        self.expected_checksum = h.has_checksums().then_some(trailer.post_apply_checksum);
        Ok(h)
    }

    /// Checks every page is present, computes (and where possible verifies) the
    /// database checksum, and fsyncs. The lock page is left as zeros.
    pub fn finish(mut self) -> Result<DbSummary, ApplyError> {
        let lock = if self.page_size == 0 {
            0
        } else {
            lock_pgno(self.page_size)
        };
        for p in 1..=self.commit {
            if p != lock && !get_bit(&self.written, p) {
                return Err(ApplyError::MissingPage {
                    pgno: p,
                    commit: self.commit,
                });
            }
        }
        // Every page 1..=commit but the lock page was written (checked above), and its last
        // write's checksum is kept: no read-back pass.
        let mut sum = DbChecksum::EMPTY;
        for p in 1..=self.commit {
            if p != lock {
                sum.xor(self.page_sums[p as usize]);
            }
        }
        let checksum = sum.value();
        if let Some(expected) = self.expected_checksum {
            if expected != checksum {
                return Err(ApplyError::FinalChecksumMismatch {
                    txid: self.txid,
                    expected,
                    actual: checksum,
                });
            }
        }
        self.file.flush()?;
        self.file.sync_all()?;
        Ok(DbSummary {
            txid: self.txid,
            page_size: self.page_size,
            commit: self.commit,
            checksum,
            checksum_verified: self.expected_checksum.is_some(),
        })
    }
}

fn set_bit(v: &mut Vec<u64>, pgno: u32) {
    let i = pgno as usize / 64;
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] |= 1 << (pgno % 64);
}

fn clear_bit(v: &mut [u64], pgno: u32) {
    if let Some(w) = v.get_mut(pgno as usize / 64) {
        *w &= !(1 << (pgno % 64));
    }
}

fn get_bit(v: &[u64], pgno: u32) -> bool {
    v.get(pgno as usize / 64)
        .is_some_and(|w| w & (1 << (pgno % 64)) != 0)
}
