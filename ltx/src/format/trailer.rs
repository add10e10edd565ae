//! The 16-byte trailer: post-apply database checksum, then the file checksum.

pub const TRAILER_SIZE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Database checksum after applying the file; 0 in NoChecksum files.
    pub post_apply_checksum: u64,
    /// CRC-64/GO-ISO of the whole file (pages decompressed), bit 63 set.
    pub file_checksum: u64,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; TRAILER_SIZE]) -> Self {
        Trailer {
            post_apply_checksum: u64::from_be_bytes(b[0..8].try_into().unwrap()),
            file_checksum: u64::from_be_bytes(b[8..16].try_into().unwrap()),
        }
    }
}
