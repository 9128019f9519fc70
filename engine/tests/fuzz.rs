//! Fuzzing (bounded proptest runs that CI executes) of the bytes the engine decodes from the
//! network and the log: Raft messages, proposals and membership entries. Arbitrary or
//! mutated bytes must decode to a value (that round-trips) or to an error, never panic.
//! Run longer with `SHOAL_FUZZ_CASES=100000 cargo test -p shoal-engine --release --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use shoal_engine::core::{
    Bytes, Entry, EntryKind, Membership, Message, MessageBody, Proposal, RejectHint,
};

fn cases(default: u32) -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        1u64..1_000,
        0u64..10,
        prop_oneof![
            Just(EntryKind::Blank),
            Just(EntryKind::Normal),
            Just(EntryKind::Config)
        ],
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(index, term, kind, data)| Entry {
            index,
            term,
            kind,
            data: Bytes::from(data),
        })
}

fn body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(entry(), 0..4),
            any::<u64>()
        )
            .prop_map(
                |(prev_index, prev_term, entries, commit)| MessageBody::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                }
            ),
        (
            any::<Option<u64>>(),
            any::<Option<(u64, Option<u64>, u64)>>()
        )
            .prop_map(|(match_index, reject)| MessageBody::AppendResponse {
                match_index,
                reject: reject.map(|(rejected_prev_index, conflict_term, conflict_index)| {
                    RejectHint {
                        rejected_prev_index,
                        conflict_term,
                        conflict_index,
                    }
                }),
            }),
        Just(MessageBody::TimeoutNow),
        any::<u64>().prop_map(|id| MessageBody::ReadIndex { id }),
        (any::<u64>(), any::<Option<u64>>())
            .prop_map(|(id, index)| MessageBody::ReadIndexResponse { id, index }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(from, to, term, body)| Message {
        from,
        to,
        term,
        body,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    /// Arbitrary bytes never panic the message decoder; what it accepts round-trips.
    #[test]
    fn arbitrary_bytes_never_panic_message_decode(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(message) = Message::decode(&bytes) {
            let again = Message::decode(&message.encode().unwrap()).unwrap();
            prop_assert_eq!(again, message);
        }
    }

    /// Valid messages round-trip; with bytes flipped, cut or extended they decode to some
    /// valid message or fail, never panic.
    #[test]
    fn mutated_messages_decode_or_fail(
        message in message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
        cut in any::<Option<prop::sample::Index>>(),
        extra in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let encoded = message.encode().unwrap().to_vec();
        prop_assert_eq!(Message::decode(&encoded).unwrap(), message);
        let mut bytes = encoded;
        if !bytes.is_empty() {
            for (at, mask) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            if let Some(cut) = cut {
                let keep = cut.index(bytes.len());
                bytes.truncate(keep);
            }
        }
        bytes.extend_from_slice(&extra);
        if let Ok(decoded) = Message::decode(&bytes) {
            let again = Message::decode(&decoded.encode().unwrap()).unwrap();
            prop_assert_eq!(again, decoded);
        }
    }

    /// Entry payloads from the log: proposals and membership configurations.
    #[test]
    fn arbitrary_entry_data_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(proposal) = Proposal::decode(&bytes) {
            let again = Proposal::decode(&Proposal::encode(proposal.client_id, proposal.seq, &proposal.payload)).unwrap();
            prop_assert_eq!(again, proposal);
        }
        if let Ok(membership) = Membership::decode(&bytes) {
            // Decoding normalises: sorted, deduplicated, learners disjoint from voters.
            prop_assert!(membership.voters.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(membership.learners.iter().all(|l| !membership.voters.contains(l)));
        }
    }
}
