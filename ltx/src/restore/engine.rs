//! Restore a replica to a database file: plan, download in parallel into a staging
//! directory (resumable: finished downloads survive an interruption), verify and apply
//! in TXID order while later files still download (a big file while it downloads itself:
//! `stream.rs`, with the small files behind it decoded into its pages: `overlay.rs`), then
//! rename into place atomically.
//! The output path is only ever touched by the final rename.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};

use super::apply::{ApplyError, DbSummary, DbWriter};
use super::overlay::Overlay;
use super::plan::{plan, PlanError, Target};
use crate::format::Txid;
use crate::replica::{LtxFileInfo, Replica, ReplicaError};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("output {0} already exists (use --force to overwrite)")]
    OutputExists(PathBuf),
    #[error("no replica at {0}: it holds no LTX files")]
    NoReplica(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("downloaded {path} has {got} bytes, the listing said {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        got: u64,
    },
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("local I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Progress callbacks, called from the restore task. All default to nothing.
pub trait Progress: Send + Sync {
    /// The plan is known: `files` in apply order, `bytes` to fetch (resumed files excluded).
    fn planned(&self, _files: &[LtxFileInfo], _bytes_to_fetch: u64) {}
    /// A download finished (`resumed` = already in the staging directory).
    fn downloaded(&self, _file: &LtxFileInfo, _resumed: bool) {}
    /// A file was verified and applied.
    fn applied(&self, _file: &LtxFileInfo) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Clone)]
pub struct RestoreOptions {
    pub target: Target,
    /// Downloads in flight at once.
    pub concurrency: usize,
    /// Replace an existing output file.
    pub force: bool,
    /// Where downloads are staged; default `<output>.restore/`. Kept on failure so a
    /// rerun resumes; removed on success.
    pub staging_dir: Option<PathBuf>,
    /// Files at least this big are applied while they download (`stream.rs`; not staged, so
    /// an interrupted restore fetches them again); smaller ones download ahead in parallel
    /// into the staging directory and are applied from there. The small files right behind
    /// a streamed first file are staged before it streams and decoded into it
    /// (`overlay.rs`); later ones download while it streams.
    pub stream_min: u64,
    pub progress: Arc<dyn Progress>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            target: Target::Latest,
            concurrency: 8,
            force: false,
            staging_dir: None,
            stream_min: 64 << 20,
            progress: Arc::new(NoProgress),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub db: DbSummary,
    pub files: usize,
    /// Files found complete in the staging directory and not fetched again.
    pub files_resumed: usize,
    pub bytes_downloaded: u64,
    pub elapsed: std::time::Duration,
}

impl RestoreSummary {
    pub fn txid(&self) -> Txid {
        self.db.txid
    }
}

/// The listing a point-in-time restore needs: creation times refined from object
/// metadata (as Litestream does) when the target is a time.
pub async fn list_for_target(
    replica: &Replica,
    target: Target,
) -> Result<Vec<LtxFileInfo>, ReplicaError> {
    let mut files = replica.list_all().await?;
    if let Target::Time(_) = target {
        // Owned inputs per future: a stream of futures borrowing from a closure argument
        // is not `Send` for every lifetime, which callers on a multi-threaded runtime need.
        let refined: Vec<SystemTime> = futures::stream::iter(files.clone())
            .map(|f| {
                let replica = replica.clone();
                async move { replica.creation_time(&f).await }
            })
            .buffered(32)
            .try_collect()
            .await?;
        for (f, t) in files.iter_mut().zip(refined) {
            f.created_at = t;
        }
    }
    Ok(files)
}

pub async fn restore(
    replica: &Replica,
    output: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    let started = Instant::now();
    if !opts.force && output.exists() {
        return Err(RestoreError::OutputExists(output.to_path_buf()));
    }
    let files = list_for_target(replica, opts.target).await?;
    if files.is_empty() {
        return Err(RestoreError::NoReplica(replica.url().to_string()));
    }
    let chosen = plan(&files, opts.target)?;
    tracing::info!(replica = %replica.url(), target = %opts.target, files = chosen.len(), "restore plan");

    let staging = opts
        .staging_dir
        .clone()
        .unwrap_or_else(|| sibling(output, ".restore"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RestoreError::Io { path, source }
    };
    tokio::fs::create_dir_all(&staging)
        .await
        .map_err(io(&staging))?;
    let staged = |f: &LtxFileInfo| staging.join(format!("{}-{}", f.key.level, f.key.file_name()));
    let mut to_fetch = 0u64;
    for f in &chosen {
        if !is_complete(&staged(f), f.size).await {
            to_fetch += f.size;
        }
    }
    opts.progress.planned(&chosen, to_fetch);

    // Files of at least `stream_min` are applied while they download (`stream.rs`), with
    // the whole concurrency. The others download ahead, `concurrency` wide, as spawned tasks
    // (so they keep going during a streamed apply), and `buffered` yields them in plan
    // order: each is applied as soon as it and all before it are local.
    let small_ranges = if chosen.len() == 1 {
        opts.concurrency.max(1)
    } else {
        2
    };
    let stream_min = opts.stream_min;
    // A streamed first file is applied after the small files right behind it (the rest of
    // the first window) are staged: their pages are then decoded into its batches, so each
    // page is decoded and written once (`overlay.rs`). They are fetched either way; this
    // only orders the work.
    let overlay_files = if chosen[0].size >= stream_min {
        chosen[1..]
            .iter()
            .take(opts.concurrency.max(1) - 1)
            .take_while(|f| f.size < stream_min)
            .count()
    } else {
        0
    };
    let (finished, _) = tokio::sync::watch::channel(0usize);
    let downloads = futures::stream::iter(chosen.iter().cloned().enumerate().map(|(i, f)| {
        let dest = staged(&f);
        let progress = opts.progress.clone();
        let replica = replica.clone();
        let ended = (1..=overlay_files)
            .contains(&i)
            .then(|| Ended(finished.clone()));
        let task = AbortOnDrop(tokio::spawn(async move {
            let _ended = ended;
            stage(f, dest, &replica, &*progress, stream_min, small_ranges).await
        }));
        async move {
            match task.join().await {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }))
    .buffered(opts.concurrency.max(1));
    futures::pin_mut!(downloads);

    let tmp = sibling(output, ".tmp");
    let mut writer = {
        let t = tmp.clone();
        tokio::task::spawn_blocking(move || DbWriter::create(&t))
            .await
            .expect("task")
            .map_err(io(&tmp))?
    };
    let mut resumed = 0usize;
    let mut bytes = 0u64;
    let result: Result<DbSummary, RestoreError> = async {
        while let Some(item) = downloads.next().await {
            let f = match item? {
                Ready::Local(f, path, was_resumed, n) => {
                    resumed += was_resumed as usize;
                    bytes += n;
                    let name = replica.path_of(&f.key);
                    if writer.next_to_fold() == Some(f.key.max_txid) {
                        // Verified and put in place while the snapshot applied.
                        if let Err(e) = writer.fold(&name) {
                            let _ = tokio::fs::remove_file(&path).await;
                            return Err(e.into());
                        }
                        opts.progress.applied(&f);
                        continue;
                    }
                    let (w, res) = tokio::task::spawn_blocking(move || {
                        let res =
                            std::fs::File::open(&path)
                                .map_err(ApplyError::Io)
                                .and_then(|file| {
                                    writer.apply(
                                        &name,
                                        std::io::BufReader::with_capacity(1 << 20, file),
                                    )
                                });
                        if res.is_err() {
                            // A corrupt download must not be trusted by the next attempt.
                            let _ = std::fs::remove_file(&path);
                        }
                        (writer, res)
                    })
                    .await
                    .expect("apply task panicked");
                    writer = w;
                    res?;
                    f
                }
                Ready::Stream(f) => {
                    // The files after a streamed first file are usually staged long before
                    // it ends: their pages go into its batches (`overlay.rs`).
                    if f.key == chosen[0].key && overlay_files > 0 {
                        let later = chosen[1..=overlay_files]
                            .iter()
                            .map(|f| (replica.path_of(&f.key), staged(f), f.size))
                            .collect();
                        if let Some(ov) = build_overlay(later, &finished).await {
                            writer.offer_overlay(Arc::new(ov));
                        }
                    }
                    let (w, res) =
                        super::stream::download_and_apply(replica, &f, opts.concurrency, writer)
                            .await;
                    writer = w;
                    bytes += res?;
                    opts.progress.downloaded(&f, false);
                    f
                }
            };
            opts.progress.applied(&f);
        }
        let db = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .expect("finish task panicked")?;
        Ok(db)
    }
    .await;
    let db = match result {
        Ok(db) => db,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&tmp, output).await.map_err(io(output))?;
    if let Some(dir) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let _ = tokio::fs::remove_dir_all(&staging).await;
    let summary = RestoreSummary {
        db,
        files: chosen.len(),
        files_resumed: resumed,
        bytes_downloaded: bytes,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        txid = summary.db.txid,
        files = summary.files,
        resumed = summary.files_resumed,
        bytes = summary.bytes_downloaded,
        pages_from_later_files = summary.db.pages_from_later_files,
        elapsed_ms = summary.elapsed.as_millis() as u64,
        "restore complete"
    );
    Ok(summary)
}

/// A file of the plan: found complete in the staging directory, downloaded into it, or
/// (from `stream_min` up) left to stream.
async fn stage(
    f: LtxFileInfo,
    dest: PathBuf,
    replica: &Replica,
    progress: &dyn Progress,
    stream_min: u64,
    small_ranges: usize,
) -> Result<Ready, RestoreError> {
    if is_complete(&dest, f.size).await {
        progress.downloaded(&f, true);
        return Ok(Ready::Local(f, dest, true, 0));
    }
    if f.size >= stream_min {
        return Ok(Ready::Stream(f));
    }
    let part = dest.with_extension("part");
    let n = replica.download_to(&f.key, &part, small_ranges).await?;
    if n != f.size {
        return Err(RestoreError::SizeMismatch {
            path: replica.path_of(&f.key),
            expected: f.size,
            got: n,
        });
    }
    tokio::fs::rename(&part, &dest)
        .await
        .map_err(|source| RestoreError::Io {
            path: dest.clone(),
            source,
        })?;
    progress.downloaded(&f, false);
    Ok(Ready::Local(f, dest, false, n))
}

/// Waits for the downloads of `later` to end (`finished` counts them), then maps them for
/// the first file's apply if they all succeeded; a failed one is reported when its turn
/// comes.
async fn build_overlay(
    later: Vec<(String, PathBuf, u64)>,
    finished: &tokio::sync::watch::Sender<usize>,
) -> Option<Overlay> {
    let _ = finished.subscribe().wait_for(|&n| n >= later.len()).await;
    let mut named = Vec::with_capacity(later.len());
    for (name, path, size) in later {
        if !is_complete(&path, size).await {
            return None;
        }
        named.push((name, path));
    }
    match tokio::task::spawn_blocking(move || Overlay::build(&named)).await {
        Ok(Ok(ov)) => Some(ov),
        // The normal apply of that file says what is wrong with it.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "no overlay");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "overlay task failed");
            None
        }
    }
}

/// Counts a download as ended when dropped, however it ended.
struct Ended(tokio::sync::watch::Sender<usize>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// A file of the plan, ready to apply: local (downloaded now, or `resumed` from an earlier
/// attempt, with the bytes fetched) or to be streamed.
enum Ready {
    Local(LtxFileInfo, PathBuf, bool, u64),
    Stream(LtxFileInfo),
}

/// A download task that is cancelled when the restore stops waiting for it (an error
/// earlier in the plan), so nothing keeps writing into the staging directory.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn is_complete(path: &Path, size: u64) -> bool {
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|m| m.len() == size)
}

/// `<output><suffix>` next to the output.
fn sibling(output: &Path, suffix: &str) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    /// The operator and the VFS spawn restores on multi-threaded runtimes: the future must
    /// stay `Send` (a compile-time check).
    #[allow(dead_code)]
    fn restore_future_is_send(r: &super::Replica, out: &super::Path, o: &super::RestoreOptions) {
        fn send<T: Send>(_: T) {}
        send(super::restore(r, out, o));
    }
}
