//! Everything done on the node that receives a client request, before proposing it:
//! validation, password hashing with a random salt, password verification, session tokens
//! and timestamps. Apply never hashes, draws random numbers or reads a clock.
//!
//! Login is two steps on the receiving node:
//!
//! ```text
//! let q = prepare::credentials_query(email)?;          // node-internal read
//! let reply = decode_reply(&sm.query(&q.encode())?)?;  // (linearizable read)
//! let request = prepare::login(&cfg, password, reply, prepare::now_ms())?;  // argon2 verify
//! propose(request.encode())                            // -> Response::Session { token, .. }
//! ```

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::ShopError;
use crate::types::{Action, Auth, Profile, Query, Reply, Request, Response};
use crate::validate;

/// Costs of password hashing and session lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareConfig {
    /// argon2 memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2 iterations.
    pub argon2_iterations: u32,
    /// argon2 lanes.
    pub argon2_lanes: u32,
    /// How long a session lasts, in milliseconds.
    pub session_ttl_ms: u64,
}

impl Default for PrepareConfig {
    /// argon2id with the crate's recommended costs (19 MiB, 2 passes, 1 lane); sessions of
    /// 24 hours.
    fn default() -> Self {
        PrepareConfig {
            argon2_memory_kib: Params::DEFAULT_M_COST,
            argon2_iterations: Params::DEFAULT_T_COST,
            argon2_lanes: Params::DEFAULT_P_COST,
            session_ttl_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl PrepareConfig {
    /// Minimal argon2 costs, for tests only (debug builds hash slowly).
    pub fn fast_for_tests() -> Self {
        PrepareConfig {
            argon2_memory_kib: 8,
            argon2_iterations: 1,
            argon2_lanes: 1,
            ..PrepareConfig::default()
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, ShopError> {
        let params = Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_lanes,
            None,
        )
        .map_err(|e| ShopError::Internal {
            message: format!("argon2 parameters: {e}"),
        })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// The current time in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A new session token: 32 random bytes in lower-case hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_password(password: &str) -> Result<(), ShopError> {
    if password.is_empty() {
        return Err(ShopError::invalid("password", "must not be empty"));
    }
    if password.len() > validate::MAX_PASSWORD_BYTES {
        return Err(ShopError::invalid(
            "password",
            format!("must be at most {} bytes", validate::MAX_PASSWORD_BYTES),
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id and a fresh random salt, as a PHC string.
pub fn hash_password(config: &PrepareConfig, password: &str) -> Result<String, ShopError> {
    check_password(password)?;
    let salt: [u8; 16] = rand::random();
    let hash = config
        .argon2()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| ShopError::Internal {
            message: format!("argon2 hashing failed: {e}"),
        })?;
    Ok(hash.to_string())
}

/// How many times the configured (or the crate's default, whichever is larger) argon2 costs
/// a stored hash may ask for before [`verify_password`] refuses to compute it.
pub const MAX_HASH_COST_FACTOR: u32 = 4;

/// Whether the costs a stored hash asks for are within [`MAX_HASH_COST_FACTOR`] of this node's.
///
/// argon2 verifies with the parameters written in the hash, not the node's: a hash asking for
/// gigabytes of memory or billions of passes would make every login for its email exhaust the
/// node. Nodes only ever store hashes they made, but the log is not the place to trust that.
fn hash_costs_acceptable(config: &PrepareConfig, hash: &argon2::PasswordHash) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let bound = |configured: u32, default: u32| {
        configured.max(default).saturating_mul(MAX_HASH_COST_FACTOR)
    };
    params.m_cost() <= bound(config.argon2_memory_kib, Params::DEFAULT_M_COST)
        && params.t_cost() <= bound(config.argon2_iterations, Params::DEFAULT_T_COST)
        && params.p_cost() <= bound(config.argon2_lanes, Params::DEFAULT_P_COST)
}

/// Whether `password` matches a PHC hash (its own parameters are used, if they are within
/// [`MAX_HASH_COST_FACTOR`] of the configured costs; a costlier hash never matches).
pub fn verify_password(config: &PrepareConfig, password: &str, hash: &str) -> bool {
    let Ok(parsed) = argon2::PasswordHash::new(hash) else {
        return false;
    };
    if !hash_costs_acceptable(config, &parsed) {
        tracing::warn!("refusing to verify a password hash with excessive argon2 costs");
        return false;
    }
    match config.argon2() {
        Ok(argon2) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A sign-up: validates every field, hashes the password.
pub fn signup(
    config: &PrepareConfig,
    email: &str,
    password: &str,
    profile: Profile,
    now_ms: u64,
) -> Result<Request, ShopError> {
    profile.validate()?;
    validate::email(email)?;
    check_password(password)?;
    let request = Request::Signup {
        email: email.to_string(),
        profile,
        password_hash: hash_password(config, password)?,
        now_ms,
    };
    request.validate()?;
    Ok(request)
}

/// `shoal signup --role customer ...`.
pub fn signup_customer(
    config: &PrepareConfig,
    name: &str,
    email: &str,
    password: &str,
    address: &str,
    contact: &str,
    now_ms: u64,
) -> Result<Request, ShopError> {
    let profile = Profile::Customer {
        name: name.to_string(),
        address: address.to_string(),
        contact: contact.to_string(),
    };
    signup(config, email, password, profile, now_ms)
}

/// `shoal signup --role owner ...`.
#[allow(clippy::too_many_arguments)]
pub fn signup_owner(
    config: &PrepareConfig,
    first: &str,
    middle: Option<&str>,
    last: &str,
    email: &str,
    password: &str,
    contact: &str,
    now_ms: u64,
) -> Result<Request, ShopError> {
    let profile = Profile::Owner {
        first: first.to_string(),
        middle: middle.map(str::to_string),
        last: last.to_string(),
        contact: contact.to_string(),
    };
    signup(config, email, password, profile, now_ms)
}

/// Login, step 1: the node-internal query fetching the account id and hash of `email`.
pub fn credentials_query(email: &str) -> Result<Query, ShopError> {
    validate::email(email)?;
    Ok(Query::Credentials {
        email: email.to_string(),
    })
}

/// Login, step 2: verifies `password` against the reply to [`credentials_query`] and builds
/// the `CreateSession` request (random token, expiry from `now_ms`). Unknown email and wrong
/// password give the same [`ShopError::Unauthorized`].
pub fn login(
    config: &PrepareConfig,
    password: &str,
    credentials: Reply,
    now_ms: u64,
) -> Result<Request, ShopError> {
    let refused = || ShopError::unauthorized("invalid email or password");
    check_password(password)?;
    let (account_id, password_hash) = match credentials {
        Ok(Response::Credentials {
            account_id,
            password_hash,
        }) => (account_id, password_hash),
        Err(ShopError::NotFound { .. }) => return Err(refused()),
        Err(other) => return Err(other),
        Ok(other) => {
            return Err(ShopError::Internal {
                message: format!("unexpected answer to the credentials query: {other:?}"),
            });
        }
    };
    if !verify_password(config, password, &password_hash) {
        return Err(refused());
    }
    let request = Request::CreateSession {
        account_id,
        password_hash,
        token: new_token(),
        now_ms,
        expires_at_ms: now_ms.saturating_add(config.session_ttl_ms.max(1)),
    };
    request.validate()?;
    Ok(request)
}

/// An action of a logged-in account, validated.
pub fn authed(token: &str, now_ms: u64, action: Action) -> Result<Request, ShopError> {
    let request = Request::Authed {
        auth: Auth::new(token, now_ms),
        action,
    };
    request.validate()?;
    Ok(request)
}

/// Validates any request before proposing it (apply checks again).
pub fn check(request: Request) -> Result<Request, ShopError> {
    request.validate()?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify() {
        let cfg = PrepareConfig::fast_for_tests();
        let a = hash_password(&cfg, "hunter42").unwrap();
        let b = hash_password(&cfg, "hunter42").unwrap();
        assert_ne!(a, b, "salts differ");
        assert!(a.starts_with("$argon2id$"));
        assert!(!a.contains("hunter42"));
        assert!(verify_password(&cfg, "hunter42", &a));
        assert!(!verify_password(&cfg, "hunter43", &a));
        assert!(!verify_password(&cfg, "hunter42", "garbage"));
    }

    #[test]
    fn hashes_with_excessive_costs_are_not_computed() {
        let cfg = PrepareConfig::fast_for_tests();
        // Same salt and output as a real hash, but asking for 4 TiB of memory and 2^32 - 1
        // passes: computing it would exhaust the node (or abort on the allocation).
        let real = hash_password(&cfg, "pw").unwrap();
        let tail = real.rsplitn(3, '$').take(2).collect::<Vec<_>>();
        let (output, salt) = (tail[0], tail[1]);
        for params in ["m=4294967295,t=1,p=1", "m=8,t=4294967295,p=1"] {
            let costly = format!("$argon2id$v=19${params}${salt}${output}");
            let started = std::time::Instant::now();
            assert!(!verify_password(&cfg, "pw", &costly), "{params}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
        }
        // Hashes at the node's own costs, and at up to 4 times the default, still verify.
        assert!(verify_password(&cfg, "pw", &real));
        let heavier = PrepareConfig {
            argon2_iterations: Params::DEFAULT_T_COST * MAX_HASH_COST_FACTOR,
            ..cfg.clone()
        };
        let heavy = hash_password(&heavier, "pw").unwrap();
        assert!(verify_password(&cfg, "pw", &heavy));
    }

    #[test]
    fn default_config_uses_real_costs() {
        let cfg = PrepareConfig::default();
        assert!(cfg.argon2_memory_kib >= 19 * 1024);
        assert!(cfg.argon2().is_ok());
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert!(validate::token(&a).is_ok());
        assert_ne!(a, new_token());
    }

    #[test]
    fn signup_validates_before_hashing() {
        let cfg = PrepareConfig::fast_for_tests();
        let e = signup_customer(&cfg, "Al", "al@x.io", "pw", "1 Road", "12345", 0).unwrap_err();
        assert_eq!(
            e,
            ShopError::invalid("contact", "must have 7 to 15 digits, got 5")
        );
        let e = signup_customer(&cfg, "Al", "al@x.io", "", "1 Road", "1234567", 0).unwrap_err();
        assert!(matches!(e, ShopError::Invalid { ref field, .. } if field == "password"));
        let e = signup_owner(&cfg, "A", Some(""), "B", "a@x.io", "pw", "1234567", 0).unwrap_err();
        assert!(matches!(e, ShopError::Invalid { ref field, .. } if field == "middle"));
    }

    #[test]
    fn login_refuses_unknown_email_and_wrong_password_alike() {
        let cfg = PrepareConfig::fast_for_tests();
        let hash = hash_password(&cfg, "right").unwrap();
        let creds = || {
            Ok(Response::Credentials {
                account_id: 1,
                password_hash: hash.clone(),
            })
        };
        assert!(matches!(
            login(&cfg, "wrong", creds(), 5),
            Err(ShopError::Unauthorized { .. })
        ));
        assert!(matches!(
            login(&cfg, "right", Err(ShopError::not_found("account", "x")), 5),
            Err(ShopError::Unauthorized { .. })
        ));
        match login(&cfg, "right", creds(), 5).unwrap() {
            Request::CreateSession {
                account_id,
                expires_at_ms,
                token,
                ..
            } => {
                assert_eq!(account_id, 1);
                assert_eq!(expires_at_ms, 5 + cfg.session_ttl_ms);
                assert_eq!(token.len(), 64);
            }
            other => panic!("{other:?}"),
        }
    }
}
