//! Hydration: the whole database pulled into a local file in the background, after which
//! reads are served from it. [`LocalCopy`] is the copy as the page view sees it (which of
//! its pages may be read); [`Hydrator`] is the background job that produces it, reusing a
//! copy from an earlier run when its `.meta` record says which TXID it holds.
//!
//! Pages that change after the copy's TXID (our own publishes while hydration runs,
//! polled updates) are marked stale and served from the remote path until fetched again.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ltx::restore::hydrated;

use crate::error::VfsError;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HydrationState {
    Off,
    Running,
    Complete,
    Failed,
}

/// The hydrated copy and which of its pages are out of date.
pub struct LocalCopy {
    state: HydrationState,
    file: Option<File>,
    stale: HashSet<u32>,
}

impl LocalCopy {
    pub fn new(enabled: bool) -> Self {
        LocalCopy {
            state: if enabled {
                HydrationState::Running
            } else {
                HydrationState::Off
            },
            file: None,
            stale: HashSet::new(),
        }
    }

    pub fn state(&self) -> HydrationState {
        self.state
    }

    pub fn set_state(&mut self, s: HydrationState) {
        self.state = s;
    }

    /// A current page from the copy, if the copy is complete and the page is not stale.
    pub fn read(&self, pgno: u32, page_size: u32) -> Option<Vec<u8>> {
        let f = self.file.as_ref().filter(|_| !self.stale.contains(&pgno))?;
        let mut v = vec![0u8; page_size as usize];
        f.read_exact_at(&mut v, offset(pgno, page_size)).ok()?;
        Some(v)
    }

    /// These pages changed remotely: do not serve them from the copy.
    pub fn mark_stale(&mut self, pages: impl IntoIterator<Item = u32>) {
        if self.state != HydrationState::Off {
            self.stale.extend(pages);
        }
    }

    /// A stale page was fetched again: write it through (complete copies only).
    pub fn repair(&mut self, pgno: u32, data: &[u8]) {
        if let Some(f) = &self.file {
            if self.stale.remove(&pgno) {
                let ps = data.len() as u32;
                if let Err(e) = f.write_all_at(data, offset(pgno, ps)) {
                    tracing::warn!(error = %e, pgno, "cannot update the hydrated copy; the page stays remote");
                    self.stale.insert(pgno);
                }
            }
        }
    }

    /// Pages this process published: written through when the copy is complete, marked
    /// stale while hydration still runs. A page that cannot be written stays stale.
    pub fn published(&mut self, pages: &[(u32, std::sync::Arc<Vec<u8>>)], size: u32, ps: u32) {
        match &self.file {
            Some(f) => {
                for (pgno, data) in pages {
                    if let Err(e) = f.write_all_at(data, offset(*pgno, ps)) {
                        tracing::warn!(error = %e, pgno, "cannot update the hydrated copy; the page stays remote");
                        self.stale.insert(*pgno);
                    }
                }
                self.resize(size, ps);
            }
            None if self.state == HydrationState::Running => {
                self.stale.extend(pages.iter().map(|(p, _)| *p));
            }
            None => {}
        }
    }

    /// The database now has `size` pages.
    pub fn resize(&mut self, size: u32, ps: u32) {
        if let Some(f) = &self.file {
            if let Err(e) = f.set_len(size as u64 * ps as u64) {
                tracing::warn!(error = %e, "cannot resize the hydrated copy");
            }
        }
    }

    /// The copy is restored: reads switch to it, except `newer` pages.
    pub fn complete(
        &mut self,
        file: File,
        newer: impl IntoIterator<Item = u32>,
        size: u32,
        ps: u32,
    ) {
        self.stale.extend(newer);
        self.file = Some(file);
        self.resize(size, ps);
        self.state = HydrationState::Complete;
    }

    pub fn stale_pages(&self) -> usize {
        self.stale.len()
    }

    /// On a clean close: when every page is current, sync the copy and record its TXID
    /// so the next run reuses it.
    pub fn close(&self, path: &Path, txid: u64) {
        if let (Some(f), true) = (&self.file, self.stale.is_empty()) {
            if f.sync_all().is_ok() {
                if let Err(e) = hydrated::write_meta(path, txid) {
                    tracing::warn!(error = %e, "cannot record the hydrated copy's TXID");
                }
            }
        }
    }
}

fn offset(pgno: u32, ps: u32) -> u64 {
    (pgno as u64 - 1) * ps as u64
}

/// The background job: restores (or reuses) the local copy at `target`.
pub struct Hydrator {
    pub target: PathBuf,
}

impl Hydrator {
    /// Produces the copy for a replica at `txid`. Returns the open file and the TXID it
    /// holds (pages changed after it must be marked stale by the caller).
    pub fn run(&self, store: &Store, txid: u64) -> Result<(File, u64), VfsError> {
        let target = &self.target;
        let reusable = hydrated::read_meta(target).filter(|t| *t <= txid);
        // The copy changes from here on.
        hydrated::clear_meta(target).map_err(|e| VfsError::local_copy(target, e))?;
        let restored = match reusable {
            Some(t) => {
                tracing::info!(txid = t, path = %target.display(), "reusing the hydrated copy from an earlier run");
                t
            }
            None => store.restore_to(target)?,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(target)
            .map_err(|e| VfsError::local_copy(target, e))?;
        Ok((file, restored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A published page that cannot be written into the local copy (disk full, I/O error)
    /// makes that page stale: it is never served from the copy again, so reads take the
    /// remote path instead of returning the old bytes.
    #[test]
    fn a_failed_write_makes_the_page_stale_not_silently_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.db");
        std::fs::write(&path, vec![1u8; 2 * 512]).unwrap();
        let mut c = LocalCopy::new(true);
        // Opened read-only: every write fails, as on a full or failing disk.
        c.complete(std::fs::File::open(&path).unwrap(), [], 2, 512);
        assert_eq!(c.read(2, 512), Some(vec![1u8; 512]));
        c.published(&[(2, Arc::new(vec![9u8; 512]))], 2, 512);
        assert_eq!(c.read(2, 512), None, "the old page 2 must not be served");
        assert_eq!(
            c.read(1, 512),
            Some(vec![1u8; 512]),
            "untouched pages still are"
        );
        assert_eq!(c.stale_pages(), 1);
    }
}
