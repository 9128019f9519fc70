//! `shoal demo`: a scripted tour on a fresh temporary cluster.
//!
//! Three `shoal node` processes (children of this executable) on free ports in a temporary
//! directory, cheap argon2 costs in their `node.toml` so sign-ups and logins are quick, default
//! timing otherwise. The tour signs up an owner and customers, fills a catalogue, browses it
//! with filters and pages, fills carts, checks out (one checkout refused for want of stock),
//! shows orders and sales, chats, SIGKILLs the leader and carries on, restarts it, shows that
//! it caught up, and re-reads everything. Every step goes through the same client code as the
//! CLI commands ([`super::client::Connection`] and the shop's request types) in this process,
//! so it is quick. A guard kills every node on every path and the directory is removed.
//!
//! Any failure ends the demo with exit code 1 and one line naming the step.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use shoal_shop::{
    Action, Auth, Cursor, ProductFilter, Profile, Query, Request, Response, format_money,
};

use super::client::{Connection, connect};
use super::{CliError, CliResult, Consistency, GlobalArgs};
use crate::api::{NodeRole, NodeStatus, WriteBody};
use crate::config::{NODE_FILE, NodeConfig};
use crate::layout::{self, InitOptions};
use crate::node::process::{self, Signal};

/// Nodes in the demo cluster.
const NODES: u64 = 3;
/// Bound on a node writing its pid file after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a leader being elected (at start and after the leader is killed).
const ELECTION_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the restarted node catching up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a node stopping after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The password every demo account uses (hashed by the nodes, never stored in clear).
const PASSWORD: &str = "correct horse battery staple";

/// A product line of the demo's catalogue, added once per size.
struct Model {
    name: &'static str,
    category: &'static str,
    brand: &'static str,
    price_cents: i64,
    sizes: &'static [&'static str],
    stock: i64,
}

const fn model(
    name: &'static str,
    category: &'static str,
    brand: &'static str,
    price_cents: i64,
    sizes: &'static [&'static str],
    stock: i64,
) -> Model {
    Model {
        name,
        category,
        brand,
        price_cents,
        sizes,
        stock,
    }
}

/// Men's footwear (sneakers, boots, loafers) in store 1, outerwear and accessories in store 2.
const CATALOGUE: &[Model] = &[
    model(
        "Air Runner sneaker",
        "footwear",
        "Stride",
        8999,
        &["41", "42", "43", "44"],
        6,
    ),
    model(
        "Court Classic sneaker",
        "footwear",
        "Stride",
        6499,
        &["42", "43"],
        5,
    ),
    model(
        "Trail Blazer sneaker",
        "footwear",
        "Kestrel",
        11999,
        &["42", "43", "44"],
        4,
    ),
    model(
        "Chelsea boot",
        "footwear",
        "Oakridge",
        14900,
        &["42", "43", "44"],
        3,
    ),
    model(
        "Ranger work boot",
        "footwear",
        "Kestrel",
        17950,
        &["42", "44"],
        3,
    ),
    model(
        "Penny loafer",
        "footwear",
        "Milano",
        12500,
        &["41", "42", "43"],
        4,
    ),
    model(
        "Tassel loafer, limited edition",
        "footwear",
        "Milano",
        21000,
        &["42"],
        1,
    ),
    model(
        "Waxed field jacket",
        "outerwear",
        "Oakridge",
        19900,
        &["M", "L"],
        5,
    ),
    model(
        "Merino crew socks",
        "accessories",
        "Kestrel",
        1450,
        &["one-size"],
        40,
    ),
    model(
        "Leather belt",
        "accessories",
        "Milano",
        4900,
        &["90", "100"],
        8,
    ),
    model(
        "Shoe care kit",
        "accessories",
        "Stone",
        2499,
        &["one-size"],
        20,
    ),
];

/// Arguments of `shoal demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Keep the temporary cluster directory (data, logs) instead of removing it at the end.
    #[arg(long)]
    pub keep: bool,
}

/// The node processes; killed (SIGKILL) when dropped, whatever path the demo takes.
struct Nodes {
    dir: PathBuf,
    children: BTreeMap<u64, Child>,
}

impl Nodes {
    fn spawn(&mut self, id: u64) -> CliResult<u32> {
        let data_dir = layout::node_dir(&self.dir, id);
        let logs = data_dir.join(process::LOGS_DIR);
        std::fs::create_dir_all(&logs)
            .map_err(|e| CliError::io(format!("cannot create {}: {e}", logs.display())))?;
        let log_path = logs.join("stdout.log");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| CliError::io(format!("cannot open {}: {e}", log_path.display())))
        };
        let exe = std::env::current_exe()
            .map_err(|e| CliError::io(format!("cannot find the shoal executable: {e}")))?;
        // A stale pid file of a killed node must not pass for the new process's.
        let _ = std::fs::remove_file(process::pid_file(&data_dir));
        let mut child = Command::new(exe)
            .arg("node")
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(open()?))
            .stderr(Stdio::from(open()?))
            .spawn()
            .map_err(|e| CliError::io(format!("cannot start node {id}: {e}")))?;
        let pid = child.id();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if process::read_pid(&data_dir) == i32::try_from(pid).ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                return Err(CliError::io(format!(
                    "node {id} exited at start ({status}): {}",
                    last.trim()
                )));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError::io(format!(
                    "node {id} did not start within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.children.insert(id, child);
        Ok(pid)
    }

    /// SIGKILLs node `id` and reaps it; returns its pid.
    fn kill(&mut self, id: u64) -> CliResult<u32> {
        let mut child = self
            .children
            .remove(&id)
            .ok_or_else(|| CliError::io(format!("node {id} is not running")))?;
        let pid = child.id();
        child
            .kill()
            .map_err(|e| CliError::io(format!("cannot kill node {id}: {e}")))?;
        let _ = child.wait();
        Ok(pid)
    }

    /// SIGTERM to every node, a bounded wait, SIGKILL for any left; one line per node.
    fn stop_all(&mut self) -> Vec<String> {
        for child in self.children.values() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = process::signal(pid, Signal::Term);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut lines = Vec::new();
        for (id, mut child) in std::mem::take(&mut self.children) {
            let outcome = loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break "stopped cleanly".to_owned(),
                    Ok(Some(status)) => break format!("exited ({status})"),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break format!("killed after {STOP_TIMEOUT:?} without stopping");
                    }
                }
            };
            lines.push(format!("node {id}: {outcome}"));
        }
        lines
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `count` consecutive ports on 127.0.0.1 free for UDP (QUIC) and TCP; returns the first.
fn free_ports(count: u16) -> CliResult<u16> {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0")
            .map_err(|e| CliError::io(format!("cannot bind a UDP socket on 127.0.0.1: {e}")))?;
        let base = probe
            .local_addr()
            .map_err(|e| CliError::io(format!("cannot read a socket's address: {e}")))?
            .port();
        drop(probe);
        if !(20_000..=60_000).contains(&base) {
            continue;
        }
        let all_free = (base..base + count).all(|port| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if all_free {
            return Ok(base);
        }
    }
    Err(CliError::io(format!(
        "no {count} consecutive free ports on 127.0.0.1"
    )))
}

/// An account of the tour.
#[derive(Debug, Clone)]
struct Account {
    email: &'static str,
    token: String,
}

/// A product of the catalogue as the tour added it.
#[derive(Debug, Clone)]
struct Item {
    id: u64,
    name: String,
    category: &'static str,
    brand: &'static str,
    size: String,
    price_cents: i64,
}

/// Prints the tour (nothing under `--json`, where only the summary is printed).
struct Say {
    quiet: bool,
}

impl Say {
    fn raw(&self, text: &str) {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    fn heading(&self, step: usize, title: &str) {
        self.raw(&format!("\n== {step}. {title} =="));
    }

    fn note(&self, text: &str) {
        self.raw(&format!("   {text}"));
    }

    /// A command as a user would type it, then its output indented.
    fn command(&self, who: Option<&str>, line: &str, output: &str) {
        let prompt = who.map_or_else(|| "$".to_owned(), |w| format!("[{w}] $"));
        self.raw(&format!("{prompt} shoal {line}"));
        for l in output.lines() {
            self.raw(&format!("    {l}"));
        }
    }
}

fn text(response: &Response) -> String {
    shoal_shop::render::response_text(response)
}

/// The demo's state between steps.
struct Tour {
    say: Say,
    global: GlobalArgs,
    nodes: Nodes,
    conn: Connection,
    accounts: BTreeMap<&'static str, Account>,
    stores: Vec<(u64, &'static str)>,
    items: Vec<Item>,
    orders: Vec<(String, u64, i64)>,
    refused: Vec<String>,
    /// Messages sent: (recipient, id).
    messages: Vec<(String, u64)>,
    deleted_message: Option<u64>,
    failover: Value,
    catch_up: Value,
}

fn unexpected(what: &str, response: &Response) -> CliError {
    CliError::io(format!("unexpected answer to {what}: {}", text(response)))
}

impl Tour {
    fn account(&self, label: &str) -> CliResult<&Account> {
        self.accounts
            .get(label)
            .ok_or_else(|| CliError::io(format!("no account {label} in the tour")))
    }

    fn act(&self, label: &str, action: Action) -> CliResult<Response> {
        let token = self.account(label)?.token.clone();
        self.conn.shop(Request::Authed {
            auth: Auth::new(token, 0),
            action,
        })
    }

    fn auth(&self, label: &str) -> CliResult<Auth> {
        Ok(Auth::new(self.account(label)?.token.clone(), 0))
    }

    fn item(&self, name: &str, size: &str) -> CliResult<&Item> {
        self.items
            .iter()
            .find(|i| i.name == name && i.size == size)
            .ok_or_else(|| CliError::io(format!("no product {name} size {size} in the tour")))
    }

    /// The status of each node among `ids` (None: unreachable).
    fn statuses(&self, ids: &[u64]) -> Vec<(u64, Option<NodeStatus>)> {
        let targets: Vec<_> = self
            .conn
            .targets()
            .iter()
            .filter(|t| t.id.is_some_and(|id| ids.contains(&id)))
            .cloned()
            .collect();
        self.conn.statuses_of(&targets)
    }

    /// Waits until one node among `among` leads and the others know it; returns (id, term).
    fn wait_for_leader(&self, among: &[u64], newer_than: u64) -> CliResult<(u64, u64)> {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            let rows: Vec<NodeStatus> = self
                .statuses(among)
                .into_iter()
                .filter_map(|(_, s)| s)
                .collect();
            let leaders: Vec<&NodeStatus> = rows
                .iter()
                .filter(|s| s.role == NodeRole::Leader && s.term > newer_than)
                .collect();
            if let [leader] = leaders.as_slice()
                && rows.len() == among.len()
                && rows.iter().all(|s| s.leader == Some(leader.id))
            {
                return Ok((leader.id, leader.term));
            }
            if Instant::now() >= deadline {
                return Err(CliError::unavailable(format!(
                    "no leader among nodes {among:?} within {ELECTION_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn status_table(&self) {
        if !self.say.quiet {
            self.say.raw("$ shoal status");
            // The command's own table, from its own connection.
            if let Err(e) = super::status::run(&self.global) {
                self.say.note(&format!("(status failed: {})", e.message));
            }
        }
    }

    fn signup(&mut self, label: &'static str, email: &'static str, profile: Profile) -> CliResult {
        let line = match &profile {
            Profile::Customer {
                name,
                address,
                contact,
            } => format!(
                "signup --role customer --name {name:?} --email {email} --password '…' --address {address:?} --contact {contact}"
            ),
            Profile::Owner {
                first,
                middle,
                last,
                contact,
            } => format!(
                "signup --role owner --first {first}{} --last {last} --email {email} --password '…' --contact {contact}",
                middle
                    .as_ref()
                    .map(|m| format!(" --middle {m}"))
                    .unwrap_or_default()
            ),
        };
        let response = self.conn.write(WriteBody::Signup {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            profile,
        })?;
        let Response::AccountCreated { .. } = response else {
            return Err(unexpected("signup", &response));
        };
        self.say.command(None, &line, &text(&response));
        self.accounts.insert(
            label,
            Account {
                email,
                token: String::new(),
            },
        );
        Ok(())
    }

    fn login(&mut self, label: &'static str) -> CliResult {
        let email = self.account(label)?.email;
        let response = self.conn.write(WriteBody::Login {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
        })?;
        let Response::Session {
            token, account_id, ..
        } = &response
        else {
            return Err(unexpected("login", &response));
        };
        let shown = format!(
            "logged in as account {account_id}\ntoken {}… (saved for later commands)",
            token.chars().take(12).collect::<String>()
        );
        self.say.command(
            Some(label),
            &format!("login --email {email} --password '…'"),
            &shown,
        );
        if let Some(account) = self.accounts.get_mut(label) {
            account.token = token.clone();
        }
        Ok(())
    }

    fn step_cluster(&mut self) -> CliResult {
        let (leader, term) = self.wait_for_leader(&[1, 2, 3], 0)?;
        self.say.note(&format!(
            "node {leader} was elected leader (term {term}); clients may talk to any node"
        ));
        self.status_table();
        Ok(())
    }

    fn step_accounts(&mut self) -> CliResult {
        self.signup(
            "olivia",
            "olivia@stone-shoes.example",
            Profile::Owner {
                first: "Olivia".into(),
                middle: Some("Mae".into()),
                last: "Stone".into(),
                contact: "+15550100".into(),
            },
        )?;
        for (label, email, name, address, contact) in [
            (
                "alice",
                "alice@example.com",
                "Alice Martin",
                "12 Harbour Road, Bristol",
                "+447700900001",
            ),
            (
                "bob",
                "bob@example.com",
                "Bob Okafor",
                "4 Rue des Lilas, Lyon",
                "+33612345678",
            ),
            (
                "carol",
                "carol@example.com",
                "Carol Nguyen",
                "88 King Street, Toronto",
                "4165550123",
            ),
            (
                "dave",
                "dave@example.com",
                "Dave Fischer",
                "Lindenstrasse 3, Berlin",
                "+4915112345678",
            ),
        ] {
            self.signup(
                label,
                email,
                Profile::Customer {
                    name: name.into(),
                    address: address.into(),
                    contact: contact.into(),
                },
            )?;
        }
        // A second sign-up with the same email is refused (exit 4 from the CLI).
        let again = self.conn.write(WriteBody::Signup {
            email: "alice@example.com".into(),
            password: PASSWORD.into(),
            profile: Profile::Customer {
                name: "Alice Again".into(),
                address: "nowhere 1".into(),
                contact: "+447700900009".into(),
            },
        });
        match again {
            Err(e) if e.code == 4 => self.say.command(
                None,
                "signup --role customer --email alice@example.com …",
                &format!("refused (exit 4): {}", e.message),
            ),
            Err(e) => return Err(e),
            Ok(r) => return Err(unexpected("a duplicate sign-up", &r)),
        }
        for label in ["olivia", "alice", "bob", "carol", "dave"] {
            self.login(label)?;
        }
        let users = self.conn.read(Query::Users {
            auth: self.auth("olivia")?,
            pattern: None,
            after: None,
            limit: 20,
        })?;
        self.say.command(Some("olivia"), "users", &text(&users));
        self.say.note(
            "passwords were hashed with argon2 and a random salt on the node, before proposing",
        );
        Ok(())
    }

    fn step_catalogue(&mut self) -> CliResult {
        for name in ["Stone Shoes", "Stone Outfitters"] {
            let response = self.act(
                "olivia",
                Action::CreateStore {
                    name: name.to_owned(),
                },
            )?;
            let Response::StoreCreated { store_id } = response else {
                return Err(unexpected("store create", &response));
            };
            self.say.command(
                Some("olivia"),
                &format!("store create --name {name:?}"),
                &text(&response),
            );
            self.stores.push((store_id, name));
        }
        let shoes = self.stores[0].0;
        let outfitters = self.stores[1].0;
        let mut plan: Vec<(u64, &Model)> = Vec::new();
        for model in CATALOGUE {
            let store = if model.category == "footwear" {
                shoes
            } else {
                outfitters
            };
            plan.push((store, model));
        }
        let started = Instant::now();
        let mut first_line = None;
        for (store_id, model, size) in plan
            .iter()
            .flat_map(|(store, m)| m.sizes.iter().map(move |size| (*store, *m, *size)))
        {
            let Model {
                name,
                category,
                brand,
                price_cents,
                stock,
                ..
            } = *model;
            let response = self.act(
                "olivia",
                Action::AddProduct {
                    store_id,
                    name: name.to_owned(),
                    category: category.to_owned(),
                    brand: brand.to_owned(),
                    size: size.to_owned(),
                    price_cents,
                    stock,
                },
            )?;
            let Response::ProductCreated { product_id } = response else {
                return Err(unexpected("product add", &response));
            };
            first_line.get_or_insert_with(|| {
                (
                    format!(
                        "product add --store {store_id} --name {name:?} --category {category} --brand {brand} --size {size} --price {} --stock {stock}",
                        format_money(price_cents)
                    ),
                    text(&response),
                )
            });
            self.items.push(Item {
                id: product_id,
                name: name.to_owned(),
                category,
                brand,
                size: size.to_owned(),
                price_cents,
            });
        }
        if let Some((line, output)) = first_line {
            self.say.command(Some("olivia"), &line, &output);
        }
        let footwear_count = self
            .items
            .iter()
            .filter(|i| i.category == "footwear")
            .count();
        self.say.note(&format!(
            "… and {} more: {} products in {} ms — {footwear_count} pairs of men's footwear (sneakers, boots, loafers; brands Stride, Kestrel, Oakridge, Milano; sizes 41–44) in store {shoes}, outerwear and accessories in store {outfitters}",
            self.items.len().saturating_sub(1),
            self.items.len(),
            started.elapsed().as_millis()
        ));
        Ok(())
    }

    fn list(
        &self,
        filter: ProductFilter,
    ) -> CliResult<(
        Vec<shoal_shop::types::ProductView>,
        Option<Cursor>,
        Response,
    )> {
        let response = self.conn.read(Query::Products(filter))?;
        match &response {
            Response::Products { products, next } => {
                Ok((products.clone(), *next, response.clone()))
            }
            other => Err(unexpected("products", other)),
        }
    }

    fn step_browse(&mut self) -> CliResult {
        // Every filter at once.
        let filter = ProductFilter {
            category: Some("footwear".into()),
            brand: Some("Kestrel".into()),
            size: Some("42".into()),
            min_price_cents: Some(10_000),
            max_price_cents: Some(20_000),
            ..ProductFilter::default()
        };
        let (found, _, response) = self.list(filter)?;
        self.say.command(
            Some("alice"),
            "products --category footwear --brand Kestrel --size 42 --min-price 100.00 --max-price 200.00",
            &text(&response),
        );
        let expected: BTreeSet<u64> = self
            .items
            .iter()
            .filter(|i| {
                i.category == "footwear"
                    && i.brand == "Kestrel"
                    && i.size == "42"
                    && (10_000..=20_000).contains(&i.price_cents)
            })
            .map(|i| i.id)
            .collect();
        let got: BTreeSet<u64> = found.iter().map(|p| p.product_id).collect();
        if got != expected {
            return Err(CliError::io(format!(
                "the filters returned products {got:?}, expected {expected:?}"
            )));
        }
        // Loafers under 150.00 in size 42.
        let (_, _, response) = self.list(ProductFilter {
            category: Some("footwear".into()),
            brand: Some("milano".into()),
            size: Some("42".into()),
            max_price_cents: Some(15_000),
            ..ProductFilter::default()
        })?;
        self.say.command(
            Some("alice"),
            "products --category footwear --brand milano --size 42 --max-price 150.00",
            &text(&response),
        );
        // Every pair of footwear, five at a time, following --after.
        let mut seen = Vec::new();
        let mut after = None;
        let mut page = 0;
        loop {
            page += 1;
            let (products, next, response) = self.list(ProductFilter {
                category: Some("footwear".into()),
                limit: 5,
                after,
                ..ProductFilter::default()
            })?;
            let line = match after {
                None => "products --category footwear --limit 5".to_owned(),
                Some(cursor) => format!("products --category footwear --limit 5 --after {cursor}"),
            };
            if page <= 2 {
                self.say.command(Some("alice"), &line, &text(&response));
            }
            seen.extend(products.iter().map(|p| p.product_id));
            match next {
                Some(cursor) if page < 100 => after = Some(cursor),
                _ => break,
            }
        }
        let unique: BTreeSet<u64> = seen.iter().copied().collect();
        let footwear: BTreeSet<u64> = self
            .items
            .iter()
            .filter(|i| i.category == "footwear")
            .map(|i| i.id)
            .collect();
        if unique != footwear || unique.len() != seen.len() {
            return Err(CliError::io(format!(
                "paging returned {} products ({} distinct), expected each of the {} pairs of footwear once",
                seen.len(),
                unique.len(),
                footwear.len()
            )));
        }
        self.say.note(&format!(
            "… {page} pages in all: each of the {} pairs of footwear exactly once, cheapest first",
            footwear.len()
        ));
        let boot = self.item("Chelsea boot", "43")?.id;
        let response = self.conn.read(Query::Product { product_id: boot })?;
        self.say.command(
            Some("alice"),
            &format!("product show {boot}"),
            &text(&response),
        );
        Ok(())
    }

    fn cart_add(&self, label: &str, product_id: u64, qty: i64) -> CliResult {
        let response = self.act(label, Action::CartAdd { product_id, qty })?;
        let line = if qty == 1 {
            format!("cart add {product_id}")
        } else {
            format!("cart add {product_id} --qty {qty}")
        };
        self.say.command(Some(label), &line, &text(&response));
        Ok(())
    }

    fn show_cart(&self, label: &str) -> CliResult {
        let response = self.conn.read(Query::Cart {
            auth: self.auth(label)?,
        })?;
        self.say.command(Some(label), "cart", &text(&response));
        Ok(())
    }

    fn checkout(&mut self, label: &str) -> CliResult<u64> {
        let response = self.act(label, Action::Checkout)?;
        let Response::Checkout {
            order_id,
            total_cents,
        } = response
        else {
            return Err(unexpected("checkout", &response));
        };
        self.say.command(Some(label), "checkout", &text(&response));
        self.orders.push((label.to_owned(), order_id, total_cents));
        Ok(order_id)
    }

    fn step_carts(&mut self) -> CliResult {
        let runner = self.item("Air Runner sneaker", "42")?.id;
        let chelsea = self.item("Chelsea boot", "43")?.id;
        let socks = self.item("Merino crew socks", "one-size")?.id;
        let tassel = self.item("Tassel loafer, limited edition", "42")?.id;
        let jacket = self.item("Waxed field jacket", "L")?.id;
        let penny = self.item("Penny loafer", "42")?.id;
        self.cart_add("alice", runner, 1)?;
        self.cart_add("alice", chelsea, 1)?;
        self.cart_add("alice", socks, 2)?;
        self.cart_add("alice", runner, 1)?;
        self.say
            .note("adding the same product again accumulates: 2 × Air Runner now");
        self.show_cart("alice")?;
        self.checkout("alice")?;
        // Bob and Carol both want the last limited-edition loafer.
        self.say.note(
            "Bob and Carol both put the last limited-edition loafer (stock 1) in their carts",
        );
        self.cart_add("bob", tassel, 1)?;
        self.cart_add("carol", tassel, 1)?;
        self.cart_add("carol", socks, 1)?;
        self.checkout("bob")?;
        match self.act("carol", Action::Checkout) {
            Err(e) if e.code == 4 => {
                self.say.command(
                    Some("carol"),
                    "checkout",
                    &format!("refused (exit 4): {}", e.message),
                );
                self.say
                    .note("nothing was bought: checkout is atomic across the cart's lines");
                self.refused.push(e.message);
            }
            Err(e) => return Err(e),
            Ok(r) => return Err(unexpected("an oversold checkout", &r)),
        }
        let response = self.act(
            "carol",
            Action::CartRemove {
                product_id: tassel,
                qty: None,
            },
        )?;
        self.say.command(
            Some("carol"),
            &format!("cart remove {tassel}"),
            &text(&response),
        );
        self.cart_add("carol", penny, 1)?;
        self.checkout("carol")?;
        self.cart_add("dave", jacket, 1)?;
        self.cart_add("dave", socks, 3)?;
        self.checkout("dave")?;
        let response = self.conn.read(Query::Product { product_id: tassel })?;
        self.say
            .command(None, &format!("product show {tassel}"), &text(&response));
        Ok(())
    }

    fn step_orders(&mut self) -> CliResult {
        let response = self.conn.read(Query::Orders {
            auth: self.auth("alice")?,
            after: None,
            limit: 20,
        })?;
        self.say.command(Some("alice"), "orders", &text(&response));
        let response = self.conn.read(Query::Sales {
            auth: self.auth("olivia")?,
            store_id: None,
        })?;
        self.say.command(Some("olivia"), "sales", &text(&response));
        let price = self.item("Air Runner sneaker", "42")?;
        let (id, old) = (price.id, price.price_cents);
        let response = self.act(
            "olivia",
            Action::UpdateProduct {
                product_id: id,
                price_cents: Some(old + 1000),
                stock: None,
            },
        )?;
        self.say.command(
            Some("olivia"),
            &format!("product update {id} --price {}", format_money(old + 1000)),
            &text(&response),
        );
        self.say
            .note("orders keep the price paid: Alice's order still says the old price");
        Ok(())
    }

    fn chat_send(&mut self, from: &str, to: &str, message: &str) -> CliResult<u64> {
        let to_email = self.account(to)?.email;
        let response = self.act(
            from,
            Action::ChatSend {
                to_email: to_email.to_owned(),
                text: message.to_owned(),
            },
        )?;
        let Response::MessageSent { message_id } = response else {
            return Err(unexpected("chat send", &response));
        };
        self.say.command(
            Some(from),
            &format!("chat send --to {to_email} {message:?}"),
            &text(&response),
        );
        self.messages.push((to.to_owned(), message_id));
        Ok(message_id)
    }

    fn chat_read(&self, label: &str, unread: bool) -> CliResult<Response> {
        let response = self.act(
            label,
            Action::ChatRead {
                unread_only: unread,
                after: None,
                limit: 50,
            },
        )?;
        let line = if unread {
            "chat read --unread"
        } else {
            "chat read"
        };
        self.say.command(Some(label), line, &text(&response));
        Ok(response)
    }

    fn step_chat(&mut self) -> CliResult {
        self.chat_send(
            "alice",
            "olivia",
            "Hi! Do the Chelsea boots run true to size?",
        )?;
        let spam = self.chat_send("bob", "olivia", "Any discount on a second loafer?")?;
        self.chat_send(
            "carol",
            "olivia",
            "Will the limited loafer come back in 42?",
        )?;
        self.chat_read("olivia", true)?;
        self.chat_send(
            "olivia",
            "alice",
            "They do — take your usual size. Enjoy them!",
        )?;
        self.chat_read("alice", true)?;
        let again = self.chat_read("olivia", true)?;
        if !matches!(&again, Response::Messages { messages, .. } if messages.is_empty()) {
            return Err(unexpected("a second chat read --unread", &again));
        }
        self.say
            .note("read messages are marked read: nothing unread the second time");
        let response = self.act("olivia", Action::ChatDelete { message_id: spam })?;
        self.say.command(
            Some("olivia"),
            &format!("chat delete {spam}"),
            &text(&response),
        );
        self.deleted_message = Some(spam);
        self.chat_read("olivia", false)?;
        Ok(())
    }

    fn step_failover(&mut self) -> CliResult {
        let (leader, term) = self.wait_for_leader(&[1, 2, 3], 0)?;
        let pid = self.nodes.kill(leader)?;
        let killed_at = Instant::now();
        self.say.note(&format!(
            "node {leader} leads (term {term}): killing it with SIGKILL (pid {pid}) — no clean shutdown"
        ));
        let others: Vec<u64> = (1..=NODES).filter(|id| *id != leader).collect();
        let (new_leader, new_term) = self.wait_for_leader(&others, term)?;
        let elapsed = killed_at.elapsed();
        self.say.note(&format!(
            "node {new_leader} was elected leader (term {new_term}) {:.1} s after the kill",
            elapsed.as_secs_f64()
        ));
        self.status_table();
        self.say
            .note("the shop carries on: the client follows the new leader");
        let belt = self.item("Leather belt", "100")?.id;
        self.cart_add("bob", belt, 1)?;
        self.checkout("bob")?;
        self.chat_send("bob", "olivia", "Ordered a belt too, thanks!")?;
        let response = self.act(
            "olivia",
            Action::UpdateProduct {
                product_id: belt,
                price_cents: None,
                stock: Some(20),
            },
        )?;
        self.say.command(
            Some("olivia"),
            &format!("product update {belt} --stock 20"),
            &text(&response),
        );
        self.failover = json!({
            "killed_leader": leader,
            "killed_term": term,
            "new_leader": new_leader,
            "new_term": new_term,
            "election_ms": elapsed.as_millis() as u64,
        });
        Ok(())
    }

    fn step_restart(&mut self) -> CliResult {
        let killed = self.failover["killed_leader"].as_u64().unwrap_or(0);
        let pid = self.nodes.spawn(killed)?;
        self.say.note(&format!(
            "node {killed} restarted (pid {pid}): it reopens its WAL and state, then catches up from the leader"
        ));
        let started = Instant::now();
        let deadline = started + CATCH_UP_TIMEOUT;
        let (applied, commit) = loop {
            let all: Vec<u64> = (1..=NODES).collect();
            let rows = self.statuses(&all);
            let leader_commit = rows
                .iter()
                .filter_map(|(_, s)| s.as_ref())
                .find(|s| s.role == NodeRole::Leader)
                .map(|s| s.commit_index);
            let mine = rows
                .iter()
                .find(|(id, _)| *id == killed)
                .and_then(|(_, s)| s.as_ref())
                .map(|s| s.applied_index);
            if let (Some(commit), Some(applied)) = (leader_commit, mine)
                && applied >= commit
            {
                break (applied, commit);
            }
            if Instant::now() >= deadline {
                return Err(CliError::unavailable(format!(
                    "node {killed} did not catch up within {CATCH_UP_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.say.note(&format!(
            "node {killed} caught up in {:.1} s: applied index {applied} (leader's commit index {commit})",
            started.elapsed().as_secs_f64()
        ));
        self.status_table();
        // Read from the restarted node alone, from its own state.
        let member = crate::config::ClusterConfig::load(
            &self.global.cluster_dir.join(crate::config::CLUSTER_FILE),
        )
        .map_err(|e| CliError::io(e.to_string()))?;
        let address = member
            .member(killed)
            .map(|m| m.client_address().to_owned())
            .ok_or_else(|| CliError::io(format!("node {killed} is not in cluster.toml")))?;
        let mut only = self.global.clone();
        only.cluster = vec![address];
        only.ca = Some(self.global.cluster_dir.join(layout::CA_CERT_FILE));
        only.cert = Some(self.global.cluster_dir.join(layout::CLIENT_CERT_FILE));
        only.key = Some(self.global.cluster_dir.join(layout::CLIENT_KEY_FILE));
        only.consistency = Consistency::Stale;
        let local = connect(&only)?;
        let belt = self.item("Leather belt", "100")?.id;
        let response = local.read(Query::Product { product_id: belt })?;
        self.say.command(
            None,
            &format!(
                "product show {belt} --consistency stale --cluster {}",
                only.cluster.join(",")
            ),
            &text(&response),
        );
        match &response {
            Response::Product(p) if p.stock == 20 => {}
            other => {
                return Err(CliError::io(format!(
                    "node {killed} does not have the write made while it was down: {}",
                    text(other)
                )));
            }
        }
        self.say
            .note("the write made while it was down is in its own copy of the state");
        self.catch_up = json!({
            "node": killed,
            "applied_index": applied,
            "leader_commit_index": commit,
            "seconds": started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn step_still_there(&mut self) -> CliResult<Value> {
        // The catalogue: every product, each exactly once.
        let mut seen = BTreeSet::new();
        let mut after = None;
        for _ in 0..100 {
            let (products, next, _) = self.list(ProductFilter {
                limit: 100,
                after,
                ..ProductFilter::default()
            })?;
            seen.extend(products.iter().map(|p| p.product_id));
            match next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        let all: BTreeSet<u64> = self.items.iter().map(|i| i.id).collect();
        if seen != all {
            return Err(CliError::io(format!(
                "the catalogue has {} products, expected the {} added",
                seen.len(),
                all.len()
            )));
        }
        self.say
            .note(&format!("all {} products are listed", all.len()));
        let (_, _, response) = self.list(ProductFilter {
            category: Some("footwear".into()),
            brand: Some("Oakridge".into()),
            ..ProductFilter::default()
        })?;
        self.say.command(
            Some("alice"),
            "products --category footwear --brand Oakridge",
            &text(&response),
        );
        // Orders, per customer.
        let mut order_count = 0;
        for label in ["alice", "bob", "carol", "dave"] {
            let response = self.conn.read(Query::Orders {
                auth: self.auth(label)?,
                after: None,
                limit: 50,
            })?;
            let Response::Orders { orders, .. } = &response else {
                return Err(unexpected("orders", &response));
            };
            let expected: Vec<u64> = self
                .orders
                .iter()
                .filter(|(who, _, _)| who == label)
                .map(|(_, id, _)| *id)
                .collect();
            let got: Vec<u64> = orders.iter().map(|o| o.order_id).collect();
            if got != expected {
                return Err(CliError::io(format!(
                    "{label}'s orders are {got:?}, expected {expected:?}"
                )));
            }
            order_count += got.len();
            if label == "alice" || label == "bob" {
                self.say.command(Some(label), "orders", &text(&response));
            }
        }
        self.say.note(&format!(
            "all {order_count} orders are there, each customer's own"
        ));
        let sales = self.conn.read(Query::Sales {
            auth: self.auth("olivia")?,
            store_id: None,
        })?;
        self.say.command(Some("olivia"), "sales", &text(&sales));
        let units: i64 = match &sales {
            Response::Sales { rows } => rows.iter().map(|r| r.units).sum(),
            other => return Err(unexpected("sales", other)),
        };
        // Messages: Olivia's inbox, without the deleted one.
        let response = self.chat_read("olivia", false)?;
        let Response::Messages { messages, .. } = &response else {
            return Err(unexpected("chat read", &response));
        };
        let ids: BTreeSet<u64> = messages.iter().map(|m| m.message_id).collect();
        let expected: BTreeSet<u64> = self
            .messages
            .iter()
            .filter(|(to, id)| to == "olivia" && Some(*id) != self.deleted_message)
            .map(|(_, id)| *id)
            .collect();
        if ids != expected {
            return Err(CliError::io(format!(
                "olivia's messages are {ids:?}, expected {expected:?}"
            )));
        }
        self.say.note(&format!(
            "all {} messages to Olivia are there, and the deleted one is gone",
            ids.len()
        ));
        let revenue: i64 = self.orders.iter().map(|(_, _, total)| *total).sum();
        Ok(json!({
            "accounts": self.accounts.len(),
            "stores": self.stores.len(),
            "products": all.len(),
            "orders": order_count,
            "units_sold": units,
            "revenue": format_money(revenue),
            "refused_checkouts": self.refused.len(),
            "messages": self.messages.len(),
        }))
    }
}

/// Writes cheap password hashing costs into every node.toml (the demo signs up and logs in a
/// handful of accounts; production costs would make it wait on argon2).
fn cheap_passwords(dir: &Path) -> CliResult {
    for id in 1..=NODES {
        let path = layout::node_dir(dir, id).join(NODE_FILE);
        let mut config = NodeConfig::load(&path).map_err(|e| CliError::io(e.to_string()))?;
        config.passwords.argon2_memory_kib = 1024;
        config.passwords.argon2_iterations = 1;
        config.passwords.argon2_lanes = 1;
        let toml = config.to_toml().map_err(|e| CliError::io(e.to_string()))?;
        std::fs::write(&path, toml)
            .map_err(|e| CliError::io(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Wraps a step's failure as the demo's one line: exit 1, naming the step.
fn failed(step: usize, title: &str, error: CliError) -> CliError {
    CliError::new(
        error.kind,
        1,
        format!("demo failed at step {step} ({title}): {}", error.message),
    )
}

/// Runs `shoal demo`.
pub fn run(global: &GlobalArgs, args: &DemoArgs) -> CliResult {
    let started = Instant::now();
    let say = Say { quiet: global.json };
    let tmp = tempfile::Builder::new()
        .prefix("shoal-demo-")
        .tempdir()
        .map_err(|e| {
            CliError::io(format!(
                "demo failed at step 1 (a fresh 3-node cluster): cannot create a temporary directory: {e}"
            ))
        })?;
    let dir = tmp.path().join("cluster");
    let outcome = tour(global, &say, &dir, started);
    let kept = if args.keep {
        let path = tmp.keep();
        Some(path)
    } else {
        // Removed now (also on failure), after every node has stopped.
        let path = tmp.path().to_path_buf();
        if let Err(e) = tmp.close() {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the demo directory");
        }
        None
    };
    let mut summary = outcome?;
    match &kept {
        Some(path) => say.raw(&format!(
            "the cluster directory is kept in {} (data, logs, certificates)",
            path.display()
        )),
        None => say.raw("the temporary cluster directory was removed; nothing is left running"),
    }
    let seconds = started.elapsed().as_secs_f64();
    say.raw(&format!("\ndemo finished in {seconds:.1} s"));
    if global.json {
        summary["seconds"] = json!((seconds * 10.0).round() / 10.0);
        summary["kept_dir"] = json!(kept.map(|p| p.display().to_string()));
        super::client::print(global, &summary, "")?;
    }
    Ok(())
}

/// `shoal init` on free ports with cheap password costs, then every node started.
fn start_cluster(say: &Say, dir: &Path) -> CliResult<Nodes> {
    let base_port = free_ports(NODES as u16)?;
    let report = layout::init_cluster(&InitOptions {
        dir: dir.to_path_buf(),
        nodes: NODES,
        host: "127.0.0.1".into(),
        base_port,
        name: "shoal-demo".into(),
    })?;
    cheap_passwords(dir)?;
    say.command(
        None,
        &format!(
            "init --nodes 3 --base-port {base_port} --cluster-dir {}",
            dir.display()
        ),
        &format!(
            "wrote cluster.toml, a CA, node and client certificates ({} files)",
            report.files.len()
        ),
    );
    let mut nodes = Nodes {
        dir: dir.to_path_buf(),
        children: BTreeMap::new(),
    };
    for id in 1..=NODES {
        let pid = nodes.spawn(id)?;
        say.note(&format!(
            "node {id} started: shoal node --data-dir {} (pid {pid}, 127.0.0.1:{})",
            layout::node_dir(dir, id).display(),
            base_port + id as u16 - 1
        ));
    }
    Ok(nodes)
}

fn tour(global: &GlobalArgs, say: &Say, dir: &Path, started: Instant) -> CliResult<Value> {
    let setup_title = "a fresh 3-node cluster";
    say.raw("Shoal demo: a shop and its chat on a 3-node Raft cluster, run end to end.");
    say.heading(1, setup_title);
    // Free ports can be taken between the probe and the nodes' bind: a few attempts.
    let mut attempt = 0;
    let nodes = loop {
        attempt += 1;
        match start_cluster(say, dir) {
            Ok(nodes) => break nodes,
            Err(e) if attempt < 3 => {
                say.note(&format!("{}; trying again on other ports", e.message));
                let _ = std::fs::remove_dir_all(dir);
            }
            Err(e) => return Err(failed(1, setup_title, e)),
        }
    };
    let mut local = global.clone();
    local.cluster_dir = dir.to_path_buf();
    local.cluster = Vec::new();
    local.ca = None;
    local.cert = None;
    local.key = None;
    local.token = None;
    local.json = false;
    local.consistency = Consistency::Linearizable;
    let conn = connect(&local).map_err(|e| failed(1, setup_title, e))?;
    let mut tour = Tour {
        say: Say { quiet: say.quiet },
        global: local,
        nodes,
        conn,
        accounts: BTreeMap::new(),
        stores: Vec::new(),
        items: Vec::new(),
        orders: Vec::new(),
        refused: Vec::new(),
        messages: Vec::new(),
        deleted_message: None,
        failover: Value::Null,
        catch_up: Value::Null,
    };
    type Step = fn(&mut Tour) -> CliResult;
    let steps: [(&str, Step); 8] = [
        (setup_title, Tour::step_cluster),
        (
            "accounts: an owner and four customers sign up and log in",
            Tour::step_accounts,
        ),
        (
            "the owner opens two stores and fills the catalogue",
            Tour::step_catalogue,
        ),
        ("browsing: filters and pages", Tour::step_browse),
        ("carts and checkout", Tour::step_carts),
        ("orders and sales", Tour::step_orders),
        ("chat between accounts", Tour::step_chat),
        (
            "the leader is killed (SIGKILL); the service goes on",
            Tour::step_failover,
        ),
    ];
    for (i, (title, step)) in steps.iter().enumerate() {
        let number = i + 1;
        if number > 1 {
            tour.say.heading(number, title);
        }
        step(&mut tour).map_err(|e| failed(number, title, e))?;
    }
    let restart = "the killed node restarts and catches up";
    tour.say.heading(9, restart);
    tour.step_restart().map_err(|e| failed(9, restart, e))?;
    let still = "everything is still there";
    tour.say.heading(10, still);
    let mut summary = tour.step_still_there().map_err(|e| failed(10, still, e))?;
    tour.say.heading(11, "shutting down");
    // The client first, then the nodes (clean SIGTERM shutdown).
    let Tour {
        say: tour_say,
        mut nodes,
        conn,
        failover,
        catch_up,
        ..
    } = tour;
    drop(conn);
    for line in nodes.stop_all() {
        tour_say.note(&line);
    }
    summary["ok"] = json!(true);
    summary["nodes"] = json!(NODES);
    summary["failover"] = failover;
    summary["catch_up"] = catch_up;
    summary["tour_seconds"] = json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    Ok(summary)
}
