//! What every request and query does to and with the state. Pure functions of the state
//! and the request: no clock, no randomness, so every replica computes the same thing.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ShopError;
use crate::error::StoreError;
use crate::keys::{self, id_key, pair_key};
use crate::store::{Ks, Txn};
use crate::types::{
    AccountView, Action, Auth, CartLine, Cursor, KvEntry, MessageView, OrderLine, OrderView,
    ProductFilter, ProductView, Profile, Query, Reply, Request, Response, Role, SalesRow,
};
use crate::validate::{self, MAX_CART_LINES, MAX_PAGE};

/// Most live sessions one account keeps; logging in again evicts the one expiring soonest.
pub const MAX_SESSIONS_PER_ACCOUNT: usize = 32;
/// Most index entries one listing page examines before returning what it has (with a
/// cursor that resumes exactly there), so a page's cost is bounded.
pub const MAX_SCAN_PER_PAGE: usize = 20_000;

/// Counters and the applied position, stored under `meta/state`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetaRec {
    pub(crate) applied_index: u64,
    pub(crate) applied_term: u64,
    pub(crate) next_account: u64,
    pub(crate) next_store: u64,
    pub(crate) next_product: u64,
    pub(crate) next_order: u64,
    pub(crate) next_message: u64,
}

impl MetaRec {
    pub(crate) fn fresh() -> Self {
        MetaRec {
            applied_index: 0,
            applied_term: 0,
            next_account: 1,
            next_store: 1,
            next_product: 1,
            next_order: 1,
            next_message: 1,
        }
    }
}

/// Key of [`MetaRec`] in the meta keyspace.
pub(crate) const META_STATE_KEY: &[u8] = b"state";

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountRec {
    pub(crate) account_id: u64,
    pub(crate) email: String,
    pub(crate) profile: Profile,
    pub(crate) password_hash: String,
    pub(crate) created_at_ms: u64,
}

impl AccountRec {
    fn view(&self) -> AccountView {
        AccountView {
            account_id: self.account_id,
            role: self.profile.role(),
            name: self.profile.display_name(),
            email: self.email.clone(),
        }
    }
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRec {
    account_id: u64,
    expires_at_ms: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreRec {
    store_id: u64,
    owner: u64,
    name: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SalesRec {
    units: i64,
    revenue_cents: i64,
}

/// A failure while handling one command: a refusal (answered) or a storage error (fatal).
pub(crate) enum Fail {
    Shop(ShopError),
    Store(StoreError),
}

impl From<ShopError> for Fail {
    fn from(e: ShopError) -> Self {
        Fail::Shop(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

type Outcome = Result<Response, Fail>;

fn split(outcome: Outcome) -> Result<Reply, StoreError> {
    match outcome {
        Ok(response) => Ok(Ok(response)),
        Err(Fail::Shop(error)) => Ok(Err(error)),
        Err(Fail::Store(error)) => Err(error),
    }
}

/// Applies one request payload. Its writes are kept in `txn` only if it succeeds; the
/// counters in `meta` likewise.
pub(crate) fn apply_payload(
    txn: &mut Txn<'_>,
    meta: &mut MetaRec,
    payload: &[u8],
) -> Result<Reply, StoreError> {
    let saved = *meta;
    let outcome = Request::decode(payload)
        .map_err(Fail::from)
        .and_then(|request| {
            request.validate()?;
            apply_request(txn, meta, request)
        });
    if outcome.is_ok() {
        txn.commit_command();
    } else {
        txn.abort_command();
        *meta = saved;
    }
    split(outcome)
}

/// Answers one query payload.
pub(crate) fn answer_query(txn: &Txn<'_>, payload: &[u8]) -> Result<Reply, StoreError> {
    let outcome = Query::decode(payload)
        .map_err(Fail::from)
        .and_then(|query| answer(txn, query));
    split(outcome)
}

fn next_id(counter: &mut u64) -> u64 {
    let id = *counter;
    *counter = counter.saturating_add(1);
    id
}

fn decode_i64(bytes: &[u8], what: &str) -> Result<i64, Fail> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("{what}: expected 8 bytes")))?;
    Ok(i64::from_be_bytes(array))
}

fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, Fail> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(format!("{what}: expected 8 bytes")))?;
    Ok(u64::from_be_bytes(array))
}

fn key_id(key: &[u8], offset: usize, what: &str) -> Result<u64, Fail> {
    keys::read_u64(key, offset)
        .ok_or_else(|| Fail::Store(StoreError::corrupt(format!("{what}: short key"))))
}

fn authenticate(txn: &Txn<'_>, auth: &Auth) -> Result<AccountRec, Fail> {
    validate::token(&auth.token)?;
    let session: SessionRec = txn
        .get_rec(
            Ks::Data,
            &keys::bytes_key(keys::SESSION, auth.token.as_bytes()),
        )?
        .ok_or_else(|| ShopError::unauthorized("no session for this token: log in"))?;
    if session.expires_at_ms <= auth.now_ms {
        return Err(ShopError::unauthorized("session expired: log in again").into());
    }
    let account: AccountRec = txn
        .get_rec(Ks::Data, &id_key(keys::ACCOUNT, session.account_id))?
        .ok_or_else(|| ShopError::unauthorized("the session's account no longer exists"))?;
    Ok(account)
}

fn require_role(account: &AccountRec, role: Role, what: &str) -> Result<(), Fail> {
    if account.profile.role() != role {
        return Err(ShopError::forbidden(format!("only {}s can {what}", role.as_str())).into());
    }
    Ok(())
}

fn account_by_email(txn: &Txn<'_>, email: &str) -> Result<Option<AccountRec>, Fail> {
    let normalized = validate::normalize_email(email);
    let Some(id) = txn.get(
        Ks::Data,
        &keys::bytes_key(keys::EMAIL, normalized.as_bytes()),
    )?
    else {
        return Ok(None);
    };
    let id = decode_u64(&id, "email index")?;
    Ok(txn.get_rec(Ks::Data, &id_key(keys::ACCOUNT, id))?)
}

fn product(txn: &Txn<'_>, product_id: u64) -> Result<ProductView, Fail> {
    txn.get_rec(Ks::Data, &id_key(keys::PRODUCT, product_id))?
        .ok_or_else(|| ShopError::not_found("product", product_id).into())
}

fn store_rec(txn: &Txn<'_>, store_id: u64) -> Result<StoreRec, Fail> {
    txn.get_rec(Ks::Data, &id_key(keys::STORE, store_id))?
        .ok_or_else(|| ShopError::not_found("store", store_id).into())
}

fn index_entries(p: &ProductView) -> [Vec<u8>; 4] {
    [
        keys::index_key(keys::INDEX_ALL, "", p.price_cents, p.product_id),
        keys::index_key(
            keys::INDEX_CATEGORY,
            &p.category,
            p.price_cents,
            p.product_id,
        ),
        keys::index_key(keys::INDEX_BRAND, &p.brand, p.price_cents, p.product_id),
        keys::index_key(keys::INDEX_SIZE, &p.size, p.price_cents, p.product_id),
    ]
}

fn apply_request(txn: &mut Txn<'_>, meta: &mut MetaRec, request: Request) -> Outcome {
    match request {
        Request::Signup {
            email,
            profile,
            password_hash,
            now_ms,
        } => {
            let normalized = validate::normalize_email(&email);
            let email_key = keys::bytes_key(keys::EMAIL, normalized.as_bytes());
            if txn.get(Ks::Data, &email_key)?.is_some() {
                return Err(ShopError::DuplicateEmail { email: normalized }.into());
            }
            let account_id = next_id(&mut meta.next_account);
            let record = AccountRec {
                account_id,
                email: normalized,
                profile,
                password_hash,
                created_at_ms: now_ms,
            };
            txn.put_rec(Ks::Data, id_key(keys::ACCOUNT, account_id), &record);
            txn.put(Ks::Data, email_key, account_id.to_be_bytes().to_vec());
            Ok(Response::AccountCreated { account_id })
        }
        Request::CreateSession {
            account_id,
            password_hash,
            token,
            now_ms,
            expires_at_ms,
        } => create_session(
            txn,
            account_id,
            &password_hash,
            token,
            now_ms,
            expires_at_ms,
        ),
        Request::Authed { auth, action } => {
            let account = authenticate(txn, &auth)?;
            apply_action(txn, meta, &auth, account, action)
        }
        Request::KvPut { key, value } => {
            txn.put(Ks::Kv, key, value);
            Ok(Response::Done)
        }
        Request::KvDelete { key } => {
            let existed = txn.get(Ks::Kv, &key)?.is_some();
            txn.delete(Ks::Kv, key);
            Ok(Response::KvDeleted { existed })
        }
        Request::KvCas { key, expected, new } => {
            let current = txn.get(Ks::Kv, &key)?;
            if current != expected {
                return Err(ShopError::CasMismatch {
                    key: String::from_utf8_lossy(&key).chars().take(200).collect(),
                    current,
                }
                .into());
            }
            txn.put(Ks::Kv, key, new);
            Ok(Response::Done)
        }
    }
}

fn create_session(
    txn: &mut Txn<'_>,
    account_id: u64,
    password_hash: &str,
    token: String,
    now_ms: u64,
    expires_at_ms: u64,
) -> Outcome {
    let account: AccountRec = txn
        .get_rec(Ks::Data, &id_key(keys::ACCOUNT, account_id))?
        .ok_or_else(|| ShopError::unauthorized("invalid email or password"))?;
    if account.password_hash != password_hash {
        return Err(ShopError::unauthorized("the account changed while logging in: retry").into());
    }
    let session_key = keys::bytes_key(keys::SESSION, token.as_bytes());
    if txn.get(Ks::Data, &session_key)?.is_some() {
        return Err(ShopError::Conflict {
            message: "session token already in use".into(),
        }
        .into());
    }
    // Drop expired sessions, then the soonest-expiring ones beyond the per-account bound.
    let prefix = id_key(keys::SESSION_BY_ACCOUNT, account_id);
    let mut live = Vec::new();
    for (key, _) in txn.scan(Ks::Data, &prefix, None, usize::MAX)? {
        let other_token = key[prefix.len()..].to_vec();
        let other_key = keys::bytes_key(keys::SESSION, &other_token);
        let other: Option<SessionRec> = txn.get_rec(Ks::Data, &other_key)?;
        match other {
            Some(s) if s.expires_at_ms > now_ms => live.push((s.expires_at_ms, other_token)),
            _ => {
                txn.delete(Ks::Data, other_key);
                txn.delete(Ks::Data, key);
            }
        }
    }
    live.sort();
    let excess = (live.len() + 1).saturating_sub(MAX_SESSIONS_PER_ACCOUNT);
    for (_, other_token) in live.into_iter().take(excess) {
        txn.delete(Ks::Data, keys::bytes_key(keys::SESSION, &other_token));
        txn.delete(
            Ks::Data,
            keys::id_bytes_key(keys::SESSION_BY_ACCOUNT, account_id, &other_token),
        );
    }
    txn.put_rec(
        Ks::Data,
        session_key,
        &SessionRec {
            account_id,
            expires_at_ms,
        },
    );
    txn.put(
        Ks::Data,
        keys::id_bytes_key(keys::SESSION_BY_ACCOUNT, account_id, token.as_bytes()),
        Vec::new(),
    );
    Ok(Response::Session {
        token,
        account_id,
        expires_at_ms,
    })
}

fn apply_action(
    txn: &mut Txn<'_>,
    meta: &mut MetaRec,
    auth: &Auth,
    account: AccountRec,
    action: Action,
) -> Outcome {
    let me = account.account_id;
    match action {
        Action::Logout => {
            txn.delete(
                Ks::Data,
                keys::bytes_key(keys::SESSION, auth.token.as_bytes()),
            );
            txn.delete(
                Ks::Data,
                keys::id_bytes_key(keys::SESSION_BY_ACCOUNT, me, auth.token.as_bytes()),
            );
            Ok(Response::Done)
        }
        Action::DeleteAccount => delete_account(txn, &account),
        Action::CreateStore { name } => {
            require_role(&account, Role::Owner, "create stores")?;
            let store_id = next_id(&mut meta.next_store);
            txn.put_rec(
                Ks::Data,
                id_key(keys::STORE, store_id),
                &StoreRec {
                    store_id,
                    owner: me,
                    name,
                },
            );
            txn.put(
                Ks::Data,
                pair_key(keys::STORE_BY_OWNER, me, store_id),
                Vec::new(),
            );
            Ok(Response::StoreCreated { store_id })
        }
        Action::AddProduct {
            store_id,
            name,
            category,
            brand,
            size,
            price_cents,
            stock,
        } => {
            require_role(&account, Role::Owner, "add products")?;
            let store = store_rec(txn, store_id)?;
            if store.owner != me {
                return Err(ShopError::forbidden(format!(
                    "store {store_id} belongs to another owner"
                ))
                .into());
            }
            let product_id = next_id(&mut meta.next_product);
            let record = ProductView {
                product_id,
                store_id,
                name,
                category,
                brand,
                size,
                price_cents,
                stock,
            };
            for key in index_entries(&record) {
                txn.put(Ks::Data, key, Vec::new());
            }
            txn.put(
                Ks::Data,
                pair_key(keys::PRODUCT_BY_STORE, store_id, product_id),
                Vec::new(),
            );
            txn.put_rec(Ks::Data, id_key(keys::PRODUCT, product_id), &record);
            Ok(Response::ProductCreated { product_id })
        }
        Action::UpdateProduct {
            product_id,
            price_cents,
            stock,
        } => {
            require_role(&account, Role::Owner, "update products")?;
            let mut record = product(txn, product_id)?;
            let store = store_rec(txn, record.store_id)?;
            if store.owner != me {
                return Err(ShopError::forbidden(format!(
                    "product {product_id} is in store {}, which belongs to another owner",
                    record.store_id
                ))
                .into());
            }
            if let Some(price) = price_cents {
                for key in index_entries(&record) {
                    txn.delete(Ks::Data, key);
                }
                record.price_cents = price;
                for key in index_entries(&record) {
                    txn.put(Ks::Data, key, Vec::new());
                }
            }
            if let Some(stock) = stock {
                record.stock = stock;
            }
            txn.put_rec(Ks::Data, id_key(keys::PRODUCT, product_id), &record);
            Ok(Response::Product(record))
        }
        Action::CartAdd { product_id, qty } => {
            require_role(&account, Role::Customer, "have a cart")?;
            product(txn, product_id)?;
            let key = pair_key(keys::CART, me, product_id);
            let current = match txn.get(Ks::Data, &key)? {
                Some(bytes) => decode_i64(&bytes, "cart line")?,
                None => {
                    let lines =
                        txn.scan(Ks::Data, &id_key(keys::CART, me), None, MAX_CART_LINES)?;
                    if lines.len() >= MAX_CART_LINES {
                        return Err(ShopError::invalid(
                            "product",
                            format!("a cart holds at most {MAX_CART_LINES} different products"),
                        )
                        .into());
                    }
                    0
                }
            };
            let total = current.saturating_add(qty);
            validate::qty(total).map_err(|_| {
                ShopError::invalid(
                    "qty",
                    format!("a cart line holds at most {} units", validate::MAX_QTY),
                )
            })?;
            txn.put(Ks::Data, key, total.to_be_bytes().to_vec());
            cart_response(txn, me)
        }
        Action::CartRemove { product_id, qty } => {
            require_role(&account, Role::Customer, "have a cart")?;
            let key = pair_key(keys::CART, me, product_id);
            let current = match txn.get(Ks::Data, &key)? {
                Some(bytes) => decode_i64(&bytes, "cart line")?,
                None => {
                    return Err(ShopError::not_found("cart line for product", product_id).into());
                }
            };
            let left = match qty {
                Some(qty) => current.saturating_sub(qty),
                None => 0,
            };
            if left > 0 {
                txn.put(Ks::Data, key, left.to_be_bytes().to_vec());
            } else {
                txn.delete(Ks::Data, key);
            }
            cart_response(txn, me)
        }
        Action::Checkout => {
            require_role(&account, Role::Customer, "check out")?;
            checkout(txn, meta, me, auth.now_ms)
        }
        Action::ChatSend { to_email, text } => {
            let to = account_by_email(txn, &to_email)?
                .ok_or_else(|| ShopError::not_found("account", &to_email))?;
            let message_id = next_id(&mut meta.next_message);
            let message = MessageView {
                message_id,
                from_account: me,
                from_email: account.email.clone(),
                to_account: to.account_id,
                text,
                sent_at_ms: auth.now_ms,
                was_read: false,
            };
            txn.put_rec(Ks::Data, id_key(keys::MESSAGE, message_id), &message);
            txn.put(
                Ks::Data,
                pair_key(keys::INBOX, to.account_id, message_id),
                Vec::new(),
            );
            txn.put(
                Ks::Data,
                pair_key(keys::UNREAD, to.account_id, message_id),
                Vec::new(),
            );
            txn.put(Ks::Data, pair_key(keys::OUTBOX, me, message_id), Vec::new());
            Ok(Response::MessageSent { message_id })
        }
        Action::ChatRead {
            unread_only,
            after,
            limit,
        } => {
            let tag = if unread_only {
                keys::UNREAD
            } else {
                keys::INBOX
            };
            let prefix = id_key(tag, me);
            let after_key = after.map(|id| pair_key(tag, me, id));
            let entries = txn.scan(Ks::Data, &prefix, after_key.as_deref(), limit as usize)?;
            let mut messages: Vec<MessageView> = Vec::with_capacity(entries.len());
            let mut bytes = 0usize;
            let mut full = false;
            for (key, _) in &entries {
                if bytes >= validate::MAX_PAGE_BYTES {
                    full = true;
                    break;
                }
                let message_id = key_id(key, 9, "inbox")?;
                let Some(message): Option<MessageView> =
                    txn.get_rec(Ks::Data, &id_key(keys::MESSAGE, message_id))?
                else {
                    return Err(StoreError::corrupt(format!(
                        "message {message_id} in inbox is missing"
                    ))
                    .into());
                };
                if !message.was_read {
                    let mut read = message.clone();
                    read.was_read = true;
                    txn.put_rec(Ks::Data, id_key(keys::MESSAGE, message_id), &read);
                    txn.delete(Ks::Data, pair_key(keys::UNREAD, me, message_id));
                }
                // The page shows whether each message had been read before this read.
                bytes += 128 + message.text.len() + message.from_email.len();
                messages.push(message);
            }
            let next = if full || messages.len() == limit as usize {
                messages.last().map(|m| m.message_id)
            } else {
                None
            };
            Ok(Response::Messages { messages, next })
        }
        Action::ChatDelete { message_id } => {
            let message: MessageView =
                txn.get_rec(Ks::Data, &id_key(keys::MESSAGE, message_id))?
                    .ok_or_else(|| ShopError::not_found("message", message_id))?;
            if message.from_account != me && message.to_account != me {
                return Err(ShopError::forbidden(format!(
                    "message {message_id} is another account's"
                ))
                .into());
            }
            delete_message(txn, &message);
            Ok(Response::Done)
        }
    }
}

fn delete_message(txn: &mut Txn<'_>, message: &MessageView) {
    let id = message.message_id;
    txn.delete(Ks::Data, id_key(keys::MESSAGE, id));
    txn.delete(Ks::Data, pair_key(keys::INBOX, message.to_account, id));
    txn.delete(Ks::Data, pair_key(keys::UNREAD, message.to_account, id));
    txn.delete(Ks::Data, pair_key(keys::OUTBOX, message.from_account, id));
}

fn cart_lines(txn: &Txn<'_>, me: u64) -> Result<Vec<(ProductView, i64)>, Fail> {
    let mut lines = Vec::new();
    for (key, value) in txn.scan(Ks::Data, &id_key(keys::CART, me), None, MAX_CART_LINES)? {
        let product_id = key_id(&key, 9, "cart line")?;
        let qty = decode_i64(&value, "cart line")?;
        lines.push((product(txn, product_id)?, qty));
    }
    Ok(lines)
}

fn cart_response(txn: &Txn<'_>, me: u64) -> Outcome {
    let mut total_cents: i64 = 0;
    let mut out = Vec::new();
    for (product, qty) in cart_lines(txn, me)? {
        total_cents = total_cents.saturating_add(product.price_cents.saturating_mul(qty));
        out.push(CartLine {
            product_id: product.product_id,
            name: product.name,
            qty,
            unit_price_cents: product.price_cents,
        });
    }
    Ok(Response::Cart {
        lines: out,
        total_cents,
    })
}

fn checkout(txn: &mut Txn<'_>, meta: &mut MetaRec, me: u64, now_ms: u64) -> Outcome {
    let lines = cart_lines(txn, me)?;
    if lines.is_empty() {
        return Err(ShopError::invalid("cart", "the cart is empty").into());
    }
    // Check every line before changing anything: all lines or none.
    let mut total_cents: i64 = 0;
    for (product, qty) in &lines {
        if product.stock < *qty {
            return Err(ShopError::InsufficientStock {
                product_id: product.product_id,
                name: product.name.clone(),
                available: product.stock,
                requested: *qty,
            }
            .into());
        }
        let line = product
            .price_cents
            .checked_mul(*qty)
            .ok_or_else(|| ShopError::invalid("cart", "total too large"))?;
        total_cents = total_cents
            .checked_add(line)
            .ok_or_else(|| ShopError::invalid("cart", "total too large"))?;
    }
    let order_id = next_id(&mut meta.next_order);
    let mut order_lines = Vec::with_capacity(lines.len());
    for (mut product, qty) in lines {
        product.stock -= qty;
        let sales_key = pair_key(keys::SALES, product.store_id, product.product_id);
        let mut sales: SalesRec = txn.get_rec(Ks::Data, &sales_key)?.unwrap_or(SalesRec {
            units: 0,
            revenue_cents: 0,
        });
        sales.units = sales.units.saturating_add(qty);
        sales.revenue_cents = sales
            .revenue_cents
            .saturating_add(product.price_cents.saturating_mul(qty));
        txn.put_rec(Ks::Data, sales_key, &sales);
        txn.put_rec(
            Ks::Data,
            id_key(keys::PRODUCT, product.product_id),
            &product,
        );
        txn.delete(Ks::Data, pair_key(keys::CART, me, product.product_id));
        order_lines.push(OrderLine {
            product_id: product.product_id,
            store_id: product.store_id,
            name: product.name,
            qty,
            unit_price_cents: product.price_cents,
        });
    }
    let order = OrderView {
        order_id,
        account_id: me,
        placed_at_ms: now_ms,
        lines: order_lines,
        total_cents,
    };
    txn.put_rec(Ks::Data, id_key(keys::ORDER, order_id), &order);
    txn.put(
        Ks::Data,
        pair_key(keys::ORDER_BY_ACCOUNT, me, order_id),
        Vec::new(),
    );
    Ok(Response::Checkout {
        order_id,
        total_cents,
    })
}

fn delete_account(txn: &mut Txn<'_>, account: &AccountRec) -> Outcome {
    let me = account.account_id;
    // Sessions.
    let prefix = id_key(keys::SESSION_BY_ACCOUNT, me);
    for (key, _) in txn.scan(Ks::Data, &prefix, None, usize::MAX)? {
        txn.delete(
            Ks::Data,
            keys::bytes_key(keys::SESSION, &key[prefix.len()..]),
        );
        txn.delete(Ks::Data, key);
    }
    // Cart.
    for (key, _) in txn.scan(Ks::Data, &id_key(keys::CART, me), None, usize::MAX)? {
        txn.delete(Ks::Data, key);
    }
    // Messages sent and received, with the other party's index entries.
    for tag in [keys::INBOX, keys::OUTBOX] {
        for (key, _) in txn.scan(Ks::Data, &id_key(tag, me), None, usize::MAX)? {
            let message_id = key_id(&key, 9, "mailbox")?;
            let message: Option<MessageView> =
                txn.get_rec(Ks::Data, &id_key(keys::MESSAGE, message_id))?;
            match message {
                Some(message) => delete_message(txn, &message),
                None => txn.delete(Ks::Data, key),
            }
        }
    }
    // Orders go with the account; the sales figures they made stay in `Y`.
    for (key, _) in txn.scan(
        Ks::Data,
        &id_key(keys::ORDER_BY_ACCOUNT, me),
        None,
        usize::MAX,
    )? {
        let order_id = key_id(&key, 9, "order index")?;
        txn.delete(Ks::Data, id_key(keys::ORDER, order_id));
        txn.delete(Ks::Data, key);
    }
    txn.delete(Ks::Data, id_key(keys::ACCOUNT, me));
    txn.delete(
        Ks::Data,
        keys::bytes_key(keys::EMAIL, account.email.as_bytes()),
    );
    Ok(Response::Done)
}

fn answer(txn: &Txn<'_>, query: Query) -> Outcome {
    match query {
        Query::Credentials { email } => {
            let account = account_by_email(txn, &email)?
                .ok_or_else(|| ShopError::not_found("account", &email))?;
            Ok(Response::Credentials {
                account_id: account.account_id,
                password_hash: account.password_hash,
            })
        }
        Query::WhoAmI { auth } => Ok(Response::Account(authenticate(txn, &auth)?.view())),
        Query::Users {
            auth,
            pattern,
            after,
            limit,
        } => {
            authenticate(txn, &auth)?;
            validate::limit(limit)?;
            if let Some(pattern) = &pattern {
                validate::text("pattern", pattern, validate::MAX_PATTERN_CHARS)?;
            }
            let prefix = [keys::ACCOUNT];
            let mut after_key = after.map(|id| id_key(keys::ACCOUNT, id));
            let mut users = Vec::new();
            let mut examined = 0usize;
            'pages: loop {
                let chunk = txn.scan(Ks::Data, &prefix, after_key.as_deref(), 256)?;
                if chunk.is_empty() {
                    break;
                }
                for (key, value) in chunk {
                    examined += 1;
                    let account: AccountRec = crate::codec::decode(&value)
                        .map_err(|e| StoreError::corrupt(format!("account record: {e}")))?;
                    let matches = match &pattern {
                        None => true,
                        Some(p) => {
                            validate::glob_match(p, &account.profile.display_name())
                                || validate::glob_match(p, &account.email)
                        }
                    };
                    after_key = Some(key);
                    if matches {
                        users.push(account.view());
                        if users.len() == limit as usize {
                            break 'pages;
                        }
                    }
                    if examined >= MAX_SCAN_PER_PAGE {
                        break 'pages;
                    }
                }
            }
            let full = users.len() == limit as usize || examined >= MAX_SCAN_PER_PAGE;
            let next = if full {
                after_key.as_deref().and_then(|k| keys::read_u64(k, 1))
            } else {
                None
            };
            Ok(Response::Users { users, next })
        }
        Query::Products(filter) => products(txn, &filter),
        Query::Product { product_id } => Ok(Response::Product(product(txn, product_id)?)),
        Query::Cart { auth } => {
            let account = authenticate(txn, &auth)?;
            require_role(&account, Role::Customer, "have a cart")?;
            cart_response(txn, account.account_id)
        }
        Query::Orders { auth, after, limit } => {
            let account = authenticate(txn, &auth)?;
            validate::limit(limit)?;
            let me = account.account_id;
            let prefix = id_key(keys::ORDER_BY_ACCOUNT, me);
            let after_key = after.map(|id| pair_key(keys::ORDER_BY_ACCOUNT, me, id));
            let mut orders: Vec<OrderView> = Vec::new();
            let mut bytes = 0usize;
            let mut next = None;
            for (key, _) in txn.scan(Ks::Data, &prefix, after_key.as_deref(), limit as usize)? {
                let order_id = key_id(&key, 9, "order index")?;
                if bytes >= validate::MAX_PAGE_BYTES {
                    next = orders.last().map(|o| o.order_id);
                    break;
                }
                if let Some(order) =
                    txn.get_rec::<OrderView>(Ks::Data, &id_key(keys::ORDER, order_id))?
                {
                    bytes += 64 + order.lines.iter().map(|l| 64 + l.name.len()).sum::<usize>();
                    orders.push(order);
                }
            }
            if orders.len() == limit as usize {
                next = orders.last().map(|o| o.order_id);
            }
            Ok(Response::Orders { orders, next })
        }
        Query::Order { auth, order_id } => {
            let account = authenticate(txn, &auth)?;
            let order: OrderView = txn
                .get_rec(Ks::Data, &id_key(keys::ORDER, order_id))?
                .ok_or_else(|| ShopError::not_found("order", order_id))?;
            if order.account_id != account.account_id {
                return Err(
                    ShopError::forbidden(format!("order {order_id} is another account's")).into(),
                );
            }
            Ok(Response::Order(order))
        }
        Query::Sales { auth, store_id } => {
            let account = authenticate(txn, &auth)?;
            require_role(&account, Role::Owner, "see sales")?;
            let stores = match store_id {
                Some(store_id) => {
                    let store = store_rec(txn, store_id)?;
                    if store.owner != account.account_id {
                        return Err(ShopError::forbidden(format!(
                            "store {store_id} belongs to another owner"
                        ))
                        .into());
                    }
                    vec![store_id]
                }
                None => {
                    let prefix = id_key(keys::STORE_BY_OWNER, account.account_id);
                    let mut ids = Vec::new();
                    for (key, _) in txn.scan(Ks::Data, &prefix, None, MAX_PAGE as usize)? {
                        ids.push(key_id(&key, 9, "store index")?);
                    }
                    ids
                }
            };
            let mut rows = Vec::new();
            for store_id in stores {
                let prefix = id_key(keys::SALES, store_id);
                for (key, value) in txn.scan(Ks::Data, &prefix, None, usize::MAX)? {
                    let product_id = key_id(&key, 9, "sales")?;
                    let sales: SalesRec = crate::codec::decode(&value)
                        .map_err(|e| StoreError::corrupt(format!("sales record: {e}")))?;
                    let name = product(txn, product_id).map(|p| p.name).unwrap_or_default();
                    rows.push(SalesRow {
                        store_id,
                        product_id,
                        name,
                        units: sales.units,
                        revenue_cents: sales.revenue_cents,
                    });
                }
            }
            Ok(Response::Sales { rows })
        }
        Query::KvGet { key } => {
            validate::key(&key)?;
            let value = txn.get(Ks::Kv, &key)?;
            Ok(Response::KvValue { key, value })
        }
        Query::KvScan {
            prefix,
            after,
            limit,
        } => {
            validate::limit(limit)?;
            if prefix.len() > validate::MAX_KEY_BYTES {
                return Err(ShopError::invalid("prefix", "longer than any key").into());
            }
            if let Some(after) = &after {
                validate::key(after).map_err(|e| match e {
                    ShopError::Invalid { message, .. } => ShopError::invalid("after", message),
                    other => other,
                })?;
            }
            let mut entries: Vec<KvEntry> = Vec::new();
            let mut bytes = 0usize;
            let mut full = false;
            // Values are at most 64 KiB: read in slices so the byte budget bounds memory too.
            let mut cursor = after;
            'pages: while entries.len() < limit as usize {
                let want = (limit as usize - entries.len()).min(32);
                let chunk = txn.scan(Ks::Kv, &prefix, cursor.as_deref(), want)?;
                let exhausted = chunk.len() < want;
                for (key, value) in chunk {
                    if bytes + key.len() + value.len() > validate::MAX_PAGE_BYTES {
                        full = true;
                        break 'pages;
                    }
                    bytes += key.len() + value.len();
                    cursor = Some(key.clone());
                    entries.push(KvEntry { key, value });
                }
                if exhausted {
                    break;
                }
            }
            let next = if full || entries.len() == limit as usize {
                entries.last().map(|e| e.key.clone())
            } else {
                None
            };
            Ok(Response::KvEntries { entries, next })
        }
    }
}

fn products(txn: &Txn<'_>, filter: &ProductFilter) -> Outcome {
    filter.validate()?;
    let eq = |a: &str, b: &Option<String>| {
        b.as_ref()
            .is_none_or(|b| a.to_lowercase() == b.to_lowercase())
    };
    // Drive the scan with one index; check the other filters on the product.
    let (kind, value) = if let Some(c) = &filter.category {
        (keys::INDEX_CATEGORY, c.as_str())
    } else if let Some(b) = &filter.brand {
        (keys::INDEX_BRAND, b.as_str())
    } else if let Some(s) = &filter.size {
        (keys::INDEX_SIZE, s.as_str())
    } else {
        (keys::INDEX_ALL, "")
    };
    let prefix = keys::index_prefix(kind, value);
    let min = filter.min_price_cents.unwrap_or(0);
    let max = filter.max_price_cents.unwrap_or(i64::MAX);
    let limit = filter.limit as usize;
    let mut products = Vec::new();
    if min > max {
        return Ok(Response::Products {
            products,
            next: None,
        });
    }
    // Every key of price ≥ min sorts after `prefix ‖ min` (it is longer with that prefix).
    let mut lower = prefix.clone();
    lower.extend_from_slice(&keys::price_to_key(min));
    if let Some(after) = filter.after {
        let after_key = keys::index_key(kind, value, after.price_cents, after.product_id);
        lower = lower.max(after_key);
    }
    let mut examined = 0usize;
    // `last` is where the page stops: the last product returned, or the last entry examined
    // when the budget ran out. Once the page is full, look ahead for one more match so the
    // last page says `next: null` instead of sending the client to an empty page.
    let mut last: Option<Cursor> = None;
    let mut more = false;
    'scan: loop {
        let chunk = txn.scan(Ks::Data, &prefix, Some(&lower), 256)?;
        if chunk.is_empty() {
            break;
        }
        for (key, _) in chunk {
            let (price_cents, product_id) = keys::index_tail(&key)
                .ok_or_else(|| StoreError::corrupt("browsing index key too short"))?;
            if price_cents > max {
                break 'scan;
            }
            examined += 1;
            let full = products.len() == limit;
            if !full {
                last = Some(Cursor {
                    price_cents,
                    product_id,
                });
            }
            lower = key;
            let p = product(txn, product_id)?;
            if eq(&p.category, &filter.category)
                && eq(&p.brand, &filter.brand)
                && eq(&p.size, &filter.size)
            {
                if full {
                    more = true;
                    break 'scan;
                }
                products.push(p);
            }
            if examined >= MAX_SCAN_PER_PAGE {
                more = true;
                break 'scan;
            }
        }
    }
    let next = if more { last } else { None };
    Ok(Response::Products { products, next })
}
