//! Encode/decode throughput in MB/s, printed beside a plain file copy of the same bytes
//! measured in the same run (the baseline). `cargo bench -p ltx --bench codec`.
//! Size with `LTX_BENCH_MB` (default 256).

use std::io::{BufReader, BufWriter, Read, Write};
use std::time::Instant;

use ltx::format::{Decoder, Encoder, Header};

fn main() {
    let mb: usize = std::env::var("LTX_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let page_size = 4096usize;
    let pages = mb * 1024 * 1024 / page_size;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let ltx_path = dir.path().join("snap.ltx");

    // Realistic-ish pages: half text-like and compressible, half random.
    {
        let mut w = BufWriter::new(std::fs::File::create(&db).unwrap());
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut page = vec![0u8; page_size];
        for p in 0..pages {
            for (i, b) in page.iter_mut().enumerate() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = if p % 2 == 0 {
                    b"the quick brown fox jumps "[(i + p) % 26]
                } else {
                    x as u8
                };
            }
            w.write_all(&page).unwrap();
        }
        w.flush().unwrap();
    }
    let bytes = (pages * page_size) as f64 / 1e6;

    let copy_s = best_of(3, || {
        let dst = dir.path().join("copy");
        let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(&db).unwrap());
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&dst).unwrap());
        std::io::copy(&mut r, &mut w).unwrap();
        w.flush().unwrap();
    });

    let encode_s = best_of(3, || {
        let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(&db).unwrap());
        let w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&ltx_path).unwrap());
        let mut enc =
            Encoder::new(w, Header::new(page_size as u32, pages as u32, 1, 1, 0)).unwrap();
        let mut page = vec![0u8; page_size];
        for p in 1..=pages as u32 {
            r.read_exact(&mut page).unwrap();
            enc.write_page(p, &page).unwrap();
        }
        enc.finish(None).unwrap();
    });
    let ltx_mb = std::fs::metadata(&ltx_path).unwrap().len() as f64 / 1e6;

    let decode_s = best_of(3, || {
        let r = BufReader::with_capacity(1 << 20, std::fs::File::open(&ltx_path).unwrap());
        let mut w = BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.path().join("out")).unwrap(),
        );
        let mut dec = Decoder::new(r).unwrap();
        let mut page = vec![0u8; page_size];
        while dec.next_page(&mut page).unwrap().is_some() {
            w.write_all(&page).unwrap();
        }
        dec.finish().unwrap();
        w.flush().unwrap();
    });

    println!("LTX codec, {bytes:.0} MB of 4 KiB pages (LTX file {ltx_mb:.0} MB), best of 3:");
    println!("  file copy (baseline) {:>8.0} MB/s", bytes / copy_s);
    println!(
        "  encode               {:>8.0} MB/s  ({:.2}x the copy's time)",
        bytes / encode_s,
        encode_s / copy_s
    );
    println!(
        "  decode + verify      {:>8.0} MB/s  ({:.2}x the copy's time)",
        bytes / decode_s,
        decode_s / copy_s
    );
}

fn best_of(n: usize, mut f: impl FnMut()) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}
