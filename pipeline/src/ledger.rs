//! What the metadata ledger records of a stream segment besides its STAGING file: the counts
//! `verify` reconciles (read = staged + late + quarantined + duplicate) and the shard checkpoint
//! and stream-state generation that commit in the same warehouse transaction as the load.

pub use ecom_model::stream::SegmentCounts;

/// A commit under shard leases: every shard the instance owns, with the token (the lease
/// counter it was taken at) it must still be registered under in `ops.shard_owners`, and the
/// state object that now holds those shards' dedup windows and watermarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceCommit {
    pub owner: String,
    pub state_key: String,
    pub tokens: std::collections::BTreeMap<String, u64>,
    /// The shards whose segments this load commits: the load fails unless each is still
    /// registered under its token (a shard lost meanwhile fails only loads of its own).
    pub committing: std::collections::BTreeSet<String>,
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
    /// With shard leases: the fence the group's last segment commits under (instead of
    /// `state_generation`).
    pub fence: Option<FenceCommit>,
    /// The segment's late events per event day: indexed (`ops.late_objects`) with the commit.
    pub late_days: std::collections::BTreeMap<chrono::NaiveDate, u64>,
}
