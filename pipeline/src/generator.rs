//! The clickstream generator: sessions walking the funnel product_view -> add_to_cart ->
//! checkout -> purchase over the batch catalog's users and products, as NDJSON records with
//! their partition key (the session). Deterministic for a seed and a start; fault knobs resend
//! events (duplicates), shift event_time (disorder), date events far back (late), and break
//! records (malformed JSON, unknown types, bad ids).
//!
//! Event and session ids carry a run tag that no other generator has (its start time, process
//! id and 16 random bits), so two processes, or two `--once` runs, never mint the same id: a
//! MERGE on event_id would otherwise take the second run's events for resends of the first's.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::GeneratorConfig;
use crate::domain::EventType;

/// A seeded generator; `next_batch` continues where the last left off.
#[derive(Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: ChaCha8Rng,
    users: u64,
    products: u64,
    sessions: u64,
    events: u64,
    /// Unique to this generator: part of every event and session id.
    run_tag: String,
    /// Records kept to resend as duplicates.
    recent: Vec<(String, Bytes)>,
}

/// What a batch contains, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub records: u64,
    pub duplicates: u64,
    pub late: u64,
    pub malformed: u64,
}

impl Generator {
    /// Users and products are the batch catalog's id ranges (1..=n).
    pub fn new(cfg: &GeneratorConfig, users: u64, products: u64) -> Generator {
        Generator {
            cfg: cfg.clone(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            users: users.max(1),
            products: products.max(1),
            sessions: 0,
            events: 0,
            run_tag: unique_run_tag(),
            recent: Vec::new(),
        }
    }

    /// The same ids on every run (tests that compare two generators).
    pub fn with_run_tag(mut self, tag: &str) -> Generator {
        self.run_tag = tag.to_string();
        self
    }

    /// About `n` records whose event times spread over `[start, end)`.
    pub fn next_batch(
        &mut self,
        n: u64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> (Vec<(String, Bytes)>, BatchCounts) {
        let mut out = Vec::with_capacity(n as usize + n as usize / 10);
        let mut counts = BatchCounts::default();
        let span_ms = (end - start).num_milliseconds().max(1);
        while (out.len() as u64) < n {
            self.sessions += 1;
            let session = format!("s-{:x}-{}-{}", self.cfg.seed, self.run_tag, self.sessions);
            let user = self.rng.random_range(1..=self.users);
            let product = self.rng.random_range(1..=self.products);
            let mut steps = vec![EventType::ProductView; self.rng.random_range(1..=3)];
            for (next, p) in [
                (EventType::AddToCart, self.cfg.view_to_cart),
                (EventType::Checkout, self.cfg.cart_to_checkout),
                (EventType::Purchase, self.cfg.checkout_to_purchase),
            ] {
                if !self.rng.random_bool(p.clamp(0.0, 1.0)) {
                    break;
                }
                steps.push(next);
            }
            // Time moves on through the batch (a stream, not a shuffle): sessions start in
            // order across the span, a minute of jitter apart.
            let progress = out.len() as i64 * span_ms / n.max(1) as i64;
            let mut t = start.timestamp_millis() + progress + self.rng.random_range(0..60_000);
            for step in steps {
                t += self.rng.random_range(1_000..30_000);
                let mut event_ms = t;
                if self.cfg.disorder_ms > 0 {
                    event_ms -= self.rng.random_range(0..=self.cfg.disorder_ms) as i64;
                }
                if self.rng.random_bool(self.cfg.late_rate.clamp(0.0, 1.0)) {
                    event_ms -= self.cfg.late_by_secs as i64 * 1000;
                    counts.late += 1;
                }
                self.events += 1;
                let id = format!("e-{:x}-{}-{:x}", self.cfg.seed, self.run_tag, self.events);
                let record = if self
                    .rng
                    .random_bool(self.cfg.malformed_rate.clamp(0.0, 1.0))
                {
                    counts.malformed += 1;
                    self.malformed(&id, &session)
                } else {
                    let when = DateTime::<Utc>::from_timestamp_millis(event_ms).unwrap_or(start);
                    format!(
                        r#"{{"event_id":"{id}","user_id":{user},"product_id":{product},"event_type":"{}","event_time":"{}","session_id":"{session}"}}"#,
                        step.as_str(),
                        when.format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    )
                };
                let rec = (session.clone(), Bytes::from(record));
                if self
                    .rng
                    .random_bool(self.cfg.duplicate_rate.clamp(0.0, 1.0))
                {
                    self.recent.push(rec.clone());
                }
                out.push(rec);
                // Resend a kept record a little later in the stream.
                if self.recent.len() > 8 || (!self.recent.is_empty() && self.rng.random_bool(0.3)) {
                    let i = self.rng.random_range(0..self.recent.len());
                    out.push(self.recent.swap_remove(i));
                    counts.duplicates += 1;
                }
            }
        }
        counts.records = out.len() as u64;
        (out, counts)
    }

    fn malformed(&mut self, id: &str, session: &str) -> String {
        match self.rng.random_range(0..4) {
            0 => format!(r#"{{"event_id":"{id}","user_id":"#),
            1 => format!(
                r#"{{"event_id":"{id}","user_id":1,"product_id":1,"event_type":"wishlist","event_time":"2026-01-01T00:00:00Z","session_id":"{session}"}}"#
            ),
            2 => format!(
                r#"{{"event_id":"{id}","user_id":-4,"product_id":1,"event_type":"checkout","event_time":"2026-01-01T00:00:00Z","session_id":"{session}"}}"#
            ),
            _ => format!(
                r#"{{"event_id":"{id}","user_id":1,"product_id":1,"event_type":"purchase","event_time":"1970-01-01T00:00:00Z","session_id":"{session}"}}"#
            ),
        }
    }
}

/// A tag no other generator has: its start time (ms, base 36), the process id, a counter of
/// the generators this process made, and 16 random bits (hex), e.g. `mhx2k9c01f3a0.9c4e`.
pub fn unique_run_tag() -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ms = Utc::now().timestamp_millis().max(0) as u64;
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(ms % 36) as usize]);
        ms /= 36;
        if ms == 0 {
            break;
        }
    }
    digits.reverse();
    format!(
        "{}{:x}{made:x}.{:04x}",
        String::from_utf8_lossy(&digits),
        std::process::id(),
        rand::random::<u16>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_records_and_the_funnel_narrows() {
        let cfg = GeneratorConfig::default();
        let start = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).unwrap();
        let end = start + chrono::Duration::hours(1);
        let (a, ca) = Generator::new(&cfg, 10, 20)
            .with_run_tag("t")
            .next_batch(5000, start, end);
        let (b, _) = Generator::new(&cfg, 10, 20)
            .with_run_tag("t")
            .next_batch(5000, start, end);
        assert_eq!(a, b);
        // Two runs never share an id.
        let (c, _) = Generator::new(&cfg, 10, 20).next_batch(100, start, end);
        let (d, _) = Generator::new(&cfg, 10, 20).next_batch(100, start, end);
        assert_ne!(c[0], d[0]);
        assert!(
            ca.duplicates > 0 && ca.late > 0 && ca.malformed > 0,
            "{ca:?}"
        );
        let count = |t: &str| {
            a.iter()
                .filter(|(_, r)| r.windows(t.len()).any(|w| w == t.as_bytes()))
                .count()
        };
        let (views, carts, buys) = (
            count("product_view"),
            count("add_to_cart"),
            count("\"purchase\""),
        );
        assert!(
            views > carts && carts > buys && buys > 0,
            "{views} {carts} {buys}"
        );
    }
}
