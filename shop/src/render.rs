//! Human-readable output of every reply, for the binary's default (non `--json`) mode: one
//! line per item, money as `12.34`.

use std::fmt::Write as _;

use crate::money::format_money;
use crate::types::{AccountView, OrderView, ProductView, Reply, Response};

fn product_line(p: &ProductView) -> String {
    format!(
        "#{}  {}  [{} / {} / size {}]  {}  stock {}  (store {})",
        p.product_id,
        p.name,
        p.category,
        p.brand,
        p.size,
        format_money(p.price_cents),
        p.stock,
        p.store_id
    )
}

fn account_line(a: &AccountView) -> String {
    format!(
        "#{} {} <{}> ({})",
        a.account_id,
        a.name,
        a.email,
        a.role.as_str()
    )
}

/// An order's header line and one indented line per item.
fn write_order(out: &mut String, o: &OrderView) {
    let _ = writeln!(
        out,
        "order {}  total {}",
        o.order_id,
        format_money(o.total_cents)
    );
    for l in &o.lines {
        let _ = writeln!(
            out,
            "  #{}  {}  {} x {}",
            l.product_id,
            l.name,
            l.qty,
            format_money(l.unit_price_cents)
        );
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The text for a reply; an error is its message (print it on stderr).
pub fn text(reply: &Reply) -> String {
    match reply {
        Ok(response) => response_text(response),
        Err(error) => format!("error: {error}"),
    }
}

/// The text for a successful response.
pub fn response_text(response: &Response) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored on purpose.
    match response {
        Response::Done => out.push_str("ok"),
        Response::AccountCreated { account_id } => {
            let _ = write!(out, "account {account_id} created");
        }
        Response::Credentials { account_id, .. } => {
            let _ = write!(out, "account {account_id}");
        }
        Response::Session {
            token, account_id, ..
        } => {
            let _ = write!(out, "logged in as account {account_id}\ntoken {token}");
        }
        Response::Account(a) => out.push_str(&account_line(a)),
        Response::Users { users, next } => {
            for a in users {
                let _ = writeln!(out, "{}", account_line(a));
            }
            if users.is_empty() {
                out.push_str("no users\n");
            }
            if let Some(next) = next {
                let _ = writeln!(out, "more: --after {next}");
            }
        }
        Response::StoreCreated { store_id } => {
            let _ = write!(out, "store {store_id} created");
        }
        Response::ProductCreated { product_id } => {
            let _ = write!(out, "product {product_id} added");
        }
        Response::Product(p) => out.push_str(&product_line(p)),
        Response::Products { products, next } => {
            for p in products {
                let _ = writeln!(out, "{}", product_line(p));
            }
            if products.is_empty() {
                out.push_str("no products\n");
            }
            if let Some(next) = next {
                let _ = writeln!(out, "more: --after {next}");
            }
        }
        Response::Cart { lines, total_cents } => {
            for l in lines {
                let _ = writeln!(
                    out,
                    "#{}  {}  {} x {}",
                    l.product_id,
                    l.name,
                    l.qty,
                    format_money(l.unit_price_cents)
                );
            }
            if lines.is_empty() {
                out.push_str("cart is empty\n");
            }
            let _ = write!(out, "total {}", format_money(*total_cents));
        }
        Response::Checkout {
            order_id,
            total_cents,
        } => {
            let _ = write!(
                out,
                "order {order_id} placed, total {}",
                format_money(*total_cents)
            );
        }
        Response::Orders { orders, next } => {
            for o in orders {
                write_order(&mut out, o);
            }
            if orders.is_empty() {
                out.push_str("no orders\n");
            }
            if let Some(next) = next {
                let _ = writeln!(out, "more: --after {next}");
            }
        }
        Response::Order(o) => write_order(&mut out, o),
        Response::Sales { rows } => {
            for r in rows {
                let _ = writeln!(
                    out,
                    "store {}  #{}  {}  units {}  revenue {}",
                    r.store_id,
                    r.product_id,
                    r.name,
                    r.units,
                    format_money(r.revenue_cents)
                );
            }
            if rows.is_empty() {
                out.push_str("no sales\n");
            }
        }
        Response::MessageSent { message_id } => {
            let _ = write!(out, "message {message_id} sent");
        }
        Response::Messages { messages, next } => {
            for m in messages {
                let mark = if m.was_read { " " } else { "*" };
                let _ = writeln!(out, "{mark}[{}] {}: {}", m.message_id, m.from_email, m.text);
            }
            if messages.is_empty() {
                out.push_str("no messages\n");
            }
            if let Some(next) = next {
                let _ = writeln!(out, "more: --after {next}");
            }
        }
        Response::KvValue { value, .. } => match value {
            Some(value) => out.push_str(&lossy(value)),
            None => out.push_str("(not found)"),
        },
        Response::KvDeleted { existed } => {
            out.push_str(if *existed { "deleted" } else { "(not found)" });
        }
        Response::KvEntries { entries, next } => {
            for e in entries {
                let _ = writeln!(out, "{} = {}", lossy(&e.key), lossy(&e.value));
            }
            if let Some(next) = next {
                let _ = writeln!(out, "more: --after {}", lossy(next));
            }
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShopError;

    #[test]
    fn renders_money_and_errors() {
        let r: Reply = Ok(Response::Checkout {
            order_id: 4,
            total_cents: 1999,
        });
        assert_eq!(text(&r), "order 4 placed, total 19.99");
        let r: Reply = Err(ShopError::invalid(
            "contact",
            "must have 7 to 15 digits, got 3",
        ));
        assert_eq!(
            text(&r),
            "error: invalid contact: must have 7 to 15 digits, got 3"
        );
        let r: Reply = Ok(Response::KvValue {
            key: b"k".to_vec(),
            value: None,
        });
        assert_eq!(text(&r), "(not found)");
        let order = OrderView {
            order_id: 7,
            account_id: 2,
            placed_at_ms: 0,
            lines: vec![crate::types::OrderLine {
                product_id: 3,
                store_id: 1,
                name: "Boot".into(),
                qty: 2,
                unit_price_cents: 1250,
            }],
            total_cents: 2500,
        };
        let one = text(&Ok(Response::Order(order.clone())));
        assert_eq!(one, "order 7  total 25.00\n  #3  Boot  2 x 12.50");
        let list = text(&Ok(Response::Orders {
            orders: vec![order],
            next: Some(7),
        }));
        assert_eq!(list, format!("{one}\nmore: --after 7"));
    }
}
