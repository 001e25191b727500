//! Event-time watermarks, per shard and global.
//!
//! A shard's watermark is the largest event_time it has delivered minus the allowed
//! out-of-orderness. An event is late when its event_time is behind *its shard's* watermark by
//! more than the allowed lateness (Kafka Streams' per-partition stream time): the verdict is then
//! a function of the shard's own records in sequence order, so it does not depend on how drains
//! interleave shards, nor on where processes started or stopped. The global watermark, the
//! minimum over shards that are not idle (Flink's rule; a shard that delivered nothing for
//! `idle_timeout` by arrival time stops holding the others back), is what status shows and what
//! the fleet agrees on. Late events go to the late buffer, never away.
//!
//! A bounded input (a file) is one micro-batch, as in Spark Structured Streaming: `freeze`
//! judges every record against the watermarks as they stood before it, and the marks advance as
//! usual underneath for the next batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec;

pub use ecom_model::stream::WatermarkStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMark {
    /// Largest event time seen, ms since the epoch.
    pub max_event_ms: i64,
    /// Arrival time of the shard's last record, ms.
    pub last_arrival_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Watermarks {
    out_of_order_ms: i64,
    lateness_ms: i64,
    idle_ms: i64,
    shards: BTreeMap<String, ShardMark>,
    late: u64,
    /// Micro-batch: each shard's watermark when the batch began (`None`: no watermark yet).
    frozen: Option<BTreeMap<String, i64>>,
}

impl Watermarks {
    pub fn new(out_of_order_ms: u64, lateness_ms: u64, idle_ms: u64) -> Watermarks {
        Watermarks {
            out_of_order_ms: out_of_order_ms as i64,
            lateness_ms: lateness_ms as i64,
            idle_ms: idle_ms.max(1) as i64,
            shards: BTreeMap::new(),
            late: 0,
            frozen: None,
        }
    }

    /// Judge what follows against the watermarks as they stand now (a micro-batch).
    pub fn freeze(&mut self) {
        self.frozen = Some(
            self.shards
                .iter()
                .map(|(s, m)| (s.clone(), m.max_event_ms - self.out_of_order_ms))
                .collect(),
        );
    }

    /// Back to per-record watermarks.
    pub fn thaw(&mut self) {
        self.frozen = None;
    }

    /// Whether a micro-batch is being judged.
    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// The watermark `shard`'s next event is judged against.
    fn judging(&self, shard: &str) -> Option<i64> {
        match &self.frozen {
            Some(f) => f.get(shard).copied(),
            None => self
                .shards
                .get(shard)
                .map(|m| m.max_event_ms - self.out_of_order_ms),
        }
    }

    /// The marks as bytes: late count, then per shard its name, largest event time and last
    /// arrival; then the micro-batch's frozen watermarks, if one is being judged (a batch cut
    /// short by a failure goes on against the same watermarks).
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.late);
        codec::put_u64(out, self.shards.len() as u64);
        for (n, m) in &self.shards {
            codec::put_name(out, n);
            codec::put_u64(out, m.max_event_ms as u64);
            codec::put_u64(out, m.last_arrival_ms as u64);
        }
        match &self.frozen {
            None => codec::put_u64(out, u64::MAX),
            Some(f) => {
                codec::put_u64(out, f.len() as u64);
                for (n, wm) in f {
                    codec::put_name(out, n);
                    codec::put_u64(out, *wm as u64);
                }
            }
        }
    }

    /// Marks from `encode`'s bytes into these settings; false (and nothing changed) when the
    /// bytes are cut short or not UTF-8.
    pub fn decode_into(&mut self, bytes: &mut &[u8]) -> bool {
        type Parsed = (
            u64,
            BTreeMap<String, ShardMark>,
            Option<BTreeMap<String, i64>>,
        );
        let parse = |bytes: &mut &[u8]| -> Option<Parsed> {
            let late = codec::u64(bytes)?;
            let mut shards = BTreeMap::new();
            for _ in 0..codec::u64(bytes)? {
                let name = codec::name(bytes)?;
                let mark = ShardMark {
                    max_event_ms: codec::u64(bytes)? as i64,
                    last_arrival_ms: codec::u64(bytes)? as i64,
                };
                shards.insert(name, mark);
            }
            let frozen = match codec::u64(bytes)? {
                u64::MAX => None,
                n => {
                    let mut f = BTreeMap::new();
                    for _ in 0..n {
                        let name = codec::name(bytes)?;
                        f.insert(name, codec::u64(bytes)? as i64);
                    }
                    Some(f)
                }
            };
            Some((late, shards, frozen))
        };
        match parse(bytes) {
            Some((late, shards, frozen)) => {
                self.late = late;
                self.shards = shards;
                self.frozen = frozen;
                true
            }
            None => false,
        }
    }

    /// `shard`'s mark, taken out (a leased shard moving between instances).
    pub fn take_shard(&mut self, shard: &str) -> Option<ShardMark> {
        if let Some(f) = self.frozen.as_mut() {
            f.remove(shard);
        }
        self.shards.remove(shard)
    }

    /// Put a shard's mark in (replacing any).
    pub fn put_shard(&mut self, shard: &str, m: ShardMark) {
        self.shards.insert(shard.to_string(), m);
    }

    /// The global watermark at arrival time `now_ms`: None until some shard has data.
    pub fn global(&self, now_ms: i64) -> Option<i64> {
        global_of(self.shards.values().map(|m| {
            (
                m.max_event_ms - self.out_of_order_ms,
                now_ms - m.last_arrival_ms >= self.idle_ms,
            )
        }))
    }

    /// Judge one event from `shard` that arrived at `arrival_ms`; returns whether it is late.
    /// Lateness is judged against the shard's watermark before this event advances it.
    pub fn observe(&mut self, shard: &str, event_ms: i64, arrival_ms: i64) -> bool {
        let late = self
            .judging(shard)
            .is_some_and(|wm| event_ms < wm.saturating_sub(self.lateness_ms));
        // Hot path: look up by &str; allocate the key only for a shard's first event.
        if !self.shards.contains_key(shard) {
            self.shards.insert(
                shard.to_string(),
                ShardMark {
                    max_event_ms: event_ms,
                    last_arrival_ms: arrival_ms,
                },
            );
        }
        let Some(mark) = self.shards.get_mut(shard) else {
            return late;
        };
        mark.max_event_ms = mark.max_event_ms.max(event_ms);
        mark.last_arrival_ms = mark.last_arrival_ms.max(arrival_ms);
        if late {
            self.late += 1;
        }
        late
    }

    pub fn status(&self, now_ms: i64) -> WatermarkStatus {
        WatermarkStatus {
            shards: self
                .shards
                .iter()
                .map(|(s, m)| {
                    (
                        s.clone(),
                        m.max_event_ms - self.out_of_order_ms,
                        now_ms - m.last_arrival_ms >= self.idle_ms,
                    )
                })
                .collect(),
            global_ms: self.global(now_ms),
            late_events: self.late,
            out_of_orderness_ms: self.out_of_order_ms,
            allowed_lateness_ms: self.lateness_ms,
        }
    }
}

/// The global watermark over shards' (watermark, idle): the minimum over shards not idle; all
/// idle, the most advanced (nothing else can hold time back); None without shards. The fleet
/// applies it to every owner's rows of `ops.watermarks`.
pub fn global_of(shards: impl Iterator<Item = (i64, bool)> + Clone) -> Option<i64> {
    let min = shards
        .clone()
        .filter(|(_, idle)| !idle)
        .map(|(wm, _)| wm)
        .min();
    min.or_else(|| shards.map(|(wm, _)| wm).max())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_shard_holds_the_watermark() {
        let mut w = Watermarks::new(1_000, 0, 60_000);
        w.observe("a", 100_000, 0);
        w.observe("b", 50_000, 0);
        assert_eq!(w.global(1), Some(49_000));
        // b idles past the timeout: a alone leads.
        w.observe("a", 200_000, 70_000);
        assert_eq!(w.global(70_000), Some(199_000));
    }

    #[test]
    fn late_means_behind_watermark_by_more_than_the_lateness() {
        let mut w = Watermarks::new(1_000, 5_000, 60_000);
        w.observe("a", 100_000, 0);
        assert!(!w.observe("a", 95_000, 1), "within out-of-order + lateness");
        assert!(
            w.observe("a", 90_000, 2),
            "99 s watermark - 5 s lateness = 94 s"
        );
        assert_eq!(w.status(3).late_events, 1);
    }

    #[test]
    fn a_shard_is_judged_by_its_own_watermark() {
        let mut w = Watermarks::new(0, 0, 60_000);
        w.observe("a", 100_000, 0);
        // b is behind a, but not behind anything b has delivered.
        assert!(!w.observe("b", 50_000, 1));
        assert!(w.observe("b", 40_000, 2));
    }

    #[test]
    fn a_frozen_batch_is_judged_against_the_watermark_before_it() {
        let mut w = Watermarks::new(0, 0, 60_000);
        w.observe("a", 100_000, 0);
        w.freeze();
        // A file out of order: the later events do not make the earlier ones late.
        assert!(!w.observe("a", 500_000, 1));
        assert!(!w.observe("a", 200_000, 2));
        assert!(
            w.observe("a", 90_000, 3),
            "behind the watermark before the batch"
        );
        // Cut short and restored: the same frozen watermarks.
        let mut bytes = Vec::new();
        w.encode(&mut bytes);
        let mut back = Watermarks::new(0, 0, 60_000);
        assert!(back.decode_into(&mut bytes.as_slice()));
        assert!(back.is_frozen());
        assert!(
            !back.observe("a", 150_000, 3),
            "judged against 100 s, not the batch's 500 s"
        );
        assert!(back.observe("a", 80_000, 3));
        w.thaw();
        assert!(w.observe("a", 400_000, 4), "the batch advanced the mark");
        let mut bytes = Vec::new();
        w.encode(&mut bytes);
        let mut back = Watermarks::new(0, 0, 60_000);
        assert!(back.decode_into(&mut bytes.as_slice()));
        assert_eq!(back.status(5), w.status(5));
        assert!(!back.is_frozen());
    }
}
