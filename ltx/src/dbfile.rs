//! Encoding plain SQLite database files as LTX: a full snapshot, or the pages that
//! differ between two versions. Used to seed a replica from an existing database.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use crate::format::{lock_pgno, Encoder, Header, LtxError, Trailer, Txid};

/// Page size and page count of a database file, from its header.
pub fn db_geometry(path: &Path) -> Result<(u32, u32), LtxError> {
    let mut f = File::open(path)?;
    let mut h = [0u8; 100];
    f.read_exact(&mut h).map_err(|_| {
        LtxError::InvalidHeader(format!("{} is not a SQLite database", path.display()))
    })?;
    if &h[0..16] != b"SQLite format 3\0" {
        return Err(LtxError::InvalidHeader(format!(
            "{} is not a SQLite database",
            path.display()
        )));
    }
    let raw = u16::from_be_bytes([h[16], h[17]]) as u32;
    let page_size = if raw == 1 { 65536 } else { raw };
    let len = f.metadata()?.len();
    if len % page_size as u64 != 0 {
        return Err(LtxError::InvalidHeader(format!(
            "{} is {len} bytes, not a whole number of {page_size}-byte pages",
            path.display()
        )));
    }
    Ok((page_size, (len / page_size as u64) as u32))
}

/// Writes every page of `db` as one LTX file covering `min..=max` (min 1 = snapshot).
pub fn encode_db<W: Write>(
    db: &Path,
    min: Txid,
    max: Txid,
    timestamp_ms: i64,
    out: W,
) -> Result<(W, Trailer), LtxError> {
    let (page_size, commit) = db_geometry(db)?;
    let mut enc = Encoder::new(out, Header::new(page_size, commit, min, max, timestamp_ms))?;
    let mut r = BufReader::with_capacity(1 << 20, File::open(db)?);
    let mut page = vec![0u8; page_size as usize];
    for pgno in 1..=commit {
        r.read_exact(&mut page)?;
        enc.write_db_page(pgno, &page)?;
    }
    enc.finish(None)
}

/// Writes the pages of `new` that differ from `old` (plus pages `old` lacks) as one
/// incremental LTX file covering `min..=max`. Returns `None` when nothing changed.
pub fn encode_db_diff<W: Write>(
    old: &Path,
    new: &Path,
    min: Txid,
    max: Txid,
    timestamp_ms: i64,
    out: W,
) -> Result<Option<(W, Trailer)>, LtxError> {
    let (page_size, commit) = db_geometry(new)?;
    let (old_size, old_commit) = db_geometry(old)?;
    if old_size != page_size {
        return Err(LtxError::Encode(format!(
            "page size changed from {old_size} to {page_size}"
        )));
    }
    let mut rn = BufReader::with_capacity(1 << 20, File::open(new)?);
    let mut ro = BufReader::with_capacity(1 << 20, File::open(old)?);
    let (mut a, mut b) = (vec![0u8; page_size as usize], vec![0u8; page_size as usize]);
    let lock = lock_pgno(page_size);
    let mut enc: Option<Encoder<W>> = None;
    let mut out = Some(out);
    for pgno in 1..=commit {
        rn.read_exact(&mut a)?;
        let same = pgno <= old_commit && {
            ro.read_exact(&mut b)?;
            a == b
        };
        if same || pgno == lock {
            continue;
        }
        if enc.is_none() {
            enc = Some(Encoder::new(
                out.take().unwrap(),
                Header::new(page_size, commit, min, max, timestamp_ms),
            )?);
        }
        enc.as_mut().unwrap().write_page(pgno, &a)?;
    }
    match enc {
        Some(e) => e.finish(None).map(Some),
        None if commit != old_commit => {
            // Only a shrink: an LTX file with no pages still records the new size.
            let e = Encoder::new(
                out.take().unwrap(),
                Header::new(page_size, commit, min, max, timestamp_ms),
            )?;
            e.finish(None).map(Some)
        }
        None => Ok(None),
    }
}
