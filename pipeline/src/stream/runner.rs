//! The stream side of a pipeline cycle: generate events for the time since the last cycle,
//! append them to the log, drain every shard into the zones and the warehouse, refresh the
//! models. Also `ingest events FILE` and the late-buffer part of `backfill`.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};

use super::consumer::{self, Processor, ReplayReport, StreamStatus};
use super::local::{LocalLog, MAX_RECORD_BYTES};
use super::StreamLog;
use crate::batch::stage::{to_ndjson, Quarantined};
use crate::config::{Config, StreamBackend, StreamConfig};
use crate::domain::Event;
use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::store::{sha256_hex, ObjectStore};
use crate::warehouse::{self, late_index, StagedFile, Warehouse};
use crate::zones;
use ecom_model::report::IngestReport;

pub struct StreamRunner {
    cfg: StreamConfig,
    log: Arc<dyn StreamLog>,
    processor: Processor,
    generator: Option<Generator>,
    rate_per_sec: u64,
    /// Event time up to which the generator has produced.
    generated_until: Option<DateTime<Utc>>,
    segment_records: usize,
    /// A cycle's drain budget (None: until empty).
    max_segments: Option<usize>,
    lookback_days: u32,
    /// Shard leases, when several instances share the stream: taken at the first drain (a
    /// command that never drains, `verify` say, never joins the fleet).
    leases: Option<super::leases::LeaseHandle>,
    lease_config: Option<crate::config::KinesisConfig>,
}

/// Open the configured log.
pub async fn open_log(config: &Config) -> Result<Arc<dyn StreamLog>> {
    open_log_as(config, false).await
}

/// Open the configured stream log; `read_only` never creates, cuts or appends (the local log).
pub async fn open_log_as(config: &Config, read_only: bool) -> Result<Arc<dyn StreamLog>> {
    match config.stream.backend {
        StreamBackend::Local if read_only => Ok(Arc::new(LocalLog::open_read_only(
            config.data_dir.join("stream"),
            config.stream.shards,
        ))),
        StreamBackend::Local => Ok(Arc::new(LocalLog::open(
            config.data_dir.join("stream"),
            config.stream.shards,
            config.stream.local.segment_bytes,
            std::time::Duration::from_secs(config.stream.local.retention_hours * 3600),
            config.stream.local.fsync,
        )?)),
        StreamBackend::Kinesis => Ok(Arc::new(
            super::kinesis::KinesisLog::connect(&config.stream.kinesis).await?,
        )),
    }
}

/// A spawned task's result (a panic or cancellation is an error like any other).
fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| Error::Other(format!("stream task failed: {e}")))?
}

/// A partition key for a raw record: its session_id when it has one (so a session stays in
/// order on one shard), else the record's hash.
fn partition_key(line: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Key {
        session_id: Option<String>,
    }
    serde_json::from_slice::<Key>(line)
        .ok()
        .and_then(|k| k.session_id)
        .unwrap_or_else(|| sha256_hex(line))
}

impl StreamRunner {
    pub fn new(config: &Config, log: Arc<dyn StreamLog>, generate: bool) -> StreamRunner {
        let g = &config.stream.generator;
        let scale = u64::from(config.batch.scale.max(1));
        StreamRunner {
            cfg: config.stream.clone(),
            log,
            processor: Processor::new(&config.stream),
            // Users and products of the batch catalog (synthetic scale 1: 10 users, 20 products).
            generator: (generate && g.enabled).then(|| Generator::new(g, 10 * scale, 20 * scale)),
            rate_per_sec: u64::from(g.rate_per_sec),
            generated_until: None,
            segment_records: config.stream.segment_records.max(1) as usize,
            max_segments: match config.stream.max_segments_per_cycle {
                0 => None,
                n => Some(n as usize),
            },
            lookback_days: config.warehouse.lookback_days,
            leases: None,
            lease_config: (generate && config.stream.kinesis.leases.enabled)
                .then(|| config.stream.kinesis.clone()),
        }
    }

    /// Take part in the stream's shard leases (`stream.kinesis.leases`): from now on each drain
    /// reads only the shards this instance holds.
    async fn start_leases(&mut self) -> Result<()> {
        // Kept until the leases start: a drain never reads every shard because a start failed.
        let Some(k) = self.lease_config.clone() else {
            return Ok(());
        };
        let handle = super::leases::LeaseHandle::start(
            &k.leases,
            k.endpoint_url.as_deref(),
            self.log.clone(),
        )
        .await?;
        self.lease_config = None;
        self.processor.lease_mode(&handle.status().worker);
        self.leases = Some(handle);
        Ok(())
    }

    /// Hand the leases back (a stopping instance), so the others take its shards at once.
    pub async fn stop_leases(&mut self) {
        if let Some(h) = self.leases.take() {
            h.stop().await;
        }
    }

    /// The fleet as this instance sees it, when it holds leases.
    pub fn fleet(&self) -> Option<super::leases::FleetStatus> {
        self.leases.as_ref().map(|h| h.status())
    }

    pub fn log(&self) -> &Arc<dyn StreamLog> {
        &self.log
    }

    /// One cycle's stream work; a one-line summary.
    pub async fn cycle(
        &mut self,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        interval_secs: u64,
    ) -> Result<String> {
        let mut generated = 0;
        if let Some(g) = self.generator.as_mut() {
            let now = Utc::now();
            let from = self
                .generated_until
                .unwrap_or(now - chrono::Duration::seconds(interval_secs.max(1) as i64));
            let secs = (now - from).num_milliseconds().max(0) as u64 / 1000;
            let n = (secs * self.rate_per_sec).min(1_000_000);
            if n > 0 {
                let (records, _) = g.next_batch(n, from, now);
                generated = records.len();
                self.log.put(records).await?;
                self.generated_until = Some(now);
            }
        }
        let read = self.drain(store, wh, false).await?;
        Ok(format!("stream: {generated} generated; {read}"))
    }

    /// Drain every shard (a file's records as one micro-batch), refresh the models; what was
    /// read, in words.
    async fn drain(
        &mut self,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        micro_batch: bool,
    ) -> Result<String> {
        if self.lease_config.is_some() {
            self.start_leases().await?;
        }
        if let (Some(h), Some(w)) = (&self.leases, wh) {
            let owned = h.owned();
            for (shard, registered) in self.processor.own(store, w, &owned).await? {
                h.advance(&shard, registered).await?;
            }
        }
        let (log, n) = (self.log.as_ref(), self.segment_records);
        let c = if micro_batch {
            self.processor.drain_micro_batch(log, store, wh, n).await?
        } else {
            // A cycle's drain is bounded; a file's micro-batch is drained whole.
            self.processor
                .drain_some(log, store, wh, n, self.max_segments)
                .await?
        };
        if let (Some(h), Some(owned), Some(w)) = (&self.leases, self.processor.owned(), wh) {
            // A closed parent read to its end and committed to its last record: its lease is
            // finished, its children are next.
            let closed: Vec<String> = owned.keys().filter(|s| log.finished(s)).cloned().collect();
            if !closed.is_empty() {
                let committed = consumer::checkpoints(w).await?;
                for shard in closed {
                    // Nothing read past the checkpoint (None), or all of it committed.
                    let last = log.latest_seq(&shard).await?;
                    if last.is_none() || committed.get(&shard).copied() == last {
                        h.finish(&shard).await?;
                    }
                }
            }
        }
        if let Some(wh) = wh {
            warehouse::refresh_models(wh, store, self.lookback_days).await?;
        }
        Ok(format!(
            "{} records read, {} staged, {} duplicates, {} late, {} quarantined",
            c.records, c.staged, c.duplicates, c.late, c.quarantined
        ))
    }

    /// `ingest events FILE`: the file lands in RAW as received (a file already there is a
    /// duplicate: skipped), its lines go through the log like any stream record and are judged
    /// as one micro-batch (against the watermarks as they stood before the file). A line over
    /// the stream's record limit is quarantined with its line number; the rest go on.
    pub async fn ingest_file(
        &mut self,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        body: Bytes,
    ) -> Result<IngestReport> {
        let sha = sha256_hex(&body);
        let raw_key = zones::raw_file_key(&sha);
        if store.head(&raw_key).await?.is_some() {
            tracing::info!(raw_key = %raw_key, "duplicate file: already ingested, skipped");
            // A crash after RAW but before the drain left its records in the log: finish them.
            let drained = self.drain(store, wh, true).await?;
            return Ok(IngestReport {
                path: Default::default(),
                raw_key,
                duplicate: true,
                lines: 0,
                oversized: 0,
                drained,
            });
        }
        // Log first, RAW last: a crash in between feeds the file again on the rerun, which
        // dedup and the MERGE absorb; the other order could lose it.
        let started = std::time::Instant::now();
        let mut lines = 0;
        let mut batch = Vec::new();
        let mut oversized = Vec::new();
        // One append at a time, in order, while the next batch's partition keys are read.
        let mut appending: Option<tokio::task::JoinHandle<Result<()>>> = None;
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let key = partition_key(line);
            // Kinesis counts the partition key into its 1 MiB record limit.
            if line.len() + key.len() > MAX_RECORD_BYTES {
                oversized.push(Quarantined {
                    field: "record".into(),
                    reason: format!(
                        "line {}: {} bytes, over the stream's record limit of {MAX_RECORD_BYTES} \
                         bytes (partition key included)",
                        n + 1,
                        line.len() + key.len()
                    ),
                    record: serde_json::Value::String(
                        String::from_utf8_lossy(&line[..line.len().min(4096)]).into_owned(),
                    ),
                });
                continue;
            }
            batch.push((key, body.slice_ref(line)));
            if batch.len() == 10_000 {
                // The batch before is appended first: a failed append stops the feed there.
                if let Some(previous) = appending.take() {
                    joined(previous.await)?;
                }
                let (log, records) = (self.log.clone(), std::mem::take(&mut batch));
                appending = Some(tokio::spawn(async move { log.put(records).await }));
            }
        }
        if let Some(previous) = appending {
            joined(previous.await)?;
        }
        if !batch.is_empty() {
            self.log.put(batch).await?;
        }
        tracing::debug!(
            lines,
            ms = started.elapsed().as_millis() as u64,
            "file appended to the log"
        );
        if !oversized.is_empty() {
            let bad_key = zones::quarantine_key_for(&raw_key, "events")
                .ok_or_else(|| Error::Other(format!("no quarantine key for {raw_key}")))?;
            tracing::warn!(count = oversized.len(), key = %bad_key, "oversized lines quarantined");
            store
                .put(&bad_key, Bytes::from(to_ndjson(&oversized)))
                .await?;
        }
        // Hashed once, above: the store records that hash instead of computing it again.
        store.put_if_absent_hashed(&raw_key, body, &sha).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "file landed in RAW"
        );
        let drained = self.drain(store, wh, true).await?;
        Ok(IngestReport {
            path: Default::default(),
            raw_key,
            duplicate: false,
            lines,
            oversized: oversized.len() as u64,
            drained,
        })
    }

    /// Load the late-buffered events whose day is in `from..=to`: each late object holding
    /// such days (from the index, `warehouse::late_index`, which the caller has completed) has its events in range made a
    /// STAGING object and MERGEd (idempotent: a second backfill loads the same bytes, which the
    /// ledger skips), then those days of it are marked backfilled. Returns the events loaded.
    pub async fn load_late(
        &self,
        store: &dyn ObjectStore,
        wh: &dyn Warehouse,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<u64> {
        let mut loaded = 0;
        for late_key in late_index::objects_for(wh, from, to).await? {
            let body = match store.get(&late_key).await {
                Ok(b) => b,
                // Pruned: every day of it was loaded before.
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let mut events = Vec::new();
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let e: Event = serde_json::from_slice(line)
                    .map_err(|e| Error::Invalid(format!("{late_key}: {e}")))?;
                let day = e.event_time.date_naive();
                if day >= from && day <= to {
                    events.push(e);
                }
            }
            if !events.is_empty() {
                let rest = &late_key[late_index::PREFIX.len()..];
                let key = format!("{}{from}_{to}/{rest}", late_index::BACKFILL_PREFIX);
                let body = Bytes::from(to_ndjson(&events));
                store.put(&key, body.clone()).await?;
                let outcome = wh
                    .load(&StagedFile {
                        sha256: sha256_hex(&body),
                        key,
                        entity: "events".into(),
                        body,
                        source: "late".into(),
                        checkpoint: None,
                        columns: None,
                    })
                    .await?;
                loaded += outcome.rows;
            }
            wh.execute_tx(vec![late_index::backfilled_sql(
                &late_key,
                from,
                to,
                Utc::now(),
            )])
            .await?;
        }
        Ok(loaded)
    }

    /// `replay --shard S (--from-seq N | --from-time T)`.
    pub async fn replay(
        &self,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
        shard: &str,
        from_seq: Option<u64>,
        from_time: Option<DateTime<Utc>>,
    ) -> Result<ReplayReport> {
        if !self.log.shards().iter().any(|s| s == shard) {
            return Err(Error::Usage(format!(
                "no shard {shard:?}; the shards are {}",
                self.log.shards().join(", ")
            )));
        }
        let from = match (from_seq, from_time) {
            (Some(n), _) => n,
            (None, Some(t)) => self.first_seq_at(shard, t.timestamp_millis()).await?,
            (None, None) => 1,
        };
        consumer::replay(&self.cfg, self.log.as_ref(), store, wh, shard, from).await
    }

    /// The first sequence number that arrived at or after `ms` (past the end if none).
    async fn first_seq_at(&self, shard: &str, ms: i64) -> Result<u64> {
        let mut after = None;
        loop {
            let page = self.log.read(shard, after, 10_000).await?;
            let Some(last) = page.last().map(|r| r.seq) else {
                return Ok(after.map_or(1, |a| a + 1));
            };
            if let Some(r) = page.iter().find(|r| r.arrival_ms >= ms) {
                return Ok(r.seq);
            }
            after = Some(last);
        }
    }

    /// The stream's status; the dedup and watermark figures are the committed state's even
    /// before this process drained anything (a `status` of its own, a fresh start).
    pub async fn status(
        &mut self,
        store: &dyn ObjectStore,
        wh: Option<&dyn Warehouse>,
    ) -> Result<StreamStatus> {
        if let Some(w) = wh {
            // A warehouse older than the state table (opened read-only) has none to show.
            if let Err(e) = self.processor.restore(store, w).await {
                tracing::debug!(error = %e, "no committed stream state to show");
            }
        }
        let mut status = self.processor.status(self.log.as_ref(), wh).await?;
        if let Some(mut fleet) = self.fleet() {
            if let Some(w) = wh {
                fleet.fill_checkpoints(&consumer::checkpoints(w).await?);
            }
            status.fleet = Some(fleet);
        }
        Ok(status)
    }
}
