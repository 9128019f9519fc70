//! Accounts, sessions, users, account deletion, password storage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, exit_code, invalid_field};
use shoal_shop::prepare;
use shoal_shop::{Action, Profile, Query, Request, Response, Role, ShopError};

fn raw_signup(h: &Harness, email: &str, profile: Profile) -> Request {
    Request::Signup {
        email: email.into(),
        profile,
        password_hash: prepare::hash_password(&h.cfg, "pw").unwrap(),
        now_ms: h.now,
    }
}

fn customer(name: &str, address: &str, contact: &str) -> Profile {
    Profile::Customer {
        name: name.into(),
        address: address.into(),
        contact: contact.into(),
    }
}

#[test]
fn signup_login_whoami_logout() {
    let mut h = Harness::new();
    let al = h.signup_customer("Alice Liddell", "Al@Example.com");
    let bo = h.signup_owner("Bob", "bob@example.com");
    assert_ne!(al, bo);
    let token = h.login("al@example.com");
    let me = h
        .query(Query::WhoAmI {
            auth: h.auth(&token),
        })
        .unwrap();
    match me {
        Response::Account(view) => {
            assert_eq!(view.account_id, al);
            assert_eq!(view.role, Role::Customer);
            assert_eq!(view.email, "al@example.com");
            assert_eq!(view.name, "Alice Liddell");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.act(&token, Action::Logout), Ok(Response::Done));
    let after = h.query(Query::WhoAmI {
        auth: h.auth(&token),
    });
    assert_eq!(exit_code(&after), 5);
    // Logging out twice: no session any more.
    assert_eq!(exit_code(&h.act(&token, Action::Logout)), 5);
}

#[test]
fn every_signup_constraint_is_refused_naming_the_field_in_prepare_and_in_apply() {
    let mut h = Harness::new();
    let cases: Vec<(&str, Profile, &str)> = vec![
        ("a@b.co", customer("", "addr", "1234567"), "name"),
        (
            "a@b.co",
            customer(&"x".repeat(101), "addr", "1234567"),
            "name",
        ),
        ("a@b.co", customer("Al", "", "1234567"), "address"),
        ("a@b.co", customer("Al", "addr", "123456"), "contact"),
        (
            "a@b.co",
            customer("Al", "addr", "1234567890123456"),
            "contact",
        ),
        ("a@b.co", customer("Al", "addr", "12a4567"), "contact"),
        ("a@b.co", customer("Al", "addr", "+-1234567"), "contact"),
        ("ab.co", customer("Al", "addr", "1234567"), "email"),
        ("a@b", customer("Al", "addr", "1234567"), "email"),
        ("a@@b.co", customer("Al", "addr", "1234567"), "email"),
        (
            "a@b.co",
            Profile::Owner {
                first: "".into(),
                middle: None,
                last: "L".into(),
                contact: "1234567".into(),
            },
            "first",
        ),
        (
            "a@b.co",
            Profile::Owner {
                first: "F".into(),
                middle: Some("".into()),
                last: "L".into(),
                contact: "1234567".into(),
            },
            "middle",
        ),
        (
            "a@b.co",
            Profile::Owner {
                first: "F".into(),
                middle: None,
                last: "y".repeat(101),
                contact: "1234567".into(),
            },
            "last",
        ),
    ];
    for (email, profile, field) in cases {
        // prepare refuses before hashing...
        let prepared = prepare::signup(&h.cfg, email, "pw", profile.clone(), h.now);
        assert_eq!(invalid_field(&prepared.map(|_| Response::Done)), field);
        // ...and apply refuses a request that skipped prepare.
        let reply = h.propose(raw_signup(&h, email, profile));
        assert_eq!(invalid_field(&reply), field);
        assert_eq!(exit_code(&reply), 2);
    }
    // Boundaries accepted.
    let ok = raw_signup(
        &h,
        "edge@b.co",
        customer(&"x".repeat(100), "a", "+123456789012345"),
    );
    assert!(h.propose(ok).is_ok());
}

#[test]
fn apply_refuses_a_clear_password_in_place_of_a_hash() {
    let mut h = Harness::new();
    let reply = h.propose(Request::Signup {
        email: "a@b.co".into(),
        profile: customer("Al", "addr", "1234567"),
        password_hash: "hunter42".into(),
        now_ms: h.now,
    });
    assert_eq!(invalid_field(&reply), "password");
}

#[test]
fn duplicate_email_is_a_conflict_ignoring_case() {
    let mut h = Harness::new();
    h.signup_customer("Al", "al@example.com");
    let again = prepare::signup_owner(
        &h.cfg,
        "Al",
        None,
        "X",
        "AL@example.COM",
        "pw",
        "1234567",
        h.now,
    )
    .unwrap();
    let reply = h.propose(again);
    assert_eq!(
        reply,
        Err(ShopError::DuplicateEmail {
            email: "al@example.com".into()
        })
    );
    assert_eq!(exit_code(&reply), 4);
}

#[test]
fn login_refusals() {
    let mut h = Harness::new();
    h.signup_customer("Al", "al@example.com");
    let wrong = h.try_login("al@example.com", "nope");
    assert!(matches!(wrong, Err(ShopError::Unauthorized { .. })));
    let unknown = h.try_login("who@example.com", "pw-secret-1");
    assert!(matches!(unknown, Err(ShopError::Unauthorized { .. })));
    assert_eq!(wrong.unwrap_err().exit_code(), 5);
    // A malformed email is an input error.
    assert!(matches!(
        prepare::credentials_query("nope"),
        Err(ShopError::Invalid { .. })
    ));
}

#[test]
fn sessions_expire_by_the_time_carried_in_the_request() {
    let mut h = Harness::new();
    h.signup_customer("Al", "al@example.com");
    let token = h.login("al@example.com");
    let ttl = h.cfg.session_ttl_ms;
    h.now += ttl - 1;
    assert!(
        h.query(Query::Cart {
            auth: h.auth(&token)
        })
        .is_ok()
    );
    h.now += 1;
    let reply = h.query(Query::Cart {
        auth: h.auth(&token),
    });
    assert!(
        matches!(reply, Err(ShopError::Unauthorized { ref message }) if message.contains("expired"))
    );
    assert_eq!(exit_code(&h.act(&token, Action::Checkout)), 5);
    // Unknown and malformed tokens.
    assert_eq!(
        exit_code(&h.query(Query::Cart {
            auth: h.auth(&"ab".repeat(32))
        })),
        5
    );
    assert_eq!(
        exit_code(&h.query(Query::Cart {
            auth: h.auth("short")
        })),
        5
    );
}

#[test]
fn sessions_per_account_are_bounded() {
    let mut h = Harness::new();
    h.signup_customer("Al", "al@example.com");
    let first = h.login("al@example.com");
    let mut later = Vec::new();
    for _ in 0..shoal_shop::MAX_SESSIONS_PER_ACCOUNT {
        h.now += 1;
        later.push(h.login("al@example.com"));
    }
    // The oldest (soonest-expiring) session was evicted.
    assert_eq!(
        exit_code(&h.query(Query::Cart {
            auth: h.auth(&first)
        })),
        5
    );
    // And only it: every later session, the next-oldest included, still works.
    for token in &later {
        assert!(
            h.query(Query::Cart {
                auth: h.auth(token)
            })
            .is_ok(),
            "session {token} was evicted too"
        );
    }
}

#[test]
fn users_with_glob_pattern_need_a_session() {
    let mut h = Harness::new();
    h.signup_customer("Alice", "alice@example.com");
    h.signup_customer("Albert", "albert@example.com");
    h.signup_owner("Bob", "bob@shop.example");
    let token = h.login("bob@shop.example");
    let names = |reply: Result<Response, ShopError>| match reply {
        Ok(Response::Users { users, .. }) => users.into_iter().map(|u| u.name).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let q = |h: &Harness, pattern: Option<&str>, limit: u32, after: Option<u64>| Query::Users {
        auth: h.auth(&token),
        pattern: pattern.map(str::to_string),
        after,
        limit,
    };
    assert_eq!(
        names(h.query(q(&h, Some("al*"), 50, None))),
        ["Alice", "Albert"]
    );
    assert_eq!(
        names(h.query(q(&h, Some("*@shop.example"), 50, None))),
        ["Bob Owner"]
    );
    assert_eq!(names(h.query(q(&h, None, 50, None))).len(), 3);
    // Pagination by id.
    let Ok(Response::Users { users, next }) = h.query(q(&h, None, 2, None)) else {
        panic!()
    };
    assert_eq!(users.len(), 2);
    let Ok(Response::Users {
        users: rest,
        next: end,
    }) = h.query(q(&h, None, 2, next))
    else {
        panic!()
    };
    assert_eq!(rest.len(), 1);
    assert_eq!(end, None);
    assert_eq!(invalid_field(&h.query(q(&h, None, 0, None))), "limit");
    assert_eq!(
        exit_code(&h.query(Query::Users {
            auth: h.auth(&"00".repeat(32)),
            pattern: None,
            after: None,
            limit: 5
        })),
        5
    );
}

#[test]
fn account_deletion_removes_cart_sessions_messages_and_keeps_sales() {
    let mut h = Harness::new();
    h.signup_owner("Olga", "olga@example.com");
    h.signup_customer("Carl", "carl@example.com");
    h.signup_customer("Dina", "dina@example.com");
    let olga = h.login("olga@example.com");
    let carl = h.login("carl@example.com");
    let carl2 = h.login("carl@example.com");
    let dina = h.login("dina@example.com");
    let store = h.create_store(&olga, "Shoes");
    let boot = h.add_product(&olga, store, "Boot", "footwear", "Acme", "42", 5000, 10);
    h.act(
        &carl,
        Action::CartAdd {
            product_id: boot,
            qty: 2,
        },
    )
    .unwrap();
    let Ok(Response::Checkout { order_id, .. }) = h.act(&carl, Action::Checkout) else {
        panic!()
    };
    h.act(
        &carl,
        Action::CartAdd {
            product_id: boot,
            qty: 1,
        },
    )
    .unwrap();
    let send = |to: &str, text: &str| Action::ChatSend {
        to_email: to.into(),
        text: text.into(),
    };
    h.act(&carl, send("dina@example.com", "hi dina")).unwrap();
    h.act(&dina, send("carl@example.com", "hi carl")).unwrap();
    h.act(&dina, send("olga@example.com", "hi olga")).unwrap();

    assert_eq!(h.act(&carl, Action::DeleteAccount), Ok(Response::Done));

    // Every session of the account is gone.
    for token in [&carl, &carl2] {
        assert_eq!(
            exit_code(&h.query(Query::Cart {
                auth: h.auth(token)
            })),
            5
        );
    }
    // Its messages, sent and received, are gone from the other side too.
    let Ok(Response::Messages { messages, .. }) = h.act(
        &dina,
        Action::ChatRead {
            unread_only: false,
            after: None,
            limit: 100,
        },
    ) else {
        panic!()
    };
    assert!(messages.is_empty(), "{messages:?}");
    // Others' messages stay.
    let Ok(Response::Messages { messages, .. }) = h.act(
        &olga,
        Action::ChatRead {
            unread_only: false,
            after: None,
            limit: 100,
        },
    ) else {
        panic!()
    };
    assert_eq!(messages.len(), 1);
    // Sales figures stay; stock stays sold.
    let Ok(Response::Sales { rows }) = h.query(Query::Sales {
        auth: h.auth(&olga),
        store_id: None,
    }) else {
        panic!()
    };
    assert_eq!((rows[0].units, rows[0].revenue_cents), (2, 10000));
    assert_eq!(h.product(boot).stock, 8);
    // The order went with the account (nobody can read it).
    assert_eq!(
        exit_code(&h.query(Query::Order {
            auth: h.auth(&dina),
            order_id
        })),
        3
    );
    // The email can sign up again, as a new account.
    let again = h.signup_customer("Carl", "carl@example.com");
    let carl3 = h.login("carl@example.com");
    assert!(again > 3);
    let Ok(Response::Cart { lines, .. }) = h.query(Query::Cart {
        auth: h.auth(&carl3),
    }) else {
        panic!()
    };
    assert!(lines.is_empty());
    let Ok(Response::Orders { orders, .. }) = h.query(Query::Orders {
        auth: h.auth(&carl3),
        after: None,
        limit: 10,
    }) else {
        panic!()
    };
    assert!(orders.is_empty());
}

#[test]
fn login_refused_if_the_account_was_deleted_between_verify_and_apply() {
    let mut h = Harness::new();
    h.signup_customer("Al", "al@example.com");
    let token = h.login("al@example.com");
    let creds = h.query(prepare::credentials_query("al@example.com").unwrap());
    let request = prepare::login(&h.cfg, "pw-secret-1", creds, h.now).unwrap();
    h.act(&token, Action::DeleteAccount).unwrap();
    assert_eq!(exit_code(&h.propose(request)), 5);
}

#[test]
fn no_clear_password_anywhere_in_the_data_dir() {
    let mut h = Harness::new();
    let password = "Sup3r-Secret-Passw0rd!";
    for i in 0..5 {
        let email = format!("user{i}@example.com");
        let r = prepare::signup_customer(&h.cfg, "U", &email, password, "addr", "1234567", h.now)
            .unwrap();
        h.propose(r).unwrap();
        h.try_login(&email, password).unwrap();
    }
    h.shop().sync().unwrap();
    h.reopen();
    h.shop = None; // flush and close everything
    let mut found = Vec::new();
    let mut stack = vec![h.dir.path().to_path_buf()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                if bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes())
                {
                    found.push(p);
                }
            }
        }
    }
    assert!(files > 0);
    assert!(found.is_empty(), "clear password in {found:?}");
}
