//! Stores, products, browsing with filters and pagination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, exit_code, invalid_field};
use proptest::prelude::*;
use shoal_shop::{Action, Cursor, ProductFilter, ProductView, Query, Response, ShopError};

fn listing(h: &Harness, filter: ProductFilter) -> (Vec<ProductView>, Option<Cursor>) {
    match h.query(Query::Products(filter)) {
        Ok(Response::Products { products, next }) => (products, next),
        other => panic!("{other:?}"),
    }
}

fn all_pages(h: &Harness, mut filter: ProductFilter) -> Vec<u64> {
    let mut ids = Vec::new();
    for _ in 0..10_000 {
        let (page, next) = listing(h, filter.clone());
        assert!(page.len() <= filter.limit as usize);
        ids.extend(page.iter().map(|p| p.product_id));
        match next {
            Some(cursor) => filter.after = Some(cursor),
            None => return ids,
        }
    }
    panic!("pagination does not end");
}

#[test]
fn owners_create_stores_and_products_customers_cannot() {
    let mut h = Harness::new();
    h.signup_owner("Olga", "olga@example.com");
    h.signup_owner("Otto", "otto@example.com");
    h.signup_customer("Carl", "carl@example.com");
    let olga = h.login("olga@example.com");
    let otto = h.login("otto@example.com");
    let carl = h.login("carl@example.com");
    let store = h.create_store(&olga, "Olga's Shoes");
    assert_eq!(store, 1);
    assert_eq!(h.create_store(&otto, "Otto's Hats"), 2);
    let reply = h.act(
        &carl,
        Action::CreateStore {
            name: "Nope".into(),
        },
    );
    assert!(matches!(reply, Err(ShopError::Forbidden { .. })));
    assert_eq!(
        invalid_field(&h.act(&olga, Action::CreateStore { name: " ".into() })),
        "name"
    );

    let boot = h.add_product(
        &olga,
        store,
        "Chelsea Boot",
        "Footwear",
        "Acme",
        "42",
        8999,
        5,
    );
    let shown = h.product(boot);
    assert_eq!(
        shown,
        ProductView {
            product_id: boot,
            store_id: store,
            name: "Chelsea Boot".into(),
            category: "Footwear".into(),
            brand: "Acme".into(),
            size: "42".into(),
            price_cents: 8999,
            stock: 5,
        }
    );
    assert_eq!(exit_code(&h.query(Query::Product { product_id: 999 })), 3);

    let add = |store_id: u64, price_cents: i64, stock: i64| Action::AddProduct {
        store_id,
        name: "X".into(),
        category: "c".into(),
        brand: "b".into(),
        size: "s".into(),
        price_cents,
        stock,
    };
    // Another owner's store, a missing store, a customer.
    assert_eq!(exit_code(&h.act(&otto, add(store, 100, 1))), 5);
    assert_eq!(exit_code(&h.act(&olga, add(77, 100, 1))), 3);
    assert_eq!(exit_code(&h.act(&carl, add(store, 100, 1))), 5);
    // Constraints.
    assert_eq!(invalid_field(&h.act(&olga, add(store, 0, 1))), "price");
    assert_eq!(invalid_field(&h.act(&olga, add(store, -1, 1))), "price");
    assert_eq!(invalid_field(&h.act(&olga, add(store, 100, -1))), "stock");
    assert!(h.act(&olga, add(store, 1, 0)).is_ok(), "stock 0 is allowed");
    let bad_name = Action::AddProduct {
        store_id: store,
        name: "n".into(),
        category: "".into(),
        brand: "b".into(),
        size: "s".into(),
        price_cents: 1,
        stock: 1,
    };
    assert_eq!(invalid_field(&h.act(&olga, bad_name)), "category");
    // A refused command assigned no id: the next product gets the next number.
    let next = h.add_product(&olga, store, "Y", "c", "b", "s", 1, 1);
    assert_eq!(next, boot + 2);
}

#[test]
fn product_update_changes_price_and_stock_and_reindexes() {
    let mut h = Harness::new();
    h.signup_owner("Olga", "olga@example.com");
    h.signup_owner("Otto", "otto@example.com");
    let olga = h.login("olga@example.com");
    let otto = h.login("otto@example.com");
    let store = h.create_store(&olga, "S");
    let p = h.add_product(&olga, store, "Boot", "footwear", "Acme", "42", 5000, 5);
    let upd = |price: Option<i64>, stock: Option<i64>| Action::UpdateProduct {
        product_id: p,
        price_cents: price,
        stock,
    };
    let Ok(Response::Product(view)) = h.act(&olga, upd(Some(3000), None)) else {
        panic!()
    };
    assert_eq!((view.price_cents, view.stock), (3000, 5));
    let Ok(Response::Product(view)) = h.act(&olga, upd(None, Some(0))) else {
        panic!()
    };
    assert_eq!((view.price_cents, view.stock), (3000, 0));
    assert_eq!(exit_code(&h.act(&otto, upd(Some(1), None))), 5);
    assert_eq!(invalid_field(&h.act(&olga, upd(Some(0), None))), "price");
    assert_eq!(invalid_field(&h.act(&olga, upd(None, Some(-2)))), "stock");
    assert_eq!(invalid_field(&h.act(&olga, upd(None, None))), "price");
    let missing = Action::UpdateProduct {
        product_id: 42,
        price_cents: Some(1),
        stock: None,
    };
    assert_eq!(exit_code(&h.act(&olga, missing)), 3);
    // The price index follows the update: old range empty, new range has it.
    let f = |min, max| ProductFilter {
        min_price_cents: Some(min),
        max_price_cents: Some(max),
        ..ProductFilter::default()
    };
    assert!(listing(&h, f(4000, 6000)).0.is_empty());
    assert_eq!(listing(&h, f(3000, 3000)).0.len(), 1);
    let cat = ProductFilter {
        category: Some("FOOTWEAR".into()),
        ..f(2000, 3500)
    };
    assert_eq!(listing(&h, cat).0.len(), 1);
}

#[test]
fn filters_compose_and_are_case_insensitive() {
    let mut h = Harness::new();
    h.signup_owner("Olga", "olga@example.com");
    let olga = h.login("olga@example.com");
    let s = h.create_store(&olga, "S");
    let a = h.add_product(&olga, s, "Runner", "footwear", "Acme", "42", 5000, 3);
    let b = h.add_product(&olga, s, "Loafer", "footwear", "Bolt", "42", 7000, 3);
    let c = h.add_product(&olga, s, "Sandal", "footwear", "Acme", "40", 3000, 3);
    let d = h.add_product(&olga, s, "Cap", "hats", "Acme", "M", 1500, 3);
    let ids = |f: ProductFilter| {
        listing(&h, f)
            .0
            .iter()
            .map(|p| p.product_id)
            .collect::<Vec<_>>()
    };
    let base = ProductFilter::default;
    assert_eq!(ids(base()), [d, c, a, b], "ordered by price");
    assert_eq!(
        ids(ProductFilter {
            category: Some("Footwear".into()),
            ..base()
        }),
        [c, a, b]
    );
    assert_eq!(
        ids(ProductFilter {
            category: Some("footwear".into()),
            brand: Some("acme".into()),
            ..base()
        }),
        [c, a]
    );
    assert_eq!(
        ids(ProductFilter {
            category: Some("footwear".into()),
            brand: Some("acme".into()),
            size: Some("42".into()),
            ..base()
        }),
        [a]
    );
    assert_eq!(
        ids(ProductFilter {
            brand: Some("acme".into()),
            max_price_cents: Some(3000),
            ..base()
        }),
        [d, c]
    );
    assert_eq!(
        ids(ProductFilter {
            size: Some("m".into()),
            ..base()
        }),
        [d]
    );
    assert_eq!(
        ids(ProductFilter {
            min_price_cents: Some(5000),
            max_price_cents: Some(4000),
            ..base()
        }),
        Vec::<u64>::new()
    );
    assert_eq!(
        ids(ProductFilter {
            category: Some("none".into()),
            ..base()
        }),
        Vec::<u64>::new()
    );
    // Invalid filters name their field.
    let bad = |f: ProductFilter| invalid_field(&h.query(Query::Products(f)));
    assert_eq!(bad(ProductFilter { limit: 0, ..base() }), "limit");
    assert_eq!(
        bad(ProductFilter {
            limit: 1001,
            ..base()
        }),
        "limit"
    );
    assert_eq!(
        bad(ProductFilter {
            min_price_cents: Some(-1),
            ..base()
        }),
        "min-price"
    );
    assert_eq!(
        bad(ProductFilter {
            brand: Some("".into()),
            ..base()
        }),
        "brand"
    );
    // Pagination: a page that ends exactly at the last match says so.
    let (page, next) = listing(&h, ProductFilter { limit: 4, ..base() });
    assert_eq!((page.len(), next), (4, None));
    let (page, next) = listing(&h, ProductFilter { limit: 3, ..base() });
    assert_eq!(page.len(), 3);
    assert_eq!(
        next,
        Some(Cursor {
            price_cents: 5000,
            product_id: a
        })
    );
    let pages = all_pages(&h, ProductFilter { limit: 1, ..base() });
    assert_eq!(pages, [d, c, a, b]);
    assert_eq!(
        "garbage".parse::<Cursor>().map_err(|e| e.exit_code()),
        Err(2)
    );
}

#[derive(Debug, Clone)]
struct Item {
    category: u8,
    brand: u8,
    size: u8,
    price: i64,
}

fn arb_items() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec(
        (
            0u8..3,
            0u8..3,
            0u8..3,
            prop::sample::select(vec![100i64, 250, 999, 1000, 5000, 12345]),
        )
            .prop_map(|(category, brand, size, price)| Item {
                category,
                brand,
                size,
                price,
            }),
        0..40,
    )
}

fn arb_filter() -> impl Strategy<Value = ProductFilter> {
    (
        prop::option::of(0u8..3),
        prop::option::of(0u8..3),
        prop::option::of(0u8..3),
        prop::option::of(prop::sample::select(vec![0i64, 100, 500, 1000, 6000])),
        prop::option::of(prop::sample::select(vec![99i64, 100, 999, 1000, 20000])),
        1u32..7,
    )
        .prop_map(|(c, b, s, min, max, limit)| ProductFilter {
            category: c.map(|c| format!("Cat{c}")),
            brand: b.map(|b| format!("brand{b}")),
            size: s.map(|s| format!("S{s}")),
            min_price_cents: min,
            max_price_cents: max,
            limit,
            after: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every page sequence returns exactly the brute-force model's matches, each once, in
    /// (price, id) order.
    #[test]
    fn pagination_returns_every_match_exactly_once(items in arb_items(), filters in prop::collection::vec(arb_filter(), 1..6)) {
        let mut h = Harness::new();
        h.signup_owner("Olga", "olga@example.com");
        let olga = h.login("olga@example.com");
        let s = h.create_store(&olga, "S");
        let mut model = Vec::new();
        for item in &items {
            let id = h.add_product(
                &olga, s, "P",
                &format!("cat{}", item.category),
                &format!("Brand{}", item.brand),
                &format!("s{}", item.size),
                item.price, 1,
            );
            model.push((id, item.clone()));
        }
        for filter in filters {
            let mut expected: Vec<(i64, u64)> = model
                .iter()
                .filter(|(_, it)| {
                    filter.category.as_ref().is_none_or(|c| *c == format!("Cat{}", it.category))
                        && filter.brand.as_ref().is_none_or(|b| *b == format!("brand{}", it.brand))
                        && filter.size.as_ref().is_none_or(|z| *z == format!("S{}", it.size))
                        && filter.min_price_cents.is_none_or(|m| it.price >= m)
                        && filter.max_price_cents.is_none_or(|m| it.price <= m)
                })
                .map(|(id, it)| (it.price, *id))
                .collect();
            expected.sort();
            let expected: Vec<u64> = expected.into_iter().map(|(_, id)| id).collect();
            prop_assert_eq!(all_pages(&h, filter), expected);
        }
    }
}
