//! `shoal node --data-dir DIR/node-<id>`: runs one node in the foreground until SIGINT or
//! SIGTERM (see [`crate::node`]).

use std::fs::File;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult, Command, GlobalArgs};
use crate::config::NodeConfig;
use crate::node::{self, NodeRunError, process};

/// Arguments of `shoal node`.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// The node's data directory (`DIR/node-<id>`, holding node.toml).
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Where a node's logs go besides stderr, and its default verbosity.
#[derive(Debug)]
pub struct NodeLog {
    /// `DATA/logs/node.log`, opened for appending.
    pub file: File,
    /// The filter directive used when `RUST_LOG` is not set (node.toml's `log_level`).
    pub level: &'static str,
}

/// For `shoal node`: opens `DATA/logs/node.log` and reads the log level from node.toml, so
/// `main` can add a file layer to the subscriber. `None` for other commands, or when the file
/// cannot be opened (the node then logs to stderr only and says why when it starts).
pub fn log_setup(command: &Command) -> Option<NodeLog> {
    let Command::Node(args) = command else {
        return None;
    };
    let level = NodeConfig::load_from_data_dir(&args.data_dir)
        .map(|c| c.log_level.as_str())
        .unwrap_or("info");
    let dir = args.data_dir.join(process::LOGS_DIR);
    std::fs::create_dir_all(&dir).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .ok()?;
    Some(NodeLog { file, level })
}

async fn until_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the node");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs `shoal node`.
pub fn run(_global: &GlobalArgs, args: &NodeArgs) -> CliResult {
    if !args.data_dir.join(crate::config::NODE_FILE).is_file() {
        return Err(CliError::invalid(format!(
            "no node.toml in {} (create the cluster with `shoal init`)",
            args.data_dir.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(node::run_node(&args.data_dir, until_signal()));
    // Nothing should linger, but never let a stuck task hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result.map_err(|error| match error {
        NodeRunError::Config(message) => CliError::invalid(message),
        NodeRunError::Failed(message) => CliError::io(message),
    })
}
