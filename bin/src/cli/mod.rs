//! Command-line interface: the argument tree, dispatch and error reporting.
//!
//! Global flags are declared `global = true`, so they are accepted before or after the
//! subcommand. Failures print one line on stderr (and, under `--json`, one
//! `{"error": {"kind", "message"}}` document on stdout) and exit with the SPEC's code.

pub mod account;
pub mod admin;
pub mod bench;
pub mod bench_wal;
pub mod chaos;
pub mod chat;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod error;
pub mod init;
pub mod kv;
pub mod node;
pub mod output;
pub mod shop;
pub mod status;
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
    /// Load against a running cluster (`--workload ...`), or `bench wal`.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Bench {
        /// Another benchmark than the cluster load generator.
        #[command(subcommand)]
        command: Option<BenchCommand>,
        /// The cluster load generator's flags.
        #[command(flatten)]
        load: bench::BenchArgs,
    },
    /// Writes a new cluster directory: cluster.toml, a CA, certificates, one dir per node.
    Init(init::InitArgs),
    /// One row per node: role, term, leader, indexes, WAL bytes.
    Status,
    /// The plain key-value namespace.
    Kv {
        /// Which operation.
        #[command(subcommand)]
        command: kv::KvCommand,
    },
    /// Membership changes.
    Member {
        /// Which change.
        #[command(subcommand)]
        command: admin::MemberCommand,
    },
    /// Leadership.
    Leader {
        /// Which action.
        #[command(subcommand)]
        command: admin::LeaderCommand,
    },
    /// Takes a snapshot now and compacts the log (every node, or one).
    Snapshot(admin::SnapshotArgs),
    /// Creates an account (customer or store owner).
    Signup(account::SignupArgs),
    /// Logs in: prints a session token and saves it for later commands.
    Login(account::LoginArgs),
    /// Ends the session.
    Logout,
    /// Account management.
    Account {
        /// Which action.
        #[command(subcommand)]
        command: account::AccountCommand,
    },
    /// Lists accounts, optionally matching a pattern.
    Users(account::UsersArgs),
    /// Stores (owners).
    Store {
        /// Which action.
        #[command(subcommand)]
        command: shop::StoreCommand,
    },
    /// Products: add, update (owners), show.
    Product {
        /// Which action.
        #[command(subcommand)]
        command: shop::ProductCommand,
    },
    /// Browses the catalogue with filters, a page at a time.
    Products(shop::ProductsArgs),
    /// Units and revenue per product of your stores (owners).
    Sales(shop::SalesArgs),
    /// Shows your cart, or adds to or removes from it (customers).
    Cart {
        /// Add or remove; nothing shows the cart.
        #[command(subcommand)]
        command: Option<shop::CartCommand>,
    },
    /// Buys the whole cart, atomically (customers).
    Checkout,
    /// Your orders (customers).
    Orders(shop::OrdersArgs),
    /// Messages between accounts.
    Chat {
        /// Which action.
        #[command(subcommand)]
        command: chat::ChatCommand,
    },
    /// Runs one node in the foreground until SIGINT/SIGTERM.
    Node(node::NodeArgs),
    /// A local cluster of node processes: `up` (with a prompt, or --detach) and `down`.
    Cluster {
        /// Up or down.
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// A scripted tour on a fresh temporary 3-node cluster: sign-ups, catalogue, carts,
    /// checkout, chat, the leader killed and restarted, data still there.
    Demo(demo::DemoArgs),
    /// A fault-injection run against a fresh local cluster, with a linearizability verdict.
    Chaos(chaos::ChaosArgs),
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
            // One line on stderr (SPEC §3), under --json also the error document.
            let json = std::env::args().any(|a| a == "--json");
            let message = error
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid usage")
                .trim_start_matches("error: ")
                .to_string();
            Err(CliError::usage(format!("{message} (see --help)")).report(json))
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
        Command::Bench { command, load } => match command {
            Some(BenchCommand::Wal(args)) => bench_wal::run(&cli.global, &args),
            None => bench::run(&cli.global, &load),
        },
        Command::Init(args) => init::run(&cli.global, &args),
        Command::Status => status::run(&cli.global),
        Command::Kv { command } => kv::run(&cli.global, &command),
        Command::Member { command } => admin::member(&cli.global, &command),
        Command::Leader { command } => admin::leader(&cli.global, &command),
        Command::Snapshot(args) => admin::snapshot(&cli.global, &args),
        Command::Signup(args) => account::signup(&cli.global, &args),
        Command::Login(args) => account::login(&cli.global, &args),
        Command::Logout => account::logout(&cli.global),
        Command::Account { command } => account::account(&cli.global, &command),
        Command::Users(args) => account::users(&cli.global, &args),
        Command::Store { command } => shop::store(&cli.global, &command),
        Command::Product { command } => shop::product(&cli.global, &command),
        Command::Products(args) => shop::products(&cli.global, &args),
        Command::Sales(args) => shop::sales(&cli.global, &args),
        Command::Cart { command } => shop::cart(&cli.global, command.as_ref()),
        Command::Checkout => shop::checkout(&cli.global),
        Command::Orders(args) => shop::orders(&cli.global, &args),
        Command::Chat { command } => chat::run(&cli.global, &command),
        Command::Node(args) => node::run(&cli.global, &args),
        Command::Cluster { command } => cluster::run(&cli.global, &command),
        Command::Demo(args) => demo::run(&cli.global, &args),
        Command::Chaos(args) => return chaos::run(&cli.global, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.report(json),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn the_argument_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_do_not_clash_with_subcommand_arguments() {
        // Every global flag, before and after a subcommand with positionals of its own.
        for args in [
            vec!["shoal", "--key", "k.pem", "kv", "get", "k"],
            vec!["shoal", "kv", "put", "k", "v", "--key", "k.pem", "--json"],
            vec!["shoal", "kv", "cas", "k", "a", "b", "--token", "t"],
            vec![
                "shoal",
                "product",
                "add",
                "--store",
                "1",
                "--name",
                "n",
                "--category",
                "c",
                "--brand",
                "b",
                "--size",
                "s",
                "--price",
                "1.00",
                "--stock",
                "-1",
                "--cert",
                "c.pem",
            ],
            vec!["shoal", "snapshot", "--node", "2", "--consistency", "stale"],
            vec!["shoal", "cart", "--cluster", "127.0.0.1:1,127.0.0.1:2"],
            vec!["shoal", "bench", "wal", "--dir", "d", "--json"],
            vec![
                "shoal",
                "--json",
                "bench",
                "--workload",
                "put",
                "--clients",
                "64",
            ],
            vec![
                "shoal",
                "bench",
                "--workload",
                "mixed",
                "--plot",
                "p.svg",
                "--cluster-dir",
                "x",
            ],
        ] {
            let cli = Cli::try_parse_from(&args);
            assert!(cli.is_ok(), "{args:?}: {:?}", cli.err());
        }
    }
}
