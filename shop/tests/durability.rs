//! Exactly-once, restarts, snapshots and restore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, exit_code};
use shoal_engine::{Command, StateMachine};
use shoal_shop::{
    Action, ProductFilter, Query, Request, Response, Shop, ShopError, StoreError, decode_reply,
};

/// Fills a harness with a bit of everything; returns the customer and owner tokens.
fn populate(h: &mut Harness) -> (String, String) {
    h.signup_owner("Olga", "olga@example.com");
    h.signup_customer("Carl", "carl@example.com");
    let olga = h.login("olga@example.com");
    let carl = h.login("carl@example.com");
    let store = h.create_store(&olga, "Shoes");
    for i in 0..30 {
        h.add_product(
            &olga,
            store,
            &format!("P{i}"),
            ["footwear", "hats"][i % 2],
            "Acme",
            "42",
            100 + i as i64 * 7,
            5,
        );
    }
    h.act(
        &carl,
        Action::CartAdd {
            product_id: 3,
            qty: 2,
        },
    )
    .unwrap();
    h.act(&carl, Action::Checkout).unwrap();
    h.act(
        &carl,
        Action::CartAdd {
            product_id: 4,
            qty: 1,
        },
    )
    .unwrap();
    h.act(
        &carl,
        Action::ChatSend {
            to_email: "olga@example.com".into(),
            text: "hello".into(),
        },
    )
    .unwrap();
    for i in 0..20 {
        h.propose(Request::KvPut {
            key: format!("k{i:02}").into_bytes(),
            value: vec![i as u8; 10],
        })
        .unwrap();
    }
    (carl, olga)
}

/// Every query the test suite cares about, as encoded replies.
fn fingerprint(h: &Harness, carl: &str, olga: &str) -> Vec<Vec<u8>> {
    let mut queries = vec![
        Query::Products(ProductFilter {
            limit: 1000,
            ..ProductFilter::default()
        }),
        Query::Products(ProductFilter {
            category: Some("hats".into()),
            ..ProductFilter::default()
        }),
        Query::Cart { auth: h.auth(carl) },
        Query::Orders {
            auth: h.auth(carl),
            after: None,
            limit: 100,
        },
        Query::Sales {
            auth: h.auth(olga),
            store_id: None,
        },
        Query::Users {
            auth: h.auth(olga),
            pattern: None,
            after: None,
            limit: 100,
        },
        Query::KvScan {
            after: None,
            prefix: vec![],
            limit: 1000,
        },
        Query::WhoAmI { auth: h.auth(carl) },
    ];
    for p in 1..=31 {
        queries.push(Query::Product { product_id: p });
    }
    queries
        .into_iter()
        .map(|q| h.shop.as_ref().unwrap().query(&q.encode()).unwrap())
        .collect()
}

#[test]
fn retried_command_returns_the_first_response_and_changes_nothing() {
    let mut h = Harness::new();
    let put = Request::KvCas {
        key: "k".into(),
        expected: None,
        new: "1".into(),
    };
    assert_eq!(h.propose_as(7, 1, put.clone()), Ok(Response::Done));
    // The retry would fail the CAS if applied again; it returns the first answer instead.
    assert_eq!(h.propose_as(7, 1, put.clone()), Ok(Response::Done));
    // A new sequence number is applied (and fails, the key exists).
    assert_eq!(exit_code(&h.propose_as(7, 2, put.clone())), 4);
    // An older one is refused without applying.
    let stale = h.propose_as(
        7,
        1,
        Request::KvPut {
            key: "z".into(),
            value: "1".into(),
        },
    );
    assert!(matches!(stale, Err(ShopError::Conflict { .. })));
    assert!(matches!(
        h.query(Query::KvGet { key: "z".into() }),
        Ok(Response::KvValue { value: None, .. })
    ));
    // Dedup survives a restart.
    h.reopen();
    assert_eq!(exit_code(&h.propose_as(7, 2, put)), 4);

    // A checkout retried after a lost answer does not buy twice.
    let mut h = Harness::new();
    h.signup_owner("Olga", "olga@example.com");
    h.signup_customer("Carl", "carl@example.com");
    let olga = h.login("olga@example.com");
    let carl = h.login("carl@example.com");
    let s = h.create_store(&olga, "S");
    let p = h.add_product(&olga, s, "Boot", "c", "b", "s", 100, 5);
    h.act(
        &carl,
        Action::CartAdd {
            product_id: p,
            qty: 2,
        },
    )
    .unwrap();
    let checkout = shoal_shop::prepare::authed(&carl, h.now, Action::Checkout).unwrap();
    let first = h.propose_as(42, 9, checkout.clone());
    assert!(matches!(first, Ok(Response::Checkout { .. })));
    assert_eq!(h.propose_as(42, 9, checkout), first);
    assert_eq!(h.product(p).stock, 3);
}

#[test]
fn restart_neither_loses_nor_reapplies() {
    let mut h = Harness::new();
    let (carl, olga) = populate(&mut h);
    let before = fingerprint(&h, &carl, &olga);
    let applied = h.shop().applied_index();
    assert_eq!(applied, h.index);
    h.reopen();
    assert_eq!(h.shop().applied_index(), applied);
    assert_eq!(fingerprint(&h, &carl, &olga), before);
    // The driver would hand entries after applied_index only; ids continue from counters.
    let Ok(Response::StoreCreated { store_id }) =
        h.act(&olga, Action::CreateStore { name: "Two".into() })
    else {
        panic!()
    };
    assert_eq!(store_id, 2);
    // An entry at or below the applied index is not applied again.
    let payload = Request::KvPut {
        key: "late".into(),
        value: "x".into(),
    }
    .encode();
    let out = h
        .shop()
        .apply(&[Command {
            index: 1,
            term: 1,
            client_id: 0,
            seq: 0,
            payload: &payload,
        }])
        .unwrap();
    assert!(decode_reply(&out[0]).unwrap().is_err());
    assert!(matches!(
        h.query(Query::KvGet { key: "late".into() }),
        Ok(Response::KvValue { value: None, .. })
    ));
}

#[test]
fn garbage_payloads_and_queries_are_answered_not_fatal() {
    let mut h = Harness::new();
    let reply = h.apply_raw(0, 0, &[0xff, 0x00, 0x13, 0x37, 1, 2, 3]);
    assert_eq!(exit_code(&reply), 2);
    let reply = h.apply_raw(0, 0, &[]);
    assert_eq!(exit_code(&reply), 2);
    let bytes = h.shop().query(b"definitely not a query").unwrap();
    assert_eq!(exit_code(&decode_reply(&bytes).unwrap()), 2);
    assert_eq!(
        h.shop().applied_index(),
        2,
        "the index advances past refused entries"
    );
}

fn take_snapshot(shop: &mut Shop) -> (u64, Vec<u8>) {
    let image = shop.snapshot().unwrap();
    let index = image.applied_index();
    let mut bytes = Vec::new();
    image.write_to(&mut bytes).unwrap();
    (index, bytes)
}

#[test]
fn snapshot_restored_into_a_fresh_dir_gives_identical_answers() {
    let mut h = Harness::new();
    let (carl, olga) = populate(&mut h);
    // A client's last request, to be retried after the restore.
    let cas = Request::KvCas {
        key: "once".into(),
        expected: None,
        new: "1".into(),
    };
    assert_eq!(h.propose_as(5, 3, cas.clone()), Ok(Response::Done));
    let before = fingerprint(&h, &carl, &olga);
    let (index, bytes) = take_snapshot(h.shop());
    assert_eq!(index, h.index);
    assert_eq!(h.shop().remembered_clients(), 1);

    let mut fresh = Harness::new();
    fresh.now = h.now;
    fresh.shop().restore(index, &mut bytes.as_slice()).unwrap();
    assert_eq!(fresh.shop().applied_index(), index);
    assert_eq!(
        fresh.shop().remembered_clients(),
        h.shop().remembered_clients()
    );
    assert_eq!(fingerprint(&fresh, &carl, &olga), before);
    // Survives a reopen, and goes on applying from there with the same ids.
    fresh.reopen();
    assert_eq!(fingerprint(&fresh, &carl, &olga), before);
    fresh.index = index;
    assert_eq!(
        fresh.propose_as(5, 3, cas),
        Ok(Response::Done),
        "deduplicated after restore"
    );
    let a = h.act(
        &olga,
        Action::CreateStore {
            name: "Next".into(),
        },
    );
    let b = fresh.act(
        &olga,
        Action::CreateStore {
            name: "Next".into(),
        },
    );
    assert_eq!(a, b);
}

#[test]
fn restore_replaces_existing_state_entirely() {
    let mut h = Harness::new();
    let (carl, olga) = populate(&mut h);
    let (index, bytes) = take_snapshot(h.shop());
    let expected = fingerprint(&h, &carl, &olga);
    // A replica with different state (its own keys and accounts) is overwritten.
    let mut other = Harness::new();
    other.now = h.now;
    for i in 0..50 {
        other
            .propose(Request::KvPut {
                key: format!("zz{i}").into_bytes(),
                value: b"v".to_vec(),
            })
            .unwrap();
    }
    other.signup_customer("Zed", "zed@example.com");
    other.shop().restore(index, &mut bytes.as_slice()).unwrap();
    assert_eq!(fingerprint(&other, &carl, &olga), expected);
    assert!(other.try_login("zed@example.com", "pw-secret-1").is_err());
    // Restoring twice in a row works too (generations rotate).
    other.shop().restore(index, &mut bytes.as_slice()).unwrap();
    other.reopen();
    assert_eq!(fingerprint(&other, &carl, &olga), expected);
    let generations = std::fs::read_dir(other.dir.path().join("shop"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("state-")
        })
        .count();
    assert_eq!(generations, 1, "retired generations are removed");
}

#[test]
fn snapshot_is_point_in_time_while_apply_goes_on_from_another_thread() {
    let mut h = Harness::new();
    let (carl, olga) = populate(&mut h);
    let expected = fingerprint(&h, &carl, &olga);
    let image = h.shop().snapshot().unwrap();
    let index = image.applied_index();
    let writer = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        image.write_to(&mut bytes).unwrap();
        bytes
    });
    for i in 0..50 {
        h.propose(Request::KvPut {
            key: format!("after{i}").into_bytes(),
            value: b"v".to_vec(),
        })
        .unwrap();
    }
    h.act(&carl, Action::Checkout).unwrap();
    let bytes = writer.join().unwrap();
    let mut fresh = Harness::new();
    fresh.now = h.now;
    fresh.shop().restore(index, &mut bytes.as_slice()).unwrap();
    assert_eq!(fingerprint(&fresh, &carl, &olga), expected);
}

#[test]
fn corrupted_snapshots_are_refused_and_leave_the_state_intact() {
    let mut h = Harness::new();
    let (carl, olga) = populate(&mut h);
    let (index, bytes) = take_snapshot(h.shop());

    let mut target = Harness::new();
    target.now = h.now;
    target
        .propose(Request::KvPut {
            key: "mine".into(),
            value: b"1".to_vec(),
        })
        .unwrap();
    let mine = fingerprint(&target, &carl, &olga);
    let mut refuse = |data: &[u8], at: u64, what: &str| {
        let err = target.shop().restore(at, &mut &data[..]).unwrap_err();
        assert!(matches!(err, StoreError::Snapshot { .. }), "{what}: {err}");
        assert_eq!(
            fingerprint(&target, &carl, &olga),
            mine,
            "{what}: state changed"
        );
        assert_eq!(target.shop().applied_index(), 1);
    };
    // Flipped bytes everywhere: header, frame heads, payloads, the end.
    let step = (bytes.len() / 41).max(1);
    for pos in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x40;
        refuse(&bad, index, &format!("flip at {pos}"));
    }
    // Truncations, trailing garbage, empty, wrong index, random noise.
    for cut in [0, 4, 8, 12, bytes.len() / 2, bytes.len() - 1] {
        refuse(&bytes[..cut], index, &format!("cut at {cut}"));
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    refuse(&longer, index, "trailing junk");
    refuse(&bytes, index + 1, "wrong index");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    refuse(&noise, index, "noise");
    // The genuine stream still restores.
    target.shop().restore(index, &mut bytes.as_slice()).unwrap();
    assert_eq!(target.shop().applied_index(), index);
}

/// Child side of `a_killed_process_loses_nothing_it_applied`: applies entries, then aborts
/// without closing (no destructor, no fsync), as SIGKILL would.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("SHOAL_SHOP_CRASH_DIR") else {
        return;
    };
    let mut shop = Shop::open(&dir).unwrap();
    for i in 1..=200u64 {
        let payload = Request::KvPut {
            key: format!("k{i:04}").into_bytes(),
            value: b"v".to_vec(),
        }
        .encode();
        shop.apply(&[Command {
            index: i,
            term: 1,
            client_id: 3,
            seq: i,
            payload: &payload,
        }])
        .unwrap();
    }
    std::process::abort();
}

#[test]
fn a_killed_process_loses_nothing_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let shop_dir = dir.path().join("shop");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("SHOAL_SHOP_CRASH_DIR", &shop_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
    let shop = Shop::open(&shop_dir).unwrap();
    assert_eq!(shop.applied_index(), 200);
    let reply = decode_reply(
        &shop
            .query(
                &Query::KvScan {
                    prefix: b"k".to_vec(),
                    after: None,
                    limit: 1000,
                }
                .encode(),
            )
            .unwrap(),
    )
    .unwrap();
    let Ok(Response::KvEntries { entries, .. }) = reply else {
        panic!()
    };
    assert_eq!(entries.len(), 200);
}

#[test]
fn replicas_applying_the_same_log_in_different_batches_hold_identical_state() {
    let mut first = Harness::new();
    let mut second = Harness::new();
    let requests = scripted_requests(&first);
    let one_by_one: Vec<_> = requests.iter().map(|r| first.propose(r.clone())).collect();
    let batched: Vec<_> = requests
        .chunks(3)
        .flat_map(|chunk| second.propose_batch(chunk))
        .collect();
    assert_eq!(one_by_one, batched);
    let checkouts: Vec<bool> = one_by_one
        .iter()
        .filter_map(|r| match r {
            Ok(Response::Checkout { .. }) => Some(true),
            Err(ShopError::InsufficientStock { .. }) => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(checkouts, [true, false], "the script covers both outcomes");
    let (i1, s1) = take_snapshot(first.shop());
    let (i2, s2) = take_snapshot(second.shop());
    assert_eq!(i1, i2);
    assert!(s1 == s2, "snapshot images differ");
}

/// A fixed log: payloads built once (hashes, tokens and times included), as Raft would carry.
fn scripted_requests(h: &Harness) -> Vec<Request> {
    use shoal_shop::prepare;
    let cfg = &h.cfg;
    let now = h.now;
    let owner = prepare::signup_owner(
        cfg,
        "Olga",
        None,
        "O",
        "olga@example.com",
        "pw",
        "1234567",
        now,
    )
    .unwrap();
    let cust = prepare::signup_customer(
        cfg,
        "Carl",
        "carl@example.com",
        "pw",
        "addr",
        "1234567",
        now,
    )
    .unwrap();
    let Request::Signup {
        password_hash: olga_hash,
        ..
    } = &owner
    else {
        panic!()
    };
    let Request::Signup {
        password_hash: carl_hash,
        ..
    } = &cust
    else {
        panic!()
    };
    let olga = "aa".repeat(32);
    let carl = "cc".repeat(32);
    let session = |account_id, hash: &String, token: &String| Request::CreateSession {
        account_id,
        password_hash: hash.clone(),
        token: token.clone(),
        now_ms: now,
        expires_at_ms: now + 1_000_000,
    };
    let act = |token: &String, action| prepare::authed(token, now, action).unwrap();
    let mut log = vec![
        owner.clone(),
        cust.clone(),
        session(1, olga_hash, &olga),
        session(2, carl_hash, &carl),
    ];
    log.push(act(&olga, Action::CreateStore { name: "S".into() }));
    for i in 0..12 {
        log.push(act(
            &olga,
            Action::AddProduct {
                store_id: 1,
                name: format!("P{i}"),
                category: ["a", "b"][i % 2].into(),
                brand: "x".into(),
                size: "1".into(),
                price_cents: 100 + (i as i64 % 5) * 10,
                stock: 3,
            },
        ));
    }
    for p in [1u64, 2, 3, 1] {
        log.push(act(
            &carl,
            Action::CartAdd {
                product_id: p,
                qty: 1,
            },
        ));
    }
    log.push(act(&carl, Action::Checkout));
    log.push(act(
        &carl,
        Action::CartAdd {
            product_id: 1,
            qty: 2,
        },
    ));
    log.push(act(&carl, Action::Checkout)); // refused: product 1 has 1 left
    log.push(act(
        &olga,
        Action::UpdateProduct {
            product_id: 2,
            price_cents: Some(999),
            stock: None,
        },
    ));
    log.push(act(
        &carl,
        Action::ChatSend {
            to_email: "olga@example.com".into(),
            text: "hi".into(),
        },
    ));
    log.push(act(
        &olga,
        Action::ChatRead {
            unread_only: true,
            after: None,
            limit: 10,
        },
    ));
    log.push(Request::KvPut {
        key: "k".into(),
        value: "v".into(),
    });
    log.push(Request::KvCas {
        key: "k".into(),
        expected: Some("v".into()),
        new: "w".into(),
    });
    log.push(owner); // duplicate email: refused in both
    log.push(act(&carl, Action::DeleteAccount));
    log
}
