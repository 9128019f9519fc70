//! Money: integer cents inside, `12.34` at the edges.

/// The largest amount [`parse_money`] accepts, in cents (10 trillion units): far above any
/// price the shop allows, and far below where sums could overflow an `i64`.
pub const MAX_MONEY_CENTS: i64 = 1_000_000_000_000_000;

/// Why a money string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is empty.
    #[error("empty amount")]
    Empty,
    /// A character other than digits and one `.`.
    #[error("{text:?} is not an amount like 12.34 (digits, optionally a dot and 1 or 2 decimals)")]
    Malformed {
        /// The text as given.
        text: String,
    },
    /// More than [`MAX_MONEY_CENTS`].
    #[error("{text:?} is too large")]
    TooLarge {
        /// The text as given.
        text: String,
    },
}

impl MoneyError {
    /// The error as an invalid-input error naming `field`.
    pub fn for_field(&self, field: &str) -> crate::ShopError {
        crate::ShopError::invalid(field, self.to_string())
    }
}

/// Parses a non-negative amount such as `12`, `12.3` or `12.34` into cents.
///
/// Strict: no sign, no spaces, no exponent, no thousands separator, at least one digit before
/// the dot, one or two after it if there is a dot.
pub fn parse_money(text: &str) -> Result<i64, MoneyError> {
    if text.is_empty() {
        return Err(MoneyError::Empty);
    }
    let malformed = || MoneyError::Malformed {
        text: text.chars().take(40).collect(),
    };
    let (units, cents) = match text.split_once('.') {
        Some((units, cents)) => (units, Some(cents)),
        None => (text, None),
    };
    if units.is_empty() || !units.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let cents_value: i64 = match cents {
        None => 0,
        Some(c) if c.len() == 1 && c.bytes().all(|b| b.is_ascii_digit()) => {
            i64::from(c.as_bytes()[0] - b'0') * 10
        }
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit()) => {
            i64::from(c.as_bytes()[0] - b'0') * 10 + i64::from(c.as_bytes()[1] - b'0')
        }
        Some(_) => return Err(malformed()),
    };
    let too_large = || MoneyError::TooLarge {
        text: text.chars().take(40).collect(),
    };
    let trimmed = units.trim_start_matches('0');
    if trimmed.len() > 18 {
        return Err(too_large());
    }
    let unit_value: i64 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().map_err(|_| too_large())?
    };
    let total = unit_value
        .checked_mul(100)
        .and_then(|v| v.checked_add(cents_value))
        .ok_or_else(too_large)?;
    if total > MAX_MONEY_CENTS {
        return Err(too_large());
    }
    Ok(total)
}

/// Formats cents as `12.34` (always two decimals; negative amounts get a leading `-`).
pub fn format_money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_valid_amounts() {
        assert_eq!(parse_money("12.34"), Ok(1234));
        assert_eq!(parse_money("12.3"), Ok(1230));
        assert_eq!(parse_money("12"), Ok(1200));
        assert_eq!(parse_money("0.01"), Ok(1));
        assert_eq!(parse_money("0"), Ok(0));
        assert_eq!(parse_money("007.50"), Ok(750));
        assert_eq!(parse_money("10000000000000"), Ok(MAX_MONEY_CENTS));
    }

    #[test]
    fn refuses_malformed_amounts() {
        for bad in [
            "", "-1", "+1", ".5", "1.", "1.234", "1,00", " 1", "1 ", "1e3", "abc", "1.2.3", "١٢",
            "0x10", "1._5", "1.-5",
        ] {
            assert!(parse_money(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(
            parse_money("10000000000000.01"),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_money("99999999999999999999999999"),
            Err(MoneyError::TooLarge { .. })
        ));
        assert_eq!(
            parse_money("1.234").map_err(|e| e.for_field("price").exit_code()),
            Err(2)
        );
    }

    #[test]
    fn formats_amounts() {
        assert_eq!(format_money(1234), "12.34");
        assert_eq!(format_money(5), "0.05");
        assert_eq!(format_money(0), "0.00");
        assert_eq!(format_money(100), "1.00");
        assert_eq!(format_money(-5), "-0.05");
        assert_eq!(format_money(i64::MIN), "-92233720368547758.08");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(cents in 0..=MAX_MONEY_CENTS) {
            prop_assert_eq!(parse_money(&format_money(cents)), Ok(cents));
        }
    }
}
