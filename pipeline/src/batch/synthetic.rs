//! The offline batch source: FakeStore-shaped products, users and carts, a pure function of
//! (seed, scale, pull window). The same inputs give byte-identical bodies, so a rerun lands
//! nothing new (duplicate files by hash). Scale 1 is 20 products, 10 users, 40 carts.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

const CATEGORIES: [&str; 4] = [
    "electronics",
    "jewelery",
    "men's clothing",
    "women's clothing",
];
const FIRST: [&str; 8] = [
    "john", "david", "kevin", "don", "derek", "david", "miriam", "william",
];
const LAST: [&str; 8] = [
    "doe", "morrison", "ryan", "romer", "powell", "russell", "hollis", "hopkins",
];
const CITIES: [&str; 6] = [
    "kilcoole",
    "cullman",
    "san antonio",
    "el paso",
    "fresno",
    "mesa",
];

/// Lines a synthetic cart has at most (config validation counts on it: 4 per cart, 40 carts
/// per scale).
pub const MAX_LINES_PER_CART: u32 = 4;

/// Days the synthetic carts span, from `FIRST_DAY`.
const SPAN_DAYS: i64 = 330;

/// The first day of synthetic carts: fixed, so bodies never depend on the clock.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// A seeded FakeStore look-alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSource {
    pub seed: u64,
    pub scale: u32,
}

impl SyntheticSource {
    pub fn new(seed: u64, scale: u32) -> SyntheticSource {
        SyntheticSource {
            seed,
            scale: scale.max(1),
        }
    }

    pub fn product_count(&self) -> u64 {
        20 * u64::from(self.scale)
    }

    pub fn user_count(&self) -> u64 {
        10 * u64::from(self.scale)
    }

    pub fn cart_count(&self) -> u64 {
        40 * u64::from(self.scale)
    }

    /// One RNG per entity, so adding carts never changes the products.
    fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.seed);
        r.set_stream(stream);
        r
    }

    /// `/products` as FakeStore returns it.
    pub fn products(&self) -> Vec<u8> {
        let mut rng = self.rng(1);
        let items: Vec<Value> = (1..=self.product_count())
            .map(|id| {
                let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
                let cents: i64 = rng.random_range(199..=99_999);
                json!({
                    "id": id,
                    "title": format!("{category} item {id}"),
                    "price": cents as f64 / 100.0,
                    "description": format!("A synthetic {category} product."),
                    "category": category,
                    "image": format!("https://fakestoreapi.com/img/{id}.jpg"),
                    "rating": {"rate": f64::from(rng.random_range(10..=50u32)) / 10.0,
                               "count": rng.random_range(0..=700u32)}
                })
            })
            .collect();
        to_body(&items)
    }

    /// `/users` as FakeStore returns it (passwords included, as the real API does).
    pub fn users(&self) -> Vec<u8> {
        let mut rng = self.rng(2);
        let items: Vec<Value> = (1..=self.user_count())
            .map(|id| {
                let first = FIRST[rng.random_range(0..FIRST.len())];
                let last = LAST[rng.random_range(0..LAST.len())];
                let city = CITIES[rng.random_range(0..CITIES.len())];
                json!({
                    "id": id,
                    "email": format!("{first}.{last}{id}@example.com"),
                    "username": format!("{first}{id}"),
                    "password": format!("pw-{:08x}", rng.random::<u32>()),
                    "name": {"firstname": first, "lastname": last},
                    "address": {
                        "city": city,
                        // FakeStore has no country; the synthetic source fills it (the one
                        // Irish town among its cities).
                        "country": if city == "kilcoole" { "IE" } else { "US" },
                        "street": "main street",
                        "number": rng.random_range(1..=9999u32),
                        "zipcode": format!("{:05}", rng.random_range(10000..=99999u32)),
                        "geolocation": {"lat": format!("{:.4}", rng.random_range(-60.0..60.0f64)),
                                        "long": format!("{:.4}", rng.random_range(-170.0..170.0f64))}
                    },
                    "phone": format!("1-570-236-{:04}", rng.random_range(0..=9999u32)),
                    "__v": 0
                })
            })
            .collect();
        to_body(&items)
    }

    /// `/carts`, filtered to `[start, end]` (inclusive days) like FakeStore's startdate/enddate.
    pub fn carts(&self, start: Option<NaiveDate>, end: Option<NaiveDate>) -> Vec<u8> {
        let mut rng = self.rng(3);
        let base = Utc.from_utc_datetime(&first_day().and_hms_opt(0, 0, 0).unwrap_or_default());
        let mut items = Vec::new();
        for id in 1..=self.cart_count() {
            let at = base + Duration::seconds(rng.random_range(0..SPAN_DAYS * 86_400));
            let user = rng.random_range(1..=self.user_count());
            let lines = rng.random_range(1..=MAX_LINES_PER_CART);
            let products: Vec<Value> = (0..lines)
                .map(|_| {
                    json!({"productId": rng.random_range(1..=self.product_count()),
                           "quantity": rng.random_range(1..=5u32)})
                })
                .collect();
            let day = at.date_naive();
            if start.is_some_and(|s| day < s) || end.is_some_and(|e| day > e) {
                continue;
            }
            items.push(json!({
                "id": id,
                "userId": user,
                "date": at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "products": products,
                "__v": 0
            }));
        }
        to_body(&items)
    }
}

fn to_body(items: &[Value]) -> Vec<u8> {
    // serde_json never fails to serialise a Value.
    serde_json::to_vec(items).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let a = SyntheticSource::new(42, 2);
        let b = SyntheticSource::new(42, 2);
        assert_eq!(a.products(), b.products());
        assert_eq!(a.users(), b.users());
        assert_eq!(a.carts(None, None), b.carts(None, None));
        assert_ne!(a.products(), SyntheticSource::new(43, 2).products());
        let products: Vec<Value> = serde_json::from_slice(&a.products()).unwrap();
        assert_eq!(products.len(), 40);
        let carts: Vec<Value> = serde_json::from_slice(&a.carts(None, None)).unwrap();
        assert_eq!(carts.len(), 80);
    }

    #[test]
    fn window_filters_carts() {
        let s = SyntheticSource::new(7, 1);
        let from = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let to = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let carts: Vec<Value> = serde_json::from_slice(&s.carts(Some(from), Some(to))).unwrap();
        let all: Vec<Value> = serde_json::from_slice(&s.carts(None, None)).unwrap();
        assert!(carts.len() < all.len());
        for c in carts {
            let d = &c["date"].as_str().unwrap()[..10];
            assert!(("2026-03-01"..="2026-03-31").contains(&d), "{d}");
        }
    }
}
