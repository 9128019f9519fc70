//! The nemesis: seeded rounds of faults against the [`LocalCluster`].
//!
//! Each round injects one fault, holds it, then heals it; the kinds come in shuffled cycles
//! of every [`FaultKind`], so a run of `cycle × round length` seconds injects each kind at
//! least once. The schedule (kinds, which node, partition sides, loss rate) derives from the
//! seed; which node is the leader at that moment is the cluster's doing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shoal_net::{Client, ClientRequest, ClientResponse, FaultCommand, RequestKind};

use super::cluster::LocalCluster;
use crate::api::{AdminBody, AdminReply, NodeRole, NodeStatus};

/// How long one admin request to one node may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a restarted node gets to answer again.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The kinds of fault, as named in `faults` of `chaos --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL of a random node, then restart.
    Kill,
    /// SIGKILL of the leader, then restart.
    KillLeader,
    /// SIGSTOP of a node (the leader half the time), then SIGCONT.
    Pause,
    /// The nodes split into a majority and a minority.
    PartitionHalves,
    /// The leader cut off from every other node.
    PartitionLeader,
    /// Two sides that only one bridge node sees both of.
    PartitionBridge,
    /// Every node drops a share of its peer messages.
    MessageLoss,
    /// A new node added (learner, then voter) and removed again.
    Membership,
    /// A snapshot forced on a node (log compaction).
    Snapshot,
    /// A node killed, the last record of its WAL torn, and restarted.
    WalTear,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::Pause,
        FaultKind::PartitionHalves,
        FaultKind::PartitionLeader,
        FaultKind::PartitionBridge,
        FaultKind::MessageLoss,
        FaultKind::Membership,
        FaultKind::Snapshot,
        FaultKind::WalTear,
    ];

    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill_leader",
            FaultKind::Pause => "pause",
            FaultKind::PartitionHalves => "partition_halves",
            FaultKind::PartitionLeader => "partition_leader",
            FaultKind::PartitionBridge => "partition_bridge",
            FaultKind::MessageLoss => "message_loss",
            FaultKind::Membership => "membership",
            FaultKind::Snapshot => "snapshot",
            FaultKind::WalTear => "wal_tear",
        }
    }
}

/// Sends one admin request to the node at `addr` (no redirect), bounded.
pub async fn admin_once(
    client: &Client,
    addr: SocketAddr,
    body: &AdminBody,
) -> Result<AdminReply, String> {
    let request = ClientRequest {
        client_id: 0,
        seq: 0,
        attempt: 0,
        kind: RequestKind::Admin,
        body: body.to_bytes(),
    };
    match tokio::time::timeout(ADMIN_TIMEOUT, client.send_once(addr, &request)).await {
        Err(_) => Err(format!("no answer from {addr} within {ADMIN_TIMEOUT:?}")),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(ClientResponse::Ok(bytes))) => {
            AdminReply::from_bytes(&bytes).map_err(|e| e.to_string())
        }
        Ok(Ok(other)) => Err(format!("{other:?}")),
    }
}

/// Sends an admin request to the leader (redirects and retries by the client).
pub async fn admin_leader(client: &Client, body: &AdminBody) -> Result<AdminReply, String> {
    let bytes = client
        .request(RequestKind::Admin, body.to_bytes())
        .await
        .map_err(|e| e.to_string())?;
    AdminReply::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// Makes a fresh client (a connection to a killed node can linger until QUIC's idle
/// timeout; the nemesis starts afresh after any failed admin request).
pub type ClientFactory = Arc<dyn Fn() -> Result<Client, String> + Send + Sync>;

/// The nemesis of one run.
pub struct Nemesis {
    cluster: Arc<Mutex<LocalCluster>>,
    client: Client,
    make_client: ClientFactory,
    rng: SmallRng,
    start: Instant,
    /// Faults injected, by kind.
    pub counts: BTreeMap<FaultKind, u64>,
    /// What it did: (ns since the start, description).
    pub events: Vec<(u64, String)>,
}

impl Nemesis {
    /// A nemesis seeded with `seed`, acting on `cluster` through `client`.
    pub fn new(
        cluster: Arc<Mutex<LocalCluster>>,
        make_client: ClientFactory,
        seed: u64,
        start: Instant,
    ) -> Result<Self, String> {
        Ok(Nemesis {
            cluster,
            client: make_client()?,
            make_client,
            rng: SmallRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321),
            start,
            counts: BTreeMap::new(),
            events: Vec::new(),
        })
    }

    /// One admin request to one node; after a failure the client is replaced.
    async fn admin(&mut self, addr: SocketAddr, body: &AdminBody) -> Result<AdminReply, String> {
        let result = admin_once(&self.client, addr, body).await;
        if result.is_err()
            && let Ok(fresh) = (self.make_client)()
        {
            let old = std::mem::replace(&mut self.client, fresh);
            tokio::spawn(async move { old.close().await });
        }
        result
    }

    fn cluster(&self) -> MutexGuard<'_, LocalCluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&mut self, text: String) {
        tracing::info!(target: "shoal::chaos", "{text}");
        self.events
            .push((self.start.elapsed().as_nanos() as u64, text));
    }

    fn injected(&mut self, kind: FaultKind, text: String) {
        *self.counts.entry(kind).or_default() += 1;
        self.log(format!("{}: {text}", kind.name()));
    }

    /// Every node's status (those that answer).
    pub async fn statuses(&mut self) -> Vec<NodeStatus> {
        let targets: Vec<SocketAddr> = {
            let cluster = self.cluster();
            cluster
                .running()
                .into_iter()
                .map(|id| cluster.addr(id))
                .collect()
        };
        let mut out = Vec::new();
        for addr in targets {
            if let Ok(AdminReply::Status(status)) = self.admin(addr, &AdminBody::Status).await {
                out.push(status);
            }
        }
        out
    }

    /// The leader of the highest term among the running nodes, if any.
    pub async fn leader(&mut self) -> Option<u64> {
        self.statuses()
            .await
            .into_iter()
            .filter(|s| s.role == NodeRole::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    fn pick(&mut self, from: &[u64]) -> Option<u64> {
        if from.is_empty() {
            return None;
        }
        Some(from[self.rng.random_range(0..from.len())])
    }

    /// Waits (bounded) until node `id` answers a status request.
    async fn wait_up(&mut self, id: u64) -> bool {
        let addr = self.cluster().addr(id);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.admin(addr, &AdminBody::Status).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn restart(&mut self, id: u64) {
        let started = self.cluster().start(id);
        match started {
            Ok(()) => {
                if !self.wait_up(id).await {
                    self.log(format!(
                        "node {id} did not answer within {START_TIMEOUT:?} of its restart"
                    ));
                }
            }
            Err(error) => self.log(format!("cannot restart node {id}: {error}")),
        }
    }

    async fn fault_all(&mut self, commands: Vec<(u64, FaultCommand)>) -> bool {
        let mut all = true;
        for (id, command) in commands {
            let addr = self.cluster().addr(id);
            if let Err(error) = self.admin(addr, &AdminBody::Fault(command)).await {
                self.log(format!("fault command to node {id} failed: {error}"));
                all = false;
            }
        }
        all
    }

    /// Heals the network of every running node (retrying each a few times) and resumes
    /// paused ones.
    pub async fn heal_network(&mut self) {
        self.cluster().resume_all();
        let ids = self.cluster().running();
        for id in ids {
            let addr = self.cluster().addr(id);
            for attempt in 0..5 {
                match self
                    .admin(addr, &AdminBody::Fault(FaultCommand::Heal))
                    .await
                {
                    Ok(_) => break,
                    Err(error) if attempt == 4 => {
                        self.log(format!("cannot heal node {id}: {error}"))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }

    /// Heals everything: resumes paused nodes, restarts stopped members, heals the network.
    pub async fn heal_everything(&mut self) {
        self.cluster().resume_all();
        let down: Vec<u64> = {
            let cluster = self.cluster();
            cluster
                .members()
                .into_iter()
                .filter(|id| !cluster.is_up(*id))
                .collect()
        };
        for id in down {
            self.restart(id).await;
        }
        self.heal_network().await;
        self.log("healed: every node running, network whole".into());
    }

    /// Runs rounds until `until`, each fault held for `hold` then healed and followed by
    /// `settle`.
    pub async fn run(&mut self, until: Instant, hold: Duration, settle: Duration) {
        let mut queue: Vec<FaultKind> = Vec::new();
        let mut rounds = 0;
        // Until every kind was injected once (bounded), and until the end of the duration.
        while (self.counts.len() < FaultKind::ALL.len() && rounds < 3 * FaultKind::ALL.len())
            || Instant::now() + hold < until
        {
            rounds += 1;
            if queue.is_empty() {
                queue = FaultKind::ALL.to_vec();
                queue.shuffle(&mut self.rng);
            }
            let Some(kind) = queue.pop() else { break };
            let before = self.counts.get(&kind).copied().unwrap_or(0);
            self.round(kind, hold).await;
            if kind == FaultKind::WalTear && self.counts.get(&kind).copied().unwrap_or(0) == before
            {
                // Nothing could be torn this time (every record applied): try again later in
                // the cycle.
                let at = self.rng.random_range(0..=queue.len());
                queue.insert(at, kind);
            }
            let crashed: Vec<String> = {
                let mut cluster = self.cluster();
                cluster
                    .members()
                    .into_iter()
                    .filter_map(|id| cluster.exited(id))
                    .collect()
            };
            for text in crashed {
                self.log(format!("unexpected: {text}"));
            }
            tokio::time::sleep(settle).await;
        }
    }

    async fn round(&mut self, kind: FaultKind, hold: Duration) {
        let running = self.cluster().running();
        match kind {
            FaultKind::Kill | FaultKind::KillLeader | FaultKind::WalTear => {
                let leader = self.leader().await;
                let target = match kind {
                    FaultKind::KillLeader => leader.or_else(|| self.pick(&running)),
                    FaultKind::WalTear => {
                        let followers: Vec<u64> = running
                            .iter()
                            .copied()
                            .filter(|id| Some(*id) != leader)
                            .collect();
                        self.pick(&followers)
                    }
                    _ => self.pick(&running),
                };
                let Some(id) = target else {
                    self.log(format!("{}: no node to act on", kind.name()));
                    return;
                };
                self.cluster().kill(id);
                let mut text = format!("SIGKILL node {id}");
                if kind == FaultKind::WalTear {
                    let data_dir = self.cluster().data_dir(id);
                    match super::cluster::wal_tail_beyond_applied(&data_dir) {
                        Ok((_, _, true)) => {}
                        Ok((last, applied, false)) => {
                            // Every record is applied: none could be an unsynced tail.
                            self.log(format!(
                                "wal_tear: node {id}'s log ends at {last}, all applied ({applied}): nothing unsynced-looking to tear"
                            ));
                            self.restart(id).await;
                            return;
                        }
                        Err(error) => {
                            self.log(format!("wal_tear: node {id}: {error}"));
                            self.restart(id).await;
                            return;
                        }
                    }
                    let wal = data_dir.join("wal");
                    match shoal_wal::recovery::tear_last_record(&wal) {
                        Ok(Some((path, len))) => text.push_str(&format!(
                            ", tore the last record of {} ({len} bytes cut)",
                            path.display()
                        )),
                        Ok(None) => {
                            self.log(format!("wal_tear: node {id}'s WAL has no record to tear"));
                            self.restart(id).await;
                            return;
                        }
                        Err(error) => {
                            self.log(format!("wal_tear: cannot tear node {id}'s WAL: {error}"));
                            self.restart(id).await;
                            return;
                        }
                    }
                }
                self.injected(kind, text);
                tokio::time::sleep(hold).await;
                self.restart(id).await;
                self.log(format!("restarted node {id}"));
            }
            FaultKind::Pause => {
                let target = if self.rng.random_bool(0.5) {
                    match self.leader().await {
                        Some(id) => Some(id),
                        None => self.pick(&running),
                    }
                } else {
                    self.pick(&running)
                };
                let Some(id) = target else { return };
                let paused = self.cluster().pause(id);
                match paused {
                    Ok(()) => self.injected(kind, format!("SIGSTOP node {id}")),
                    Err(error) => {
                        self.log(format!("pause: {error}"));
                        return;
                    }
                }
                tokio::time::sleep(hold).await;
                self.cluster().resume_all();
                self.log(format!("SIGCONT node {id}"));
            }
            FaultKind::PartitionHalves
            | FaultKind::PartitionLeader
            | FaultKind::PartitionBridge => {
                let mut members = self.cluster().members();
                members.shuffle(&mut self.rng);
                let (a, b): (Vec<u64>, Vec<u64>) = match kind {
                    FaultKind::PartitionLeader => {
                        let Some(leader) = self.leader().await else {
                            self.log("partition_leader: no leader to isolate".into());
                            return;
                        };
                        (
                            vec![leader],
                            members.into_iter().filter(|id| *id != leader).collect(),
                        )
                    }
                    FaultKind::PartitionBridge => {
                        // members[0] is the bridge: it sees both sides, which do not see
                        // each other.
                        let rest = &members[1..];
                        let half = rest.len() / 2;
                        (rest[..half].to_vec(), rest[half..].to_vec())
                    }
                    _ => {
                        let minority = members.len().saturating_sub(1) / 2;
                        let minority = minority.max(1);
                        (members[..minority].to_vec(), members[minority..].to_vec())
                    }
                };
                if a.is_empty() || b.is_empty() {
                    return;
                }
                let mut commands = Vec::new();
                for id in &a {
                    commands.push((*id, FaultCommand::Isolate(b.clone())));
                }
                for id in &b {
                    commands.push((*id, FaultCommand::Isolate(a.clone())));
                }
                let up: Vec<(u64, FaultCommand)> = {
                    let cluster = self.cluster();
                    commands
                        .into_iter()
                        .filter(|(id, _)| cluster.is_up(*id))
                        .collect()
                };
                self.fault_all(up).await;
                self.injected(kind, format!("{a:?} | {b:?}"));
                tokio::time::sleep(hold).await;
                self.heal_network().await;
                self.log("partition healed".into());
            }
            FaultKind::MessageLoss => {
                let probability = self.rng.random_range(0.1..0.4);
                let commands = running
                    .iter()
                    .map(|id| (*id, FaultCommand::SetDropProbability(probability)))
                    .collect();
                self.fault_all(commands).await;
                self.injected(
                    kind,
                    format!(
                        "every node drops {:.0}% of peer messages",
                        probability * 100.0
                    ),
                );
                tokio::time::sleep(hold).await;
                self.heal_network().await;
                self.log("message loss healed".into());
            }
            FaultKind::Snapshot => {
                let Some(id) = self.pick(&running) else {
                    return;
                };
                let addr = self.cluster().addr(id);
                match self.admin(addr, &AdminBody::Snapshot).await {
                    Ok(AdminReply::Snapshot { index }) => {
                        self.injected(kind, format!("node {id} snapshot at index {index}"))
                    }
                    Ok(other) => self.log(format!("snapshot: node {id} answered {other:?}")),
                    Err(error) => self.log(format!("snapshot: node {id}: {error}")),
                }
                tokio::time::sleep(hold / 2).await;
            }
            FaultKind::Membership => self.membership(hold).await,
        }
    }

    async fn membership(&mut self, hold: Duration) {
        let prepared = self.cluster().prepare_extra();
        let (id, addr) = match prepared {
            Ok(Some(extra)) => extra,
            Ok(None) => {
                self.log("membership: every reserved node id is used".into());
                return;
            }
            Err(error) => {
                self.log(format!("membership: {error}"));
                return;
            }
        };
        let started = self.cluster().start(id);
        if let Err(error) = started {
            self.log(format!("membership: {error}"));
            self.cluster().forget(id);
            return;
        }
        let add = AdminBody::AddMember {
            id,
            addr: addr.to_string(),
        };
        match admin_leader(&self.client, &add).await {
            Ok(_) => self.injected(FaultKind::Membership, format!("added node {id} at {addr}")),
            Err(error) => {
                self.log(format!("membership: adding node {id} failed: {error}"));
            }
        }
        tokio::time::sleep(hold).await;
        // Remove it again (retrying while another change is pending).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut removed = false;
        while Instant::now() < deadline {
            match admin_leader(&self.client, &AdminBody::RemoveMember { id }).await {
                Ok(_) => {
                    removed = true;
                    break;
                }
                Err(error) if error.contains("not a member") => {
                    removed = true;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        if removed {
            self.cluster().forget(id);
            self.log(format!("removed node {id}"));
        } else {
            self.log(format!(
                "membership: node {id} could not be removed; it stays a member"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_kinds_have_distinct_names() {
        let names: std::collections::BTreeSet<&str> =
            FaultKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), FaultKind::ALL.len());
    }
}
