//! The open write transaction: pages SQLite wrote since it took the RESERVED lock, held
//! in memory until the commit callback records them in the write buffer (or a rollback
//! drops them). The database file itself never holds uncommitted data, which is why the
//! rollback journal needs no fsync.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Transaction {
    pages: BTreeMap<u32, Vec<u8>>,
    /// The database size in pages, when this transaction changed it.
    size: Option<u32>,
    /// SQLite asked for a sync during the transaction: the commit record is fsynced.
    synced: bool,
}

/// What a commit hands to the write buffer.
pub struct Committed {
    /// Database size in pages after the transaction.
    pub size: u32,
    /// Changed pages within `size`, ascending.
    pub pages: Vec<(u32, Vec<u8>)>,
    pub durable: bool,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.size.is_none()
    }

    pub fn page(&self, pgno: u32) -> Option<&[u8]> {
        self.pages.get(&pgno).map(Vec::as_slice)
    }

    pub fn size(&self) -> Option<u32> {
        self.size
    }

    /// Records a whole page; `current_size` is the database size before it.
    pub fn write(&mut self, pgno: u32, data: Vec<u8>, current_size: u32) {
        self.pages.insert(pgno, data);
        if pgno > current_size {
            self.size = Some(pgno);
        }
    }

    pub fn truncate(&mut self, pages: u32) {
        self.size = Some(pages);
        self.pages.retain(|&p, _| p <= pages);
    }

    pub fn mark_synced(&mut self) {
        self.synced = true;
    }

    /// Ends the transaction as committed at `size` pages (`committed_size` when the
    /// transaction did not change the size). `None` when nothing was written.
    pub fn commit(&mut self, committed_size: u32) -> Option<Committed> {
        if self.is_empty() {
            return None;
        }
        let size = self.size.unwrap_or(committed_size);
        let pages = std::mem::take(&mut self.pages)
            .into_iter()
            .filter(|(p, _)| *p <= size)
            .collect();
        let durable = std::mem::take(&mut self.synced);
        self.size = None;
        Some(Committed {
            size,
            pages,
            durable,
        })
    }

    /// Drops whatever was written (the transaction ended without a commit).
    pub fn rollback(&mut self) {
        self.pages.clear();
        self.size = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_keeps_pages_within_the_final_size() {
        let mut t = Transaction::default();
        assert!(t.commit(3).is_none(), "nothing written, nothing to commit");
        t.write(2, vec![2; 4], 3);
        t.write(5, vec![5; 4], 3);
        assert_eq!(t.size(), Some(5));
        t.truncate(4);
        t.mark_synced();
        let c = t.commit(3).unwrap();
        assert_eq!(c.size, 4);
        assert_eq!(c.pages.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2]);
        assert!(c.durable);
        assert!(t.is_empty());
        t.write(1, vec![1; 4], 4);
        t.rollback();
        assert!(t.is_empty() && t.page(1).is_none());
    }
}
