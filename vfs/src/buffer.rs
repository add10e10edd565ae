//! The local write buffer: every committed transaction is appended here before SQLite's
//! COMMIT returns, so a process crash loses nothing; the next open replays what was not
//! yet published. Records are checksummed; a torn tail (crash mid-append) is cut off.
//!
//! File: `SKWB` | version u32 | page_size u32, then records:
//! `len u32 | seq u64 | size u32 | npages u32 | (pgno u32 | page)* | crc64 u64`
//! (`size`: the database size in pages after the transaction)
//! (`len` counts everything after itself; the CRC covers `seq` through the last page).
//! Beside it, `<buffer>.state` (JSON) records what has been published.
//!
//! Space ahead of the last record is written with zeros in [`PREALLOCATE`] steps, as
//! SQLite reuses its WAL: an fsynced commit then overwrites blocks that already exist
//! instead of growing the file, so `fdatasync` flushes data only, not the inode. Records
//! end at the first length of zero (each append writes one after its record) or a record
//! that does not check out; once everything is published the first length is zeroed rather
//! than the file truncated. Sequence
//! numbers run consecutively, so a stale record behind a newer one is never read as part
//! of the buffer.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ltx::format::checksum::crc64;

const MAGIC: &[u8; 4] = b"SKWB";
const VERSION: u32 = 1;
const FILE_HEADER: u64 = 12;
/// Zeros written ahead of the records at a time.
pub const PREALLOCATE: u64 = 1 << 20;
/// Above this, a buffer whose records are all published is truncated (space given back)
/// instead of reused.
const KEEP_ALLOCATED: u64 = 8 * PREALLOCATE;

/// One committed transaction as recorded.
#[derive(Debug, Clone)]
pub struct TxRecord {
    pub seq: u64,
    /// Database size in pages after the transaction.
    pub size: u32,
    pub pages: Vec<(u32, Vec<u8>)>,
}

/// What has been published, persisted next to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishState {
    /// Identifies this writer in the LTX files it publishes (header `node_id`).
    pub writer_id: u64,
    pub published_txid: u64,
    /// Highest buffer sequence number included in a published file.
    pub published_seq: u64,
}

pub struct WriteBuffer {
    path: PathBuf,
    file: File,
    page_size: u32,
    len: u64,
    next_seq: u64,
    /// (seq, end offset) of every record in the file, oldest first: how many bytes are
    /// still unpublished, and where the published prefix ends.
    ends: VecDeque<(u64, u64)>,
    /// Set when a failed append could not be undone: no further appends.
    broken: Option<String>,
    /// Appends fsynced (commits at `synchronous=FULL`), since open.
    pub fsyncs: u64,
    /// The file's length (never below `len` + the terminator): records end at `len`, zeros
    /// (or stale records) follow. Space ahead is written from here, never below.
    allocated: u64,
}

impl WriteBuffer {
    /// Opens (or creates) the buffer and returns the records after `after_seq`, cutting a
    /// torn or corrupt tail.
    pub fn open(
        path: &Path,
        page_size: u32,
        after_seq: u64,
    ) -> std::io::Result<(WriteBuffer, Vec<TxRecord>)> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut records = Vec::new();
        let mut ends = VecDeque::new();
        let mut valid_end = FILE_HEADER;
        let mut max_seq = after_seq;
        let len = file.metadata()?.len();
        let mut fresh = len < FILE_HEADER;
        if !fresh {
            let mut h = [0u8; 12];
            file.read_exact(&mut h)?;
            let ps = u32::from_be_bytes(h[8..12].try_into().unwrap());
            if &h[0..4] != MAGIC
                || u32::from_be_bytes(h[4..8].try_into().unwrap()) != VERSION
                || ps != page_size
            {
                return Err(std::io::Error::other(format!(
                    "{} is not a write buffer for {page_size}-byte pages; move it away to start fresh",
                    path.display()
                )));
            }
            let mut data = Vec::new();
            file.read_to_end(&mut data)?;
            let mut pos = 0usize;
            let mut prev: Option<u64> = None;
            while let Some(rec) = parse_record(&data[pos..], page_size) {
                let (r, used) = rec;
                // Consecutive or nothing: an older record after a newer one is stale
                // content of reused space.
                if prev.is_some_and(|p| r.seq != p + 1) {
                    break;
                }
                prev = Some(r.seq);
                pos += used;
                valid_end = FILE_HEADER + pos as u64;
                max_seq = max_seq.max(r.seq);
                ends.push_back((r.seq, valid_end));
                if r.seq > after_seq {
                    records.push(r);
                }
            }
            if valid_end < len {
                // Zeros (space written ahead) end the records cleanly; anything else is a
                // torn record or stale records behind the last one.
                let rest = &data[pos..];
                let clean = rest.len() >= 4 && rest[..4] == [0, 0, 0, 0];
                if !clean {
                    tracing::warn!(path = %path.display(), discarded = len - valid_end, "write buffer has a torn tail (crash during a commit); discarding it");
                }
                file.set_len(valid_end)?;
            }
        } else {
            fresh = true;
        }
        if fresh {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&file_header(page_size))?;
            file.sync_all()?;
            valid_end = FILE_HEADER;
        }
        file.seek(SeekFrom::Start(valid_end))?;
        let wb = WriteBuffer {
            path: path.to_path_buf(),
            file,
            page_size,
            len: valid_end,
            next_seq: max_seq + 1,
            ends,
            broken: None,
            fsyncs: 0,
            allocated: valid_end,
        };
        Ok((wb, records))
    }

    /// Appends a committed transaction; `durable` also fsyncs (SQLite asked for a sync).
    pub fn append(
        &mut self,
        size: u32,
        pages: &[(u32, &[u8])],
        durable: bool,
    ) -> std::io::Result<u64> {
        let seq = self.next_seq;
        let mut body = Vec::with_capacity(16 + pages.len() * (4 + self.page_size as usize) + 8);
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend_from_slice(&size.to_be_bytes());
        body.extend_from_slice(&(pages.len() as u32).to_be_bytes());
        for (pgno, data) in pages {
            body.extend_from_slice(&pgno.to_be_bytes());
            body.extend_from_slice(data);
        }
        let crc = crc64(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        let mut rec = Vec::with_capacity(4 + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_be_bytes());
        rec.extend_from_slice(&body);
        if let Some(why) = &self.broken {
            return Err(std::io::Error::other(why.clone()));
        }
        let used = rec.len() as u64;
        // A zero length after the record: where the records end, also in reused space.
        rec.extend_from_slice(&[0u8; 4]);
        self.reserve(self.len + rec.len() as u64);
        // At the known end, never the file position: a failed write must not shift later ones.
        let written = self.file.write_all_at(&rec, self.len).and_then(|()| {
            if durable {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Cut the partial record (ENOSPC, EIO): the buffer is exactly as before it, so
            // the commits after this failed one are not hidden behind a torn record. If even
            // that fails, every later commit fails too, loudly, rather than risk it.
            self.allocated = self.len;
            if let Err(cut) = self.file.set_len(self.len) {
                let why = format!(
                    "{}: a failed append ({e}) could not be cut back ({cut}); refusing further commits",
                    self.path.display()
                );
                tracing::error!("{why}");
                self.broken = Some(why);
            }
            return Err(e);
        }
        self.allocated = self.allocated.max(self.len + rec.len() as u64);
        self.len += used;
        self.next_seq += 1;
        self.fsyncs += durable as u64;
        self.ends.push_back((seq, self.len));
        Ok(seq)
    }

    /// Writes zeros ahead so that the file reaches `end` (plus a step). If that fails (a
    /// full disk), the file is cut back and the append grows it itself.
    fn reserve(&mut self, end: u64) {
        if end <= self.allocated {
            return;
        }
        let target = end.div_ceil(PREALLOCATE) * PREALLOCATE + PREALLOCATE;
        let zeros = vec![0u8; (target - self.allocated) as usize];
        match self.file.write_all_at(&zeros, self.allocated) {
            Ok(()) => self.allocated = target,
            Err(e) => {
                // Cut the zeros that were written; the records below are untouched.
                tracing::debug!(error = %e, "write buffer: cannot write space ahead; appending without it");
                let _ = self.file.set_len(self.allocated);
            }
        }
    }

    /// Size of the records in the file, published or not.
    pub fn bytes(&self) -> u64 {
        self.len - FILE_HEADER
    }

    /// Where the records up to `published_seq` end (the start of the unpublished tail).
    fn published_end(&self, published_seq: u64) -> u64 {
        let n = self.ends.partition_point(|&(seq, _)| seq <= published_seq);
        n.checked_sub(1)
            .map(|i| self.ends[i].1)
            .unwrap_or(FILE_HEADER)
    }

    /// Bytes of records not yet published: what back-pressure limits.
    pub fn unpublished_bytes(&self, published_seq: u64) -> u64 {
        self.len - self.published_end(published_seq)
    }

    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Drops published records (seq ≤ `published_seq`): all of them by truncation once
    /// everything is published; under continuous writes, once they take `compact_min`
    /// bytes, by rewriting the unpublished tail into a new file, so the file stays bounded
    /// even if the writer is never idle at a publish.
    pub fn release_published(
        &mut self,
        published_seq: u64,
        compact_min: u64,
    ) -> std::io::Result<()> {
        if self.len == FILE_HEADER {
            return Ok(());
        }
        if self
            .ends
            .back()
            .is_none_or(|&(seq, _)| seq <= published_seq)
        {
            if self.allocated > KEEP_ALLOCATED {
                self.file.set_len(FILE_HEADER)?;
                self.file.sync_all()?;
                self.allocated = FILE_HEADER;
            } else {
                // Reused from the start: the first length of zero ends the records (the
                // publish state already says they are published, so nothing depends on
                // this write reaching the disk).
                self.file.write_all_at(&[0u8; 4], FILE_HEADER)?;
            }
            self.len = FILE_HEADER;
            self.ends.clear();
            return Ok(());
        }
        let cut = self.published_end(published_seq);
        if cut - FILE_HEADER < compact_min.max(1) {
            return Ok(());
        }
        let mut tail = vec![0u8; (self.len - cut) as usize];
        self.file.read_exact_at(&mut tail, cut)?;
        let tmp = PathBuf::from(format!("{}.compact", self.path.display()));
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&file_header(self.page_size))?;
        f.write_all(&tail)?;
        f.sync_all()?;
        self.allocated = FILE_HEADER + tail.len() as u64;
        std::fs::rename(&tmp, &self.path)?;
        // The rename must be durable before anything is appended to the new file, or a
        // power cut could bring back the old file without those appends.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.file = f;
        let shift = cut - FILE_HEADER;
        self.len -= shift;
        while self
            .ends
            .front()
            .is_some_and(|&(seq, _)| seq <= published_seq)
        {
            self.ends.pop_front();
        }
        for e in self.ends.iter_mut() {
            e.1 -= shift;
        }
        tracing::debug!(path = %self.path.display(), dropped = shift, kept = self.len - FILE_HEADER, "write buffer: cut published records");
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Makes the records appended so far durable (a commit whose sync came after its
    /// append: WAL mode at `synchronous=FULL`). After a failed fsync the kernel may have
    /// dropped the dirty pages, so nothing later is trusted to this file: every further
    /// append fails, loudly.
    pub fn sync_commits(&mut self) -> std::io::Result<()> {
        if let Some(why) = &self.broken {
            return Err(std::io::Error::other(why.clone()));
        }
        if let Err(e) = self.file.sync_data() {
            let why = format!(
                "{}: fsync failed ({e}); refusing further commits",
                self.path.display()
            );
            tracing::error!("{why}");
            self.broken = Some(why);
            return Err(e);
        }
        self.fsyncs += 1;
        Ok(())
    }
}

fn file_header(page_size: u32) -> [u8; FILE_HEADER as usize] {
    let mut h = [0u8; FILE_HEADER as usize];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_be_bytes());
    h[8..12].copy_from_slice(&page_size.to_be_bytes());
    h
}

/// The page size a buffer file was created for, if `path` is a readable buffer.
pub fn buffer_page_size(path: &Path) -> Option<u32> {
    let mut h = [0u8; FILE_HEADER as usize];
    File::open(path).ok()?.read_exact(&mut h).ok()?;
    (&h[0..4] == MAGIC).then(|| u32::from_be_bytes([h[8], h[9], h[10], h[11]]))
}

pub fn state_path(buffer: &Path) -> PathBuf {
    PathBuf::from(format!("{}.state", buffer.display()))
}

fn parse_record(data: &[u8], page_size: u32) -> Option<(TxRecord, usize)> {
    let len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    let body = data.get(4..4 + len)?;
    if len < 24 {
        return None;
    }
    let (content, crc) = body.split_at(len - 8);
    if crc64(content) != u64::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let seq = u64::from_be_bytes(content[0..8].try_into().ok()?);
    let size = u32::from_be_bytes(content[8..12].try_into().ok()?);
    let n = u32::from_be_bytes(content[12..16].try_into().ok()?) as usize;
    let ps = page_size as usize;
    if content.len() != 16 + n * (4 + ps) {
        return None;
    }
    let pages = (0..n)
        .map(|i| {
            let o = 16 + i * (4 + ps);
            (
                u32::from_be_bytes(content[o..o + 4].try_into().unwrap()),
                content[o + 4..o + 4 + ps].to_vec(),
            )
        })
        .collect();
    Some((TxRecord { seq, size, pages }, 4 + len))
}

pub fn load_state(buffer: &Path) -> Option<PublishState> {
    let text = std::fs::read_to_string(state_path(buffer)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(PublishState {
        writer_id: v["writer_id"].as_str()?.parse().ok()?,
        published_txid: v["published_txid"].as_u64()?,
        published_seq: v["published_seq"].as_u64()?,
    })
}

pub fn save_state(buffer: &Path, s: &PublishState) -> std::io::Result<()> {
    let p = state_path(buffer);
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", p.display()));
    let body = serde_json::json!({
        "writer_id": s.writer_id.to_string(), "published_txid": s.published_txid, "published_seq": s.published_seq,
    });
    let mut f = File::create(&tmp)?;
    f.write_all(body.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_and_cuts_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("buf");
        let (mut b, recs) = WriteBuffer::open(&p, 512, 0).unwrap();
        assert!(recs.is_empty());
        b.append(3, &[(1, &[1u8; 512]), (3, &[3u8; 512])], true)
            .unwrap();
        b.append(4, &[(4, &[4u8; 512])], false).unwrap();
        let end = FILE_HEADER + b.bytes();
        drop(b);
        // A torn third record, right after the second.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0, 0, 2, 0, 1, 2, 3], end).unwrap();
        drop(f);
        let (b, recs) = WriteBuffer::open(&p, 512, 0).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].pages[0].0, 4);
        assert_eq!(b.last_seq(), 2);
        let (_, recs) = WriteBuffer::open(&p, 512, 1).unwrap();
        assert_eq!(recs.len(), 1, "records up to the published seq are skipped");
        assert!(
            WriteBuffer::open(&p, 4096, 0).is_err(),
            "page size mismatch is refused"
        );
    }

    /// Under continuous writes the publish never finds the buffer fully published: the
    /// published prefix is cut by a rewrite, back-pressure counts only the unpublished tail,
    /// and a reopen replays exactly the unpublished records.
    #[test]
    fn cuts_published_prefix_and_counts_unpublished() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("buf");
        let (mut b, _) = WriteBuffer::open(&p, 512, 0).unwrap();
        let page = [7u8; 512];
        let pages: Vec<(u32, &[u8])> = (1..=100).map(|n| (n, &page[..])).collect();
        let mut last = 0;
        for _ in 0..100 {
            last = b.append(100, &pages, false).unwrap();
        }
        let rec = b.bytes() / 100;
        assert_eq!(b.unpublished_bytes(0), b.bytes());
        assert_eq!(b.unpublished_bytes(90), 10 * rec);
        // Published prefix below the threshold: kept, not rewritten.
        b.release_published(5, 4 << 20).unwrap();
        assert_eq!(b.bytes(), 100 * rec);
        // Past it: cut, the tail moves to the front, appends continue after it.
        b.release_published(90, 4 << 20).unwrap();
        assert_eq!(b.bytes(), 10 * rec);
        assert_eq!(b.unpublished_bytes(90), 10 * rec);
        let next = b.append(100, &[(1, &[9u8; 512])], true).unwrap();
        assert_eq!(next, last + 1);
        assert!(std::fs::metadata(&p).unwrap().len() >= FILE_HEADER + b.bytes());
        drop(b);
        let (b, recs) = WriteBuffer::open(&p, 512, 90).unwrap();
        let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (91..=next).collect::<Vec<_>>());
        assert_eq!(recs.last().unwrap().pages[0].1, vec![9u8; 512]);
        assert_eq!(b.unpublished_bytes(90), b.bytes());
        let mut b = b;
        b.release_published(next, 4 << 20).unwrap();
        assert_eq!(b.bytes(), 0, "everything published: released");
    }

    /// Space is written ahead and reused once everything is published: appends then
    /// overwrite existing blocks, and a reopen reads only the records after the reuse, never
    /// the stale ones behind them.
    #[test]
    fn reused_space_never_brings_back_stale_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("buf");
        let (mut b, _) = WriteBuffer::open(&p, 512, 0).unwrap();
        for i in 0..20u8 {
            b.append(1, &[(1, &[i; 512])], true).unwrap();
        }
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size >= PREALLOCATE, "space is written ahead: {size}");
        b.release_published(20, 4 << 20).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            size,
            "reused, not truncated"
        );
        // Two new records over the start of the old ones.
        b.append(1, &[(1, &[100u8; 512])], true).unwrap();
        b.append(1, &[(1, &[101u8; 512])], true).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), size, "no growth");
        drop(b);
        let (b, recs) = WriteBuffer::open(&p, 512, 20).unwrap();
        let got: Vec<(u64, u8)> = recs.iter().map(|r| (r.seq, r.pages[0].1[0])).collect();
        assert_eq!(got, vec![(21, 100), (22, 101)]);
        assert_eq!(b.last_seq(), 22);
        // Without the terminator (a crash that left old bytes behind the new records), the
        // stale records still do not join: their sequence numbers do not follow.
        let end = FILE_HEADER + b.bytes();
        drop(b);
        let (mut old, _) = {
            let q = dir.path().join("old");
            let (mut o, _) = WriteBuffer::open(&q, 512, 0).unwrap();
            for i in 0..5u8 {
                o.append(1, &[(1, &[i; 512])], false).unwrap();
            }
            drop(o);
            (std::fs::read(&q).unwrap(), ())
        };
        // Old records 1..5 behind 21, 22: written right at the end of record 22.
        old.drain(..FILE_HEADER as usize);
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&old, end).unwrap();
        drop(f);
        let (_, recs) = WriteBuffer::open(&p, 512, 20).unwrap();
        let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![21, 22]);
    }
}
