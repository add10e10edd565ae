//! `libsqlite_kube_preload.so`: unmodified applications on the system's `libsqlite3` use the
//! VFS for their database, with no code change. The webhook puts this library in
//! `LD_PRELOAD` (pod annotation `sqlitekube.dev/preload: "true"`).
//!
//! It defines `sqlite3_open_v2` and `sqlite3_open`, which the dynamic linker binds ahead of
//! libsqlite3's (preloaded libraries come first in the global scope, also for libraries
//! dlopen'ed later, such as CPython's `_sqlite3` module). A call that opens exactly the
//! database the pod was set up for (`SQLITE_KUBE_DB_PATH`, or any path `SQLITE_KUBE_DATABASES`
//! names when the pod has several; as a path or a `file:` URI, with no VFS named) registers the VFS with that libsqlite3 once and opens through it; every
//! other call (other files, `:memory:`, an explicit VFS) goes to libsqlite3 unchanged.
//! Settings come from the environment the webhook injects, as for the extension.
//!
//! Not reached this way: programs with SQLite compiled in (Go's mattn/go-sqlite3, Node's
//! better-sqlite3, rusqlite's `bundled`) and `sqlite3_open16`; those load the extension
//! with one line (`docs/unmodified-apps.md`).

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

type OpenV2 = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, *const c_char) -> c_int;

const SQLITE_ERROR: c_int = 1;
const SQLITE_OPEN_READWRITE: c_int = 0x2;
const SQLITE_OPEN_CREATE: c_int = 0x4;

/// libsqlite3's own functions, found once.
struct Real {
    open_v2: OpenV2,
    find: *const (),
    register: *const (),
}
unsafe impl Send for Real {}
unsafe impl Sync for Real {}

/// The next definition of `name` after this library: the global scope first
/// (`RTLD_NEXT`), then a libsqlite3 already loaded privately (a dlopen'ed module's
/// dependency is not in the global scope).
unsafe fn next(name: &CStr) -> *mut c_void {
    let p = libc::dlsym(libc::RTLD_NEXT, name.as_ptr());
    if !p.is_null() {
        return p;
    }
    let lib = std::env::var("SQLITE_KUBE_PRELOAD_LIBSQLITE3")
        .unwrap_or_else(|_| "libsqlite3.so.0".into());
    let Ok(lib) = CString::new(lib) else {
        return std::ptr::null_mut();
    };
    let mut h = libc::dlopen(lib.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
    if h.is_null() {
        h = libc::dlopen(lib.as_ptr(), libc::RTLD_LAZY);
    }
    if h.is_null() {
        return std::ptr::null_mut();
    }
    libc::dlsym(h, name.as_ptr())
}

fn real() -> Option<&'static Real> {
    static R: OnceLock<Option<Real>> = OnceLock::new();
    R.get_or_init(|| unsafe {
        let open_v2 = next(c"sqlite3_open_v2");
        let find = next(c"sqlite3_vfs_find");
        let register = next(c"sqlite3_vfs_register");
        if open_v2.is_null() || find.is_null() || register.is_null() {
            sqlite_kube_vfs::init_logging();
            tracing::error!(target: "sqlite_kube_vfs", "sqlite-kube preload: libsqlite3 not found (set SQLITE_KUBE_PRELOAD_LIBSQLITE3); opening without the VFS");
            return None;
        }
        Some(Real {
            open_v2: std::mem::transmute::<*mut c_void, OpenV2>(open_v2),
            find: find as *const (),
            register: register as *const (),
        })
    })
    .as_ref()
}

/// The databases this pod was set up for, made absolute: `SQLITE_KUBE_DB_PATH`, and with
/// several databases every path `SQLITE_KUBE_DATABASES` names.
fn targets() -> &'static [PathBuf] {
    static T: OnceLock<Vec<PathBuf>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: Vec<PathBuf> = std::env::var(settings::env::DB_PATH)
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| absolute(Path::new(&p)))
            .into_iter()
            .collect();
        t.extend(
            sqlite_kube_vfs::configured_paths()
                .iter()
                .map(|p| absolute(p)),
        );
        t
    })
}

/// `p` against the working directory, with `.` and `..` resolved lexically (the file may
/// not exist yet, so no symlinks are followed).
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The file path an `sqlite3_open*` name refers to (`None`: in-memory or temporary).
fn file_path(name: &str) -> Option<PathBuf> {
    let path = match name.strip_prefix("file:") {
        Some(uri) => {
            let uri = uri.split(['?', '#']).next().unwrap_or("");
            // file:///abs and file://localhost/abs; file:rel is relative.
            match uri.strip_prefix("//") {
                Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest).to_string(),
                None => uri.to_string(),
            }
        }
        None => name.to_string(),
    };
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(absolute(Path::new(&path)))
}

/// Whether `name` (with no VFS named) is the pod's database.
fn is_target(name: *const c_char, vfs: *const c_char) -> bool {
    if name.is_null() || !vfs.is_null() {
        return false;
    }
    let t = targets();
    if t.is_empty() {
        return false;
    }
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    file_path(&name).is_some_and(|p| t.contains(&p))
}

/// Registers the VFS with the real libsqlite3 (once).
fn registered(r: &Real) -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let rc = unsafe { sqlite_kube_vfs::register_raw(r.find, r.register, false) };
        if rc != 0 {
            tracing::error!(
                rc,
                "sqlite-kube preload: registering the VFS failed; opening without it"
            );
        }
        rc == 0
    })
}

/// # Safety
/// SQLite's `sqlite3_open_v2` contract.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_open_v2(
    name: *const c_char,
    db: *mut *mut c_void,
    flags: c_int,
    vfs: *const c_char,
) -> c_int {
    let Some(r) = real() else {
        return SQLITE_ERROR;
    };
    if is_target(name, vfs) && registered(r) {
        let ours = CString::new(sqlite_kube_vfs::VFS_NAME).unwrap_or_default();
        return (r.open_v2)(name, db, flags, ours.as_ptr());
    }
    (r.open_v2)(name, db, flags, vfs)
}

/// # Safety
/// SQLite's `sqlite3_open` contract (what it does: read-write, create).
#[no_mangle]
pub unsafe extern "C" fn sqlite3_open(name: *const c_char, db: *mut *mut c_void) -> c_int {
    sqlite3_open_v2(
        name,
        db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
        std::ptr::null(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uris_resolve_to_the_same_path() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            file_path("/data/app.db"),
            Some(PathBuf::from("/data/app.db"))
        );
        assert_eq!(
            file_path("/data/./x/../app.db"),
            Some(PathBuf::from("/data/app.db"))
        );
        assert_eq!(file_path("app.db"), Some(cwd.join("app.db")));
        assert_eq!(
            file_path("file:///data/app.db?mode=rw"),
            Some(PathBuf::from("/data/app.db"))
        );
        assert_eq!(
            file_path("file://localhost/data/app.db"),
            Some(PathBuf::from("/data/app.db"))
        );
        assert_eq!(file_path("file:app.db#x"), Some(cwd.join("app.db")));
        assert_eq!(file_path(":memory:"), None);
        assert_eq!(file_path(""), None);
        assert_eq!(file_path("file::memory:?cache=shared"), None);
    }
}
