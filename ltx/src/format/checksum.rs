//! Checksums used by LTX: CRC-64/GO-ISO (Go's `crc64.ISO`) with bit 63 forced on.
//!
//! Bit 63 is always set on stored checksums so that zero can mean "no checksum".

use crc::{Crc, Digest, Table, CRC_64_GO_ISO};

/// The CRC algorithm behind every LTX checksum.
pub static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// The flag bit every stored checksum carries.
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// A running file checksum: feed bytes in file order (with pages decompressed).
pub struct FileHasher {
    digest: Digest<'static, u64, Table<16>>,
}

impl Default for FileHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl FileHasher {
    pub fn new() -> Self {
        Self {
            digest: CRC64.digest(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The stored form: CRC with bit 63 set.
    pub fn finish(self) -> u64 {
        self.digest.finalize() | CHECKSUM_FLAG
    }
}

/// Checksum of one database page: `CRC64(be32(pgno) || data) | flag`.
pub fn page_checksum(pgno: u32, data: &[u8]) -> u64 {
    let mut d = CRC64.digest();
    d.update(&pgno.to_be_bytes());
    d.update(data);
    d.finalize() | CHECKSUM_FLAG
}

/// The rolling database checksum: XOR of the page checksums of every page (lock page
/// excluded), with the flag bit set. Updating one page is O(1): XOR the old page's
/// checksum out and the new one in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DbChecksum(u64);

impl DbChecksum {
    /// The checksum of an empty database.
    pub const EMPTY: DbChecksum = DbChecksum(0);

    pub fn toggle(&mut self, pgno: u32, data: &[u8]) {
        self.0 ^= page_checksum(pgno, data);
    }

    /// Toggles a page checksum computed earlier ([`page_checksum`]).
    pub fn xor(&mut self, page_sum: u64) {
        self.0 ^= page_sum;
    }

    /// The stored form, with the flag bit set.
    pub fn value(self) -> u64 {
        self.0 | CHECKSUM_FLAG
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_go_iso_check_value() {
        assert_eq!(CRC64.checksum(b"123456789"), 0xb90956c775a41001);
    }

    #[test]
    fn db_checksum_is_order_independent_and_reversible() {
        let mut a = DbChecksum::EMPTY;
        a.toggle(1, b"one");
        a.toggle(2, b"two");
        let mut b = DbChecksum::EMPTY;
        b.toggle(2, b"two");
        b.toggle(1, b"one");
        assert_eq!(a, b);
        b.toggle(2, b"two");
        b.toggle(1, b"one");
        assert_eq!(b.value(), CHECKSUM_FLAG);
    }
}
