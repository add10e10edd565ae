//! One small tokio runtime for all object-store I/O of the VFS. SQLite calls the VFS from
//! the application's threads — which may themselves be inside a tokio runtime (an async
//! app calling SQLite) — so futures are spawned onto our runtime and awaited through a
//! plain channel instead of `Runtime::block_on`, which panics in that case.

use std::future::Future;
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

/// The task running a future panicked (its message went to the log via the panic hook).
#[derive(Debug, thiserror::Error)]
#[error("a VFS I/O task panicked")]
pub struct Panicked;

/// Runs `fut` on the VFS runtime and blocks the calling thread until it finishes.
pub fn run<F>(fut: F) -> Result<F::Output, Panicked>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| Panicked)
}

/// [`run`] for futures that are not `Send` (the restore engine's): `make` builds the
/// future on one of the runtime's blocking threads, which drives it to completion.
pub fn run_local<M, Fut>(make: M) -> Result<Fut::Output, Panicked>
where
    M: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let handle = rt().handle().clone();
    rt().spawn_blocking(move || {
        let _ = tx.send(handle.block_on(make()));
    });
    rx.recv().map_err(|_| Panicked)
}

/// [`run`] for callers that cannot report an error (the Kubernetes lease client).
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    run(fut).expect("VFS I/O task panicked")
}
