//! [`MemoryNode`]: a [`NodeApi`] without Raft. A real [`Shop`] state machine in a directory,
//! each proposal applied at once as the next log index. One node, always the leader unless a
//! test says otherwise ([`MemoryNode::set_leader`]); for tests of everything above the Raft
//! layer (the handler, the CLI against a real QUIC endpoint).

use std::path::Path;
use std::sync::Mutex;

use shoal_engine::{Command, StateMachine};
use shoal_net::{FaultCommand, ReadConsistency};
use shoal_shop::{Shop, StoreError};

use super::{NodeApi, NodeError};
use crate::api::{MemberInfo, NodeRole, NodeStatus};

struct State {
    shop: Shop,
    last_index: u64,
    snapshot_index: u64,
    leader: Option<u64>,
    members: Vec<MemberInfo>,
    faults: Vec<FaultCommand>,
}

/// A single in-process node applying proposals directly to a [`Shop`].
pub struct MemoryNode {
    id: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn failed(error: StoreError) -> NodeError {
    NodeError::Failed(error.to_string())
}

impl MemoryNode {
    /// Opens (or creates) the shop state in `dir`; node `id` is the leader and only member,
    /// reachable at `addr`.
    pub fn open(id: u64, addr: Option<String>, dir: &Path) -> Result<Self, StoreError> {
        let shop = Shop::open(dir)?;
        let last_index = shop.applied_index();
        Ok(Self {
            id,
            state: Mutex::new(State {
                shop,
                last_index,
                snapshot_index: 0,
                leader: Some(id),
                members: vec![MemberInfo {
                    id,
                    addr,
                    voter: true,
                }],
                faults: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pretends `leader` is the leader (None: no leader known). Writes and admin changes
    /// then fail with [`NodeError::NotLeader`] unless it is this node.
    pub fn set_leader(&self, leader: Option<u64>) {
        self.lock().leader = leader;
    }

    /// The fault commands received so far.
    pub fn faults(&self) -> Vec<FaultCommand> {
        self.lock().faults.clone()
    }

    fn check_leader(&self, state: &State) -> Result<(), NodeError> {
        if state.leader == Some(self.id) {
            Ok(())
        } else {
            Err(NodeError::NotLeader {
                leader: state.leader,
            })
        }
    }
}

impl NodeApi for MemoryNode {
    fn node_id(&self) -> u64 {
        self.id
    }

    async fn propose(
        &self,
        client_id: u64,
        seq: u64,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, NodeError> {
        let mut state = self.lock();
        self.check_leader(&state)?;
        let index = state.last_index + 1;
        let command = Command {
            index,
            term: 1,
            client_id,
            seq,
            payload: &payload,
        };
        let mut replies = state.shop.apply(&[command]).map_err(failed)?;
        state.last_index = index;
        replies
            .pop()
            .ok_or_else(|| NodeError::Failed("the state machine gave no reply".into()))
    }

    async fn read(
        &self,
        query: Vec<u8>,
        consistency: ReadConsistency,
    ) -> Result<Vec<u8>, NodeError> {
        let state = self.lock();
        if consistency != ReadConsistency::Stale {
            self.check_leader(&state)?;
        }
        state.shop.query(&query).map_err(failed)
    }

    fn status(&self) -> NodeStatus {
        let state = self.lock();
        let is_leader = state.leader == Some(self.id);
        NodeStatus {
            id: self.id,
            role: if is_leader {
                NodeRole::Leader
            } else {
                NodeRole::Follower
            },
            term: 1,
            leader: state.leader,
            commit_index: state.last_index,
            applied_index: state.shop.applied_index(),
            last_index: state.last_index,
            snapshot_index: state.snapshot_index,
            wal_bytes: 0,
        }
    }

    fn members(&self) -> Vec<MemberInfo> {
        self.lock().members.clone()
    }

    async fn add_member(&self, id: u64, addr: String) -> Result<(), NodeError> {
        let mut state = self.lock();
        self.check_leader(&state)?;
        if state.members.iter().any(|m| m.id == id) {
            return Err(NodeError::Conflict(format!(
                "node {id} is already a member"
            )));
        }
        state.members.push(MemberInfo {
            id,
            addr: Some(addr),
            voter: true,
        });
        Ok(())
    }

    async fn remove_member(&self, id: u64) -> Result<(), NodeError> {
        let mut state = self.lock();
        self.check_leader(&state)?;
        let before = state.members.len();
        state.members.retain(|m| m.id != id);
        if state.members.len() == before {
            return Err(NodeError::NotFound(format!("node {id} is not a member")));
        }
        Ok(())
    }

    async fn transfer_leader(&self, to: u64) -> Result<(), NodeError> {
        let state = self.lock();
        self.check_leader(&state)?;
        if !state.members.iter().any(|m| m.id == to) {
            return Err(NodeError::NotFound(format!("node {to} is not a member")));
        }
        if to == self.id {
            return Ok(());
        }
        Err(NodeError::Conflict(format!(
            "node {to} cannot take over: the in-memory node has no peers"
        )))
    }

    async fn snapshot(&self) -> Result<u64, NodeError> {
        let mut state = self.lock();
        state.shop.sync().map_err(failed)?;
        state.snapshot_index = state.shop.applied_index();
        Ok(state.snapshot_index)
    }

    fn fault(&self, command: &FaultCommand) -> Result<(), NodeError> {
        self.lock().faults.push(command.clone());
        Ok(())
    }
}
