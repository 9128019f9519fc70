//! Operator commands: `shoal member list|add|remove`, `shoal leader transfer`,
//! `shoal snapshot [--node ID]`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Target, cluster_config, connect, print};
use super::{CliError, CliResult, GlobalArgs};
use crate::api::{AdminBody, AdminReply};
use crate::layout;

/// `shoal member ...`
#[derive(Debug, Clone, Subcommand)]
pub enum MemberCommand {
    /// Lists the members of the configuration.
    List,
    /// Adds node ID reachable at ADDR (host:port): it joins as a learner and is promoted once
    /// caught up. With the CA key in the cluster directory, its data directory
    /// `DIR/node-<ID>/` is written first and cluster.toml updated.
    Add {
        /// The new node's id.
        id: u64,
        /// Its address, host:port.
        addr: String,
    },
    /// Removes node ID from the configuration.
    Remove {
        /// The node.
        id: u64,
    },
}

/// `shoal leader ...`
#[derive(Debug, Clone, Subcommand)]
pub enum LeaderCommand {
    /// Hands leadership to node ID.
    Transfer {
        /// The new leader.
        id: u64,
    },
}

/// Arguments of `shoal snapshot`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Only this node (default: every node).
    #[arg(long)]
    pub node: Option<u64>,
}

fn expect_done(reply: AdminReply) -> CliResult {
    match reply {
        AdminReply::Done => Ok(()),
        other => Err(CliError::io(format!("unexpected answer: {other:?}"))),
    }
}

fn node_id(field: &str, id: u64) -> CliResult {
    if id == 0 {
        return Err(CliError::invalid(format!(
            "invalid {field}: node ids start at 1"
        )));
    }
    Ok(())
}

/// Runs `shoal member ...`.
pub fn member(global: &GlobalArgs, command: &MemberCommand) -> CliResult {
    match command {
        MemberCommand::List => {
            let connection = connect(global)?;
            let AdminReply::Members(members) = connection.admin(AdminBody::Members)? else {
                return Err(CliError::io("unexpected answer to the member list"));
            };
            let rows: Vec<Value> = members
                .iter()
                .map(|m| json!({"id": m.id, "address": m.addr, "voter": m.voter}))
                .collect();
            let text = members
                .iter()
                .map(|m| {
                    format!(
                        "{}  {}  {}",
                        m.id,
                        m.addr.as_deref().unwrap_or("?"),
                        if m.voter { "voter" } else { "learner" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(global, &json!({"members": rows}), &text)
        }
        MemberCommand::Add { id, addr } => {
            node_id("id", *id)?;
            crate::config::validate_host_port("address", addr)
                .map_err(|e| CliError::invalid(format!("invalid {}", e)))?;
            // Write the new node's files when this directory holds the cluster's CA key.
            let mut wrote = None;
            if global.cluster.is_empty()
                && global.cluster_dir.join(layout::CA_KEY_FILE).is_file()
                && let Some(cluster) = cluster_config(global)?
                && cluster.member(*id).is_none()
            {
                layout::add_node(&global.cluster_dir, *id, addr)?;
                wrote = Some(layout::node_dir(&global.cluster_dir, *id));
            }
            let connection = connect(global)?;
            expect_done(connection.admin(AdminBody::AddMember {
                id: *id,
                addr: addr.clone(),
            })?)?;
            let mut text = format!("node {id} added at {addr}");
            if let Some(dir) = &wrote {
                text.push_str(&format!(
                    "\nits data directory is {} (start it with `shoal node --data-dir {}`)",
                    dir.display(),
                    dir.display()
                ));
            }
            print(
                global,
                &json!({"id": id, "address": addr, "data_dir": wrote.map(|d| d.display().to_string())}),
                &text,
            )
        }
        MemberCommand::Remove { id } => {
            node_id("id", *id)?;
            let connection = connect(global)?;
            expect_done(connection.admin(AdminBody::RemoveMember { id: *id })?)?;
            // Clients stop trying the removed node.
            if global.cluster.is_empty()
                && global
                    .cluster_dir
                    .join(crate::config::CLUSTER_FILE)
                    .is_file()
                && let Err(error) = layout::remove_member(&global.cluster_dir, *id)
            {
                tracing::warn!(%error, "node removed, but cluster.toml could not be updated");
            }
            print(
                global,
                &json!({"id": id, "removed": true}),
                &format!("node {id} removed"),
            )
        }
    }
}

/// Runs `shoal leader transfer`.
pub fn leader(global: &GlobalArgs, command: &LeaderCommand) -> CliResult {
    let LeaderCommand::Transfer { id } = command;
    node_id("id", *id)?;
    let connection = connect(global)?;
    expect_done(connection.admin(AdminBody::TransferLeader { to: *id })?)?;
    print(
        global,
        &json!({"leader": id}),
        &format!("leadership transfer to node {id} started"),
    )
}

/// Runs `shoal snapshot`.
pub fn snapshot(global: &GlobalArgs, args: &SnapshotArgs) -> CliResult {
    let connection = connect(global)?;
    let targets: Vec<Target> = match args.node {
        None => connection.targets().to_vec(),
        Some(id) => {
            let found: Vec<Target> = connection
                .targets()
                .iter()
                .filter(|t| t.id == Some(id))
                .cloned()
                .collect();
            if found.is_empty() {
                return Err(CliError::not_found(format!(
                    "node {id} is not in the cluster configuration"
                )));
            }
            found
        }
    };
    let results = connection.admin_each(&targets, &AdminBody::Snapshot);
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    let mut first_error = None;
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(AdminReply::Snapshot { index }) => {
                rows.push(
                    json!({"id": target.id, "address": target.address, "snapshot_index": index}),
                );
                lines.push(format!("{}: snapshot at index {index}", target.address));
            }
            Ok(other) => {
                first_error.get_or_insert(CliError::io(format!("unexpected answer: {other:?}")));
            }
            Err(error) => {
                lines.push(format!("{}: failed: {}", target.address, error.message));
                rows.push(
                    json!({"id": target.id, "address": target.address, "error": error.message}),
                );
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_error
        && (args.node.is_some() || rows.iter().all(|r| r.get("error").is_some()))
    {
        return Err(error);
    }
    print(global, &json!({"snapshots": rows}), &lines.join("\n"))
}
