//! Chat and the kv namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, exit_code, invalid_field};
use shoal_shop::{Action, KvEntry, MessageView, Query, Request, Response, ShopError};

fn read(
    h: &mut Harness,
    token: &str,
    unread_only: bool,
    after: Option<u64>,
    limit: u32,
) -> (Vec<MessageView>, Option<u64>) {
    match h.act(
        token,
        Action::ChatRead {
            unread_only,
            after,
            limit,
        },
    ) {
        Ok(Response::Messages { messages, next }) => (messages, next),
        other => panic!("{other:?}"),
    }
}

#[test]
fn chat_send_read_unread_delete() {
    let mut h = Harness::new();
    h.signup_customer("Al", "al@example.com");
    h.signup_owner("Bo", "bo@example.com");
    h.signup_customer("Cy", "cy@example.com");
    let al = h.login("al@example.com");
    let bo = h.login("bo@example.com");
    let cy = h.login("cy@example.com");
    let send = |to: &str, text: &str| Action::ChatSend {
        to_email: to.into(),
        text: text.into(),
    };
    let Ok(Response::MessageSent { message_id: m1 }) =
        h.act(&al, send("BO@example.com", "do you have size 42?"))
    else {
        panic!()
    };
    h.now += 5;
    let Ok(Response::MessageSent { message_id: m2 }) =
        h.act(&al, send("bo@example.com", "and 43?"))
    else {
        panic!()
    };
    // Read unread only: both, marked read.
    let (msgs, next) = read(&mut h, &bo, true, None, 10);
    assert_eq!(
        msgs.iter().map(|m| m.message_id).collect::<Vec<_>>(),
        [m1, m2]
    );
    assert_eq!(msgs[0].from_email, "al@example.com");
    assert_eq!(msgs[0].text, "do you have size 42?");
    assert_eq!(msgs[1].sent_at_ms, msgs[0].sent_at_ms + 5);
    assert!(msgs.iter().all(|m| !m.was_read));
    assert_eq!(next, None);
    assert!(read(&mut h, &bo, true, None, 10).0.is_empty(), "now read");
    let (all, _) = read(&mut h, &bo, false, None, 10);
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|m| m.was_read));
    // Paging.
    let (page, next) = read(&mut h, &bo, false, None, 1);
    assert_eq!((page[0].message_id, next), (m1, Some(m1)));
    let (page, _) = read(&mut h, &bo, false, next, 1);
    assert_eq!(page[0].message_id, m2);
    // Nobody else reads it; a third party may not delete it.
    assert!(read(&mut h, &cy, false, None, 10).0.is_empty());
    assert!(matches!(
        h.act(&cy, Action::ChatDelete { message_id: m1 }),
        Err(ShopError::Forbidden { .. })
    ));
    // Recipient deletes one, sender the other.
    assert_eq!(
        h.act(&bo, Action::ChatDelete { message_id: m1 }),
        Ok(Response::Done)
    );
    assert_eq!(
        h.act(&al, Action::ChatDelete { message_id: m2 }),
        Ok(Response::Done)
    );
    assert!(read(&mut h, &bo, false, None, 10).0.is_empty());
    assert_eq!(
        exit_code(&h.act(&bo, Action::ChatDelete { message_id: m1 })),
        3
    );
    // Refusals.
    assert_eq!(exit_code(&h.act(&al, send("nobody@example.com", "hi"))), 3);
    assert_eq!(invalid_field(&h.act(&al, send("not-an-email", "hi"))), "to");
    assert_eq!(
        invalid_field(&h.act(&al, send("bo@example.com", ""))),
        "text"
    );
    assert_eq!(
        invalid_field(&h.act(&al, send("bo@example.com", &"x".repeat(4001)))),
        "text"
    );
    assert_eq!(
        invalid_field(&h.act(
            &al,
            Action::ChatRead {
                unread_only: false,
                after: None,
                limit: 0
            }
        )),
        "limit"
    );
    assert_eq!(
        exit_code(&h.act(&"00".repeat(32), send("bo@example.com", "hi"))),
        5
    );
}

#[test]
fn kv_put_get_del_cas_scan() {
    let mut h = Harness::new();
    let get = |h: &Harness, k: &str| match h.query(Query::KvGet {
        key: k.as_bytes().to_vec(),
    }) {
        Ok(Response::KvValue { value, .. }) => value,
        other => panic!("{other:?}"),
    };
    let put = |k: &str, v: &str| Request::KvPut {
        key: k.into(),
        value: v.into(),
    };
    assert_eq!(h.propose(put("a/1", "x")), Ok(Response::Done));
    h.propose(put("a/2", "y")).unwrap();
    h.propose(put("b/1", "z")).unwrap();
    assert_eq!(get(&h, "a/1"), Some(b"x".to_vec()));
    assert_eq!(get(&h, "nope"), None);
    // CAS: mismatch names the current value; absent-expected works.
    let cas = |k: &str, e: Option<&str>, n: &str| Request::KvCas {
        key: k.into(),
        expected: e.map(|e| e.as_bytes().to_vec()),
        new: n.into(),
    };
    let reply = h.propose(cas("a/1", Some("wrong"), "w"));
    assert_eq!(
        reply,
        Err(ShopError::CasMismatch {
            key: "a/1".into(),
            current: Some(b"x".to_vec())
        })
    );
    assert_eq!(exit_code(&reply), 4);
    assert_eq!(h.propose(cas("a/1", Some("x"), "w")), Ok(Response::Done));
    assert_eq!(get(&h, "a/1"), Some(b"w".to_vec()));
    assert_eq!(exit_code(&h.propose(cas("a/1", None, "v"))), 4);
    assert_eq!(h.propose(cas("c", None, "new")), Ok(Response::Done));
    // Scan by prefix, in key order, limited.
    let scan = |h: &Harness, p: &str, limit| match h.query(Query::KvScan {
        after: None,
        prefix: p.into(),
        limit,
    }) {
        Ok(Response::KvEntries { entries, .. }) => entries,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        scan(&h, "a/", 10),
        [
            KvEntry {
                key: b"a/1".to_vec(),
                value: b"w".to_vec()
            },
            KvEntry {
                key: b"a/2".to_vec(),
                value: b"y".to_vec()
            }
        ]
    );
    assert_eq!(scan(&h, "", 10).len(), 4);
    assert_eq!(scan(&h, "", 2).len(), 2);
    // Paging with `after`.
    let Ok(Response::KvEntries { entries, next }) = h.query(Query::KvScan {
        prefix: vec![],
        after: None,
        limit: 3,
    }) else {
        panic!()
    };
    assert_eq!(entries.len(), 3);
    assert_eq!(next.as_deref(), Some(&b"b/1"[..]));
    let Ok(Response::KvEntries { entries, next }) = h.query(Query::KvScan {
        prefix: vec![],
        after: next,
        limit: 3,
    }) else {
        panic!()
    };
    assert_eq!(
        entries,
        [KvEntry {
            key: b"c".to_vec(),
            value: b"new".to_vec()
        }]
    );
    assert_eq!(next, None);
    // Delete.
    assert_eq!(
        h.propose(Request::KvDelete { key: "a/1".into() }),
        Ok(Response::KvDeleted { existed: true })
    );
    assert_eq!(
        h.propose(Request::KvDelete { key: "a/1".into() }),
        Ok(Response::KvDeleted { existed: false })
    );
    assert_eq!(get(&h, "a/1"), None);
    // Bounds.
    assert_eq!(invalid_field(&h.propose(put("", "v"))), "key");
    assert_eq!(
        invalid_field(&h.propose(put(&"k".repeat(1025), "v"))),
        "key"
    );
    assert_eq!(
        invalid_field(&h.propose(Request::KvPut {
            key: "k".into(),
            value: vec![0; 64 * 1024 + 1]
        })),
        "value"
    );
    assert_eq!(
        invalid_field(&h.query(Query::KvScan {
            after: None,
            prefix: vec![],
            limit: 0
        })),
        "limit"
    );
}

#[test]
fn big_pages_stop_at_the_byte_budget_and_resume() {
    let mut h = Harness::new();
    for i in 0..60u8 {
        h.propose(Request::KvPut {
            key: vec![b'k', i],
            value: vec![i; 60 * 1024],
        })
        .unwrap();
    }
    let mut after = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let Ok(Response::KvEntries { entries, next }) = h.query(Query::KvScan {
            prefix: b"k".to_vec(),
            after: after.clone(),
            limit: 1000,
        }) else {
            panic!()
        };
        pages += 1;
        let bytes: usize = entries.iter().map(|e| e.key.len() + e.value.len()).sum();
        assert!(bytes <= shoal_shop::validate::MAX_PAGE_BYTES);
        seen.extend(entries.into_iter().map(|e| e.key[1]));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert!(pages >= 2);
    assert_eq!(seen, (0..60u8).collect::<Vec<_>>());
}

#[test]
fn reads_in_the_same_batch_see_earlier_writes() {
    let mut h = Harness::new();
    let replies = h.propose_batch(&[
        Request::KvPut {
            key: "k".into(),
            value: "1".into(),
        },
        Request::KvCas {
            key: "k".into(),
            expected: Some("1".into()),
            new: "2".into(),
        },
        Request::KvPut {
            key: "k2".into(),
            value: "x".into(),
        },
        Request::KvDelete { key: "k2".into() },
        Request::KvCas {
            key: "k".into(),
            expected: Some("1".into()),
            new: "3".into(),
        },
    ]);
    assert!(replies[..4].iter().all(Result::is_ok));
    assert!(matches!(
        replies[3],
        Ok(Response::KvDeleted { existed: true })
    ));
    assert!(matches!(replies[4], Err(ShopError::CasMismatch { .. })));
    let Ok(Response::KvEntries { entries, .. }) = h.query(Query::KvScan {
        after: None,
        prefix: vec![],
        limit: 10,
    }) else {
        panic!()
    };
    assert_eq!(
        entries,
        [KvEntry {
            key: b"k".to_vec(),
            value: b"2".to_vec()
        }]
    );
}

mod fuzz {
    use super::common::Harness;
    use proptest::prelude::*;
    use shoal_engine::StateMachine;
    use shoal_shop::{Action, Auth, Query, Request};

    fn valid_payloads() -> Vec<Vec<u8>> {
        vec![
            Request::KvPut {
                key: "k".into(),
                value: "v".into(),
            }
            .encode(),
            Request::Authed {
                auth: Auth::new("ab".repeat(32), 5),
                action: Action::Checkout,
            }
            .encode(),
            Request::Authed {
                auth: Auth::new("ab".repeat(32), 5),
                action: Action::ChatSend {
                    to_email: "a@b.co".into(),
                    text: "hi".into(),
                },
            }
            .encode(),
            Query::Products(Default::default()).encode(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Random and mutated payloads are answered with a decodable reply, never a panic or
        /// a storage error, and the applied index advances past them.
        #[test]
        fn arbitrary_bytes_are_answered(
            which in 0usize..4,
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            noise in prop::collection::vec(any::<u8>(), 0..256),
            use_noise in any::<bool>(),
        ) {
            let mut h = Harness::new();
            let mut payload = if use_noise { noise } else { valid_payloads()[which].clone() };
            if !payload.is_empty() {
                for (pos, byte) in flips {
                    let n = payload.len();
                    payload[pos % n] ^= byte;
                }
            }
            let _reply = h.apply_raw(0, 0, &payload);
            prop_assert_eq!(h.index, 1);
            let bytes = h.shop.as_ref().unwrap().query(&payload);
            prop_assert!(bytes.is_ok());
            prop_assert!(shoal_shop::decode_reply(&bytes.unwrap()).is_ok());
        }
    }
}
