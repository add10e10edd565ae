//! Streaming LTX decoder that validates everything: header rules, page order, snapshot
//! completeness, frame sizes against the page index, the file checksum and (where the
//! file carries one) the post-apply database checksum. Holds one page at a time.

use std::io::{ErrorKind, Read};

use super::checksum::{DbChecksum, FileHasher};
use super::error::{LtxError, Result, Section};
use super::header::{lock_pgno, Header, HEADER_SIZE};
use super::index::{decode_index_entries, PageIndexEntry, INDEX_LEN_FIELD};
use super::page::{
    decompress_block, read_lz4_frame, FrameError, PageHeader, PAGE_FLAG_LZ4_BLOCK, PAGE_HEADER_SIZE,
};
use super::trailer::{Trailer, TRAILER_SIZE};

/// Largest compressed page we accept: LZ4's worst case for a 64 KiB page, plus slack.
const MAX_COMPRESSED: u32 = 65536 + 65536 / 255 + 64;

pub struct Decoder<R: Read> {
    r: R,
    offset: u64,
    header: Header,
    hasher: FileHasher,
    frames: Vec<PageIndexEntry>,
    prev_pgno: u32,
    lock_pgno: u32,
    db_checksum: Option<DbChecksum>,
    cbuf: Vec<u8>,
    pages_done: bool,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(mut r: R) -> Result<Self> {
        let mut hb = [0u8; HEADER_SIZE];
        read_exact(&mut r, &mut hb, Section::Header, 0)?;
        let header = Header::decode(&hb)?;
        let mut hasher = FileHasher::new();
        hasher.update(&hb);
        Ok(Decoder {
            r,
            offset: HEADER_SIZE as u64,
            header,
            hasher,
            frames: Vec::new(),
            prev_pgno: 0,
            lock_pgno: lock_pgno(header.page_size),
            db_checksum: (header.is_snapshot() && header.has_checksums())
                .then_some(DbChecksum::EMPTY),
            cbuf: Vec::new(),
            pages_done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Leaves a snapshot's post-apply checksum unchecked here, for a caller that checks it
    /// itself from page checksums it computes anyway (a restore): each page's CRC once,
    /// not twice.
    pub fn without_db_checksum(mut self) -> Self {
        self.db_checksum = None;
        self
    }

    /// Decodes the next page into `out` (exactly `page_size` bytes) and returns its
    /// number, or `None` after the last page.
    pub fn next_page(&mut self, out: &mut [u8]) -> Result<Option<u32>> {
        if self.pages_done {
            return Ok(None);
        }
        let page_size = self.header.page_size as usize;
        if out.len() != page_size {
            return Err(LtxError::Encode(format!(
                "page buffer is {} bytes, page size is {page_size}",
                out.len()
            )));
        }
        let frame_start = self.offset;
        let mut phb = [0u8; PAGE_HEADER_SIZE];
        self.fill(&mut phb, Section::PageHeader)?;
        self.hasher.update(&phb);
        let ph = PageHeader::decode(&phb);
        if ph.is_end() {
            self.pages_done = true;
            self.check_snapshot_complete()?;
            return Ok(None);
        }
        let invalid = |reason: String| LtxError::InvalidPage {
            offset: frame_start,
            reason,
        };
        if ph.pgno == 0 {
            return Err(invalid(format!(
                "page number 0 with flags {:#06x}",
                ph.flags
            )));
        }
        if ph.pgno <= self.prev_pgno {
            return Err(invalid(format!(
                "page {} comes after page {}",
                ph.pgno, self.prev_pgno
            )));
        }
        if ph.pgno > self.header.commit {
            return Err(invalid(format!(
                "page {} is beyond the commit size of {} pages",
                ph.pgno, self.header.commit
            )));
        }
        if ph.pgno == self.lock_pgno {
            return Err(invalid(format!(
                "page {} is the lock page, which is never stored",
                ph.pgno
            )));
        }
        if self.header.is_snapshot() {
            let expected = self.next_snapshot_pgno();
            if ph.pgno != expected {
                return Err(invalid(format!(
                    "snapshot is missing page {expected} (next stored page is {})",
                    ph.pgno
                )));
            }
        }
        match ph.flags {
            PAGE_FLAG_LZ4_BLOCK => {
                let mut sb = [0u8; 4];
                self.fill(&mut sb, Section::PageHeader)?;
                self.hasher.update(&sb);
                let n = u32::from_be_bytes(sb);
                if n == 0 || n > MAX_COMPRESSED {
                    return Err(invalid(format!(
                        "compressed size {n} of page {} is impossible",
                        ph.pgno
                    )));
                }
                let mut cbuf = std::mem::take(&mut self.cbuf);
                cbuf.resize(n as usize, 0);
                let res = self.fill(&mut cbuf, Section::PageData);
                self.cbuf = cbuf;
                res?;
                if let Err(reason) = decompress_block(&self.cbuf, out) {
                    return Err(LtxError::Decompress {
                        pgno: ph.pgno,
                        offset: frame_start,
                        reason,
                    });
                }
            }
            0 => {
                let mut counted = CountingRead {
                    r: &mut self.r,
                    n: 0,
                };
                let res = read_lz4_frame(&mut counted, out);
                let consumed = counted.n;
                self.offset += consumed;
                match res {
                    Ok(()) => {}
                    Err(FrameError::Eof) => {
                        return Err(LtxError::Truncated {
                            section: Section::PageData,
                            offset: self.offset,
                        })
                    }
                    Err(FrameError::Io(e)) => return Err(LtxError::Io(e)),
                    Err(FrameError::Invalid(reason)) => {
                        return Err(LtxError::Decompress {
                            pgno: ph.pgno,
                            offset: frame_start,
                            reason,
                        })
                    }
                }
            }
            f => {
                return Err(invalid(format!(
                    "unknown page flags {f:#06x} on page {}",
                    ph.pgno
                )))
            }
        }
        self.hasher.update(out);
        if let Some(c) = self.db_checksum.as_mut() {
            c.toggle(ph.pgno, out);
        }
        self.frames.push(PageIndexEntry {
            pgno: ph.pgno,
            offset: frame_start,
            size: self.offset - frame_start,
        });
        self.prev_pgno = ph.pgno;
        Ok(Some(ph.pgno))
    }

    fn next_snapshot_pgno(&self) -> u32 {
        let n = self.prev_pgno + 1;
        if n == self.lock_pgno {
            n + 1
        } else {
            n
        }
    }

    fn check_snapshot_complete(&self) -> Result<()> {
        if !self.header.is_snapshot() {
            return Ok(());
        }
        let mut last = self.header.commit;
        if last == self.lock_pgno {
            last -= 1;
        }
        if self.prev_pgno != last {
            return Err(LtxError::InvalidPage {
                offset: self.offset - PAGE_HEADER_SIZE as u64,
                reason: format!(
                    "snapshot ends at page {} but commit is {} pages",
                    self.prev_pgno, self.header.commit
                ),
            });
        }
        Ok(())
    }

    /// Reads the rest of the file (remaining pages are decoded and dropped), checks the
    /// index against the frames seen, the trailer, the checksums and that nothing follows.
    pub fn finish(mut self) -> Result<Trailer> {
        let mut scratch = vec![0u8; self.header.page_size as usize];
        while self.next_page(&mut scratch)?.is_some() {}

        // Index: exactly the entries we built, then the terminator, then its length.
        let mut expected = Vec::with_capacity(self.frames.len() * 8 + 1);
        for e in &self.frames {
            super::index::put_uvarint(&mut expected, e.pgno as u64);
            super::index::put_uvarint(&mut expected, e.offset);
            super::index::put_uvarint(&mut expected, e.size);
        }
        super::index::put_uvarint(&mut expected, 0);
        let index_start = self.offset;
        let mut got = vec![0u8; expected.len()];
        self.fill(&mut got, Section::PageIndex)?;
        let mut lenb = [0u8; INDEX_LEN_FIELD];
        self.fill(&mut lenb, Section::PageIndex)?;
        if got != expected {
            // Decode what is there for a precise message.
            let msg = match decode_index_entries(&got) {
                Err(e) => e.to_string(),
                Ok(entries) => format!(
                    "index lists {} pages, file holds {}",
                    entries.len(),
                    self.frames.len()
                ),
            };
            return Err(LtxError::InvalidIndex(format!(
                "at byte {index_start}: {msg}"
            )));
        }
        let index_len = u64::from_be_bytes(lenb);
        if index_len != expected.len() as u64 {
            return Err(LtxError::InvalidIndex(format!(
                "length field says {index_len} bytes, index is {} bytes",
                expected.len()
            )));
        }
        self.hasher.update(&got);
        self.hasher.update(&lenb);

        let mut tb = [0u8; TRAILER_SIZE];
        self.fill(&mut tb, Section::Trailer)?;
        let trailer = Trailer::decode(&tb);
        self.hasher.update(&tb[0..8]);
        let mut extra = [0u8; 1];
        let mut trailing = 0u64;
        loop {
            match self.r.read(&mut extra) {
                Ok(0) => break,
                Ok(n) => trailing += n as u64,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            if trailing > 1 << 20 {
                break;
            }
        }
        if trailing > 0 {
            return Err(LtxError::TrailingData(trailing));
        }
        let computed = std::mem::take(&mut self.hasher).finish();
        if trailer.file_checksum != computed {
            return Err(LtxError::FileChecksumMismatch {
                stored: trailer.file_checksum,
                computed,
            });
        }
        if !self.header.has_checksums() {
            if trailer.post_apply_checksum != 0 {
                return Err(LtxError::InvalidTrailer(
                    "post-apply checksum set on a NoChecksum file".into(),
                ));
            }
        } else if trailer.post_apply_checksum & super::checksum::CHECKSUM_FLAG == 0 {
            return Err(LtxError::InvalidTrailer(
                "post-apply checksum missing".into(),
            ));
        } else if let Some(c) = self.db_checksum {
            if c.value() != trailer.post_apply_checksum {
                return Err(LtxError::PostApplyChecksumMismatch {
                    stored: trailer.post_apply_checksum,
                    computed: c.value(),
                });
            }
        }
        Ok(trailer)
    }

    /// The page index rebuilt from the frames read so far.
    pub fn frames(&self) -> &[PageIndexEntry] {
        &self.frames
    }

    fn fill(&mut self, buf: &mut [u8], section: Section) -> Result<()> {
        read_exact(&mut self.r, buf, section, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(())
    }
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], section: Section, offset: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(LtxError::Truncated {
                    section,
                    offset: offset + done as u64,
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

struct CountingRead<'a, R: Read> {
    r: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
