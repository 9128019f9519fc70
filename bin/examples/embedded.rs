//! Three nodes in one process, over QUIC with mutual TLS on 127.0.0.1, replicating a bank
//! ledger of our own. Durability (WAL, group commit), snapshots, log compaction and catch-up
//! come with the engine: the state machine says how to apply, answer, snapshot and restore.
//!
//! `cargo run --example embedded`

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use shoal::node::embed::{BytesImage, InProcessCluster};
use shoal_engine::driver::Consistency;
use shoal_engine::{Command, SnapshotImage, StateMachine};

/// Balances by account, and the last log index folded in.
#[derive(Default)]
struct Ledger {
    balances: BTreeMap<String, i64>,
    applied: u64,
}

impl StateMachine for Ledger {
    type Error = std::io::Error;

    fn applied_index(&self) -> u64 {
        self.applied
    }

    /// `"alice 25"` credits alice 25 (`"alice -5"` debits her); the reply is her balance.
    fn apply(&mut self, commands: &[Command<'_>]) -> Result<Vec<Vec<u8>>, Self::Error> {
        let mut replies = Vec::new();
        for command in commands {
            let text = String::from_utf8_lossy(command.payload);
            let (account, amount) = text.split_once(' ').unwrap_or((&text, "0"));
            let balance = self.balances.entry(account.to_owned()).or_default();
            *balance += amount.parse::<i64>().unwrap_or(0);
            replies.push(balance.to_string().into_bytes());
            self.applied = command.index;
        }
        Ok(replies)
    }

    fn query(&self, account: &[u8]) -> Result<Vec<u8>, Self::Error> {
        let balance = self.balances.get(&*String::from_utf8_lossy(account));
        Ok(balance.copied().unwrap_or(0).to_string().into_bytes())
    }

    fn snapshot(&mut self) -> Result<Box<dyn SnapshotImage>, Self::Error> {
        let lines: String = self
            .balances
            .iter()
            .map(|(a, b)| format!("{a} {b}\n"))
            .collect();
        Ok(Box::new(BytesImage::new(self.applied, lines)))
    }

    fn restore(&mut self, index: u64, input: &mut dyn Read) -> Result<(), Self::Error> {
        let mut text = String::new();
        input.read_to_string(&mut text)?;
        let lines = text.lines().filter_map(|line| line.split_once(' '));
        self.balances = lines
            .map(|(a, b)| (a.to_owned(), b.parse().unwrap_or(0)))
            .collect();
        self.applied = index;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = InProcessCluster::start(dir.path(), 3, |_id| Ledger::default()).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    println!("node {} leads", leader.id());
    for payment in ["alice 100", "bob 20", "alice -30"] {
        let balance = leader.propose(payment).await?;
        println!(
            "{payment:>10} -> balance {}",
            String::from_utf8_lossy(&balance)
        );
    }
    println!("snapshot taken at index {}", leader.snapshot().await?);
    // Linearizable reads on every node (followers ask the leader for a read index).
    for node in cluster.nodes() {
        let alice = node
            .read(b"alice".to_vec(), Consistency::Linearizable)
            .await?;
        println!(
            "node {} says alice has {}",
            node.id(),
            String::from_utf8_lossy(&alice)
        );
    }
    cluster.shutdown().await;
    Ok(())
}
