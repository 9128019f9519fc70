//! `shoal status`: asks every node about itself, concurrently, and prints one row per node
//! (unreachable nodes included, as such).

use serde_json::{Value, json};

use super::client::{connect, print};
use super::{CliError, CliResult, GlobalArgs};
use crate::api::{AdminBody, AdminReply};

/// Runs `shoal status`.
pub fn run(global: &GlobalArgs) -> CliResult {
    let connection = connect(global)?;
    let targets = connection.targets().to_vec();
    let results = connection.admin_each(&targets, &AdminBody::Status);
    let mut rows: Vec<Value> = Vec::new();
    let mut text = format!(
        "{:<4} {:<22} {:<10} {:>6} {:>6} {:>8} {:>8} {:>8} {:>9} {:>12}",
        "id",
        "address",
        "role",
        "term",
        "leader",
        "commit",
        "applied",
        "last",
        "snapshot",
        "wal_bytes"
    );
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(AdminReply::Status(s)) => {
                rows.push(json!({
                    "id": s.id,
                    "address": target.address,
                    "reachable": true,
                    "role": s.role.as_str(),
                    "term": s.term,
                    "leader": s.leader,
                    "commit_index": s.commit_index,
                    "applied_index": s.applied_index,
                    "last_index": s.last_index,
                    "snapshot_index": s.snapshot_index,
                    "wal_bytes": s.wal_bytes,
                }));
                let leader = s.leader.map_or_else(|| "-".to_owned(), |l| l.to_string());
                text.push_str(&format!(
                    "\n{:<4} {:<22} {:<10} {:>6} {:>6} {:>8} {:>8} {:>8} {:>9} {:>12}",
                    s.id,
                    target.address,
                    s.role.as_str(),
                    s.term,
                    leader,
                    s.commit_index,
                    s.applied_index,
                    s.last_index,
                    s.snapshot_index,
                    s.wal_bytes
                ));
            }
            other => {
                let error = match other {
                    Err(e) => e.message,
                    Ok(reply) => format!("unexpected answer: {reply:?}"),
                };
                tracing::debug!(address = %target.address, %error, "node unreachable");
                rows.push(json!({
                    "id": target.id,
                    "address": target.address,
                    "reachable": false,
                    "role": null,
                    "term": null,
                    "leader": null,
                    "commit_index": null,
                    "applied_index": null,
                    "last_index": null,
                    "snapshot_index": null,
                    "wal_bytes": null,
                    "error": error,
                }));
                let id = target.id.map_or_else(|| "?".to_owned(), |i| i.to_string());
                text.push_str(&format!(
                    "\n{id:<4} {:<22} unreachable ({error})",
                    target.address
                ));
            }
        }
    }
    if !rows.iter().any(|r| r["reachable"] == true) {
        let addresses: Vec<&str> = targets.iter().map(|t| t.address.as_str()).collect();
        return Err(CliError::unavailable(format!(
            "no node reachable ({})",
            addresses.join(", ")
        )));
    }
    print(global, &Value::Array(rows), &text)
}
