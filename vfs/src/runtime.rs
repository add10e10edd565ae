//! One small tokio runtime for all object-store I/O of the VFS. SQLite calls the VFS from
//! its own threads, which block on futures run here.

use std::sync::OnceLock;

pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sqlitekube-io")
            .enable_all()
            .build()
            .expect("tokio runtime for the VFS")
    })
}
