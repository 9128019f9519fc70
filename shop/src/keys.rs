//! Key layout of the `data` keyspace. Every id is a big-endian `u64`, so byte order is
//! numeric order and prefixes select ranges. See ARCHITECTURE.md ("shop") for the table.

/// `A id` → account record.
pub const ACCOUNT: u8 = b'A';
/// `E email` → account id (emails in lower case; uniqueness).
pub const EMAIL: u8 = b'E';
/// `T token` → session record.
pub const SESSION: u8 = b'T';
/// `t account token` → empty (an account's sessions).
pub const SESSION_BY_ACCOUNT: u8 = b't';
/// `S id` → store record.
pub const STORE: u8 = b'S';
/// `s owner store` → empty (an owner's stores).
pub const STORE_BY_OWNER: u8 = b's';
/// `P id` → product record.
pub const PRODUCT: u8 = b'P';
/// `p store product` → empty (a store's products).
pub const PRODUCT_BY_STORE: u8 = b'p';
/// `I kind value 0x00 price product` → empty: the browsing indexes, each ordered by price
/// then id. `kind` is [`INDEX_ALL`] (value empty), [`INDEX_CATEGORY`], [`INDEX_BRAND`] or
/// [`INDEX_SIZE`]; values are lower case and never contain 0x00 (validation refuses control
/// characters).
pub const INDEX: u8 = b'I';
/// Index of every product.
pub const INDEX_ALL: u8 = b'*';
/// Index by category.
pub const INDEX_CATEGORY: u8 = b'c';
/// Index by brand.
pub const INDEX_BRAND: u8 = b'b';
/// Index by size.
pub const INDEX_SIZE: u8 = b'z';
/// `C account product` → quantity (i64 big-endian).
pub const CART: u8 = b'C';
/// `O id` → order record.
pub const ORDER: u8 = b'O';
/// `o account order` → empty (a customer's orders).
pub const ORDER_BY_ACCOUNT: u8 = b'o';
/// `Y store product` → sales record (units, revenue).
pub const SALES: u8 = b'Y';
/// `M id` → message record.
pub const MESSAGE: u8 = b'M';
/// `m recipient message` → empty (inbox).
pub const INBOX: u8 = b'm';
/// `U recipient message` → empty (unread messages).
pub const UNREAD: u8 = b'U';
/// `n sender message` → empty (outbox).
pub const OUTBOX: u8 = b'n';

/// `tag id`.
pub fn id_key(tag: u8, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(tag);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `tag a b`.
pub fn pair_key(tag: u8, a: u64, b: u64) -> Vec<u8> {
    let mut key = id_key(tag, a);
    key.extend_from_slice(&b.to_be_bytes());
    key
}

/// `tag bytes`.
pub fn bytes_key(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + bytes.len());
    key.push(tag);
    key.extend_from_slice(bytes);
    key
}

/// `tag id bytes`.
pub fn id_bytes_key(tag: u8, id: u64, bytes: &[u8]) -> Vec<u8> {
    let mut key = id_key(tag, id);
    key.extend_from_slice(bytes);
    key
}

/// The prefix of one browsing index: `I kind value 0x00`.
pub fn index_prefix(kind: u8, value: &str) -> Vec<u8> {
    let value = value.to_lowercase();
    let mut key = Vec::with_capacity(3 + value.len() + 16);
    key.push(INDEX);
    key.push(kind);
    key.extend_from_slice(value.as_bytes());
    key.push(0);
    key
}

/// A browsing index entry.
pub fn index_key(kind: u8, value: &str, price_cents: i64, product_id: u64) -> Vec<u8> {
    let mut key = index_prefix(kind, value);
    key.extend_from_slice(&price_to_key(price_cents));
    key.extend_from_slice(&product_id.to_be_bytes());
    key
}

/// Prices are > 0 once validated; clamp anyway so the order is total.
pub fn price_to_key(price_cents: i64) -> [u8; 8] {
    u64::try_from(price_cents).unwrap_or(0).to_be_bytes()
}

/// Reads a big-endian u64 at `offset`.
pub fn read_u64(key: &[u8], offset: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The price and product id at the end of an index key.
pub fn index_tail(key: &[u8]) -> Option<(i64, u64)> {
    let n = key.len();
    if n < 16 {
        return None;
    }
    let price = i64::try_from(read_u64(key, n - 16)?).ok()?;
    Some((price, read_u64(key, n - 8)?))
}
