//! The five entities (users, products, orders, order_items, events) and the four event types,
//! as they stand in STAGING: cleaned and typed. Money is integer cents so sums reconcile
//! exactly. `validate` returns the reason a record is refused; nothing here panics on input.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Why a record was refused. Stored with the record in the quarantine zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid {
    /// The offending field, e.g. "price".
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &str, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// The clickstream event types, in funnel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    ProductView,
    AddToCart,
    Checkout,
    Purchase,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::ProductView,
        EventType::AddToCart,
        EventType::Checkout,
        EventType::Purchase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ProductView => "product_view",
            EventType::AddToCart => "add_to_cart",
            EventType::Checkout => "checkout",
            EventType::Purchase => "purchase",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Invalid::new("event_type", format!("unknown event type {s:?}")))
    }
}

/// A customer. FakeStore's password is dropped before STAGING and never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub user_id: i64,
    pub email: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub city: String,
    pub street: String,
    pub street_number: i64,
    pub zipcode: String,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub phone: String,
    /// FakeStore's users have no country (None, omitted); the synthetic source sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A catalog product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub product_id: i64,
    pub title: String,
    pub price_cents: i64,
    pub description: String,
    pub category: String,
    pub image: String,
    pub rating_rate: f64,
    pub rating_count: i64,
}

/// Order states. A FakeStore cart becomes an order: `placed` when it has at least one valid
/// line (counts as revenue), `empty` when it has none (kept, never revenue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Empty,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Empty => "empty",
        }
    }

    /// Whether an order in this state counts towards revenue.
    pub fn is_revenue(self) -> bool {
        matches!(self, OrderStatus::Placed)
    }
}

/// An order (from a FakeStore cart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: i64,
    pub user_id: i64,
    pub order_time: DateTime<Utc>,
    pub order_status: OrderStatus,
    /// Sum of the order's valid lines.
    pub order_total_cents: i64,
    pub item_count: i64,
}

/// One line of an order; `unit_price_cents` comes from the product snapshot of the same pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// `OrderItem::id(order_id, line_no)`: the same line of the same order has the same id on
    /// every rerun.
    pub order_item_id: i64,
    pub order_id: i64,
    pub line_no: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price_cents: i64,
    pub line_total_cents: i64,
}

/// A clickstream event. `event_time` is when it happened on the client; `ingestion_time` when
/// the pipeline received it (set on the way to STAGING). Late data is judged on `event_time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub user_id: i64,
    pub product_id: i64,
    pub event_type: EventType,
    pub event_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingestion_time: Option<DateTime<Utc>>,
    pub session_id: String,
    /// The producer's own `ingestion_time`, when it sent one: kept, never trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_time: Option<DateTime<Utc>>,
}

/// Earliest plausible timestamp: anything before is a parsing accident (epoch 0, year 1).
pub fn min_plausible_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How far ahead of the pipeline's clock an event_time may be (client clock skew).
pub const MAX_FUTURE_SKEW_HOURS: i64 = 24;

/// The largest id accepted; bigger ids are almost surely garbage and overflow downstream types.
pub const MAX_ID: i64 = 1 << 52;

fn check_id(field: &str, id: i64) -> Result<(), Invalid> {
    if id <= 0 {
        Err(Invalid::new(field, format!("must be positive, got {id}")))
    } else if id > MAX_ID {
        Err(Invalid::new(field, format!("too large: {id}")))
    } else {
        Ok(())
    }
}

fn check_time(field: &str, t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Invalid> {
    if t < min_plausible_time() {
        return Err(Invalid::new(field, format!("{t} is before 2000-01-01")));
    }
    if t > now + Duration::hours(MAX_FUTURE_SKEW_HOURS) {
        return Err(Invalid::new(
            field,
            format!("{t} is more than {MAX_FUTURE_SKEW_HOURS}h in the future"),
        ));
    }
    Ok(())
}

/// The longest text the warehouse keeps: Redshift's VARCHAR(65535) is in bytes
/// (<https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html>); a longer value
/// is refused here, with its reason, rather than failing the whole file's load.
pub const MAX_TEXT_BYTES: usize = 65_535;

fn check_text(field: &str, s: &str, max: usize, required: bool) -> Result<(), Invalid> {
    if required && s.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(Invalid::new(
            field,
            format!("longer than {max} bytes ({})", s.len()),
        ));
    }
    Ok(())
}

impl Event {
    /// Check an event against `now` (the pipeline's clock).
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_text("event_id", &self.event_id, 128, true)?;
        check_id("user_id", self.user_id)?;
        check_id("product_id", self.product_id)?;
        check_time("event_time", self.event_time, now)?;
        check_text("session_id", &self.session_id, 128, true)?;
        Ok(())
    }
}

impl User {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_id("user_id", self.user_id)?;
        check_text("email", &self.email, 320, true)?;
        if !self.email.contains('@') {
            return Err(Invalid::new("email", "has no '@'"));
        }
        check_text("username", &self.username, 256, true)?;
        for (field, v) in [
            ("name.firstname", &self.first_name),
            ("name.lastname", &self.last_name),
            ("address.city", &self.city),
            ("address.street", &self.street),
            ("address.zipcode", &self.zipcode),
            ("phone", &self.phone),
        ] {
            check_text(field, v, MAX_TEXT_BYTES, false)?;
        }
        if let Some(c) = &self.country {
            check_text("country", c, MAX_TEXT_BYTES, false)?;
        }
        for (field, v) in [("lat", self.lat), ("long", self.long)] {
            if let Some(v) = v {
                let limit = if field == "lat" { 90.0 } else { 180.0 };
                if !v.is_finite() || v.abs() > limit {
                    return Err(Invalid::new(field, format!("{v} is out of range")));
                }
            }
        }
        Ok(())
    }
}

impl Product {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_id("product_id", self.product_id)?;
        check_text("title", &self.title, 1024, true)?;
        if self.price_cents < 0 {
            return Err(Invalid::new(
                "price",
                format!("negative: {}", cents_to_string(self.price_cents)),
            ));
        }
        check_text("category", &self.category, 256, true)?;
        check_text("description", &self.description, MAX_TEXT_BYTES, false)?;
        check_text("image", &self.image, MAX_TEXT_BYTES, false)?;
        if !self.rating_rate.is_finite() || !(0.0..=5.0).contains(&self.rating_rate) {
            return Err(Invalid::new("rating.rate", "must be between 0 and 5"));
        }
        if self.rating_count < 0 {
            return Err(Invalid::new("rating.count", "must not be negative"));
        }
        Ok(())
    }
}

impl Order {
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), Invalid> {
        check_id("order_id", self.order_id)?;
        check_id("user_id", self.user_id)?;
        check_time("date", self.order_time, now)?;
        if self.order_total_cents < 0 {
            return Err(Invalid::new("order_total", "must not be negative"));
        }
        Ok(())
    }
}

/// Lines an order may have: `order_item_id` is `order_id * 1000 + line_no`.
pub const MAX_LINES: i64 = 999;

impl OrderItem {
    /// The line's id: deterministic from the order and the line's position, so a rerun or a
    /// replay gives the same id (`schema::ORDER_ITEMS` derives it with the same formula).
    /// `order_id <= MAX_ID` (2^52) keeps it within an i64.
    pub fn id(order_id: i64, line_no: i64) -> i64 {
        order_id
            .saturating_mul(MAX_LINES + 1)
            .saturating_add(line_no)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        check_id("order_id", self.order_id)?;
        if !(1..=MAX_LINES).contains(&self.line_no) {
            return Err(Invalid::new(
                "line",
                format!(
                    "line {} of an order with more than {MAX_LINES} lines",
                    self.line_no
                ),
            ));
        }
        check_id("product_id", self.product_id)?;
        if self.quantity <= 0 {
            return Err(Invalid::new(
                "quantity",
                format!("must be positive, got {}", self.quantity),
            ));
        }
        if self.quantity > 1_000_000 {
            return Err(Invalid::new(
                "quantity",
                format!("absurd: {}", self.quantity),
            ));
        }
        if self.unit_price_cents < 0 {
            return Err(Invalid::new("unit_price", "must not be negative"));
        }
        Ok(())
    }
}

/// Convert a decimal price (as FakeStore sends it) to cents, refusing NaN, infinities and
/// amounts beyond any real price.
pub fn price_to_cents(field: &str, price: f64) -> Result<i64, Invalid> {
    if !price.is_finite() {
        return Err(Invalid::new(field, "not a finite number"));
    }
    if price.abs() > 1e12 {
        return Err(Invalid::new(field, format!("absurd amount {price}")));
    }
    Ok((price * 100.0).round() as i64)
}

/// "12.30" for 1230; "-0.05" for -5.
pub fn cents_to_string(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn event() -> Event {
        Event {
            event_id: "e-1".into(),
            user_id: 1,
            product_id: 2,
            event_type: EventType::AddToCart,
            event_time: now(),
            ingestion_time: None,
            session_id: "s-1".into(),
            producer_time: None,
        }
    }

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        let err = "refund".parse::<EventType>().unwrap_err();
        assert_eq!(err.field, "event_type");
    }

    #[test]
    fn unknown_event_type_in_json_is_an_error_not_a_panic() {
        let bad = r#"{"event_id":"a","user_id":1,"product_id":1,"event_type":"refund","event_time":"2026-01-01T00:00:00Z","session_id":"s"}"#;
        assert!(serde_json::from_str::<Event>(bad).is_err());
    }

    #[test]
    fn event_validation_reasons() {
        event().validate(now()).unwrap();
        let mut e = event();
        e.user_id = 0;
        assert_eq!(e.validate(now()).unwrap_err().field, "user_id");
        let mut e = event();
        e.event_time = now() + Duration::days(3);
        assert_eq!(e.validate(now()).unwrap_err().field, "event_time");
        let mut e = event();
        e.event_time = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(e.validate(now()).unwrap_err().field, "event_time");
        let mut e = event();
        e.event_id = "x".repeat(1000);
        assert_eq!(e.validate(now()).unwrap_err().field, "event_id");
        let mut e = event();
        e.session_id = " ".into();
        assert_eq!(e.validate(now()).unwrap_err().field, "session_id");
    }

    #[test]
    fn negative_prices_and_quantities_are_refused() {
        let p = Product {
            product_id: 1,
            title: "t".into(),
            price_cents: -1,
            description: String::new(),
            category: "c".into(),
            image: String::new(),
            rating_rate: 4.0,
            rating_count: 1,
        };
        assert_eq!(p.validate().unwrap_err().field, "price");
        // Text the warehouse's VARCHAR(65535) cannot hold is this record's reason, not the
        // load's failure.
        let long = Product {
            price_cents: 1,
            description: "é".repeat(MAX_TEXT_BYTES / 2 + 1),
            ..p.clone()
        };
        assert_eq!(long.validate().unwrap_err().field, "description");
        let i = OrderItem {
            order_item_id: 1001,
            order_id: 1,
            line_no: 1,
            product_id: 1,
            quantity: -2,
            unit_price_cents: 100,
            line_total_cents: -200,
        };
        assert_eq!(i.validate().unwrap_err().field, "quantity");
    }

    #[test]
    fn cents() {
        assert_eq!(price_to_cents("p", 109.95).unwrap(), 10995);
        assert_eq!(price_to_cents("p", 0.1 + 0.2).unwrap(), 30);
        assert!(price_to_cents("p", f64::NAN).is_err());
        assert_eq!(cents_to_string(1230), "12.30");
        assert_eq!(cents_to_string(-5), "-0.05");
    }

    proptest! {
        #[test]
        fn validation_never_panics(
            id in any::<i64>(), uid in any::<i64>(), pid in any::<i64>(),
            secs in -100_000_000_000i64..100_000_000_000i64, s in ".{0,200}"
        ) {
            let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(now());
            let e = Event { event_id: s.clone(), user_id: uid, product_id: pid,
                event_type: EventType::Purchase, event_time: t, ingestion_time: None, session_id: s,
                producer_time: None };
            let _ = e.validate(now());
            let _ = price_to_cents("p", id as f64 / 7.0);
        }
    }
}
