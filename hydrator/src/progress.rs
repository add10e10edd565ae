//! Restore progress: a bar on a terminal, structured log lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ltx::replica::LtxFileInfo;
use ltx::restore::Progress;

pub struct RestoreProgress {
    bar: Option<ProgressBar>,
    files: AtomicUsize,
    total_files: AtomicUsize,
    bytes: AtomicU64,
    last_log: Mutex<Instant>,
}

impl RestoreProgress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap()
                .progress_chars("=> "),
            );
            b
        });
        RestoreProgress {
            bar,
            files: AtomicUsize::new(0),
            total_files: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            last_log: Mutex::new(Instant::now()),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for RestoreProgress {
    fn planned(&self, files: &[LtxFileInfo], bytes_to_fetch: u64) {
        self.total_files.store(files.len(), Ordering::Relaxed);
        let last = files.last().map(|f| f.key.max_txid).unwrap_or(0);
        match &self.bar {
            Some(b) => {
                b.set_length(bytes_to_fetch);
                b.set_message(format!(
                    "restoring to TXID {last} from {} files",
                    files.len()
                ));
            }
            None => tracing::info!(
                files = files.len(),
                bytes_to_fetch,
                txid = last,
                "restore planned"
            ),
        }
    }

    fn downloaded(&self, file: &LtxFileInfo, resumed: bool) {
        if resumed {
            tracing::info!(file = %file.key, "already downloaded; resuming");
            return;
        }
        let total = self.bytes.fetch_add(file.size, Ordering::Relaxed) + file.size;
        if let Some(b) = &self.bar {
            b.set_position(total);
        } else {
            let mut last = self.last_log.lock().unwrap();
            if last.elapsed().as_secs() >= 2 {
                *last = Instant::now();
                tracing::info!(bytes_downloaded = total, "downloading");
            }
        }
    }

    fn applied(&self, file: &LtxFileInfo) {
        let n = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(file = %file.key, applied = n, of = self.total_files.load(Ordering::Relaxed), "applied");
    }
}
