//! Fault injection for tests and chaos runs.
//!
//! A [`FaultHook`] is a cloneable handle shared by a [`crate::PeerTransport`] and whoever drives
//! the faults (a test, or the node's admin request handler). The transport consults it on every
//! peer message it sends and every peer message it receives:
//!
//! - traffic to a peer in the outbound block list is dropped before it is written;
//! - traffic from a peer in the inbound block list is dropped after it is read;
//! - any message is dropped with the configured probability;
//! - every surviving message is held back by the configured delay: on the sending side each
//!   batch waits before it is written (messages queued meanwhile join the next batch), on the
//!   receiving side each message is delivered its delay after it was read while reading goes
//!   on, so the delay is a latency, as a slow link adds, and never a throttle.
//!
//! A hook made with [`FaultHook::disabled`] ignores every setter and never drops or delays, so
//! a production node cannot be partitioned through it by mistake. Client traffic is never
//! affected.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
struct FaultState {
    blocked_outbound: HashSet<u64>,
    blocked_inbound: HashSet<u64>,
    drop_probability: f64,
    delay: Duration,
    rng: SmallRng,
}

#[derive(Debug)]
struct FaultInner {
    enabled: bool,
    state: Mutex<FaultState>,
    dropped: AtomicU64,
}

/// A cloneable handle on the faults a transport injects. See the module docs.
#[derive(Debug, Clone)]
pub struct FaultHook {
    inner: Arc<FaultInner>,
}

/// A copy of a hook's current settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSettings {
    /// Whether the hook acts at all.
    pub enabled: bool,
    /// Peers whose outbound traffic is dropped (sorted).
    pub blocked_outbound: Vec<u64>,
    /// Peers whose inbound traffic is dropped (sorted).
    pub blocked_inbound: Vec<u64>,
    /// Probability in `[0, 1]` of dropping any one message.
    pub drop_probability: f64,
    /// Delay added to each batch of messages.
    pub delay: Duration,
    /// Messages dropped by the hook so far.
    pub dropped: u64,
}

/// Direction of a message, seen from the local node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To a peer.
    Outbound,
    /// From a peer.
    Inbound,
}

impl FaultHook {
    /// A hook that injects faults once its setters are called; `seed` drives random drops.
    pub fn enabled(seed: u64) -> Self {
        Self::new(true, seed)
    }

    /// A hook that never injects anything, whatever is set on it.
    pub fn disabled() -> Self {
        Self::new(false, 0)
    }

    fn new(enabled: bool, seed: u64) -> Self {
        Self {
            inner: Arc::new(FaultInner {
                enabled,
                state: Mutex::new(FaultState {
                    blocked_outbound: HashSet::new(),
                    blocked_inbound: HashSet::new(),
                    drop_probability: 0.0,
                    delay: Duration::ZERO,
                    rng: SmallRng::seed_from_u64(seed),
                }),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Whether this hook can inject faults at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is
        // a single assignment), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops all traffic to and from each of `peers` (a symmetric partition).
    pub fn isolate(&self, peers: &[u64]) {
        let mut state = self.state();
        state.blocked_outbound.extend(peers);
        state.blocked_inbound.extend(peers);
    }

    /// Drops traffic from this node to `peer` only (an asymmetric partition).
    pub fn block_outbound(&self, peer: u64) {
        self.state().blocked_outbound.insert(peer);
    }

    /// Drops traffic from `peer` to this node only (an asymmetric partition).
    pub fn block_inbound(&self, peer: u64) {
        self.state().blocked_inbound.insert(peer);
    }

    /// Lets traffic to and from `peer` through again.
    pub fn unblock(&self, peer: u64) {
        let mut state = self.state();
        state.blocked_outbound.remove(&peer);
        state.blocked_inbound.remove(&peer);
    }

    /// Sets the probability of dropping any message (clamped to `[0, 1]`; NaN means 0).
    pub fn set_drop_probability(&self, probability: f64) {
        let probability = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        self.state().drop_probability = probability;
    }

    /// Sets the delay added to every batch of peer messages, both directions.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Removes every fault: no blocks, no random drops, no delay.
    pub fn heal(&self) {
        let mut state = self.state();
        state.blocked_outbound.clear();
        state.blocked_inbound.clear();
        state.drop_probability = 0.0;
        state.delay = Duration::ZERO;
    }

    /// The current settings and drop count.
    pub fn settings(&self) -> FaultSettings {
        let state = self.state();
        let mut blocked_outbound: Vec<u64> = state.blocked_outbound.iter().copied().collect();
        let mut blocked_inbound: Vec<u64> = state.blocked_inbound.iter().copied().collect();
        blocked_outbound.sort_unstable();
        blocked_inbound.sort_unstable();
        FaultSettings {
            enabled: self.inner.enabled,
            blocked_outbound,
            blocked_inbound,
            drop_probability: state.drop_probability,
            delay: state.delay,
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }

    /// Whether one message to or from `peer` must be dropped. Counts the drop.
    pub fn should_drop(&self, peer: u64, direction: Direction) -> bool {
        if !self.inner.enabled {
            return false;
        }
        let mut state = self.state();
        let blocked = match direction {
            Direction::Outbound => state.blocked_outbound.contains(&peer),
            Direction::Inbound => state.blocked_inbound.contains(&peer),
        };
        let probability = state.drop_probability;
        let drop = blocked || (probability > 0.0 && state.rng.random_bool(probability));
        if drop {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop
    }

    /// The delay to add before a batch is written or delivered (zero when disabled).
    pub fn delay(&self) -> Duration {
        if !self.inner.enabled {
            return Duration::ZERO;
        }
        self.state().delay
    }
}

/// A fault-hook change as a wire-friendly value, for an admin request that drives a node's hook
/// from outside (`shoal chaos`). Apply it with [`FaultHook::apply`].
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum FaultCommand {
    /// [`FaultHook::isolate`].
    Isolate(Vec<u64>),
    /// [`FaultHook::block_outbound`].
    BlockOutbound(u64),
    /// [`FaultHook::block_inbound`].
    BlockInbound(u64),
    /// [`FaultHook::unblock`].
    Unblock(u64),
    /// [`FaultHook::set_drop_probability`].
    SetDropProbability(f64),
    /// [`FaultHook::set_delay`], in milliseconds.
    SetDelayMillis(u64),
    /// [`FaultHook::heal`].
    Heal,
}

impl FaultHook {
    /// Applies `command`. Returns whether the hook is enabled (a disabled hook ignores it).
    pub fn apply(&self, command: &FaultCommand) -> bool {
        match command {
            FaultCommand::Isolate(peers) => self.isolate(peers),
            FaultCommand::BlockOutbound(peer) => self.block_outbound(*peer),
            FaultCommand::BlockInbound(peer) => self.block_inbound(*peer),
            FaultCommand::Unblock(peer) => self.unblock(*peer),
            FaultCommand::SetDropProbability(probability) => {
                self.set_drop_probability(*probability)
            }
            FaultCommand::SetDelayMillis(millis) => self.set_delay(Duration::from_millis(*millis)),
            FaultCommand::Heal => self.heal(),
        }
        self.is_enabled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_hook_never_drops() {
        let hook = FaultHook::disabled();
        hook.isolate(&[1, 2]);
        hook.set_drop_probability(1.0);
        hook.set_delay(Duration::from_secs(5));
        assert!(!hook.should_drop(1, Direction::Outbound));
        assert_eq!(hook.delay(), Duration::ZERO);
    }

    #[test]
    fn partitions_are_directional_and_heal() {
        let hook = FaultHook::enabled(1);
        hook.block_outbound(2);
        assert!(hook.should_drop(2, Direction::Outbound));
        assert!(!hook.should_drop(2, Direction::Inbound));
        assert!(!hook.should_drop(3, Direction::Outbound));
        hook.isolate(&[3]);
        assert!(hook.should_drop(3, Direction::Inbound));
        let clone = hook.clone();
        clone.heal();
        assert!(!hook.should_drop(2, Direction::Outbound));
        assert!(!hook.should_drop(3, Direction::Inbound));
        assert_eq!(hook.settings().dropped, 2);
    }

    #[test]
    fn commands_apply_and_round_trip() {
        let hook = FaultHook::enabled(3);
        let commands = [
            FaultCommand::Isolate(vec![4, 5]),
            FaultCommand::BlockOutbound(6),
            FaultCommand::BlockInbound(7),
            FaultCommand::Unblock(5),
            FaultCommand::SetDropProbability(0.25),
            FaultCommand::SetDelayMillis(30),
        ];
        for command in &commands {
            let bytes = crate::codec::encode(command).unwrap();
            let decoded: FaultCommand = crate::codec::decode(&bytes).unwrap();
            assert_eq!(&decoded, command);
            assert!(hook.apply(&decoded));
        }
        let settings = hook.settings();
        assert_eq!(settings.blocked_outbound, vec![4, 6]);
        assert_eq!(settings.blocked_inbound, vec![4, 7]);
        assert_eq!(settings.drop_probability, 0.25);
        assert_eq!(settings.delay, Duration::from_millis(30));
        hook.apply(&FaultCommand::Heal);
        assert!(hook.settings().blocked_inbound.is_empty());
        assert!(!FaultHook::disabled().apply(&FaultCommand::Heal));
    }

    #[test]
    fn random_drops_follow_probability() {
        let hook = FaultHook::enabled(42);
        hook.set_drop_probability(0.5);
        let dropped = (0..10_000)
            .filter(|_| hook.should_drop(1, Direction::Outbound))
            .count();
        assert!((4_000..6_000).contains(&dropped), "{dropped}");
        hook.set_drop_probability(f64::NAN);
        assert!(!hook.should_drop(1, Direction::Outbound));
    }
}
