//! `shoal init`: writes a new cluster directory (see [`crate::layout`]).

use clap::Args;
use serde_json::json;

use super::client::print;
use super::{CliError, CliResult, GlobalArgs};
use crate::layout::{self, InitOptions, LayoutError};

/// Arguments of `shoal init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// How many nodes (ids 1..=N).
    #[arg(long)]
    pub nodes: u64,
    /// The host the nodes listen on and are reached at.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Node N listens on BASE_PORT + N - 1.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// The cluster's name.
    #[arg(long, default_value = "shoal")]
    pub name: String,
}

impl From<LayoutError> for CliError {
    fn from(error: LayoutError) -> Self {
        match error {
            LayoutError::Exists { .. } => CliError::conflict(error.to_string()),
            LayoutError::Invalid { .. } => CliError::invalid(error.to_string()),
            LayoutError::Tls(_) | LayoutError::Io { .. } | LayoutError::Config(_) => {
                CliError::io(error.to_string())
            }
        }
    }
}

/// Runs `shoal init`.
pub fn run(global: &GlobalArgs, args: &InitArgs) -> CliResult {
    let options = InitOptions {
        dir: global.cluster_dir.clone(),
        nodes: args.nodes,
        host: args.host.clone(),
        base_port: args.base_port,
        name: args.name.clone(),
    };
    let report = layout::init_cluster(&options)?;
    let dir = &global.cluster_dir;
    let nodes: Vec<_> = report
        .cluster
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "addr": m.addr,
                "data_dir": layout::node_dir(dir, m.id).display().to_string(),
            })
        })
        .collect();
    let document = json!({
        "cluster_dir": dir.display().to_string(),
        "name": report.cluster.name,
        "nodes": nodes,
    });
    let mut text = format!(
        "initialised cluster {:?} with {} node(s) in {}",
        report.cluster.name,
        report.cluster.members.len(),
        dir.display()
    );
    for m in &report.cluster.members {
        text.push_str(&format!(
            "\n  node {} at {}: shoal node --data-dir {}",
            m.id,
            m.addr,
            layout::node_dir(dir, m.id).display()
        ));
    }
    print(global, &document, &text)
}
