//! The `shoal` binary: parse arguments, set up logging, run the subcommand, map the outcome
//! to an exit code. Everything else lives in the library's `cli` modules.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match shoal::cli::parse() {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    shoal::cli::run(cli)
}
