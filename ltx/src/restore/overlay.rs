//! Writing each page once: the pages that files later in a plan rewrite, patched into the
//! snapshot's batches before those are written.
//!
//! Applied one after another, a snapshot and the incrementals after it write every page
//! the incrementals touch twice, and the second writes are scattered single pages through
//! the page cache that the final fsync then writes back (a quarter of a 1 GiB restore whose
//! incrementals touch 40 % of its pages). Once the later files are staged locally, their
//! page indexes say where the newest version of each page is; the snapshot's batches get
//! those versions before their long direct writes, and the later files, applied in order
//! as before (decoded, checksummed, verified), skip writing the pages already in place.
//!
//! Only pages at or below every later file's commit size are placed this way: no file in
//! between truncates them, so the newest version is the final one. The overlay is only an
//! optimisation: a file it cannot read is left to the normal apply to report.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;

use super::apply::ApplyError;
use crate::format::index::{decode_index_from_tail, TailIndex};
use crate::format::page::{decode_frame, FrameError};
use crate::format::{Header, LtxError, Txid, HEADER_SIZE};

/// Set (once) by whoever stages the later files, read by the writer of the snapshot: the
/// snapshot's batches written before it is set are written as they are.
pub type OverlaySlot = Arc<OnceLock<Overlay>>;

/// The newest version of each page among a run of staged LTX files.
pub struct Overlay {
    files: Vec<Staged>,
    page_size: u32,
    /// The smallest commit size among the files.
    limit: u32,
    /// Sorted by page number, one per page, pages above `limit` left out.
    pages: Vec<Newest>,
}

struct Staged {
    name: String,
    max_txid: Txid,
    map: Mmap,
}

#[derive(Clone, Copy)]
struct Newest {
    pgno: u32,
    file: u32,
    offset: u64,
    size: u64,
}

impl Overlay {
    /// Reads the headers and page indexes of `files`: staged LTX files (label, path) that
    /// follow the snapshot, in plan order. An error says why the overlay cannot be used.
    pub fn build(files: &[(String, PathBuf)]) -> Result<Overlay, String> {
        let mut staged = Vec::with_capacity(files.len());
        let mut all = Vec::new();
        let mut page_size = 0;
        let mut limit = u32::MAX;
        for (i, (name, path)) in files.iter().enumerate() {
            let fail = |e: &dyn std::fmt::Display| format!("{name}: {e}");
            let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
            // SAFETY: the staging directory is this restore's own; nothing writes a staged
            // file after its rename into place (a bad one is only unlinked, which leaves
            // the mapping intact).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| fail(&e))?;
            if map.len() < HEADER_SIZE {
                return Err(fail(&"shorter than a header"));
            }
            let h = Header::decode_prefix(&map[..]).map_err(|e| fail(&e))?;
            h.validate().map_err(|e| fail(&e))?;
            if page_size != 0 && h.page_size != page_size {
                return Err(fail(&"page size differs"));
            }
            page_size = h.page_size;
            limit = limit.min(h.commit);
            let entries = match decode_index_from_tail(&map[..], map.len() as u64) {
                Ok(TailIndex::Entries(e)) => e,
                Ok(TailIndex::Beyond(_)) => return Err(fail(&"index outside the file")),
                Err(e) => return Err(fail(&e)),
            };
            let mut prev = 0;
            for e in entries {
                if e.pgno <= prev || e.offset.saturating_add(e.size) > map.len() as u64 {
                    return Err(fail(&"page index out of order or out of the file"));
                }
                prev = e.pgno;
                all.push(Newest {
                    pgno: e.pgno,
                    file: i as u32,
                    offset: e.offset,
                    size: e.size,
                });
            }
            staged.push(Staged {
                name: name.clone(),
                max_txid: h.max_txid,
                map,
            });
        }
        // Newest last within a page number, then keep only that one.
        all.sort_by_key(|n| (n.pgno, n.file));
        let mut pages: Vec<Newest> = Vec::with_capacity(all.len());
        for n in all.into_iter().filter(|n| n.pgno <= limit) {
            match pages.last_mut() {
                Some(last) if last.pgno == n.pgno => *last = n,
                _ => pages.push(n),
            }
        }
        Ok(Overlay {
            files: staged,
            page_size,
            limit,
            pages,
        })
    }

    /// The files' max TXIDs, in order: the files that must skip the placed pages.
    pub(super) fn txids(&self) -> Vec<Txid> {
        self.files.iter().map(|f| f.max_txid).collect()
    }
}

/// One snapshot apply's use of an overlay: batches come in ascending page order, so a
/// cursor walks the overlay once.
pub(super) struct Patcher {
    slot: OverlaySlot,
    page_size: u32,
    /// The snapshot's commit size.
    commit: u32,
    /// First page patched (set by the first batch after the overlay arrived), and the
    /// position in `pages` to look from.
    first: Option<u32>,
    cursor: usize,
    unusable: bool,
    /// Pages replaced so far.
    patched: u64,
}

/// Pages whose final version is on disk, and the files (by max TXID, in apply order) that
/// must not write them again.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    pub pages: RangeInclusive<u32>,
    pub files: std::collections::VecDeque<Txid>,
    /// How many of them came from the later files.
    pub patched: u64,
}

impl Patcher {
    pub fn new(slot: OverlaySlot, page_size: u32, commit: u32) -> Patcher {
        Patcher {
            slot,
            page_size,
            commit,
            first: None,
            cursor: 0,
            unusable: false,
            patched: 0,
        }
    }

    /// Replaces the pages of a batch (`pgnos` ascending, `data` their bytes) that a later
    /// file rewrites with their newest version.
    pub fn patch(&mut self, pgnos: &[u32], data: &mut [u8]) -> Result<(), ApplyError> {
        if self.unusable || pgnos.is_empty() {
            return Ok(());
        }
        let Some(ov) = self.slot.get() else {
            return Ok(());
        };
        let ps = self.page_size as usize;
        if self.first.is_none() {
            if ov.page_size != self.page_size {
                // The later file's apply reports the change of page size.
                self.unusable = true;
                return Ok(());
            }
            self.first = Some(pgnos[0]);
            self.cursor = ov.pages.partition_point(|n| n.pgno < pgnos[0]);
        }
        let limit = ov.limit.min(self.commit);
        for (i, &pgno) in pgnos.iter().enumerate() {
            if pgno > limit {
                break;
            }
            while ov.pages.get(self.cursor).is_some_and(|n| n.pgno < pgno) {
                self.cursor += 1;
            }
            let Some(n) = ov.pages.get(self.cursor).filter(|n| n.pgno == pgno) else {
                continue;
            };
            let f = &ov.files[n.file as usize];
            let frame = &f.map[n.offset as usize..(n.offset + n.size) as usize];
            let bad = |reason: String| ApplyError::Ltx {
                name: f.name.clone(),
                source: LtxError::InvalidPage {
                    offset: n.offset,
                    reason,
                },
            };
            match decode_frame(frame, &mut data[i * ps..(i + 1) * ps]) {
                Ok(got) if got == pgno => self.patched += 1,
                Ok(got) => return Err(bad(format!("index says page {pgno}, frame holds {got}"))),
                Err(FrameError::Eof) => return Err(bad("frame cut short".into())),
                Err(FrameError::Io(e)) => return Err(bad(e.to_string())),
                Err(FrameError::Invalid(m)) => return Err(bad(m)),
            }
        }
        Ok(())
    }

    /// What the patched batches put in place (none when the overlay never arrived).
    pub fn placed(&self) -> Option<Placed> {
        let first = self.first?;
        let ov = self.slot.get()?;
        let last = ov.limit.min(self.commit);
        (first <= last).then(|| Placed {
            pages: first..=last,
            files: ov.txids().into(),
            patched: self.patched,
        })
    }
}
