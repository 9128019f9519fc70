//! The clients of a chaos run: the register workload (kv read, write, compare-and-set on
//! keys used for a bounded stretch each) and the shop workload (checkouts against limited
//! stock), each operation recorded with its invocation, completion and outcome.
//!
//! Outcomes are classified conservatively: an answer the client decoded is definite; a
//! timeout, a lost connection, an unavailable cluster or any refusal the client cannot prove
//! came before a proposal is indeterminate (`Info`): the operation may have happened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_engine::check::{Call, Outcome, SharedHistory};
use shoal_net::{
    Client, ClientOptions, ClientRequest, ClientResponse, ReadConsistency, RequestKind, TlsIdentity,
};
use shoal_shop::{Action, Auth, Profile, Query, Request, Response, ShopError};

use crate::api::{ReadBody, WriteBody};

/// Bound on one operation, retries included; past it the outcome is `Info`.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Operations on one key before its group of clients moves to a fresh key.
pub const OPS_PER_KEY: u64 = 120;
/// Register clients sharing a key.
pub const CLIENTS_PER_KEY: u64 = 5;
/// Products of the chaos store.
pub const PRODUCTS: u64 = 3;
/// Process ids of checkout clients start here (register clients are 1, 2, ...).
pub const CHECKOUT_PROCESS_BASE: u64 = 1_000;

/// What every client task shares.
pub struct Shared {
    /// The run's clock.
    pub start: Instant,
    /// Register operations.
    pub history: SharedHistory,
    /// Checkout operations.
    pub checkouts: Mutex<Vec<CheckoutOp>>,
    /// Set when clients must stop invoking.
    pub stop: AtomicBool,
    /// Operations invoked so far (register and checkout).
    pub invoked: AtomicU64,
    /// Bound on the operations of a run (the history's size).
    pub max_ops: u64,
    /// Every node a read may be sent to first.
    pub addrs: Vec<SocketAddr>,
}

impl Shared {
    /// Monotonic nanoseconds since the start of the run.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Whether a client may invoke another operation (and counts it).
    fn may_invoke(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && self.invoked.fetch_add(1, Ordering::Relaxed) < self.max_ops
    }
}

/// A client of the chaos cluster with tight timeouts (so faults show as `Info` quickly).
pub fn new_client(identity: &TlsIdentity, addrs: Vec<SocketAddr>) -> Result<Client, String> {
    let mut options = ClientOptions::new(addrs);
    options.attempt_timeout = Duration::from_millis(1_500);
    options.overall_timeout = Duration::from_secs(4);
    options.max_attempts = 10;
    options.retry_backoff = Duration::from_millis(50);
    Client::new(identity, options).map_err(|e| format!("cannot make a client: {e}"))
}

/// A group of register clients and the key they share now.
#[derive(Debug)]
pub struct KeyGroup {
    index: u64,
    generation: AtomicU64,
    used: AtomicU64,
}

impl KeyGroup {
    /// Group `index`, on its first key.
    pub fn new(index: u64) -> KeyGroup {
        KeyGroup {
            index,
            generation: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }

    /// The key for the next operation (moving to a fresh key after [`OPS_PER_KEY`]).
    fn next_key(&self) -> Vec<u8> {
        let generation = self.generation.load(Ordering::Acquire);
        let used = self.used.fetch_add(1, Ordering::AcqRel);
        if used + 1 >= OPS_PER_KEY
            && self
                .generation
                .compare_exchange(
                    generation,
                    generation + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.used.store(0, Ordering::Release);
        }
        format!("chaos-g{}-k{}", self.index, generation).into_bytes()
    }
}

async fn bounded<T>(
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
    }
}

/// Sends a write; the shop's reply (an `Err` inside is a definite refusal after apply).
pub async fn write(
    client: &Client,
    body: WriteBody,
) -> Result<Result<Response, ShopError>, String> {
    let bytes = client
        .request(RequestKind::Write, body.to_bytes())
        .await
        .map_err(|e| e.to_string())?;
    shoal_shop::decode_reply(&bytes).map_err(|e| e.to_string())
}

/// A linearizable read through the client (leader redirects followed).
pub async fn read(client: &Client, query: Query) -> Result<Result<Response, ShopError>, String> {
    let bytes = client
        .request(
            RequestKind::Read(ReadConsistency::Linearizable),
            ReadBody::Query(query).to_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
    shoal_shop::decode_reply(&bytes).map_err(|e| e.to_string())
}

/// A linearizable read sent first to `first` (as a client that connected to any node would),
/// then through the client's redirects if that node does not answer it.
async fn read_via(client: &Client, first: SocketAddr, query: Query) -> Result<Response, String> {
    let body = ReadBody::Query(query.clone()).to_bytes();
    let request = ClientRequest {
        client_id: 0,
        seq: 0,
        attempt: 0,
        kind: RequestKind::Read(ReadConsistency::Linearizable),
        body,
    };
    if let Ok(Ok(ClientResponse::Ok(bytes))) =
        tokio::time::timeout(Duration::from_secs(1), client.send_once(first, &request)).await
    {
        return match shoal_shop::decode_reply(&bytes) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) | Err(error) => Err(error.to_string()),
        };
    }
    match read(client, query).await? {
        Ok(response) => Ok(response),
        Err(error) => Err(error.to_string()),
    }
}

/// One register client: loops until told to stop.
pub async fn register_client(
    shared: Arc<Shared>,
    group: Arc<KeyGroup>,
    process: u64,
    client: Client,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut written = 0u64;
    // The last value this client saw on a key: what its compare-and-sets expect.
    let mut last: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
    while shared.may_invoke() {
        let key = group.next_key();
        let known = match &last {
            Some((k, v)) if *k == key => v.clone(),
            _ => None,
        };
        let roll = rng.random_range(0..100u32);
        let call = if roll < 45 {
            Call::Read
        } else {
            written += 1;
            let value = format!("p{process}-{written}").into_bytes();
            if roll < 78 {
                Call::Write(value)
            } else {
                Call::Cas {
                    expected: known,
                    new: value,
                }
            }
        };
        let id = shared
            .history
            .invoke(process, key.clone(), call.clone(), shared.now());
        let outcome = match &call {
            Call::Read => {
                let first = shared.addrs[rng.random_range(0..shared.addrs.len())];
                match bounded(read_via(&client, first, Query::KvGet { key: key.clone() })).await {
                    Ok(Response::KvValue { value, .. }) => Outcome::ReadOk(value),
                    _ => Outcome::Info,
                }
            }
            Call::Write(value) => {
                let body = WriteBody::Shop(Request::KvPut {
                    key: key.clone(),
                    value: value.clone(),
                });
                match bounded(write(&client, body)).await {
                    Ok(Ok(_)) => Outcome::WriteOk,
                    _ => Outcome::Info,
                }
            }
            Call::Cas { expected, new } => {
                let body = WriteBody::Shop(Request::KvCas {
                    key: key.clone(),
                    expected: expected.clone(),
                    new: new.clone(),
                });
                match bounded(write(&client, body)).await {
                    Ok(Ok(_)) => Outcome::CasOk(true),
                    Ok(Err(ShopError::CasMismatch { .. })) => Outcome::CasOk(false),
                    _ => Outcome::Info,
                }
            }
        };
        last = match (&call, &outcome) {
            (_, Outcome::ReadOk(value)) => Some((key, value.clone())),
            (Call::Write(value), Outcome::WriteOk) => Some((key, Some(value.clone()))),
            (Call::Cas { new, .. }, Outcome::CasOk(true)) => Some((key, Some(new.clone()))),
            _ => None,
        };
        if shared.history.complete(id, outcome, shared.now()).is_err() {
            // Cannot happen (one operation in flight per process); stop rather than corrupt.
            return;
        }
    }
    client.close().await;
}

/// The outcome of one checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutOutcome {
    /// Bought: the new order.
    Ok {
        /// The order id.
        order_id: u64,
    },
    /// Refused by the state machine (nothing bought).
    Fail(String),
    /// Unknown: it may have happened.
    Info(String),
}

/// One checkout, as recorded.
#[derive(Debug, Clone)]
pub struct CheckoutOp {
    /// The customer's process id.
    pub process: u64,
    /// The product added to the cart just before.
    pub product_id: u64,
    /// Invocation time (ns).
    pub invoke: u64,
    /// Completion time (ns).
    pub complete: u64,
    /// What happened.
    pub outcome: CheckoutOutcome,
}

impl CheckoutOp {
    /// The Jepsen-shaped JSON rows of this operation (invoke, then completion).
    pub fn json_rows(&self) -> [(u64, String); 2] {
        let key = format!("product-{}", self.product_id);
        let invoke = serde_json::json!({
            "process": self.process, "type": "invoke", "f": "checkout",
            "key": key, "value": null, "time": self.invoke,
        });
        let done = match &self.outcome {
            CheckoutOutcome::Ok { order_id } => serde_json::json!({
                "process": self.process, "type": "ok", "f": "checkout",
                "key": key, "value": order_id, "time": self.complete,
            }),
            CheckoutOutcome::Fail(error) => serde_json::json!({
                "process": self.process, "type": "fail", "f": "checkout",
                "key": key, "value": null, "time": self.complete, "error": error,
            }),
            CheckoutOutcome::Info(error) => serde_json::json!({
                "process": self.process, "type": "info", "f": "checkout",
                "key": key, "value": null, "time": self.complete, "error": error,
            }),
        };
        [
            (self.invoke, invoke.to_string()),
            (self.complete, done.to_string()),
        ]
    }
}

/// The shop the checkout clients buy from.
#[derive(Debug, Clone)]
pub struct ShopSetup {
    /// The owner's session token.
    pub owner: String,
    /// The store.
    pub store_id: u64,
    /// Products, each created with `stock` units.
    pub products: Vec<u64>,
    /// Units each product started with.
    pub stock: i64,
    /// One session token per customer.
    pub customers: Vec<String>,
}

const PASSWORD: &str = "chaos-password";

/// A setup write, retried a few times (setup runs before any fault, but nodes may still be
/// electing).
async fn setup_write(
    client: &Client,
    body: WriteBody,
) -> Result<Result<Response, ShopError>, String> {
    let mut last = String::new();
    for _ in 0..10 {
        match bounded(write(client, body.clone())).await {
            Ok(reply) => return Ok(reply),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

async fn account(client: &Client, email: String, profile: Profile) -> Result<String, String> {
    match setup_write(
        client,
        WriteBody::Signup {
            email: email.clone(),
            password: PASSWORD.into(),
            profile,
        },
    )
    .await?
    {
        Ok(_) | Err(ShopError::DuplicateEmail { .. }) => {}
        Err(error) => return Err(format!("sign-up of {email}: {error}")),
    }
    match setup_write(
        client,
        WriteBody::Login {
            email: email.clone(),
            password: PASSWORD.into(),
        },
    )
    .await?
    {
        Ok(Response::Session { token, .. }) => Ok(token),
        other => Err(format!("login of {email}: {other:?}")),
    }
}

fn authed(token: &str, action: Action) -> WriteBody {
    WriteBody::Shop(Request::Authed {
        auth: Auth::new(token, 0),
        action,
    })
}

/// Creates an owner, a store with [`PRODUCTS`] products of `stock` units, and `customers`
/// logged-in customers.
pub async fn setup_shop(client: &Client, customers: u64, stock: i64) -> Result<ShopSetup, String> {
    let owner = account(
        client,
        "owner@chaos.example".into(),
        Profile::Owner {
            first: "Chaos".into(),
            middle: None,
            last: "Owner".into(),
            contact: "5550000000".into(),
        },
    )
    .await?;
    let store_id = match setup_write(
        client,
        authed(
            &owner,
            Action::CreateStore {
                name: "chaos store".into(),
            },
        ),
    )
    .await?
    {
        Ok(Response::StoreCreated { store_id }) => store_id,
        other => return Err(format!("store create: {other:?}")),
    };
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let reply = setup_write(
            client,
            authed(
                &owner,
                Action::AddProduct {
                    store_id,
                    name: format!("chaos product {i}"),
                    category: "chaos".into(),
                    brand: "shoal".into(),
                    size: "M".into(),
                    price_cents: 100 + i as i64,
                    stock,
                },
            ),
        )
        .await?;
        match reply {
            Ok(Response::ProductCreated { product_id }) => products.push(product_id),
            other => return Err(format!("product add: {other:?}")),
        }
    }
    let mut sessions = Vec::new();
    for c in 0..customers {
        sessions.push(
            account(
                client,
                format!("customer{c}@chaos.example"),
                Profile::Customer {
                    name: format!("Chaos Customer {c}"),
                    address: "1 Chaos Street".into(),
                    contact: "5550000001".into(),
                },
            )
            .await?,
        );
    }
    Ok(ShopSetup {
        owner,
        store_id,
        products,
        stock,
        customers: sessions,
    })
}

/// One checkout client: adds a unit of a random product to its cart, checks out, and on a
/// stock refusal empties its cart; loops until told to stop.
pub async fn checkout_client(
    shared: Arc<Shared>,
    setup: Arc<ShopSetup>,
    customer: usize,
    client: Client,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let process = CHECKOUT_PROCESS_BASE + customer as u64;
    let Some(token) = setup.customers.get(customer).cloned() else {
        return;
    };
    while shared.may_invoke() {
        let product_id = setup.products[rng.random_range(0..setup.products.len())];
        // The cart add is not recorded: only checkouts move stock.
        let _ = bounded(write(
            &client,
            authed(&token, Action::CartAdd { product_id, qty: 1 }),
        ))
        .await;
        let invoke = shared.now();
        let reply = bounded(write(&client, authed(&token, Action::Checkout))).await;
        let outcome = match reply {
            Ok(Ok(Response::Checkout { order_id, .. })) => CheckoutOutcome::Ok { order_id },
            Ok(Ok(other)) => CheckoutOutcome::Info(format!("unexpected answer: {other:?}")),
            Ok(Err(error @ (ShopError::InsufficientStock { .. } | ShopError::Conflict { .. })))
            | Ok(Err(error @ ShopError::NotFound { .. })) => {
                CheckoutOutcome::Fail(error.kind().to_owned())
            }
            Ok(Err(error)) => CheckoutOutcome::Info(error.to_string()),
            Err(error) => CheckoutOutcome::Info(error),
        };
        let out_of_stock =
            matches!(&outcome, CheckoutOutcome::Fail(kind) if kind == "insufficient_stock");
        if let Ok(mut checkouts) = shared.checkouts.lock() {
            checkouts.push(CheckoutOp {
                process,
                product_id,
                invoke,
                complete: shared.now(),
                outcome,
            });
        }
        if out_of_stock {
            for product_id in &setup.products {
                let _ = bounded(write(
                    &client,
                    authed(
                        &token,
                        Action::CartRemove {
                            product_id: *product_id,
                            qty: None,
                        },
                    ),
                ))
                .await;
            }
            // Stock runs out for good: slow down rather than spin on refusals.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    client.close().await;
}

/// A linearizable read retried until it answers (bounded by `deadline`).
pub async fn read_until(
    client: &Client,
    query: Query,
    deadline: Instant,
) -> Result<Result<Response, ShopError>, String> {
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match bounded(read(client, query.clone())).await {
            Ok(reply) => return Ok(reply),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// The end-of-run shop figures.
#[derive(Debug, Clone, Default)]
pub struct ShopSummary {
    /// Units at the start, over every product.
    pub initial: i64,
    /// Units left.
    pub remaining: i64,
    /// Units sold (the owner's sales figures).
    pub sold: i64,
    /// Checkouts acknowledged.
    pub acknowledged: u64,
    /// Checkouts refused.
    pub refused: u64,
    /// Checkouts with an unknown outcome.
    pub unknown: u64,
}

/// Reads stock, sales and every customer's orders back and checks: stock conserved
/// (initial = remaining + sold, per product), never negative, every acknowledged order
/// present, and the units of the orders equal to the units sold.
pub async fn verify_shop(
    client: &Client,
    setup: &ShopSetup,
    checkouts: &[CheckoutOp],
    deadline: Instant,
) -> (ShopSummary, Vec<String>) {
    let mut violations = Vec::new();
    let mut summary = ShopSummary {
        initial: setup.stock * setup.products.len() as i64,
        ..ShopSummary::default()
    };
    for op in checkouts {
        match op.outcome {
            CheckoutOutcome::Ok { .. } => summary.acknowledged += 1,
            CheckoutOutcome::Fail(_) => summary.refused += 1,
            CheckoutOutcome::Info(_) => summary.unknown += 1,
        }
    }
    let sales = match read_until(
        client,
        Query::Sales {
            auth: Auth::new(setup.owner.clone(), 0),
            store_id: Some(setup.store_id),
        },
        deadline,
    )
    .await
    {
        Ok(Ok(Response::Sales { rows })) => rows,
        other => {
            violations.push(format!("cannot read the sales back: {other:?}"));
            return (summary, violations);
        }
    };
    let mut ordered_units: std::collections::BTreeMap<u64, i64> = Default::default();
    let mut order_ids = std::collections::BTreeSet::new();
    for token in &setup.customers {
        let mut after = None;
        loop {
            let reply = read_until(
                client,
                Query::Orders {
                    auth: Auth::new(token.clone(), 0),
                    after,
                    limit: 1000,
                },
                deadline,
            )
            .await;
            match reply {
                Ok(Ok(Response::Orders { orders, next })) => {
                    for order in &orders {
                        order_ids.insert(order.order_id);
                        for line in &order.lines {
                            *ordered_units.entry(line.product_id).or_default() += line.qty;
                        }
                    }
                    match next {
                        Some(n) if !orders.is_empty() => after = Some(n),
                        _ => break,
                    }
                }
                other => {
                    violations.push(format!("cannot read a customer's orders back: {other:?}"));
                    break;
                }
            }
        }
    }
    for product_id in &setup.products {
        let remaining = match read_until(
            client,
            Query::Product {
                product_id: *product_id,
            },
            deadline,
        )
        .await
        {
            Ok(Ok(Response::Product(view))) => view.stock,
            other => {
                violations.push(format!("cannot read product {product_id} back: {other:?}"));
                continue;
            }
        };
        let sold: i64 = sales
            .iter()
            .filter(|row| row.product_id == *product_id)
            .map(|row| row.units)
            .sum();
        summary.remaining += remaining;
        summary.sold += sold;
        if remaining < 0 {
            violations.push(format!(
                "product {product_id}: stock is negative ({remaining})"
            ));
        }
        if remaining + sold != setup.stock {
            violations.push(format!(
                "product {product_id}: stock not conserved: initial {} != remaining {remaining} + sold {sold}",
                setup.stock
            ));
        }
        let in_orders = ordered_units.get(product_id).copied().unwrap_or(0);
        if in_orders != sold {
            violations.push(format!(
                "product {product_id}: orders hold {in_orders} units but sales say {sold}"
            ));
        }
    }
    for op in checkouts {
        if let CheckoutOutcome::Ok { order_id } = op.outcome
            && !order_ids.contains(&order_id)
        {
            violations.push(format!(
                "acknowledged checkout lost: order {order_id} of process {} is missing",
                op.process
            ));
        }
    }
    (summary, violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_group_moves_to_a_fresh_key_after_its_stretch() {
        let group = KeyGroup::new(3);
        let keys: Vec<Vec<u8>> = (0..OPS_PER_KEY * 2 + 1).map(|_| group.next_key()).collect();
        assert_eq!(keys[0], b"chaos-g3-k0");
        assert_eq!(keys[OPS_PER_KEY as usize - 1], b"chaos-g3-k0");
        assert_eq!(keys[OPS_PER_KEY as usize], b"chaos-g3-k1");
        assert_eq!(keys[2 * OPS_PER_KEY as usize], b"chaos-g3-k2");
    }

    #[test]
    fn checkout_rows_are_jepsen_shaped_and_skipped_by_the_register_parser() {
        let op = CheckoutOp {
            process: CHECKOUT_PROCESS_BASE,
            product_id: 2,
            invoke: 10,
            complete: 20,
            outcome: CheckoutOutcome::Ok { order_id: 7 },
        };
        let [(t0, invoke), (t1, done)] = op.json_rows();
        assert_eq!((t0, t1), (10, 20));
        let invoke: serde_json::Value = serde_json::from_str(&invoke).unwrap();
        let done: serde_json::Value = serde_json::from_str(&done).unwrap();
        assert_eq!(invoke["type"], "invoke");
        assert_eq!(invoke["f"], "checkout");
        assert_eq!(done["type"], "ok");
        assert_eq!(done["value"], 7);
        let text = format!("{invoke}\n{done}\n");
        let parsed = shoal_engine::check::History::from_jsonl(&text).unwrap();
        assert!(parsed.is_empty());
    }
}
