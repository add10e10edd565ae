//! The rollback journal of a VFS database, kept in memory.
//!
//! SQLite writes the original pages of a transaction to `<db>-journal` so that it can roll
//! back (a whole transaction, or to a savepoint after pages spilled into the database).
//! That content is needed while the transaction runs, never after a crash: the database
//! here cannot be left half-written, because an uncommitted transaction only ever lives in
//! memory (`transaction.rs`) and a commit is one record in the write buffer. So the journal
//! needs no file: no create, write, fsync and delete per commit. This is what
//! `journal_mode=MEMORY` does, without asking the app to set it. A journal that grows past
//! [`SPILL_AT`](crate::spill::SPILL_AT) (a huge UPDATE) moves to an unnamed temporary file next to the database, so
//! memory stays bounded.
//!
//! Names are the ones SQLite uses (`<db>-journal`); `xAccess` and `xDelete` answer for
//! them here. A journal file on disk from an older version is meaningless and is removed
//! when the database opens.

use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::ffi::*;
use crate::spill::SpillFile;

/// One journal's content, shared by the handles that have it open.
pub type Journal = SpillFile;

/// Journals by the name SQLite gives them.
fn journals() -> &'static Mutex<HashMap<String, Arc<Mutex<Journal>>>> {
    static J: OnceLock<Mutex<HashMap<String, Arc<Mutex<Journal>>>>> = OnceLock::new();
    J.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_map() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Mutex<Journal>>>> {
    journals().lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `name` is the journal of a database this VFS serves.
pub fn is_journal_name(name: &str) -> bool {
    name.ends_with("-journal")
}

/// `xAccess` for a journal name: whether it exists (in memory).
pub fn exists(name: &str) -> bool {
    lock_map().contains_key(name)
}

/// `xDelete` for a journal name.
pub fn delete(name: &str) {
    lock_map().remove(name);
}

/// Removes a journal file an older version left on disk next to `db` (it cannot describe
/// anything to roll back: see the module docs).
pub fn remove_stale_file(db: &Path) {
    let p = PathBuf::from(format!("{}-journal", db.display()));
    if p.exists() {
        match std::fs::remove_file(&p) {
            Ok(()) => {
                tracing::info!(path = %p.display(), "removed a rollback journal file left on disk (journals are kept in memory)")
            }
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a stale rollback journal file")
            }
        }
    }
}

#[repr(C)]
pub struct JournalFile {
    base: sqlite3_file,
    journal: *const Mutex<Journal>,
}

/// `xOpen` of a main journal into `file`; SQLITE_CANTOPEN if it does not exist and may
/// not be created.
pub unsafe fn open(name: &str, file: *mut sqlite3_file, flags: c_int) -> c_int {
    let j = {
        let mut map = lock_map();
        match map.get(name) {
            Some(j) => j.clone(),
            None if flags & SQLITE_OPEN_CREATE != 0 => {
                let dir = Path::new(name)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
                let j = Arc::new(Mutex::new(SpillFile::new(dir, "rollback journal")));
                map.insert(name.to_string(), j.clone());
                j
            }
            None => return SQLITE_CANTOPEN,
        }
    };
    std::ptr::write(
        file as *mut JournalFile,
        JournalFile {
            base: sqlite3_file {
                pMethods: &JOURNAL_METHODS,
            },
            journal: Arc::into_raw(j),
        },
    );
    SQLITE_OK
}

unsafe fn journal<'a>(f: *mut sqlite3_file) -> std::sync::MutexGuard<'a, Journal> {
    (*(*(f as *mut JournalFile)).journal)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

unsafe extern "C" fn j_close(f: *mut sqlite3_file) -> c_int {
    let jf = f as *mut JournalFile;
    drop(Arc::from_raw((*jf).journal));
    (*jf).base.pMethods = std::ptr::null();
    SQLITE_OK
}

unsafe extern "C" fn j_read(f: *mut sqlite3_file, buf: *mut c_void, n: c_int, off: i64) -> c_int {
    let out = std::slice::from_raw_parts_mut(buf as *mut u8, n as usize);
    let got = journal(f).read(out, off as u64);
    crate::shim::read_rc(got.map(|n| n == out.len()), "reading the rollback journal")
}

unsafe extern "C" fn j_write(
    f: *mut sqlite3_file,
    buf: *const c_void,
    n: c_int,
    off: i64,
) -> c_int {
    let data = std::slice::from_raw_parts(buf as *const u8, n as usize);
    // SQLite ends a transaction in PERSIST mode, or under an exclusive lock, by zeroing the
    // journal header and leaving the records behind it. A later rollback that counts its
    // records by the file's size (journal_mode=MEMORY with this file still open, or any
    // mode here, where the device is SAFE_APPEND) then played the previous transaction's
    // records back too: "database disk image is malformed" until the database was
    // reopened. The journal never has to outlive its transaction here: a zeroed header
    // empties it.
    if off == 0 && n == 28 && data.iter().all(|&b| b == 0) {
        return j_truncate(f, 0);
    }
    match journal(f).write(data, off as u64) {
        Ok(()) => SQLITE_OK,
        Err(e) => {
            tracing::error!(error = %e, "writing the rollback journal failed");
            SQLITE_IOERR_WRITE
        }
    }
}

unsafe extern "C" fn j_truncate(f: *mut sqlite3_file, size: i64) -> c_int {
    match journal(f).truncate(size as u64) {
        Ok(()) => SQLITE_OK,
        Err(_) => SQLITE_IOERR_TRUNCATE,
    }
}

unsafe extern "C" fn j_sync(_f: *mut sqlite3_file, _flags: c_int) -> c_int {
    SQLITE_OK
}

unsafe extern "C" fn j_file_size(f: *mut sqlite3_file, out: *mut i64) -> c_int {
    *out = journal(f).len() as i64;
    SQLITE_OK
}

/// Locks of a file only this process sees (the journal, the WAL): nothing to do. Shared
/// with the WAL's methods (`shim.rs`), like the two below.
pub(crate) unsafe extern "C" fn j_lock(_f: *mut sqlite3_file, _level: c_int) -> c_int {
    SQLITE_OK
}

pub(crate) unsafe extern "C" fn j_check_reserved(_f: *mut sqlite3_file, out: *mut c_int) -> c_int {
    *out = 0;
    SQLITE_OK
}

pub(crate) unsafe extern "C" fn j_file_control(
    _f: *mut sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    SQLITE_NOTFOUND
}

unsafe extern "C" fn j_sector_size(_f: *mut sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn j_device_characteristics(_f: *mut sqlite3_file) -> c_int {
    SQLITE_IOCAP_SAFE_APPEND | SQLITE_IOCAP_SEQUENTIAL | SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

static JOURNAL_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(j_close),
    xRead: Some(j_read),
    xWrite: Some(j_write),
    xTruncate: Some(j_truncate),
    xSync: Some(j_sync),
    xFileSize: Some(j_file_size),
    xLock: Some(j_lock),
    xUnlock: Some(j_lock),
    xCheckReservedLock: Some(j_check_reserved),
    xFileControl: Some(j_file_control),
    xSectorSize: Some(j_sector_size),
    xDeviceCharacteristics: Some(j_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
};
