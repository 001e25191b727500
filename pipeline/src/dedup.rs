//! Deduplication by event_id in a window bounded by time and by memory.
//!
//! An id is tracked as its 64-bit hash (8 bytes, not the id string) in the generation of the
//! time slice its event_time falls in. The window is `slices` generations of `slice` length;
//! when event time moves past the newest generation the oldest is dropped whole, and when the
//! id count passes `max_ids` the oldest generations are dropped early (the window shrinks rather
//! than memory growing). A 64-bit hash means two distinct ids collide with probability about
//! n^2 / 2^65: below one in a million for ten million ids in the window.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};

use crate::codec;

pub use ecom_model::stream::DedupStats;

/// A fixed-key hasher: the same id always hashes the same, across runs and replays.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// The set stores hashes already mixed, so its own hasher passes them through.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// 64-bit FNV-1a then a murmur finaliser: fast, stable, well spread.
pub fn id_hash(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[derive(Debug)]
struct Generation {
    /// First event-time millisecond of the slice.
    start_ms: i64,
    ids: HashSet<u64, IdHash>,
}

/// The dedup window.
#[derive(Debug)]
pub struct Dedup {
    slice_ms: i64,
    slices: usize,
    max_ids: usize,
    gens: VecDeque<Generation>,
    stats: DedupStats,
}

impl Dedup {
    /// A window of `window_secs` of event time in `slices` generations, at most `max_ids` ids.
    pub fn new(window_secs: u64, slices: usize, max_ids: usize) -> Dedup {
        let slices = slices.max(1);
        Dedup {
            slice_ms: ((window_secs.max(1) * 1000) / slices as u64).max(1) as i64,
            slices,
            max_ids: max_ids.max(1),
            gens: VecDeque::new(),
            stats: DedupStats::default(),
        }
    }

    /// Whether `id` (with its event time) is new. A new id is remembered.
    pub fn first_seen(&mut self, id: &[u8], event_time_ms: i64) -> bool {
        self.stats.seen += 1;
        let h = id_hash(id);
        // Newest first: a resent event usually follows its original closely.
        if self.gens.iter().rev().any(|g| g.ids.contains(&h)) {
            self.stats.duplicates += 1;
            return false;
        }
        let start = event_time_ms.div_euclid(self.slice_ms) * self.slice_ms;
        // Find or open the generation of this slice.
        let idx = match self.gens.iter().position(|g| g.start_ms == start) {
            Some(i) => i,
            None => {
                let newest = self.gens.back().map_or(i64::MIN, |g| g.start_ms);
                if start > newest {
                    self.gens.push_back(Generation {
                        start_ms: start,
                        ids: HashSet::with_hasher(IdHash),
                    });
                    // Time moved on: drop generations that fell out of the window.
                    let horizon = start - self.slice_ms * (self.slices as i64 - 1);
                    while self.gens.front().is_some_and(|g| g.start_ms < horizon) {
                        self.drop_oldest(false);
                    }
                    self.gens.len() - 1
                } else if self.gens.front().is_some_and(|g| start < g.start_ms) {
                    // Older than the window: remember it with the oldest generation, so a
                    // burst of late copies is still caught.
                    0
                } else {
                    // A gap slice inside the window: keep generations in time order.
                    let at = self.gens.partition_point(|g| g.start_ms < start);
                    self.gens.insert(
                        at,
                        Generation {
                            start_ms: start,
                            ids: HashSet::with_hasher(IdHash),
                        },
                    );
                    at
                }
            }
        };
        self.gens[idx].ids.insert(h);
        self.stats.tracked += 1;
        while self.stats.tracked as usize > self.max_ids && self.gens.len() > 1 {
            self.drop_oldest(true);
        }
        true
    }

    fn drop_oldest(&mut self, early: bool) {
        if let Some(g) = self.gens.pop_front() {
            self.stats.tracked -= g.ids.len() as u64;
            if early {
                self.stats.evicted_early += 1;
            }
        }
    }

    /// The window as bytes (little-endian): stats, then each generation's start and id
    /// hashes, oldest first. 8 bytes per tracked id.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let s = &self.stats;
        for v in [s.seen, s.duplicates, s.tracked, s.evicted_early] {
            codec::put_u64(out, v);
        }
        codec::put_u64(out, self.gens.len() as u64);
        for g in &self.gens {
            codec::put_u64(out, g.start_ms as u64);
            codec::put_u64(out, g.ids.len() as u64);
            for h in &g.ids {
                codec::put_u64(out, *h);
            }
        }
    }

    /// A window from `encode`'s bytes, under these settings; `None` when the bytes are cut
    /// short. Generations are kept as they were (a changed slice length applies from the next
    /// generation on).
    pub fn decode(
        window_secs: u64,
        slices: usize,
        max_ids: usize,
        bytes: &mut &[u8],
    ) -> Option<Dedup> {
        let mut d = Dedup::new(window_secs, slices, max_ids);
        d.stats = DedupStats {
            seen: codec::u64(bytes)?,
            duplicates: codec::u64(bytes)?,
            tracked: codec::u64(bytes)?,
            evicted_early: codec::u64(bytes)?,
        };
        let gens = codec::u64(bytes)?;
        let mut tracked = 0;
        for _ in 0..gens {
            let start_ms = codec::u64(bytes)? as i64;
            let n = codec::u64(bytes)?;
            // Capacity from the data, capped: a corrupt count must not allocate wildly.
            let mut ids = HashSet::with_capacity_and_hasher(n.min(1 << 20) as usize, IdHash);
            for _ in 0..n {
                ids.insert(codec::u64(bytes)?);
            }
            tracked += ids.len() as u64;
            d.gens.push_back(Generation { start_ms, ids });
        }
        d.stats.tracked = tracked;
        Some(d)
    }

    pub fn stats(&self) -> DedupStats {
        self.stats
    }

    /// Heap bytes held for tracked ids: each table's buckets (a power of two, 8/7 of its
    /// capacity) of one u64 and one control byte.
    pub fn heap_bytes(&self) -> usize {
        self.gens
            .iter()
            .filter(|g| g.ids.capacity() > 0)
            .map(|g| {
                let buckets = (g.ids.capacity() * 8 / 7).next_power_of_two();
                buckets * (std::mem::size_of::<u64>() + 1)
            })
            .sum()
    }
}

/// One dedup window per shard. A shard's window moves with its own event time only, so
/// whether a copy is recognised depends on the shard's records in order, never on how drains
/// interleave shards (a resend keeps its session, so its shard).
#[derive(Debug)]
pub struct ShardWindows {
    window_secs: u64,
    slices: usize,
    max_ids: usize,
    shards: std::collections::BTreeMap<String, Dedup>,
}

impl ShardWindows {
    /// `max_ids` for each shard's window.
    pub fn new(window_secs: u64, slices: usize, max_ids: usize) -> ShardWindows {
        ShardWindows {
            window_secs,
            slices,
            max_ids,
            shards: Default::default(),
        }
    }

    /// Whether `id` is new on `shard`; a new id is remembered.
    pub fn first_seen(&mut self, shard: &str, id: &[u8], event_time_ms: i64) -> bool {
        // Hot path: allocate the key only for a shard's first record.
        if let Some(d) = self.shards.get_mut(shard) {
            return d.first_seen(id, event_time_ms);
        }
        let mut d = Dedup::new(self.window_secs, self.slices, self.max_ids);
        let first = d.first_seen(id, event_time_ms);
        self.shards.insert(shard.to_string(), d);
        first
    }

    /// `shard`'s window, taken out (a leased shard moving between instances).
    pub fn take_shard(&mut self, shard: &str) -> Option<Dedup> {
        self.shards.remove(shard)
    }

    /// Put a shard's window in (replacing any).
    pub fn put_shard(&mut self, shard: &str, d: Dedup) {
        self.shards.insert(shard.to_string(), d);
    }

    /// Counters summed over the shards.
    pub fn stats(&self) -> DedupStats {
        self.shards
            .values()
            .map(Dedup::stats)
            .fold(DedupStats::default(), |a, b| DedupStats {
                seen: a.seen + b.seen,
                duplicates: a.duplicates + b.duplicates,
                tracked: a.tracked + b.tracked,
                evicted_early: a.evicted_early + b.evicted_early,
            })
    }

    pub fn heap_bytes(&self) -> usize {
        self.shards.values().map(Dedup::heap_bytes).sum()
    }

    /// The shards' windows as bytes: their count, then each shard's name and window.
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::put_u64(out, self.shards.len() as u64);
        for (name, d) in &self.shards {
            codec::put_name(out, name);
            d.encode(out);
        }
    }

    /// Windows from `encode`'s bytes under these settings; `None` when cut short.
    pub fn decode(
        window_secs: u64,
        slices: usize,
        max_ids: usize,
        bytes: &mut &[u8],
    ) -> Option<ShardWindows> {
        let mut w = ShardWindows::new(window_secs, slices, max_ids);
        for _ in 0..codec::u64(bytes)? {
            let name = codec::name(bytes)?;
            let d = Dedup::decode(window_secs, slices, max_ids, bytes)?;
            w.shards.insert(name, d);
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_copy_within_the_window_is_a_duplicate() {
        let mut d = Dedup::new(60, 6, 1000);
        assert!(d.first_seen(b"a", 1_000));
        assert!(!d.first_seen(b"a", 1_500));
        assert!(d.first_seen(b"b", 1_500));
        assert_eq!(d.stats().duplicates, 1);
    }

    #[test]
    fn time_and_memory_bound_the_window() {
        let mut d = Dedup::new(60, 6, 1_000_000);
        assert!(d.first_seen(b"old", 0));
        // Two minutes later the first slice has left the 60 s window.
        assert!(d.first_seen(b"new", 120_000));
        assert!(d.first_seen(b"old", 120_001), "forgotten after the window");

        let mut small = Dedup::new(3600, 60, 100);
        for i in 0..1000u32 {
            small.first_seen(&i.to_le_bytes(), i64::from(i) * 1000);
        }
        assert!(small.stats().tracked <= 100, "{:?}", small.stats());
        assert!(small.stats().evicted_early > 0);
    }

    #[test]
    fn bytes_per_id_stay_small() {
        let mut d = Dedup::new(3600, 12, 10_000_000);
        let n = 500_000u64;
        for i in 0..n {
            d.first_seen(format!("evt-{i}").as_bytes(), (i / 200) as i64 * 1000);
        }
        let per_id = d.heap_bytes() as f64 / d.stats().tracked as f64;
        assert!(per_id <= 24.0, "{per_id:.1} bytes per id");
    }

    #[test]
    fn a_decoded_window_judges_as_the_original() {
        let mut d = Dedup::new(60, 6, 1000);
        for i in 0..300u32 {
            d.first_seen(&i.to_le_bytes(), i64::from(i) * 300);
        }
        let mut bytes = Vec::new();
        d.encode(&mut bytes);
        let mut back = Dedup::decode(60, 6, 1000, &mut bytes.as_slice()).unwrap();
        assert_eq!(back.stats(), d.stats());
        for i in 0..400u32 {
            let t = i64::from(i) * 300;
            assert_eq!(
                back.first_seen(&i.to_le_bytes(), t),
                d.first_seen(&i.to_le_bytes(), t),
                "id {i}"
            );
        }
        assert!(Dedup::decode(60, 6, 1000, &mut &bytes[..bytes.len() - 3]).is_none());
    }

    proptest! {
        /// Whatever the order, every id is first seen exactly once within the window.
        #[test]
        fn each_id_is_first_seen_once(ids in proptest::collection::vec(0u16..300, 1..2000)) {
            let mut d = Dedup::new(3600, 4, 1_000_000);
            let mut firsts = std::collections::HashMap::new();
            for (i, id) in ids.iter().enumerate() {
                if d.first_seen(&id.to_le_bytes(), i as i64) {
                    *firsts.entry(*id).or_insert(0) += 1;
                }
            }
            let distinct: std::collections::HashSet<_> = ids.iter().collect();
            prop_assert_eq!(firsts.len(), distinct.len());
            prop_assert!(firsts.values().all(|n| *n == 1));
        }
    }
}
