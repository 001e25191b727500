//! The zone key layout. Every key is a pure function of what was read (source, entity, pull
//! window or stream position, content hash), never of wall-clock time or a random id, so a
//! rerun or replay writes the same keys (ARCHITECTURE.md, rule 1).
//!
//! ```text
//! raw/<source>/<entity>/window=<start>_<end>/<entity>-<sha256[..16]>.json     batch responses
//! raw/stream/events/shard=<shard>/seg-<first seq>-<last seq>.ndjson            stream segments
//! raw/file/events/<sha256[..16]>.ndjson                                       `ingest events FILE`
//! staging/<entity>/<partition>/<name of the RAW object it came from>.ndjson    typed rows
//! quarantine/<source>/<entity>/<partition>/<name>.ndjson                      refused rows + reason
//! curated/<model>/dt=<YYYY-MM-DD>/<model>.parquet                             analytics tables
//! ```

use chrono::NaiveDate;

use crate::error::Result;
use crate::store::{ObjectStat, ObjectStore};

pub use ecom_model::zone::{Zone, ZoneStats};

/// The first 16 hex digits of a SHA-256: 64 bits, ample to tell responses of one window apart.
fn short(sha256_hex: &str) -> &str {
    sha256_hex.get(..16).unwrap_or(sha256_hex)
}

/// The partition name of a pull window; an open end is written as `all`.
pub fn window_partition(start: Option<NaiveDate>, end: Option<NaiveDate>) -> String {
    let d = |d: Option<NaiveDate>| d.map_or_else(|| "all".to_string(), |d| d.to_string());
    format!("window={}_{}", d(start), d(end))
}

/// RAW key of one batch API response.
pub fn raw_batch_key(source: &str, entity: &str, window: &str, sha256_hex: &str) -> String {
    format!(
        "raw/{source}/{entity}/{window}/{entity}-{}.json",
        short(sha256_hex)
    )
}

/// RAW key of one stream segment: shard and first/last sequence number, zero-padded so keys
/// sort in stream order.
pub fn raw_segment_key(shard: &str, first_seq: u64, last_seq: u64) -> String {
    format!("raw/stream/events/shard={shard}/seg-{first_seq:020}-{last_seq:020}.ndjson")
}

/// RAW key of an events file fed through `ingest events`.
pub fn raw_file_key(sha256_hex: &str) -> String {
    format!("raw/file/events/{}.ndjson", short(sha256_hex))
}

/// The stream state (dedup window and watermarks) committed as generation `n`: named by the
/// generation that `ops.stream_state` points to, so an object written for a load that did not
/// commit is never read. Outside the zones: it is the consumer's state, not data.
pub fn stream_state_key(generation: u64) -> String {
    format!("state/stream/gen-{generation:020}.bin")
}

/// A leased instance's stream-state object: its run (worker and start) keeps two runs of
/// one worker name apart, since shards still point at objects of an earlier run.
pub fn fleet_state_key(run: &str, generation: u64) -> String {
    format!("state/stream/fleet/{run}/gen-{generation:020}.bin")
}

/// (first, last) sequence numbers from a stream segment key (`.../seg-<first>-<last>.ndjson`,
/// in any zone).
pub fn segment_range(key: &str) -> Option<(u64, u64)> {
    let name = key
        .rsplit('/')
        .next()?
        .strip_prefix("seg-")?
        .strip_suffix(".ndjson")?;
    let (a, b) = name.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The STAGING key derived from a RAW key: same partition and name, `.ndjson`.
/// `raw/<source>/<entity>/<rest>` becomes `staging/<entity>/<rest>`.
pub fn staging_key_for(raw_key: &str, entity: &str) -> Option<String> {
    let rest = raw_key.strip_prefix("raw/")?;
    let (_source, rest) = rest.split_once('/')?;
    let (_entity, rest) = rest.split_once('/')?;
    Some(format!("staging/{entity}/{}", with_ext(rest, "ndjson")))
}

/// The late-buffer key derived from a RAW stream segment key: `late/events/<rest>`.
pub fn late_key_for(raw_key: &str) -> Option<String> {
    staging_key_for(raw_key, "events").map(|k| format!("late/{}", &k["staging/".len()..]))
}

/// The quarantine key derived from a RAW key.
pub fn quarantine_key_for(raw_key: &str, entity: &str) -> Option<String> {
    let rest = raw_key.strip_prefix("raw/")?;
    let (source, rest) = rest.split_once('/')?;
    let (_entity, rest) = rest.split_once('/')?;
    Some(format!(
        "quarantine/{source}/{entity}/{}",
        with_ext(rest, "ndjson")
    ))
}

/// The CURATED key of one model partition.
pub fn curated_key(model: &str, day: NaiveDate) -> String {
    format!("curated/{model}/dt={day}/{model}.parquet")
}

/// The day of a CURATED key (`curated_key`'s inverse for the day).
pub fn curated_day(key: &str) -> Option<NaiveDate> {
    let dt = key
        .strip_prefix("curated/")?
        .split('/')
        .nth(1)?
        .strip_prefix("dt=")?;
    NaiveDate::parse_from_str(dt, "%Y-%m-%d").ok()
}

/// Replace the extension of the last path segment (or add one).
fn with_ext(path: &str, ext: &str) -> String {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, path),
    };
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    match dir {
        Some(d) => format!("{d}/{stem}.{ext}"),
        None => format!("{stem}.{ext}"),
    }
}

/// Summarise each zone of a store.
pub async fn zone_stats(store: &dyn ObjectStore) -> Result<Vec<ZoneStats>> {
    Ok(summarise_all(&zone_listing(store).await?))
}

/// Every object of every zone, from the listing alone (no checksums: on S3 a request per
/// 1,000 keys, not a HEAD per object).
pub async fn zone_listing(store: &dyn ObjectStore) -> Result<Vec<(Zone, Vec<ObjectStat>)>> {
    let mut out = Vec::with_capacity(Zone::ALL.len());
    for zone in Zone::ALL {
        out.push((zone, store.list_stat(zone.prefix()).await?));
    }
    Ok(out)
}

pub fn summarise_all(listing: &[(Zone, Vec<ObjectStat>)]) -> Vec<ZoneStats> {
    listing.iter().map(|(z, o)| summarise(*z, o)).collect()
}

fn summarise(zone: Zone, objects: &[ObjectStat]) -> ZoneStats {
    ZoneStats {
        zone: Some(zone),
        objects: objects.len() as u64,
        bytes: objects.iter().map(|o| o.size).sum(),
        last_write: objects.iter().filter_map(|o| o.last_modified).max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::validate_key;

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn batch_keys_are_deterministic_and_valid() {
        let d = NaiveDate::from_ymd_opt(2026, 1, 2);
        let w = window_partition(d, None);
        assert_eq!(w, "window=2026-01-02_all");
        let k = raw_batch_key("fakestore", "carts", &w, SHA);
        assert_eq!(
            k,
            "raw/fakestore/carts/window=2026-01-02_all/carts-ba7816bf8f01cfea.json"
        );
        validate_key(&k).unwrap();
        let s = staging_key_for(&k, "orders").unwrap();
        assert_eq!(
            s,
            "staging/orders/window=2026-01-02_all/carts-ba7816bf8f01cfea.ndjson"
        );
        validate_key(&s).unwrap();
        let q = quarantine_key_for(&k, "orders").unwrap();
        assert_eq!(
            q,
            "quarantine/fakestore/orders/window=2026-01-02_all/carts-ba7816bf8f01cfea.ndjson"
        );
    }

    #[test]
    fn segment_keys_sort_in_stream_order() {
        let a = raw_segment_key("shard-0001", 9, 99);
        let b = raw_segment_key("shard-0001", 100, 1000);
        assert!(a < b);
        validate_key(&a).unwrap();
        validate_key(&raw_file_key(SHA)).unwrap();
        validate_key(&curated_key(
            "fct_orders",
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        ))
        .unwrap();
    }
}
