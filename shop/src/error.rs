//! Errors: [`ShopError`], the typed answer a request or query can get (mapped to the SPEC's
//! exit codes), and [`StoreError`], a storage failure of the state machine itself.

use rkyv::{Archive, Deserialize, Serialize};

/// Why a request or query was refused. Carried in responses (rkyv) so the client that sent
/// the request can print it and exit with [`ShopError::exit_code`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShopError {
    /// An input failed validation (exit code 2).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field (flag) that was wrong, e.g. `email`, `contact`, `price`.
        field: String,
        /// What was wrong with it.
        message: String,
    },
    /// The thing asked for does not exist (exit code 3).
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing: `account`, `store`, `product`, `order`, `message`, `cart line`.
        what: String,
        /// Its id, email or key as the user wrote it.
        id: String,
    },
    /// The email is already used by another account (exit code 4).
    #[error("email {email} is already registered")]
    DuplicateEmail {
        /// The email, normalised to lower case.
        email: String,
    },
    /// A checkout line asks for more than is in stock (exit code 4).
    #[error(
        "insufficient stock for product {product_id} ({name}): {available} available, {requested} requested"
    )]
    InsufficientStock {
        /// The product that is short.
        product_id: u64,
        /// Its name.
        name: String,
        /// Units in stock.
        available: i64,
        /// Units the cart asks for.
        requested: i64,
    },
    /// A kv compare-and-swap found another value (exit code 4).
    #[error("compare-and-swap failed for key {key}: current value differs from expected")]
    CasMismatch {
        /// The key, lossily as text.
        key: String,
        /// The value currently stored (None: absent).
        current: Option<Vec<u8>>,
    },
    /// Some other conflict with the current state (exit code 4).
    #[error("conflict: {message}")]
    Conflict {
        /// What conflicted.
        message: String,
    },
    /// No session, an unknown or expired token, or a wrong password (exit code 5).
    #[error("not authenticated: {message}")]
    Unauthorized {
        /// Why.
        message: String,
    },
    /// Authenticated, but not allowed to do this (exit code 5).
    #[error("forbidden: {message}")]
    Forbidden {
        /// Why.
        message: String,
    },
    /// A server-side failure unrelated to the input, e.g. hashing failed (exit code 1).
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl ShopError {
    /// The process exit code SPEC §3 assigns to this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ShopError::Invalid { .. } => 2,
            ShopError::NotFound { .. } => 3,
            ShopError::DuplicateEmail { .. }
            | ShopError::InsufficientStock { .. }
            | ShopError::CasMismatch { .. }
            | ShopError::Conflict { .. } => 4,
            ShopError::Unauthorized { .. } | ShopError::Forbidden { .. } => 5,
            ShopError::Internal { .. } => 1,
        }
    }

    /// A short machine-readable kind, for `{"error": {"kind": ...}}`.
    pub fn kind(&self) -> &'static str {
        match self {
            ShopError::Invalid { .. } => "invalid",
            ShopError::NotFound { .. } => "not_found",
            ShopError::DuplicateEmail { .. } => "duplicate_email",
            ShopError::InsufficientStock { .. } => "insufficient_stock",
            ShopError::CasMismatch { .. } => "cas_mismatch",
            ShopError::Conflict { .. } => "conflict",
            ShopError::Unauthorized { .. } => "unauthorized",
            ShopError::Forbidden { .. } => "forbidden",
            ShopError::Internal { .. } => "internal",
        }
    }

    /// An [`ShopError::Invalid`] for `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ShopError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A [`ShopError::NotFound`].
    pub fn not_found(what: &str, id: impl ToString) -> Self {
        ShopError::NotFound {
            what: what.to_string(),
            id: id.to_string(),
        }
    }

    /// A [`ShopError::Unauthorized`].
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ShopError::Unauthorized {
            message: message.into(),
        }
    }

    /// A [`ShopError::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        ShopError::Forbidden {
            message: message.into(),
        }
    }
}

/// A failure of the state machine's storage: the node cannot go on applying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// fjall failed.
    #[error("fjall: {0}")]
    Fjall(#[from] fjall::Error),
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Stored state failed validation.
    #[error("corrupt state: {what}")]
    Corrupt {
        /// What was corrupt and where.
        what: String,
    },
    /// A snapshot stream was refused.
    #[error("invalid snapshot at byte {offset}: {reason}")]
    Snapshot {
        /// Byte offset in the stream where the fault was found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        assert_eq!(ShopError::invalid("email", "x").exit_code(), 2);
        assert_eq!(ShopError::not_found("product", 3).exit_code(), 3);
        assert_eq!(
            ShopError::DuplicateEmail {
                email: "a@b.c".into()
            }
            .exit_code(),
            4
        );
        assert_eq!(
            ShopError::CasMismatch {
                key: "k".into(),
                current: None
            }
            .exit_code(),
            4
        );
        assert_eq!(ShopError::unauthorized("x").exit_code(), 5);
        assert_eq!(ShopError::forbidden("x").exit_code(), 5);
        assert_eq!(
            ShopError::Internal {
                message: "x".into()
            }
            .exit_code(),
            1
        );
        let e = ShopError::InsufficientStock {
            product_id: 7,
            name: "Boot".into(),
            available: 1,
            requested: 2,
        };
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("Boot"));
    }
}
