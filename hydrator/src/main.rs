//! `hydrator`: gets SQLite databases out of LTX replicas (Litestream 0.5 compatible).
//! In a pod it runs as the init container; by hand it restores to a point in time.

mod cli;
mod init;
mod litestream_config;
mod ls;
mod progress;
mod restore;
mod sync;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `hydrator ls | head`: a closed pipe ends the process quietly, as for any Unix tool,
    // instead of a panic in println!.
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    init_tracing(&cli.log_format, &cli.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hydrator: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &cli::LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HYDRATOR_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Json => b.json().init(),
        cli::LogFormat::Text => b.init(),
    }
}
