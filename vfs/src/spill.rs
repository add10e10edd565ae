//! Bytes that live in memory until they grow large, then in an unnamed temporary file:
//! the content of the rollback journal, the WAL, and the WAL-mode page stores. None of it
//! has to survive the process (the write buffer is what does), so none of it is a named
//! file that needs creating, fsyncing or deleting.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Bytes kept in memory before the content moves to a temporary file.
pub const SPILL_AT: usize = 32 << 20;

enum Content {
    Memory(Vec<u8>),
    /// Spilled: an unnamed temporary file (gone when closed) and its length.
    Disk(std::fs::File, u64),
}

pub struct SpillFile {
    content: Content,
    /// Where spilled content goes (the database's directory).
    dir: PathBuf,
    /// What the content is, for the log line when it spills.
    what: &'static str,
}

impl SpillFile {
    pub fn new(dir: PathBuf, what: &'static str) -> Self {
        SpillFile {
            content: Content::Memory(Vec::new()),
            dir,
            what,
        }
    }

    pub fn len(&self) -> u64 {
        match &self.content {
            Content::Memory(v) => v.len() as u64,
            Content::Disk(_, n) => *n,
        }
    }

    #[cfg(test)]
    pub fn is_spilled(&self) -> bool {
        matches!(self.content, Content::Disk(..))
    }

    /// Reads at `off`; returns how many bytes there were (the rest is zero-filled).
    pub fn read(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        let have = self.len().saturating_sub(off).min(buf.len() as u64) as usize;
        match &self.content {
            Content::Memory(v) => {
                if have > 0 {
                    buf[..have].copy_from_slice(&v[off as usize..off as usize + have]);
                }
            }
            Content::Disk(f, _) => f.read_exact_at(&mut buf[..have], off)?,
        }
        buf[have..].fill(0);
        Ok(have)
    }

    pub fn write(&mut self, data: &[u8], off: u64) -> std::io::Result<()> {
        let end = off + data.len() as u64;
        if let Content::Memory(v) = &self.content {
            if end as usize > SPILL_AT {
                let f = tempfile::tempfile_in(&self.dir)?;
                f.write_all_at(v, 0)?;
                tracing::debug!(dir = %self.dir.display(), what = self.what, "spilled to a temporary file");
                self.content = Content::Disk(f, v.len() as u64);
            }
        }
        match &mut self.content {
            Content::Memory(v) => {
                if v.len() < end as usize {
                    v.resize(end as usize, 0);
                }
                v[off as usize..end as usize].copy_from_slice(data);
            }
            Content::Disk(f, n) => {
                f.write_all_at(data, off)?;
                *n = (*n).max(end);
            }
        }
        Ok(())
    }

    /// Cuts to `size` bytes (never grows). Cutting to zero returns to memory.
    pub fn truncate(&mut self, size: u64) -> std::io::Result<()> {
        if size == 0 {
            self.content = Content::Memory(Vec::new());
            return Ok(());
        }
        match &mut self.content {
            Content::Memory(v) => v.truncate(size as usize),
            Content::Disk(f, n) => {
                f.set_len(size.min(*n))?;
                *n = size.min(*n);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_content_spills_to_disk_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = SpillFile::new(dir.path().to_path_buf(), "test");
        j.write(b"header", 0).unwrap();
        let page = vec![7u8; 1 << 20];
        for i in 0..40u64 {
            j.write(&page, 512 + i * (1 << 20)).unwrap();
        }
        assert!(j.is_spilled(), "spilled past {SPILL_AT}");
        let mut b = [0u8; 6];
        assert_eq!(j.read(&mut b, 0).unwrap(), 6);
        assert_eq!(&b, b"header");
        let mut p = vec![0u8; 4];
        j.read(&mut p, 512 + 39 * (1 << 20)).unwrap();
        assert_eq!(p, vec![7u8; 4]);
        // Past the end: zero-filled, short.
        let mut tail = [1u8; 8];
        assert_eq!(j.read(&mut tail, j.len() - 4).unwrap(), 4);
        assert_eq!(&tail[4..], &[0, 0, 0, 0]);
        j.truncate(0).unwrap();
        assert_eq!(j.len(), 0);
        assert!(!j.is_spilled());
    }
}
