//! Event-time watermarks, per shard and global (as Flink does it).
//!
//! A shard's watermark is the largest event_time it has delivered minus the allowed
//! out-of-orderness. The global watermark is the minimum over shards that are not idle: a shard
//! that delivered nothing for `idle_timeout` (by arrival time) stops holding the others back.
//! An event is late when its event_time is behind the global watermark by more than the allowed
//! lateness; late events go to the late buffer, never away.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMark {
    /// Largest event time seen, ms since the epoch.
    pub max_event_ms: i64,
    /// Arrival time of the shard's last record, ms.
    pub last_arrival_ms: i64,
}

/// What status shows of the watermarks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatermarkStatus {
    /// Per shard: its watermark (ms) and whether it is idle.
    pub shards: Vec<(String, i64, bool)>,
    pub global_ms: Option<i64>,
    pub late_events: u64,
    /// The settings, for display.
    #[serde(default)]
    pub out_of_orderness_ms: i64,
    #[serde(default)]
    pub allowed_lateness_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Watermarks {
    out_of_order_ms: i64,
    lateness_ms: i64,
    idle_ms: i64,
    shards: BTreeMap<String, ShardMark>,
    late: u64,
}

impl Watermarks {
    pub fn new(out_of_order_ms: u64, lateness_ms: u64, idle_ms: u64) -> Watermarks {
        Watermarks {
            out_of_order_ms: out_of_order_ms as i64,
            lateness_ms: lateness_ms as i64,
            idle_ms: idle_ms.max(1) as i64,
            shards: BTreeMap::new(),
            late: 0,
        }
    }

    /// The global watermark at arrival time `now_ms`: None until some shard has data.
    pub fn global(&self, now_ms: i64) -> Option<i64> {
        let active = self
            .shards
            .values()
            .filter(|m| now_ms - m.last_arrival_ms < self.idle_ms);
        let min = active.map(|m| m.max_event_ms - self.out_of_order_ms).min();
        // All idle: the most advanced shard leads (nothing else can hold time back).
        min.or_else(|| {
            self.shards
                .values()
                .map(|m| m.max_event_ms - self.out_of_order_ms)
                .max()
        })
    }

    /// Judge one event from `shard` that arrived at `arrival_ms`; returns whether it is late.
    /// Lateness is judged against the watermark before this event advances it.
    pub fn observe(&mut self, shard: &str, event_ms: i64, arrival_ms: i64) -> bool {
        let late = self
            .global(arrival_ms)
            .is_some_and(|wm| event_ms < wm - self.lateness_ms);
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
}
