//! [`QuicTransport`]: the engine's [`Transport`] over the `net` crate's [`PeerTransport`], and
//! [`pump_inbound`], which carries authenticated peer messages into the node.
//!
//! Outbound, every Raft [`Message`] is rkyv-encoded and queued on the peer's ordered lane,
//! except snapshot chunks (`InstallSnapshot`), which go on a bulk stream from a spawned task so
//! a megabyte of snapshot never waits behind (or delays) heartbeats. Inbound, bytes are decoded
//! and validated; a message whose claimed sender differs from the sender its certificate proves
//! is dropped with a warning, as is anything that does not decode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_engine::core::Bytes;
use shoal_engine::core::{Message, MessageBody};
use shoal_engine::driver::{NodeHandle, Transport};
use shoal_net::{InboundMessage, PeerTransport, SendError};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

/// Most snapshot chunks being sent at once; more are dropped (the leader sends them again).
const MAX_BULK_IN_FLIGHT: usize = 16;

/// The engine's [`Transport`] over QUIC.
#[derive(Debug, Clone)]
pub struct QuicTransport {
    peers: Arc<PeerTransport>,
    runtime: tokio::runtime::Handle,
    bulk_slots: Arc<Semaphore>,
}

impl QuicTransport {
    /// Wraps `peers`. Must be called inside a tokio runtime (snapshot chunks are sent from
    /// tasks spawned on it).
    pub fn new(peers: Arc<PeerTransport>) -> Self {
        Self {
            peers,
            runtime: tokio::runtime::Handle::current(),
            bulk_slots: Arc::new(Semaphore::new(MAX_BULK_IN_FLIGHT)),
        }
    }

    /// The underlying peer transport.
    pub fn peers(&self) -> &Arc<PeerTransport> {
        &self.peers
    }

    fn send_one(&self, message: &Message) {
        let to = message.to;
        let bytes = match message.encode() {
            Ok(bytes) => Bytes::from(bytes.into_vec()),
            Err(error) => {
                warn!(peer = to, %error, "cannot encode a raft message; dropped");
                return;
            }
        };
        if matches!(message.body, MessageBody::InstallSnapshot { .. }) {
            let Ok(permit) = self.bulk_slots.clone().try_acquire_owned() else {
                debug!(
                    peer = to,
                    "too many snapshot chunks in flight; chunk dropped"
                );
                return;
            };
            let peers = self.peers.clone();
            self.runtime.spawn(async move {
                if let Err(error) = peers.send_bulk(to, bytes).await {
                    debug!(peer = to, %error, "snapshot chunk not sent");
                }
                drop(permit);
            });
            return;
        }
        match self.peers.send(to, bytes) {
            Ok(()) => {}
            Err(error @ SendError::TooLarge { .. }) => {
                warn!(peer = to, %error, "raft message dropped");
            }
            Err(error) => debug!(peer = to, %error, "raft message dropped"),
        }
    }
}

impl Transport for QuicTransport {
    fn send(&self, messages: Vec<Message>) {
        for message in &messages {
            self.send_one(message);
        }
    }
}

/// When each peer was last heard from (any valid message), so the node can tell a silent
/// leader from a live one.
#[derive(Debug, Default)]
pub struct PeerActivity {
    last_heard: Mutex<HashMap<u64, Instant>>,
}

impl PeerActivity {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.last_heard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a message from `peer` now.
    pub fn heard(&self, peer: u64) {
        self.lock().insert(peer, Instant::now());
    }

    /// How long ago `peer` was last heard from (`None`: never).
    pub fn silence(&self, peer: u64) -> Option<Duration> {
        self.lock().get(&peer).map(Instant::elapsed)
    }
}

/// Why an inbound payload was not delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The bytes are not a valid Raft message.
    Garbage(String),
    /// The message claims a sender other than the authenticated peer.
    ForgedSender {
        /// The sender its certificate proves.
        authenticated: u64,
        /// The sender the message names.
        claimed: u64,
    },
    /// The message is addressed to another node.
    WrongRecipient {
        /// The node the message names.
        to: u64,
    },
}

/// Decodes one inbound payload for node `me`, checking sender and recipient.
pub fn accept_inbound(me: u64, inbound: &InboundMessage) -> Result<Message, Rejected> {
    let message =
        Message::decode(&inbound.payload).map_err(|error| Rejected::Garbage(error.to_string()))?;
    if message.from != inbound.from {
        return Err(Rejected::ForgedSender {
            authenticated: inbound.from,
            claimed: message.from,
        });
    }
    if message.to != me {
        return Err(Rejected::WrongRecipient { to: message.to });
    }
    Ok(message)
}

/// Delivers messages from `inbound` to `node` until the channel closes. Never fails: invalid
/// messages are logged and dropped.
pub async fn pump_inbound(
    mut inbound: mpsc::Receiver<InboundMessage>,
    node: NodeHandle,
    activity: Arc<PeerActivity>,
) {
    let me = node.id();
    while let Some(message) = inbound.recv().await {
        match accept_inbound(me, &message) {
            Ok(decoded) => {
                activity.heard(decoded.from);
                node.deliver(decoded);
            }
            Err(Rejected::Garbage(error)) => {
                warn!(peer = message.from, bytes = message.payload.len(), %error, "undecodable peer message dropped");
            }
            Err(Rejected::ForgedSender {
                authenticated,
                claimed,
            }) => {
                warn!(
                    peer = authenticated,
                    claimed, "peer message claiming another sender dropped"
                );
            }
            Err(Rejected::WrongRecipient { to }) => {
                warn!(
                    peer = message.from,
                    to, "peer message addressed to another node dropped"
                );
            }
        }
    }
    debug!(node = me, "peer message channel closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_net::Lane;

    fn inbound(from: u64, payload: Vec<u8>) -> InboundMessage {
        InboundMessage {
            from,
            payload: Bytes::from(payload),
            lane: Lane::Ordered,
        }
    }

    fn heartbeat(from: u64, to: u64) -> Vec<u8> {
        Message {
            from,
            to,
            term: 3,
            body: MessageBody::Heartbeat {
                commit: 7,
                round: 1,
            },
        }
        .encode()
        .unwrap()
        .into_vec()
    }

    #[test]
    fn a_valid_message_from_its_sender_is_accepted() {
        let message = accept_inbound(2, &inbound(1, heartbeat(1, 2))).unwrap();
        assert_eq!((message.from, message.to, message.term), (1, 2, 3));
    }

    #[test]
    fn a_forged_sender_is_refused() {
        assert_eq!(
            accept_inbound(2, &inbound(3, heartbeat(1, 2))),
            Err(Rejected::ForgedSender {
                authenticated: 3,
                claimed: 1
            })
        );
    }

    #[test]
    fn a_message_for_another_node_is_refused() {
        assert_eq!(
            accept_inbound(2, &inbound(1, heartbeat(1, 3))),
            Err(Rejected::WrongRecipient { to: 3 })
        );
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            // Whatever the bytes, an answer and no panic.
            let _ = accept_inbound(2, &inbound(1, bytes));
        }
        let mut valid = heartbeat(1, 2);
        valid.truncate(valid.len() / 2);
        assert!(matches!(
            accept_inbound(2, &inbound(1, valid)),
            Err(Rejected::Garbage(_))
        ));
    }
}
