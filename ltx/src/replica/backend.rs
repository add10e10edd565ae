//! Where replica objects live, and the operations whose spelling differs by place (as
//! Litestream has a `file` replica client beside its object-store clients). Reads,
//! listings and deletes go through opendal for both; publishing and timestamps do not:
//!
//! - [`Backend::Files`], a local directory: create-only by `link(2)` (atomic, where a
//!   check-then-rename is not), the creation time as the file's mtime (Litestream reads it
//!   back for `-timestamp` restores), and listings carry no reliable times (stat each);
//! - [`Backend::Objects`], S3, GCS or Azure: create-only by a conditional PUT (opendal's
//!   `if_not_exists`: `If-None-Match: *` on S3 and Azure, `ifGenerationMatch=0` on GCS), the
//!   creation time as `litestream-timestamp` metadata, large files in parts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use opendal::Operator;

use super::error::{ReplicaError, Result};

/// Files larger than this go to object stores in parts.
const MULTIPART_OVER: u64 = 16 * 1024 * 1024;
const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Files {
        root: PathBuf,
    },
    /// `timestamp_key`: the metadata name of the creation time, as Litestream spells it
    /// for this store (Azure metadata names cannot contain a hyphen).
    Objects {
        timestamp_key: &'static str,
    },
}

/// The creation-time metadata name on S3 and GCS.
pub(crate) const TIMESTAMP_METADATA: &str = "litestream-timestamp";
/// ... and on Azure, whose metadata names must be C# identifiers.
pub(crate) const TIMESTAMP_METADATA_AZURE: &str = "litestreamtimestamp";

/// How a create-only write ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Put {
    Created,
    /// The name was already taken (by anyone, including an earlier attempt of ours).
    Taken,
}

impl Backend {
    /// True when a listing's entries carry the times restores need (object stores); a
    /// directory listing through opendal does not, so each entry is stat'ed.
    pub fn listing_has_times(&self) -> bool {
        matches!(self, Backend::Objects { .. })
    }

    /// True when the creation time Litestream uses is in the object's metadata.
    /// The metadata name the creation time is kept under (object stores only).
    pub fn timestamp_key(&self) -> Option<&'static str> {
        match self {
            Backend::Objects { timestamp_key } => Some(timestamp_key),
            Backend::Files { .. } => None,
        }
    }

    /// Writes `data` at `path` (relative to the replica root). `timestamp_ms` becomes the
    /// creation time (mtime or metadata); with `create_only` an existing name is never
    /// replaced.
    pub async fn put(
        &self,
        op: &Operator,
        path: &str,
        data: Bytes,
        timestamp_ms: Option<i64>,
        create_only: bool,
    ) -> Result<Put> {
        match self {
            Backend::Files { root } => {
                let dest = root.join(path);
                let d = dest.clone();
                let res = tokio::task::spawn_blocking(move || {
                    write_local(&d, &data, timestamp_ms, create_only)
                })
                .await
                .map_err(|e| ReplicaError::io(&dest, std::io::Error::other(e)))?;
                match res {
                    Ok(()) => Ok(Put::Created),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Put::Taken),
                    Err(e) => Err(ReplicaError::io(&dest, e)),
                }
            }
            Backend::Objects { timestamp_key } => {
                let mut w = op.write_with(path, data).if_not_exists(create_only);
                if let Some(ts) = timestamp_ms {
                    w = w.user_metadata(timestamp_metadata(timestamp_key, ts));
                }
                match w.await {
                    Ok(_) => Ok(Put::Created),
                    Err(e) if is_taken(&e) => Ok(Put::Taken),
                    Err(e) => Err(ReplicaError::store(path, e)),
                }
            }
        }
    }

    /// Writes the local file `src` at `path`, streamed in parts to object stores.
    pub async fn put_file(
        &self,
        op: &Operator,
        path: &str,
        src: &Path,
        timestamp_ms: i64,
        create_only: bool,
    ) -> Result<Put> {
        let size = tokio::fs::metadata(src)
            .await
            .map_err(|e| ReplicaError::io(src, e))?
            .len();
        // Files, and small objects, in one write.
        let timestamp_key = match self {
            Backend::Objects { timestamp_key } if size > MULTIPART_OVER => *timestamp_key,
            _ => {
                let data = tokio::fs::read(src)
                    .await
                    .map_err(|e| ReplicaError::io(src, e))?;
                return self
                    .put(op, path, Bytes::from(data), Some(timestamp_ms), create_only)
                    .await;
            }
        };
        let mut w = op
            .writer_with(path)
            .chunk(PART_SIZE)
            .concurrent(4)
            .if_not_exists(create_only)
            .user_metadata(timestamp_metadata(timestamp_key, timestamp_ms))
            .await
            .map_err(|e| ReplicaError::store(path, e))?;
        let mut f = tokio::fs::File::open(src)
            .await
            .map_err(|e| ReplicaError::io(src, e))?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf)
                .await
                .map_err(|e| ReplicaError::io(src, e))?;
            if n == 0 {
                break;
            }
            w.write(Bytes::copy_from_slice(&buf[..n]))
                .await
                .map_err(|e| ReplicaError::store(path, e))?;
        }
        match w.close().await {
            Ok(_) => Ok(Put::Created),
            Err(e) if is_taken(&e) => Ok(Put::Taken),
            Err(e) => Err(ReplicaError::store(path, e)),
        }
    }
}

/// The `litestream-timestamp` metadata Litestream puts on every object (RFC 3339, ms).
fn timestamp_metadata(key: &str, timestamp_ms: i64) -> [(String, String); 1] {
    let ts = jiff::Timestamp::from_millisecond(timestamp_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    [(key.to_string(), format!("{ts:.3}"))]
}

/// A create-only write found the name taken.
fn is_taken(e: &opendal::Error) -> bool {
    matches!(
        e.kind(),
        opendal::ErrorKind::ConditionNotMatch | opendal::ErrorKind::AlreadyExists
    )
}

/// A temp-file name no other writer can share: the process id alone is not enough (two
/// pods publishing to one shared directory can both be PID 1 in their containers).
fn temp_name(name: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let salt = nanos
        ^ (std::process::id() as u64).rotate_left(32)
        ^ SEQ.fetch_add(1, Ordering::Relaxed).rotate_left(48);
    format!(".{name}.{}.{salt:016x}.tmp", std::process::id())
}

/// Writes `data` to `dest` atomically: a temp file in the same directory, fsync, mtime
/// set to the timestamp, then `link` (create-only) or `rename`, then the directory fsync.
/// Returns `AlreadyExists` when create-only finds the name taken.
fn write_local(
    dest: &Path,
    data: &[u8],
    timestamp_ms: Option<i64>,
    create_only: bool,
) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Err(std::io::Error::other(format!(
            "{} is not a file path",
            dest.display()
        )));
    };
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(temp_name(&name.to_string_lossy()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        if let Some(ts) = timestamp_ms {
            let mtime = filetime::FileTime::from_unix_time(
                ts.div_euclid(1000),
                (ts.rem_euclid(1000) * 1_000_000) as u32,
            );
            filetime::set_file_mtime(&tmp, mtime)?;
        }
        if create_only {
            std::fs::hard_link(&tmp, dest)?;
            std::fs::remove_file(&tmp)?;
        } else {
            std::fs::rename(&tmp, dest)?;
        }
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_differ_within_one_process() {
        let a = temp_name("x.ltx");
        let b = temp_name("x.ltx");
        assert_ne!(a, b);
        assert!(a.starts_with(".x.ltx.") && a.ends_with(".tmp"));
    }

    #[tokio::test]
    async fn file_backend_is_create_only_and_keeps_the_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::Files {
            root: dir.path().to_path_buf(),
        };
        let op = Operator::new(opendal::services::Fs::default().root(dir.path().to_str().unwrap()))
            .unwrap();
        let ts = 1_700_000_000_123;
        let put = |data: &'static [u8]| {
            b.put(&op, "ltx/0/a.ltx", Bytes::from_static(data), Some(ts), true)
        };
        assert_eq!(put(b"one").await.unwrap(), Put::Created);
        assert_eq!(put(b"two").await.unwrap(), Put::Taken);
        let p = dir.path().join("ltx/0/a.ltx");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let mtime =
            filetime::FileTime::from_last_modification_time(&std::fs::metadata(&p).unwrap());
        assert_eq!(mtime.unix_seconds(), ts / 1000);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("ltx/0"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }
}
