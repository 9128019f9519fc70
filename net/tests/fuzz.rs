//! Fuzzing (bounded proptest runs that CI executes, scalable with `SHOAL_FUZZ_CASES`) of the
//! bytes a node reads from the network: frames (arbitrary, and valid frames mutated or cut)
//! and client requests inside them. Every input decodes to something that round-trips, waits
//! for more bytes, or fails; never a panic, never an oversized allocation. The crate's own
//! unit tests hold smaller fixed-count versions. Run longer with
//! `SHOAL_FUZZ_CASES=100000 cargo test -p shoal-net --release --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use shoal_net::frame::{decode_frame, frame_bytes};
use shoal_net::{ClientRequest, ClientResponse, ReadConsistency, RequestKind};

fn cases(default: u32) -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kind() -> impl Strategy<Value = RequestKind> {
    prop_oneof![
        Just(RequestKind::Write),
        Just(RequestKind::Admin),
        Just(RequestKind::Read(ReadConsistency::Linearizable)),
        Just(RequestKind::Read(ReadConsistency::Lease)),
        Just(RequestKind::Read(ReadConsistency::Stale)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    /// Arbitrary bytes: a frame (whose payload is then a request or a response), more bytes
    /// needed, or an error.
    #[test]
    fn arbitrary_bytes_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..4096), max in 0usize..8192) {
        if let Ok(Some((payload, used))) = decode_frame(&bytes, max) {
            prop_assert!(used <= bytes.len());
            prop_assert!(payload.len() <= max);
            if let Ok(request) = ClientRequest::from_bytes(payload) {
                let again = ClientRequest::from_bytes(&request.to_bytes().unwrap()).unwrap();
                prop_assert_eq!(again, request);
            }
            let _ = ClientResponse::from_bytes(payload);
        }
    }

    /// A valid framed request with bytes flipped, cut or appended.
    #[test]
    fn mutated_framed_requests_decode_or_fail(
        client_id in any::<u64>(),
        seq in any::<u64>(),
        kind in kind(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
        cut in any::<Option<prop::sample::Index>>(),
        extra in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let request = ClientRequest { client_id, seq, attempt: 0, kind, body };
        let framed = frame_bytes(&request.to_bytes().unwrap(), 1 << 20).unwrap();
        let (payload, used) = decode_frame(&framed, 1 << 20).unwrap().unwrap();
        prop_assert_eq!(used, framed.len());
        prop_assert_eq!(ClientRequest::from_bytes(payload).unwrap(), request);

        let mut bytes = framed.to_vec();
        for (at, mask) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Some(cut) = cut {
            let keep = cut.index(bytes.len());
            bytes.truncate(keep);
        }
        bytes.extend_from_slice(&extra);
        if let Ok(Some((payload, _))) = decode_frame(&bytes, 1 << 20)
            && let Ok(decoded) = ClientRequest::from_bytes(payload)
        {
            let again = ClientRequest::from_bytes(&decoded.to_bytes().unwrap()).unwrap();
            prop_assert_eq!(again, decoded);
        }
    }
}
