//! LTX files for the replica tests.
#![allow(dead_code)]

use bytes::Bytes;
use ltx::format::{Encoder, Header};

/// Page `pgno`'s bytes: different for every page, the same on every call.
pub fn page(pgno: u32, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (pgno as usize * 31 + i / 7) as u8)
        .collect()
}

/// An LTX file of `pages` pages of `page_size` bytes covering TXIDs `min..=max`.
pub fn file_with(pages: u32, page_size: u32, min: u64, max: u64, ts: i64) -> Bytes {
    let mut enc = Encoder::new(Vec::new(), Header::new(page_size, pages, min, max, ts)).unwrap();
    for p in 1..=pages {
        enc.write_page(p, &page(p, page_size as usize)).unwrap();
    }
    Bytes::from(enc.finish(None).unwrap().0)
}
