//! The `shoal` binary: parse arguments, set up logging, run the subcommand, map the outcome
//! to an exit code. Everything else lives in the library's `cli` modules.

use std::process::ExitCode;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// mimalloc instead of glibc's malloc: entries are allocated on the network threads and freed
/// on the apply thread, and glibc's `free` was nearly a third of the apply thread's time
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match shoal::cli::parse() {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    // `shoal node` also logs to DATA/logs/node.log, at node.toml's level unless RUST_LOG is set.
    let node_log = shoal::cli::node::log_setup(&cli.command);
    let default_level = node_log.as_ref().map_or("warn", |log| log.level);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let file_layer = node_log.map(|log| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(log.file))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(file_layer)
        .init();
    shoal::cli::run(cli)
}
