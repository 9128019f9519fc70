//! The `--json` documents of SPEC §3 for every reply, so the binary prints the same field
//! names everywhere: money as `"12.34"` strings, ids as numbers, kv keys and values as text
//! (lossy UTF-8), errors as `{"error": {"kind": ..., "message": ...}}`.

use serde_json::{Value, json};

use crate::ShopError;
use crate::money::format_money;
use crate::types::{MessageView, OrderView, ProductView, Reply, Response};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A product as `product show --json` prints it.
pub fn product(p: &ProductView) -> Value {
    json!({
        "product_id": p.product_id,
        "store_id": p.store_id,
        "name": p.name,
        "category": p.category,
        "brand": p.brand,
        "size": p.size,
        "price": format_money(p.price_cents),
        "stock": p.stock,
    })
}

fn order(o: &OrderView) -> Value {
    json!({
        "order_id": o.order_id,
        "account_id": o.account_id,
        "placed_at_ms": o.placed_at_ms,
        "total": format_money(o.total_cents),
        "lines": o.lines.iter().map(|l| json!({
            "product_id": l.product_id,
            "store_id": l.store_id,
            "name": l.name,
            "qty": l.qty,
            "unit_price": format_money(l.unit_price_cents),
        })).collect::<Vec<_>>(),
    })
}

fn message(m: &MessageView) -> Value {
    json!({
        "id": m.message_id,
        "from": m.from_email,
        "from_account": m.from_account,
        "text": m.text,
        "sent_at_ms": m.sent_at_ms,
        "was_read": m.was_read,
    })
}

/// The error document, with the same exit code as [`ShopError::exit_code`].
pub fn error(e: &ShopError) -> Value {
    json!({"error": {"kind": e.kind(), "message": e.to_string()}})
}

/// The document for a successful response.
pub fn response(r: &Response) -> Value {
    match r {
        Response::Done => json!({"ok": true}),
        Response::AccountCreated { account_id } => json!({"account_id": account_id}),
        // Never printed to users: a node-internal answer. No hash in the document.
        Response::Credentials { account_id, .. } => json!({"account_id": account_id}),
        Response::Session {
            token,
            account_id,
            expires_at_ms,
        } => json!({"token": token, "account_id": account_id, "expires_at_ms": expires_at_ms}),
        Response::Account(a) => json!({
            "account_id": a.account_id, "role": a.role.as_str(), "name": a.name, "email": a.email,
        }),
        Response::Users { users, next } => json!({
            "users": users.iter().map(|a| json!({
                "account_id": a.account_id, "role": a.role.as_str(), "name": a.name, "email": a.email,
            })).collect::<Vec<_>>(),
            "next": next,
        }),
        Response::StoreCreated { store_id } => json!({"store_id": store_id}),
        Response::ProductCreated { product_id } => json!({"product_id": product_id}),
        Response::Product(p) => product(p),
        Response::Products { products, next } => json!({
            "products": products.iter().map(product).collect::<Vec<_>>(),
            "next": next.map(|c| c.to_string()),
        }),
        Response::Cart { lines, total_cents } => json!({
            "lines": lines.iter().map(|l| json!({
                "product_id": l.product_id,
                "name": l.name,
                "qty": l.qty,
                "unit_price": format_money(l.unit_price_cents),
            })).collect::<Vec<_>>(),
            "total": format_money(*total_cents),
        }),
        Response::Checkout {
            order_id,
            total_cents,
        } => json!({"order_id": order_id, "total": format_money(*total_cents)}),
        Response::Orders { orders, next } => {
            json!({"orders": orders.iter().map(order).collect::<Vec<_>>(), "next": next})
        }
        Response::Order(o) => order(o),
        Response::Sales { rows } => json!({
            "products": rows.iter().map(|r| json!({
                "product_id": r.product_id,
                "store_id": r.store_id,
                "name": r.name,
                "units": r.units,
                "revenue": format_money(r.revenue_cents),
            })).collect::<Vec<_>>(),
        }),
        Response::MessageSent { message_id } => json!({"message_id": message_id}),
        Response::Messages { messages, next } => json!({
            "messages": messages.iter().map(message).collect::<Vec<_>>(),
            "next": next,
        }),
        Response::KvValue { key, value } => {
            json!({"key": text(key), "value": value.as_deref().map(text)})
        }
        Response::KvDeleted { existed } => json!({"deleted": existed}),
        Response::KvEntries { entries, next } => json!({
            "next": next.as_deref().map(text),
            "entries": entries.iter().map(|e| json!({"key": text(&e.key), "value": text(&e.value)})).collect::<Vec<_>>(),
        }),
    }
}

/// The document for any reply.
pub fn reply(r: &Reply) -> Value {
    match r {
        Ok(resp) => response(resp),
        Err(e) => error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Cursor, SalesRow};

    #[test]
    fn documents_use_the_spec_field_names() {
        let p = ProductView {
            product_id: 3,
            store_id: 1,
            name: "Boot".into(),
            category: "footwear".into(),
            brand: "Acme".into(),
            size: "42".into(),
            price_cents: 1234,
            stock: 5,
        };
        let v = response(&Response::Product(p.clone()));
        assert_eq!(v["price"], "12.34");
        assert_eq!(v["product_id"], 3);
        let v = response(&Response::Products {
            products: vec![p],
            next: Some(Cursor {
                price_cents: 1234,
                product_id: 3,
            }),
        });
        assert_eq!(v["next"], "1234-3");
        assert_eq!(v["products"][0]["stock"], 5);
        let v = response(&Response::Checkout {
            order_id: 9,
            total_cents: 5,
        });
        assert_eq!(v, json!({"order_id": 9, "total": "0.05"}));
        let v = response(&Response::Sales {
            rows: vec![SalesRow {
                store_id: 1,
                product_id: 3,
                name: "Boot".into(),
                units: 10,
                revenue_cents: 12340,
            }],
        });
        assert_eq!(v["products"][0]["units"], 10);
        assert_eq!(v["products"][0]["revenue"], "123.40");
        let v = response(&Response::KvValue {
            key: b"k".to_vec(),
            value: None,
        });
        assert_eq!(v, json!({"key": "k", "value": null}));
        let v = reply(&Err(ShopError::invalid("email", "bad")));
        assert_eq!(v["error"]["kind"], "invalid");
        assert_eq!(v["error"]["message"], "invalid email: bad");
        let v = response(&Response::Credentials {
            account_id: 1,
            password_hash: "$argon2id$secret".into(),
        });
        assert!(!v.to_string().contains("argon2"));
    }
}
