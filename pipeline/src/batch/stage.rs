//! FakeStore responses to STAGING rows. Each record is parsed, typed and validated on its own:
//! a bad record goes to quarantine with its reason and never stops the others. Passwords are
//! dropped here, before anything is written to STAGING or quarantine.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{price_to_cents, Invalid, Order, OrderItem, OrderStatus, Product, User};

/// A refused record and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub field: String,
    pub reason: String,
    pub record: Value,
}

/// Rows that passed, and records that did not.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged<T> {
    pub rows: Vec<T>,
    pub quarantined: Vec<Quarantined>,
}

impl<T> Default for Staged<T> {
    fn default() -> Self {
        Staged {
            rows: Vec::new(),
            quarantined: Vec::new(),
        }
    }
}

impl<T> Staged<T> {
    fn refuse(&mut self, why: Invalid, record: Value) {
        self.quarantined.push(Quarantined {
            field: why.field,
            reason: why.reason,
            record,
        });
    }
}

#[derive(Deserialize)]
struct RawProduct {
    id: i64,
    title: String,
    price: f64,
    #[serde(default)]
    description: String,
    category: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    rating: Option<RawRating>,
}

#[derive(Deserialize)]
struct RawRating {
    rate: f64,
    count: i64,
}

#[derive(Deserialize)]
struct RawUser {
    id: i64,
    email: String,
    username: String,
    name: RawName,
    address: RawAddress,
    #[serde(default)]
    phone: String,
}

#[derive(Deserialize)]
struct RawName {
    firstname: String,
    lastname: String,
}

#[derive(Deserialize)]
struct RawAddress {
    #[serde(default)]
    city: String,
    #[serde(default)]
    street: String,
    #[serde(default)]
    number: i64,
    #[serde(default)]
    zipcode: String,
    #[serde(default)]
    geolocation: Option<RawGeo>,
    /// Not in FakeStore's shape; the synthetic source sends it.
    #[serde(default)]
    country: Option<String>,
}

#[derive(Deserialize)]
struct RawGeo {
    lat: String,
    long: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCart {
    id: i64,
    user_id: i64,
    date: String,
    products: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLine {
    product_id: i64,
    quantity: i64,
}

/// The records of a response body: a JSON array, or the reason the body is unusable.
fn records(body: &[u8]) -> Result<Vec<Value>, Invalid> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(Invalid::new("body", "not a JSON array")),
        Err(e) => Err(Invalid::new("body", format!("malformed JSON: {e}"))),
    }
}

fn schema(e: serde_json::Error) -> Invalid {
    Invalid::new("record", format!("does not match the FakeStore shape: {e}"))
}

/// Stage `/products`.
pub fn stage_products(body: &[u8]) -> Result<Staged<Product>, Invalid> {
    let mut out = Staged::default();
    for record in records(body)? {
        let parsed = serde_json::from_value::<RawProduct>(record.clone())
            .map_err(schema)
            .and_then(|p| {
                let rating = p.rating.unwrap_or(RawRating {
                    rate: 0.0,
                    count: 0,
                });
                let product = Product {
                    product_id: p.id,
                    title: p.title,
                    price_cents: price_to_cents("price", p.price)?,
                    description: p.description,
                    category: p.category,
                    image: p.image,
                    rating_rate: rating.rate,
                    rating_count: rating.count,
                };
                product.validate().map(|()| product)
            });
        match parsed {
            Ok(p) => out.rows.push(p),
            Err(why) => out.refuse(why, record),
        }
    }
    Ok(out)
}

/// Stage `/users`; the password never leaves this function.
pub fn stage_users(body: &[u8]) -> Result<Staged<User>, Invalid> {
    let mut out = Staged::default();
    for mut record in records(body)? {
        if let Some(obj) = record.as_object_mut() {
            obj.remove("password");
        }
        let parsed = serde_json::from_value::<RawUser>(record.clone())
            .map_err(schema)
            .and_then(|u| {
                let coord = |field: &str, s: &str| {
                    s.trim()
                        .parse::<f64>()
                        .map_err(|_| Invalid::new(field, format!("not a number: {s:?}")))
                };
                let (lat, long) = match &u.address.geolocation {
                    Some(g) => (Some(coord("lat", &g.lat)?), Some(coord("long", &g.long)?)),
                    None => (None, None),
                };
                let user = User {
                    user_id: u.id,
                    email: u.email,
                    username: u.username,
                    first_name: u.name.firstname,
                    last_name: u.name.lastname,
                    city: u.address.city,
                    street: u.address.street,
                    street_number: u.address.number,
                    zipcode: u.address.zipcode,
                    lat,
                    long,
                    phone: u.phone,
                    country: u.address.country.filter(|c| !c.trim().is_empty()),
                };
                user.validate().map(|()| user)
            });
        match parsed {
            Ok(u) => out.rows.push(u),
            Err(why) => out.refuse(why, record),
        }
    }
    Ok(out)
}

/// Stage `/carts` into orders and order items. `prices` maps product_id to the unit price in
/// cents from the product snapshot of the same pull; a line naming a product outside it is
/// quarantined. An order's total is the sum of its valid lines; with none it is `empty`.
pub fn stage_carts(
    body: &[u8],
    prices: &HashMap<i64, i64>,
    now: DateTime<Utc>,
) -> Result<(Staged<Order>, Staged<OrderItem>), Invalid> {
    stage_carts_priced(body, prices, &HashMap::new(), now)
}

/// `stage_carts` where `fixed` holds the unit price each (order_id, product_id) line was first
/// staged with: an order already staged keeps its prices when the catalogue changes, so past
/// revenue never moves (and its STAGING object comes out byte-identical).
pub fn stage_carts_priced(
    body: &[u8],
    prices: &HashMap<i64, i64>,
    fixed: &HashMap<(i64, i64), i64>,
    now: DateTime<Utc>,
) -> Result<(Staged<Order>, Staged<OrderItem>), Invalid> {
    let mut orders = Staged::default();
    let mut items = Staged::default();
    for record in records(body)? {
        let cart = match serde_json::from_value::<RawCart>(record.clone()).map_err(schema) {
            Ok(c) => c,
            Err(why) => {
                orders.refuse(why, record);
                continue;
            }
        };
        let order_time = match DateTime::parse_from_rfc3339(&cart.date) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                orders.refuse(
                    Invalid::new("date", format!("{:?}: {e}", cart.date)),
                    record,
                );
                continue;
            }
        };
        let mut lines = Vec::new();
        let mut refused = Vec::new();
        for (i, line) in cart.products.iter().enumerate() {
            let staged = serde_json::from_value::<RawLine>(line.clone())
                .map_err(schema)
                .and_then(|l| {
                    let first = fixed.get(&(cart.id, l.product_id));
                    let unit = *first.or_else(|| prices.get(&l.product_id)).ok_or_else(|| {
                        Invalid::new(
                            "productId",
                            format!("product {} is not in this pull's catalog", l.product_id),
                        )
                    })?;
                    let line_no = i as i64 + 1;
                    let item = OrderItem {
                        order_item_id: OrderItem::id(cart.id, line_no),
                        order_id: cart.id,
                        line_no,
                        product_id: l.product_id,
                        quantity: l.quantity,
                        unit_price_cents: unit,
                        line_total_cents: unit.saturating_mul(l.quantity),
                    };
                    item.validate().map(|()| item)
                });
            match staged {
                Ok(item) => lines.push(item),
                Err(why) => {
                    refused.push((why, serde_json::json!({"cartId": cart.id, "line": line})))
                }
            }
        }
        let order = Order {
            order_id: cart.id,
            user_id: cart.user_id,
            order_time,
            order_status: if lines.is_empty() {
                OrderStatus::Empty
            } else {
                OrderStatus::Placed
            },
            order_total_cents: lines.iter().map(|l| l.line_total_cents).sum(),
            item_count: lines.iter().map(|l| l.quantity).sum(),
        };
        if let Err(why) = order.validate(now) {
            // The whole cart is refused: its lines would have no order to belong to.
            orders.refuse(why, record);
            continue;
        }
        orders.rows.push(order);
        items.rows.extend(lines);
        for (why, line) in refused {
            items.refuse(why, line);
        }
    }
    Ok((orders, items))
}

/// One JSON object a line.
pub fn to_ndjson<T: Serialize>(rows: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        // Our row types always serialise.
        if serde_json::to_writer(&mut out, row).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::synthetic::SyntheticSource;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap()
    }

    #[test]
    fn synthetic_pull_stages_cleanly() {
        let s = SyntheticSource::new(42, 1);
        let products = stage_products(&s.products()).unwrap();
        assert_eq!(products.rows.len(), 20);
        assert!(products.quarantined.is_empty());
        let users = stage_users(&s.users()).unwrap();
        assert_eq!(users.rows.len(), 10);
        let prices: HashMap<i64, i64> = products
            .rows
            .iter()
            .map(|p| (p.product_id, p.price_cents))
            .collect();
        let (orders, items) = stage_carts(&s.carts(None, None), &prices, now()).unwrap();
        assert_eq!(orders.rows.len(), 40);
        assert!(orders.quarantined.is_empty() && items.quarantined.is_empty());
        let total: i64 = items.rows.iter().map(|i| i.line_total_cents).sum();
        assert_eq!(
            total,
            orders.rows.iter().map(|o| o.order_total_cents).sum::<i64>()
        );
    }

    #[test]
    fn bad_records_are_quarantined_with_reasons_and_never_stop_the_others() {
        let body = br#"[
            {"id":1,"title":"ok","price":9.99,"category":"c","rating":{"rate":4.1,"count":3}},
            {"id":2,"title":"neg","price":-1.5,"category":"c"},
            {"id":0,"title":"zero id","price":1,"category":"c"},
            {"title":"no id","price":1,"category":"c"},
            "not an object"
        ]"#;
        let p = stage_products(body).unwrap();
        assert_eq!(p.rows.len(), 1);
        let fields: Vec<&str> = p.quarantined.iter().map(|q| q.field.as_str()).collect();
        assert_eq!(fields, ["price", "product_id", "record", "record"]);
    }

    #[test]
    fn passwords_never_reach_staging_or_quarantine() {
        let body = br#"[
            {"id":1,"email":"a@b.c","username":"a","password":"hunter2","name":{"firstname":"a","lastname":"b"},
             "address":{"city":"x","street":"y","number":1,"zipcode":"1","geolocation":{"lat":"1.5","long":"2"}},"phone":"1"},
            {"id":2,"email":"nope","username":"b","password":"hunter3","name":{"firstname":"a","lastname":"b"},
             "address":{"city":"x","street":"y","number":1,"zipcode":"1"},"phone":"1"}
        ]"#;
        let u = stage_users(body).unwrap();
        assert_eq!(u.rows.len(), 1);
        assert_eq!(u.quarantined[0].field, "email");
        let written = [to_ndjson(&u.rows), to_ndjson(&u.quarantined)].concat();
        assert!(!String::from_utf8_lossy(&written).contains("hunter"));
    }

    #[test]
    fn carts_price_from_the_same_pull_and_refuse_unknown_products() {
        let prices = HashMap::from([(1, 1000), (2, 250)]);
        let body = br#"[
            {"id":5,"userId":1,"date":"2026-03-02T00:00:00.000Z","products":[{"productId":1,"quantity":2},{"productId":9,"quantity":1},{"productId":2,"quantity":-1}]},
            {"id":6,"userId":1,"date":"2026-03-02T00:00:00.000Z","products":[{"productId":9,"quantity":1}]},
            {"id":7,"userId":1,"date":"3026-01-01T00:00:00Z","products":[]},
            {"id":8,"userId":1,"date":"yesterday","products":[]}
        ]"#;
        let (orders, items) = stage_carts(body, &prices, now()).unwrap();
        assert_eq!(orders.rows.len(), 2);
        assert_eq!(orders.rows[0].order_total_cents, 2000);
        assert_eq!(orders.rows[0].order_status, OrderStatus::Placed);
        assert_eq!(orders.rows[1].order_status, OrderStatus::Empty);
        assert_eq!(items.rows.len(), 1);
        let fields: Vec<&str> = items.quarantined.iter().map(|q| q.field.as_str()).collect();
        assert_eq!(fields, ["productId", "quantity", "productId"]);
        let fields: Vec<&str> = orders
            .quarantined
            .iter()
            .map(|q| q.field.as_str())
            .collect();
        assert_eq!(fields, ["date", "date"]);
    }

    #[test]
    fn an_unusable_body_is_an_error_not_a_panic() {
        assert_eq!(stage_products(b"[{\"id\":1,").unwrap_err().field, "body");
        assert_eq!(stage_users(b"{}").unwrap_err().field, "body");
        assert!(stage_carts(b"", &HashMap::new(), now()).is_err());
    }
}
