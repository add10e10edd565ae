#![no_main]
//! `cargo fuzz run decode` (from ltx/): feeds arbitrary bytes to the LTX decoder.
//! Seed corpus: ltx/fuzz/corpus/decode (real Litestream 0.5.17 files and ours).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ltx::fuzzing::decode_and_reencode(data);
});
