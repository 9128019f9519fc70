//! Fuzzing (bounded proptest runs that CI executes) of snapshot restore: a shop restored
//! from arbitrary or mutated snapshot bytes (what a peer streams in chunks) either takes the
//! snapshot or refuses it with an error and keeps serving its previous state; never a panic.
//! Also: requests and queries decoded from arbitrary bytes. Run longer with
//! `SHOAL_FUZZ_CASES=10000 cargo test -p shoal-shop --release --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Harness;
use proptest::prelude::*;
use shoal_engine::StateMachine;
use shoal_shop::{Query, Request, Response};

fn cases(default: u32) -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A shop holding `keys` kv pairs, and the bytes of its snapshot.
fn snapshot_of(keys: u8) -> Vec<u8> {
    let mut h = Harness::new();
    for k in 0..keys {
        h.propose(Request::KvPut {
            key: vec![b'k', k],
            value: vec![k; 1 + k as usize % 40],
        })
        .unwrap();
    }
    let image = h.shop().snapshot().unwrap();
    let mut bytes = Vec::new();
    image.write_to(&mut bytes).unwrap();
    bytes
}

/// A shop with one known key, restored from `bytes`: it takes them or refuses them and
/// still answers with its own state.
fn restore_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    h.propose(Request::KvPut {
        key: b"mine".to_vec(),
        value: b"before".to_vec(),
    })
    .unwrap();
    let restored = h.shop().restore(1_000, &mut &bytes[..]);
    let mine = h.query(Query::KvGet {
        key: b"mine".to_vec(),
    });
    match restored {
        Ok(()) => {
            // Whatever was taken is now the state: queries still work.
            prop_assert!(mine.is_ok(), "{mine:?}");
        }
        Err(_) => {
            prop_assert_eq!(
                mine,
                Ok(Response::KvValue {
                    key: b"mine".to_vec(),
                    value: Some(b"before".to_vec())
                })
            );
        }
    }
    // And the shop still applies requests.
    let after = h.propose(Request::KvPut {
        key: b"after".to_vec(),
        value: b"x".to_vec(),
    });
    prop_assert!(after.is_ok(), "{after:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    /// Snapshot bytes with flipped bytes, cut short or extended.
    #[test]
    fn mutated_snapshots_restore_or_refuse(
        keys in 0u8..20,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in any::<Option<prop::sample::Index>>(),
        extra in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut bytes = snapshot_of(keys);
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
        restore_checked(&bytes)?;
    }

    /// Arbitrary bytes as a snapshot.
    #[test]
    fn arbitrary_snapshot_bytes_restore_or_refuse(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        restore_checked(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    /// Log entries and read requests arrive as bytes: decoding arbitrary bytes never panics.
    #[test]
    fn arbitrary_request_and_query_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(request) = Request::decode(&bytes) {
            let _ = request.validate();
        }
        let _ = Query::decode(&bytes);
        let _ = shoal_shop::decode_reply(&bytes);
    }
}
