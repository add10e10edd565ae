//! What the demo binary, its tests and its benchmark share.

/// Registers the VFS with the SQLite rusqlite links (bundled here), in-process; the
/// extension (`libsqlite_kube_vfs.so`) is for other programs.
pub fn register() {
    // SAFETY: rusqlite's own sqlite3_vfs_find / sqlite3_vfs_register.
    let rc = unsafe {
        sqlite_kube_vfs::register_raw(
            rusqlite::ffi::sqlite3_vfs_find as *const (),
            rusqlite::ffi::sqlite3_vfs_register as *const (),
            false,
        )
    };
    assert_eq!(rc, 0, "VFS registration failed");
}
