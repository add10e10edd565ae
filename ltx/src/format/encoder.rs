//! Streaming LTX encoder: header, then pages in ascending order, then index and trailer.
//! Only the current page is held in memory.

use std::io::Write;

use super::checksum::{DbChecksum, FileHasher, CHECKSUM_FLAG};
use super::error::{LtxError, Result};
use super::header::{lock_pgno, Header, HEADER_SIZE};
use super::index::{encode_index, PageIndexEntry};
use super::page::{PageHeader, PAGE_FLAG_LZ4_BLOCK, PAGE_HEADER_SIZE, PAGE_SIZE_PREFIX};
use super::trailer::Trailer;

pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    hasher: FileHasher,
    index: Vec<PageIndexEntry>,
    offset: u64,
    prev_pgno: u32,
    lock_pgno: u32,
    /// Only tracked for snapshots with checksums, where post-apply must match it.
    db_checksum: Option<DbChecksum>,
    cbuf: Vec<u8>,
}

impl<W: Write> Encoder<W> {
    /// Validates the header and writes it.
    pub fn new(mut w: W, header: Header) -> Result<Self> {
        header.validate()?;
        let hb = header.encode();
        w.write_all(&hb)?;
        let mut hasher = FileHasher::new();
        hasher.update(&hb);
        let max = lz4_flex::block::get_maximum_output_size(header.page_size as usize);
        Ok(Encoder {
            w,
            header,
            hasher,
            index: Vec::new(),
            offset: HEADER_SIZE as u64,
            prev_pgno: 0,
            lock_pgno: lock_pgno(header.page_size),
            db_checksum: (header.is_snapshot() && header.has_checksums())
                .then_some(DbChecksum::EMPTY),
            cbuf: vec![0u8; max],
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where the pages written so far sit in the file (the index `finish` will write).
    pub fn index_entries(&self) -> &[PageIndexEntry] {
        &self.index
    }

    /// Appends one page. Pages must come in strictly ascending order, within `commit`,
    /// never the lock page; a snapshot must hold every page.
    pub fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        let misuse = |m: String| Err(LtxError::Encode(m));
        if data.len() != self.header.page_size as usize {
            return misuse(format!(
                "page {pgno} has {} bytes, page size is {}",
                data.len(),
                self.header.page_size
            ));
        }
        if pgno == 0 || pgno <= self.prev_pgno {
            return misuse(format!("page {pgno} written after page {}", self.prev_pgno));
        }
        if pgno > self.header.commit {
            return misuse(format!(
                "page {pgno} is beyond the commit size of {} pages",
                self.header.commit
            ));
        }
        if pgno == self.lock_pgno {
            return misuse(format!("page {pgno} is the lock page and is never stored"));
        }
        if self.header.is_snapshot() {
            let expected = self.next_snapshot_pgno();
            if pgno != expected {
                return misuse(format!(
                    "snapshot is missing page {expected} (got page {pgno})"
                ));
            }
        }
        let n = lz4_flex::block::compress_into(data, &mut self.cbuf)
            .map_err(|e| LtxError::Encode(format!("compress page {pgno}: {e}")))?;
        let ph = PageHeader {
            pgno,
            flags: PAGE_FLAG_LZ4_BLOCK,
        }
        .encode();
        let size = (n as u32).to_be_bytes();
        self.w.write_all(&ph)?;
        self.w.write_all(&size)?;
        self.w.write_all(&self.cbuf[..n])?;
        self.hasher.update(&ph);
        self.hasher.update(&size);
        self.hasher.update(data);
        if let Some(c) = self.db_checksum.as_mut() {
            c.toggle(pgno, data);
        }
        let frame = (PAGE_HEADER_SIZE + PAGE_SIZE_PREFIX + n) as u64;
        self.index.push(PageIndexEntry {
            pgno,
            offset: self.offset,
            size: frame,
        });
        self.offset += frame;
        self.prev_pgno = pgno;
        Ok(())
    }

    /// Appends one page of a database walked in order, skipping the lock page (which LTX
    /// never stores): the one place callers get that rule from.
    pub fn write_db_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        if pgno == self.lock_pgno {
            return Ok(());
        }
        self.write_page(pgno, data)
    }

    fn next_snapshot_pgno(&self) -> u32 {
        let n = self.prev_pgno + 1;
        if n == self.lock_pgno {
            n + 1
        } else {
            n
        }
    }

    /// Writes the end marker, index and trailer and returns the writer. `post_apply` must
    /// be 0 for NoChecksum files; for checksummed snapshots pass `None` to use the
    /// checksum computed from the pages.
    pub fn finish(mut self, post_apply: Option<u64>) -> Result<(W, Trailer)> {
        if self.header.is_snapshot() && self.header.commit > 0 {
            let mut last = self.header.commit;
            if last == self.lock_pgno {
                last -= 1;
            }
            if self.prev_pgno != last {
                return Err(LtxError::Encode(format!(
                    "snapshot ends at page {} but commit is {} pages",
                    self.prev_pgno, self.header.commit
                )));
            }
        }
        let post = match (self.header.has_checksums(), post_apply, self.db_checksum) {
            (false, None | Some(0), _) => 0,
            (false, Some(_), _) => {
                return Err(LtxError::Encode(
                    "post-apply checksum set on a NoChecksum file".into(),
                ))
            }
            (true, None, Some(c)) => c.value(),
            (true, Some(v), Some(c)) if v != c.value() => {
                return Err(LtxError::Encode(format!(
                    "post-apply {v:016x} does not match pages {:016x}",
                    c.value()
                )))
            }
            (true, Some(v), _) if v & CHECKSUM_FLAG != 0 => v,
            (true, _, _) => return Err(LtxError::Encode("post-apply checksum required".into())),
        };
        let end = [0u8; PAGE_HEADER_SIZE];
        self.w.write_all(&end)?;
        self.hasher.update(&end);
        let index = encode_index(&self.index);
        self.w.write_all(&index)?;
        self.hasher.update(&index);
        let post_b = post.to_be_bytes();
        self.hasher.update(&post_b);
        let trailer = Trailer {
            post_apply_checksum: post,
            file_checksum: self.hasher.finish(),
        };
        self.w.write_all(&trailer.encode())?;
        self.w.flush()?;
        Ok((self.w, trailer))
    }
}
