//! Page frames: `pgno (u32) | flags (u16) | [size (u32)] | payload`.
//!
//! Litestream ≥ 0.5.16 writes flag `0x0001`: a 4-byte big-endian size, then one raw LZ4
//! block that decompresses to exactly one page. Older 0.5.x wrote flag 0: one LZ4 *frame*
//! per page with no size prefix; we read both and write the block form.
//!
//! Blocks are decoded by the C reference decoder (liblz4's `LZ4_decompress_safe`, which
//! never reads or writes outside the buffers it is given, whatever the input): SQLite pages
//! carry runs of zeros (free space) that it expands 8 bytes at a time where `lz4_flex`
//! copies them byte by byte; 2× faster on text-like pages, 7× on half-empty ones, and a
//! restore decodes every page it writes. Compression (same speed either way) and the rare
//! legacy frames stay on `lz4_flex`.

use std::io::Read;

/// Page flag: a 4-byte size prefix follows; the payload is an LZ4 block.
pub const PAGE_FLAG_LZ4_BLOCK: u16 = 0x0001;
/// pgno (4) + flags (2).
pub const PAGE_HEADER_SIZE: usize = 6;
/// Bytes in the size prefix of a block-format frame.
pub const PAGE_SIZE_PREFIX: usize = 4;

/// The 6-byte page header; an all-zero header ends the page block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub pgno: u32,
    pub flags: u16,
}

impl PageHeader {
    pub fn encode(&self) -> [u8; PAGE_HEADER_SIZE] {
        let mut b = [0u8; PAGE_HEADER_SIZE];
        b[0..4].copy_from_slice(&self.pgno.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; PAGE_HEADER_SIZE]) -> Self {
        PageHeader {
            pgno: u32::from_be_bytes(b[0..4].try_into().unwrap()),
            flags: u16::from_be_bytes(b[4..6].try_into().unwrap()),
        }
    }

    pub fn is_end(&self) -> bool {
        self.pgno == 0 && self.flags == 0
    }
}

/// Why a legacy LZ4 frame could not be read. `Eof` means the input ended early.
#[derive(Debug)]
pub enum FrameError {
    Eof,
    Io(std::io::Error),
    Invalid(String),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Eof
        } else {
            FrameError::Io(e)
        }
    }
}

const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

/// Reads exactly one LZ4 frame from `r` (never past its end) and decompresses it into
/// `out`, which must come out exactly full. Checksums inside the frame are skipped: the
/// LTX file checksum already covers the decompressed bytes.
pub fn read_lz4_frame<R: Read>(r: &mut R, out: &mut [u8]) -> Result<(), FrameError> {
    let invalid = |m: &str| FrameError::Invalid(m.to_string());
    let mut b4 = [0u8; 4];
    r.read_exact(&mut b4)?;
    if u32::from_le_bytes(b4) != LZ4_FRAME_MAGIC {
        return Err(invalid("missing LZ4 frame magic"));
    }
    let mut fd = [0u8; 2];
    r.read_exact(&mut fd)?;
    let flg = fd[0];
    if flg >> 6 != 0b01 {
        return Err(invalid("unsupported LZ4 frame version"));
    }
    let block_checksum = flg & 0x10 != 0;
    let content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    let dict_id = flg & 0x01 != 0;
    let skip = 1 + if content_size { 8 } else { 0 } + if dict_id { 4 } else { 0 }; // + HC byte
    let mut scratch = [0u8; 13];
    r.read_exact(&mut scratch[..skip])?;
    let mut filled = 0usize;
    let mut block = Vec::new();
    loop {
        r.read_exact(&mut b4)?;
        let word = u32::from_le_bytes(b4);
        if word == 0 {
            break;
        }
        let uncompressed = word & 0x8000_0000 != 0;
        let len = (word & 0x7FFF_FFFF) as usize;
        if len > out.len() + 64 * 1024 {
            return Err(invalid("LZ4 block larger than a page"));
        }
        block.resize(len, 0);
        r.read_exact(&mut block)?;
        if block_checksum {
            r.read_exact(&mut b4)?;
        }
        if uncompressed {
            let end = filled + len;
            if end > out.len() {
                return Err(invalid("LZ4 frame holds more than one page"));
            }
            out[filled..end].copy_from_slice(&block);
            filled = end;
        } else {
            // Blocks may reference earlier output of the same frame: pass it as dictionary.
            let (dict, rest) = out.split_at_mut(filled);
            let n = lz4_flex::block::decompress_into_with_dict(&block, rest, dict)
                .map_err(|e| FrameError::Invalid(format!("LZ4 block: {e}")))?;
            filled += n;
        }
    }
    if content_checksum {
        r.read_exact(&mut b4)?;
    }
    if filled != out.len() {
        return Err(FrameError::Invalid(format!(
            "LZ4 frame decompressed to {filled} bytes, expected {}",
            out.len()
        )));
    }
    Ok(())
}

/// Decompresses one LZ4 block that must fill `out` exactly; the error says why not.
pub fn decompress_block(block: &[u8], out: &mut [u8]) -> Result<(), String> {
    if block.len() > i32::MAX as usize || out.len() > i32::MAX as usize {
        return Err(format!("block of {} bytes is too large", block.len()));
    }
    match lz4::block::decompress_to_buffer(block, Some(out.len() as i32), out) {
        Ok(n) if n == out.len() => Ok(()),
        Ok(n) => Err(format!(
            "decompressed to {n} bytes, page size is {}",
            out.len()
        )),
        Err(_) => Err("corrupt LZ4 block (it does not decompress to one page)".into()),
    }
}

/// Decodes one whole frame (as fetched by a ranged read via the page index) into `out`.
/// Returns the page number. Checks only what a single frame allows; the file checksum
/// needs the whole file.
pub fn decode_frame(frame: &[u8], out: &mut [u8]) -> Result<u32, FrameError> {
    if frame.len() < PAGE_HEADER_SIZE {
        return Err(FrameError::Eof);
    }
    let ph = PageHeader::decode(frame[..PAGE_HEADER_SIZE].try_into().unwrap());
    if ph.pgno == 0 {
        return Err(FrameError::Invalid("frame has page number 0".into()));
    }
    let rest = &frame[PAGE_HEADER_SIZE..];
    match ph.flags {
        PAGE_FLAG_LZ4_BLOCK => {
            if rest.len() < PAGE_SIZE_PREFIX {
                return Err(FrameError::Eof);
            }
            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let payload = &rest[PAGE_SIZE_PREFIX..];
            if payload.len() != n {
                return Err(FrameError::Invalid(format!(
                    "frame holds {} payload bytes, size field says {n}",
                    payload.len()
                )));
            }
            decompress_block(payload, out)
                .map_err(|e| FrameError::Invalid(format!("LZ4 block: {e}")))?;
        }
        0 => read_lz4_frame(&mut &rest[..], out)?,
        f => return Err(FrameError::Invalid(format!("unknown page flags {f:#06x}"))),
    }
    Ok(ph.pgno)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made legacy frame with one uncompressed block, like the one Litestream
    /// 0.5.17 was checked to restore (FLG 0x64, BD 0x40).
    #[test]
    fn reads_uncompressed_lz4_frame() {
        let page: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
        let mut f = vec![0x04, 0x22, 0x4D, 0x18, 0x64, 0x40, 0x00];
        f.extend_from_slice(&(0x8000_0000u32 | 512).to_le_bytes());
        f.extend_from_slice(&page);
        f.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4]);
        f.extend_from_slice(b"next");
        let mut r = &f[..];
        let mut out = vec![0u8; 512];
        read_lz4_frame(&mut r, &mut out).unwrap();
        assert_eq!(out, page);
        assert_eq!(r, b"next", "must not read past the frame");
    }

    #[test]
    fn reads_compressed_lz4_frame() {
        let page = vec![9u8; 1024];
        let block = lz4_flex::block::compress(&page);
        let mut f = vec![0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x00];
        f.extend_from_slice(&(block.len() as u32).to_le_bytes());
        f.extend_from_slice(&block);
        f.extend_from_slice(&[0, 0, 0, 0]);
        let mut out = vec![0u8; 1024];
        read_lz4_frame(&mut &f[..], &mut out).unwrap();
        assert_eq!(out, page);
        assert!(matches!(
            read_lz4_frame(&mut &f[..10], &mut out),
            Err(FrameError::Eof)
        ));
    }

    /// The C decoder refuses, never overruns: a block that decodes short, one that would
    /// decode long, a cut-off block, and arbitrary bytes.
    #[test]
    fn block_decoding_refuses_what_is_not_exactly_one_page() {
        let page: Vec<u8> = (0..4096u32)
            .map(|i| if i % 1000 < 500 { (i * 13) as u8 } else { 0 })
            .collect();
        let block = lz4_flex::block::compress(&page);
        let mut out = vec![0u8; 4096];
        decompress_block(&block, &mut out).unwrap();
        assert_eq!(out, page);

        let mut small = vec![0u8; 4000];
        assert!(
            decompress_block(&block, &mut small).is_err(),
            "too long for the page"
        );
        let mut big = vec![0u8; 8192];
        let e = decompress_block(&block, &mut big).unwrap_err();
        assert!(e.contains("decompressed to 4096 bytes"), "{e}");
        assert!(decompress_block(&block[..block.len() / 2], &mut out).is_err());

        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000 {
            let junk: Vec<u8> = (0..len % 300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decompress_block(&junk, &mut out);
        }
    }
}
