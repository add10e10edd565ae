//! Compaction and retention, Litestream-compatible: L0 files (one per sync) are merged
//! into L1 files; periodic full snapshots go to L9 as `1-<TXID>`; old files are deleted
//! once something newer covers them, so a bucket does not grow without bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::format::{Decoder, Encoder, Header, LtxError};
use crate::replica::{LtxFileInfo, LtxKey, Replica, ReplicaError, SNAPSHOT_LEVEL};
use crate::restore::{restore, RestoreError, RestoreOptions, Target};

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("{path}: {source}")]
    Ltx { path: String, source: LtxError },
    #[error("files to compact are not contiguous: {0} then {1}")]
    NotContiguous(LtxKey, LtxKey),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "snapshot skipped: it needs about {} MiB free in {dir} (the files it is built from, \
         the restored database and its LTX file, plus {} MiB kept for the write buffer), \
         {} MiB are free",
        needed >> 20, reserve >> 20, free >> 20
    )]
    NoSpace {
        dir: String,
        needed: u64,
        reserve: u64,
        free: u64,
    },
}

/// Local disk a snapshot may use: the database's size, and what must stay free for the
/// write buffer that shares the volume (a snapshot never takes the space commits need).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSpace {
    pub db_bytes: u64,
    pub reserve: u64,
}

/// Merges contiguous files (oldest first) into one file at `level`: the newest version
/// of every page, pages beyond the final size dropped, NoChecksum like Litestream.
/// Holds the merged pages in memory (fine for L0→L1; large levels want a streaming merge).
pub async fn merge(
    replica: &Replica,
    files: &[LtxFileInfo],
    level: u8,
) -> Result<Option<LtxFileInfo>, CompactError> {
    let Some(first) = files.first() else {
        return Ok(None);
    };
    for w in files.windows(2) {
        if !w[1].key.extends(w[0].key.max_txid) {
            return Err(CompactError::NotContiguous(w[0].key, w[1].key));
        }
    }
    let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut last: Option<Header> = None;
    for f in files {
        let path = replica.path_of(&f.key);
        let bytes = replica.read(&f.key).await?;
        let ltx = |source| CompactError::Ltx {
            path: path.clone(),
            source,
        };
        let mut dec = Decoder::new(&bytes[..]).map_err(ltx)?;
        let h = *dec.header();
        let mut buf = vec![0u8; h.page_size as usize];
        while let Some(p) = dec.next_page(&mut buf).map_err(ltx)? {
            pages.insert(p, buf.clone());
        }
        dec.finish().map_err(ltx)?;
        pages.retain(|&p, _| p <= h.commit);
        last = Some(h);
    }
    let last = last.expect("at least one file");
    let key = LtxKey::new(level, first.key.min_txid, last.max_txid);
    let h = Header::new(
        last.page_size,
        last.commit,
        first.key.min_txid,
        last.max_txid,
        last.timestamp_ms,
    );
    let mut enc = Encoder::new(Vec::new(), h).map_err(|source| CompactError::Ltx {
        path: key.to_string(),
        source,
    })?;
    for (p, d) in &pages {
        enc.write_db_page(*p, d)
            .map_err(|source| CompactError::Ltx {
                path: key.to_string(),
                source,
            })?;
    }
    let (bytes, _) = enc.finish(None).map_err(|source| CompactError::Ltx {
        path: key.to_string(),
        source,
    })?;
    let size = bytes.len() as u64;
    match replica
        .write(&key, Bytes::from(bytes), last.timestamp_ms, true)
        .await
    {
        Ok(()) | Err(ReplicaError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let created_at =
        SystemTime::UNIX_EPOCH + Duration::from_millis(last.timestamp_ms.max(0) as u64);
    tracing::info!(file = %key, inputs = files.len(), "compacted");
    Ok(Some(LtxFileInfo {
        key,
        size,
        created_at,
    }))
}

/// Compacts every L0 file newer than the newest L1 file into one L1 file.
pub async fn compact_l0(replica: &Replica) -> Result<Option<LtxFileInfo>, CompactError> {
    let l1_max = replica
        .list_level(1)
        .await?
        .iter()
        .map(|f| f.key.max_txid)
        .max()
        .unwrap_or(0);
    let l0: Vec<LtxFileInfo> = replica
        .list_level(0)
        .await?
        .into_iter()
        .filter(|f| f.key.min_txid > l1_max)
        .collect();
    match l0.first() {
        Some(f) if f.key.min_txid == l1_max + 1 => merge(replica, &l0, 1).await,
        _ => Ok(None),
    }
}

/// Writes a full snapshot of the database at `txid` to L9 as `1-<txid>`. It is built in
/// `work_dir` (a restore, then its encoding), which is removed afterwards, also on
/// failure; it is not started when the volume lacks the room `space` says it needs.
pub async fn snapshot(
    replica: &Replica,
    txid: u64,
    work_dir: &Path,
    space: SnapshotSpace,
) -> Result<LtxKey, CompactError> {
    std::fs::create_dir_all(work_dir)?;
    let res = build_snapshot(replica, txid, work_dir, space).await;
    let _ = std::fs::remove_dir_all(work_dir);
    res
}

async fn build_snapshot(
    replica: &Replica,
    txid: u64,
    work_dir: &Path,
    space: SnapshotSpace,
) -> Result<LtxKey, CompactError> {
    let files = crate::restore::plan(&replica.list_all().await?, Target::Txid(txid))
        .map_err(RestoreError::from)?;
    let needed = files.iter().map(|f| f.size).sum::<u64>() + 2 * space.db_bytes + space.reserve;
    let free = free_bytes(work_dir)?;
    if free < needed {
        return Err(CompactError::NoSpace {
            dir: work_dir.display().to_string(),
            needed,
            reserve: space.reserve,
            free,
        });
    }
    let db = work_dir.join(format!("snapshot-{txid}.db"));
    let opts = RestoreOptions {
        target: Target::Txid(txid),
        force: true,
        ..Default::default()
    };
    restore(replica, &db, &opts).await?;
    let ltx_path = work_dir.join(format!("snapshot-{txid}.ltx"));
    let now = jiff::Timestamp::now().as_millisecond();
    let key = LtxKey::new(SNAPSHOT_LEVEL, 1, txid);
    {
        let f = std::io::BufWriter::new(std::fs::File::create(&ltx_path)?);
        crate::dbfile::encode_db(&db, 1, txid, now, f).map_err(|source| CompactError::Ltx {
            path: key.to_string(),
            source,
        })?;
    }
    let res = replica.write_file(&key, &ltx_path, now, true).await;
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(&ltx_path);
    match res {
        Ok(()) | Err(ReplicaError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(file = %key, "snapshot written");
    Ok(key)
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: all-zero is a valid `statvfs` (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// How long files stay after something newer covers them.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// L0 files covered by L1 are deleted once older than this (Litestream: 5 minutes),
    /// which gives read replicas time to move on. The newest L0 file is always kept.
    pub l0: Duration,
    /// Snapshots older than this are deleted; the newest is always kept.
    pub snapshots: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            l0: Duration::from_secs(300),
            snapshots: Duration::from_secs(24 * 3600),
        }
    }
}

/// Deletes what retention allows. Returns the number of files deleted.
pub async fn enforce_retention(replica: &Replica, r: Retention) -> Result<usize, CompactError> {
    let now = SystemTime::now();
    let old = |f: &LtxFileInfo, keep: Duration| {
        now.duration_since(f.created_at).is_ok_and(|age| age > keep)
    };
    let mut deleted = 0;
    let l1_max = replica
        .list_level(1)
        .await?
        .iter()
        .map(|f| f.key.max_txid)
        .max()
        .unwrap_or(0);
    let l0 = replica.list_level(0).await?;
    let newest_l0 = l0.iter().map(|f| f.key.max_txid).max();
    for f in &l0 {
        if f.key.max_txid <= l1_max && Some(f.key.max_txid) != newest_l0 && old(f, r.l0) {
            replica.delete(&f.key).await?;
            deleted += 1;
        }
    }
    let snaps = replica.list_level(SNAPSHOT_LEVEL).await?;
    let newest_snap = snaps.iter().map(|f| f.key.max_txid).max();
    let mut kept_min: Option<u64> = None;
    for f in &snaps {
        if Some(f.key.max_txid) != newest_snap && old(f, r.snapshots) {
            replica.delete(&f.key).await?;
            deleted += 1;
        } else {
            kept_min = Some(kept_min.map_or(f.key.max_txid, |m: u64| m.min(f.key.max_txid)));
        }
    }
    // Compacted files entirely below the oldest kept snapshot are never needed again;
    // keep at least the newest file of each level.
    if let Some(floor) = kept_min {
        for level in 1..SNAPSHOT_LEVEL {
            let files = replica.list_level(level).await?;
            let newest = files.iter().map(|f| f.key.max_txid).max();
            for f in &files {
                if f.key.max_txid < floor && Some(f.key.max_txid) != newest {
                    replica.delete(&f.key).await?;
                    deleted += 1;
                }
            }
        }
    }
    Ok(deleted)
}
