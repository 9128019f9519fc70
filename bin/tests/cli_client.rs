//! The built `shoal` binary against a real QUIC endpoint: a `PeerTransport` on 127.0.0.1:0
//! with certificates from `shoal init`, its client requests served by the request handler
//! over the in-memory node (a real shop state machine, no Raft). Everything above the Raft
//! layer, end to end: TLS, bodies, prepare (argon2, tokens), exit codes, --json shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shoal::config::{ClusterConfig, MemberConfig};
use shoal::server::memory::MemoryNode;
use shoal::server::{self, ServerContext};
use shoal_net::{PeerTransport, PeerTransportConfig, TlsIdentity, TransportChannels};
use shoal_shop::PrepareConfig;

/// Bound on one CLI invocation.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

struct Harness {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    addr: SocketAddr,
    node: Arc<MemoryNode>,
    transport: PeerTransport,
    _peer_messages: tokio::sync::mpsc::Receiver<shoal_net::InboundMessage>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {:?}", self.stdout))
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        self
    }

    fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line on stderr: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr {:?} should mention {needle:?}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"));
        self
    }
}

async fn start(fault_hook: bool) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let init = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["init", "--nodes", "1", "--cluster-dir"])
        .arg(&dir)
        .env_remove("SHOAL_DIR")
        .output()
        .await
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let node_dir = dir.join("node-1");
    let identity = TlsIdentity::from_files(
        &node_dir.join("ca.pem"),
        &node_dir.join("node.pem"),
        &node_dir.join("node-key.pem"),
    )
    .unwrap();
    let config = PeerTransportConfig::new(1, "127.0.0.1:0".parse().unwrap(), identity);
    let (transport, channels) = PeerTransport::bind(config).await.unwrap();
    let TransportChannels {
        peer_messages,
        client_requests,
        ..
    } = channels;
    let addr = transport.local_addr().unwrap();
    let node =
        Arc::new(MemoryNode::open(1, Some(addr.to_string()), &tmp.path().join("shop")).unwrap());
    let cluster = ClusterConfig {
        name: "test".into(),
        members: vec![MemberConfig {
            id: 1,
            addr: addr.to_string(),
            client_addr: None,
        }],
    };
    let mut context = ServerContext::new(1, cluster, fault_hook);
    context.prepare = PrepareConfig::fast_for_tests();
    tokio::spawn(server::serve(
        client_requests,
        node.clone(),
        Arc::new(context),
    ));
    Harness {
        _tmp: tmp,
        dir,
        addr,
        node,
        transport,
        _peer_messages: peer_messages,
    }
}

impl Harness {
    fn tls_args(&self) -> Vec<String> {
        let d = &self.dir;
        let s = |p: &Path| p.display().to_string();
        vec![
            "--cluster".into(),
            self.addr.to_string(),
            "--ca".into(),
            s(&d.join("ca.pem")),
            "--cert".into(),
            s(&d.join("client.pem")),
            "--key".into(),
            s(&d.join("client-key.pem")),
            "--cluster-dir".into(),
            s(d),
        ]
    }

    /// Runs `shoal ARGS` against the harness's node (global flags after the subcommand, as
    /// users type them).
    async fn shoal(&self, args: &[&str]) -> Run {
        self.shoal_env(args, &[]).await
    }

    async fn shoal_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(args)
            .args(self.tls_args())
            .env_remove("SHOAL_DIR")
            .env_remove("SHOAL_TOKEN")
            .env_remove("SHOAL_PASSWORD")
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let out = tokio::time::timeout(RUN_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("shoal {args:?} did not finish within {RUN_TIMEOUT:?}"))
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn stop(self) {
        self.transport.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_round_trip_and_json_shapes() {
    let h = start(false).await;
    assert_eq!(
        h.shoal(&["kv", "put", "greeting", "hello"])
            .await
            .ok()
            .stdout
            .trim(),
        "ok"
    );
    let got = h
        .shoal(&["kv", "get", "greeting", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        got,
        serde_json::json!({"key": "greeting", "value": "hello"})
    );
    assert!(
        h.shoal(&["kv", "get", "greeting"])
            .await
            .ok()
            .stdout
            .contains("hello")
    );
    let missing = h.shoal(&["--json", "kv", "get", "nope"]).await.ok().json();
    assert_eq!(missing, serde_json::json!({"key": "nope", "value": null}));
    for consistency in ["lease", "stale", "linearizable"] {
        let v = h
            .shoal(&[
                "kv",
                "get",
                "greeting",
                "--json",
                "--consistency",
                consistency,
            ])
            .await
            .ok()
            .json();
        assert_eq!(v["value"], "hello");
    }
    h.shoal(&["kv", "cas", "greeting", "hello", "bye"])
        .await
        .ok();
    h.shoal(&["kv", "cas", "greeting", "hello", "again"])
        .await
        .fails(4, "compare-and-swap");
    let doc = h
        .shoal(&["kv", "cas", "greeting", "hello", "again", "--json"])
        .await
        .json();
    assert_eq!(doc["error"]["kind"], "cas_mismatch");
    h.shoal(&["kv", "cas", "fresh", "--absent", "1"]).await.ok();
    h.shoal(&["kv", "put", "user/1", "a"]).await.ok();
    h.shoal(&["kv", "put", "user/2", "b"]).await.ok();
    let scan = h
        .shoal(&["kv", "scan", "user/", "--json"])
        .await
        .ok()
        .json();
    let keys: Vec<&str> = scan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["user/1", "user/2"]);
    h.shoal(&["kv", "del", "user/1"]).await.ok();
    let v = h
        .shoal(&["kv", "get", "user/1", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(v["value"], Value::Null);
    h.shoal(&["kv", "put", "", "v"]).await.fails(2, "key");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_members_and_operator_commands() {
    let h = start(false).await;
    let rows = h.shoal(&["status", "--json"]).await.ok().json();
    let row = &rows.as_array().unwrap()[0];
    for field in [
        "id",
        "address",
        "reachable",
        "role",
        "term",
        "leader",
        "commit_index",
        "applied_index",
        "last_index",
        "snapshot_index",
        "wal_bytes",
    ] {
        assert!(row.get(field).is_some(), "status row lacks {field}: {row}");
    }
    assert_eq!(row["role"], "leader");
    assert_eq!(row["reachable"], true);
    assert_eq!(row["leader"], 1);
    // An unreachable node is listed as such, within a bound.
    let mut args = vec!["status", "--json"];
    let both = format!("{},127.0.0.1:9", h.addr);
    args.extend(["--cluster", both.as_str()]);
    let rows = h.shoal(&args).await.ok().json();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["reachable"], false);
    assert_eq!(rows[1]["address"], "127.0.0.1:9");
    let text = h.shoal(&["status"]).await.ok().stdout;
    assert!(text.contains("leader"), "{text}");

    let members = h.shoal(&["member", "list", "--json"]).await.ok().json();
    assert_eq!(members["members"][0]["id"], 1);
    h.shoal(&["member", "add", "4", "127.0.0.1:7004"])
        .await
        .ok();
    h.shoal(&["member", "add", "4", "127.0.0.1:7004"])
        .await
        .fails(4, "already a member");
    h.shoal(&["member", "add", "5", "nohost"])
        .await
        .fails(2, "address");
    let members = h.shoal(&["member", "list", "--json"]).await.ok().json();
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    h.shoal(&["member", "remove", "4"]).await.ok();
    h.shoal(&["member", "remove", "4"])
        .await
        .fails(3, "not a member");
    h.shoal(&["leader", "transfer", "1"]).await.ok();
    h.shoal(&["leader", "transfer", "0"]).await.fails(2, "id");
    h.shoal(&["kv", "put", "k", "v"]).await.ok();
    let snap = h.shoal(&["snapshot", "--json"]).await.ok().json();
    assert!(
        snap["snapshots"][0]["snapshot_index"].as_u64().unwrap() >= 1,
        "{snap}"
    );
    // Fault commands are refused: this node's hook is off.
    assert!(h.node.faults().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_and_constraints() {
    let h = start(false).await;
    let customer = [
        "signup",
        "--role",
        "customer",
        "--name",
        "Ada Lovelace",
        "--email",
        "ada@example.com",
        "--password",
        "analytical",
        "--address",
        "12 St James's Square",
        "--contact",
        "+441234567890",
    ];
    let mut json_signup = customer.to_vec();
    json_signup.push("--json");
    let doc = h.shoal(&json_signup).await.ok().json();
    let account_id = doc["account_id"].as_u64().expect("account_id");
    h.shoal(&customer).await.fails(4, "already registered");
    // Constraint violations: exit 2, the field named.
    let mut bad = customer.to_vec();
    bad[12] = "12ab";
    h.shoal(&bad).await.fails(2, "contact");
    let mut bad = customer.to_vec();
    bad[6] = "ada-at-example.com";
    h.shoal(&bad).await.fails(2, "email");
    let mut bad = customer.to_vec();
    bad[4] = "";
    h.shoal(&bad).await.fails(2, "name");
    let owner_missing_last = [
        "signup",
        "--role",
        "owner",
        "--first",
        "Grace",
        "--email",
        "g@example.com",
        "--password",
        "pw",
        "--contact",
        "1234567",
    ];
    h.shoal(&owner_missing_last).await.fails(2, "last");

    // No session yet: exit 5.
    h.shoal(&["cart"]).await.fails(5, "not logged in");
    h.shoal(&["login", "--email", "ada@example.com", "--password", "wrong"])
        .await
        .fails(5, "invalid email or password");
    let login = h
        .shoal(&[
            "login",
            "--email",
            "ada@example.com",
            "--password",
            "analytical",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(login["account_id"].as_u64(), Some(account_id));
    // The password can come from SHOAL_PASSWORD instead (kept out of the process list).
    let from_env = h
        .shoal_env(
            &["login", "--email", "ada@example.com", "--json"],
            &[("SHOAL_PASSWORD", "analytical")],
        )
        .await
        .ok()
        .json();
    assert_eq!(from_env["account_id"].as_u64(), Some(account_id));
    h.shoal_env(
        &["login", "--email", "ada@example.com"],
        &[("SHOAL_PASSWORD", "wrong")],
    )
    .await
    .fails(5, "invalid email or password");
    // The last successful login (the one from the environment) is the saved session; a
    // refused one leaves it alone.
    let token = from_env["token"].as_str().unwrap().to_owned();
    let saved = std::fs::read_to_string(h.dir.join(".session")).unwrap();
    assert_eq!(saved.trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.dir.join(".session"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
    // The saved session works; so do --token and SHOAL_TOKEN.
    let users = h
        .shoal(&["users", "--pattern", "ada*", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(users["users"][0]["email"], "ada@example.com");
    let users = h
        .shoal(&["users", "--pattern", "zz*", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(users["users"].as_array().unwrap().len(), 0);
    h.shoal(&["cart", "--token", &token]).await.ok();
    h.shoal_env(&["cart"], &[("SHOAL_TOKEN", &token)])
        .await
        .ok();
    h.shoal(&["cart", "--token", "bogus"])
        .await
        .fails(5, "token");
    // The password never reaches the state in clear.
    h.shoal(&["logout"]).await.ok();
    assert!(!h.dir.join(".session").exists());
    h.shoal(&["cart", "--token", &token])
        .await
        .fails(5, "not authenticated");
    h.shoal(&["cart"]).await.fails(5, "not logged in");

    // No password in clear anywhere in the node's state.
    assert_no_file_contains(h._tmp.path(), b"analytical");

    // account delete ends the account.
    h.shoal(&[
        "login",
        "--email",
        "ada@example.com",
        "--password",
        "analytical",
    ])
    .await
    .ok();
    h.shoal(&["account", "delete"]).await.ok();
    h.shoal(&[
        "login",
        "--email",
        "ada@example.com",
        "--password",
        "analytical",
    ])
    .await
    .fails(5, "invalid email or password");
    h.stop().await;
}

fn assert_no_file_contains(dir: &Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_contains(&path, needle);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds the clear password",
                path.display()
            );
        }
    }
}

async fn login_token(h: &Harness, email: &str) -> String {
    let doc = h
        .shoal(&["login", "--email", email, "--password", "pw", "--json"])
        .await
        .ok()
        .json();
    doc["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_cart_checkout_sales_and_chat() {
    let h = start(false).await;
    h.shoal(&[
        "signup",
        "--role",
        "owner",
        "--first",
        "Grace",
        "--middle",
        "B",
        "--last",
        "Hopper",
        "--email",
        "grace@example.com",
        "--password",
        "pw",
        "--contact",
        "1234567",
    ])
    .await
    .ok();
    h.shoal(&[
        "signup",
        "--role",
        "customer",
        "--name",
        "Alan",
        "--email",
        "alan@example.com",
        "--password",
        "pw",
        "--address",
        "Bletchley",
        "--contact",
        "7654321",
    ])
    .await
    .ok();
    let owner = login_token(&h, "grace@example.com").await;
    let customer = login_token(&h, "alan@example.com").await;
    let o = ["--token", owner.as_str()];
    let c = ["--token", customer.as_str()];
    let with = |base: &[&str], auth: &[&str]| -> Vec<String> {
        base.iter()
            .chain(auth.iter())
            .map(|s| s.to_string())
            .collect()
    };
    async fn run(h: &Harness, args: Vec<String>) -> Run {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        h.shoal(&refs).await
    }

    let store = run(
        &h,
        with(&["store", "create", "--name", "Footwear Co", "--json"], &o),
    )
    .await
    .ok()
    .json();
    let store_id = store["store_id"].as_u64().unwrap().to_string();
    let mut ids = Vec::new();
    for (name, category, brand, size, price, stock) in [
        ("Runner", "footwear", "Acme", "42", "59.99", "10"),
        ("Trail", "footwear", "Acme", "43", "89.50", "1"),
        ("Loafer", "footwear", "Bolt", "42", "120.00", "5"),
        ("Scarf", "accessories", "Acme", "M", "12.34", "3"),
    ] {
        let doc = run(
            &h,
            with(
                &[
                    "product",
                    "add",
                    "--store",
                    &store_id,
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
                    stock,
                    "--json",
                ],
                &o,
            ),
        )
        .await
        .ok()
        .json();
        ids.push(doc["product_id"].as_u64().unwrap().to_string());
    }
    // Constraints on products.
    let bad_price = |price: &'static str| {
        with(
            &[
                "product",
                "add",
                "--store",
                &store_id,
                "--name",
                "X",
                "--category",
                "c",
                "--brand",
                "b",
                "--size",
                "s",
                "--price",
                price,
                "--stock",
                "1",
            ],
            &o,
        )
    };
    run(&h, bad_price("0")).await.fails(2, "price");
    run(&h, bad_price("-1")).await.fails(2, "price");
    run(&h, bad_price("1.234")).await.fails(2, "price");
    run(
        &h,
        with(
            &[
                "product",
                "add",
                "--store",
                &store_id,
                "--name",
                "X",
                "--category",
                "c",
                "--brand",
                "b",
                "--size",
                "s",
                "--price",
                "1.00",
                "--stock",
                "-1",
            ],
            &o,
        ),
    )
    .await
    .fails(2, "stock");
    // Customers cannot add products.
    run(
        &h,
        with(
            &[
                "product",
                "add",
                "--store",
                &store_id,
                "--name",
                "X",
                "--category",
                "c",
                "--brand",
                "b",
                "--size",
                "s",
                "--price",
                "1.00",
                "--stock",
                "1",
            ],
            &c,
        ),
    )
    .await
    .fails(5, "");

    // product show: the SPEC's fields, money as a string.
    let scarf = h
        .shoal(&["product", "show", &ids[3], "--json"])
        .await
        .ok()
        .json();
    for field in [
        "product_id",
        "name",
        "category",
        "brand",
        "size",
        "price",
        "stock",
    ] {
        assert!(scarf.get(field).is_some(), "{field} in {scarf}");
    }
    assert_eq!(scarf["price"], "12.34");
    h.shoal(&["product", "show", "99999"])
        .await
        .fails(3, "not found");

    // Filters compose; pages cover every match exactly once.
    let page = h
        .shoal(&[
            "products",
            "--category",
            "footwear",
            "--brand",
            "acme",
            "--json",
        ])
        .await
        .ok()
        .json();
    let names: Vec<&str> = page["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Runner", "Trail"]);
    let page = h
        .shoal(&[
            "products",
            "--min-price",
            "60",
            "--max-price",
            "120.00",
            "--size",
            "42",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(page["products"].as_array().unwrap().len(), 1);
    assert_eq!(page["products"][0]["name"], "Loafer");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let mut args = vec![
            "products".to_string(),
            "--limit".into(),
            "1".into(),
            "--json".into(),
        ];
        if let Some(a) = &after {
            args.extend(["--after".to_string(), a.clone()]);
        }
        let doc = run(&h, args).await.ok().json();
        for p in doc["products"].as_array().unwrap() {
            seen.push(p["product_id"].as_u64().unwrap());
        }
        match doc["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    seen.sort_unstable();
    assert_eq!(seen.len(), 4, "{seen:?}");
    h.shoal(&["products", "--after", "garbage"])
        .await
        .fails(2, "after");
    h.shoal(&["products", "--min-price", "ten"])
        .await
        .fails(2, "min-price");
    h.shoal(&["products", "--limit", "0"])
        .await
        .fails(2, "limit");

    // Cart and checkout.
    run(&h, with(&["cart", "add", &ids[0], "--qty", "2"], &c))
        .await
        .ok();
    run(&h, with(&["cart", "add", &ids[0]], &c)).await.ok();
    run(&h, with(&["cart", "add", &ids[3], "--qty", "0"], &c))
        .await
        .fails(2, "qty");
    run(&h, with(&["cart", "add", "99999"], &c))
        .await
        .fails(3, "not found");
    let cart = run(&h, with(&["cart", "--json"], &c)).await.ok().json();
    assert_eq!(cart["lines"][0]["qty"], 3);
    assert_eq!(cart["total"], "179.97");
    let order = run(&h, with(&["checkout", "--json"], &c)).await.ok().json();
    assert!(order["order_id"].as_u64().is_some());
    assert_eq!(order["total"], "179.97");
    let orders = run(&h, with(&["orders", "--json"], &c)).await.ok().json();
    assert_eq!(orders["orders"].as_array().unwrap().len(), 1);
    // Insufficient stock: exit 4, nothing bought.
    run(&h, with(&["cart", "add", &ids[1], "--qty", "2"], &c))
        .await
        .ok();
    run(&h, with(&["checkout"], &c))
        .await
        .fails(4, "insufficient stock");
    run(&h, with(&["cart", "remove", &ids[1]], &c)).await.ok();
    let trail = h
        .shoal(&["product", "show", &ids[1], "--json"])
        .await
        .ok()
        .json();
    assert_eq!(trail["stock"], 1);
    let runner = h
        .shoal(&["product", "show", &ids[0], "--json"])
        .await
        .ok()
        .json();
    assert_eq!(runner["stock"], 7);
    // Owner updates and sales.
    run(
        &h,
        with(&["product", "update", &ids[0], "--price", "49.00"], &o),
    )
    .await
    .ok();
    run(&h, with(&["product", "update", &ids[0]], &o))
        .await
        .fails(2, "price");
    let sales = run(&h, with(&["sales", "--json"], &o)).await.ok().json();
    let row = &sales["products"][0];
    assert_eq!(row["product_id"].as_u64().unwrap().to_string(), ids[0]);
    assert_eq!(row["units"], 3);
    assert_eq!(row["revenue"], "179.97");

    // Chat.
    let sent = run(
        &h,
        with(
            &[
                "chat",
                "send",
                "--to",
                "grace@example.com",
                "are the boots waterproof?",
                "--json",
            ],
            &c,
        ),
    )
    .await
    .ok()
    .json();
    let message_id = sent["message_id"].as_u64().unwrap().to_string();
    run(
        &h,
        with(&["chat", "send", "--to", "nobody@example.com", "hi"], &c),
    )
    .await
    .fails(3, "not found");
    run(
        &h,
        with(&["chat", "send", "--to", "not-an-email", "hi"], &c),
    )
    .await
    .fails(2, "to");
    let read = run(&h, with(&["chat", "read", "--unread", "--json"], &o))
        .await
        .ok()
        .json();
    let m = &read["messages"][0];
    assert_eq!(m["id"].as_u64().unwrap().to_string(), message_id);
    assert_eq!(m["from"], "alan@example.com");
    assert_eq!(m["text"], "are the boots waterproof?");
    let again = run(&h, with(&["chat", "read", "--unread", "--json"], &o))
        .await
        .ok()
        .json();
    assert_eq!(
        again["messages"].as_array().unwrap().len(),
        0,
        "read marks read"
    );
    run(&h, with(&["chat", "delete", &message_id], &o))
        .await
        .ok();
    run(&h, with(&["chat", "delete", &message_id], &o))
        .await
        .fails(3, "not found");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_commands_reach_an_enabled_hook_only() {
    // The CLI has no fault command yet (chaos will); drive the admin body directly.
    let h = start(true).await;
    let identity = TlsIdentity::from_files(
        &h.dir.join("ca.pem"),
        &h.dir.join("client.pem"),
        &h.dir.join("client-key.pem"),
    )
    .unwrap();
    let client =
        shoal_net::Client::new(&identity, shoal_net::ClientOptions::new(vec![h.addr])).unwrap();
    let body = shoal::api::AdminBody::Fault(shoal_net::FaultCommand::BlockOutbound(2)).to_bytes();
    let reply = client
        .request(shoal_net::RequestKind::Admin, body)
        .await
        .unwrap();
    assert_eq!(
        shoal::api::AdminReply::from_bytes(&reply).unwrap(),
        shoal::api::AdminReply::Done
    );
    assert_eq!(
        h.node.faults(),
        vec![shoal_net::FaultCommand::BlockOutbound(2)]
    );
    // Garbage bodies are rejected, not fatal.
    let err = client
        .request(shoal_net::RequestKind::Write, vec![0xff; 10])
        .await
        .unwrap_err();
    assert!(
        matches!(err, shoal_net::ClientError::Rejected { code, .. } if code == shoal::api::codes::BAD_BODY)
    );
    client.close().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_another_clusters_certificate_is_refused() {
    let h = start(false).await;
    let other = tempfile::tempdir().unwrap();
    let init = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["init", "--nodes", "1", "--cluster-dir"])
        .arg(other.path())
        .output()
        .await
        .unwrap();
    assert!(init.status.success());
    let p = |f: &str| other.path().join(f).display().to_string();
    let out = tokio::time::timeout(
        RUN_TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["kv", "get", "k", "--cluster", &h.addr.to_string()])
            .args([
                "--ca",
                &p("ca.pem"),
                "--cert",
                &p("client.pem"),
                "--key",
                &p("client-key.pem"),
            ])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("tls"), "{stderr}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_find_the_cluster_from_cluster_toml() {
    let h = start(false).await;
    // Point cluster.toml at the running endpoint, then use no --cluster/--ca/--cert/--key.
    let path = h.dir.join("cluster.toml");
    let mut cluster = ClusterConfig::load(&path).unwrap();
    cluster.members[0].addr = h.addr.to_string();
    std::fs::write(&path, cluster.to_toml().unwrap()).unwrap();
    let dir = h.dir.display().to_string();
    let bare = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(args)
            .env("SHOAL_DIR", &dir)
            .env_remove("SHOAL_TOKEN")
            .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(RUN_TIMEOUT, command.output())
                .await
                .unwrap()
                .unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
    };
    bare(&["kv", "put", "k", "v"]).await.ok();
    let v = bare(&["--json", "kv", "get", "k"]).await.ok().json();
    assert_eq!(v["value"], "v");
    let rows = bare(&["status", "--json"]).await.ok().json();
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(rows[0]["reachable"], true);
    // member add writes the new node's files (signed by the kept CA) and lists it.
    bare(&["member", "add", "2", "127.0.0.1:7002"]).await.ok();
    let node2 = h.dir.join("node-2");
    for file in ["node.toml", "ca.pem", "node.pem", "node-key.pem"] {
        assert!(node2.join(file).is_file(), "{file}");
    }
    let cluster = ClusterConfig::load(&path).unwrap();
    assert_eq!(cluster.ids(), vec![1, 2]);
    // Node 2 is not running: status shows it unreachable, within a bound.
    let rows = bare(&["status", "--json"]).await.ok().json();
    assert_eq!(rows[1]["id"], 2);
    assert_eq!(rows[1]["reachable"], false);
    bare(&["member", "remove", "2"]).await.ok();
    assert_eq!(ClusterConfig::load(&path).unwrap().ids(), vec![1]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_never_oversell() {
    const CUSTOMERS: usize = 12;
    const STOCK: usize = 5;
    let h = start(false).await;
    h.shoal(&[
        "signup",
        "--role",
        "owner",
        "--first",
        "O",
        "--last",
        "W",
        "--email",
        "o@example.com",
        "--password",
        "pw",
        "--contact",
        "1234567",
    ])
    .await
    .ok();
    let owner = login_token(&h, "o@example.com").await;
    let store = h
        .shoal(&[
            "store", "create", "--name", "S", "--json", "--token", &owner,
        ])
        .await
        .ok()
        .json();
    let store_id = store["store_id"].to_string();
    let stock = STOCK.to_string();
    let product = h
        .shoal(&[
            "product",
            "add",
            "--store",
            &store_id,
            "--name",
            "Boot",
            "--category",
            "footwear",
            "--brand",
            "Acme",
            "--size",
            "42",
            "--price",
            "10.00",
            "--stock",
            &stock,
            "--json",
            "--token",
            &owner,
        ])
        .await
        .ok()
        .json();
    let product_id = product["product_id"].to_string();
    let mut tokens = Vec::new();
    for i in 0..CUSTOMERS {
        let email = format!("c{i}@example.com");
        h.shoal(&[
            "signup",
            "--role",
            "customer",
            "--name",
            "C",
            "--email",
            &email,
            "--password",
            "pw",
            "--address",
            "x",
            "--contact",
            "1234567",
        ])
        .await
        .ok();
        let token = login_token(&h, &email).await;
        h.shoal(&["cart", "add", &product_id, "--token", &token])
            .await
            .ok();
        tokens.push(token);
    }
    // Every customer checks out at once, each as its own process.
    let args: Vec<[&str; 3]> = tokens
        .iter()
        .map(|t| ["checkout", "--token", t.as_str()])
        .collect();
    let runs = args.iter().map(|a| h.shoal(a));
    let mut succeeded = 0;
    for run in futures_join(runs).await {
        match run.code {
            0 => succeeded += 1,
            4 => assert!(run.stderr.contains("insufficient stock"), "{}", run.stderr),
            other => panic!("checkout exited {other}: {}", run.stderr),
        }
    }
    assert_eq!(succeeded, STOCK);
    let shown = h
        .shoal(&["product", "show", &product_id, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(shown["stock"], 0);
    let sales = h
        .shoal(&["sales", "--json", "--token", &owner])
        .await
        .ok()
        .json();
    assert_eq!(sales["products"][0]["units"], STOCK);
    h.stop().await;
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future<Output = Run>>(
    futures: impl Iterator<Item = F>,
) -> Vec<Run> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<Run>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, fut) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(run) => results[i] = Some(run),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}
