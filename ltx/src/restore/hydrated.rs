//! The record beside a hydrated local copy: `<db>.meta` holds the TXID the copy was
//! restored to (decimal and a newline), the convention of Litestream's
//! `<hydration_path>.meta`. `hydrator init` writes it after a blocking hydration, and the
//! VFS reads it to reuse a copy instead of downloading the database again. The record is
//! removed before the copy changes and written back only once the copy is complete and
//! synced, so a record always describes the bytes beside it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::format::Txid;

/// `<db>.meta`.
pub fn meta_path(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.meta", db.display()))
}

/// The TXID a copy at `db` holds, when both the copy and a readable record exist.
pub fn read_meta(db: &Path) -> Option<Txid> {
    if !db.exists() {
        return None;
    }
    std::fs::read_to_string(meta_path(db))
        .ok()
        .and_then(|s| s.trim().parse::<Txid>().ok())
}

/// Records that `db` holds `txid` (atomically: a temp file renamed over the record).
pub fn write_meta(db: &Path, txid: Txid) -> std::io::Result<()> {
    let meta = meta_path(db);
    let tmp = PathBuf::from(format!("{}.tmp-{}", meta.display(), std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{txid}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &meta)
}

/// Forgets the record: the copy is about to change.
pub fn clear_meta(db: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(meta_path(db)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_needs_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        write_meta(&db, 42).unwrap();
        assert_eq!(read_meta(&db), None, "no copy beside the record");
        std::fs::write(&db, b"x").unwrap();
        assert_eq!(read_meta(&db), Some(42));
        clear_meta(&db).unwrap();
        clear_meta(&db).unwrap();
        assert_eq!(read_meta(&db), None);
    }
}
