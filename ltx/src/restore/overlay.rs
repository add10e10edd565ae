//! Writing each page once and decoding it once: the small files staged behind a streamed
//! snapshot are decoded while the snapshot's batches pass, into those batches.
//!
//! Applied one after another, a snapshot and the incrementals after it write every page
//! the incrementals touch twice, and the second writes are scattered single pages through
//! the page cache that the final fsync writes back (a quarter of a 1 GiB restore whose
//! incrementals touch 40 % of its pages). Instead the restore stages the files right behind
//! the snapshot first. While the snapshot applies, each batch of its pages (in page order)
//! meets each staged file's next pages (also in page order): they are decoded straight into
//! the batch in TXID order, so the newest version is what the long direct write takes.
//! Every page of those files is decoded this way exactly once, in file order, so their own
//! decoders verify them completely (file checksum, index, trailer) and record each page's
//! checksum; afterwards `DbWriter::fold` applies them from that record, checks and all,
//! without decoding or writing anything again.
//!
//! Only a run of files whose pages all lie at or below every commit size among them and
//! the snapshot takes part: no file in between cuts those pages off, so the newest version
//! is the final one. The files after that run are applied the usual way, after it.

use std::collections::VecDeque;
use std::path::PathBuf;

use memmap2::Mmap;

use super::apply::{ApplyError, Verified};
use crate::format::checksum::page_checksum;
use crate::format::index::{decode_index_from_tail, TailIndex};
use crate::format::{Decoder, Header, LtxError, PageIndexEntry};

/// Staged LTX files that follow a snapshot, mapped, with their headers and page indexes.
pub struct Overlay {
    files: Vec<Staged>,
}

struct Staged {
    name: String,
    map: Mmap,
    /// The page index as the file states it; its decoder checks it against the frames.
    entries: Vec<PageIndexEntry>,
}

impl Overlay {
    /// Maps `files` (label, path: staged LTX files that follow the snapshot, in plan order)
    /// and reads their indexes (their headers are read by their decoders). An error names
    /// the file; its own apply then reports what is wrong with it.
    pub fn build(files: &[(String, PathBuf)]) -> Result<Overlay, String> {
        let mut staged = Vec::with_capacity(files.len());
        for (name, path) in files {
            let fail = |e: &dyn std::fmt::Display| format!("{name}: {e}");
            let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
            // SAFETY: the staging directory is this restore's own; nothing writes a staged
            // file after its rename into place (a bad one is only unlinked, which leaves
            // the mapping intact).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| fail(&e))?;
            let entries = match decode_index_from_tail(&map[..], map.len() as u64) {
                Ok(TailIndex::Entries(e)) => e,
                Ok(TailIndex::Beyond(_)) => return Err(fail(&"index outside the file")),
                Err(e) => return Err(fail(&e)),
            };
            staged.push(Staged {
                name: name.clone(),
                map,
                entries,
            });
        }
        Ok(Overlay { files: staged })
    }
}

/// One snapshot apply's use of an overlay: the leading files that can take part, each with
/// its decoder at its next page.
pub(super) struct Patcher<'a> {
    files: Vec<Passing<'a>>,
    patched: u64,
}

struct Passing<'a> {
    staged: &'a Staged,
    dec: Decoder<&'a [u8]>,
    next: usize,
    sums: Vec<(u32, u64)>,
}

impl<'a> Patcher<'a> {
    /// Takes the longest run of the overlay's files, from its first, whose pages all lie
    /// at or below the smallest commit size among them and the snapshot `snap`.
    pub fn new(ov: &'a Overlay, snap: &Header) -> Patcher<'a> {
        let mut files = Vec::new();
        let mut min_commit = snap.commit;
        let mut max_pgno = 0;
        for s in &ov.files {
            // A header its decoder refuses is left to the file's own apply to report.
            let Ok(dec) = Decoder::new(&s.map[..]) else {
                break;
            };
            let h = dec.header();
            min_commit = min_commit.min(h.commit);
            max_pgno = max_pgno.max(s.entries.last().map_or(0, |e| e.pgno));
            if h.page_size != snap.page_size || max_pgno > min_commit {
                break;
            }
            files.push(Passing {
                staged: s,
                dec: dec.without_db_checksum(),
                next: 0,
                sums: Vec::with_capacity(s.entries.len()),
            });
        }
        Patcher { files, patched: 0 }
    }

    /// Decodes the files' pages that are in this batch of the snapshot's (`pgnos`
    /// ascending, `data` their bytes) over them, oldest file first.
    pub fn patch(&mut self, pgnos: &[u32], data: &mut [u8]) -> Result<(), ApplyError> {
        if self.files.is_empty() || pgnos.is_empty() {
            return Ok(());
        }
        let ps = data.len() / pgnos.len();
        let last = pgnos[pgnos.len() - 1];
        for f in &mut self.files {
            while let Some(e) = f.staged.entries.get(f.next).filter(|e| e.pgno <= last) {
                let want = e.pgno;
                // A snapshot holds every page up to its commit size (its decoder checks), so
                // a page missing from its batches is one the index got wrong.
                let Ok(i) = pgnos.binary_search(&want) else {
                    return Err(bad_index(f, want, "the snapshot has no such page"));
                };
                let slot = &mut data[i * ps..(i + 1) * ps];
                match f.dec.next_page(slot) {
                    Ok(Some(got)) if got == want => {}
                    Ok(_) => return Err(bad_index(f, want, "the frames say otherwise")),
                    Err(source) => {
                        return Err(ApplyError::Ltx {
                            name: f.staged.name.clone(),
                            source,
                        })
                    }
                }
                f.sums.push((want, page_checksum(want, slot)));
                f.next += 1;
                self.patched += 1;
            }
        }
        Ok(())
    }

    /// After the snapshot's last batch: each file's decoder reads the rest (end of pages,
    /// index, trailer) and verifies the file; returns them, in order, for `fold`.
    pub fn finish(self) -> Result<(VecDeque<Verified>, u64), ApplyError> {
        let mut done = VecDeque::with_capacity(self.files.len());
        for f in self.files {
            let name = f.staged.name.clone();
            if f.next != f.staged.entries.len() {
                let pgno = f.staged.entries[f.next].pgno;
                return Err(bad_index(&f, pgno, "the snapshot ended before it"));
            }
            let header = *f.dec.header();
            let trailer = f
                .dec
                .finish()
                .map_err(|source| ApplyError::Ltx { name, source })?;
            done.push_back(Verified {
                header,
                trailer,
                sums: f.sums,
            });
        }
        Ok((done, self.patched))
    }
}

fn bad_index(f: &Passing<'_>, pgno: u32, why: &str) -> ApplyError {
    ApplyError::Ltx {
        name: f.staged.name.clone(),
        source: LtxError::InvalidIndex(format!("page {pgno} in the index: {why}")),
    }
}
