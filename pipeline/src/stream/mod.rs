//! The stream log: one trait, a local sharded append-only log (the default) and Kinesis. Records carry a per-shard sequence number and their arrival time, which the
//! consumer uses as `ingestion_time` so a replay reproduces the same STAGING rows.

pub mod consumer;
pub mod kinesis;
pub mod leases;
pub mod local;
pub mod runner;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::Result;

pub use ecom_model::stream::ShardStatus;

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// When the log accepted it, ms since the epoch.
    pub arrival_ms: i64,
    pub data: Bytes,
}

pub trait StreamLog: Send + Sync {
    fn backend(&self) -> &'static str;

    fn shards(&self) -> Vec<String>;

    /// Append records (partition key, data); none is dropped: an error fails the whole call.
    /// Records of one partition key go to one shard, in order (which shard is the backend's
    /// business: Kinesis hashes the key with MD5 into the shards' hash-key ranges).
    fn put(&self, records: Vec<(String, Bytes)>) -> BoxFuture<'_, Result<()>>;

    /// Up to `max` records of `shard` with a sequence number above `after` (all from the start
    /// with None), in order.
    fn read<'a>(
        &'a self,
        shard: &'a str,
        after: Option<u64>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>>;

    /// The last sequence number written to `shard` (Kinesis: the last one read).
    fn latest_seq<'a>(&'a self, shard: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;

    /// How far the reader is behind the shard's tip, when the backend says (Kinesis's
    /// MillisBehindLatest); `None` lets status measure it from the log.
    fn millis_behind(&self, _shard: &str) -> Option<u64> {
        None
    }

    /// An estimate of the records behind the shard's tip, where the backend cannot count them
    /// (Kinesis: sequence numbers are not counts); `None` when status counts them from the log.
    fn lag_records_estimate(&self, _shard: &str) -> Option<u64> {
        None
    }

    /// Reads of the shard refused for its throughput since this process started.
    fn read_throttles(&self, _shard: &str) -> u64 {
        0
    }

    /// Whether the shard is closed (a reshard's parent): still read to its end, not billed.
    fn closed(&self, _shard: &str) -> bool {
        false
    }

    /// Whether this process read the closed shard to its end.
    fn finished(&self, _shard: &str) -> bool {
        false
    }

    /// Another instance read the closed shard to its end (its lease says so): its children
    /// may be read here.
    fn mark_finished(&self, _shard: &str) {}

    /// The shards with their parents, listed afresh when the listing is due (lease
    /// assignment waits for parents).
    fn shard_refs(&self) -> BoxFuture<'_, Result<Vec<leases::ShardRef>>> {
        let refs = self
            .shards()
            .into_iter()
            .map(|id| leases::ShardRef {
                id,
                parents: Vec::new(),
            })
            .collect();
        Box::pin(async move { Ok(refs) })
    }
}

/// Shard names: `shard-0000`, `shard-0001`, ...
pub fn shard_names(n: u32) -> Vec<String> {
    (0..n.max(1)).map(|i| format!("shard-{i:04}")).collect()
}
