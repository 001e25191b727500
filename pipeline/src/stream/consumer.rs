//! The stream consumer: reads each shard after its committed checkpoint, cuts the records into
//! segments by count, and for each segment writes
//!
//! - RAW `raw/stream/events/shard=<s>/seg-<first>-<last>.ndjson`: the records as received, one a
//!   line (put-if-absent: the same range again is the same file);
//! - STAGING `staging/events/...`: typed events seen for the first time in the dedup window and
//!   not late, with `ingestion_time` = the record's arrival time in the log;
//! - the late buffer `late/events/...`: events behind the watermark by more than the allowed
//!   lateness (loaded by `backfill`);
//! - quarantine `quarantine/stream/events/...`: records that are not valid events, each with its
//!   reason;
//!
//! then loads the STAGING file into the warehouse with the shard's checkpoint, the segment's
//! counts and the stream state in the same transaction. Every record is staged, a duplicate,
//! late or quarantined: none is lost.
//!
//! The stream state (dedup window and watermarks) commits with the data: a segment is judged on
//! the live state, the state after it is written as `state/stream/gen-<n>.bin` before the load,
//! and the load's transaction points `ops.stream_state` at generation n. A segment that fails
//! anywhere (a store write, a full disk, a refused statement) puts the state back to the last
//! committed generation, so its records are judged again, the same way, on the retry. A new
//! process starts from the committed generation: one process, ten `--once` runs or a run with
//! failures classify every record alike.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Record, StreamLog};
use crate::batch::stage::{to_ndjson, Quarantined};
use crate::config::StreamConfig;
use crate::dedup::ShardWindows;
use crate::domain::Event;
use crate::error::{Error, Result};
use crate::ledger::StreamCommit;
use crate::store::{sha256_hex, ObjectStore};
use crate::warehouse::{self, StagedFile, Warehouse};
use crate::watermark::{WatermarkStatus, Watermarks};
use crate::zones;

pub use crate::ledger::SegmentCounts;
pub use ecom_model::report::ReplayReport;
pub use ecom_model::stream::StreamStatus;

/// The typed event as it arrives: the shape is checked here, the values by `Event::validate`.
/// Fields it does not know are ignored (a producer may add one; RAW keeps them as received).
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(deserialize_with = "id_text")]
    event_id: String,
    user_id: i64,
    product_id: i64,
    event_type: String,
    event_time: DateTime<Utc>,
    session_id: String,
    // `ingestion_time` is the log's arrival time, whatever a producer says: a producer's own
    // value is kept as `producer_time` when it reads as a time, and never refuses a record
    // (RAW keeps it as received either way).
    #[serde(default, rename = "ingestion_time", deserialize_with = "lenient_time")]
    producer_time: Option<DateTime<Utc>>,
}

/// A producer's time if it is an RFC 3339 string; anything else is no time.
fn lenient_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<DateTime<Utc>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<DateTime<Utc>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("anything")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|t| t.with_timezone(&Utc)))
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// An event_id as text: producers send strings or integers (the shared workload does).
fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> std::result::Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

/// How one record was judged.
#[derive(Debug)]
enum Verdict {
    Staged(Event),
    Duplicate,
    Late(Event),
    Quarantined(Quarantined),
}

/// The fields of an event, what each must be, and whether it is required: to say which field
/// of a refused record is wrong and what was expected.
const FIELDS: [(&str, &str, bool); 6] = [
    ("event_id", "a string or an integer", true),
    ("user_id", "an integer", true),
    ("product_id", "an integer", true),
    ("event_type", "a string", true),
    (
        "event_time",
        "an RFC 3339 timestamp with a time zone, e.g. \"2026-11-26T08:00:00Z\"",
        true,
    ),
    ("session_id", "a string", true),
];

/// Why a record that failed the typed parse is not an event: the first field that is missing or
/// of the wrong type, with what was expected (the slow path: only refused records come here).
fn diagnose(data: &[u8], err: &serde_json::Error) -> (String, String) {
    let map = match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(other) => {
            return (
                "record".into(),
                format!("not a JSON object but {}", json_kind(&other)),
            )
        }
        Err(e) => return ("record".into(), format!("not JSON: {e}")),
    };
    for (field, expected, required) in FIELDS {
        let ok = match map.get(field) {
            None | Some(serde_json::Value::Null) => !required,
            Some(v) => match field {
                "event_id" => v.is_string() || v.is_i64() || v.is_u64(),
                "user_id" | "product_id" => v.is_i64(),
                "event_time" => v
                    .as_str()
                    .is_some_and(|t| DateTime::parse_from_rfc3339(t).is_ok()),
                _ => v.is_string(),
            },
        };
        if !ok {
            let got = match map.get(field) {
                None => "missing".to_string(),
                Some(v) => {
                    let text = v.to_string();
                    let cut: String = text.chars().take(80).collect();
                    let more = if cut.len() < text.len() { "…" } else { "" };
                    format!("{} {cut}{more}", json_kind(v))
                }
            };
            return (field.into(), format!("{got}; expected {expected}"));
        }
    }
    ("record".into(), format!("not an event: {err}"))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The settings the stream state is rebuilt under.
#[derive(Debug, Clone, Copy)]
struct StateSettings {
    window_secs: u64,
    max_ids: usize,
    out_of_order_ms: u64,
    lateness_ms: u64,
    idle_ms: u64,
    max_future_skew_ms: i64,
    /// Segments loaded in one warehouse transaction (`stream.segments_per_commit`).
    segments_per_commit: usize,
}

/// The first bytes of a stream-state object, and its format version.
const STATE_MAGIC: &[u8; 8] = b"ECOMST02";
/// Dedup generations per window.
const DEDUP_SLICES: usize = 12;

impl StateSettings {
    fn empty(&self) -> (ShardWindows, Watermarks) {
        (
            ShardWindows::new(self.window_secs, DEDUP_SLICES, self.max_ids),
            Watermarks::new(self.out_of_order_ms, self.lateness_ms, self.idle_ms),
        )
    }

    fn decode(&self, bytes: &[u8]) -> Option<(ShardWindows, Watermarks)> {
        let mut rest = bytes.strip_prefix(STATE_MAGIC)?;
        let dedup = ShardWindows::decode(self.window_secs, DEDUP_SLICES, self.max_ids, &mut rest)?;
        let (_, mut marks) = self.empty();
        marks.decode_into(&mut rest).then_some(())?;
        rest.is_empty().then_some((dedup, marks))
    }
}

/// The committed stream state: its generation, its bytes, and whether a micro-batch was being
/// judged in it (so the end of the batch has a thaw to commit).
#[derive(Debug)]
struct Committed {
    generation: u64,
    bytes: Bytes,
    frozen: bool,
}

/// Per shard, where staged segments ended (last sequence numbers): every boundary, so a retry
/// cuts each segment again where it was cut, short reads included.
type Cuts = BTreeMap<String, std::collections::BTreeSet<u64>>;

/// Segments staged together, and where each shard's segments among them ended (their retry
/// cuts if their load fails).
#[derive(Debug)]
struct Group {
    segments: Vec<Pending>,
    cuts: Cuts,
}

/// A group whose load was sent: what its commit makes live.
#[derive(Debug)]
struct Prepared {
    generation: u64,
    state: Option<Bytes>,
    counts: Vec<SegmentCounts>,
    cuts: Cuts,
    started: std::time::Instant,
}

/// Where a drain is: the checkpoints as staged so far, the rounds, the segments read.
struct Reader {
    checkpoints: BTreeMap<String, u64>,
    rounds: Rounds,
    segment_records: usize,
    max_segments: Option<usize>,
    segments: usize,
}

/// Shards in rounds: each round visits the shards that still had records in the last.
#[derive(Debug)]
struct Rounds {
    active: std::collections::VecDeque<String>,
    still: Vec<String>,
}

impl Rounds {
    fn new(shards: Vec<String>) -> Rounds {
        Rounds {
            active: shards.into(),
            still: Vec::new(),
        }
    }

    /// The next shard to read, starting the next round when this one is done.
    fn next(&mut self) -> Option<String> {
        if self.active.is_empty() {
            self.active = std::mem::take(&mut self.still).into();
        }
        self.active.pop_front()
    }

    /// `shard` had records: it is visited again next round.
    fn keep(&mut self, shard: String) {
        self.still.push(shard);
    }
}

/// A segment judged and written to the zones, waiting for its group's load.
#[derive(Debug)]
struct Pending {
    file: StagedFile,
    counts: SegmentCounts,
}

/// Dedup and watermark state, carried from segment to segment and committed with each load.
#[derive(Debug)]
pub struct Processor {
    dedup: ShardWindows,
    watermarks: Watermarks,
    totals: SegmentCounts,
    segments: u64,
    settings: StateSettings,
    /// The last committed state, what a failed segment returns to.
    committed: Option<Committed>,
    /// Whether the committed state has been read from the warehouse and store.
    restored: bool,
    /// Per shard, where segments staged but not committed ended: a retry cuts at the same
    /// records, so the RAW and STAGING objects they wrote are written again, not left beside
    /// differently cut copies. A cut is dropped once a commit passes it.
    retry_cut: Cuts,
    /// Shards whose RAW segments past the checkpoint this process has read as retry cuts (once
    /// per shard: an earlier process's cuts died with it).
    cuts_read: std::collections::BTreeSet<String>,
    /// With shard leases: this instance and the shards it owns.
    fleet: Option<Fleet>,
}

/// A leased instance's side of the state: each shard's dedup window and watermark live in the
/// state object its `ops.shard_owners` row names, so a shard moves between instances with them.
#[derive(Debug)]
struct Fleet {
    worker: String,
    /// Unique to this process: names its state objects (never another run's).
    run: String,
    /// Owned shards and the token (lease counter) each was taken at.
    owned: BTreeMap<String, u64>,
    /// State objects this instance superseded: deleted once no shard's row names them (a
    /// shard taken from this instance names one until its new owner commits).
    stale: Vec<String>,
}

/// A record judged by the rules that do not depend on the stream's state: its shape and types,
/// its values (`Event::validate` at its arrival), and how far ahead of its arrival its
/// event_time is. The event (with `ingestion_time` = the arrival), or the field and reason it
/// is refused for. `reprocess` judges quarantined records again with it.
pub fn typed_event(
    data: &[u8],
    arrival_ms: i64,
    max_future_skew_ms: i64,
) -> std::result::Result<Event, (String, String)> {
    let arrival = DateTime::<Utc>::from_timestamp_millis(arrival_ms).unwrap_or_default();
    let inc: Incoming = serde_json::from_slice(data).map_err(|e| diagnose(data, &e))?;
    let event_type = inc
        .event_type
        .parse()
        .map_err(|e| ("event_type".to_string(), format!("{e}")))?;
    let event = Event {
        event_id: inc.event_id,
        user_id: inc.user_id,
        product_id: inc.product_id,
        event_type,
        event_time: inc.event_time,
        // The log's arrival time, not the clock now: a replay stages the same rows.
        ingestion_time: Some(arrival),
        session_id: inc.session_id,
        producer_time: inc.producer_time,
    };
    event
        .validate(arrival)
        .map_err(|e| (e.field.to_string(), e.reason))?;
    // An event from the future would hold every later event behind its watermark.
    let ahead = event
        .event_time
        .timestamp_millis()
        .saturating_sub(arrival_ms);
    if ahead > max_future_skew_ms {
        return Err((
            "event_time".into(),
            format!(
                "{} is {}s ahead of its arrival {} (more than \
                 stream.watermark.max_future_skew_secs = {})",
                event
                    .event_time
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ahead / 1000,
                arrival.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                max_future_skew_ms / 1000
            ),
        ));
    }
    Ok(event)
}

fn quarantined(field: &str, reason: String, data: &[u8]) -> Verdict {
    // Keep the record as text (lossy for non-UTF-8), capped so a huge payload stays readable.
    let text = String::from_utf8_lossy(&data[..data.len().min(4096)]).into_owned();
    Verdict::Quarantined(Quarantined {
        field: field.to_string(),
        reason,
        record: serde_json::Value::String(text),
    })
}

impl Processor {
    pub fn new(cfg: &StreamConfig) -> Processor {
        let w = &cfg.watermark;
        let settings = StateSettings {
            window_secs: cfg.dedup.window_secs,
            // The bound is over all shards: each shard's window holds its share.
            max_ids: usize::try_from(cfg.dedup.max_ids / u64::from(cfg.shards.max(1)))
                .unwrap_or(usize::MAX),
            out_of_order_ms: w.out_of_orderness_ms,
            lateness_ms: w.allowed_lateness_secs.saturating_mul(1000),
            idle_ms: w.idle_timeout_secs.saturating_mul(1000),
            max_future_skew_ms: i64::try_from(w.max_future_skew_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            segments_per_commit: usize::try_from(cfg.segments_per_commit).unwrap_or(1),
        };
        let (dedup, watermarks) = settings.empty();
        Processor {
            dedup,
            watermarks,
            totals: SegmentCounts::default(),
            segments: 0,
            settings,
            committed: None,
            restored: false,
            retry_cut: BTreeMap::new(),
            cuts_read: Default::default(),
            fleet: None,
        }
    }

    /// Judge only the shards a lease gives this instance (`own`), keeping each shard's state
    /// where its next owner finds it.
    pub fn lease_mode(&mut self, worker: &str) {
        self.fleet = Some(Fleet {
            worker: worker.to_string(),
            run: format!("{worker}-{}", crate::clock::now_ms().max(0)),
            owned: BTreeMap::new(),
            stale: Vec::new(),
        });
    }

    /// The shards owned now, with their tokens (None: no leases, every shard).
    pub fn owned(&self) -> Option<&BTreeMap<String, u64>> {
        self.fleet.as_ref().map(|f| &f.owned)
    }

    /// Own exactly `owned` (shard -> token) from the next drain: a shard taken is registered
    /// in the warehouse under its token first (older tokens are refused from then on: fencing),
    /// then its state is read where its last owner committed it; a shard gone is forgotten.
    /// The segments an earlier owner wrote past the checkpoint and never committed (it died)
    /// become retry cuts, so they are cut and written again the same, not left beside
    /// differently cut copies. Returns the shards whose take was refused, each with the newer
    /// token registered for it (not owned: the lease counter is behind the warehouse's).
    pub async fn own(
        &mut self,
        store: &dyn ObjectStore,
        wh: &dyn Warehouse,
        owned: &BTreeMap<String, u64>,
    ) -> Result<Vec<(String, u64)>> {
        let Some(mut f) = self.fleet.take() else {
            return Ok(Vec::new());
        };
        let gone: Vec<String> = f
            .owned
            .keys()
            .filter(|s| !owned.contains_key(*s))
            .cloned()
            .collect();
        let taken: Vec<(String, u64)> = owned
            .iter()
            .filter(|(s, t)| f.owned.get(*s) != Some(*t))
            .map(|(s, t)| (s.clone(), *t))
            .collect();
        if !gone.is_empty() || !taken.is_empty() {
            // Whatever happens below, the next drain reads the state of what it owns afresh.
            self.restored = false;
        }
        for s in gone {
            f.owned.remove(&s);
            self.forget(&s);
        }
        let mut refused = Vec::new();
        let result = async {
            // The checkpoints after the takes (a take waits for a commit in flight), read once.
            let mut committed: Option<BTreeMap<String, u64>> = None;
            for (s, token) in taken {
                f.owned.remove(&s);
                let sql = warehouse::schema::fence_take_sql(&s, &f.worker, token);
                if let Err(e) = wh.execute_tx(sql).await {
                    // Refused when a newer token is registered, or the same one to another
                    // owner (read back, not told by the error's text, which differs between
                    // engines); any other failure is one.
                    match registered_token(wh, &s).await {
                        Ok(Some((newer, owner)))
                            if newer > token || (newer == token && owner != f.worker) =>
                        {
                            tracing::warn!(shard = %s, token, registered = newer, "shard take refused: a newer lease is registered");
                            refused.push((s, newer));
                            continue;
                        }
                        _ => return Err(e),
                    }
                }
                if committed.is_none() {
                    committed = Some(checkpoints(wh).await?);
                }
                let checkpoint = committed.as_ref().and_then(|c| c.get(&s).copied());
                let cuts = uncommitted_cuts(store, &s, checkpoint).await?;
                if cuts.is_empty() {
                    self.retry_cut.remove(&s);
                } else {
                    self.retry_cut.insert(s.clone(), cuts);
                }
                f.owned.insert(s, token);
            }
            Ok(())
        }
        .await;
        self.fleet = Some(f);
        result.map(|()| refused)
    }

    /// RAW segments an earlier process wrote past a shard's checkpoint and never committed (it
    /// failed, then was replaced): their ends become the shard's retry cuts, so the same objects
    /// are written again instead of differently cut ones beside them. Once per shard and
    /// process; fleet takes do this in `own`.
    async fn read_uncommitted_cuts(
        &mut self,
        store: &dyn ObjectStore,
        shards: &[String],
        committed: &BTreeMap<String, u64>,
    ) -> Result<()> {
        if self.fleet.is_some() {
            return Ok(());
        }
        for shard in shards {
            if self.cuts_read.contains(shard) {
                continue;
            }
            let cuts = uncommitted_cuts(store, shard, committed.get(shard).copied()).await?;
            if !cuts.is_empty() {
                self.retry_cut
                    .entry(shard.clone())
                    .or_default()
                    .extend(cuts);
            }
            self.cuts_read.insert(shard.clone());
        }
        Ok(())
    }

    /// Under leases, before each drain reads the checkpoints: shards another instance has
    /// registered since are dropped, not read. Their new owner cuts from those checkpoints too,
    /// and the same cut here (judged by this instance's older state) would be written over the
    /// new owner's committed STAGING object before this load is refused by the fence. (Its
    /// lease coordinator learns of the loss at its next renewal, seconds later.)
    async fn drop_taken(&mut self, wh: &dyn Warehouse) -> Result<()> {
        let Some(f) = self.fleet.as_ref() else {
            return Ok(());
        };
        if f.owned.is_empty() {
            return Ok(());
        }
        let rows = wh.query(SHARD_OWNERS_SQL).await?;
        let mine = registered_here(&rows, f);
        let lost: Vec<String> = f
            .owned
            .keys()
            .filter(|s| !mine.contains_key(s.as_str()))
            .cloned()
            .collect();
        for s in lost {
            tracing::warn!(shard = %s, "shard registered to another lease: not read here");
            if let Some(f) = self.fleet.as_mut() {
                f.owned.remove(&s);
            }
            self.forget(&s);
        }
        Ok(())
    }

    /// A shard no longer this instance's: its state and cuts go.
    fn forget(&mut self, shard: &str) {
        self.dedup.take_shard(shard);
        self.watermarks.take_shard(shard);
        self.retry_cut.remove(shard);
    }

    /// Under leases: every owned shard's dedup window and watermark, from the state object
    /// its `ops.shard_owners` row names (a shard never committed under leases starts from the
    /// single-instance state, if there was one, else empty). A shard whose row names another
    /// owner or token was taken meanwhile: it is not owned any more, and not read.
    async fn restore_fleet(&mut self, store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<()> {
        let Some(mut f) = self.fleet.take() else {
            return Ok(());
        };
        let restored = self.read_fleet_state(store, wh, &mut f).await;
        self.fleet = Some(f);
        restored
    }

    async fn read_fleet_state(
        &mut self,
        store: &dyn ObjectStore,
        wh: &dyn Warehouse,
        f: &mut Fleet,
    ) -> Result<()> {
        let rows = wh.query(SHARD_OWNERS_SQL).await?;
        // An object of this run that any row names (its commit's reply may never have come,
        // and the shard may have moved on since): the next one is written past it, never over.
        let run_prefix = format!("state/stream/fleet/{}/gen-", f.run);
        let mut generation = self.committed.as_ref().map_or(0, |c| c.generation);
        for row in &rows {
            if let Some(g) = row
                .get(3)
                .and_then(|k| k.as_deref())
                .and_then(|k| k.strip_prefix(&run_prefix))
                .and_then(|g| g.strip_suffix(".bin"))
                .and_then(|g| g.parse::<u64>().ok())
            {
                generation = generation.max(g);
            }
        }
        let keys = registered_here(&rows, f);
        let lost: Vec<String> = f
            .owned
            .keys()
            .filter(|s| !keys.contains_key(*s))
            .cloned()
            .collect();
        for s in lost {
            tracing::warn!(shard = %s, "shard registered to another lease: not read here");
            f.owned.remove(&s);
        }
        let (mut dedup, mut marks) = self.settings.empty();
        let mut objects: BTreeMap<String, Option<(ShardWindows, Watermarks)>> = BTreeMap::new();
        let mut legacy: Option<Option<String>> = None;
        for (shard, key) in keys {
            // Never committed under leases: the single-instance state, where there is one.
            let key = match key {
                Some(k) => k,
                None => {
                    if legacy.is_none() {
                        legacy = Some(legacy_state_key(wh).await?);
                    }
                    match legacy.clone().flatten() {
                        Some(k) => k,
                        None => continue,
                    }
                }
            };
            if !objects.contains_key(&key) {
                let state = match store.get(&key).await {
                    Ok(bytes) => self.settings.decode(&bytes),
                    Err(Error::NotFound(_) | Error::ChecksumMismatch { .. }) => None,
                    Err(e) => return Err(e),
                };
                objects.insert(key.clone(), state);
            }
            match objects.get_mut(&key) {
                Some(Some((d, m))) => {
                    let window = d.take_shard(&shard);
                    let mark = m.take_shard(&shard);
                    tracing::debug!(
                        shard = %shard,
                        key = %key,
                        ids = window.as_ref().map_or(0, |w| w.stats().tracked),
                        "shard state restored"
                    );
                    if let Some(w) = window {
                        dedup.put_shard(&shard, w);
                    }
                    if let Some(mark) = mark {
                        marks.put_shard(&shard, mark);
                    }
                }
                _ => tracing::error!(
                    shard = %shard,
                    key = %key,
                    "a shard's committed stream state is unreadable: its dedup window and \
                     watermark start empty"
                ),
            }
        }
        self.dedup = dedup;
        self.watermarks = marks;
        self.committed = Some(Committed {
            generation,
            bytes: self.encode_state(),
            frozen: false,
        });
        self.restored = true;
        Ok(())
    }

    /// Where the state of `generation` is written.
    fn state_key(&self, generation: u64) -> String {
        match &self.fleet {
            Some(f) => zones::fleet_state_key(&f.run, generation),
            None => zones::stream_state_key(generation),
        }
    }

    /// The state as bytes: what `state/stream/gen-<n>.bin` holds.
    fn encode_state(&self) -> Bytes {
        let mut out = Vec::with_capacity(64 + self.dedup.stats().tracked as usize * 8);
        out.extend_from_slice(STATE_MAGIC);
        self.dedup.encode(&mut out);
        self.watermarks.encode(&mut out);
        Bytes::from(out)
    }

    /// Back to the last committed state (empty if none), after a segment failed. The next
    /// drain reads the committed generation again from the warehouse: a failure reported after
    /// the warehouse did commit (a lost reply) then resumes from what really committed.
    fn rollback(&mut self) {
        self.restored = false;
        let state = self
            .committed
            .as_ref()
            .and_then(|c| self.settings.decode(&c.bytes));
        let (dedup, watermarks) = state.unwrap_or_else(|| self.settings.empty());
        self.dedup = dedup;
        self.watermarks = watermarks;
    }

    /// Read the committed stream state once: the generation `ops.stream_state` names, from
    /// the store. A warehouse from before the state was kept starts empty, as it always did.
    pub async fn restore(&mut self, store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<()> {
        if self.restored {
            return Ok(());
        }
        if self.fleet.is_some() {
            return self.restore_fleet(store, wh).await;
        }
        let Some(generation) = committed_generation(wh).await? else {
            self.restored = true;
            return Ok(());
        };
        let key = zones::stream_state_key(generation);
        let read = match store.get(&key).await {
            Ok(bytes) => self
                .settings
                .decode(&bytes)
                .map(|state| (state, bytes))
                .ok_or_else(|| "cut short or of another format".to_string()),
            Err(e @ (Error::NotFound(_) | Error::ChecksumMismatch { .. })) => Err(e.to_string()),
            // A store that does not answer now: the drain fails and is tried again.
            Err(e) => return Err(e),
        };
        self.restored = true;
        let ((dedup, watermarks), bytes) = match read {
            Ok(r) => r,
            Err(why) => {
                // Nothing is lost (checkpoints and data are in the warehouse), but until the
                // window refills a resend may be staged again and lateness starts afresh.
                tracing::error!(
                    key = %key,
                    error = %why,
                    "the committed stream state is unreadable: starting with an empty dedup \
                     window and watermarks"
                );
                let (dedup, watermarks) = self.settings.empty();
                self.dedup = dedup;
                self.watermarks = watermarks;
                self.committed = Some(Committed {
                    generation,
                    bytes: self.encode_state(),
                    frozen: false,
                });
                return Ok(());
            }
        };
        tracing::debug!(
            generation,
            ids = dedup.stats().tracked,
            "stream state restored"
        );
        self.dedup = dedup;
        self.watermarks = watermarks;
        self.committed = Some(Committed {
            generation,
            bytes,
            frozen: self.watermarks.is_frozen(),
        });
        Ok(())
    }

    /// Judge one raw record as the consumer does (parse, validate, dedup, watermark) and say
    /// where it would go: "staged", "duplicate", "late" or "quarantined". For fuzzing and tests.
    pub fn classify(&mut self, shard: &str, r: &Record) -> &'static str {
        match self.judge(shard, r) {
            Verdict::Staged(_) => "staged",
            Verdict::Duplicate => "duplicate",
            Verdict::Late(_) => "late",
            Verdict::Quarantined(_) => "quarantined",
        }
    }

    fn judge(&mut self, shard: &str, r: &Record) -> Verdict {
        let event = match typed_event(&r.data, r.arrival_ms, self.settings.max_future_skew_ms) {
            Ok(e) => e,
            Err((field, reason)) => return quarantined(&field, reason, &r.data),
        };
        let event_ms = event.event_time.timestamp_millis();
        if !self
            .dedup
            .first_seen(shard, event.event_id.as_bytes(), event_ms)
        {
            return Verdict::Duplicate;
        }
        if self.watermarks.observe(shard, event_ms, r.arrival_ms) {
            return Verdict::Late(event);
        }
        Verdict::Staged(event)
    }

    /// Process one segment of `shard` (records in sequence order) into the zones and the
    /// warehouse. Returns its counts.
    /// `commit` moves the shard's checkpoint, and commits the stream state, with the load (a
    /// replay never moves it back). On any error the state is the last committed one again.
    pub async fn segment(
        &mut self,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        shard: &str,
        records: &[Record],
        commit: bool,
    ) -> Result<SegmentCounts> {
        let result = async {
            match self.stage(store, shard, records, commit).await? {
                Some(p) => self.commit_group(store, wh, vec![p], commit).await,
                None => Ok(SegmentCounts::default()),
            }
        }
        .await;
        if result.is_err() {
            self.rollback();
        }
        result
    }

    /// Judge a segment's records and write its RAW, STAGING, late and quarantine objects; its
    /// load (and, with `commit`, its checkpoint and counts) waits for `commit_group`. The
    /// judgement moves the tentative state, which only a commit makes the committed one.
    async fn stage(
        &mut self,
        store: &dyn ObjectStore,
        shard: &str,
        records: &[Record],
        commit: bool,
    ) -> Result<Option<Pending>> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(None);
        };
        let raw_key = zones::raw_segment_key(shard, first.seq, last.seq);
        let mut raw = Vec::with_capacity(records.iter().map(|r| r.data.len() + 1).sum());
        for r in records {
            raw.extend_from_slice(&r.data);
            raw.push(b'\n');
        }
        let mut counts = SegmentCounts {
            records: records.len() as u64,
            ..SegmentCounts::default()
        };
        let (mut staged, mut late, mut bad) = (Vec::new(), Vec::new(), Vec::new());
        // RAW is written (on the blocking pool: hashing, fsync) while this thread judges the
        // records: the two cores overlap I/O and parsing.
        let raw_put = store.put_if_absent(&raw_key, Bytes::from(raw));
        let judge = async {
            for r in records {
                match self.judge(shard, r) {
                    Verdict::Staged(e) => staged.push(e),
                    Verdict::Duplicate => counts.duplicates += 1,
                    Verdict::Late(e) => late.push(e),
                    Verdict::Quarantined(q) => bad.push(q),
                }
            }
        };
        let (raw_written, ()) = futures::join!(raw_put, judge);
        raw_written?;
        counts.staged = staged.len() as u64;
        counts.late = late.len() as u64;
        counts.quarantined = bad.len() as u64;
        tracing::debug!(
            shard,
            first = first.seq,
            last = last.seq,
            staged = counts.staged,
            duplicates = counts.duplicates,
            late = counts.late,
            "segment judged"
        );

        let missing = || Error::Other(format!("no zone key derivable from {raw_key}"));
        let staging_key = zones::staging_key_for(&raw_key, "events").ok_or_else(missing)?;
        let mut out = Vec::with_capacity(staged.len() * 200);
        // The load takes the typed columns instead of parsing the STAGING body back.
        let mut cols = warehouse::columns::EventColumns::with_capacity(staged.len());
        for e in &staged {
            write_event(e, &mut out);
            cols.push(e);
        }
        let body = Bytes::from(out);
        let cols = cols.finish(&staging_key)?;
        // STAGING, late and quarantine objects are independent: write them together.
        let late_key = zones::late_key_for(&raw_key).ok_or_else(missing)?;
        let bad_key = zones::quarantine_key_for(&raw_key, "events").ok_or_else(missing)?;
        let (staging_put, late_put, bad_put) = futures::join!(
            store.put(&staging_key, body.clone()),
            async {
                if late.is_empty() {
                    return Ok(None);
                }
                store
                    .put(&late_key, Bytes::from(to_ndjson(&late)))
                    .await
                    .map(Some)
            },
            async {
                if bad.is_empty() {
                    return Ok(None);
                }
                store
                    .put(&bad_key, Bytes::from(to_ndjson(&bad)))
                    .await
                    .map(Some)
            },
        );
        // The store hashed the body as it wrote it: the ledger takes that hash.
        let staged_meta = staging_put?;
        if late_put?.is_some() {
            tracing::info!(shard, count = late.len(), key = %late_key, "late events buffered");
        }
        if bad_put?.is_some() {
            tracing::warn!(shard, count = bad.len(), key = %bad_key, "stream records quarantined");
        }
        let checkpoint = commit.then(|| StreamCommit {
            shard: shard.to_string(),
            raw_key: raw_key.clone(),
            first_seq: first.seq,
            last_seq: last.seq,
            counts,
            // The group's last segment carries the state (`commit_group`).
            state_generation: None,
            fence: None,
            late_days: late.iter().fold(Default::default(), |mut m, e| {
                *m.entry(e.event_time.date_naive()).or_insert(0) += 1;
                m
            }),
        });
        Ok(Some(Pending {
            file: StagedFile {
                sha256: staged_meta.sha256,
                key: staging_key,
                entity: "events".into(),
                body,
                source: "stream".into(),
                checkpoint,
                columns: Some(std::sync::Arc::new(cols)),
            },
            counts,
        }))
    }

    /// Load staged segments in one warehouse transaction; with `commit`, their checkpoints and
    /// counts, and the state after the last of them. The caller rolls back on an error.
    async fn commit_group(
        &mut self,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        group: Vec<Pending>,
        commit: bool,
    ) -> Result<SegmentCounts> {
        let mut group = Group {
            segments: group,
            cuts: BTreeMap::new(),
        };
        let Some(wh) = wh else {
            let state = commit.then(|| self.encode_state());
            let generation = self.next_generation();
            if let Some(bytes) = state {
                self.adopt(store, generation, bytes, false).await;
            }
            return Ok(self.count(group.segments.iter().map(|p| &p.counts)));
        };
        let (files, prepared) = self.prepare(store, &mut group, commit).await?;
        let loaded = wh.load_group(files).await;
        self.finish(store, prepared, loaded).await
    }

    /// The generation the next group's state is written under.
    fn next_generation(&self) -> u64 {
        self.committed.as_ref().map_or(1, |c| c.generation + 1)
    }

    /// A group's files, and with `commit` the state after its last segment, written under its
    /// generation (live only once the load commits and names it).
    async fn prepare(
        &mut self,
        store: &dyn ObjectStore,
        group: &mut Group,
        commit: bool,
    ) -> Result<(Vec<StagedFile>, Prepared)> {
        let generation = self.next_generation();
        let state = if commit {
            let bytes = self.encode_state();
            let key = self.state_key(generation);
            store.put(&key, bytes.clone()).await?;
            if let Some(c) = group
                .segments
                .last_mut()
                .and_then(|p| p.file.checkpoint.as_mut())
            {
                match &self.fleet {
                    Some(f) => {
                        c.fence = Some(crate::ledger::FenceCommit {
                            owner: f.worker.clone(),
                            state_key: key,
                            tokens: f.owned.clone(),
                            committing: Default::default(),
                        })
                    }
                    None => c.state_generation = Some(generation),
                }
            }
            // The shards whose segments this load commits: each must still be this
            // instance's (the others only have their state pointer moved where still owned).
            let shards: std::collections::BTreeSet<String> = group
                .segments
                .iter()
                .filter_map(|p| p.file.checkpoint.as_ref().map(|c| c.shard.clone()))
                .collect();
            if let Some(fence) = group
                .segments
                .last_mut()
                .and_then(|p| p.file.checkpoint.as_mut())
                .and_then(|c| c.fence.as_mut())
            {
                fence.committing = shards;
            }
            Some(bytes)
        } else {
            None
        };
        let files = group.segments.iter().map(|p| p.file.clone()).collect();
        let counts = group.segments.iter().map(|p| p.counts).collect();
        Ok((
            files,
            Prepared {
                generation,
                state,
                counts,
                cuts: std::mem::take(&mut group.cuts),
                started: std::time::Instant::now(),
            },
        ))
    }

    /// A group's load came back: on success its state becomes the committed one and its
    /// counts are added.
    async fn finish(
        &mut self,
        store: &dyn ObjectStore,
        p: Prepared,
        loaded: Result<Vec<warehouse::LoadOutcome>>,
    ) -> Result<SegmentCounts> {
        loaded?;
        tracing::debug!(
            segments = p.counts.len(),
            ms = p.started.elapsed().as_millis() as u64,
            "segments loaded"
        );
        if let Some(bytes) = p.state {
            self.adopt(store, p.generation, bytes, true).await;
        }
        Ok(self.count(p.counts.iter()))
    }

    /// Add committed segments' counts to the running totals; their sum.
    fn count<'c>(&mut self, segments: impl Iterator<Item = &'c SegmentCounts>) -> SegmentCounts {
        let mut total = SegmentCounts::default();
        for c in segments {
            total.add(c);
            self.totals.add(c);
            self.segments += 1;
        }
        total
    }

    /// Read every shard from its checkpoint to the end of the log, segment by segment.
    pub async fn drain(
        &mut self,
        log: &dyn StreamLog,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        segment_records: usize,
    ) -> Result<SegmentCounts> {
        self.drain_some(log, store, wh, segment_records, None).await
    }

    /// Drain in rounds, one segment per shard per round, so a busy shard never starves the
    /// others; with `max_segments`, stop after that many segments (the rest waits for the next
    /// call, and the engine serves commands in between). Per-shard dedup and lateness make the
    /// order across shards irrelevant to how a record is judged.
    ///
    /// Segments are loaded in groups of `stream.segments_per_commit`, one transaction each,
    /// and the next group is read, judged and written to the zones while the warehouse loads
    /// the one before (the two cores overlap); groups still commit one after another. A
    /// failure anywhere rolls the state back to the last committed group and cuts every shard
    /// staged since where its staged segments ended, so the retry writes the same objects.
    pub async fn drain_some(
        &mut self,
        log: &dyn StreamLog,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        segment_records: usize,
        max_segments: Option<usize>,
    ) -> Result<SegmentCounts> {
        let mut read = Reader {
            checkpoints: match wh {
                Some(w) => {
                    // A restore that reads afresh drops taken shards itself.
                    let fresh = !self.restored;
                    self.restore(store, w).await?;
                    if !fresh {
                        self.drop_taken(w).await?;
                    }
                    let committed = checkpoints(w).await?;
                    self.read_uncommitted_cuts(store, &log.shards(), &committed)
                        .await?;
                    committed
                }
                None => BTreeMap::new(),
            },
            rounds: Rounds::new(match &self.fleet {
                Some(f) => log
                    .shards()
                    .into_iter()
                    .filter(|s| f.owned.contains_key(s))
                    .collect(),
                None => log.shards(),
            }),
            segment_records: segment_records.max(1),
            max_segments,
            segments: 0,
        };
        let per_commit = wh.map_or(1, |w| {
            self.settings
                .segments_per_commit
                .min(w.files_per_load())
                .max(1)
        });
        let mut total = SegmentCounts::default();
        let mut in_flight: Option<(
            futures::future::BoxFuture<'_, Result<Vec<warehouse::LoadOutcome>>>,
            Prepared,
        )> = None;
        loop {
            let (loaded, staged) = match in_flight.take() {
                Some((load, prepared)) => {
                    let (loaded, staged) =
                        futures::join!(load, self.stage_group(log, store, &mut read, per_commit));
                    (Some((loaded, prepared)), staged)
                }
                None => (
                    None,
                    self.stage_group(log, store, &mut read, per_commit).await,
                ),
            };
            if let Some((loaded, prepared)) = loaded {
                let committed = prepared.cuts.clone();
                match self.finish(store, prepared, loaded).await {
                    Ok(c) => {
                        self.passed(&committed);
                        total.add(&c);
                    }
                    Err(e) => {
                        let mut cuts = committed;
                        let staged_cuts = match staged {
                            Ok(g) => g.cuts,
                            Err((c, _)) => c,
                        };
                        for (shard, ends) in staged_cuts {
                            cuts.entry(shard).or_default().extend(ends);
                        }
                        self.fail(cuts);
                        return Err(e);
                    }
                }
            }
            let mut group = match staged {
                Ok(g) => g,
                Err((cuts, e)) => {
                    self.fail(cuts);
                    return Err(e);
                }
            };
            if group.segments.is_empty() {
                break;
            }
            let Some(wh) = wh else {
                // No warehouse: the state is adopted as committed as it stands.
                let cuts = std::mem::take(&mut group.cuts);
                match self.commit_group(store, None, group.segments, true).await {
                    Ok(c) => {
                        self.passed(&cuts);
                        total.add(&c);
                    }
                    Err(e) => {
                        self.fail(cuts);
                        return Err(e);
                    }
                }
                continue;
            };
            // The load before this one has committed: this group's state follows it.
            match self.prepare(store, &mut group, true).await {
                Ok((files, prepared)) => in_flight = Some((wh.load_group(files), prepared)),
                Err(e) => {
                    self.fail(std::mem::take(&mut group.cuts));
                    return Err(e);
                }
            }
        }
        match wh {
            Some(w) if self.watermarks.is_frozen() => self.end_micro_batch(store, w).await?,
            _ => self.watermarks.thaw(),
        }
        if let Some(w) = wh {
            self.sweep(store, w).await?;
        }
        if let (Some(wh), true) = (wh, total.records > 0) {
            wh.execute_tx(watermarks_sql(
                &self.watermarks.status(crate::clock::now_ms()),
                self.fleet.as_ref().map(|f| (f.worker.as_str(), &f.owned)),
            ))
            .await?;
        }
        Ok(total)
    }

    /// Nothing staged since the last commit is committed: its shards keep every boundary of
    /// their staged segments as retry cuts (added to any left by an earlier failure), and the
    /// state returns to the committed one.
    fn fail(&mut self, cuts: Cuts) {
        for (shard, ends) in cuts {
            self.retry_cut.entry(shard).or_default().extend(ends);
        }
        self.rollback();
    }

    /// Committed segments pass their shards' retry cuts up to where they ended.
    fn passed(&mut self, committed: &Cuts) {
        for (shard, ends) in committed {
            let Some(&last) = ends.last() else { continue };
            if let Some(cuts) = self.retry_cut.get_mut(shard) {
                cuts.retain(|&c| c > last);
                if cuts.is_empty() {
                    self.retry_cut.remove(shard);
                }
            }
        }
    }

    /// Read, judge and write to the zones up to `per_commit` segments, in rounds. An empty
    /// group: every shard is drained (or `max_segments` reached). On an error, the shards
    /// staged so far with their last sequence numbers.
    async fn stage_group(
        &mut self,
        log: &dyn StreamLog,
        store: &dyn ObjectStore,
        read: &mut Reader,
        per_commit: usize,
    ) -> std::result::Result<Group, (Cuts, Error)> {
        let mut group = Group {
            segments: Vec::new(),
            cuts: BTreeMap::new(),
        };
        while group.segments.len() < per_commit {
            if read.max_segments.is_some_and(|m| read.segments >= m) {
                break;
            }
            let Some(shard) = read.rounds.next() else {
                break;
            };
            let after = read.checkpoints.get(&shard).copied();
            let mut records = match log.read(&shard, after, read.segment_records).await {
                Ok(r) => r,
                Err(e) => return Err((group.cuts, e)),
            };
            // The first cut past where this read starts ends the segment where it ended before.
            let cut = self
                .retry_cut
                .get(&shard)
                .and_then(|c| c.iter().find(|&&c| after.is_none_or(|a| a < c)).copied());
            if let Some(cut) = cut {
                records.retain(|r| r.seq <= cut);
            }
            let Some(last) = records.last().map(|r| r.seq) else {
                continue;
            };
            group.cuts.entry(shard.clone()).or_default().insert(last);
            match self.stage(store, &shard, &records, true).await {
                Ok(p) => group.segments.extend(p),
                Err(e) => return Err((group.cuts, e)),
            }
            read.segments += 1;
            read.checkpoints.insert(shard.clone(), last);
            read.rounds.keep(shard);
        }
        Ok(group)
    }

    /// Drain a bounded input (a file just fed to the log) as one micro-batch: every record is
    /// judged against the watermarks as they stood before it; they advance for what follows.
    pub async fn drain_micro_batch(
        &mut self,
        log: &dyn StreamLog,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        segment_records: usize,
    ) -> Result<SegmentCounts> {
        if let Some(w) = wh {
            self.restore(store, w).await?;
        }
        // A batch cut short by a failure is still frozen in the committed state: it goes on
        // against the watermarks it began with.
        // Under leases a file's records are every instance's: each judges its shards as a
        // stream (no batch spans the fleet).
        if !self.watermarks.is_frozen() && self.fleet.is_none() {
            self.watermarks.freeze();
        }
        self.drain(log, store, wh, segment_records).await
    }

    /// The batch is drained: back to per-record watermarks, and commit that (a state of its
    /// own generation) when the committed state is still the frozen one.
    async fn end_micro_batch(&mut self, store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<()> {
        self.watermarks.thaw();
        if !self.committed.as_ref().is_some_and(|c| c.frozen) {
            return Ok(());
        }
        let generation = self.committed.as_ref().map_or(1, |c| c.generation + 1);
        let bytes = self.encode_state();
        let written = async {
            store
                .put(&zones::stream_state_key(generation), bytes.clone())
                .await?;
            wh.execute_tx(warehouse::schema::stream_state_sql(generation))
                .await
        }
        .await;
        if let Err(e) = written {
            self.rollback();
            return Err(e);
        }
        self.adopt(store, generation, bytes, true).await;
        Ok(())
    }

    /// `bytes` committed as `generation` become what a failure returns to; the object of the
    /// generation they supersede is deleted when it was persisted (only the committed one is
    /// ever read).
    async fn adopt(
        &mut self,
        store: &dyn ObjectStore,
        generation: u64,
        bytes: Bytes,
        persisted: bool,
    ) {
        let previous = self.committed.replace(Committed {
            generation,
            bytes,
            frozen: self.watermarks.is_frozen(),
        });
        let Some(Committed {
            generation: old, ..
        }) = previous.filter(|_| persisted)
        else {
            return;
        };
        // Under leases a shard taken from this instance still names the previous object until
        // its new owner commits: deleted later, once nothing names it (`sweep`).
        let key = self.state_key(old);
        if let Some(f) = self.fleet.as_mut() {
            if old > 0 {
                f.stale.push(key);
            }
            return;
        }
        if let Err(e) = store.delete(&key).await {
            tracing::warn!(error = %e, generation = old, "old stream state not deleted");
        }
    }

    /// Under leases: delete the superseded state objects no shard's row names any more.
    async fn sweep(&mut self, store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<()> {
        let Some(f) = self.fleet.as_mut() else {
            return Ok(());
        };
        if f.stale.is_empty() {
            return Ok(());
        }
        let list = f
            .stale
            .iter()
            .map(|k| warehouse::schema::literal(&warehouse::Cell::Text(k.clone())))
            .collect::<Vec<_>>()
            .join(", ");
        // A failed look keeps the list for the next drain (the loads committed regardless).
        let named: std::collections::BTreeSet<String> = match wh
            .query(&format!(
                "SELECT DISTINCT state_key FROM ops.shard_owners WHERE state_key IN ({list})"
            ))
            .await
        {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "superseded stream states not swept");
                return Ok(());
            }
        };
        let (kept, gone): (Vec<String>, Vec<String>) = std::mem::take(&mut f.stale)
            .into_iter()
            .partition(|k| named.contains(k));
        f.stale = kept;
        for key in gone {
            if let Err(e) = store.delete(&key).await {
                tracing::warn!(error = %e, key = %key, "old stream state not deleted");
            }
        }
        Ok(())
    }

    pub async fn status(
        &self,
        log: &dyn StreamLog,
        wh: Option<&dyn Warehouse>,
    ) -> Result<StreamStatus> {
        let cps = match wh {
            Some(w) => checkpoints(w).await?,
            None => BTreeMap::new(),
        };
        let mut shards = Vec::new();
        let owned = self.owned();
        // Under leases the shards of the other instances are theirs to report (the fleet view
        // has every lease).
        for shard in log
            .shards()
            .into_iter()
            .filter(|s| owned.is_none_or(|o| o.contains_key(s)))
        {
            let latest = log.latest_seq(&shard).await?;
            let checkpoint = cps.get(&shard).copied();
            // Kinesis says how far behind it is; the local log is measured.
            if let Some(behind) = log.millis_behind(&shard) {
                let estimate = log.lag_records_estimate(&shard);
                shards.push(super::ShardStatus {
                    lag_records: estimate.unwrap_or(0),
                    lag_ms: behind,
                    lag_estimated: estimate.is_some(),
                    read_throttles: log.read_throttles(&shard),
                    closed: log.closed(&shard),
                    shard,
                    latest_seq: latest,
                    checkpoint,
                });
                continue;
            }
            let lag_records = latest.unwrap_or(0).saturating_sub(checkpoint.unwrap_or(0));
            let lag_ms = if lag_records == 0 {
                0
            } else {
                let next = log.read(&shard, checkpoint, 1).await?;
                next.first()
                    .map_or(0, |r| (crate::clock::now_ms() - r.arrival_ms).max(0) as u64)
            };
            shards.push(super::ShardStatus {
                lag_records,
                lag_ms,
                read_throttles: log.read_throttles(&shard),
                closed: log.closed(&shard),
                shard,
                latest_seq: latest,
                checkpoint,
                ..Default::default()
            });
        }
        Ok(StreamStatus {
            backend: log.backend().to_string(),
            totals: self.totals,
            segments: self.segments,
            dedup: self.dedup.stats(),
            watermarks: match (&self.fleet, wh) {
                (Some(_), Some(w)) => self.fleet_watermarks(w).await?,
                _ => self.watermarks.status(crate::clock::now_ms()),
            },
            shards,
            fleet: None,
        })
    }

    /// Under leases: every shard's watermark as its owner last wrote it to `ops.watermarks`,
    /// and the global one over them all (the minimum over shards not idle), whoever owns them.
    async fn fleet_watermarks(&self, wh: &dyn Warehouse) -> Result<WatermarkStatus> {
        let mut w = self.watermarks.status(crate::clock::now_ms());
        w.shards = wh
            .query("SELECT shard, CAST(watermark AS VARCHAR(40)), CAST(idle AS BIGINT) FROM ops.watermarks")
            .await?
            .into_iter()
            .filter_map(|r| {
                let shard = r.first().cloned().flatten()?;
                let text = r.get(1).cloned().flatten()?;
                let t = chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()?
                    .and_utc();
                let idle = r.get(2).cloned().flatten().is_some_and(|i| i != "0");
                Some((shard, t.timestamp_millis(), idle))
            })
            .collect();
        w.shards.sort();
        w.global_ms =
            crate::watermark::global_of(w.shards.iter().map(|(_, wm, idle)| (*wm, *idle)));
        Ok(w)
    }

    pub fn dedup(&self) -> &ShardWindows {
        &self.dedup
    }
}

/// An RFC 3339 UTC timestamp with microseconds, written digit by digit: chrono's general
/// formatter was the stream path's largest single cost.
fn write_time(t: &DateTime<Utc>, out: &mut Vec<u8>) {
    use chrono::{Datelike, Timelike};
    fn digits(out: &mut Vec<u8>, v: u32, n: usize) {
        let mut buf = [b'0'; 10];
        let mut v = v;
        for i in (0..n).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Out of the four-digit range (validation rejects these anyway): let chrono say it.
        out.extend_from_slice(
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .as_bytes(),
        );
        return;
    }
    digits(out, year as u32, 4);
    out.push(b'-');
    digits(out, t.month(), 2);
    out.push(b'-');
    digits(out, t.day(), 2);
    out.push(b'T');
    digits(out, t.hour(), 2);
    out.push(b':');
    digits(out, t.minute(), 2);
    out.push(b':');
    digits(out, t.second(), 2);
    out.push(b'.');
    digits(out, t.timestamp_subsec_micros().min(999_999), 6);
    out.push(b'Z');
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping of a &str cannot fail into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// One STAGING line of an event, the same JSON as `Event`'s serde form.
pub fn write_event(e: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"event_id\":");
    write_str(&e.event_id, out);
    out.extend_from_slice(b",\"user_id\":");
    out.extend_from_slice(e.user_id.to_string().as_bytes());
    out.extend_from_slice(b",\"product_id\":");
    out.extend_from_slice(e.product_id.to_string().as_bytes());
    out.extend_from_slice(b",\"event_type\":\"");
    out.extend_from_slice(e.event_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\"event_time\":\"");
    write_time(&e.event_time, out);
    out.push(b'"');
    if let Some(t) = &e.ingestion_time {
        out.extend_from_slice(b",\"ingestion_time\":\"");
        write_time(t, out);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"session_id\":");
    write_str(&e.session_id, out);
    if let Some(t) = &e.producer_time {
        out.extend_from_slice(b",\"producer_time\":\"");
        write_time(t, out);
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// Re-read the committed segments of `shard` that end at or after `from_seq`, exactly as they
/// were cut (the boundaries are in the RAW keys): the RAW file each gives must be
/// byte-identical (an immutable-object conflict is an error), a missing STAGING object is
/// derived again, and every STAGING file is loaded again, which the ledger makes a no-op for
/// what was loaded. Checkpoints never move back.
pub async fn replay(
    cfg: &StreamConfig,
    log: &dyn StreamLog,
    store: &dyn ObjectStore,
    wh: Option<&dyn Warehouse>,
    shard: &str,
    from_seq: u64,
) -> Result<ReplayReport> {
    let prefix = format!("raw/stream/events/shard={shard}/");
    let mut report = ReplayReport::default();
    // A missing STAGING object is derived again without the original run's dedup and watermark
    // state, which is gone: dedup within the replay, and nothing is late (the MERGE on
    // event_id absorbs what the original run had already loaded).
    let mut fresh = Processor::new(cfg);
    fresh.watermarks = Watermarks::new(0, (i64::MAX / 4) as u64, 1);
    for m in store.list(&prefix).await? {
        let Some((first, last)) = zones::segment_range(&m.key) else {
            continue;
        };
        if last < from_seq {
            continue;
        }
        report.segments += 1;
        // Read the segment's range, page by page: sequence numbers need not be dense (Kinesis),
        // and a page may end early.
        let mut records: Vec<Record> = Vec::new();
        let mut after = first.checked_sub(1);
        loop {
            let want = (last - after.unwrap_or(0)).min(10_000) as usize;
            let page = log.read(shard, after, want.max(1)).await?;
            let Some(end) = page.last().map(|r| r.seq) else {
                break;
            };
            records.extend(page.into_iter().filter(|r| r.seq <= last));
            if end >= last {
                break;
            }
            after = Some(end);
        }
        if records.first().map(|r| r.seq) != Some(first)
            || records.last().map(|r| r.seq) != Some(last)
        {
            return Err(Error::Other(format!(
                "records {first}..={last} of {shard} are no longer in the log (retention); \
                 RAW {} keeps them as received",
                m.key
            )));
        }
        let mut raw = Vec::new();
        for r in &records {
            raw.extend_from_slice(&r.data);
            raw.push(b'\n');
        }
        // Immutable: other bytes under the same key fail here with a conflict; a damaged
        // object (its bytes no longer match its checksum) is rewritten from the log.
        match crate::store::put_immutable_repairing(store, &m.key, Bytes::from(raw))
            .await?
            .outcome
        {
            crate::store::PutOutcome::AlreadyPresent => report.raw_identical += 1,
            _ => report.raw_rewritten += 1,
        }
        let staging_key = zones::staging_key_for(&m.key, "events")
            .ok_or_else(|| Error::Other(format!("no staging key for {}", m.key)))?;
        // A missing or damaged STAGING object (its bytes fail their checksum) is derived
        // again from the records; a damaged one must never be loaded.
        let intact = match store.head(&staging_key).await? {
            Some(meta) => crate::store::intact(store, &meta).await?,
            None => false,
        };
        if !intact {
            fresh.segment(store, None, shard, &records, false).await?;
            report.restaged += 1;
        }
        let body = store.get(&staging_key).await?;
        if let Some(wh) = wh {
            let outcome = wh
                .load(&StagedFile {
                    sha256: sha256_hex(&body),
                    key: staging_key,
                    entity: "events".into(),
                    body,
                    source: "replay".into(),
                    checkpoint: None,
                    columns: None,
                })
                .await?;
            if outcome.skipped {
                report.loads_skipped += 1;
            }
        }
    }
    if let Some(wh) = wh {
        warehouse::refresh_models(wh, store, 0).await?;
    }
    Ok(report)
}

/// Replace `ops.watermarks` with the current per-shard watermarks: all of them, or under
/// leases (`owned`: this instance and its shards' tokens) the rows of the shards still
/// registered to it, so an instance that lost a shard and has not noticed never overwrites
/// the new owner's row.
pub fn watermarks_sql(
    w: &WatermarkStatus,
    owned: Option<(&str, &BTreeMap<String, u64>)>,
) -> Vec<String> {
    use crate::warehouse::schema::literal;
    use crate::warehouse::Cell;
    let now = literal(&Cell::Time(Utc::now()));
    let text = |s: &str| literal(&Cell::Text(s.to_string()));
    // Under leases, the condition that a shard is still this instance's.
    let registered = |shard: &str| {
        owned.and_then(|(owner, tokens)| {
            tokens.get(shard).map(|t| {
                format!(
                    "EXISTS (SELECT 1 FROM ops.shard_owners WHERE shard = {} AND owner = {} \
                     AND token = {t})",
                    text(shard),
                    text(owner)
                )
            })
        })
    };
    let mut out = Vec::new();
    match owned {
        None => out.push("DELETE FROM ops.watermarks".to_string()),
        Some((_, tokens)) => {
            for shard in tokens.keys() {
                if let Some(cond) = registered(shard) {
                    out.push(format!(
                        "DELETE FROM ops.watermarks WHERE shard = {} AND {cond}",
                        text(shard)
                    ));
                }
            }
        }
    }
    for (shard, ms, idle) in &w.shards {
        let Some(t) = DateTime::<Utc>::from_timestamp_millis(*ms) else {
            continue;
        };
        let values = format!(
            "{}, {}, {}, {now}",
            text(shard),
            literal(&Cell::Time(t)),
            i64::from(*idle)
        );
        out.push(match (owned, registered(shard)) {
            (None, _) => format!(
                "INSERT INTO ops.watermarks (shard, watermark, idle, updated_at) VALUES ({values})"
            ),
            (Some(_), Some(cond)) => format!(
                "INSERT INTO ops.watermarks (shard, watermark, idle, updated_at) SELECT {values} \
                 WHERE {cond}"
            ),
            // Not this instance's shard: its owner writes it.
            (Some(_), None) => continue,
        });
    }
    out
}

/// The token registered for `shard` in the warehouse, and its owner, if any.
async fn registered_token(wh: &dyn Warehouse, shard: &str) -> Result<Option<(u64, String)>> {
    Ok(wh
        .query(&format!(
            "SELECT CAST(token AS BIGINT), owner FROM ops.shard_owners WHERE shard = {}",
            warehouse::schema::literal(&warehouse::Cell::Text(shard.to_string()))
        ))
        .await?
        .first()
        .and_then(|r| {
            let token = r.first().cloned().flatten()?.parse().ok()?;
            Some((token, r.get(1).cloned().flatten()?))
        }))
}

/// The generation of the single-instance stream state `ops.stream_state` names, if any.
async fn committed_generation(wh: &dyn Warehouse) -> Result<Option<u64>> {
    Ok(wh
        .query(&format!(
            "SELECT CAST(generation AS BIGINT) FROM ops.stream_state WHERE name = '{}'",
            warehouse::schema::STREAM_STATE
        ))
        .await?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|g| g.parse::<u64>().ok()))
}

/// The single-instance stream state's object, when the warehouse has one (a stream that ran
/// without leases before).
async fn legacy_state_key(wh: &dyn Warehouse) -> Result<Option<String>> {
    Ok(committed_generation(wh).await?.map(zones::stream_state_key))
}

/// Where `shard`'s RAW segments past its committed checkpoint end: segments written by an
/// owner that never committed them.
/// Every shard's registered owner, token and state object (`ops.shard_owners`).
const SHARD_OWNERS_SQL: &str =
    "SELECT shard, owner, CAST(token AS BIGINT), state_key FROM ops.shard_owners";

/// The shards of `SHARD_OWNERS_SQL`'s rows registered to this instance under the token it holds
/// them at, with the state object each names.
fn registered_here(rows: &warehouse::TextRows, f: &Fleet) -> BTreeMap<String, Option<String>> {
    rows.iter()
        .filter_map(|r| match (r.first(), r.get(1), r.get(2)) {
            (Some(Some(shard)), Some(Some(owner)), Some(Some(token)))
                if *owner == f.worker
                    && f.owned.get(shard).map(u64::to_string).as_deref()
                        == Some(token.as_str()) =>
            {
                Some((shard.clone(), r.get(3).cloned().flatten()))
            }
            _ => None,
        })
        .collect()
}

async fn uncommitted_cuts(
    store: &dyn ObjectStore,
    shard: &str,
    checkpoint: Option<u64>,
) -> Result<std::collections::BTreeSet<u64>> {
    Ok(store
        .list(&format!("raw/stream/events/shard={shard}/"))
        .await?
        .iter()
        .filter_map(|m| zones::segment_range(&m.key))
        .filter(|(first, _)| checkpoint.is_none_or(|c| *first > c))
        .map(|(_, last)| last)
        .collect())
}

/// Committed checkpoints by shard.
pub use crate::warehouse::checkpoints;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The hand-written STAGING line parses back to the same event as serde's.
        #[test]
        fn write_event_matches_serde(
            id in "[a-zA-Z0-9\"\\\\é-]{1,20}",
            session in "[a-z0-9 \"-]{1,20}",
            user in 1i64..1_000_000,
            micros in 946_684_800_000_000i64..4_000_000_000_000_000,
            ingest in proptest::option::of(946_684_800_000_000i64..4_000_000_000_000_000),
        ) {
            let e = Event {
                event_id: id,
                user_id: user,
                product_id: 7,
                event_type: crate::domain::EventType::Checkout,
                event_time: DateTime::from_timestamp_micros(micros).unwrap(),
                ingestion_time: ingest.map(|m| DateTime::from_timestamp_micros(m).unwrap()),
                session_id: session,
                producer_time: ingest.map(|m| DateTime::from_timestamp_micros(m / 2).unwrap()),
            };
            let mut out = Vec::new();
            write_event(&e, &mut out);
            prop_assert_eq!(out.last(), Some(&b'\n'));
            let back: Event = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(&back, &e);

            // The typed rows a segment hands its load are the rows its STAGING body parses to
            // (a staged event always has its arrival as `ingestion_time`).
            if e.ingestion_time.is_none() {
                return Ok(());
            }
            let key = "staging/events/shard=s/1-2.ndjson";
            let twice = [out.clone(), out].concat();
            let parsed = warehouse::parse_rows(&warehouse::schema::EVENTS, key, &twice).unwrap();
            let mut cols = warehouse::columns::EventColumns::with_capacity(2);
            cols.push(&e);
            cols.push(&e);
            let typed = warehouse::columns::cells_of(&cols.finish(key).unwrap()).unwrap();
            prop_assert_eq!(&parsed, &typed);
            let as_cells = warehouse::columns::of_cells(&warehouse::schema::EVENTS, &parsed).unwrap();
            prop_assert_eq!(warehouse::columns::cells_of(&as_cells).unwrap(), typed);
        }
    }
}
