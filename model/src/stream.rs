//! What status shows of the stream path: counts, shards and their lag, dedup, watermarks.

use serde::{Deserialize, Serialize};

/// The counts of one segment (or of everything so far).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentCounts {
    pub records: u64,
    pub staged: u64,
    pub duplicates: u64,
    pub late: u64,
    pub quarantined: u64,
}

impl SegmentCounts {
    pub fn add(&mut self, o: &SegmentCounts) {
        self.records += o.records;
        self.staged += o.staged;
        self.duplicates += o.duplicates;
        self.late += o.late;
        self.quarantined += o.quarantined;
    }
}

/// Per-shard position, for status: the last sequence number in the log and the consumer's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    pub shard: String,
    pub latest_seq: Option<u64>,
    pub checkpoint: Option<u64>,
    /// Records written but not consumed: counted on the local log; on Kinesis, whose sequence
    /// numbers are not counts, estimated (`lag_estimated`) as MillisBehindLatest times the
    /// shard's recent arrival rate.
    pub lag_records: u64,
    /// Age of the oldest record not consumed (by arrival time): the local log's
    /// MillisBehindLatest; 0 when caught up.
    #[serde(default)]
    pub lag_ms: u64,
    /// `lag_records` is an estimate, not a count.
    #[serde(default)]
    pub lag_estimated: bool,
    /// Reads the service refused for the shard's throughput (Kinesis
    /// ProvisionedThroughputExceeded on GetRecords) since this process started.
    #[serde(default)]
    pub read_throttles: u64,
    /// Closed by a reshard: read to its end, no longer billed as a shard hour.
    #[serde(default)]
    pub closed: bool,
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

/// Counters for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupStats {
    pub seen: u64,
    pub duplicates: u64,
    pub tracked: u64,
    /// Generations dropped early to stay under `max_ids`.
    pub evicted_early: u64,
}

/// What status shows of the stream path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub backend: String,
    pub totals: SegmentCounts,
    pub segments: u64,
    pub dedup: DedupStats,
    pub watermarks: WatermarkStatus,
    pub shards: Vec<ShardStatus>,
}
