//! The page index at the end of every LTX file: uvarint triples `(pgno, offset, size)`
//! ending in a zero varint, then a big-endian u64 holding the byte length of the entries
//! plus terminator. It lets a reader fetch a single page with one ranged read.

use super::error::{LtxError, Result};
use super::trailer::TRAILER_SIZE;

/// Where one page frame sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageIndexEntry {
    pub pgno: u32,
    /// Absolute file offset of the frame (its pgno field).
    pub offset: u64,
    /// Whole frame length: page header, size prefix and payload.
    pub size: u64,
}

/// Bytes from the end of the file to the start of the index-length field.
pub const INDEX_LEN_FIELD: usize = 8;

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one uvarint from `b` at `*pos`, Go's `binary.Uvarint` rules (max 10 bytes).
pub fn get_uvarint(b: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(&byte) = b.get(*pos) else {
            return Err(LtxError::InvalidIndex(
                "varint runs past the end of the index".into(),
            ));
        };
        *pos += 1;
        if i == 9 && byte > 1 {
            return Err(LtxError::InvalidIndex("varint overflows 64 bits".into()));
        }
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(LtxError::InvalidIndex("varint longer than 10 bytes".into()))
}

/// Encodes entries plus terminator plus the length field.
pub fn encode_index(entries: &[PageIndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 8 + 9);
    for e in entries {
        put_uvarint(&mut out, e.pgno as u64);
        put_uvarint(&mut out, e.offset);
        put_uvarint(&mut out, e.size);
    }
    put_uvarint(&mut out, 0);
    let len = out.len() as u64;
    out.extend_from_slice(&len.to_be_bytes());
    out
}

/// Decodes the varint entries (terminator included, length field excluded). Entries must
/// be in strictly ascending pgno order; the terminator must end the bytes exactly.
pub fn decode_index_entries(b: &[u8]) -> Result<Vec<PageIndexEntry>> {
    let mut pos = 0;
    let mut entries = Vec::new();
    let mut prev = 0u32;
    loop {
        let pgno = get_uvarint(b, &mut pos)?;
        if pgno == 0 {
            break;
        }
        let pgno = u32::try_from(pgno)
            .map_err(|_| LtxError::InvalidIndex(format!("page number {pgno} out of range")))?;
        if pgno <= prev {
            return Err(LtxError::InvalidIndex(format!(
                "page {pgno} listed after page {prev}"
            )));
        }
        prev = pgno;
        let offset = get_uvarint(b, &mut pos)?;
        let size = get_uvarint(b, &mut pos)?;
        entries.push(PageIndexEntry { pgno, offset, size });
    }
    if pos != b.len() {
        return Err(LtxError::InvalidIndex(format!(
            "{} bytes after the terminator",
            b.len() - pos
        )));
    }
    Ok(entries)
}

/// Where the index lies, given the file length and the u64 read just before the trailer.
/// Returns the byte range of the varint entries (terminator included).
pub fn index_range(file_len: u64, index_len: u64) -> Result<std::ops::Range<u64>> {
    let footer = (TRAILER_SIZE + INDEX_LEN_FIELD) as u64;
    let min_len =
        super::header::HEADER_SIZE as u64 + super::page::PAGE_HEADER_SIZE as u64 + 1 + footer;
    if file_len < min_len {
        return Err(LtxError::InvalidIndex(format!(
            "file of {file_len} bytes is too short to hold an index"
        )));
    }
    let end = file_len - footer;
    if index_len == 0 || index_len > end - super::header::HEADER_SIZE as u64 {
        return Err(LtxError::InvalidIndex(format!(
            "index length {index_len} does not fit in a {file_len}-byte file"
        )));
    }
    Ok(end - index_len..end)
}

/// What the last bytes of a file say about its index.
#[derive(Debug, PartialEq, Eq)]
pub enum TailIndex {
    /// The whole index was in the tail.
    Entries(Vec<PageIndexEntry>),
    /// The index starts before the tail: read this byte range and decode it.
    Beyond(std::ops::Range<u64>),
}

/// Parses the index from the last bytes of a file (`tail` = the final `tail.len()` bytes
/// of a `file_len`-byte file, at least the trailer and the index length).
pub fn decode_index_from_tail(tail: &[u8], file_len: u64) -> Result<TailIndex> {
    let footer = TRAILER_SIZE + INDEX_LEN_FIELD;
    let Some(at) = tail.len().checked_sub(footer) else {
        return Err(LtxError::InvalidIndex(format!(
            "a {}-byte tail cannot hold the index length and trailer",
            tail.len()
        )));
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(&tail[at..at + 8]);
    let range = index_range(file_len, u64::from_be_bytes(len))?;
    let tail_start = file_len.saturating_sub(tail.len() as u64);
    if range.start < tail_start {
        return Ok(TailIndex::Beyond(range));
    }
    let s = (range.start - tail_start) as usize;
    decode_index_entries(&tail[s..at]).map(TailIndex::Entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_matches_go() {
        let mut v = Vec::new();
        put_uvarint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut p = 0;
        assert_eq!(get_uvarint(&v, &mut p).unwrap(), 300);
        let mut p = 0;
        assert!(get_uvarint(&[0xff; 11], &mut p).is_err());
    }

    #[test]
    fn index_round_trip() {
        let entries = vec![
            PageIndexEntry {
                pgno: 1,
                offset: 100,
                size: 280,
            },
            PageIndexEntry {
                pgno: 7,
                offset: 380,
                size: 20,
            },
        ];
        let enc = encode_index(&entries);
        let n = enc.len() - 8;
        assert_eq!(u64::from_be_bytes(enc[n..].try_into().unwrap()), n as u64);
        assert_eq!(decode_index_entries(&enc[..n]).unwrap(), entries);
    }
}
