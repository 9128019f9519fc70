//! The operations `shoal bench` issues and the setup they need (pre-loaded keys for gets; an
//! owner, a store, products and logged-in customers for checkouts).

use std::sync::Arc;

use rand::Rng;
use shoal_net::{Client, ReadConsistency, RequestKind};
use shoal_shop::{Action, Auth, Profile, Query, Request, Response, ShopError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::api::{ReadBody, WriteBody};

/// Length of every benchmark key, in bytes.
pub const KEY_BYTES: usize = 16;
/// Products of the benchmark store.
pub const PRODUCTS: u64 = 16;
/// Sign-ups and logins in flight at once during setup (argon2 runs on the nodes).
const SETUP_PARALLELISM: usize = 8;

/// Why an operation failed: the line reported as the first error.
pub type OpError = String;

/// The key of index `i`: 16 bytes, `b` then 15 decimal digits.
pub fn key(i: u64) -> Vec<u8> {
    let key = format!("b{:015}", i % 1_000_000_000_000_000);
    debug_assert_eq!(key.len(), KEY_BYTES);
    key.into_bytes()
}

/// A value of `size` bytes (printable, varying with `seed`).
pub fn value(size: usize, seed: u64) -> Vec<u8> {
    (0..size)
        .map(|i| b'a' + ((seed as usize + i) % 26) as u8)
        .collect()
}

async fn write(client: &Client, body: WriteBody) -> Result<Response, OpError> {
    let bytes = client
        .request(RequestKind::Write, body.to_bytes())
        .await
        .map_err(|e| e.to_string())?;
    reply(&bytes)
}

fn reply(bytes: &[u8]) -> Result<Response, OpError> {
    match shoal_shop::decode_reply(bytes) {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) | Err(error) => Err(shop_error(&error)),
    }
}

fn shop_error(error: &ShopError) -> String {
    format!("{} ({})", error, error.kind())
}

/// One kv put.
pub async fn put(client: &Client, key: Vec<u8>, value: Vec<u8>) -> Result<(), OpError> {
    write(client, WriteBody::Shop(Request::KvPut { key, value }))
        .await
        .map(drop)
}

/// One kv get at `consistency`; a missing key is an error (gets read pre-loaded keys).
pub async fn get(
    client: &Client,
    consistency: ReadConsistency,
    key: Vec<u8>,
) -> Result<(), OpError> {
    let body = ReadBody::Query(Query::KvGet { key }).to_bytes();
    let bytes = client
        .request(RequestKind::Read(consistency), body)
        .await
        .map_err(|e| e.to_string())?;
    match reply(&bytes)? {
        Response::KvValue { value: Some(_), .. } => Ok(()),
        Response::KvValue { value: None, .. } => Err("a pre-loaded key is missing".into()),
        other => Err(format!("unexpected answer to a get: {other:?}")),
    }
}

/// A shop session: the token of a logged-in account.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token.
    pub token: String,
}

impl Session {
    fn authed(&self, action: Action) -> WriteBody {
        WriteBody::Shop(Request::Authed {
            auth: Auth::new(self.token.clone(), 0),
            action,
        })
    }
}

/// One purchase: adds a unit of `product_id` to the cart, then checks out.
pub async fn checkout(client: &Client, session: &Session, product_id: u64) -> Result<(), OpError> {
    write(
        client,
        session.authed(Action::CartAdd { product_id, qty: 1 }),
    )
    .await?;
    match write(client, session.authed(Action::Checkout)).await? {
        Response::Checkout { .. } => Ok(()),
        other => Err(format!("unexpected answer to a checkout: {other:?}")),
    }
}

/// What checkout clients need: products to buy and one session per client.
#[derive(Debug, Clone)]
pub struct ShopSetup {
    /// Product ids of the store.
    pub products: Vec<u64>,
    /// One customer session per client.
    pub sessions: Vec<Session>,
}

impl ShopSetup {
    /// A random product.
    pub fn product(&self, rng: &mut impl Rng) -> u64 {
        let i = rng.random_range(0..self.products.len().max(1));
        self.products.get(i).copied().unwrap_or(1)
    }
}

const PASSWORD: &str = "bench-password";

async fn signup_and_login(
    client: &Client,
    email: String,
    profile: Profile,
) -> Result<Session, OpError> {
    match write(
        client,
        WriteBody::Signup {
            email: email.clone(),
            password: PASSWORD.into(),
            profile,
        },
    )
    .await
    {
        Ok(_) => {}
        Err(e) => return Err(format!("sign-up of {email} failed: {e}")),
    }
    match write(
        client,
        WriteBody::Login {
            email: email.clone(),
            password: PASSWORD.into(),
        },
    )
    .await
    {
        Ok(Response::Session { token, .. }) => Ok(Session { token }),
        Ok(other) => Err(format!(
            "unexpected answer to the login of {email}: {other:?}"
        )),
        Err(e) => Err(format!("login of {email} failed: {e}")),
    }
}

/// Creates an owner, a store with [`PRODUCTS`] products of maximal stock, and `customers`
/// logged-in customers (their emails carry `run`, so runs do not collide).
pub async fn setup_shop(
    clients: &[Arc<Client>],
    run: u64,
    customers: usize,
) -> Result<ShopSetup, OpError> {
    let Some(first) = clients.first() else {
        return Err("no connection".into());
    };
    let owner = signup_and_login(
        first,
        format!("bench-owner-{run:x}@bench.example"),
        Profile::Owner {
            first: "Bench".into(),
            middle: None,
            last: "Owner".into(),
            contact: "5550000000".into(),
        },
    )
    .await?;
    let store_id = match write(
        first,
        owner.authed(Action::CreateStore {
            name: format!("bench store {run:x}"),
        }),
    )
    .await?
    {
        Response::StoreCreated { store_id } => store_id,
        other => return Err(format!("unexpected answer to store create: {other:?}")),
    };
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let response = write(
            first,
            owner.authed(Action::AddProduct {
                store_id,
                name: format!("bench product {i}"),
                category: "bench".into(),
                brand: "shoal".into(),
                size: "M".into(),
                price_cents: 100 + i as i64,
                stock: shoal_shop::validate::MAX_STOCK,
            }),
        )
        .await?;
        match response {
            Response::ProductCreated { product_id } => products.push(product_id),
            other => return Err(format!("unexpected answer to product add: {other:?}")),
        }
    }
    let limit = Arc::new(Semaphore::new(SETUP_PARALLELISM));
    let mut tasks = JoinSet::new();
    for c in 0..customers {
        let client = clients[c % clients.len()].clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.map_err(|e| e.to_string())?;
            let session = signup_and_login(
                &client,
                format!("bench-{run:x}-{c}@bench.example"),
                Profile::Customer {
                    name: format!("Bench Customer {c}"),
                    address: "1 Bench Street".into(),
                    contact: "5550000001".into(),
                },
            )
            .await?;
            Ok::<_, OpError>((c, session))
        });
    }
    let mut sessions = vec![None; customers];
    while let Some(joined) = tasks.join_next().await {
        let (c, session) = joined.map_err(|e| format!("setup task failed: {e}"))??;
        sessions[c] = Some(session);
    }
    let sessions = sessions.into_iter().flatten().collect::<Vec<_>>();
    if sessions.len() != customers {
        return Err("a customer session is missing".into());
    }
    Ok(ShopSetup { products, sessions })
}

/// Writes keys `0..keys` (values of `value_size`), `parallelism` at a time.
pub async fn preload(
    clients: &[Arc<Client>],
    keys: u64,
    value_size: usize,
    parallelism: usize,
) -> Result<(), OpError> {
    let parallelism = parallelism.clamp(1, 256) as u64;
    let mut tasks = JoinSet::new();
    for lane in 0..parallelism {
        let client = clients[lane as usize % clients.len().max(1)].clone();
        tasks.spawn(async move {
            let mut i = lane;
            while i < keys {
                put(&client, key(i), value(value_size, i))
                    .await
                    .map_err(|e| format!("pre-loading key {i} failed: {e}"))?;
                i += parallelism;
            }
            Ok::<_, OpError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| format!("pre-load task failed: {e}"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sixteen_bytes_and_distinct() {
        assert_eq!(key(0).len(), KEY_BYTES);
        assert_eq!(key(u64::MAX).len(), KEY_BYTES);
        assert_ne!(key(1), key(2));
        assert_eq!(value(256, 3).len(), 256);
    }
}
