//! What the metadata ledger records of a stream segment besides its STAGING file: the counts
//! `verify` reconciles (read = staged + late + quarantined + duplicate) and the shard checkpoint
//! and stream-state generation that commit in the same warehouse transaction as the load.

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

/// What a stream segment commits together with its STAGING load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    pub shard: String,
    /// The RAW segment the counts belong to.
    pub raw_key: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub counts: SegmentCounts,
    /// The stream-state object written for this segment (`state/stream/gen-<n>.bin`): it
    /// becomes the live state only if this transaction commits.
    pub state_generation: Option<u64>,
}
