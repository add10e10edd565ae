//! Writer start-up: reconcile what the write buffer says was published with what the
//! replica holds, then replay the buffer's unpublished transactions.
//!
//! - The replica is ahead and its newest file is ours (same writer id): we published it
//!   but crashed before recording that; its header says which buffer records it holds.
//! - The replica is ahead by another writer's file: our unpublished records were written
//!   on top of a history that is no longer the latest, so publishing them would fork it.
//!   The writer is fenced and the records stay in the buffer for an operator to inspect.

use ltx::replica::LtxKey;

use crate::buffer::{buffer_page_size, load_state, save_state, PublishState};
use crate::error::{Fenced, VfsError};
use crate::publisher::Publisher;
use crate::remote::RemoteView;
use crate::store::Store;

/// Builds the publisher for a writer: publish state reconciled with `view` (whose page
/// size is taken from the buffer for a new database whose first session crashed), the
/// buffer opened and replayed.
pub fn recover(
    buffer_path: &std::path::Path,
    buffer_limit: u64,
    store: &Store,
    view: &mut RemoteView,
) -> Result<Publisher, VfsError> {
    let mut state = load_state(buffer_path).unwrap_or(PublishState {
        writer_id: rand::random::<u64>() | 1,
        ..Default::default()
    });
    let on_disk = state;
    let remote = view.txid;
    let ahead = remote > state.published_txid;
    if ahead
        && view
            .last_header
            .is_some_and(|h| h.node_id != state.writer_id)
    {
        // The newest file may be a compaction (no writer id); the newest L0 file has it.
        match store.read_header(LtxKey::new(0, remote, remote)) {
            Ok(h) => view.last_header = Some(h),
            Err(e) => tracing::warn!(error = %e, txid = remote, "cannot read the newest L0 header"),
        }
    }
    let ours = view
        .last_header
        .filter(|h| h.node_id == state.writer_id && h.max_txid == remote);
    let moved_by_other = ahead && ours.is_none();
    if ahead {
        if let Some(h) = ours {
            state.published_seq = state.published_seq.max(h.wal_offset.max(0) as u64);
        }
        state.published_txid = remote;
    }
    let mut publisher = Publisher::new(buffer_path, buffer_limit, state);
    if view.page_size == 0 {
        // A new database with a buffer from a crashed first session: its page size.
        if let Some(ps) = buffer_page_size(buffer_path) {
            view.page_size = ps;
        }
    }
    let mut keep = publisher.state();
    if view.page_size != 0 {
        publisher.open_buffer(view.page_size)?;
        if moved_by_other && publisher.unpublished_pages() > 0 {
            publisher.fence(Fenced::new(format!(
                "the replica moved to TXID {remote} by another writer while {} unpublished page(s) wait in {}; refusing to fork history (move the buffer aside to start from the replica)",
                publisher.unpublished_pages(),
                buffer_path.display()
            )));
            // The record on disk keeps saying what we published, so every later open
            // refuses too.
            keep = on_disk;
        }
    }
    save_state(buffer_path, &keep).map_err(|e| VfsError::buffer(buffer_path, e))?;
    Ok(publisher)
}

/// Whether the write buffer at `buffer_path` holds transactions not yet published (a
/// crashed process's), as far as its own records say.
pub fn has_unpublished(buffer_path: &std::path::Path) -> bool {
    let Some(ps) = buffer_page_size(buffer_path) else {
        return false;
    };
    let state = load_state(buffer_path).unwrap_or_default();
    let mut p = Publisher::new(buffer_path, u64::MAX, state);
    match p.open_buffer(ps) {
        Ok(_) => p.unpublished_pages() > 0,
        // Unreadable: let the blocking open's recovery report it.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::error::VfsError;
    use crate::pages::PageView;
    use crate::publisher::{put, PutOutcome};
    use crate::testutil::*;

    /// A crash mid-append leaves a torn record: recovery replays the whole commits before
    /// it, drops the torn one, and later commits follow them.
    #[test]
    fn torn_tail_is_cut_and_whole_commits_replay() {
        let f = Fixture::new();
        {
            let (mut p, _) = f.writer("a");
            p.record(commit(2, &[1, 2])).unwrap();
            p.record(commit(3, &[3])).unwrap();
        } // crash: nothing published
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(f.buffer("a"))
            .unwrap();
        file.write_all(&[0, 0, 0x40, 0, 9, 9, 9]).unwrap();
        drop(file);
        let (mut p, view) = f.writer("a");
        assert_eq!(p.unpublished_pages(), 3);
        assert_eq!(p.size(), Some(3));
        assert_eq!(p.page(3).map(|d| d[0]), Some(3));
        p.record(commit(4, &[4])).unwrap();
        let mut pv = PageView::new(view, 1 << 20, false);
        assert_eq!(publish(&f.store, &mut p, &mut pv).unwrap(), 1);
        let v = f.store.load_view().unwrap();
        assert_eq!((v.txid, v.commit, v.pages.len()), (1, 4, 4));
    }

    /// Published, then a crash before the buffer said so: the file's header (our writer
    /// id, our last record) tells recovery, so nothing is published twice.
    #[test]
    fn published_before_the_crash_is_not_replayed() {
        let f = Fixture::new();
        {
            let (mut p, view) = f.writer("a");
            p.record(commit(1, &[1])).unwrap();
            let b = p
                .take_batch(view.txid, view.commit, PS, 1)
                .unwrap()
                .unwrap();
            assert!(matches!(
                put(&f.store, &b).unwrap(),
                PutOutcome::Published(_)
            ));
        } // crash before `published`
        let (p, view) = f.writer("a");
        assert_eq!(view.txid, 1);
        assert_eq!(p.state().published_txid, 1);
        assert_eq!(p.unpublished_pages(), 0, "nothing to replay");
        assert!(p.fenced().is_none());
    }

    /// A crash right after a publish (recorded) but before the buffer was cut leaves the
    /// published records in the file. Recovery cuts them at once: before, they stayed until
    /// the next publish, and commits in the meantime grew the file past ~1.25× the limit
    /// (seen at 2.2× in a loaded kill -9 run).
    #[test]
    fn published_records_left_by_a_crash_are_cut_at_open() {
        let f = Fixture::new();
        let buf = f.buffer("a");
        {
            let (mut p, view) = f.writer("a");
            let mut pv = PageView::new(view, 1 << 20, false);
            for i in 0..40u32 {
                p.record(commit(1 + i % 8, &[1 + i % 8])).unwrap();
            }
            let b = p.take_batch(0, 0, PS, 8).unwrap().unwrap();
            let enc = match put(&f.store, &b).unwrap() {
                PutOutcome::Published(e) => e,
                PutOutcome::Taken(_) => unreachable!(),
            };
            // The state is saved, then the process dies before the buffer is cut.
            let mut st = p.state();
            st.published_txid = b.txid;
            st.published_seq = b.last_seq;
            crate::buffer::save_state(&buf, &st).unwrap();
            pv.published(enc.key, &enc.header, &enc.entries, &b.pages);
        }
        let before = std::fs::metadata(&buf).unwrap().len();
        assert!(
            before > 40 * PS as u64,
            "the crash left the records ({before} bytes)"
        );
        let (p, _) = f.writer("a");
        assert_eq!(p.unpublished_pages(), 0);
        assert_eq!(p.buffer_bytes(), 0, "published records are cut at open");
        drop(p);
        let (again, _) = f.writer("a");
        assert_eq!(
            again.buffer_bytes(),
            0,
            "and stay cut (the space is reused)"
        );
    }

    /// Another writer moved the replica on while our commits were unpublished: publishing
    /// them would fork history. Recovery fences, and keeps fencing on every later open.
    #[test]
    fn replica_moved_by_another_writer_refuses_to_fork() {
        let f = Fixture::new();
        {
            let (mut a, _) = f.writer("a");
            a.record(commit(1, &[1])).unwrap();
        } // a crashes with an unpublished commit
        let (mut b, vb) = f.writer("b");
        let mut pb = PageView::new(vb, 1 << 20, false);
        b.record(commit(2, &[1, 2])).unwrap();
        assert_eq!(publish(&f.store, &mut b, &mut pb).unwrap(), 1);
        for open in 1..=2 {
            let (mut a, va) = f.writer("a");
            let reason = a.fenced().map(|f| f.reason.clone());
            assert!(
                reason
                    .as_deref()
                    .is_some_and(|r| r.contains("refusing to fork")),
                "open {open}: {reason:?}"
            );
            assert_eq!(a.unpublished_pages(), 1, "open {open}: the commit is kept");
            let mut pa = PageView::new(va, 1 << 20, false);
            assert!(matches!(
                publish(&f.store, &mut a, &mut pa),
                Err(VfsError::Fenced(_))
            ));
        }
        assert_eq!(f.store.load_view().unwrap().txid, 1, "nothing forked");
    }
}
