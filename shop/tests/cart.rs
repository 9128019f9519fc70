//! Carts, checkout, orders, sales.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, exit_code, invalid_field};
use shoal_shop::{Action, CartLine, Query, Response, SalesRow, ShopError};

struct Shop {
    h: Harness,
    olga: String,
    store: u64,
}

fn setup() -> Shop {
    let mut h = Harness::new();
    h.signup_owner("Olga", "olga@example.com");
    let olga = h.login("olga@example.com");
    let store = h.create_store(&olga, "Shoes");
    Shop { h, olga, store }
}

fn customer(h: &mut Harness, n: usize) -> String {
    let email = format!("c{n}@example.com");
    h.signup_customer(&format!("Customer {n}"), &email);
    h.login(&email)
}

fn cart(h: &Harness, token: &str) -> (Vec<CartLine>, i64) {
    match h.query(Query::Cart {
        auth: h.auth(token),
    }) {
        Ok(Response::Cart { lines, total_cents }) => (lines, total_cents),
        other => panic!("{other:?}"),
    }
}

fn sales(h: &Harness, token: &str, store_id: Option<u64>) -> Vec<SalesRow> {
    match h.query(Query::Sales {
        auth: h.auth(token),
        store_id,
    }) {
        Ok(Response::Sales { rows }) => rows,
        other => panic!("{other:?}"),
    }
}

#[test]
fn cart_add_accumulates_remove_decrements_and_show() {
    let Shop { mut h, olga, store } = setup();
    let boot = h.add_product(&olga, store, "Boot", "footwear", "Acme", "42", 5000, 10);
    let sock = h.add_product(&olga, store, "Sock", "footwear", "Acme", "M", 250, 10);
    let c = customer(&mut h, 1);
    h.act(
        &c,
        Action::CartAdd {
            product_id: boot,
            qty: 1,
        },
    )
    .unwrap();
    h.act(
        &c,
        Action::CartAdd {
            product_id: boot,
            qty: 2,
        },
    )
    .unwrap();
    let reply = h
        .act(
            &c,
            Action::CartAdd {
                product_id: sock,
                qty: 4,
            },
        )
        .unwrap();
    let Response::Cart { lines, total_cents } = reply else {
        panic!()
    };
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.product_id, l.qty))
            .collect::<Vec<_>>(),
        [(boot, 3), (sock, 4)]
    );
    assert_eq!(total_cents, 3 * 5000 + 4 * 250);
    assert_eq!(cart(&h, &c).1, total_cents);

    h.act(
        &c,
        Action::CartRemove {
            product_id: boot,
            qty: Some(2),
        },
    )
    .unwrap();
    assert_eq!(cart(&h, &c).0[0].qty, 1);
    h.act(
        &c,
        Action::CartRemove {
            product_id: sock,
            qty: None,
        },
    )
    .unwrap();
    h.act(
        &c,
        Action::CartRemove {
            product_id: boot,
            qty: Some(5),
        },
    )
    .unwrap();
    assert!(cart(&h, &c).0.is_empty());
    // Refusals.
    assert_eq!(
        exit_code(&h.act(
            &c,
            Action::CartRemove {
                product_id: boot,
                qty: None
            }
        )),
        3
    );
    assert_eq!(
        exit_code(&h.act(
            &c,
            Action::CartAdd {
                product_id: 999,
                qty: 1
            }
        )),
        3
    );
    assert_eq!(
        invalid_field(&h.act(
            &c,
            Action::CartAdd {
                product_id: boot,
                qty: 0
            }
        )),
        "qty"
    );
    assert_eq!(
        invalid_field(&h.act(
            &c,
            Action::CartAdd {
                product_id: boot,
                qty: -1
            }
        )),
        "qty"
    );
    assert_eq!(
        invalid_field(&h.act(
            &c,
            Action::CartRemove {
                product_id: boot,
                qty: Some(0)
            }
        )),
        "qty"
    );
    // Owners have no cart.
    assert_eq!(
        exit_code(&h.act(
            &olga,
            Action::CartAdd {
                product_id: boot,
                qty: 1
            }
        )),
        5
    );
    assert_eq!(
        exit_code(&h.query(Query::Cart {
            auth: h.auth(&olga)
        })),
        5
    );
    // Empty cart checkout.
    assert_eq!(invalid_field(&h.act(&c, Action::Checkout)), "cart");
}

#[test]
fn checkout_is_atomic_when_one_line_is_short() {
    let Shop { mut h, olga, store } = setup();
    let boot = h.add_product(&olga, store, "Boot", "footwear", "Acme", "42", 5000, 10);
    let hat = h.add_product(&olga, store, "Hat", "hats", "Acme", "M", 1000, 1);
    let c = customer(&mut h, 1);
    h.act(
        &c,
        Action::CartAdd {
            product_id: boot,
            qty: 3,
        },
    )
    .unwrap();
    h.act(
        &c,
        Action::CartAdd {
            product_id: hat,
            qty: 2,
        },
    )
    .unwrap();
    let reply = h.act(&c, Action::Checkout);
    assert_eq!(
        reply,
        Err(ShopError::InsufficientStock {
            product_id: hat,
            name: "Hat".into(),
            available: 1,
            requested: 2
        })
    );
    assert_eq!(exit_code(&reply), 4);
    assert!(reply.unwrap_err().to_string().contains("Hat"));
    // Nothing changed.
    assert_eq!(h.product(boot).stock, 10);
    assert_eq!(h.product(hat).stock, 1);
    assert_eq!(cart(&h, &c).0.len(), 2);
    assert!(sales(&h, &olga, None).is_empty());
    let Ok(Response::Orders { orders, .. }) = h.query(Query::Orders {
        auth: h.auth(&c),
        after: None,
        limit: 100,
    }) else {
        panic!()
    };
    assert!(orders.is_empty());
    // Fix the cart: the checkout goes through, all lines at once.
    h.act(
        &c,
        Action::CartRemove {
            product_id: hat,
            qty: Some(1),
        },
    )
    .unwrap();
    let Ok(Response::Checkout {
        order_id,
        total_cents,
    }) = h.act(&c, Action::Checkout)
    else {
        panic!()
    };
    assert_eq!(total_cents, 3 * 5000 + 1000);
    assert_eq!(h.product(boot).stock, 7);
    assert_eq!(h.product(hat).stock, 0);
    assert!(cart(&h, &c).0.is_empty());
    let Ok(Response::Order(order)) = h.query(Query::Order {
        auth: h.auth(&c),
        order_id,
    }) else {
        panic!()
    };
    assert_eq!(order.total_cents, total_cents);
    assert_eq!(order.lines.len(), 2);
}

#[test]
fn orders_keep_the_price_at_purchase_time_and_sales_add_up() {
    let Shop { mut h, olga, store } = setup();
    let boot = h.add_product(&olga, store, "Boot", "footwear", "Acme", "42", 5000, 10);
    let c = customer(&mut h, 1);
    h.act(
        &c,
        Action::CartAdd {
            product_id: boot,
            qty: 2,
        },
    )
    .unwrap();
    h.act(&c, Action::Checkout).unwrap();
    h.act(
        &olga,
        Action::UpdateProduct {
            product_id: boot,
            price_cents: Some(9000),
            stock: None,
        },
    )
    .unwrap();
    h.act(
        &c,
        Action::CartAdd {
            product_id: boot,
            qty: 1,
        },
    )
    .unwrap();
    h.act(&c, Action::Checkout).unwrap();
    let Ok(Response::Orders { orders, .. }) = h.query(Query::Orders {
        auth: h.auth(&c),
        after: None,
        limit: 100,
    }) else {
        panic!()
    };
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].lines[0].unit_price_cents, 5000);
    assert_eq!(orders[0].total_cents, 10000);
    assert_eq!(orders[1].lines[0].unit_price_cents, 9000);
    let rows = sales(&h, &olga, Some(store));
    assert_eq!(
        rows,
        [SalesRow {
            store_id: store,
            product_id: boot,
            name: "Boot".into(),
            units: 3,
            revenue_cents: 19000
        }]
    );
    assert_eq!(sales(&h, &olga, None), rows);
}

#[test]
fn others_cannot_read_orders_or_sales() {
    let Shop { mut h, olga, store } = setup();
    h.signup_owner("Otto", "otto@example.com");
    let otto = h.login("otto@example.com");
    let boot = h.add_product(&olga, store, "Boot", "footwear", "Acme", "42", 5000, 10);
    let c1 = customer(&mut h, 1);
    let c2 = customer(&mut h, 2);
    h.act(
        &c1,
        Action::CartAdd {
            product_id: boot,
            qty: 1,
        },
    )
    .unwrap();
    let Ok(Response::Checkout { order_id, .. }) = h.act(&c1, Action::Checkout) else {
        panic!()
    };
    let reply = h.query(Query::Order {
        auth: h.auth(&c2),
        order_id,
    });
    assert!(matches!(reply, Err(ShopError::Forbidden { .. })));
    assert_eq!(
        exit_code(&h.query(Query::Order {
            auth: h.auth(&c2),
            order_id: 99
        })),
        3
    );
    assert_eq!(
        exit_code(&h.query(Query::Sales {
            auth: h.auth(&otto),
            store_id: Some(store)
        })),
        5
    );
    assert!(sales(&h, &otto, None).is_empty());
    assert_eq!(
        exit_code(&h.query(Query::Sales {
            auth: h.auth(&c1),
            store_id: None
        })),
        5
    );
    assert_eq!(
        exit_code(&h.query(Query::Sales {
            auth: h.auth(&olga),
            store_id: Some(9)
        })),
        3
    );
}

#[test]
fn twenty_customers_one_unit_each_stock_ten() {
    let Shop { mut h, olga, store } = setup();
    let boot = h.add_product(&olga, store, "Boot", "footwear", "Acme", "42", 4999, 10);
    let customers: Vec<String> = (0..20).map(|n| customer(&mut h, n)).collect();
    for c in &customers {
        h.act(
            c,
            Action::CartAdd {
                product_id: boot,
                qty: 1,
            },
        )
        .unwrap();
    }
    // All checkouts committed in one Raft batch, as a busy leader would.
    let requests: Vec<_> = customers
        .iter()
        .map(|c| shoal_shop::prepare::authed(c, h.now, Action::Checkout).unwrap())
        .collect();
    let replies = h.propose_batch(&requests);
    let ok = replies.iter().filter(|r| r.is_ok()).count();
    let short = replies
        .iter()
        .filter(|r| matches!(r, Err(ShopError::InsufficientStock { product_id, .. }) if *product_id == boot))
        .count();
    assert_eq!((ok, short), (10, 10));
    assert_eq!(h.product(boot).stock, 0);
    let rows = sales(&h, &olga, None);
    assert_eq!((rows[0].units, rows[0].revenue_cents), (10, 49990));
}

#[test]
fn many_sequential_checkouts_never_oversell() {
    let Shop { mut h, olga, store } = setup();
    let a = h.add_product(&olga, store, "A", "c", "b", "s", 100, 37);
    let b = h.add_product(&olga, store, "B", "c", "b", "s", 300, 11);
    let customers: Vec<String> = (0..6).map(|n| customer(&mut h, n)).collect();
    let mut sold = (0i64, 0i64);
    for round in 0..40usize {
        let c = &customers[round % customers.len()];
        let qa = (round % 4) as i64 + 1;
        let qb = (round % 3) as i64 + 1;
        h.act(
            c,
            Action::CartAdd {
                product_id: a,
                qty: qa,
            },
        )
        .unwrap();
        h.act(
            c,
            Action::CartAdd {
                product_id: b,
                qty: qb,
            },
        )
        .unwrap();
        match h.act(c, Action::Checkout) {
            Ok(Response::Checkout { .. }) => {
                sold.0 += qa;
                sold.1 += qb;
            }
            Err(ShopError::InsufficientStock { .. }) => {
                h.act(
                    c,
                    Action::CartRemove {
                        product_id: a,
                        qty: None,
                    },
                )
                .unwrap();
                h.act(
                    c,
                    Action::CartRemove {
                        product_id: b,
                        qty: None,
                    },
                )
                .unwrap();
            }
            other => panic!("{other:?}"),
        }
        let (sa, sb) = (h.product(a).stock, h.product(b).stock);
        assert!(sa >= 0 && sb >= 0);
        assert_eq!((sa + sold.0, sb + sold.1), (37, 11), "stock is conserved");
    }
    let rows = sales(&h, &olga, None);
    assert_eq!(
        rows.iter().map(|r| r.units).collect::<Vec<_>>(),
        [sold.0, sold.1]
    );
}
