//! Stable-Rust stand-in for `cargo fuzz run decode`: replays the seed corpus (real
//! Litestream 0.5.17 files) and a bounded, seeded stream of mutations of it through the
//! same target body. Any panic fails the test, printing the seed that caused it.

use ltx::format::{Encoder, Header};
use ltx::fuzzing::Decoded;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    assert!(out.len() >= 5, "seed corpus missing from {}", dir.display());
    // Our own encoder's output, including a checksummed snapshot.
    let mut h = Header::new(512, 3, 1, 2, 7);
    h.flags = 0;
    let mut enc = Encoder::new(Vec::new(), h).unwrap();
    for p in 1..=3u8 {
        enc.write_page(p as u32, &[p; 512]).unwrap();
    }
    out.push(("our encoder".into(), enc.finish(None).unwrap().0));
    out
}

/// Every seed is a valid file (real Litestream output and ours): each must decode fully,
/// with pages, and re-encode to the same content. A decoder that rejected everything
/// would fail here, not pass.
#[test]
fn corpus_decodes_and_reencodes() {
    for (name, c) in corpus() {
        match ltx::fuzzing::decode_and_reencode(&c) {
            Decoded::Valid { pages } => assert!(pages > 0, "{name}: no pages"),
            other => panic!("{name}: a valid seed did not decode: {other:?}"),
        }
    }
}

#[test]
fn mutations_never_panic() {
    let seeds = corpus();
    let mut rng = StdRng::seed_from_u64(0x17c5);
    for round in 0..20_000u32 {
        let mut b = seeds[round as usize % seeds.len()].1.clone();
        for _ in 0..rng.random_range(1..=4) {
            match rng.random_range(0..5) {
                0 => {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
                1 => {
                    let i = rng.random_range(0..b.len());
                    b[i] = rng.random();
                }
                2 => b.truncate(rng.random_range(0..b.len().max(1))),
                3 => {
                    let i = rng.random_range(0..=b.len());
                    let extra: Vec<u8> =
                        (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                    b.splice(i..i, extra);
                }
                _ => {
                    // Interesting integers in big-endian fields.
                    if b.len() >= 8 {
                        let i = rng.random_range(0..b.len() - 4);
                        let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x4000_0000, 512]
                            [rng.random_range(0..6)];
                        b[i..i + 4].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
            if b.is_empty() {
                break;
            }
        }
        let r = std::panic::catch_unwind(|| ltx::fuzzing::decode_and_reencode(&b));
        assert!(
            r.is_ok(),
            "panic on mutation round {round}; input {:02x?}",
            &b[..b.len().min(256)]
        );
    }
}
