//! Issue 5's acceptance through real processes: a 3-node cluster of `shoal node` children
//! started from `shoal init`'s files (cheap argon2 in node.toml, default timing), driven by the
//! built `shoal` binary as separate processes (and, for the long write loop, by the library's
//! client in this process). Every process started is killed when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, Run, serial, wait_until};
use serde_json::Value;
use shoal::api::WriteBody;
use shoal::config::NodeConfig;
use shoal_shop::Request;

/// Bound on a leader being elected.
const ELECTION: Duration = Duration::from_secs(20);
/// Bound on a node catching up.
const CATCH_UP: Duration = Duration::from_secs(60);
/// The password of every test account (it must never be found on disk).
const PASSWORD: &str = "Pw-in-clear-must-never-hit-disk-7f3a";

fn cheap_passwords(config: &mut NodeConfig) {
    config.passwords.argon2_memory_kib = 1024;
    config.passwords.argon2_iterations = 1;
    config.passwords.argon2_lanes = 1;
}

fn started(adjust: impl Fn(&mut NodeConfig)) -> Cluster {
    let mut cluster = Cluster::init(3, 0, |c| {
        cheap_passwords(c);
        adjust(c);
    });
    cluster.start_all(3);
    cluster.wait_for_leader(&[1, 2, 3], ELECTION);
    cluster
}

fn ok(cluster: &Cluster, args: &[&str]) -> Run {
    let run = cluster.shoal(args);
    assert_eq!(run.code, 0, "shoal {args:?}: {run:?}");
    run
}

/// Signs up an owner and logs in; returns the token.
fn owner(cluster: &Cluster, email: &str) -> String {
    ok(
        cluster,
        &[
            "signup",
            "--role",
            "owner",
            "--first",
            "Olivia",
            "--last",
            "Stone",
            "--email",
            email,
            "--password",
            PASSWORD,
            "--contact",
            "+15550100",
        ],
    );
    login(cluster, email)
}

/// Signs up customer `i` and logs in; returns the token.
fn customer(cluster: &Cluster, i: usize) -> String {
    let email = format!("customer{i}@example.com");
    let name = format!("Customer {i}");
    let contact = format!("+1555{:07}", i);
    ok(
        cluster,
        &[
            "signup",
            "--role",
            "customer",
            "--name",
            &name,
            "--email",
            &email,
            "--password",
            PASSWORD,
            "--address",
            "1 Test Street",
            "--contact",
            &contact,
        ],
    );
    login(cluster, &email)
}

fn login(cluster: &Cluster, email: &str) -> String {
    let run = ok(
        cluster,
        &["login", "--email", email, "--password", PASSWORD, "--json"],
    );
    run.json()["token"].as_str().unwrap().to_owned()
}

fn store(cluster: &Cluster, token: &str, name: &str) -> u64 {
    let run = ok(
        cluster,
        &[
            "store", "create", "--name", name, "--token", token, "--json",
        ],
    );
    run.json()["store_id"].as_u64().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn product(
    cluster: &Cluster,
    token: &str,
    store: u64,
    name: &str,
    category: &str,
    brand: &str,
    size: &str,
    price: &str,
    stock: u64,
) -> u64 {
    let run = ok(
        cluster,
        &[
            "product",
            "add",
            "--store",
            &store.to_string(),
            "--name",
            name,
            "--category",
            category,
            "--brand",
            brand,
            "--size",
            size,
            "--price",
            price,
            "--stock",
            &stock.to_string(),
            "--token",
            token,
            "--json",
        ],
    );
    run.json()["product_id"].as_u64().unwrap()
}

/// Issue 5, acceptance 2: 20 customers, each logged in, check out one unit of a product with
/// stock 10 concurrently as separate processes: exactly 10 succeed, stock ends at 0, `sales`
/// shows 10 units, the others exit 4 saying the stock is insufficient.
#[test]
fn twenty_concurrent_checkouts_sell_exactly_the_ten_in_stock() {
    let _serial = serial();
    let cluster = started(|_| {});
    let olivia = owner(&cluster, "olivia@example.com");
    let shop = store(&cluster, &olivia, "Stone Shoes");
    let sneaker = product(
        &cluster,
        &olivia,
        shop,
        "Air Runner",
        "footwear",
        "Stride",
        "42",
        "99.50",
        10,
    );
    let sneaker_arg = sneaker.to_string();
    let tokens: Vec<String> = (0..20)
        .map(|i| {
            let token = customer(&cluster, i);
            ok(&cluster, &["cart", "add", &sneaker_arg, "--token", &token]);
            token
        })
        .collect();
    // Twenty `shoal checkout` processes at once.
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster.dir.to_str().unwrap().to_owned();
    let mut children = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let out = tmp.path().join(format!("out-{i}"));
        let err = tmp.path().join(format!("err-{i}"));
        let child = Command::new(common::shoal_bin())
            .args(["--cluster-dir", &dir, "checkout", "--token", token])
            .env_remove("SHOAL_DIR")
            .env_remove("SHOAL_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        children.push((child, out, err));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut outcomes = Vec::new();
    for (mut child, out, err) in children {
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        outcomes.push((
            code,
            std::fs::read_to_string(out).unwrap(),
            std::fs::read_to_string(err).unwrap(),
        ));
    }
    let succeeded: Vec<_> = outcomes.iter().filter(|(c, _, _)| *c == 0).collect();
    let refused: Vec<_> = outcomes.iter().filter(|(c, _, _)| *c == 4).collect();
    assert_eq!(succeeded.len(), 10, "{outcomes:#?}");
    assert_eq!(refused.len(), 10, "{outcomes:#?}");
    for (_, stdout, _) in &succeeded {
        assert!(stdout.contains("placed, total 99.50"), "{stdout}");
    }
    for (_, _, stderr) in &refused {
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.contains("insufficient stock"), "{stderr}");
    }
    let shown = ok(&cluster, &["product", "show", &sneaker_arg, "--json"]).json();
    assert_eq!(shown["stock"], 0, "{shown}");
    let sales = ok(&cluster, &["sales", "--token", &olivia, "--json"]).json();
    let rows = sales["products"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["product_id"].as_u64() == Some(sneaker))
        .unwrap_or_else(|| panic!("no sales row for {sneaker}: {sales}"));
    assert_eq!(row["units"], 10, "{sales}");
    assert_eq!(row["revenue"], "995.00", "{sales}");
    // Every customer's orders: one each for the ten who succeeded, none for the others.
    let with_orders = tokens
        .iter()
        .filter(|token| {
            let orders = ok(&cluster, &["orders", "--token", token, "--json"]).json();
            !orders["orders"].as_array().unwrap().is_empty()
        })
        .count();
    assert_eq!(with_orders, 10);
}

/// Issue 5, acceptance 3: filters compose (category, brand, size, price range) and paging with
/// `--after` returns every matching product exactly once, in price-then-id order.
#[test]
fn filters_compose_and_after_pages_return_every_match_once() {
    let _serial = serial();
    let cluster = started(|_| {});
    let olivia = owner(&cluster, "olivia@example.com");
    let shop = store(&cluster, &olivia, "Stone Shoes");
    // (id, category, brand, size, cents)
    let mut all: Vec<(u64, &str, &str, &str, i64)> = Vec::new();
    let brands = ["Stride", "Kestrel", "Milano"];
    let sizes = ["41", "42", "43"];
    for (i, category) in ["footwear", "footwear", "accessories"]
        .iter()
        .cycle()
        .take(27)
        .enumerate()
    {
        let brand = brands[i % 3];
        let size = sizes[(i / 3) % 3];
        // Some prices repeat, so the id breaks ties in the order.
        let cents = 1000 + (i as i64 % 7) * 1500;
        let price = format!("{}.{:02}", cents / 100, cents % 100);
        let id = product(
            &cluster,
            &olivia,
            shop,
            &format!("item {i}"),
            category,
            brand,
            size,
            &price,
            5,
        );
        all.push((id, category, brand, size, cents));
    }
    type Filter<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<i64>,
        Option<i64>,
    );
    let filters: [Filter; 7] = [
        (None, None, None, None, None),
        (Some("footwear"), None, None, None, None),
        (Some("footwear"), Some("kestrel"), None, None, None),
        (Some("footwear"), Some("Stride"), Some("42"), None, None),
        (None, None, None, Some(2500), Some(7000)),
        (Some("footwear"), None, Some("41"), Some(1000), Some(5500)),
        (
            Some("accessories"),
            Some("Milano"),
            Some("43"),
            Some(1),
            Some(99_999),
        ),
    ];
    let money = |c: i64| format!("{}.{:02}", c / 100, c % 100);
    for (category, brand, size, min, max) in filters {
        let mut expected: Vec<(i64, u64)> = all
            .iter()
            .filter(|(_, c, b, s, p)| {
                category.is_none_or(|x| x.eq_ignore_ascii_case(c))
                    && brand.is_none_or(|x| x.eq_ignore_ascii_case(b))
                    && size.is_none_or(|x| x == *s)
                    && min.is_none_or(|m| *p >= m)
                    && max.is_none_or(|m| *p <= m)
            })
            .map(|(id, _, _, _, p)| (*p, *id))
            .collect();
        expected.sort();
        let mut base: Vec<String> = vec!["products".into(), "--limit".into(), "4".into()];
        for (flag, value) in [
            ("--category", category.map(str::to_owned)),
            ("--brand", brand.map(str::to_owned)),
            ("--size", size.map(str::to_owned)),
            ("--min-price", min.map(money)),
            ("--max-price", max.map(money)),
        ] {
            if let Some(value) = value {
                base.push(flag.into());
                base.push(value);
            }
        }
        let mut got: Vec<(i64, u64)> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..50 {
            let mut args = base.clone();
            if let Some(cursor) = &after {
                args.push("--after".into());
                args.push(cursor.clone());
            }
            args.push("--json".into());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let page = ok(&cluster, &refs).json();
            for p in page["products"].as_array().unwrap() {
                let price = shoal_shop::parse_money(p["price"].as_str().unwrap()).unwrap();
                got.push((price, p["product_id"].as_u64().unwrap()));
            }
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(got, expected, "filter {base:?}");
        assert!(!expected.is_empty() || category == Some("accessories"));
    }
}

/// One node's view of the shop, read from its own state (`--consistency stale`).
fn fingerprint(cluster: &Cluster, id: u64, tokens: &[(&str, String)]) -> BTreeMap<String, Value> {
    let mut view = BTreeMap::new();
    let stale = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--consistency", "stale", "--json"]);
        let run = cluster.shoal_on(&[id], &all);
        assert_eq!(run.code, 0, "node {id}: shoal {all:?}: {run:?}");
        run.json()
    };
    view.insert("products".into(), stale(&["products", "--limit", "1000"]));
    for (who, token) in tokens {
        if *who == "olivia" {
            view.insert("sales".into(), stale(&["sales", "--token", token]));
        } else {
            view.insert(
                format!("orders {who}"),
                stale(&["orders", "--token", token]),
            );
            view.insert(format!("cart {who}"), stale(&["cart", "--token", token]));
        }
    }
    view.insert("kv".into(), stale(&["kv", "scan", "note"]));
    view
}

fn applied(cluster: &Cluster) -> BTreeMap<u64, (u64, u64, u64)> {
    cluster
        .status()
        .into_iter()
        .map(|(id, row)| {
            (
                id,
                (
                    row["applied_index"].as_u64().unwrap_or(0),
                    row["commit_index"].as_u64().unwrap_or(0),
                    row["snapshot_index"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// Waits until every node in `ids` has applied what the leader committed.
fn wait_caught_up(cluster: &Cluster, ids: &[u64]) -> BTreeMap<u64, (u64, u64, u64)> {
    wait_until("every node caught up", CATCH_UP, || {
        let rows = cluster.status();
        let leader = Cluster::leaders(&rows);
        let Some(commit) = leader
            .first()
            .and_then(|l| rows[l]["commit_index"].as_u64())
        else {
            return Err(format!("no leader: {rows:?}"));
        };
        let all = ids.iter().all(|id| {
            rows.get(id)
                .and_then(|r| r["applied_index"].as_u64())
                .is_some_and(|a| a >= commit)
        });
        if all {
            Ok(applied(cluster))
        } else {
            Err(format!("{rows:?}"))
        }
    })
}

/// A small shop: an owner, nine products, three customers with an order each and a cart.
fn shop_fixture(cluster: &Cluster) -> (Vec<(&'static str, String)>, Vec<u64>) {
    let olivia = owner(cluster, "olivia@example.com");
    let shop = store(cluster, &olivia, "Stone Shoes");
    let mut products = Vec::new();
    for (i, (brand, size)) in [("Stride", "42"), ("Kestrel", "43"), ("Milano", "44")]
        .iter()
        .cycle()
        .take(9)
        .enumerate()
    {
        products.push(product(
            cluster,
            &olivia,
            shop,
            &format!("shoe {i}"),
            "footwear",
            brand,
            size,
            &format!("{}.99", 50 + i * 10),
            20,
        ));
    }
    let mut tokens: Vec<(&'static str, String)> = vec![("olivia", olivia.clone())];
    for (i, who) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let token = customer(cluster, i);
        for p in products.iter().skip(i).step_by(3) {
            ok(
                cluster,
                &[
                    "cart",
                    "add",
                    &p.to_string(),
                    "--qty",
                    "2",
                    "--token",
                    &token,
                ],
            );
        }
        ok(cluster, &["checkout", "--token", &token]);
        // Something left in the cart too.
        ok(
            cluster,
            &["cart", "add", &products[8].to_string(), "--token", &token],
        );
        tokens.push((who, token));
    }
    (tokens, products)
}

/// Issue 5, acceptance 4 (first half): restarting a node, cleanly (SIGTERM) or not (SIGKILL of
/// the leader while writes go on), neither loses nor re-applies anything.
#[test]
fn restarts_lose_and_reapply_nothing() {
    let _serial = serial();
    let mut cluster = started(|_| {});
    let (tokens, products) = shop_fixture(&cluster);
    ok(&cluster, &["kv", "put", "note-1", "before any restart"]);
    wait_caught_up(&cluster, &[1, 2, 3]);
    let reference = fingerprint(&cluster, 1, &tokens);
    for id in [2, 3] {
        assert_eq!(fingerprint(&cluster, id, &tokens), reference, "node {id}");
    }

    // A follower stops cleanly (SIGTERM) and restarts.
    let rows = cluster.status();
    let leader = Cluster::leaders(&rows)[0];
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    assert_eq!(cluster.stop(follower), Some(0));
    cluster.start(follower);
    wait_caught_up(&cluster, &[1, 2, 3]);
    assert_eq!(
        fingerprint(&cluster, follower, &tokens),
        reference,
        "node {follower} after a clean restart"
    );

    // The leader is SIGKILLed while writes go on, and restarts.
    cluster.kill(leader);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    cluster.wait_for_leader(&others, ELECTION);
    let alice = tokens[1].1.clone();
    ok(&cluster, &["checkout", "--token", &alice]);
    ok(
        &cluster,
        &["kv", "put", "note-2", "while the old leader was down"],
    );
    cluster.start(leader);
    wait_caught_up(&cluster, &[1, 2, 3]);
    let after_kill = fingerprint(&cluster, others[0], &tokens);
    assert_ne!(after_kill, reference, "the writes made while it was down");
    for id in [1, 2, 3] {
        assert_eq!(
            fingerprint(&cluster, id, &tokens),
            after_kill,
            "node {id} after the leader's SIGKILL and restart"
        );
    }
    // Nothing re-applied: alice's second checkout is one order, stock moved once.
    let orders = &after_kill["orders alice"]["orders"];
    assert_eq!(orders.as_array().unwrap().len(), 2, "{orders}");
    let shown = &after_kill["products"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["product_id"].as_u64() == Some(products[8]))
        .cloned()
        .unwrap();
    assert_eq!(shown["stock"], 20 - 2 - 1, "{shown}");
}

/// Issue 5, acceptance 4 (second half): a node whose data dir was deleted and re-created from
/// `shoal init`'s files (node.toml and certificates kept, all state removed) rejoins and
/// receives the whole shop through a snapshot (the others' logs are compacted first).
#[test]
fn a_wiped_node_rejoins_and_receives_the_shop_through_a_snapshot() {
    let _serial = serial();
    let mut cluster = started(|_| {});
    let (tokens, _) = shop_fixture(&cluster);
    wait_caught_up(&cluster, &[1, 2, 3]);
    // Snapshots everywhere (the log is compacted), a few more writes, then one follower's
    // data dir is wiped back to init's files.
    let snap = ok(&cluster, &["snapshot", "--json"]).json();
    assert!(
        snap["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["snapshot_index"].as_u64().unwrap_or(0) > 0),
        "{snap}"
    );
    ok(&cluster, &["kv", "put", "note-3", "after the snapshot"]);
    let rows = cluster.status();
    let leader = Cluster::leaders(&rows)[0];
    let wiped = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let before = wait_caught_up(&cluster, &[1, 2, 3]);
    let reference = fingerprint(&cluster, leader, &tokens);
    assert_eq!(cluster.stop(wiped), Some(0));
    let data_dir = cluster.node_dir(wiped);
    let keep = ["node.toml", "ca.pem", "node.pem", "node-key.pem"];
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let left: BTreeSet<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, keep.iter().map(|s| s.to_string()).collect());
    cluster.start(wiped);
    if std::env::var("SHOAL_E2E_WRITE_AFTER_WIPE").is_ok() {
        std::thread::sleep(Duration::from_secs(3));
        ok(&cluster, &["kv", "put", "note-4", "after the wipe"]);
    }
    let after = wait_caught_up(&cluster, &[1, 2, 3]);
    let (applied_index, _, snapshot_index) = after[&wiped];
    assert!(
        snapshot_index > 0 && snapshot_index <= applied_index,
        "node {wiped} should have received a snapshot: {after:?} (before the wipe: {before:?})"
    );
    assert_eq!(
        fingerprint(&cluster, wiped, &tokens),
        reference,
        "node {wiped} after rejoining with a wiped data dir"
    );
    let log = cluster.node_log(wiped);
    assert!(
        log.to_lowercase().contains("snapshot"),
        "node {wiped}'s log should mention the snapshot it installed:\n{}",
        cluster.log_tail(wiped, 40)
    );
    eprintln!(
        "wiped node {wiped}: snapshot index {snapshot_index}, applied {applied_index}; before the wipe {before:?}"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Issue 5, acceptance 6: no password appears in clear anywhere under the data dirs (state,
/// WAL, snapshots, logs), after sign-ups, logins, a failed login, a snapshot and a restart.
#[test]
fn no_password_in_clear_anywhere_under_the_data_dirs() {
    let _serial = serial();
    let mut cluster = started(|_| {});
    owner(&cluster, "olivia@example.com");
    for i in 0..3 {
        customer(&cluster, i);
    }
    let wrong = cluster.shoal(&[
        "login",
        "--email",
        "customer0@example.com",
        "--password",
        "Wrong-pw-also-secret-91c2",
    ]);
    assert_eq!(wrong.code, 5, "{wrong:?}");
    ok(&cluster, &["snapshot"]);
    customer(&cluster, 3);
    wait_caught_up(&cluster, &[1, 2, 3]);
    for id in [1, 2, 3] {
        assert_eq!(cluster.stop(id), Some(0), "node {id}");
    }
    let files = files_under(&cluster.dir);
    let mut scanned = 0;
    let mut bytes = 0;
    for path in &files {
        let content = std::fs::read(path).unwrap();
        bytes += content.len();
        scanned += 1;
        for secret in [PASSWORD, "Wrong-pw-also-secret-91c2"] {
            assert!(
                !content
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{} holds a password in clear",
                path.display()
            );
        }
    }
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    assert!(
        names.iter().any(|n| n.contains("wal")),
        "the WAL was scanned: {names:#?}"
    );
    assert!(scanned > 20, "{names:#?}");
    eprintln!("scanned {scanned} files, {bytes} bytes: no password in clear");
}

/// Issue 5, acceptance 5: a long loop of writes; the WAL's bytes on disk stay under the bound
/// set in node.toml (`wal.max_bytes` plus two segments: the one that crosses the bound and
/// one opened while the snapshot that compacts them runs) and the snapshot index advances. 12,000 writes by default (under a
/// minute); `SHOAL_E2E_WRITES=200000` runs the full count (`SHOAL_E2E_CLIENTS`: writers).
#[test]
fn endless_writes_keep_the_wal_under_its_bound_and_snapshots_advance() {
    const SEGMENT: u64 = 256 << 10;
    const MAX: u64 = 1 << 20;
    let writes: u64 = std::env::var("SHOAL_E2E_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000);
    let _serial = serial();
    let cluster = started(|c| {
        c.wal.segment_bytes = SEGMENT;
        c.wal.max_bytes = MAX;
    });
    // The node checks the bound once a second and counts whole (preallocated) segments: it
    // snapshots once the WAL is past `max_bytes`, and one more segment may open while the
    // snapshot runs (200,000 writes by hand: highest 1,572,864 = MAX + 2 segments).
    let bound = MAX + 2 * SEGMENT;
    let global = cluster.global();
    let clients: usize = std::env::var("SHOAL_E2E_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let next = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let value = "v".repeat(100);
    let begun = Instant::now();
    let (elapsed, samples) = std::thread::scope(|scope| {
        // A sampler: every node's status every 250 ms.
        let sampler = scope.spawn(|| {
            let conn = shoal::cli::client::connect(&global).unwrap();
            let probe = |conn| -> BTreeMap<u64, (u64, u64)> {
                cluster
                    .statuses(conn)
                    .into_iter()
                    .filter_map(|(id, s)| s.map(|s| (id, (s.wal_bytes, s.snapshot_index))))
                    .collect()
            };
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                samples.push(probe(&conn));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples.push(probe(&conn));
            samples
        });
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let conn = shoal::cli::client::connect(&global).unwrap();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= writes {
                            break;
                        }
                        let request = Request::KvPut {
                            key: format!("key-{}", i % 5000).into_bytes(),
                            value: format!("{i}-{value}").into_bytes(),
                        };
                        conn.write(WriteBody::Shop(request))
                            .unwrap_or_else(|e| panic!("write {i}: {}", e.message));
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let elapsed = begun.elapsed();
        // A little longer, so a snapshot started at the end shows too.
        std::thread::sleep(Duration::from_secs(2));
        done.store(true, Ordering::Relaxed);
        (elapsed, sampler.join().unwrap())
    });
    let mut max_wal: BTreeMap<u64, u64> = BTreeMap::new();
    let mut snapshots: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for rows in &samples {
        for (id, (wal, snap)) in rows {
            let m = max_wal.entry(*id).or_default();
            *m = (*m).max(*wal);
            let seq = snapshots.entry(*id).or_default();
            if seq.last() != Some(snap) {
                seq.push(*snap);
            }
        }
    }
    eprintln!(
        "{writes} writes by {clients} clients in {:.1} s ({:.0}/s); {} status samples",
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64(),
        samples.len()
    );
    eprintln!(
        "WAL bound {bound} bytes (wal.max_bytes {MAX} + two {SEGMENT}-byte segments); highest wal_bytes seen per node: {max_wal:?}"
    );
    for (id, seq) in &snapshots {
        eprintln!("node {id} snapshot index: {seq:?}");
    }
    assert_eq!(max_wal.len(), 3, "every node sampled: {max_wal:?}");
    for (id, max) in &max_wal {
        assert!(
            *max <= bound,
            "node {id}'s WAL reached {max} bytes, over the bound {bound}"
        );
    }
    for (id, seq) in &snapshots {
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "node {id}'s snapshot index went back: {seq:?}"
        );
        assert!(
            seq.len() >= 3,
            "node {id}'s snapshot index should advance several times: {seq:?}"
        );
    }
    let got = cluster
        .get(&format!("key-{}", (writes - 1) % 5000))
        .unwrap();
    assert!(got.ends_with(&value), "{got}");
}

/// Runs `shoal ARGS` and asserts it fails with `code` and one stderr line mentioning `needle`.
fn refused(cluster: &Cluster, args: &[&str], code: i32, needle: &str) {
    let run = cluster.shoal(args);
    assert_eq!(run.code, code, "shoal {args:?}: {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    assert!(
        run.stderr.to_lowercase().contains(needle),
        "shoal {args:?}: stderr should mention {needle:?}: {run:?}"
    );
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    // The same under --json: the error document on stdout, the same exit code.
    let mut json = args.to_vec();
    json.push("--json");
    let run = cluster.shoal(&json);
    assert_eq!(run.code, code, "shoal {json:?}: {run:?}");
    assert!(run.json()["error"]["kind"].is_string(), "{run:?}");
}

/// Issue 5, acceptance 1: every SPEC §4 command against a 3-node cluster, with human and
/// `--json` output; each constraint refused with the right exit code, naming the field.
#[test]
fn every_shop_command_works_on_a_three_node_cluster_in_text_and_json() {
    let _serial = serial();
    let cluster = started(|_| {});
    let olivia = owner(&cluster, "olivia@example.com");
    let signup = ok(
        &cluster,
        &[
            "signup",
            "--role",
            "owner",
            "--first",
            "Max",
            "--middle",
            "J",
            "--last",
            "Rival",
            "--email",
            "max@example.com",
            "--password",
            PASSWORD,
            "--contact",
            "5550199",
            "--json",
        ],
    )
    .json();
    assert!(signup["account_id"].is_u64(), "{signup}");
    let max = login(&cluster, "max@example.com");
    let alice = customer(&cluster, 1);
    let bob = customer(&cluster, 2);
    // Text login saves the session for later commands.
    let run = ok(
        &cluster,
        &[
            "login",
            "--email",
            "customer1@example.com",
            "--password",
            PASSWORD,
        ],
    );
    assert!(run.stdout.contains("logged in as account"), "{run:?}");
    let shop = store(&cluster, &olivia, "Stone Shoes");
    assert!(
        ok(
            &cluster,
            &["store", "create", "--name", "Second", "--token", &olivia]
        )
        .stdout
        .contains("created")
    );
    let p1 = product(
        &cluster, &olivia, shop, "Boot", "footwear", "Oakridge", "43", "149.00", 5,
    );
    let run = ok(
        &cluster,
        &[
            "product",
            "add",
            "--store",
            &shop.to_string(),
            "--name",
            "Loafer",
            "--category",
            "footwear",
            "--brand",
            "Milano",
            "--size",
            "42",
            "--price",
            "12.34",
            "--stock",
            "2",
            "--token",
            &olivia,
        ],
    );
    assert!(run.stdout.contains("added"), "{run:?}");
    let p1s = p1.to_string();
    let shown = ok(&cluster, &["product", "show", &p1s, "--json"]).json();
    for field in [
        "product_id",
        "name",
        "category",
        "brand",
        "size",
        "price",
        "stock",
    ] {
        assert!(!shown[field].is_null(), "{field} in {shown}");
    }
    assert_eq!(shown["price"], "149.00");
    assert!(
        ok(&cluster, &["product", "show", &p1s])
            .stdout
            .contains("149.00")
    );
    let updated = ok(
        &cluster,
        &[
            "product", "update", &p1s, "--price", "139.00", "--stock", "6", "--token", &olivia,
            "--json",
        ],
    )
    .json();
    assert_eq!(updated["price"], "139.00", "{updated}");
    assert_eq!(updated["stock"], 6, "{updated}");
    let listing = ok(&cluster, &["products", "--category", "footwear", "--json"]).json();
    assert_eq!(
        listing["products"].as_array().unwrap().len(),
        2,
        "{listing}"
    );
    assert!(listing.get("next").is_some(), "{listing}");
    assert!(
        ok(&cluster, &["products", "--brand", "milano"])
            .stdout
            .contains("Loafer")
    );
    // Carts: add accumulates, remove, show, checkout, orders.
    ok(&cluster, &["cart", "add", &p1s, "--token", &alice]);
    let cart = ok(
        &cluster,
        &[
            "cart", "add", &p1s, "--qty", "2", "--token", &alice, "--json",
        ],
    )
    .json();
    assert!(cart.to_string().contains('3'), "{cart}");
    ok(
        &cluster,
        &["cart", "remove", &p1s, "--qty", "1", "--token", &alice],
    );
    assert!(
        ok(&cluster, &["cart", "--token", &alice])
            .stdout
            .contains("2 x 139.00")
    );
    ok(&cluster, &["cart", "--token", &alice, "--json"]).json();
    let order = ok(&cluster, &["checkout", "--token", &alice, "--json"]).json();
    assert!(order["order_id"].is_u64(), "{order}");
    assert_eq!(order["total"], "278.00", "{order}");
    let orders = ok(&cluster, &["orders", "--token", &alice, "--json"]).json();
    assert_eq!(orders["orders"].as_array().unwrap().len(), 1, "{orders}");
    assert!(
        ok(&cluster, &["orders", "--token", &alice])
            .stdout
            .contains("278.00")
    );
    let sales = ok(&cluster, &["sales", "--token", &olivia, "--json"]).json();
    assert_eq!(sales["products"][0]["units"], 2, "{sales}");
    assert_eq!(sales["products"][0]["revenue"], "278.00", "{sales}");
    assert!(
        ok(
            &cluster,
            &["sales", "--store", &shop.to_string(), "--token", &olivia]
        )
        .stdout
        .contains("units 2")
    );
    // Users.
    let users = ok(
        &cluster,
        &["users", "--pattern", "cust*", "--token", &olivia, "--json"],
    )
    .json();
    assert!(
        users.to_string().contains("customer1@example.com"),
        "{users}"
    );
    assert!(
        ok(&cluster, &["users", "--token", &bob])
            .stdout
            .contains("olivia@example.com")
    );
    // Chat.
    let sent = ok(
        &cluster,
        &[
            "chat",
            "send",
            "--to",
            "olivia@example.com",
            "hello there",
            "--token",
            &alice,
            "--json",
        ],
    )
    .json();
    ok(
        &cluster,
        &[
            "chat",
            "send",
            "--to",
            "olivia@example.com",
            "second",
            "--token",
            &bob,
        ],
    );
    let read = ok(
        &cluster,
        &["chat", "read", "--unread", "--token", &olivia, "--json"],
    )
    .json();
    let messages = read["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{read}");
    for field in ["id", "from", "text"] {
        assert!(!messages[0][field].is_null(), "{field} in {read}");
    }
    assert!(
        ok(&cluster, &["chat", "read", "--unread", "--token", &olivia])
            .stdout
            .contains("no messages")
    );
    let id = sent
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    ok(&cluster, &["chat", "delete", &id, "--token", &olivia]);
    assert!(
        !ok(&cluster, &["chat", "read", "--token", &olivia])
            .stdout
            .contains("hello there")
    );
    // kv.
    ok(&cluster, &["kv", "put", "k", "v1"]);
    assert_eq!(
        ok(&cluster, &["kv", "get", "k", "--json"]).json()["value"],
        "v1"
    );
    ok(&cluster, &["kv", "cas", "k", "v1", "v2"]);
    refused(&cluster, &["kv", "cas", "k", "v1", "v3"], 4, "");
    assert!(ok(&cluster, &["kv", "scan", "k"]).stdout.contains("k = v2"));
    ok(&cluster, &["kv", "del", "k"]);
    assert_eq!(
        ok(&cluster, &["kv", "get", "k", "--json"]).json()["value"],
        Value::Null
    );
    // Constraints: exit 2 naming the field; duplicates 4; unknown ids 3; sessions 5.
    let s = shop.to_string();
    let add = |field: &str, value: &str| -> Vec<String> {
        let mut args: Vec<String> = [
            "product",
            "add",
            "--store",
            &s,
            "--name",
            "N",
            "--category",
            "c",
            "--brand",
            "b",
            "--size",
            "1",
            "--price",
            "1.00",
            "--stock",
            "1",
            "--token",
            &olivia,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let at = args
            .iter()
            .position(|a| a == &format!("--{field}"))
            .unwrap();
        args[at + 1] = value.to_owned();
        args
    };
    for (field, value) in [
        ("price", "0"),
        ("price", "-1.00"),
        ("stock", "-1"),
        ("name", ""),
    ] {
        let args = add(field, value);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&cluster, &refs, 2, field);
    }
    let long = "x".repeat(101);
    let args = add("name", &long);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&cluster, &refs, 2, "name");
    let signup_with = |contact: &str, email: &str| {
        vec![
            "signup".to_owned(),
            "--role".into(),
            "customer".into(),
            "--name".into(),
            "Z".into(),
            "--email".into(),
            email.into(),
            "--password".into(),
            PASSWORD.into(),
            "--address".into(),
            "Street 1".into(),
            "--contact".into(),
            contact.into(),
        ]
    };
    for (contact, email, code, field) in [
        ("12345", "z@example.com", 2, "contact"),
        ("+1234567890123456", "z@example.com", 2, "contact"),
        ("12a4567", "z@example.com", 2, "contact"),
        ("5551234", "z@@example.com", 2, "email"),
        ("5551234", "z@localhost", 2, "email"),
        (
            "5551234",
            "customer1@example.com",
            4,
            "customer1@example.com",
        ),
    ] {
        let args = signup_with(contact, email);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&cluster, &refs, code, field);
    }
    refused(
        &cluster,
        &["cart", "add", &p1s, "--qty", "0", "--token", &bob],
        2,
        "qty",
    );
    refused(&cluster, &["product", "show", "999999"], 3, "999999");
    refused(
        &cluster,
        &["cart", "add", "999999", "--token", &bob],
        3,
        "999999",
    );
    refused(
        &cluster,
        &["cart", "--token", "not-a-real-session-token"],
        5,
        "session",
    );
    refused(
        &cluster,
        &[
            "product", "update", &p1s, "--price", "1.00", "--token", &max,
        ],
        5,
        "",
    );
    // Logout and account deletion end the session.
    ok(&cluster, &["logout", "--token", &bob]);
    refused(&cluster, &["cart", "--token", &bob], 5, "session");
    // The saved session (text login above) works without --token, and logout forgets it.
    ok(&cluster, &["cart"]);
    ok(&cluster, &["logout"]);
    refused(&cluster, &["cart"], 5, "login");
    let carol = customer(&cluster, 3);
    ok(&cluster, &["account", "delete", "--token", &carol]);
    refused(&cluster, &["orders", "--token", &carol], 5, "session");
}
