//! Field validation, shared by the `prepare` layer (before proposing) and `apply` (which
//! never trusts the proposer). Every refusal names the field.

use crate::ShopError;

/// Longest name, address, category, brand, size or store name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest address, in characters.
pub const MAX_ADDRESS_CHARS: usize = 300;
/// Longest email, in bytes (RFC 5321's limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Longest password accepted by `prepare` (argon2 takes any, but bound everything).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest stored password hash string.
pub const MAX_HASH_BYTES: usize = 512;
/// Highest price, in cents (1,000,000.00).
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
/// Highest stock of one product.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Highest quantity of one cart line.
pub const MAX_QTY: i64 = 10_000;
/// Most distinct products in one cart.
pub const MAX_CART_LINES: usize = 100;
/// Longest kv key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest kv value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Largest page any listing returns.
pub const MAX_PAGE: u32 = 1000;
/// Most bytes of keys, values and texts one page carries; a page stops early (with a `next`
/// cursor) rather than exceed it, so every reply stays far below the decoders' limit.
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;
/// Longest `users` glob pattern.
pub const MAX_PATTERN_CHARS: usize = 100;
/// Length of a session token (hex of 32 random bytes).
pub const TOKEN_HEX_LEN: usize = 64;

/// A name-like field: non-empty after trimming, at most `max` characters, no control
/// characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ShopError> {
    if value.trim().is_empty() {
        return Err(ShopError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ShopError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ShopError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A name (customer name, owner's first/middle/last name, store and product names,
/// category, brand, size).
pub fn name(field: &str, value: &str) -> Result<(), ShopError> {
    text(field, value, MAX_NAME_CHARS)
}

/// An email: one `@`, a non-empty local part, a dotted domain of non-empty labels, no spaces.
pub fn email(value: &str) -> Result<(), ShopError> {
    let bad = |message: &str| Err(ShopError::invalid("email", message));
    if value.len() > MAX_EMAIL_BYTES {
        return bad("must be at most 254 bytes");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    if value.matches('@').count() != 1 {
        return bad("must contain exactly one @");
    }
    let Some((local, domain)) = value.split_once('@') else {
        return bad("must contain exactly one @");
    };
    if local.is_empty() {
        return bad("needs a name before the @");
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return bad("needs a dotted domain after the @, like example.com");
    }
    Ok(())
}

/// The canonical form of an email, used for uniqueness and lookups: lower case.
pub fn normalize_email(value: &str) -> String {
    value.to_lowercase()
}

/// A contact number: 7 to 15 digits, optionally after one leading `+`.
pub fn contact(value: &str) -> Result<(), ShopError> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ShopError::invalid(
            "contact",
            "must be digits with an optional leading +",
        ));
    }
    if !(7..=15).contains(&digits.len()) {
        return Err(ShopError::invalid(
            "contact",
            format!("must have 7 to 15 digits, got {}", digits.len()),
        ));
    }
    Ok(())
}

/// A price in cents: > 0 and at most [`MAX_PRICE_CENTS`].
pub fn price(field: &str, cents: i64) -> Result<(), ShopError> {
    if cents <= 0 {
        return Err(ShopError::invalid(field, "must be greater than 0"));
    }
    if cents > MAX_PRICE_CENTS {
        return Err(ShopError::invalid(field, "must be at most 1000000.00"));
    }
    Ok(())
}

/// A price bound of a filter: ≥ 0.
pub fn price_bound(field: &str, cents: i64) -> Result<(), ShopError> {
    if cents < 0 {
        return Err(ShopError::invalid(field, "must not be negative"));
    }
    Ok(())
}

/// A stock level: ≥ 0 and at most [`MAX_STOCK`].
pub fn stock(stock: i64) -> Result<(), ShopError> {
    if stock < 0 {
        return Err(ShopError::invalid("stock", "must not be negative"));
    }
    if stock > MAX_STOCK {
        return Err(ShopError::invalid(
            "stock",
            format!("must be at most {MAX_STOCK}"),
        ));
    }
    Ok(())
}

/// A quantity: ≥ 1 and at most [`MAX_QTY`].
pub fn qty(qty: i64) -> Result<(), ShopError> {
    if qty < 1 {
        return Err(ShopError::invalid("qty", "must be at least 1"));
    }
    if qty > MAX_QTY {
        return Err(ShopError::invalid(
            "qty",
            format!("must be at most {MAX_QTY}"),
        ));
    }
    Ok(())
}

/// A page limit: 1..=[`MAX_PAGE`].
pub fn limit(limit: u32) -> Result<(), ShopError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(ShopError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(())
}

/// A kv key: 1..=[`MAX_KEY_BYTES`] bytes.
pub fn key(key: &[u8]) -> Result<(), ShopError> {
    if key.is_empty() {
        return Err(ShopError::invalid("key", "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ShopError::invalid(
            "key",
            format!("must be at most {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A kv value: at most [`MAX_VALUE_BYTES`] bytes.
pub fn value(field: &str, value: &[u8]) -> Result<(), ShopError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ShopError::invalid(
            field,
            format!("must be at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A stored password hash: an argon2 PHC string, never anything that could be a clear
/// password.
pub fn password_hash(hash: &str) -> Result<(), ShopError> {
    if hash.len() > MAX_HASH_BYTES || !hash.starts_with("$argon2") || hash.matches('$').count() < 4
    {
        return Err(ShopError::invalid(
            "password",
            "the request does not carry an argon2 hash",
        ));
    }
    Ok(())
}

/// A session token: [`TOKEN_HEX_LEN`] lower-case hex characters.
pub fn token(token: &str) -> Result<(), ShopError> {
    if token.len() != TOKEN_HEX_LEN
        || !token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ShopError::unauthorized("malformed session token"));
    }
    Ok(())
}

/// Whether `text` matches a glob `pattern` (`*` any run, `?` one character), ignoring case.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative matcher with single backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<(), ShopError>) -> String {
        match r {
            Err(ShopError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn contact_numbers() {
        assert!(contact("1234567").is_ok());
        assert!(contact("+123456789012345").is_ok());
        assert_eq!(field_of(contact("123456")), "contact");
        assert_eq!(field_of(contact("1234567890123456")), "contact");
        assert_eq!(field_of(contact("++1234567")), "contact");
        assert_eq!(field_of(contact("123-4567")), "contact");
        assert_eq!(field_of(contact("+")), "contact");
        assert_eq!(field_of(contact("")), "contact");
        assert_eq!(field_of(contact("1234567+")), "contact");
    }

    #[test]
    fn emails() {
        assert!(email("al@example.com").is_ok());
        assert!(email("a.b+c@mail.example.org").is_ok());
        for bad in [
            "",
            "al",
            "al@",
            "@example.com",
            "al@example",
            "al@@example.com",
            "a@l@example.com",
            "al@example.",
            "al@.com",
            "al@exa..com",
            "al @example.com",
        ] {
            assert_eq!(field_of(email(bad)), "email", "{bad:?}");
        }
    }

    #[test]
    fn names_prices_stock_qty() {
        assert!(name("name", "Al").is_ok());
        assert_eq!(field_of(name("name", "")), "name");
        assert_eq!(field_of(name("first", "   ")), "first");
        assert!(name("name", &"x".repeat(100)).is_ok());
        assert_eq!(field_of(name("name", &"x".repeat(101))), "name");
        assert!(name("name", &"é".repeat(100)).is_ok());
        assert_eq!(field_of(name("name", "a\u{0}b")), "name");
        assert!(price("price", 1).is_ok());
        assert_eq!(field_of(price("price", 0)), "price");
        assert_eq!(field_of(price("price", -5)), "price");
        assert!(stock(0).is_ok());
        assert_eq!(field_of(stock(-1)), "stock");
        assert!(qty(1).is_ok());
        assert_eq!(field_of(qty(0)), "qty");
        assert_eq!(field_of(qty(-3)), "qty");
    }

    #[test]
    fn globs() {
        assert!(glob_match("al*", "Alice"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("al*", "Bob"));
        assert!(glob_match("*@example.com", "al@example.com"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn hashes_and_tokens() {
        assert!(password_hash("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA").is_ok());
        assert!(password_hash("hunter42").is_err());
        assert!(token(&"ab".repeat(32)).is_ok());
        assert!(token("short").is_err());
        assert!(token(&"AB".repeat(32)).is_err());
    }
}
