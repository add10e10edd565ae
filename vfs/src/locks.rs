//! SQLite's file locks between the connections of this process (the replica has exactly
//! one writer process, so locks never need to leave it), and the back-pressure rule that
//! holds new write transactions while the write buffer is full.
//!
//! SQLite's levels: NONE < SHARED < RESERVED < PENDING < EXCLUSIVE. RESERVED is the one
//! writer; PENDING keeps new readers out while it waits for the others to leave;
//! EXCLUSIVE writes the file.

use std::time::Duration;

use crate::ffi::{
    SQLITE_BUSY, SQLITE_LOCK_EXCLUSIVE, SQLITE_LOCK_NONE, SQLITE_LOCK_PENDING,
    SQLITE_LOCK_RESERVED, SQLITE_LOCK_SHARED, SQLITE_OK,
};

/// How long one RESERVED attempt waits for buffer space (store unreachable) before
/// SQLITE_BUSY. Short on purpose: SQLite's busy handler then paces the retries, and it
/// counts only its own sleeps, so a long wait here would stretch the app's busy_timeout
/// many times over (and keep a SIGTERMed app from reaching its close and final sync).
pub const BACKPRESSURE_WAIT: Duration = Duration::from_millis(25);

/// Which connection (handle) holds which lock.
#[derive(Default)]
pub struct LockTable {
    shared: u32,
    reserved: Option<u64>,
    pending: Option<u64>,
    exclusive: Option<u64>,
}

/// What unlocking changed, for the caller to act on.
pub struct Unlocked {
    /// The writer gave up RESERVED: an uncommitted transaction (if any) is rolled back.
    pub ended_write: bool,
    /// The last reader left: deferred remote changes may be applied.
    pub no_readers: bool,
}

impl LockTable {
    /// SHARED: refused while another connection holds PENDING or EXCLUSIVE.
    pub fn shared(&mut self, handle: u64, from: i32) -> i32 {
        if self.exclusive.is_some_and(|h| h != handle) || self.pending.is_some_and(|h| h != handle)
        {
            return SQLITE_BUSY;
        }
        if from < SQLITE_LOCK_SHARED {
            self.shared += 1;
        }
        SQLITE_OK
    }

    /// RESERVED: one writer at a time (the caller checks fencing, lease and buffer space).
    pub fn reserved(&mut self, handle: u64) -> i32 {
        if self.reserved.is_some_and(|h| h != handle) {
            return SQLITE_BUSY;
        }
        self.reserved = Some(handle);
        SQLITE_OK
    }

    /// PENDING, then EXCLUSIVE once this is the only reader.
    pub fn exclusive(&mut self, handle: u64, to: i32) -> i32 {
        self.pending = Some(handle);
        if self.shared > 1 {
            return SQLITE_BUSY;
        }
        if to == SQLITE_LOCK_EXCLUSIVE {
            self.exclusive = Some(handle);
        }
        SQLITE_OK
    }

    pub fn unlock(&mut self, handle: u64, from: i32, to: i32) -> Unlocked {
        let mut out = Unlocked {
            ended_write: false,
            no_readers: false,
        };
        if to < SQLITE_LOCK_RESERVED && from >= SQLITE_LOCK_RESERVED {
            out.ended_write = true;
            for slot in [&mut self.reserved, &mut self.exclusive, &mut self.pending] {
                if *slot == Some(handle) {
                    *slot = None;
                }
            }
        }
        if to == SQLITE_LOCK_NONE && from >= SQLITE_LOCK_SHARED {
            self.shared = self.shared.saturating_sub(1);
            out.no_readers = self.shared == 0;
        }
        out
    }

    pub fn has_reserved(&self) -> bool {
        self.reserved.is_some()
    }

    /// No connection holds a read snapshot: remote changes can be applied now.
    pub fn no_readers(&self) -> bool {
        self.shared == 0
    }
}

/// True for the levels [`LockTable::exclusive`] handles.
pub fn is_exclusive_level(to: i32) -> bool {
    to == SQLITE_LOCK_PENDING || to == SQLITE_LOCK_EXCLUSIVE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_and_readers_wait_for_pending() {
        let mut t = LockTable::default();
        assert_eq!(t.shared(1, SQLITE_LOCK_NONE), SQLITE_OK);
        assert_eq!(t.shared(2, SQLITE_LOCK_NONE), SQLITE_OK);
        assert_eq!(t.reserved(1), SQLITE_OK);
        assert_eq!(t.reserved(2), SQLITE_BUSY, "second writer");
        assert_eq!(
            t.exclusive(1, SQLITE_LOCK_EXCLUSIVE),
            SQLITE_BUSY,
            "reader 2 still in"
        );
        assert_eq!(
            t.shared(3, SQLITE_LOCK_NONE),
            SQLITE_BUSY,
            "PENDING keeps new readers out"
        );
        let u = t.unlock(2, SQLITE_LOCK_SHARED, SQLITE_LOCK_NONE);
        assert!(!u.no_readers && !u.ended_write);
        assert_eq!(t.exclusive(1, SQLITE_LOCK_EXCLUSIVE), SQLITE_OK);
        let u = t.unlock(1, SQLITE_LOCK_EXCLUSIVE, SQLITE_LOCK_NONE);
        assert!(u.ended_write && u.no_readers);
        assert!(!t.has_reserved());
        assert_eq!(t.shared(3, SQLITE_LOCK_NONE), SQLITE_OK);
    }
}
