//! The stream log on Amazon Kinesis Data Streams.
//!
//! Producer: PutRecords in batches of at most 500 records and 5 MiB; after a partial failure
//! only the failed records are sent again (never the whole batch, never dropped), with
//! exponential backoff while Kinesis reports throughput exceeded.
//!
//! Consumer: one iterator per shard (TRIM_HORIZON from the start, AT_TIMESTAMP to resume),
//! at most 5 GetRecords calls per second per shard, MillisBehindLatest kept as the shard's lag,
//! ListShards on an interval with parents listed (and read to their end) before their
//! children after a reshard, and an expired iterator renewed from the last record read.
//!
//! Sequence numbers: Kinesis's are decimal strings of up to 129 digits, the pipeline's are u64
//! (segment names, checkpoints). A record's pipeline sequence number is its arrival time in ms
//! shifted left 20 bits plus its index among the shard's records of that millisecond: increasing
//! within a shard, the same on every read (so a replay names and fills RAW segments
//! byte-identically), and a resume point is found again with AT_TIMESTAMP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::{Blob, DateTime as AwsTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use futures::future::BoxFuture;

use super::{Record, StreamLog};
use crate::config::KinesisConfig;
use crate::error::{Error, Result};

/// PutRecords limits.
pub const MAX_RECORDS_PER_PUT: usize = 500;
pub const MAX_BYTES_PER_PUT: usize = 5 * 1024 * 1024;
/// GetRecords: at most 5 calls per second per shard.
const GET_RECORDS_SPACING: Duration = Duration::from_millis(200);
/// Empty GetRecords calls tried while the shard reports being behind, per read.
const MAX_EMPTY_POLLS: usize = 20;
const SEQ_SHIFT: u32 = 20;

fn aws_err(operation: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Aws {
        service: "kinesis",
        operation,
        message: e.to_string(),
    }
}

/// The pipeline sequence number of the `k`-th record of millisecond `ms`.
pub fn pipeline_seq(ms: i64, k: u64) -> u64 {
    ((ms.max(0) as u64) << SEQ_SHIFT) | k.min((1 << SEQ_SHIFT) - 1)
}

fn seq_ms(seq: u64) -> i64 {
    (seq >> SEQ_SHIFT) as i64
}

#[derive(Debug, Clone)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
    /// ListShards gives a closed shard an ending sequence number.
    closed: bool,
}

/// A shard's recent arrival rate, from the records read: records and the arrival time they
/// span, measured from the previous read's last record (so time between reads counts), halved
/// at each read so the rate follows the producer.
#[derive(Debug, Default, Clone, Copy)]
struct Rate {
    records: f64,
    span_ms: f64,
    last_ms: Option<i64>,
}

impl Rate {
    fn observe(&mut self, records: &[Record]) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let (n, from) = match self.last_ms {
            Some(prev) => (records.len(), prev),
            None => (records.len() - 1, first.arrival_ms),
        };
        self.records = self.records / 2.0 + n as f64;
        self.span_ms = self.span_ms / 2.0 + (last.arrival_ms - from).max(0) as f64;
        self.last_ms = Some(last.arrival_ms);
    }

    /// Records in `ms` of the stream at this rate, at most one a millisecond (a shard takes
    /// 1,000 records a second: a burst within one millisecond is not the shard's rate).
    fn records_in(&self, ms: u64) -> u64 {
        if self.records <= 0.0 {
            return 0;
        }
        let per_ms = (self.records / self.span_ms.max(1.0)).min(1.0);
        (ms as f64 * per_ms).round() as u64
    }
}

/// Where a shard's reader stands.
#[derive(Debug, Clone)]
struct Cursor {
    iterator: String,
    /// The last pipeline sequence number returned (what the next read resumes after).
    after: Option<u64>,
    last_ms: i64,
    last_k: u64,
}

#[derive(Debug, Default)]
struct State {
    shards: Vec<ShardInfo>,
    listed_at: Option<Instant>,
    cursors: HashMap<String, Cursor>,
    finished: HashSet<String>,
    last_call: HashMap<String, Instant>,
    millis_behind: BTreeMap<String, u64>,
    latest: BTreeMap<String, u64>,
    rates: HashMap<String, Rate>,
    read_throttles: HashMap<String, u64>,
}

pub struct KinesisLog {
    client: Client,
    stream: String,
    list_every: Duration,
    max_put_attempts: u32,
    backoff_base: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for KinesisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisLog")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Parents before children (a child is listed once all of its listed parents are).
fn parents_first(shards: Vec<ShardInfo>) -> Vec<ShardInfo> {
    let ids: HashSet<String> = shards.iter().map(|s| s.id.clone()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(shards.len());
    let mut rest = shards;
    while !rest.is_empty() {
        let before = rest.len();
        let (ready, wait): (Vec<_>, Vec<_>) = rest.into_iter().partition(|s| {
            s.parents
                .iter()
                .all(|p| !ids.contains(p) || placed.contains(p))
        });
        for s in &ready {
            placed.insert(s.id.clone());
        }
        out.extend(ready);
        rest = wait;
        if rest.len() == before {
            // A cycle cannot happen in Kinesis; never loop forever on bad data.
            out.append(&mut rest);
        }
    }
    out
}

/// A Kinesis client for the section (also for setting a stream up in tests and scripts).
pub async fn client(config: &KinesisConfig) -> Client {
    let sdk =
        crate::aws::sdk_config(config.region.as_deref(), config.endpoint_url.as_deref()).await;
    Client::new(&sdk)
}

impl KinesisLog {
    pub async fn connect(config: &KinesisConfig) -> Result<KinesisLog> {
        let log = KinesisLog::from_client(client(config).await, config);
        log.refresh_shards().await?;
        Ok(log)
    }

    pub fn from_client(client: Client, config: &KinesisConfig) -> KinesisLog {
        KinesisLog {
            client,
            stream: config.stream_name.clone(),
            list_every: Duration::from_secs(config.list_shards_interval_secs.max(1)),
            max_put_attempts: config.max_put_attempts.max(1),
            backoff_base: Duration::from_millis(config.put_backoff_base_ms.max(1)),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// ListShards (all pages); parents ordered before their children.
    pub async fn refresh_shards(&self) -> Result<()> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_shards();
            req = match &token {
                Some(t) => req.next_token(t),
                None => req.stream_name(&self.stream),
            };
            let out = req.send().await.map_err(|e| {
                aws_err("ListShards", aws_sdk_kinesis::error::DisplayErrorContext(e))
            })?;
            for s in out.shards() {
                let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_string)
                    .collect();
                shards.push(ShardInfo {
                    id: s.shard_id().to_string(),
                    parents,
                    closed: s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .is_some(),
                });
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut st = self.lock();
        st.shards = parents_first(shards);
        st.listed_at = Some(Instant::now());
        Ok(())
    }

    async fn put_chunk(&self, mut pending: Vec<(String, Bytes)>) -> Result<()> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let entries = pending
                .iter()
                .map(|(k, d)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(k)
                        .data(Blob::new(d.to_vec()))
                        .build()
                        .map_err(|e| aws_err("PutRecords", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let sent = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await;
            let throttled = match sent {
                Ok(out) => {
                    if out.failed_record_count().unwrap_or(0) == 0 {
                        return Ok(());
                    }
                    // Keep exactly the records that failed, in order.
                    let results = out.records();
                    let mut again = Vec::new();
                    let mut throttled = false;
                    for (rec, res) in pending.into_iter().zip(results) {
                        if let Some(code) = res.error_code() {
                            throttled |= code == "ProvisionedThroughputExceededException";
                            again.push(rec);
                        }
                    }
                    tracing::warn!(
                        failed = again.len(),
                        attempt,
                        "kinesis PutRecords partial failure; resending only the failed records"
                    );
                    pending = again;
                    if pending.is_empty() {
                        return Ok(());
                    }
                    throttled
                }
                Err(e) => {
                    let throttled = e
                        .as_service_error()
                        .is_some_and(|s| s.is_provisioned_throughput_exceeded_exception());
                    if !throttled || attempt >= self.max_put_attempts {
                        return Err(aws_err(
                            "PutRecords",
                            aws_sdk_kinesis::error::DisplayErrorContext(e),
                        ));
                    }
                    true
                }
            };
            if attempt >= self.max_put_attempts {
                return Err(aws_err(
                    "PutRecords",
                    format!(
                        "{} record(s) still failing after {attempt} attempts",
                        pending.len()
                    ),
                ));
            }
            let factor = if throttled {
                2u32.saturating_pow(attempt)
            } else {
                1
            };
            tokio::time::sleep((self.backoff_base * factor).min(Duration::from_secs(5))).await;
        }
    }

    async fn new_iterator(&self, shard: &str, after: Option<u64>) -> Result<Option<String>> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard);
        req = match after {
            None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(AwsTime::from_millis(seq_ms(seq))),
        };
        let out = req.send().await.map_err(|e| {
            aws_err(
                "GetShardIterator",
                aws_sdk_kinesis::error::DisplayErrorContext(e),
            )
        })?;
        Ok(out.shard_iterator().map(str::to_string))
    }

    /// Sleep so this shard sees at most 5 GetRecords calls a second.
    async fn pace(&self, shard: &str) {
        let wait = {
            let st = self.lock();
            st.last_call
                .get(shard)
                .map(|t| GET_RECORDS_SPACING.saturating_sub(t.elapsed()))
        };
        if let Some(w) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(w).await;
        }
        self.lock()
            .last_call
            .insert(shard.to_string(), Instant::now());
    }

    /// ListShards again when `list_shards_interval_secs` has passed (a reshard is seen).
    async fn refresh_if_due(&self) -> Result<()> {
        let due = self
            .lock()
            .listed_at
            .is_none_or(|t| t.elapsed() >= self.list_every);
        if due {
            self.refresh_shards().await?;
        }
        Ok(())
    }

    async fn read_shard(&self, shard: &str, after: Option<u64>, max: usize) -> Result<Vec<Record>> {
        self.refresh_if_due().await?;
        {
            let st = self.lock();
            let info = st.shards.iter().find(|s| s.id == shard);
            let parents_done = info.is_none_or(|i| {
                i.parents
                    .iter()
                    .all(|p| st.finished.contains(p) || !st.shards.iter().any(|s| &s.id == p))
            });
            if !parents_done {
                // A child waits until its parents are read to their end.
                return Ok(Vec::new());
            }
            if st.finished.contains(shard) && st.cursors.get(shard).is_none_or(|c| c.after == after)
            {
                return Ok(Vec::new());
            }
        }
        let cached = self
            .lock()
            .cursors
            .get(shard)
            .filter(|c| c.after == after)
            .cloned();
        let mut cursor = match cached {
            Some(c) => c,
            None => match self.new_iterator(shard, after).await? {
                Some(it) => Cursor {
                    iterator: it,
                    after,
                    last_ms: i64::MIN,
                    last_k: 0,
                },
                None => return Ok(Vec::new()),
            },
        };
        let mut empty_polls = 0;
        // Transient failures retried here (the SDK's retries are off for GetRecords).
        let mut transient = 0u32;
        let mut renewed = false;
        loop {
            self.pace(shard).await;
            let resp = self
                .client
                .get_records()
                .shard_iterator(&cursor.iterator)
                .limit(max.clamp(1, 10_000) as i32)
                // This loop retries a throttled read itself (after a second, and counts it):
                // the SDK's own retries would hide every throttle from the count.
                .customize()
                .config_override(
                    aws_sdk_kinesis::config::Builder::default()
                        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled()),
                )
                .send()
                .await;
            let out = match resp {
                Ok(o) => o,
                Err(e) => {
                    let svc = e.as_service_error();
                    if svc.is_some_and(|s| s.is_expired_iterator_exception()) && !renewed {
                        // Renewed from the last record read, once per read.
                        renewed = true;
                        tracing::info!(shard, "kinesis iterator expired; renewing it");
                        match self.new_iterator(shard, cursor.after).await? {
                            Some(it) => {
                                cursor = Cursor {
                                    iterator: it,
                                    after: cursor.after,
                                    last_ms: i64::MIN,
                                    last_k: 0,
                                };
                                continue;
                            }
                            None => return Ok(Vec::new()),
                        }
                    }
                    if svc.is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) {
                        *self
                            .lock()
                            .read_throttles
                            .entry(shard.to_string())
                            .or_default() += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    // What the SDK's standard retries covered: the service's 5xx and
                    // internal failures, KMS throttling, timeouts and lost connections.
                    let retryable = matches!(
                        e,
                        aws_sdk_kinesis::error::SdkError::DispatchFailure(_)
                            | aws_sdk_kinesis::error::SdkError::TimeoutError(_)
                            | aws_sdk_kinesis::error::SdkError::ResponseError(_)
                    ) || e
                        .raw_response()
                        .is_some_and(|r| r.status().is_server_error())
                        || svc.is_some_and(|s| {
                            s.is_kms_throttling_exception()
                                || s.meta().code() == Some("InternalFailure")
                        });
                    if retryable && transient < 3 {
                        transient += 1;
                        tokio::time::sleep(Duration::from_millis(100 << transient)).await;
                        continue;
                    }
                    return Err(aws_err(
                        "GetRecords",
                        aws_sdk_kinesis::error::DisplayErrorContext(e),
                    ));
                }
            };
            let behind = out.millis_behind_latest().unwrap_or(0).max(0) as u64;
            let mut records = Vec::new();
            for r in out.records() {
                let ms = r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or(0)
                    .max(cursor.last_ms.max(0));
                let k = if ms == cursor.last_ms {
                    cursor.last_k + 1
                } else {
                    0
                };
                cursor.last_ms = ms;
                cursor.last_k = k;
                let seq = pipeline_seq(ms, k);
                if after.is_some_and(|a| seq <= a) {
                    continue;
                }
                records.push(Record {
                    seq,
                    arrival_ms: ms,
                    data: Bytes::copy_from_slice(r.data().as_ref()),
                });
            }
            let next = out.next_shard_iterator().map(str::to_string);
            let mut st = self.lock();
            st.millis_behind.insert(shard.to_string(), behind);
            st.rates
                .entry(shard.to_string())
                .or_default()
                .observe(&records);
            if let Some(last) = records.last() {
                st.latest.insert(shard.to_string(), last.seq);
                cursor.after = Some(last.seq);
            }
            match next {
                Some(it) => {
                    cursor.iterator = it;
                    st.cursors.insert(shard.to_string(), cursor.clone());
                }
                None => {
                    // The shard is closed (resharded) and read to its end.
                    st.finished.insert(shard.to_string());
                    st.cursors.insert(shard.to_string(), cursor.clone());
                    return Ok(records);
                }
            }
            drop(st);
            if !records.is_empty() || behind == 0 {
                return Ok(records);
            }
            empty_polls += 1;
            if empty_polls >= MAX_EMPTY_POLLS {
                return Ok(records);
            }
        }
    }
}

impl StreamLog for KinesisLog {
    fn backend(&self) -> &'static str {
        "kinesis"
    }

    fn shards(&self) -> Vec<String> {
        self.lock().shards.iter().map(|s| s.id.clone()).collect()
    }

    fn finished(&self, shard: &str) -> bool {
        self.lock().finished.contains(shard)
    }

    fn mark_finished(&self, shard: &str) {
        self.lock().finished.insert(shard.to_string());
    }

    fn shard_refs(&self) -> BoxFuture<'_, Result<Vec<super::leases::ShardRef>>> {
        Box::pin(async move {
            self.refresh_if_due().await?;
            Ok(self
                .lock()
                .shards
                .iter()
                .map(|s| super::leases::ShardRef {
                    id: s.id.clone(),
                    parents: s.parents.clone(),
                })
                .collect())
        })
    }

    fn put(&self, records: Vec<(String, Bytes)>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            for (k, d) in records {
                let size = k.len() + d.len();
                if !chunk.is_empty()
                    && (chunk.len() == MAX_RECORDS_PER_PUT || bytes + size > MAX_BYTES_PER_PUT)
                {
                    self.put_chunk(std::mem::take(&mut chunk)).await?;
                    bytes = 0;
                }
                bytes += size;
                chunk.push((k, d));
            }
            if !chunk.is_empty() {
                self.put_chunk(chunk).await?;
            }
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        shard: &'a str,
        after: Option<u64>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        Box::pin(self.read_shard(shard, after, max))
    }

    fn latest_seq<'a>(&'a self, shard: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        let latest = self.lock().latest.get(shard).copied();
        Box::pin(async move { Ok(latest) })
    }

    fn millis_behind(&self, shard: &str) -> Option<u64> {
        Some(self.lock().millis_behind.get(shard).copied().unwrap_or(0))
    }

    fn lag_records_estimate(&self, shard: &str) -> Option<u64> {
        let st = self.lock();
        let behind = st.millis_behind.get(shard).copied().unwrap_or(0);
        Some(st.rates.get(shard).map_or(0, |r| r.records_in(behind)))
    }

    fn read_throttles(&self, shard: &str) -> u64 {
        self.lock().read_throttles.get(shard).copied().unwrap_or(0)
    }

    fn closed(&self, shard: &str) -> bool {
        self.lock().shards.iter().any(|s| s.id == shard && s.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_by_time_then_index() {
        assert!(pipeline_seq(1_000, 5) < pipeline_seq(1_001, 0));
        assert!(pipeline_seq(1_000, 0) < pipeline_seq(1_000, 1));
        assert_eq!(
            seq_ms(pipeline_seq(1_790_000_000_123, 7)),
            1_790_000_000_123
        );
        // Fits the warehouse's BIGINT for millennia.
        assert!(pipeline_seq(4_102_444_800_000, (1 << 20) - 1) < i64::MAX as u64);
    }

    #[test]
    fn the_lag_estimate_follows_the_recent_arrival_rate() {
        let recs = |start: i64, n: i64, gap: i64| -> Vec<Record> {
            (0..n)
                .map(|i| Record {
                    seq: i as u64,
                    arrival_ms: start + i * gap,
                    data: Bytes::new(),
                })
                .collect()
        };
        let mut r = Rate::default();
        assert_eq!(r.records_in(1_000), 0, "nothing read: no rate");
        r.observe(&recs(0, 11, 10));
        assert_eq!(r.records_in(1_000), 100);
        // A burst within one millisecond counts as one record per millisecond at least.
        let mut burst = Rate::default();
        burst.observe(&recs(0, 50, 0));
        assert_eq!(
            burst.records_in(10),
            10,
            "at most a shard's 1,000 records a second"
        );
        // Time between reads counts: 10 records, then 10 more a second later.
        let mut slow = Rate::default();
        slow.observe(&recs(0, 10, 1));
        slow.observe(&recs(1_000, 10, 1));
        assert!(slow.records_in(1_000) < 50, "{}", slow.records_in(1_000));
    }

    #[test]
    fn parents_come_before_children() {
        let s = |id: &str, parents: &[&str]| ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            closed: false,
        };
        let order: Vec<String> = parents_first(vec![
            s("c3", &["c1", "c2"]),
            s("c1", &["p0"]),
            s("c2", &["p0"]),
            s("p0", &[]),
            s("x", &["gone"]),
        ])
        .into_iter()
        .map(|s| s.id)
        .collect();
        let pos = |id: &str| order.iter().position(|o| o == id).unwrap();
        assert!(pos("p0") < pos("c1") && pos("p0") < pos("c2"));
        assert!(pos("c1") < pos("c3") && pos("c2") < pos("c3"));
        assert_eq!(order.len(), 5);
    }
}
