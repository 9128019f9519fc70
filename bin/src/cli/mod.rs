//! Command-line interface: the argument tree, dispatch and error reporting.
//!
//! Global flags are declared `global = true`, so they are accepted before or after the
//! subcommand. Failures print one line on stderr (and, under `--json`, one
//! `{"error": {"kind", "message"}}` document on stdout) and exit with the SPEC's code.

pub mod bench_wal;
pub mod error;
pub mod output;
pub mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use error::{CliError, CliResult};

/// `shoal`: run Shoal nodes, talk to clusters, inspect and benchmark the write-ahead log.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about, propagate_version = true)]
pub struct Cli {
    /// Flags every subcommand accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after any subcommand (SPEC §3).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The cluster directory (cluster.toml, certificates, node data dirs).
    #[arg(long, global = true, env = "SHOAL_DIR", default_value = "./shoal-data")]
    pub cluster_dir: PathBuf,
    /// Node addresses to talk to instead of the cluster directory's cluster.toml.
    #[arg(long, global = true, value_delimiter = ',')]
    pub cluster: Vec<String>,
    /// The cluster CA certificate (PEM), with --cluster.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM), with --cluster.
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// The client key (PEM), with --cluster.
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// A session token (instead of the one saved by `shoal login`).
    #[arg(long, global = true, env = "SHOAL_TOKEN")]
    pub token: Option<String>,
    /// Print one machine-readable JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read consistency.
    #[arg(long, global = true, value_enum, default_value_t = Consistency::Linearizable)]
    pub consistency: Consistency,
}

/// How strongly reads are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// ReadIndex through the leader (the default).
    Linearizable,
    /// The leader's lease, without a quorum round.
    Lease,
    /// Any node's applied state.
    Stale,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline tools for a node's write-ahead log.
    Wal {
        /// Which tool.
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Benchmarks.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// `shoal wal ...`
#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// List segments and records.
    Dump(wal::WalDirArgs),
    /// Verify every checksum and say exactly where a fault is.
    Check(wal::WalDirArgs),
}

/// `shoal bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The WAL against this disk's raw limit, in the same run.
    Wal(bench_wal::BenchWalArgs),
}

/// Parses the command line. Usage errors are reported here (exit code 2; under `--json` as a
/// JSON error document), help and version print and exit 0.
pub fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = error.print();
                let code = if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                };
                return Err(ExitCode::from(code));
            }
            let json = std::env::args().any(|a| a == "--json");
            if json {
                let message = error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("invalid usage")
                    .trim_start_matches("error: ")
                    .to_string();
                Err(CliError::usage(message).report(true))
            } else {
                let _ = error.print();
                Err(ExitCode::from(2))
            }
        }
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let json = cli.global.json;
    let result = match cli.command {
        Command::Wal { command } => match command {
            WalCommand::Dump(args) => wal::dump(&cli.global, &args),
            WalCommand::Check(args) => wal::check(&cli.global, &args),
        },
        Command::Bench { command } => match command {
            BenchCommand::Wal(args) => bench_wal::run(&cli.global, &args),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.report(json),
    }
}
