//! A writable SQLite VFS whose database lives in object storage as LTX files
//! (Litestream 0.5 format). See `config.rs` for the settings and `docs/vfs.md` for the
//! durability contract.
//!
//! - As a loadable extension: `.load ./libsqlite_kube_vfs` then
//!   `.open file:app.db?vfs=sqlitekube`. The extension registers the VFS as `sqlitekube`
//!   and, for drop-in use, also as `litestream`.
//! - As a Rust library: [`register`] with the host's `sqlite3_vfs_find`/`sqlite3_vfs_register`.

mod background;
mod buffer;
mod config;
mod database;
mod error;
mod fencing;
pub mod ffi;
mod follow;
mod hydration;
mod journal;
mod locks;
mod maintenance;
mod pages;
mod publisher;
mod recovery;
mod remote;
mod runtime;
mod shim;
mod shm;
mod spill;
mod standby;
mod status;
mod store;
#[cfg(test)]
mod testutil;
mod transaction;
mod wal;
mod wal_io;
pub mod writer_lease;

use std::os::raw::{c_char, c_int, c_void};

pub use config::{configured_paths, Config};
pub use error::{Fenced, VfsError};
pub use shim::{shutdown_all, status};

/// The VFS name.
pub const VFS_NAME: &str = "sqlitekube";

/// Registers the VFS (as `sqlitekube` and `litestream`) using the host SQLite's
/// functions. Idempotent. `make_default` makes `sqlitekube` the default VFS.
///
/// # Safety
/// `find` and `register` must be the host SQLite's `sqlite3_vfs_find` and
/// `sqlite3_vfs_register`.
pub unsafe fn register(
    find: ffi::VfsFind,
    register: ffi::VfsRegister,
    make_default: bool,
) -> c_int {
    init_logging();
    if shim::STATE.get().is_some() {
        return ffi::SQLITE_OK;
    }
    let default = find(std::ptr::null());
    if default.is_null() {
        return ffi::SQLITE_ERROR;
    }
    let _ = shim::STATE.set(shim::VfsState { default });
    let rc = register(shim::make_vfs(VFS_NAME, default), make_default as c_int);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let rc = register(shim::make_vfs("litestream", default), 0);
    extern "C" fn at_exit() {
        shim::shutdown_all();
    }
    libc_atexit(at_exit);
    rc
}

/// [`register`] from untyped function pointers, for hosts whose FFI types differ from
/// ours (e.g. `rusqlite::ffi::sqlite3_vfs_find as *const ()`).
///
/// # Safety
/// As [`register`]: the pointers must be the host's `sqlite3_vfs_find` and
/// `sqlite3_vfs_register`.
pub unsafe fn register_raw(find: *const (), register_fn: *const (), make_default: bool) -> c_int {
    register(
        std::mem::transmute::<*const (), ffi::VfsFind>(find),
        std::mem::transmute::<*const (), ffi::VfsRegister>(register_fn),
        make_default,
    )
}

extern "C" {
    #[link_name = "atexit"]
    fn c_atexit(f: extern "C" fn()) -> c_int;
}

fn libc_atexit(f: extern "C" fn()) {
    unsafe {
        c_atexit(f);
    }
}

/// Test builds only (debug assertions): `SQLITE_KUBE_FAULT=panic-in-<place>` panics at that
/// place every time, `panic-in-<place>-once` the first time, so tests can prove that no panic
/// reaches SQLite and that background threads come back.
pub(crate) fn fault(place: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(f) = std::env::var("SQLITE_KUBE_FAULT") else {
        return;
    };
    let always = f == format!("panic-in-{place}");
    let once = f == format!("panic-in-{place}-once") && !FIRED.swap(true, Ordering::SeqCst);
    if always || once {
        panic!("injected fault in {place}");
    }
}

/// The message of a caught panic, for the log.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// `LITESTREAM_LOG_LEVEL`: a level (`debug`, `info`, …) for the VFS and LTX code, or full
/// tracing directives when it contains `=` (`sqlite_kube_vfs::buffer=debug,warn`). Runs
/// when the VFS registers; hosts that log before that (the preload library) call it.
pub fn init_logging() {
    let value = std::env::var("LITESTREAM_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let directives = if value.contains('=') {
        value.clone()
    } else {
        let level = value.to_ascii_lowercase();
        format!("sqlite_kube_vfs={level},ltx={level}")
    };
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_new(&directives) {
        Ok(f) => (f, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new("sqlite_kube_vfs=info,ltx=info"),
            Some(e),
        ),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(e) = bad {
        tracing::warn!(value, error = %e, "LITESTREAM_LOG_LEVEL is not a level or a tracing filter; logging at info");
    }
}

/// Loadable-extension entry point (`.load libsqlite_kube_vfs`). The VFS stays loaded for
/// the life of the process.
///
/// # Safety
/// Called by SQLite with a valid `sqlite3_api_routines` table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_sqlitekubevfs_init(
    _db: *mut c_void,
    _err: *mut *mut c_char,
    api: *const *const c_void,
) -> c_int {
    let find: ffi::VfsFind = std::mem::transmute(*api.add(ffi::API_VFS_FIND));
    let reg: ffi::VfsRegister = std::mem::transmute(*api.add(ffi::API_VFS_REGISTER));
    let rc = register(find, reg, false);
    if rc == ffi::SQLITE_OK {
        ffi::SQLITE_OK_LOAD_PERMANENTLY
    } else {
        rc
    }
}

/// The generic entry point name SQLite tries first.
///
/// # Safety
/// As [`sqlite3_sqlitekubevfs_init`].
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut c_void,
    err: *mut *mut c_char,
    api: *const *const c_void,
) -> c_int {
    sqlite3_sqlitekubevfs_init(db, err, api)
}
