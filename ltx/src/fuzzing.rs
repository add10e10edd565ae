//! The decoder fuzz target's body, shared by `cargo fuzz` (ltx/fuzz) and the stable-Rust
//! corpus replay test, so both exercise exactly the same code.

use crate::format::{Decoder, Encoder};

/// Decodes `data` completely. Must never panic. When the file is valid, re-encoding its
/// pages must give a file that decodes to the same header and pages.
pub fn decode_and_reencode(data: &[u8]) {
    let Ok(mut dec) = Decoder::new(data) else {
        return;
    };
    let h = *dec.header();
    let mut pages = Vec::new();
    let mut buf = vec![0u8; h.page_size as usize];
    loop {
        match dec.next_page(&mut buf) {
            Ok(Some(p)) => pages.push((p, buf.clone())),
            Ok(None) => break,
            Err(_) => return,
        }
        if pages.len() > 4096 {
            return;
        }
    }
    let Ok(trailer) = dec.finish() else { return };
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
}
