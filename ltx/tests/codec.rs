//! Round-trip properties and corruption handling of the LTX codec.

use ltx::format::{Decoder, Encoder, Header, LtxError, Section, FLAG_NO_CHECKSUM};
use proptest::prelude::*;

/// Encodes `pages` (pgno, fill pattern seed) into a file.
fn encode(h: Header, pages: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new(), h).unwrap();
    for (pgno, data) in pages {
        enc.write_page(*pgno, data).unwrap();
    }
    enc.finish(None).unwrap().0
}

type Pages = Vec<(u32, Vec<u8>)>;

fn decode(bytes: &[u8]) -> Result<(Header, Pages), LtxError> {
    let mut dec = Decoder::new(bytes)?;
    let h = *dec.header();
    let mut out = Vec::new();
    let mut buf = vec![0u8; h.page_size as usize];
    while let Some(p) = dec.next_page(&mut buf)? {
        out.push((p, buf.clone()));
    }
    dec.finish()?;
    Ok((h, out))
}

fn page(page_size: u32, seed: u8, compressible: bool) -> Vec<u8> {
    (0..page_size)
        .map(|i| {
            if compressible {
                seed.wrapping_add((i / 64) as u8)
            } else {
                (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed
            }
        })
        .collect()
}

fn sample() -> Vec<u8> {
    let pages: Vec<_> = (1..=8)
        .map(|p| (p, page(4096, p as u8, p % 2 == 0)))
        .collect();
    encode(Header::new(4096, 8, 1, 3, 1_700_000_000_000), &pages)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any ascending page set at any page size and TXID range survives a round trip,
    /// snapshots and incrementals, with and without database checksums.
    #[test]
    fn round_trip(
        size_exp in 9u32..=16,
        pgnos in proptest::collection::btree_set(1u32..200, 1..40),
        min in 2u64..1000,
        span in 0u64..10,
        seed in any::<u8>(),
        compressible in any::<bool>(),
        snapshot in any::<bool>(),
        checksummed in any::<bool>(),
    ) {
        let page_size = 1u32 << size_exp;
        let (h, pages) = if snapshot {
            let n = *pgnos.iter().max().unwrap();
            let mut h = Header::new(page_size, n, 1, span + 1, 42);
            if checksummed { h.flags = 0; }
            (h, (1..=n).map(|p| (p, page(page_size, seed ^ p as u8, compressible))).collect::<Vec<_>>())
        } else {
            let commit = *pgnos.iter().max().unwrap() + 3;
            let mut h = Header::new(page_size, commit, min, min + span, -5);
            if checksummed { h.flags = 0; h.pre_apply_checksum = (1 << 63) | 77; }
            (h, pgnos.iter().map(|&p| (p, page(page_size, seed ^ p as u8, compressible))).collect())
        };
        let bytes = if checksummed && !snapshot {
            let mut enc = Encoder::new(Vec::new(), h).unwrap();
            for (p, d) in &pages { enc.write_page(*p, d).unwrap(); }
            enc.finish(Some((1 << 63) | 99)).unwrap().0
        } else {
            encode(h, &pages)
        };
        let (h2, pages2) = decode(&bytes).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(pages2, pages);
    }

    /// Truncating anywhere is an error, never a panic.
    #[test]
    fn every_truncation_is_an_error(cut in 0usize..1000) {
        let b = sample();
        let cut = cut * b.len() / 1000;
        prop_assert!(decode(&b[..cut]).is_err());
    }

    /// Flipping any single bit never yields different data silently: the file is rejected,
    /// or (a flip inside compressed bytes that decompress to the same page, e.g. a match
    /// offset within a run — the checksum covers decompressed pages) it decodes to exactly
    /// the original pages.
    #[test]
    fn every_bit_flip_is_detected(pos in 0usize..100_000, bit in 0u8..8) {
        let orig = sample();
        let mut b = orig.clone();
        let pos = pos % b.len();
        b[pos] ^= 1 << bit;
        if let Ok(got) = decode(&b) {
            prop_assert!(got == decode(&orig).unwrap(), "flip at byte {} bit {} changed the data unnoticed", pos, bit);
            prop_assert!(pos >= 110, "flip at byte {} bit {} in the header or first frame header went unnoticed", pos, bit);
        }
    }
}

#[test]
fn truncated_file_names_the_section() {
    let b = sample();
    match decode(&b[..50]) {
        Err(LtxError::Truncated {
            section: Section::Header,
            offset: 50,
        }) => {}
        other => panic!("{other:?}"),
    }
    match decode(&b[..b.len() - 3]) {
        Err(LtxError::Truncated {
            section: Section::Trailer,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let e = decode(&b[..300]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("truncated LTX file: unexpected end of file in the page"),
        "{e}"
    );
}

#[test]
fn wrong_file_checksum_is_reported_as_such() {
    let mut b = sample();
    let n = b.len();
    b[n - 1] ^= 0x10;
    match decode(&b) {
        Err(LtxError::FileChecksumMismatch { stored, computed }) => assert_ne!(stored, computed),
        other => panic!("{other:?}"),
    }
}

#[test]
fn flipped_page_byte_is_a_checksum_or_decompress_error() {
    // A literal byte inside page 1's LZ4 payload: decompresses fine, but to other data.
    let mut b = sample();
    b[100 + 10 + 40] ^= 0x01;
    let e = decode(&b).unwrap_err();
    assert!(
        matches!(
            e,
            LtxError::FileChecksumMismatch { .. } | LtxError::Decompress { pgno: 1, .. }
        ),
        "{e:?}"
    );
    // The page header's pgno: order/range violation at a known offset.
    let mut b = sample();
    b[103] = 0x09;
    assert!(matches!(
        decode(&b).unwrap_err(),
        LtxError::InvalidPage { offset: 100, .. }
    ));
}

#[test]
fn distinct_messages() {
    let b = sample();
    let mut flipped = b.clone();
    let n = flipped.len();
    flipped[n - 1] ^= 1;
    let mut magic = b.clone();
    magic[0] = b'X';
    let msgs = [
        decode(&b[..b.len() / 2]).unwrap_err().to_string(),
        decode(&flipped).unwrap_err().to_string(),
        decode(&magic).unwrap_err().to_string(),
    ];
    assert!(msgs[0].contains("truncated"), "{}", msgs[0]);
    assert!(msgs[1].contains("file checksum mismatch"), "{}", msgs[1]);
    assert!(msgs[2].contains("not an LTX file"), "{}", msgs[2]);
}

#[test]
fn trailing_garbage_is_rejected() {
    let mut b = sample();
    b.extend_from_slice(b"junk");
    assert!(matches!(decode(&b), Err(LtxError::TrailingData(4))));
}

#[test]
fn snapshot_must_be_complete() {
    let mut enc = Encoder::new(Vec::new(), Header::new(512, 3, 1, 1, 0)).unwrap();
    enc.write_page(1, &[0u8; 512]).unwrap();
    assert!(matches!(
        enc.write_page(3, &[0u8; 512]),
        Err(LtxError::Encode(_))
    ));
    let e = enc.finish(None).unwrap_err();
    assert!(e.to_string().contains("snapshot ends at page 1"), "{e}");
}

#[test]
fn checksummed_snapshot_verifies_post_apply() {
    let mut h = Header::new(512, 2, 1, 1, 0);
    h.flags = 0;
    let mut enc = Encoder::new(Vec::new(), h).unwrap();
    enc.write_page(1, &[1u8; 512]).unwrap();
    enc.write_page(2, &[2u8; 512]).unwrap();
    let (mut b, t) = enc.finish(None).unwrap();
    assert!(decode(&b).is_ok());
    // Corrupt the post-apply value and fix up the file checksum: only the DB checksum is wrong.
    let n = b.len();
    let bad = t.post_apply_checksum ^ 4;
    b[n - 16..n - 8].copy_from_slice(&bad.to_be_bytes());
    // Recompute the file CRC (pages decompressed) so only the DB checksum is wrong.
    let mut hasher = ltx::format::checksum::FileHasher::new();
    let (_, pages) = decode_ignoring_checksums(&b);
    hasher.update(&b[..100]);
    let mut off = 100;
    for (_, data) in &pages {
        let sz = u32::from_be_bytes(b[off + 6..off + 10].try_into().unwrap()) as usize;
        hasher.update(&b[off..off + 10]);
        hasher.update(data);
        off += 10 + sz;
    }
    hasher.update(&b[off..n - 8]);
    let fc = hasher.finish();
    b[n - 8..].copy_from_slice(&fc.to_be_bytes());
    assert!(
        matches!(decode(&b), Err(LtxError::PostApplyChecksumMismatch { .. })),
        "{:?}",
        decode(&b)
    );
    assert_eq!(FLAG_NO_CHECKSUM, 2);
}

fn decode_ignoring_checksums(b: &[u8]) -> (Header, Pages) {
    let mut dec = Decoder::new(b).unwrap();
    let h = *dec.header();
    let mut out = Vec::new();
    let mut buf = vec![0u8; h.page_size as usize];
    while let Some(p) = dec.next_page(&mut buf).unwrap() {
        out.push((p, buf.clone()));
    }
    (h, out)
}

#[test]
fn lock_page_is_skipped_in_snapshots() {
    // 64 KiB pages put the lock page at 16385: a 16386-page snapshot skips it.
    let ps = 65536u32;
    let lock = ltx::format::lock_pgno(ps);
    assert_eq!(lock, 16385);
    let zero = vec![0u8; ps as usize];
    let mut enc = Encoder::new(Vec::new(), Header::new(ps, lock + 1, 1, 1, 0)).unwrap();
    for p in 1..lock {
        enc.write_page(p, &zero).unwrap();
    }
    assert!(
        enc.write_page(lock, &zero).is_err(),
        "lock page must be refused"
    );
    enc.write_page(lock + 1, &zero).unwrap();
    let (b, _) = enc.finish(None).unwrap();
    let (h, pages) = decode_ignoring_checksums(&b);
    assert_eq!(h.commit, lock + 1);
    assert_eq!(pages.len() as u32, lock);
    assert!(pages.iter().all(|(p, _)| *p != lock));
    decode(&b).unwrap();
}
