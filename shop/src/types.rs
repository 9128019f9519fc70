//! Wire types: [`Request`] (writes, proposed through Raft), [`Query`] (reads) and the
//! [`Reply`] to either. All are rkyv-encoded and validated when decoded.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ShopError;
use crate::codec;
use crate::validate;

/// Who is asking, and when: a session token and the time (unix milliseconds) taken on the
/// node that received the request, before proposing. Session expiry compares against this
/// time, so apply stays deterministic.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The session token returned by login.
    pub token: String,
    /// Unix time in milliseconds when the request was received.
    pub now_ms: u64,
}

impl Auth {
    /// An `Auth` with a token and a time.
    pub fn new(token: impl Into<String>, now_ms: u64) -> Self {
        Auth {
            token: token.into(),
            now_ms,
        }
    }
}

/// An account's role.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Buys: has a cart and orders.
    Customer,
    /// Sells: has stores, products and sales.
    Owner,
}

impl Role {
    /// `"customer"` or `"owner"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Owner => "owner",
        }
    }
}

/// The role-specific part of a sign-up.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// A customer.
    Customer {
        /// Full name.
        name: String,
        /// Postal address.
        address: String,
        /// Contact number, 7–15 digits with an optional leading `+`.
        contact: String,
    },
    /// A store owner.
    Owner {
        /// First name.
        first: String,
        /// Middle name, if any.
        middle: Option<String>,
        /// Last name.
        last: String,
        /// Contact number.
        contact: String,
    },
}

impl Profile {
    /// The role this profile signs up for.
    pub fn role(&self) -> Role {
        match self {
            Profile::Customer { .. } => Role::Customer,
            Profile::Owner { .. } => Role::Owner,
        }
    }

    /// The display name: the customer's name, or the owner's first, middle and last names.
    pub fn display_name(&self) -> String {
        match self {
            Profile::Customer { name, .. } => name.clone(),
            Profile::Owner {
                first,
                middle,
                last,
                ..
            } => match middle {
                Some(middle) => format!("{first} {middle} {last}"),
                None => format!("{first} {last}"),
            },
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ShopError> {
        match self {
            Profile::Customer {
                name,
                address,
                contact,
            } => {
                validate::name("name", name)?;
                validate::text("address", address, validate::MAX_ADDRESS_CHARS)?;
                validate::contact(contact)
            }
            Profile::Owner {
                first,
                middle,
                last,
                contact,
            } => {
                validate::name("first", first)?;
                if let Some(middle) = middle {
                    validate::name("middle", middle)?;
                }
                validate::name("last", last)?;
                validate::contact(contact)
            }
        }
    }
}

/// A write, proposed through Raft and applied by every replica. Build the ones that need
/// hashing or randomness with [`crate::prepare`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Creates an account (see [`crate::prepare::signup`]).
    Signup {
        /// The email (unique, compared in lower case).
        email: String,
        /// Role and names.
        profile: Profile,
        /// The argon2 PHC hash of the password (never the password).
        password_hash: String,
        /// When the request was received (unix ms).
        now_ms: u64,
    },
    /// Opens a session after the node verified the password (see [`crate::prepare::login`]).
    CreateSession {
        /// The account whose hash was verified.
        account_id: u64,
        /// The hash that was verified: refused if the account changed since.
        password_hash: String,
        /// The new token (hex of 32 random bytes).
        token: String,
        /// When the request was received (unix ms).
        now_ms: u64,
        /// When the session expires (unix ms).
        expires_at_ms: u64,
    },
    /// An action of a logged-in account.
    Authed {
        /// The session and the time.
        auth: Auth,
        /// What to do.
        action: Action,
    },
    /// Sets a kv key.
    KvPut {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Deletes a kv key.
    KvDelete {
        /// The key.
        key: Vec<u8>,
    },
    /// Sets a kv key if its current value is `expected` (None: absent).
    KvCas {
        /// The key.
        key: Vec<u8>,
        /// The value it must have now (None: it must be absent).
        expected: Option<Vec<u8>>,
        /// The value to set.
        new: Vec<u8>,
    },
}

/// What a logged-in account does.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ends this session.
    Logout,
    /// Deletes the account with its cart, sessions, messages and orders; sales figures stay.
    DeleteAccount,
    /// Owners: creates a store.
    CreateStore {
        /// Store name.
        name: String,
    },
    /// Owners: adds a product to one of their stores.
    AddProduct {
        /// The store.
        store_id: u64,
        /// Product name.
        name: String,
        /// Category, e.g. `footwear`.
        category: String,
        /// Brand.
        brand: String,
        /// Size, e.g. `42` or `M`.
        size: String,
        /// Price in cents, > 0.
        price_cents: i64,
        /// Units in stock, ≥ 0.
        stock: i64,
    },
    /// Owners: changes the price and/or stock of a product of one of their stores.
    UpdateProduct {
        /// The product.
        product_id: u64,
        /// New price in cents.
        price_cents: Option<i64>,
        /// New stock.
        stock: Option<i64>,
    },
    /// Customers: adds units of a product to the cart (accumulates).
    CartAdd {
        /// The product.
        product_id: u64,
        /// Units to add, ≥ 1.
        qty: i64,
    },
    /// Customers: removes units of a product from the cart (None: the whole line).
    CartRemove {
        /// The product.
        product_id: u64,
        /// Units to remove, ≥ 1; the line goes when it reaches 0.
        qty: Option<i64>,
    },
    /// Customers: buys the whole cart, atomically.
    Checkout,
    /// Sends a chat message.
    ChatSend {
        /// Recipient's email.
        to_email: String,
        /// The text.
        text: String,
    },
    /// Reads received messages, oldest first, and marks them read.
    ChatRead {
        /// Only unread messages.
        unread_only: bool,
        /// Only messages with an id above this (pagination).
        after: Option<u64>,
        /// At most this many, 1..=1000.
        limit: u32,
    },
    /// Deletes a message sent or received by this account.
    ChatDelete {
        /// The message.
        message_id: u64,
    },
}

/// A pagination cursor of the product listing: the listing is ordered by price, then id.
/// Written as `PRICE_CENTS-PRODUCT_ID` (e.g. `1299-17`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Price of the last product returned, in cents.
    pub price_cents: i64,
    /// Id of the last product returned.
    pub product_id: u64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.price_cents, self.product_id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = ShopError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ShopError::invalid(
                "after",
                format!("{s:?} is not a cursor from a previous page"),
            )
        };
        let (price, id) = s.split_once('-').ok_or_else(bad)?;
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(price) || !digits(id) {
            return Err(bad());
        }
        Ok(Cursor {
            price_cents: price.parse().map_err(|_| bad())?,
            product_id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// Filters of the product listing; they compose (all must hold).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProductFilter {
    /// Category, compared ignoring case.
    pub category: Option<String>,
    /// Brand, compared ignoring case.
    pub brand: Option<String>,
    /// Size, compared ignoring case.
    pub size: Option<String>,
    /// Lowest price, in cents, inclusive.
    pub min_price_cents: Option<i64>,
    /// Highest price, in cents, inclusive.
    pub max_price_cents: Option<i64>,
    /// Page size, 1..=1000.
    pub limit: u32,
    /// Continue after this cursor (the `next` of the previous page).
    pub after: Option<Cursor>,
}

impl Default for ProductFilter {
    fn default() -> Self {
        ProductFilter {
            category: None,
            brand: None,
            size: None,
            min_price_cents: None,
            max_price_cents: None,
            limit: validate::DEFAULT_PAGE,
            after: None,
        }
    }
}

impl ProductFilter {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ShopError> {
        for (field, value) in [
            ("category", &self.category),
            ("brand", &self.brand),
            ("size", &self.size),
        ] {
            if let Some(value) = value {
                validate::name(field, value)?;
            }
        }
        if let Some(min) = self.min_price_cents {
            validate::price_bound("min-price", min)?;
        }
        if let Some(max) = self.max_price_cents {
            validate::price_bound("max-price", max)?;
        }
        validate::limit(self.limit)
    }
}

/// A read, answered by one replica from its applied state.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Node-internal, for login: the account id and password hash of an email.
    /// A node must never answer it for a client: see [`Query::is_internal`].
    Credentials {
        /// The email.
        email: String,
    },
    /// The account of a session.
    WhoAmI {
        /// The session.
        auth: Auth,
    },
    /// Accounts whose name or email matches a glob pattern (`al*`), by id.
    Users {
        /// The session.
        auth: Auth,
        /// The pattern (None: everyone).
        pattern: Option<String>,
        /// Accounts with an id above this (pagination).
        after: Option<u64>,
        /// Page size, 1..=1000.
        limit: u32,
    },
    /// The product listing (no session needed).
    Products(ProductFilter),
    /// One product (no session needed).
    Product {
        /// The product.
        product_id: u64,
    },
    /// The caller's cart.
    Cart {
        /// The session.
        auth: Auth,
    },
    /// The caller's orders, oldest first.
    Orders {
        /// The session.
        auth: Auth,
        /// Only orders with an id above this (pagination).
        after: Option<u64>,
        /// Page size, 1..=1000.
        limit: u32,
    },
    /// One order of the caller.
    Order {
        /// The session.
        auth: Auth,
        /// The order.
        order_id: u64,
    },
    /// Owners: units and revenue per product of one of their stores, or of all of them.
    Sales {
        /// The session.
        auth: Auth,
        /// The store (None: all the caller's stores).
        store_id: Option<u64>,
    },
    /// A kv key.
    KvGet {
        /// The key.
        key: Vec<u8>,
    },
    /// kv keys starting with a prefix, in key order.
    KvScan {
        /// The prefix (empty: all).
        prefix: Vec<u8>,
        /// Only keys after this one (pagination: the `next` of the previous page).
        after: Option<Vec<u8>>,
        /// Page size, 1..=1000.
        limit: u32,
    },
}

impl Query {
    /// Whether this query is for the node itself and must be refused from clients (it
    /// returns a password hash).
    pub fn is_internal(&self) -> bool {
        matches!(self, Query::Credentials { .. })
    }

    /// Overwrites the time of the query's session check with `now_ms`, the node's clock.
    pub fn set_now(&mut self, now_ms: u64) {
        match self {
            Query::WhoAmI { auth }
            | Query::Users { auth, .. }
            | Query::Cart { auth }
            | Query::Orders { auth, .. }
            | Query::Order { auth, .. }
            | Query::Sales { auth, .. } => auth.now_ms = now_ms,
            Query::Credentials { .. }
            | Query::Products(_)
            | Query::Product { .. }
            | Query::KvGet { .. }
            | Query::KvScan { .. } => {}
        }
    }

    /// Encodes the query.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes and validates the structure of a query.
    pub fn decode(bytes: &[u8]) -> Result<Self, ShopError> {
        codec::decode(bytes).map_err(|e| ShopError::invalid("query", format!("undecodable: {e}")))
    }
}

impl Request {
    /// Whether only a node may build this request (a client-sent one must be refused):
    /// `CreateSession` is proposed by the node after it verified the password, and `Signup`
    /// after it hashed the password itself (a client-made hash could carry any argon2 costs,
    /// or not hash the password at all).
    pub fn is_internal(&self) -> bool {
        matches!(self, Request::CreateSession { .. } | Request::Signup { .. })
    }

    /// Overwrites every time the request carries with `now_ms`, the receiving node's clock,
    /// so a client cannot choose the time its session is checked against.
    pub fn set_now(&mut self, now_ms: u64) {
        match self {
            Request::Signup { now_ms: t, .. } => *t = now_ms,
            Request::Authed { auth, .. } => auth.now_ms = now_ms,
            Request::CreateSession { .. }
            | Request::KvPut { .. }
            | Request::KvDelete { .. }
            | Request::KvCas { .. } => {}
        }
    }

    /// Encodes the request (the Raft entry's payload).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes and validates the structure of a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, ShopError> {
        codec::decode(bytes).map_err(|e| ShopError::invalid("request", format!("undecodable: {e}")))
    }

    /// Checks every field that can be checked without the state. Run by `prepare` before
    /// proposing and again by `apply`.
    pub fn validate(&self) -> Result<(), ShopError> {
        match self {
            Request::Signup {
                email,
                profile,
                password_hash,
                ..
            } => {
                profile.validate()?;
                validate::email(email)?;
                validate::password_hash(password_hash)
            }
            Request::CreateSession {
                token,
                password_hash,
                now_ms,
                expires_at_ms,
                ..
            } => {
                validate::token(token)?;
                validate::password_hash(password_hash)?;
                if expires_at_ms <= now_ms {
                    return Err(ShopError::invalid("expires_at", "must be after now"));
                }
                Ok(())
            }
            Request::Authed { auth, action } => {
                validate::token(&auth.token)?;
                action.validate()
            }
            Request::KvPut { key, value } => {
                validate::key(key)?;
                validate::value("value", value)
            }
            Request::KvDelete { key } => validate::key(key),
            Request::KvCas { key, expected, new } => {
                validate::key(key)?;
                if let Some(expected) = expected {
                    validate::value("expected", expected)?;
                }
                validate::value("new", new)
            }
        }
    }
}

impl Action {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ShopError> {
        match self {
            Action::Logout | Action::DeleteAccount | Action::Checkout => Ok(()),
            Action::CreateStore { name } => validate::name("name", name),
            Action::AddProduct {
                name,
                category,
                brand,
                size,
                price_cents,
                stock,
                ..
            } => {
                validate::name("name", name)?;
                validate::name("category", category)?;
                validate::name("brand", brand)?;
                validate::name("size", size)?;
                validate::price("price", *price_cents)?;
                validate::stock(*stock)
            }
            Action::UpdateProduct {
                price_cents, stock, ..
            } => {
                if price_cents.is_none() && stock.is_none() {
                    return Err(ShopError::invalid(
                        "price",
                        "give a new price or a new stock (or both)",
                    ));
                }
                if let Some(price) = price_cents {
                    validate::price("price", *price)?;
                }
                if let Some(stock) = stock {
                    validate::stock(*stock)?;
                }
                Ok(())
            }
            Action::CartAdd { qty, .. } => validate::qty(*qty),
            Action::CartRemove { qty, .. } => match qty {
                Some(qty) => validate::qty(*qty),
                None => Ok(()),
            },
            Action::ChatSend { to_email, text } => {
                validate::email(to_email).map_err(|e| match e {
                    ShopError::Invalid { message, .. } => ShopError::invalid("to", message),
                    other => other,
                })?;
                validate::text("text", text, validate::MAX_MESSAGE_CHARS)
            }
            Action::ChatRead { limit, .. } => validate::limit(*limit),
            Action::ChatDelete { .. } => Ok(()),
        }
    }
}

/// An account as others see it (never its hash).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The id.
    pub account_id: u64,
    /// Customer or owner.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// A product.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProductView {
    /// The id.
    pub product_id: u64,
    /// Its store.
    pub store_id: u64,
    /// Name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Brand.
    pub brand: String,
    /// Size.
    pub size: String,
    /// Current price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i64,
}

/// A cart line.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    /// The product.
    pub product_id: u64,
    /// Its name.
    pub name: String,
    /// Units.
    pub qty: i64,
    /// Current unit price in cents.
    pub unit_price_cents: i64,
}

/// An order line, with the price at purchase time.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The product.
    pub product_id: u64,
    /// Its store.
    pub store_id: u64,
    /// Its name at purchase time.
    pub name: String,
    /// Units bought.
    pub qty: i64,
    /// Unit price at purchase time, in cents.
    pub unit_price_cents: i64,
}

/// An order.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// The id.
    pub order_id: u64,
    /// The customer.
    pub account_id: u64,
    /// When it was placed (unix ms).
    pub placed_at_ms: u64,
    /// Lines.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines, in cents.
    pub total_cents: i64,
}

/// Sales of one product.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SalesRow {
    /// The store.
    pub store_id: u64,
    /// The product.
    pub product_id: u64,
    /// Its current name.
    pub name: String,
    /// Units sold.
    pub units: i64,
    /// Revenue in cents (at the prices paid).
    pub revenue_cents: i64,
}

/// A chat message.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// The id.
    pub message_id: u64,
    /// Sender's account.
    pub from_account: u64,
    /// Sender's email.
    pub from_email: String,
    /// Recipient's account.
    pub to_account: u64,
    /// The text.
    pub text: String,
    /// When it was sent (unix ms).
    pub sent_at_ms: u64,
    /// Whether the recipient had read it before this read.
    pub was_read: bool,
}

/// A kv entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A successful answer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Done, nothing to report (logout, account delete, chat delete, kv put).
    Done,
    /// Sign-up: the new account.
    AccountCreated {
        /// The id.
        account_id: u64,
    },
    /// Node-internal answer to [`Query::Credentials`].
    Credentials {
        /// The account.
        account_id: u64,
        /// Its argon2 PHC hash.
        password_hash: String,
    },
    /// Login: the new session.
    Session {
        /// The token to send with later requests.
        token: String,
        /// The account.
        account_id: u64,
        /// When it expires (unix ms).
        expires_at_ms: u64,
    },
    /// One account.
    Account(AccountView),
    /// Accounts, by id.
    Users {
        /// This page.
        users: Vec<AccountView>,
        /// The `after` of the next page, if there may be one.
        next: Option<u64>,
    },
    /// Store created.
    StoreCreated {
        /// The id.
        store_id: u64,
    },
    /// Product added.
    ProductCreated {
        /// The id.
        product_id: u64,
    },
    /// One product (also the answer to an update).
    Product(ProductView),
    /// A page of the listing, ordered by price then id.
    Products {
        /// This page.
        products: Vec<ProductView>,
        /// The cursor of the next page, if there may be one.
        next: Option<Cursor>,
    },
    /// The cart.
    Cart {
        /// Lines, by product id.
        lines: Vec<CartLine>,
        /// Sum at current prices, in cents.
        total_cents: i64,
    },
    /// Checkout done.
    Checkout {
        /// The new order.
        order_id: u64,
        /// Its total in cents.
        total_cents: i64,
    },
    /// Orders, oldest first.
    Orders {
        /// This page.
        orders: Vec<OrderView>,
        /// The `after` of the next page, if there may be one.
        next: Option<u64>,
    },
    /// One order.
    Order(OrderView),
    /// Sales per product, by store then product.
    Sales {
        /// The rows.
        rows: Vec<SalesRow>,
    },
    /// Message sent.
    MessageSent {
        /// The id.
        message_id: u64,
    },
    /// Messages read, oldest first (now marked read).
    Messages {
        /// This page.
        messages: Vec<MessageView>,
        /// The `after` of the next page, if there may be one.
        next: Option<u64>,
    },
    /// A kv value.
    KvValue {
        /// The key.
        key: Vec<u8>,
        /// Its value (None: absent).
        value: Option<Vec<u8>>,
    },
    /// kv delete done.
    KvDeleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// A kv scan page.
    KvEntries {
        /// Entries in key order.
        entries: Vec<KvEntry>,
        /// The `after` of the next page, if there may be one.
        next: Option<Vec<u8>>,
    },
}

/// The answer to a request or query: a [`Response`] or a typed refusal.
pub type Reply = Result<Response, ShopError>;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum WireReply {
    Ok(Response),
    Err(ShopError),
}

/// Encodes a reply (what `apply` and `query` return).
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    encode_owned_reply(reply.clone())
}

/// Encodes a reply the caller no longer needs, without copying it first (a page of a listing
/// can be megabytes).
pub(crate) fn encode_owned_reply(reply: Reply) -> Vec<u8> {
    let wire = match reply {
        Ok(response) => WireReply::Ok(response),
        Err(error) => WireReply::Err(error),
    };
    codec::encode(&wire)
}

/// Decodes a reply, validating every byte.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, ShopError> {
    let wire: WireReply = codec::decode(bytes).map_err(|e| ShopError::Internal {
        message: format!("undecodable reply: {e}"),
    })?;
    Ok(match wire {
        WireReply::Ok(response) => Ok(response),
        WireReply::Err(error) => Err(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_text_round_trip() {
        let c = Cursor {
            price_cents: 1299,
            product_id: 17,
        };
        assert_eq!(c.to_string(), "1299-17");
        assert_eq!("1299-17".parse::<Cursor>(), Ok(c));
        for bad in ["", "12", "-1", "1-", "a-b", "1-2-3", "+1-2"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_side_helpers() {
        let mut r = Request::Authed {
            auth: Auth::new("t", 1),
            action: Action::Checkout,
        };
        r.set_now(99);
        assert!(matches!(r, Request::Authed { ref auth, .. } if auth.now_ms == 99));
        assert!(!r.is_internal());
        let signup = Request::Signup {
            email: "a@b.c".into(),
            profile: Profile::Customer {
                name: "A".into(),
                address: "1 Road".into(),
                contact: "1234567".into(),
            },
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
            now_ms: 0,
        };
        assert!(signup.is_internal(), "a client must not bring its own hash");
        let mut q = Query::Cart {
            auth: Auth::new("t", 1),
        };
        q.set_now(7);
        assert_eq!(
            q,
            Query::Cart {
                auth: Auth::new("t", 7)
            }
        );
        assert!(
            Query::Credentials {
                email: "a@b.c".into()
            }
            .is_internal()
        );
    }

    #[test]
    fn wire_round_trips_and_garbage_is_refused() {
        let r = Request::KvCas {
            key: b"k".to_vec(),
            expected: None,
            new: b"v".to_vec(),
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        let q = Query::Products(ProductFilter::default());
        assert_eq!(Query::decode(&q.encode()), Ok(q));
        let reply: Reply = Err(ShopError::invalid("email", "bad"));
        assert_eq!(decode_reply(&encode_reply(&reply)), Ok(reply.clone()));
        assert_eq!(encode_owned_reply(reply.clone()), encode_reply(&reply));
        let reply: Reply = Ok(Response::KvValue {
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
        });
        assert_eq!(decode_reply(&encode_reply(&reply)), Ok(reply));
        assert!(Request::decode(&[0xde, 0xad, 0xbe, 0xef]).is_err());
        assert!(Request::decode(&[]).is_err());
        assert!(decode_reply(&[1, 2, 3]).is_err());
    }
}
