//! The 100-byte LTX header (format version 3, magic `LTX1`), big-endian.

use super::checksum::CHECKSUM_FLAG;
use super::error::{LtxError, Result};

pub const MAGIC: &[u8; 4] = b"LTX1";
pub const HEADER_SIZE: usize = 100;
/// The only defined header flag: the file carries no database checksums
/// (pre/post-apply are zero). Litestream 0.5 sets it on every file it writes.
pub const FLAG_NO_CHECKSUM: u32 = 0x0000_0002;

/// A transaction ID. LTX TXIDs start at 1; 0 means "none".
pub type Txid = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub page_size: u32,
    /// Database size in pages after this file is applied.
    pub commit: u32,
    pub min_txid: Txid,
    pub max_txid: Txid,
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: i64,
    pub wal_size: i64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
}

impl Header {
    /// A header in the form Litestream 0.5 writes: NoChecksum, no WAL fields.
    pub fn new(
        page_size: u32,
        commit: u32,
        min_txid: Txid,
        max_txid: Txid,
        timestamp_ms: i64,
    ) -> Self {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp_ms,
            pre_apply_checksum: 0,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        }
    }

    /// A snapshot holds the whole database: it starts at TXID 1.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == 1
    }

    pub fn has_checksums(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM == 0
    }

    /// Byte length of the database after applying this file.
    pub fn db_size(&self) -> u64 {
        self.commit as u64 * self.page_size as u64
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses and validates a header from the first bytes of a file (as a ranged read
    /// returns them); fewer than [`HEADER_SIZE`] bytes is a truncated header.
    pub fn decode_prefix(b: &[u8]) -> Result<Header> {
        let head: &[u8; HEADER_SIZE] =
            b.get(..HEADER_SIZE)
                .and_then(|h| h.try_into().ok())
                .ok_or(LtxError::Truncated {
                    section: super::Section::Header,
                    offset: b.len() as u64,
                })?;
        Self::decode(head)
    }

    /// Parses and validates a header.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Result<Header> {
        let magic: [u8; 4] = b[0..4].try_into().unwrap();
        if &magic != MAGIC {
            return Err(LtxError::BadMagic { found: magic });
        }
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
        let h = Header {
            flags: u32_at(4),
            page_size: u32_at(8),
            commit: u32_at(12),
            min_txid: u64_at(16),
            max_txid: u64_at(24),
            timestamp_ms: u64_at(32) as i64,
            pre_apply_checksum: u64_at(40),
            wal_offset: u64_at(48) as i64,
            wal_size: u64_at(56) as i64,
            wal_salt1: u32_at(64),
            wal_salt2: u32_at(68),
            node_id: u64_at(72),
        };
        h.validate()?;
        Ok(h)
    }

    /// The rules Litestream's decoder applies; a header breaking one is rejected.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LtxError::InvalidHeader(m));
        if self.flags & !FLAG_NO_CHECKSUM != 0 {
            return bad(format!("unknown flags {:#010x}", self.flags));
        }
        if !is_valid_page_size(self.page_size) {
            return bad(format!(
                "page size {} is not a power of two in 512..=65536",
                self.page_size
            ));
        }
        if self.min_txid == 0 || self.max_txid == 0 {
            return bad(format!(
                "TXIDs must be non-zero (min {}, max {})",
                self.min_txid, self.max_txid
            ));
        }
        if self.min_txid > self.max_txid {
            return bad(format!(
                "min TXID {} is after max TXID {}",
                self.min_txid, self.max_txid
            ));
        }
        if self.wal_offset < 0 || self.wal_size < 0 {
            return bad("negative WAL offset or size".into());
        }
        if self.wal_offset == 0
            && (self.wal_size != 0 || self.wal_salt1 != 0 || self.wal_salt2 != 0)
        {
            return bad("WAL size or salts set without a WAL offset".into());
        }
        if self.is_snapshot() || !self.has_checksums() {
            if self.pre_apply_checksum != 0 {
                return bad(
                    "pre-apply checksum must be zero on snapshots and NoChecksum files".into(),
                );
            }
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad("pre-apply checksum required on non-snapshot files".into());
        }
        Ok(())
    }
}

pub fn is_valid_page_size(n: u32) -> bool {
    (512..=65536).contains(&n) && n.is_power_of_two()
}

/// The contiguity rule: a file covering `min..=max` applies on a history that ends at
/// `have` when it starts at or before the next TXID (overlap is fine) and brings something
/// newer. Restore plans, the applier and compaction all use it.
pub fn extends(min: Txid, max: Txid, have: Txid) -> bool {
    min <= have.saturating_add(1) && max > have
}

/// The page that holds SQLite's lock bytes (at 1 GiB). It is never stored in LTX files.
pub fn lock_pgno(page_size: u32) -> u32 {
    (0x4000_0000 / page_size) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut h = Header::new(4096, 21, 1, 1, 1_795_635_356_953);
        h.wal_offset = 32;
        h.wal_size = 16480;
        h.wal_salt1 = 0xf4376075;
        h.wal_salt2 = 0x6cc88201;
        let b = h.encode();
        assert_eq!(
            &b[0..16],
            &[0x4c, 0x54, 0x58, 0x31, 0, 0, 0, 2, 0, 0, 0x10, 0, 0, 0, 0, 0x15]
        );
        assert_eq!(Header::decode(&b).unwrap(), h);
    }

    #[test]
    fn lock_page_at_4k() {
        assert_eq!(lock_pgno(4096), 262145);
    }

    #[test]
    fn rejects_bad_fields() {
        let good = Header::new(4096, 1, 1, 1, 0);
        let mut h = good;
        h.flags = 1;
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(LtxError::InvalidHeader(_))
        ));
        h = good;
        h.page_size = 1000;
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(LtxError::InvalidHeader(_))
        ));
        h = good;
        h.min_txid = 5;
        h.max_txid = 4;
        assert!(matches!(
            Header::decode(&h.encode()),
            Err(LtxError::InvalidHeader(_))
        ));
        h = good;
        h.flags = 0;
        h.min_txid = 2;
        h.max_txid = 2;
        assert!(Header::decode(&h.encode())
            .unwrap_err()
            .to_string()
            .contains("pre-apply"));
        let mut b = good.encode();
        b[0] = b'X';
        assert!(matches!(Header::decode(&b), Err(LtxError::BadMagic { .. })));
    }
}
