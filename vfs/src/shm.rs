//! The WAL index ("shared memory") of a database in WAL mode, kept in this process.
//!
//! SQLite's WAL needs memory that every connection to the database maps, plus eight lock
//! slots on it. On a local disk that is the `-shm` file, shared between processes. Here
//! exactly one process writes a replicated database (the Lease makes sure), and readers in
//! other processes follow the replica, not this WAL: process-local memory is enough, and
//! nothing is left on disk. Regions are boxed so that their addresses never move while
//! SQLite holds pointers into them.

use std::collections::HashMap;

use crate::ffi::{SQLITE_BUSY, SQLITE_OK};

/// SQLite's lock slots on the WAL index (`SQLITE_SHM_NLOCK`).
pub const NLOCK: usize = 8;
/// Slot 0 is the WAL write lock: whoever holds it exclusively appends frames.
pub const WRITE_LOCK: usize = 0;

#[derive(Default)]
pub struct Shm {
    regions: Vec<Box<[u8]>>,
    /// Connections that have mapped regions; when the last one unmaps, the memory goes
    /// (as SQLite expects of a `-shm` file nobody has open: the next opener rebuilds it).
    mapped: HashMap<u64, ()>,
    shared: [u32; NLOCK],
    exclusive: [Option<u64>; NLOCK],
    /// Per connection: which slots it holds shared (bit i = slot i).
    held_shared: HashMap<u64, u8>,
}

impl Shm {
    /// `xShmMap`: region `i` of `size` bytes, created (zeroed) if `extend`. `None` when it
    /// does not exist and may not be created.
    pub fn map(&mut self, handle: u64, i: usize, size: usize, extend: bool) -> Option<*mut u8> {
        self.mapped.insert(handle, ());
        while self.regions.len() <= i {
            if !extend {
                return None;
            }
            self.regions.push(vec![0u8; size].into_boxed_slice());
        }
        Some(self.regions[i].as_mut_ptr())
    }

    /// `xShmUnmap`: this connection is done with the index (its locks go too).
    pub fn unmap(&mut self, handle: u64) {
        self.release_all(handle);
        self.mapped.remove(&handle);
        if self.mapped.is_empty() {
            self.regions.clear();
        }
    }

    /// Drops every lock `handle` holds (its connection closed).
    pub fn release_all(&mut self, handle: u64) {
        for slot in 0..NLOCK {
            self.unlock_shared(handle, slot);
            if self.exclusive[slot] == Some(handle) {
                self.exclusive[slot] = None;
            }
        }
    }

    fn holds_shared(&self, handle: u64, slot: usize) -> bool {
        self.held_shared
            .get(&handle)
            .is_some_and(|m| m & (1 << slot) != 0)
    }

    fn unlock_shared(&mut self, handle: u64, slot: usize) {
        if self.holds_shared(handle, slot) {
            self.shared[slot] -= 1;
            *self.held_shared.entry(handle).or_default() &= !(1 << slot);
        }
    }

    /// `xShmLock` with SHARED: refused while another connection holds the slot exclusively.
    pub fn lock_shared(&mut self, handle: u64, slot: usize) -> i32 {
        if self.exclusive[slot].is_some_and(|h| h != handle) {
            return SQLITE_BUSY;
        }
        if !self.holds_shared(handle, slot) {
            self.shared[slot] += 1;
            *self.held_shared.entry(handle).or_default() |= 1 << slot;
        }
        SQLITE_OK
    }

    /// `xShmLock` with EXCLUSIVE on `n` slots from `first`: all or nothing.
    pub fn lock_exclusive(&mut self, handle: u64, first: usize, n: usize) -> i32 {
        for slot in first..first + n {
            let others_shared = self.shared[slot] - self.holds_shared(handle, slot) as u32;
            if self.exclusive[slot].is_some_and(|h| h != handle) || others_shared > 0 {
                return SQLITE_BUSY;
            }
        }
        for slot in first..first + n {
            self.exclusive[slot] = Some(handle);
        }
        SQLITE_OK
    }

    /// `xShmLock` with UNLOCK.
    pub fn unlock(&mut self, handle: u64, first: usize, n: usize, exclusive: bool) {
        for slot in first..first + n {
            if exclusive {
                if self.exclusive[slot] == Some(handle) {
                    self.exclusive[slot] = None;
                }
            } else {
                self.unlock_shared(handle, slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_exclusive_slots_exclude_each_other() {
        let mut s = Shm::default();
        assert_eq!(s.lock_shared(1, 3), SQLITE_OK);
        assert_eq!(s.lock_shared(1, 3), SQLITE_OK, "again: still one holder");
        assert_eq!(s.lock_exclusive(2, 3, 1), SQLITE_BUSY, "1 reads slot 3");
        assert_eq!(
            s.lock_exclusive(1, 3, 1),
            SQLITE_OK,
            "its own shared lock upgrades"
        );
        assert_eq!(s.lock_shared(2, 3), SQLITE_BUSY);
        s.unlock(1, 3, 1, true);
        s.unlock(1, 3, 1, false);
        assert_eq!(s.lock_exclusive(2, 0, 8), SQLITE_OK, "everything free");
        assert_eq!(s.lock_exclusive(1, 0, 1), SQLITE_BUSY);
        s.release_all(2);
        assert_eq!(s.lock_exclusive(1, 0, 1), SQLITE_OK);
    }

    #[test]
    fn regions_stay_put_and_go_with_the_last_mapping() {
        let mut s = Shm::default();
        assert!(
            s.map(1, 0, 32768, false).is_none(),
            "not created unless asked"
        );
        let a = s.map(1, 0, 32768, true).unwrap();
        unsafe { *a = 7 };
        let b = s.map(2, 3, 32768, true).unwrap();
        assert_eq!(
            s.map(2, 0, 32768, false),
            Some(a),
            "same address for everyone"
        );
        assert_ne!(a, b);
        s.unmap(1);
        assert_eq!(unsafe { *s.map(2, 0, 32768, false).unwrap() }, 7);
        s.unmap(2);
        assert!(
            s.map(3, 0, 32768, false).is_none(),
            "gone with the last mapping"
        );
    }
}
