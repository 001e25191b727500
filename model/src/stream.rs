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
    /// With shard leases: this instance, its shards, and the fleet as the lease table says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// One shard lease, as the lease table says and this instance watched it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRow {
    pub shard: String,
    /// None: free.
    pub owner: Option<String>,
    /// Bumped by every write (renewals included).
    pub counter: u64,
    /// Since the owner last wrote it, by the owner's clock, ms.
    pub age_ms: i64,
    /// Its counter stood still for a lease period: the owner stopped (it is taken next).
    pub expired: bool,
    /// A closed shard read to its end.
    pub finished: bool,
    /// The shard's committed checkpoint in the shared warehouse, when read.
    #[serde(default)]
    pub checkpoint: Option<u64>,
}

/// A lease this instance lost to another (a steal, or a renewal that came too late).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostLease {
    pub shard: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The fleet on one stream, as one instance sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// This instance's name in the lease table.
    pub worker: String,
    pub table: String,
    pub leases: Vec<LeaseRow>,
    /// Leases this instance lost since it started.
    pub lost: u64,
    pub last_lost: Option<LostLease>,
}

impl FleetStatus {
    /// The instances holding a live lease, with their shards (this one first); an owner whose
    /// leases all expired (it stopped) is not one.
    pub fn instances(&self) -> Vec<(String, Vec<String>)> {
        let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        if !self.worker.is_empty() {
            by.entry(self.worker.clone()).or_default();
        }
        for l in self.leases.iter().filter(|l| !l.expired) {
            if let Some(o) = &l.owner {
                by.entry(o.clone()).or_default().push(l.shard.clone());
            }
        }
        let mut out: Vec<(String, Vec<String>)> = by.into_iter().collect();
        out.sort_by_key(|(w, _)| *w != self.worker);
        out
    }

    /// Each lease's committed checkpoint, from the shared warehouse's.
    pub fn fill_checkpoints(&mut self, checkpoints: &std::collections::BTreeMap<String, u64>) {
        for l in &mut self.leases {
            l.checkpoint = checkpoints.get(&l.shard).copied();
        }
    }

    /// The shards this instance owns.
    pub fn owned(&self) -> Vec<String> {
        self.leases
            .iter()
            .filter(|l| l.owner.as_deref() == Some(self.worker.as_str()))
            .map(|l| l.shard.clone())
            .collect()
    }
}
