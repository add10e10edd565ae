//! The C-ABI side: `sqlite3_vfs` and `sqlite3_io_methods` callbacks. The main database
//! goes to [`Database`], its rollback journal to memory (`journal.rs`), its WAL to the
//! database's WAL (`wal_io.rs`); temp files go to the default VFS unchanged.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::Config;
use crate::database::Database;
use crate::ffi::*;

#[repr(C)]
struct MainFile {
    base: sqlite3_file,
    db: *const Database,
    handle: u64,
    lock: c_int,
    /// This connection's `PRAGMA synchronous` is FULL or EXTRA (SQLite's default): its
    /// commits are fsynced in the write buffer. NORMAL survives a process crash, not a
    /// power loss, as local WAL at NORMAL does; OFF never asks for a sync.
    full_sync: bool,
}

/// SQLite's answer to an xRead: the buffer filled (`true`), short (`false`; the reader
/// zero-filled the rest, as SQLite requires), or `what` failed.
pub(crate) fn read_rc<E: std::fmt::Display>(r: Result<bool, E>, what: &str) -> c_int {
    match r {
        Ok(true) => SQLITE_OK,
        Ok(false) => SQLITE_IOERR_SHORT_READ,
        Err(e) => {
            tracing::error!(error = %e, "{what} failed");
            SQLITE_IOERR_READ
        }
    }
}

/// Runs a callback's body so that a panic never unwinds into SQLite's C frames (which
/// aborts the host application): it is logged and SQLite gets `on_panic`, an error code.
fn guard<T>(callback: &'static str, on_panic: T, body: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(p) => {
            tracing::error!(
                callback,
                panic = crate::panic_message(&*p),
                "a VFS callback panicked; SQLite gets an error instead"
            );
            on_panic
        }
    }
}

/// Open databases by path, shared by every connection of this process.
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Database>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Arc<Database>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Closes every open database cleanly (final sync). Runs at process exit.
pub fn shutdown_all() {
    // An open that waits for the writer lease holds the registry; at exit, do not wait
    // for it forever (it has nothing to sync yet).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut reg = loop {
        match registry().try_lock() {
            Ok(g) => break g,
            Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                tracing::warn!("a database is still opening (waiting for the writer lease?); exiting without waiting for it");
                return;
            }
        }
    };
    let dbs: Vec<Arc<Database>> = reg.drain().map(|(_, d)| d).collect();
    drop(reg);
    for d in dbs {
        d.shutdown();
    }
}

/// The status of an open database (same JSON as the status file), if it is open here.
pub fn status(path: &std::path::Path) -> Option<serde_json::Value> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
        .map(|d| d.status_json())
}

pub(crate) struct VfsState {
    pub default: *mut sqlite3_vfs,
}
unsafe impl Send for VfsState {}
unsafe impl Sync for VfsState {}

pub(crate) static STATE: OnceLock<VfsState> = OnceLock::new();

fn default_vfs() -> *mut sqlite3_vfs {
    STATE.get().expect("VFS registered").default
}

/// URI parameters SQLite appends after the file name: `name\0k\0v\0…\0\0`.
unsafe fn uri_params(z: *const c_char) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if z.is_null() {
        return out;
    }
    let mut p = z.add(CStr::from_ptr(z).to_bytes().len() + 1);
    loop {
        let k = CStr::from_ptr(p);
        if k.to_bytes().is_empty() {
            break;
        }
        p = p.add(k.to_bytes().len() + 1);
        let v = CStr::from_ptr(p);
        p = p.add(v.to_bytes().len() + 1);
        out.insert(
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        );
    }
    out
}

pub(crate) unsafe extern "C" fn x_open(
    vfs: *mut sqlite3_vfs,
    name: *const c_char,
    file: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard("open", SQLITE_CANTOPEN, || {
        crate::fault("open");
        let def = default_vfs();
        if flags & SQLITE_OPEN_MAIN_JOURNAL != 0 && !name.is_null() {
            let rc = crate::journal::open(&CStr::from_ptr(name).to_string_lossy(), file, flags);
            if rc == SQLITE_OK && !out_flags.is_null() {
                *out_flags = flags;
            }
            return rc;
        }
        if flags & SQLITE_OPEN_WAL != 0 && !name.is_null() {
            let n = CStr::from_ptr(name).to_string_lossy();
            // A WAL on disk would hold commits the write buffer never sees: never that.
            let Some(db) = wal_owner(&n) else {
                tracing::error!(
                    "cannot open the WAL {n}: its database is not open through this VFS"
                );
                return SQLITE_CANTOPEN;
            };
            {
                db.wal_open();
                std::ptr::write(
                    file as *mut WalFile,
                    WalFile {
                        base: sqlite3_file {
                            pMethods: &WAL_METHODS,
                        },
                        db: Arc::into_raw(db),
                    },
                );
                if !out_flags.is_null() {
                    *out_flags = flags;
                }
                return SQLITE_OK;
            }
        }
        if flags & SQLITE_OPEN_MAIN_DB == 0 || name.is_null() {
            return ((*def).xOpen.unwrap())(def, name, file, flags, out_flags);
        }
        let _ = vfs;
        let path = PathBuf::from(CStr::from_ptr(name).to_string_lossy().into_owned());
        let params = uri_params(name);
        let db = {
            let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
            match reg.get(&path) {
                Some(d) => d.clone(),
                None => {
                    let cfg = match Config::load(&path, &params) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot open {}", path.display());
                            return SQLITE_CANTOPEN;
                        }
                    };
                    // An ATTACHed database (any second database in the process) must never
                    // share the first one's replica, buffer, local copy or lease.
                    if let Some(why) = reg.values().find_map(|d| cfg.conflicts_with(&d.cfg)) {
                        tracing::error!(
                            "cannot open {}: {why}; give it its own replica (URI parameter replica_url) and paths",
                            path.display()
                        );
                        return SQLITE_CANTOPEN;
                    }
                    match Database::open(&path, cfg) {
                        Ok(d) => {
                            reg.insert(path.clone(), d.clone());
                            d
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot open {}", path.display());
                            return SQLITE_CANTOPEN;
                        }
                    }
                }
            }
        };
        let handle = db.new_handle();
        db.full_sync_connections(true);
        let f = file as *mut MainFile;
        let mut standbys = standby_files().lock().unwrap_or_else(|e| e.into_inner());
        let methods: &'static sqlite3_io_methods = match db.role.get() {
            crate::standby::Role::Writer => &IO_METHODS,
            crate::standby::Role::Standby => {
                standbys.push((f as usize, Arc::as_ptr(&db) as usize));
                &IO_METHODS_NO_WAL
            }
            crate::standby::Role::Reader => &IO_METHODS_NO_WAL,
        };
        // Written under the lock: `promote` must find the file initialised.
        std::ptr::write(
            f,
            MainFile {
                base: sqlite3_file { pMethods: methods },
                db: Arc::into_raw(db),
                handle,
                lock: SQLITE_LOCK_NONE,
                full_sync: true,
            },
        );
        drop(standbys);
        if !out_flags.is_null() {
            *out_flags = flags;
        }
        SQLITE_OK
    })
}

unsafe fn db<'a>(f: *mut sqlite3_file) -> &'a Database {
    &*(*(f as *mut MainFile)).db
}

unsafe extern "C" fn x_close(f: *mut sqlite3_file) -> c_int {
    guard("close", SQLITE_IOERR_CLOSE, || {
        crate::fault("close");
        let mf = f as *mut MainFile;
        standby_files()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&(file, _)| file != f as usize);
        let db = Arc::from_raw((*mf).db);
        db.shm_unmap((*mf).handle);
        if (*mf).full_sync {
            db.full_sync_connections(false);
        }
        if db.close_handle() {
            let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
            if reg.get(&db.path).is_some_and(|d| Arc::ptr_eq(d, &db)) {
                reg.remove(&db.path);
                drop(reg);
                db.shutdown();
            }
        }
        (*mf).base.pMethods = std::ptr::null();
        SQLITE_OK
    })
}

unsafe extern "C" fn x_read(f: *mut sqlite3_file, buf: *mut c_void, n: c_int, off: i64) -> c_int {
    guard("read", SQLITE_IOERR_READ, || {
        crate::fault("read");
        let out = std::slice::from_raw_parts_mut(buf as *mut u8, n as usize);
        read_rc(db(f).read(out, off as u64), "read")
    })
}

unsafe extern "C" fn x_write(
    f: *mut sqlite3_file,
    buf: *const c_void,
    n: c_int,
    off: i64,
) -> c_int {
    guard("write", SQLITE_IOERR_WRITE, || {
        crate::fault("write");
        let d = db(f);
        if !d.cfg.write_enabled {
            return SQLITE_READONLY;
        }

        match d.write(
            std::slice::from_raw_parts(buf as *const u8, n as usize),
            off as u64,
        ) {
            Ok(()) => SQLITE_OK,
            Err(e) => {
                tracing::error!(error = %e, "write failed");
                SQLITE_IOERR_WRITE
            }
        }
    })
}

unsafe extern "C" fn x_truncate(f: *mut sqlite3_file, size: i64) -> c_int {
    guard("truncate", SQLITE_IOERR_TRUNCATE, || {
        crate::fault("truncate");
        db(f).truncate(size as u64);
        SQLITE_OK
    })
}

unsafe extern "C" fn x_sync(f: *mut sqlite3_file, _flags: c_int) -> c_int {
    guard("sync", SQLITE_IOERR_FSYNC, || {
        crate::fault("sync");
        // SQLite passes the same flags at NORMAL and FULL in rollback mode; the level
        // comes from the connection's PRAGMA (x_file_control).
        if (*(f as *mut MainFile)).full_sync {
            db(f).sync();
        }
        SQLITE_OK
    })
}

unsafe extern "C" fn x_file_size(f: *mut sqlite3_file, out: *mut i64) -> c_int {
    guard("file_size", SQLITE_IOERR_FSTAT, || {
        crate::fault("file_size");
        *out = db(f).file_size() as i64;
        SQLITE_OK
    })
}

unsafe extern "C" fn x_lock(f: *mut sqlite3_file, level: c_int) -> c_int {
    guard("lock", SQLITE_IOERR_LOCK, || {
        crate::fault("lock");
        let mf = f as *mut MainFile;
        if (*mf).lock >= level {
            return SQLITE_OK;
        }
        let rc = db(f).lock((*mf).handle, (*mf).lock, level);
        if rc == SQLITE_OK {
            (*mf).lock = level;
        }
        rc
    })
}

unsafe extern "C" fn x_unlock(f: *mut sqlite3_file, level: c_int) -> c_int {
    guard("unlock", SQLITE_IOERR_UNLOCK, || {
        crate::fault("unlock");
        let mf = f as *mut MainFile;
        if (*mf).lock <= level {
            return SQLITE_OK;
        }
        db(f).unlock((*mf).handle, (*mf).lock, level);
        (*mf).lock = level;
        SQLITE_OK
    })
}

unsafe extern "C" fn x_check_reserved(f: *mut sqlite3_file, out: *mut c_int) -> c_int {
    guard("check_reserved", SQLITE_IOERR_CHECKRESERVEDLOCK, || {
        crate::fault("check_reserved");
        *out = db(f).check_reserved() as c_int;
        SQLITE_OK
    })
}

unsafe extern "C" fn x_file_control(f: *mut sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    guard("file_control", SQLITE_IOERR, || {
        crate::fault("file_control");
        match op {
            SQLITE_FCNTL_PRAGMA => {
                // Noted, then handled by SQLite as usual (NOTFOUND).
                let a = arg as *const *const c_char;
                let (name, value) = (*a.add(1), *a.add(2));
                if !name.is_null()
                    && !value.is_null()
                    && CStr::from_ptr(name)
                        .to_bytes()
                        .eq_ignore_ascii_case(b"synchronous")
                {
                    if let Some(full) = full_sync(&CStr::from_ptr(value).to_string_lossy()) {
                        let mf = f as *mut MainFile;
                        if (*mf).full_sync != full {
                            db(f).full_sync_connections(full);
                        }
                        (*mf).full_sync = full;
                    }
                }
                SQLITE_NOTFOUND
            }
            SQLITE_FCNTL_COMMIT_PHASETWO => match db(f).commit() {
                Ok(()) => SQLITE_OK,
                Err(e) => {
                    tracing::error!(error = %e, "commit could not be recorded in the write buffer");
                    SQLITE_IOERR_WRITE
                }
            },
            _ => SQLITE_NOTFOUND,
        }
    })
}

/// Whether a `PRAGMA synchronous` value means FULL or EXTRA (`None`: not a level).
fn full_sync(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "0" | "off" | "1" | "normal" => Some(false),
        "2" | "full" | "3" | "extra" => Some(true),
        _ => None,
    }
}

unsafe extern "C" fn x_sector_size(_f: *mut sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_f: *mut sqlite3_file) -> c_int {
    SQLITE_IOCAP_SAFE_APPEND | SQLITE_IOCAP_SEQUENTIAL | SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

/// A writer's methods: with the WAL index, so WAL mode works.
static IO_METHODS: sqlite3_io_methods = METHODS;

/// A reader's or standby's methods: without the WAL index, so SQLite keeps these
/// connections in rollback mode (they follow the replica; a WAL lives in the writer's
/// process) and `PRAGMA journal_mode=WAL` answers the current mode instead of failing.
static IO_METHODS_NO_WAL: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    ..METHODS
};

/// Connections a standby opened (with [`IO_METHODS_NO_WAL`]), by file address: they get
/// the writer's methods when it takes over ([`promote`]).
fn standby_files() -> &'static Mutex<Vec<(usize, usize)>> {
    static F: OnceLock<Mutex<Vec<(usize, usize)>>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(Vec::new()))
}

/// A standby takes over: its connections get the writer's methods, then the role
/// changes, under one lock with [`x_open`]'s choice, so no connection keeps the methods
/// of a role it no longer has (page 1 may now say WAL mode, which needs the WAL index).
pub(crate) fn promote(db: &Database) {
    let mut files = standby_files().lock().unwrap_or_else(|e| e.into_inner());
    let me = db as *const Database as usize;
    files.retain(|&(f, d)| {
        if d == me {
            // SAFETY: registered at open, removed at close: the file is open. Between
            // calls SQLite only reads this pointer, and both tables are valid for a
            // connection in rollback mode.
            unsafe { (*(f as *mut MainFile)).base.pMethods = &IO_METHODS };
            false
        } else {
            true
        }
    });
    db.role.set(crate::standby::Role::Writer);
}

const METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
};

unsafe extern "C" fn x_shm_map(
    f: *mut sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    guard("shm_map", SQLITE_IOERR_SHMMAP, || {
        let mf = f as *mut MainFile;
        *out =
            db(f).shm_map((*mf).handle, region as usize, size as usize, extend != 0) as *mut c_void;
        SQLITE_OK
    })
}

unsafe extern "C" fn x_shm_lock(
    f: *mut sqlite3_file,
    first: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    guard("shm_lock", SQLITE_IOERR_SHMLOCK, || {
        crate::fault("shm_lock");
        let mf = f as *mut MainFile;
        db(f).shm_lock((*mf).handle, first as usize, n as usize, flags)
    })
}

unsafe extern "C" fn x_shm_barrier(_f: *mut sqlite3_file) {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

unsafe extern "C" fn x_shm_unmap(f: *mut sqlite3_file, _delete: c_int) -> c_int {
    guard("shm_unmap", SQLITE_IOERR, || {
        let mf = f as *mut MainFile;
        db(f).shm_unmap((*mf).handle);
        SQLITE_OK
    })
}

/// A connection's handle on the database's WAL (`wal_io.rs`).
#[repr(C)]
pub(crate) struct WalFile {
    base: sqlite3_file,
    db: *const Database,
}

unsafe fn wal_db<'a>(f: *mut sqlite3_file) -> &'a Database {
    &*(*(f as *mut WalFile)).db
}

/// The open database whose WAL `name` is (`<db>-wal`).
fn wal_owner(name: &str) -> Option<Arc<Database>> {
    let db = name.strip_suffix("-wal")?;
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(std::path::Path::new(db))
        .cloned()
}

unsafe extern "C" fn w_close(f: *mut sqlite3_file) -> c_int {
    let wf = f as *mut WalFile;
    drop(Arc::from_raw((*wf).db));
    (*wf).base.pMethods = std::ptr::null();
    SQLITE_OK
}

unsafe extern "C" fn w_read(f: *mut sqlite3_file, buf: *mut c_void, n: c_int, off: i64) -> c_int {
    guard("wal_read", SQLITE_IOERR_READ, || {
        let out = std::slice::from_raw_parts_mut(buf as *mut u8, n as usize);
        read_rc(wal_db(f).wal_read(out, off as u64), "reading the WAL")
    })
}

unsafe extern "C" fn w_write(
    f: *mut sqlite3_file,
    buf: *const c_void,
    n: c_int,
    off: i64,
) -> c_int {
    guard("wal_write", SQLITE_IOERR_WRITE, || {
        crate::fault("wal_write");
        let data = std::slice::from_raw_parts(buf as *const u8, n as usize);
        match wal_db(f).wal_write(data, off as u64) {
            Ok(()) => SQLITE_OK,
            Err(rc) => rc,
        }
    })
}

unsafe extern "C" fn w_truncate(f: *mut sqlite3_file, size: i64) -> c_int {
    guard("wal_truncate", SQLITE_IOERR_TRUNCATE, || {
        match wal_db(f).wal_truncate(size as u64) {
            Ok(()) => SQLITE_OK,
            Err(e) => {
                tracing::error!(error = %e, "truncating the WAL failed");
                SQLITE_IOERR_TRUNCATE
            }
        }
    })
}

unsafe extern "C" fn w_sync(f: *mut sqlite3_file, _flags: c_int) -> c_int {
    guard("wal_sync", SQLITE_IOERR_FSYNC, || {
        crate::fault("wal_sync");
        match wal_db(f).wal_sync() {
            Ok(()) => SQLITE_OK,
            Err(e) => {
                tracing::error!(error = %e, "fsync of the write buffer failed");
                SQLITE_IOERR_FSYNC
            }
        }
    })
}

unsafe extern "C" fn w_file_size(f: *mut sqlite3_file, out: *mut i64) -> c_int {
    *out = wal_db(f).wal_len() as i64;
    SQLITE_OK
}

static WAL_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(w_close),
    xRead: Some(w_read),
    xWrite: Some(w_write),
    xTruncate: Some(w_truncate),
    xSync: Some(w_sync),
    xFileSize: Some(w_file_size),
    xLock: Some(crate::journal::j_lock),
    xUnlock: Some(crate::journal::j_lock),
    xCheckReservedLock: Some(crate::journal::j_check_reserved),
    xFileControl: Some(crate::journal::j_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
};

macro_rules! delegate {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        pub(crate) unsafe extern "C" fn $name(_vfs: *mut sqlite3_vfs, $($arg: $ty),*) -> $ret {
            let d = default_vfs();
            ((*d).$field.unwrap())(d, $($arg),*)
        }
    };
}

/// A journal lives in memory: deleting it is forgetting it.
pub(crate) unsafe extern "C" fn x_delete(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    sync: c_int,
) -> c_int {
    if !name.is_null() {
        let n = CStr::from_ptr(name).to_string_lossy();
        if crate::journal::is_journal_name(&n) {
            return if crate::journal::exists(&n) {
                crate::journal::delete(&n);
                SQLITE_OK
            } else {
                SQLITE_IOERR_DELETE_NOENT
            };
        }
        if let Some(db) = wal_owner(&n) {
            return if db.wal_delete() {
                SQLITE_OK
            } else {
                SQLITE_IOERR_DELETE_NOENT
            };
        }
    }
    let d = default_vfs();
    ((*d).xDelete.unwrap())(d, name, sync)
}

/// A journal exists only in memory; never on disk.
pub(crate) unsafe extern "C" fn x_access(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    if !name.is_null() {
        let n = CStr::from_ptr(name).to_string_lossy();
        if crate::journal::is_journal_name(&n) {
            *out = crate::journal::exists(&n) as c_int;
            return SQLITE_OK;
        }
        if let Some(db) = wal_owner(&n) {
            *out = db.wal_exists() as c_int;
            return SQLITE_OK;
        }
    }
    let d = default_vfs();
    ((*d).xAccess.unwrap())(d, name, flags, out)
}
delegate!(x_full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int);
delegate!(x_randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int);
delegate!(x_sleep, xSleep, (us: c_int) -> c_int);
delegate!(x_current_time, xCurrentTime, (out: *mut f64) -> c_int);
delegate!(x_get_last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int);
delegate!(x_dl_open, xDlOpen, (name: *const c_char) -> *mut c_void);
delegate!(x_dl_error, xDlError, (n: c_int, out: *mut c_char) -> ());
delegate!(x_dl_sym, xDlSym, (h: *mut c_void, name: *const c_char) -> Option<unsafe extern "C" fn()>);
delegate!(x_dl_close, xDlClose, (h: *mut c_void) -> ());

pub(crate) unsafe extern "C" fn x_current_time_int64(
    _vfs: *mut sqlite3_vfs,
    out: *mut i64,
) -> c_int {
    let d = default_vfs();
    match (*d).xCurrentTimeInt64 {
        Some(f) if (*d).iVersion >= 2 => f(d, out),
        _ => {
            let mut t = 0f64;
            let rc = ((*d).xCurrentTime.unwrap())(d, &mut t);
            *out = (t * 86_400_000.0) as i64;
            rc
        }
    }
}

/// Builds the `sqlite3_vfs` struct (leaked: SQLite keeps the pointer forever).
pub(crate) fn make_vfs(name: &str, default: *mut sqlite3_vfs) -> *mut sqlite3_vfs {
    let sz = unsafe { (*default).szOsFile }
        .max(std::mem::size_of::<MainFile>() as c_int)
        .max(std::mem::size_of::<crate::journal::JournalFile>() as c_int)
        .max(std::mem::size_of::<WalFile>() as c_int);
    let name = CString::new(name).unwrap().into_raw();
    Box::into_raw(Box::new(sqlite3_vfs {
        iVersion: 2,
        szOsFile: sz,
        mxPathname: unsafe { (*default).mxPathname },
        pNext: std::ptr::null_mut(),
        zName: name,
        pAppData: std::ptr::null_mut(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }))
}
