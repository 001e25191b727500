//! Entry points for the cargo-fuzz targets in `fuzz/` and for their regression tests: each takes
//! arbitrary bytes through a parser the pipeline exposes to outside input and must return, never
//! panic. Results are discarded; only the absence of a crash is checked.

use std::collections::HashMap;

use crate::config::{Config, StreamConfig};
use crate::stream::consumer::Processor;
use crate::stream::Record;

/// A stream record: JSON parsing, validation against its arrival time, dedup and watermarks.
pub fn event(data: &[u8]) {
    let mut p = Processor::new(&StreamConfig::default());
    // Each line a record, as a file ingested with `ingest events` is fed.
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let r = Record {
            seq: i as u64 + 1,
            arrival_ms: 1_790_000_000_000,
            data: bytes::Bytes::copy_from_slice(line),
        };
        let _ = p.classify("shard-0000", &r);
    }
}

/// FakeStore payloads: /products, /users and /carts bodies as the stage step parses them.
pub fn fakestore(data: &[u8]) {
    let _ = crate::batch::stage::stage_products(data);
    let _ = crate::batch::stage::stage_users(data);
    let prices: HashMap<i64, i64> = (1..=20).map(|i| (i, i * 100)).collect();
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let _ = crate::batch::stage::stage_carts(data, &prices, now);
}

/// The TOML config, with its validation.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, "fuzz.toml");
    }
}
