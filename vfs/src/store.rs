//! The VFS's one door to the object store. Every replica call, from SQLite's threads and
//! from the VFS's own threads, goes through [`Store`]: it runs the call on the VFS runtime
//! (see `runtime.rs` for why not `Runtime::block_on`), blocks the caller, retries what is
//! worth retrying, and once shutdown has begun bounds every call by the drain deadline, so
//! a stuck store can never hold a pod past its grace period.
//!
//! Rule: never call the store while holding the database's state lock.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ltx::format::Header;
use ltx::replica::{
    CreateOnly, EpochRecord, FileIndex, LtxFileInfo, LtxKey, Replica, ReplicaError,
};

use crate::error::VfsError;
use crate::remote::{PageLoc, RemoteView};
use crate::runtime::{run, run_local, Panicked};

/// Ranged page reads: transient failures are retried this many times (opendal retries
/// inside each attempt too; this covers a store that is briefly unreachable).
const PAGE_READ_ATTEMPTS: u64 = 6;

pub struct Store {
    replica: Replica,
    /// Set at shutdown: no call may run past it.
    deadline: Mutex<Option<Instant>>,
}

impl Store {
    pub fn new(replica: Replica) -> Self {
        Store {
            replica,
            deadline: Mutex::new(None),
        }
    }

    /// Opens the replica at `url`; each failed request is retried `retries` times.
    pub fn open(
        url: &str,
        retries: usize,
        credentials: &ltx::replica::Credentials,
    ) -> Result<Self, VfsError> {
        let opts = ltx::replica::ReplicaOptions {
            retries,
            credentials: credentials.clone(),
            ..Default::default()
        };
        Ok(Self::new(Replica::open_with(
            ltx::replica::ReplicaUrl::parse(url)?,
            &opts,
        )?))
    }

    #[cfg(test)]
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// From now on every call ends by `at` (the drain deadline).
    pub fn set_deadline(&self, at: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a call may still run: unbounded outside a drain (tokio treats
    /// `Duration::MAX` as "never").
    fn time_left(&self) -> Duration {
        self.deadline().map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// Runs one store call to completion (or to the drain deadline).
    fn call<T, E, F>(&self, what: String, fut: F) -> Result<T, VfsError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        VfsError: From<E>,
    {
        let left = self.time_left();
        let res = run(async move { tokio::time::timeout(left, fut).await });
        finish(what, res)
    }

    /// [`Store::call`] for the engine's futures that are not `Send` (restore, snapshot).
    fn call_local<T, E, M, Fut>(&self, what: String, make: M) -> Result<T, VfsError>
    where
        M: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>>,
        T: Send + 'static,
        E: Send + 'static,
        VfsError: From<E>,
    {
        let left = self.time_left();
        let res = run_local(move || async move { tokio::time::timeout(left, make()).await });
        finish(what, res)
    }

    /// The replica's latest state as a page map.
    pub fn load_view(&self) -> Result<RemoteView, VfsError> {
        let r = self.replica.clone();
        self.call("loading the replica's page map".into(), async move {
            RemoteView::load(&r).await
        })
    }

    /// The page map as of `txid` (what a reader in the middle of a read transaction at
    /// that TXID needs when one of its files is gone).
    pub fn load_view_at(&self, txid: u64) -> Result<RemoteView, VfsError> {
        let r = self.replica.clone();
        self.call(format!("loading the page map at TXID {txid}"), async move {
            RemoteView::load_at(&r, ltx::restore::Target::Txid(txid)).await
        })
    }

    /// One page, with a ranged GET of its frame. Transient failures are retried.
    pub fn read_page(&self, loc: &PageLoc, page_size: u32) -> Result<Vec<u8>, VfsError> {
        let mut attempt = 0;
        loop {
            let (r, l) = (self.replica.clone(), *loc);
            let res = self.call(format!("reading page {}", l.entry.pgno), async move {
                r.read_page(&l.key, &l.entry, page_size).await
            });
            match res {
                Err(VfsError::Store(e))
                    if attempt + 1 < PAGE_READ_ATTEMPTS
                        && !matches!(
                            e,
                            ReplicaError::Ltx { .. } | ReplicaError::NotFound { .. }
                        ) =>
                {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "page fetch failed; retrying");
                    std::thread::sleep(Duration::from_millis(20 * attempt));
                }
                other => return other,
            }
        }
    }

    /// Publishes `data` at `key` only if nothing is there yet (or exactly these bytes,
    /// from an earlier attempt of ours): the fencing primitive.
    pub fn put_create_only(&self, key: LtxKey, data: Bytes, ts_ms: i64) -> Result<(), VfsError> {
        let r = self.replica.clone();
        self.call(format!("publishing {key}"), async move {
            r.write(&key, data, ts_ms, true).await
        })
    }

    pub fn list_level(&self, level: u8) -> Result<Vec<LtxFileInfo>, VfsError> {
        let r = self.replica.clone();
        self.call(format!("listing L{level}"), async move {
            r.list_level(level).await
        })
    }

    pub fn read_index(&self, info: &LtxFileInfo) -> Result<FileIndex, VfsError> {
        let (r, i) = (self.replica.clone(), info.clone());
        self.call(format!("reading the index of {}", i.key), async move {
            r.read_file_index(&i).await
        })
    }

    /// The header of one object (who wrote it, which buffer records it holds).
    pub fn read_header(&self, key: LtxKey) -> Result<Header, VfsError> {
        let r = self.replica.clone();
        self.call(format!("reading the header of {key}"), async move {
            r.read_header(&key).await
        })
    }

    pub fn latest_epoch(&self) -> Result<Option<EpochRecord>, VfsError> {
        let r = self.replica.clone();
        self.call("reading the writer epochs".into(), async move {
            r.latest_epoch().await
        })
    }

    /// Whether the store refuses a second create-only write (see [`ltx::replica::probe`]).
    pub fn probe_create_only(&self, who: &str) -> Result<CreateOnly, VfsError> {
        let (r, who) = (self.replica.clone(), who.to_string());
        self.call("probing create-only writes".into(), async move {
            r.probe_create_only(&who).await
        })
    }

    pub fn claim_epoch(&self, rec: EpochRecord) -> Result<(), VfsError> {
        let r = self.replica.clone();
        self.call(
            format!("recording writer epoch {}", rec.epoch),
            async move { r.claim_epoch(&rec).await },
        )
    }

    /// Merges L0 into L1; returns the new file, if any.
    pub fn compact_l0(&self) -> Result<Option<LtxFileInfo>, VfsError> {
        let r = self.replica.clone();
        self.call("compacting L0".into(), async move {
            ltx::compact::compact_l0(&r).await
        })
    }

    /// Writes a full snapshot at `txid` to L9, staging it at `work`.
    pub fn snapshot(
        &self,
        txid: u64,
        work: PathBuf,
        space: ltx::compact::SnapshotSpace,
    ) -> Result<(), VfsError> {
        let r = self.replica.clone();
        self.call_local(format!("snapshot at TXID {txid}"), move || async move {
            ltx::compact::snapshot(&r, txid, &work, space)
                .await
                .map(|_| ())
        })
    }

    /// Deletes what retention no longer needs; returns how many files.
    pub fn enforce_retention(&self, ret: ltx::compact::Retention) -> Result<usize, VfsError> {
        let r = self.replica.clone();
        self.call("enforcing retention".into(), async move {
            ltx::compact::enforce_retention(&r, ret).await
        })
    }

    /// Restores the latest state into `target`; returns the TXID restored.
    pub fn restore_to(&self, target: &Path) -> Result<u64, VfsError> {
        let (r, t) = (self.replica.clone(), target.to_path_buf());
        self.call_local(format!("hydrating {}", t.display()), move || async move {
            let opts = ltx::restore::RestoreOptions {
                force: true,
                ..Default::default()
            };
            ltx::restore::restore(&r, &t, &opts)
                .await
                .map(|s| s.db.txid)
        })
    }
}

fn finish<T, E>(
    what: String,
    res: Result<Result<Result<T, E>, tokio::time::error::Elapsed>, Panicked>,
) -> Result<T, VfsError>
where
    VfsError: From<E>,
{
    match res {
        Ok(Ok(r)) => r.map_err(VfsError::from),
        Ok(Err(_)) => Err(VfsError::DrainDeadline { what }),
        Err(p) => Err(VfsError::Internal(format!("{what}: {p}"))),
    }
}
