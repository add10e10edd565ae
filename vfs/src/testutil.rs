//! Helpers for the parts' unit tests: a `file://` replica in a temp dir, and the publish
//! steps the coordinator runs, without SQLite or a second process.

use std::path::PathBuf;

use crate::error::VfsError;
use crate::pages::PageView;
use crate::publisher::{put, whose, Publisher, PutOutcome, Taken};
use crate::recovery::recover;
use crate::remote::RemoteView;
use crate::store::Store;
use crate::transaction::Committed;

pub const PS: u32 = 4096;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("replica").display());
        let store = Store::open(&url, 4, &Default::default()).unwrap();
        Fixture { dir, store }
    }

    pub fn replica_root(&self) -> PathBuf {
        self.dir.path().join("replica")
    }

    pub fn buffer(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db-buffer"))
    }

    /// A writer's publisher as it starts up (recovery included), and the view it sees.
    pub fn writer(&self, name: &str) -> (Publisher, RemoteView) {
        let mut view = self.store.load_view().unwrap();
        let mut p = recover(&self.buffer(name), 64 << 20, &self.store, &mut view).unwrap();
        if !p.has_buffer() {
            p.open_buffer(PS).unwrap();
        }
        if view.page_size == 0 {
            view.page_size = PS;
        }
        (p, view)
    }
}

/// A page whose every byte is `fill`.
pub fn page(fill: u8) -> Vec<u8> {
    vec![fill; PS as usize]
}

/// A transaction setting page `n` to `page(n)` for each of `pgnos`, at `size` pages.
pub fn commit(size: u32, pgnos: &[u32]) -> Committed {
    Committed {
        size,
        pages: pgnos.iter().map(|&n| (n, page(n as u8))).collect(),
        durable: true,
    }
}

/// One publish as the coordinator runs it (`Database::publish`). Returns the TXID, or the
/// store error.
pub fn publish(store: &Store, p: &mut Publisher, view: &mut PageView) -> Result<u64, VfsError> {
    loop {
        let size = p.size().unwrap_or(view.size());
        let b = p
            .take_batch(view.txid(), view.size(), view.page_size(), size)?
            .expect("something to publish");
        match put(store, &b) {
            Ok(PutOutcome::Published(enc)) => {
                crate::publisher::landed(p, view, &enc, &b)?;
                return Ok(b.txid);
            }
            Ok(PutOutcome::Taken(path)) => match whose(store, &b)? {
                Taken::Ours { seq, view: v } => {
                    crate::publisher::adopted(p, view, &b, seq, v)?;
                }
                Taken::Theirs => return Err(p.taken(&b, &path, None).into()),
            },
            Err(e) => {
                p.set_last_error(&e);
                return Err(e);
            }
        }
    }
}
