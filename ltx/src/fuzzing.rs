//! The decoder fuzz target's body, shared by `cargo fuzz` (ltx/fuzz) and the stable-Rust
//! corpus replay test, so both exercise exactly the same code.

use crate::format::{Decoder, Encoder, LtxError};

/// How a fuzz input ended.
#[derive(Debug)]
pub enum Decoded {
    /// A valid file: this many pages, and it re-encoded to the same content.
    Valid { pages: usize },
    /// Refused with a typed error (the right answer for a corrupt input).
    Rejected(LtxError),
    /// Valid so far but larger than the fuzz target follows (not checked further).
    TooLarge,
}

/// Decodes `data` completely. Must never panic. When the file is valid, re-encoding its
/// pages must give a file that decodes to the same header and pages. The fuzz target
/// ignores the result; the corpus test requires `Valid` for every real file.
pub fn decode_and_reencode(data: &[u8]) -> Decoded {
    let mut dec = match Decoder::new(data) {
        Ok(d) => d,
        Err(e) => return Decoded::Rejected(e),
    };
    let h = *dec.header();
    let mut pages = Vec::new();
    let mut buf = vec![0u8; h.page_size as usize];
    loop {
        match dec.next_page(&mut buf) {
            Ok(Some(p)) => pages.push((p, buf.clone())),
            Ok(None) => break,
            Err(e) => return Decoded::Rejected(e),
        }
        if pages.len() > 4096 {
            return Decoded::TooLarge;
        }
    }
    let trailer = match dec.finish() {
        Ok(t) => t,
        Err(e) => return Decoded::Rejected(e),
    };
    let mut enc = Encoder::new(Vec::new(), h).expect("a decoded header is valid");
    for (p, d) in &pages {
        enc.write_page(*p, d).expect("decoded pages re-encode");
    }
    let post = (!h.is_snapshot() || !h.has_checksums()).then_some(trailer.post_apply_checksum);
    // The file checksum covers each frame's compressed size, which depends on the
    // compressor, so only the decoded content is compared.
    let (again, t2) = enc.finish(post).expect("re-encode finishes");
    assert_eq!(t2.post_apply_checksum, trailer.post_apply_checksum);
    let mut dec = Decoder::new(&again[..]).unwrap();
    for (p, d) in &pages {
        assert_eq!(dec.next_page(&mut buf).unwrap(), Some(*p));
        assert_eq!(&buf, d);
    }
    assert_eq!(dec.next_page(&mut buf).unwrap(), None);
    dec.finish().unwrap();
    Decoded::Valid { pages: pages.len() }
}
