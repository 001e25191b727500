//! The TOML config. Every key has a default that runs fully offline; `config.toml.example`
//! documents each one. Unknown keys are errors (`deny_unknown_fields`) so a typo never silently
//! falls back to a default. AWS credentials never come from here: only the standard AWS chain.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use ecom_model::alerts::{AlertOp, AlertRule, Severity};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where all local state lives: object store, stream log, DuckDB file, lock, socket, logs.
    pub data_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// The object store behind the RAW/STAGING/CURATED zones.
    pub store: StoreConfig,
    /// The event stream transport.
    pub stream: StreamConfig,
    /// The warehouse that CURATED models are MERGEd into.
    pub warehouse: WarehouseConfig,
    /// Batch ingestion (FakeStore-compatible API or the synthetic source).
    pub batch: BatchConfig,
    /// Metrics publication.
    pub telemetry: TelemetryConfig,
    /// Scheduling of the long-running pipeline (dashboard and `--no-ui`).
    pub runtime: RuntimeConfig,
    /// Prices and the monthly budget behind `ecomops cost` and the "cost growth" scenario.
    pub cost: CostConfig,
    /// Retention and storage-class transitions per zone (`ecomops prune`, `ecomops lifecycle`).
    pub lifecycle: LifecycleConfig,
    /// Alert rules evaluated in process on every snapshot.
    pub alerts: Vec<AlertRule>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            stream: StreamConfig::default(),
            warehouse: WarehouseConfig::default(),
            batch: BatchConfig::default(),
            telemetry: TelemetryConfig::default(),
            runtime: RuntimeConfig::default(),
            cost: CostConfig::default(),
            lifecycle: LifecycleConfig::default(),
            alerts: AlertRule::defaults(),
        }
    }
}

/// Scheduling of the long-running pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Seconds between pipeline cycles (each runs whatever is due: batch on its own interval).
    pub cycle_interval_secs: u64,
    /// Seconds between refreshes of statistics (zones, warehouse, stream, costs).
    pub stats_interval_secs: u64,
    /// Seconds between full listings of the zones (a LIST request per 1,000 objects on S3);
    /// between two, zone figures move with what this process writes and deletes. At least
    /// `stats_interval_secs`.
    pub zone_listing_interval_secs: u64,
    /// Seconds between integrity scans of RAW and STAGING (objects read and checked against
    /// their recorded SHA-256: the "partial write" detection). 0 turns scans off.
    pub integrity_scan_interval_secs: u64,
    /// Bytes of older objects re-read per scan, as a rolling sample (objects written since the
    /// last scan are always read): a scan costs what was written plus this, not all data.
    pub integrity_scan_budget_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cycle_interval_secs: 10,
            stats_interval_secs: 30,
            zone_listing_interval_secs: 3_600,
            integrity_scan_interval_secs: 300,
            integrity_scan_budget_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Prices (USD) and the budget. The defaults are AWS us-east-1 list prices as of 2026-11;
/// check them against your contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostConfig {
    /// Monthly budget; a projection above it is the "cost growth" scenario.
    pub budget_usd_month: f64,
    /// Hold the budget against every service priced as if on AWS, the local ones included
    /// (capacity planning before a move). Off: only what runs on AWS here is billed, so an
    /// all-local instance is never over budget.
    pub budget_covers_local: bool,
    /// The date the prices were taken, shown next to every estimate.
    pub prices_as_of: String,
    /// S3 Standard, per GB-month.
    pub s3_standard_gb_month: f64,
    /// S3 Standard-IA, per GB-month.
    pub s3_standard_ia_gb_month: f64,
    /// S3 Glacier Instant Retrieval, per GB-month.
    pub s3_glacier_ir_gb_month: f64,
    /// S3 PUT, COPY, POST, LIST requests, per 1,000.
    pub s3_put_per_1000: f64,
    /// S3 GET and other requests, per 1,000.
    pub s3_get_per_1000: f64,
    /// How Kinesis is billed: `provisioned` (shard-hours + PUT payload units) or `on_demand`
    /// (stream-hours + GB ingested).
    pub kinesis_mode: KinesisBilling,
    /// Kinesis Data Streams provisioned: per shard-hour.
    pub kinesis_shard_hour: f64,
    /// Kinesis on-demand: per stream-hour.
    pub kinesis_on_demand_stream_hour: f64,
    /// Kinesis on-demand: per GB ingested.
    pub kinesis_on_demand_gb_in: f64,
    /// Kinesis PUT payload units (25 KB each), per million.
    pub kinesis_put_units_per_million: f64,
    /// How Redshift is billed: `serverless` (RPU-hours while statements run) or
    /// `provisioned` (node-hours, all month).
    pub redshift_mode: RedshiftBilling,
    /// Redshift Serverless, per RPU-hour.
    pub redshift_rpu_hour: f64,
    /// RPUs the workgroup runs at (the base capacity).
    pub redshift_base_rpus: f64,
    /// Redshift provisioned, per node-hour (ra3.xlplus on demand).
    pub redshift_node_hour: f64,
    /// Nodes of the provisioned cluster.
    pub redshift_nodes: u32,
    /// CloudWatch custom metrics, per metric-month.
    pub cloudwatch_metric_month: f64,
    /// CloudWatch standard-resolution alarms, per alarm-month.
    pub cloudwatch_alarm_month: f64,
}

impl Default for CostConfig {
    fn default() -> Self {
        CostConfig {
            budget_usd_month: 100.0,
            budget_covers_local: false,
            prices_as_of: "2026-11-01 us-east-1".into(),
            s3_standard_gb_month: 0.023,
            s3_standard_ia_gb_month: 0.0125,
            s3_glacier_ir_gb_month: 0.004,
            s3_put_per_1000: 0.005,
            s3_get_per_1000: 0.0004,
            kinesis_mode: KinesisBilling::Provisioned,
            kinesis_shard_hour: 0.015,
            kinesis_on_demand_stream_hour: 0.04,
            kinesis_on_demand_gb_in: 0.08,
            kinesis_put_units_per_million: 0.014,
            redshift_mode: RedshiftBilling::Serverless,
            redshift_rpu_hour: 0.375,
            redshift_base_rpus: 8.0,
            redshift_node_hour: 1.086,
            redshift_nodes: 2,
            cloudwatch_metric_month: 0.30,
            cloudwatch_alarm_month: 0.10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KinesisBilling {
    Provisioned,
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedshiftBilling {
    Serverless,
    Provisioned,
}

/// Lifecycle rules of one zone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZoneLifecycle {
    /// Delete objects older than this many days (0 = keep forever). Local pruning deletes only
    /// objects the ledger shows loaded to CURATED.
    pub retention_days: u32,
    /// Move to S3 Standard-IA after this many days (0 = never; S3 only).
    pub transition_ia_days: u32,
    /// Move to S3 Glacier Instant Retrieval after this many days (0 = never; S3 only).
    pub transition_glacier_days: u32,
}

/// Retention and transitions per zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    pub raw: ZoneLifecycle,
    pub staging: ZoneLifecycle,
    pub quarantine: ZoneLifecycle,
    /// CURATED daily-model rows (by day) older than this many days are deleted by `prune`
    /// (0 = keep forever).
    pub curated_days: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            raw: ZoneLifecycle {
                retention_days: 365,
                transition_ia_days: 30,
                transition_glacier_days: 90,
            },
            staging: ZoneLifecycle {
                retention_days: 90,
                transition_ia_days: 30,
                transition_glacier_days: 0,
            },
            quarantine: ZoneLifecycle {
                retention_days: 30,
                transition_ia_days: 0,
                transition_glacier_days: 0,
            },
            curated_days: 730,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. "info" or "ecom_pipeline=debug,info". `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json` lines on stderr (`--log-format` overrides it).
    pub format: LogFormat,
    /// Rotated log files kept in `<data_dir>/logs` while the dashboard owns the terminal.
    pub max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            max_files: 7,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Which object store holds the zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `local` (a directory, the default) or `s3`.
    pub backend: StoreBackend,
    /// The local directory store.
    pub local: LocalStoreConfig,
    /// The S3 store.
    pub s3: S3Config,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Local,
            local: LocalStoreConfig::default(),
            s3: S3Config::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Local,
    S3,
}

/// The local directory store.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalStoreConfig {
    /// Root directory; empty means `<data_dir>/store`.
    pub root: Option<PathBuf>,
}

/// An S3 bucket (or any S3-compatible endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name; required when `store.backend = "s3"`.
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. "ecomops/"; empty for the bucket root.
    pub prefix: String,
    /// AWS region; unset means the standard chain (AWS_REGION, profile).
    pub region: Option<String>,
    /// Endpoint override for LocalStack, moto or MinIO, e.g. "http://127.0.0.1:5000".
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3 emulators.
    pub force_path_style: bool,
    /// Objects at least this large are uploaded with multipart upload.
    pub multipart_threshold_bytes: u64,
    /// Part size for multipart uploads (S3's minimum is 5 MiB, except the last part).
    pub multipart_part_size_bytes: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            region: None,
            endpoint_url: None,
            force_path_style: false,
            multipart_threshold_bytes: 16 * 1024 * 1024,
            multipart_part_size_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// `local` (a sharded append-only log in the data dir, the default) or `kinesis`.
    pub backend: StreamBackend,
    /// Number of shards of the local log.
    pub shards: u32,
    /// Records per RAW segment: segments are cut by count, never by the clock, so a replay
    /// writes the same files.
    pub segment_records: u32,
    /// Segments one cycle drains at most, one per shard in turn (0: until every shard is
    /// empty). A backlog then drains over several cycles, with commands answered in between.
    pub max_segments_per_cycle: u32,
    /// Segments loaded into the warehouse in one transaction (their ledger rows, counts and
    /// checkpoints with them, all or nothing). More amortise a transaction's fixed cost over
    /// more rows, but hold more in memory (two groups at a time: one loading, one staging) and
    /// redo more after a failure; 4 was the fastest measured with the 1M-event workload and
    /// kept its peak RSS at DuckDB SQL's. DuckDB only: Redshift loads one segment a
    /// transaction.
    pub segments_per_commit: u32,
    /// The local log's files.
    pub local: LocalLogConfig,
    /// The event generator that feeds the stream in the dashboard, `--no-ui` and `stream run`.
    pub generator: GeneratorConfig,
    /// Deduplication by event_id.
    pub dedup: DedupConfig,
    /// Event-time watermarks and lateness.
    pub watermark: WatermarkConfig,
    /// Amazon Kinesis Data Streams.
    pub kinesis: KinesisConfig,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            backend: StreamBackend::Local,
            shards: 4,
            segment_records: 10_000,
            max_segments_per_cycle: 100,
            segments_per_commit: 4,
            local: LocalLogConfig::default(),
            generator: GeneratorConfig::default(),
            dedup: DedupConfig::default(),
            watermark: WatermarkConfig::default(),
            kinesis: KinesisConfig::default(),
        }
    }
}

/// The local stream log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalLogConfig {
    /// A shard's segment file rolls over past this size, bytes.
    pub segment_bytes: u64,
    /// Whole segments older than this are deleted (as Kinesis expires records), hours.
    pub retention_hours: u64,
    /// fsync after every append (durable against power loss; slower).
    pub fsync: bool,
}

impl Default for LocalLogConfig {
    fn default() -> Self {
        LocalLogConfig {
            segment_bytes: 64 * 1024 * 1024,
            retention_hours: 24,
            fsync: false,
        }
    }
}

/// The clickstream generator: sessions walking the funnel, with fault knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Generate events in the dashboard and `--no-ui` cycles.
    pub enabled: bool,
    /// Events per second of wall time between cycles.
    pub rate_per_sec: u32,
    pub seed: u64,
    /// Probability that a viewing session adds to cart, then checks out, then purchases.
    pub view_to_cart: f64,
    pub cart_to_checkout: f64,
    pub checkout_to_purchase: f64,
    /// Share of events sent twice (same event_id).
    pub duplicate_rate: f64,
    /// Largest random shift of event_time (out-of-order delivery), milliseconds.
    pub disorder_ms: u64,
    /// Share of events whose event_time is `late_by_secs` in the past.
    pub late_rate: f64,
    pub late_by_secs: u64,
    /// Share of records that are malformed (bad JSON, unknown type, bad ids).
    pub malformed_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            enabled: true,
            rate_per_sec: 50,
            seed: 7,
            view_to_cart: 0.3,
            cart_to_checkout: 0.6,
            checkout_to_purchase: 0.7,
            duplicate_rate: 0.02,
            disorder_ms: 5_000,
            late_rate: 0.01,
            late_by_secs: 7_200,
            malformed_rate: 0.005,
        }
    }
}

/// Deduplication by event_id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Event-time span in which a resent event_id is recognised, seconds.
    pub window_secs: u64,
    /// Most ids tracked over all shards (about 20 bytes each; each shard's window holds
    /// `max_ids / shards`); past it the oldest part of a window goes.
    pub max_ids: u64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window_secs: 3600,
            max_ids: 10_000_000,
        }
    }
}

/// Event-time watermarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// A shard's watermark is its largest event_time minus this, milliseconds.
    pub out_of_orderness_ms: u64,
    /// Events further behind their shard's watermark than this are late (late buffer), seconds.
    pub allowed_lateness_secs: u64,
    /// A shard with no record for this long stops holding the global watermark, seconds.
    pub idle_timeout_secs: u64,
    /// An event whose event_time is further than this ahead of its arrival is quarantined
    /// (reason given) and never moves a watermark, seconds.
    pub max_future_skew_secs: u64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig {
            out_of_orderness_ms: 10_000,
            allowed_lateness_secs: 600,
            idle_timeout_secs: 60,
            max_future_skew_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamBackend {
    Local,
    Kinesis,
}

/// A Kinesis data stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KinesisConfig {
    /// Stream name.
    pub stream_name: String,
    /// AWS region; unset means the standard chain.
    pub region: Option<String>,
    /// Endpoint override (LocalStack, moto).
    pub endpoint_url: Option<String>,
    /// Seconds between ListShards calls (a reshard is picked up within this).
    pub list_shards_interval_secs: u64,
    /// PutRecords attempts for records that keep failing before the put is an error.
    pub max_put_attempts: u32,
    /// First backoff after a throttled PutRecords, doubling per attempt (capped at 5 s).
    pub put_backoff_base_ms: u64,
    /// Shard leases in DynamoDB, for several instances on one stream (off: this instance reads
    /// every shard).
    pub leases: LeaseConfig,
}

/// Shard leases (the Kinesis Client Library's scheme): one DynamoDB item per shard naming its
/// owner and a counter the owner bumps to renew; every write is conditional on the counter
/// read. Each instance renews its own, takes leases whose counter stood still for a lease
/// period, and balances toward an even share. The counter at which a shard was taken fences the
/// warehouse: a load carrying an older one is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// Use leases. Needs Kinesis, the S3 store and a warehouse the instances share (`postgres`
    /// or `redshift`).
    pub enabled: bool,
    /// The lease table, created (on-demand billing) when missing.
    pub table: String,
    /// This instance's name in the table; unset: `<hostname>-<pid>-<start ms>`, new at every
    /// start (a restarted instance takes its shards back like any other).
    pub worker_id: Option<String>,
    /// A lease whose counter has not moved for this long is expired and may be taken.
    pub lease_secs: u64,
    /// How often leases are renewed and the table read (at most a third of `lease_secs`).
    pub renew_secs: u64,
    /// DynamoDB endpoint override (moto, DynamoDB Local); unset: the stream's `endpoint_url`.
    pub endpoint_url: Option<String>,
}

impl LeaseConfig {
    /// The worker name this config gives, or this process's (host, pid, start time: the same
    /// for every caller, so the warehouse's holds and the leases name one instance alike).
    pub fn worker(&self) -> String {
        static FRESH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        self.worker_id.clone().unwrap_or_else(|| {
            FRESH
                .get_or_init(|| {
                    let host = nix::unistd::gethostname()
                        .ok()
                        .and_then(|h| h.into_string().ok())
                        .unwrap_or_else(|| "host".into());
                    format!(
                        "{host}-{}-{}",
                        std::process::id(),
                        crate::clock::now_ms().max(0)
                    )
                })
                .clone()
        })
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            enabled: false,
            table: "ecomops-leases".into(),
            worker_id: None,
            lease_secs: 30,
            renew_secs: 5,
            endpoint_url: None,
        }
    }
}

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            stream_name: "ecomops-events".into(),
            region: None,
            endpoint_url: None,
            list_shards_interval_secs: 60,
            max_put_attempts: 8,
            put_backoff_base_ms: 100,
            leases: LeaseConfig::default(),
        }
    }
}

/// The warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseConfig {
    /// `duckdb` (one file in the data dir, the default), `redshift` (through the Data API) or
    /// `postgres` (a PostgreSQL database: one writing instance, or every instance of a fleet
    /// under `stream.kinesis.leases`; the Redshift SQL). A fleet shares `postgres` or
    /// `redshift`.
    pub backend: WarehouseBackend,
    /// Days before each dirty day that a model refresh also recomputes (late data lands there).
    pub lookback_days: u32,
    /// The embedded DuckDB warehouse.
    pub duckdb: DuckDbConfig,
    /// Amazon Redshift through the Data API.
    pub redshift: RedshiftConfig,
    /// PostgreSQL.
    pub postgres: PostgresConfig,
    /// Data-quality checks (`verify`, the snapshot and its metrics).
    pub quality: QualityConfig,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            backend: WarehouseBackend::Duckdb,
            lookback_days: 2,
            duckdb: DuckDbConfig::default(),
            redshift: RedshiftConfig::default(),
            postgres: PostgresConfig::default(),
            quality: QualityConfig::default(),
        }
    }
}

/// Data-quality checks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// How old each STAGING table's newest data may be before it counts as stale.
    pub freshness_sla_secs: FreshnessSla,
}

/// Seconds since the last successful pull (batch tables) or committed stream segment (events)
/// within which a table is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreshnessSla {
    pub products: u64,
    pub users: u64,
    pub orders: u64,
    pub order_items: u64,
    pub events: u64,
}

impl Default for FreshnessSla {
    fn default() -> Self {
        // Two hourly batch runs; the stream commits every cycle.
        FreshnessSla {
            products: 7_200,
            users: 7_200,
            orders: 7_200,
            order_items: 7_200,
            events: 1_800,
        }
    }
}

impl FreshnessSla {
    /// (table entity, seconds).
    pub fn entries(&self) -> [(&'static str, u64); 5] {
        [
            ("products", self.products),
            ("users", self.users),
            ("orders", self.orders),
            ("order_items", self.order_items),
            ("events", self.events),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarehouseBackend {
    Duckdb,
    Redshift,
    Postgres,
}

/// The embedded DuckDB warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DuckDbConfig {
    /// Database file; empty means `<data_dir>/warehouse.duckdb`.
    pub path: Option<PathBuf>,
    /// DuckDB's worker threads while a load runs (1..=256): stream segments, and batch files,
    /// backfills and replays alike. One by default: the stream stages the next group on the
    /// other core meanwhile, and a second DuckDB thread only competed with it. Model refreshes,
    /// queries and readers use DuckDB's default (one per core).
    pub threads: u32,
}

impl Default for DuckDbConfig {
    fn default() -> Self {
        DuckDbConfig {
            path: None,
            threads: 1,
        }
    }
}

/// A PostgreSQL warehouse: the Redshift statements run on it, each load one transaction with its
/// own temporary scratch table; one writing instance at a time (an advisory lock), readers any.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq key=value connection string without the password, e.g.
    /// `host=10.0.0.5 port=5432 user=ecomops dbname=analytics` (no TLS: a private network).
    pub connection: String,
    /// The environment variable that holds the password (never in the file); unset: none.
    pub password_env: Option<String>,
}

/// Redshift through the Data API. Either `workgroup_name` (Serverless) or
/// `cluster_identifier` (provisioned) is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedshiftConfig {
    /// Redshift Serverless workgroup.
    pub workgroup_name: Option<String>,
    /// Provisioned cluster identifier.
    pub cluster_identifier: Option<String>,
    /// Database name.
    pub database: String,
    /// Secrets Manager ARN holding the database credentials (preferred).
    pub secret_arn: Option<String>,
    /// Database user for temporary credentials (provisioned clusters without a secret).
    pub db_user: Option<String>,
    /// AWS region; unset means the standard chain.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
    /// A statement still running after this many seconds is cancelled and reported.
    pub statement_timeout_secs: u64,
    /// Longest wait between two DescribeStatement polls, milliseconds (the wait doubles from 50).
    pub poll_max_ms: u64,
    /// IAM role Redshift assumes to COPY STAGING objects from S3 (needs `store.backend = "s3"`);
    /// unset, loads fill the scratch table with multi-row INSERTs.
    pub copy_iam_role: Option<String>,
}

impl Default for RedshiftConfig {
    fn default() -> Self {
        RedshiftConfig {
            workgroup_name: None,
            cluster_identifier: None,
            database: "dev".into(),
            secret_arn: None,
            db_user: None,
            region: None,
            endpoint_url: None,
            statement_timeout_secs: 300,
            poll_max_ms: 2000,
            copy_iam_role: None,
        }
    }
}

/// Batch ingestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// `synthetic` (seeded, offline, the default) or `fakestore` (HTTP, `batch.fakestore.base_url`).
    pub source: BatchSource,
    /// Seconds between scheduled batch runs in the dashboard and `--no-ui`.
    pub interval_secs: u64,
    /// Synthetic source size multiplier: scale 1 is 20 products, 10 users, 40 carts.
    pub scale: u32,
    /// Synthetic source seed: the same seed and scale give byte-identical responses.
    pub seed: u64,
    /// A FakeStore-compatible REST API.
    pub fakestore: FakeStoreConfig,
    /// Retries with exponential backoff and jitter.
    pub retry: RetryConfig,
    /// Fields removed from every response at extraction, at any depth, before the spool and
    /// RAW: credentials never land (FakeStore's `/users` carries plaintext passwords).
    /// `password` is removed whatever this list says.
    pub redact_fields: Vec<String>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            source: BatchSource::Synthetic,
            interval_secs: 3600,
            scale: 1,
            seed: 42,
            fakestore: FakeStoreConfig::default(),
            retry: RetryConfig::default(),
            redact_fields: vec!["password".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchSource {
    Synthetic,
    Fakestore,
}

/// A FakeStore-compatible REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeStoreConfig {
    /// Base URL, e.g. "https://fakestoreapi.com".
    pub base_url: String,
    /// Timeout of one HTTP request, milliseconds.
    pub request_timeout_ms: u64,
    /// Timeout of one whole task (all attempts of one endpoint), seconds.
    pub task_timeout_secs: u64,
    /// Largest response body accepted, bytes; larger responses fail the attempt.
    pub max_body_bytes: u64,
}

impl Default for FakeStoreConfig {
    fn default() -> Self {
        FakeStoreConfig {
            base_url: "https://fakestoreapi.com".into(),
            request_timeout_ms: 10_000,
            task_timeout_secs: 300,
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Exponential backoff: delay n = min(base * multiplier^n, max), with full jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First retry delay, milliseconds.
    pub base_delay_ms: u64,
    /// Growth factor per attempt.
    pub multiplier: f32,
    /// Cap on one delay, milliseconds.
    pub max_delay_ms: u64,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Randomise each delay (recommended: avoids retry storms against a recovering API).
    pub jitter: bool,
    /// Consecutive failed attempts after which the "API down" scenario is detected.
    pub api_down_after: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            base_delay_ms: 500,
            multiplier: 2.0,
            max_delay_ms: 30_000,
            max_attempts: 6,
            jitter: true,
            api_down_after: 3,
        }
    }
}

/// Metrics publication.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Amazon CloudWatch.
    pub cloudwatch: CloudWatchConfig,
}

/// Amazon CloudWatch metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// Publish metrics to CloudWatch (off by default: the in-process registry always runs).
    pub enabled: bool,
    /// Metric namespace.
    pub namespace: String,
    /// AWS region; unset means the standard chain.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
    /// Seconds between publications (PutMetricData, batched).
    pub interval_secs: u64,
    /// Create or update a CloudWatch alarm (PutMetricAlarm) for every alert rule at start.
    pub create_alarms: bool,
    /// ARNs notified when an alarm fires and when it clears (an SNS topic, say); at most 5
    /// (PutMetricAlarm's limit). Empty: the alarms only change state.
    pub alarm_actions: Vec<String>,
}

impl Default for CloudWatchConfig {
    fn default() -> Self {
        CloudWatchConfig {
            enabled: false,
            namespace: "ecomops".into(),
            region: None,
            endpoint_url: None,
            interval_secs: 60,
            create_alarms: false,
            alarm_actions: Vec::new(),
        }
    }
}

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "ecomops.toml";

impl Config {
    /// Parse TOML text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config {
            path: origin.to_string(),
            // toml's message carries "at line L, column C", the offending line and the key.
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Load `path`, or `ecomops.toml` in the working directory if it exists, or the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::Config {
                    path: p.display().to_string(),
                    message: format!("cannot read: {e}"),
                })?;
                Config::from_toml(&text, &p.display().to_string())
            }
            None => {
                let p = Path::new(DEFAULT_CONFIG_FILE);
                if p.exists() {
                    Config::load(Some(p))
                } else {
                    Ok(Config::default())
                }
            }
        }
    }

    /// Checks that TOML types alone cannot express.
    fn validate(&self, origin: &str) -> Result<()> {
        let bad = |key: &str, why: &str| Error::Config {
            path: origin.to_string(),
            message: format!("`{key}`: {why}"),
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if self.store.backend == StoreBackend::S3 && self.store.s3.bucket.trim().is_empty() {
            return Err(bad(
                "store.s3.bucket",
                "required when store.backend = \"s3\"",
            ));
        }
        if self.store.s3.multipart_part_size_bytes < 5 * 1024 * 1024 {
            return Err(bad(
                "store.s3.multipart_part_size_bytes",
                "S3 parts must be at least 5 MiB (5242880)",
            ));
        }
        if self.stream.shards == 0 || self.stream.shards > 1024 {
            return Err(bad("stream.shards", "must be between 1 and 1024"));
        }
        let r = &self.batch.retry;
        if r.max_attempts == 0 {
            return Err(bad("batch.retry.max_attempts", "must be at least 1"));
        }
        if !(r.multiplier >= 1.0 && r.multiplier.is_finite()) {
            return Err(bad(
                "batch.retry.multiplier",
                "must be a finite number >= 1",
            ));
        }
        if r.base_delay_ms > r.max_delay_ms {
            return Err(bad(
                "batch.retry.base_delay_ms",
                "must not exceed batch.retry.max_delay_ms",
            ));
        }
        if self
            .batch
            .redact_fields
            .iter()
            .any(|f| f.is_empty() || f.contains('"'))
        {
            return Err(bad(
                "batch.redact_fields",
                "field names must be non-empty, without quotes",
            ));
        }
        if self.batch.scale == 0 {
            return Err(bad("batch.scale", "must be at least 1"));
        }
        if self.batch.fakestore.request_timeout_ms == 0 {
            return Err(bad("batch.fakestore.request_timeout_ms", "must be above 0"));
        }
        if self.batch.source == BatchSource::Fakestore {
            let url = self.batch.fakestore.base_url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    "batch.fakestore.base_url",
                    "must start with http:// or https://",
                ));
            }
        }
        if self.warehouse.backend == WarehouseBackend::Redshift {
            let rs = &self.warehouse.redshift;
            if rs.workgroup_name.is_none() == rs.cluster_identifier.is_none() {
                return Err(bad(
                    "warehouse.redshift",
                    "set exactly one of workgroup_name and cluster_identifier",
                ));
            }
            if rs.copy_iam_role.is_some() && self.store.backend != StoreBackend::S3 {
                return Err(bad(
                    "warehouse.redshift.copy_iam_role",
                    "COPY reads STAGING from S3: set store.backend = \"s3\"",
                ));
            }
        }
        if self.warehouse.backend == WarehouseBackend::Postgres {
            let pg = &self.warehouse.postgres;
            if pg.connection.trim().is_empty() {
                return Err(bad(
                    "warehouse.postgres.connection",
                    "required when warehouse.backend = \"postgres\"",
                ));
            }
            if let Err(e) = pg.connection.parse::<tokio_postgres::Config>() {
                return Err(bad("warehouse.postgres.connection", &e.to_string()));
            }
            if pg.connection.contains("password") {
                return Err(bad(
                    "warehouse.postgres.connection",
                    "no password in the file: name its variable in password_env",
                ));
            }
        }
        let leases = &self.stream.kinesis.leases;
        if leases.enabled {
            if self.stream.backend != StreamBackend::Kinesis {
                return Err(bad(
                    "stream.kinesis.leases.enabled",
                    "leases share a Kinesis stream: set stream.backend = \"kinesis\"",
                ));
            }
            if self.warehouse.backend == WarehouseBackend::Duckdb {
                return Err(bad(
                    "stream.kinesis.leases.enabled",
                    "every instance writes one warehouse: DuckDB is one file of one process; set \
                     warehouse.backend = \"postgres\" or \"redshift\"",
                ));
            }
            if self.store.backend != StoreBackend::S3 {
                return Err(bad(
                    "stream.kinesis.leases.enabled",
                    "a shard's zones and state move with its lease: set store.backend = \"s3\"",
                ));
            }
            if leases.table.trim().len() < 3 || leases.table.len() > 255 {
                // https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
                return Err(bad(
                    "stream.kinesis.leases.table",
                    "a DynamoDB table name of 3 to 255 characters",
                ));
            }
            if leases.lease_secs < 3 || leases.lease_secs > 3600 {
                return Err(bad(
                    "stream.kinesis.leases.lease_secs",
                    "must be between 3 and 3600",
                ));
            }
            if leases.renew_secs == 0 || leases.renew_secs.saturating_mul(3) > leases.lease_secs {
                return Err(bad(
                    "stream.kinesis.leases.renew_secs",
                    "must be at least 1 and at most a third of lease_secs",
                ));
            }
            if leases.worker_id.as_ref().is_some_and(|w| {
                w.is_empty()
                    || w.len() > 128
                    || !w
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            }) {
                return Err(bad(
                    "stream.kinesis.leases.worker_id",
                    "1 to 128 of A-Z a-z 0-9 - _ .",
                ));
            }
        }
        let actions = &self.telemetry.cloudwatch.alarm_actions;
        if actions.len() > 5 || actions.iter().any(|a| !a.starts_with("arn:")) {
            return Err(bad(
                "telemetry.cloudwatch.alarm_actions",
                "at most 5 ARNs (arn:aws:sns:REGION:ACCOUNT:TOPIC, ...)",
            ));
        }
        self.validate_bounds(origin)?;
        self.validate_alerts(origin)
    }

    /// Numbers that feed date and time arithmetic, loops or allocations: bounded so that no
    /// value a TOML file can hold overflows or stalls the pipeline.
    fn validate_bounds(&self, origin: &str) -> Result<()> {
        const DAY_SECS: u64 = 86_400;
        // Ten years of days: retention beyond that is "keep forever" (0).
        const DAYS: u64 = 3_650;
        let l = &self.lifecycle;
        let g = &self.stream.generator;
        let w = &self.stream.watermark;
        let sla = self.warehouse.quality.freshness_sla_secs;
        let counts: [(&str, u64, u64, u64); 30] = [
            // A year: beyond that nothing is fresh or stale any more.
            (
                "warehouse.quality.freshness_sla_secs.products",
                sla.products,
                1,
                366 * DAY_SECS,
            ),
            (
                "warehouse.quality.freshness_sla_secs.users",
                sla.users,
                1,
                366 * DAY_SECS,
            ),
            (
                "warehouse.quality.freshness_sla_secs.orders",
                sla.orders,
                1,
                366 * DAY_SECS,
            ),
            (
                "warehouse.quality.freshness_sla_secs.order_items",
                sla.order_items,
                1,
                366 * DAY_SECS,
            ),
            (
                "warehouse.quality.freshness_sla_secs.events",
                sla.events,
                1,
                366 * DAY_SECS,
            ),
            // Each extra lookback day recomputes every model for that day on every refresh.
            (
                "warehouse.lookback_days",
                self.warehouse.lookback_days.into(),
                0,
                366,
            ),
            ("lifecycle.curated_days", l.curated_days.into(), 0, DAYS),
            (
                "lifecycle.raw.retention_days",
                l.raw.retention_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.raw.transition_ia_days",
                l.raw.transition_ia_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.raw.transition_glacier_days",
                l.raw.transition_glacier_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.staging.retention_days",
                l.staging.retention_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.staging.transition_ia_days",
                l.staging.transition_ia_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.staging.transition_glacier_days",
                l.staging.transition_glacier_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.quarantine.retention_days",
                l.quarantine.retention_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.quarantine.transition_ia_days",
                l.quarantine.transition_ia_days.into(),
                0,
                DAYS,
            ),
            (
                "lifecycle.quarantine.transition_glacier_days",
                l.quarantine.transition_glacier_days.into(),
                0,
                DAYS,
            ),
            (
                "stream.segment_records",
                self.stream.segment_records.into(),
                1,
                1_000_000,
            ),
            (
                "stream.max_segments_per_cycle",
                self.stream.max_segments_per_cycle.into(),
                0,
                1_000_000,
            ),
            (
                "stream.segments_per_commit",
                self.stream.segments_per_commit.into(),
                1,
                1_000,
            ),
            (
                "warehouse.duckdb.threads",
                self.warehouse.duckdb.threads.into(),
                1,
                256,
            ),
            (
                "stream.dedup.window_secs",
                self.stream.dedup.window_secs,
                1,
                30 * DAY_SECS,
            ),
            (
                "stream.dedup.max_ids",
                self.stream.dedup.max_ids,
                1,
                1_000_000_000,
            ),
            (
                "stream.watermark.out_of_orderness_ms",
                w.out_of_orderness_ms,
                0,
                DAY_SECS * 1_000,
            ),
            (
                "stream.watermark.allowed_lateness_secs",
                w.allowed_lateness_secs,
                0,
                30 * DAY_SECS,
            ),
            (
                "stream.watermark.idle_timeout_secs",
                w.idle_timeout_secs,
                0,
                30 * DAY_SECS,
            ),
            (
                "stream.watermark.max_future_skew_secs",
                w.max_future_skew_secs,
                0,
                30 * DAY_SECS,
            ),
            (
                "stream.generator.disorder_ms",
                g.disorder_ms,
                0,
                DAY_SECS * 1_000,
            ),
            (
                "stream.generator.late_by_secs",
                g.late_by_secs,
                0,
                365 * DAY_SECS,
            ),
            (
                "runtime.cycle_interval_secs",
                self.runtime.cycle_interval_secs,
                1,
                7 * DAY_SECS,
            ),
            (
                "batch.interval_secs",
                self.batch.interval_secs,
                0,
                30 * DAY_SECS,
            ),
        ];
        for (key, value, lo, hi) in counts {
            if !(lo..=hi).contains(&value) {
                return Err(Error::Config {
                    path: origin.to_string(),
                    message: format!("`{key}`: must be between {lo} and {hi}, got {value}"),
                });
            }
        }
        let shares = [
            ("stream.generator.view_to_cart", g.view_to_cart),
            ("stream.generator.cart_to_checkout", g.cart_to_checkout),
            (
                "stream.generator.checkout_to_purchase",
                g.checkout_to_purchase,
            ),
            ("stream.generator.duplicate_rate", g.duplicate_rate),
            ("stream.generator.late_rate", g.late_rate),
            ("stream.generator.malformed_rate", g.malformed_rate),
        ];
        for (key, value) in shares {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::Config {
                    path: origin.to_string(),
                    message: format!("`{key}`: a share between 0 and 1, got {value}"),
                });
            }
        }
        Ok(())
    }

    /// Alert rules must name a metric of the registry, with a finite threshold and a name of
    /// their own (CloudWatch alarms are named after them).
    fn validate_alerts(&self, origin: &str) -> Result<()> {
        let bad = |i: usize, why: String| Error::Config {
            path: origin.to_string(),
            message: format!("`alerts[{i}]`: {why}"),
        };
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.alerts.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(bad(i, "the name is empty".into()));
            }
            if !names.insert(r.name.as_str()) {
                return Err(bad(i, format!("a second alert named {:?}", r.name)));
            }
            if r.metric == "alerts_firing" {
                return Err(bad(
                    i,
                    "alerts_firing counts the alerts themselves; alert on the metrics they watch"
                        .into(),
                ));
            }
            if !ecom_model::metrics::NAMES.contains(&r.metric.as_str()) {
                return Err(bad(
                    i,
                    format!(
                        "alert {:?} names unknown metric {:?}; the metrics are: {}",
                        r.name,
                        r.metric,
                        ecom_model::metrics::NAMES.join(", ")
                    ),
                ));
            }
            if !r.threshold.is_finite() {
                return Err(bad(
                    i,
                    format!("alert {:?}: the threshold is not a number", r.name),
                ));
            }
        }
        Ok(())
    }

    /// Root of the local object store.
    pub fn local_store_root(&self) -> PathBuf {
        self.store
            .local
            .root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("store"))
    }

    /// The DuckDB database file.
    pub fn duckdb_path(&self) -> PathBuf {
        self.warehouse
            .duckdb
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("warehouse.duckdb"))
    }

    /// The documented example config, every key at its default (kept in the repo root and
    /// checked by a test to parse to `Config::default()`).
    pub fn example_toml() -> &'static str {
        include_str!("../../config.toml.example")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::from_toml("", "t").unwrap(), Config::default());
    }

    #[test]
    fn example_file_documents_the_defaults() {
        let parsed = Config::from_toml(Config::example_toml(), "config.toml.example").unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn duckdb_threads_are_bounded() {
        let err = Config::from_toml("[warehouse.duckdb]\nthreads = 0\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("warehouse.duckdb.threads"), "{err}");
        let ok = Config::from_toml("[warehouse.duckdb]\nthreads = 2\n", "c.toml").unwrap();
        assert_eq!(ok.warehouse.duckdb.threads, 2);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::from_toml("data_dir = \"x\"\n\n[store]\nbakend = \"s3\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bakend"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = Config::from_toml("[stream]\nshards = \"four\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("shards"), "{err}");
    }

    #[test]
    fn an_unknown_alert_metric_is_refused_at_parse() {
        let err = Config::from_toml(
            "[[alerts]]\nname = \"x\"\nmetric = \"lagg\"\nop = \">\"\nthreshold = 1\nseverity = \"warning\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lagg") && err.contains("alerts[0]"), "{err}");
    }

    #[test]
    fn numbers_that_would_overflow_dates_are_refused_at_parse() {
        for (toml, key) in [
            (
                "[warehouse]\nlookback_days = 100000000\n",
                "warehouse.lookback_days",
            ),
            (
                "[warehouse]\nlookback_days = 1000000\n",
                "warehouse.lookback_days",
            ),
            (
                "[lifecycle]\ncurated_days = 4000000000\n",
                "lifecycle.curated_days",
            ),
            (
                "[stream.watermark]\nallowed_lateness_secs = 18446744073709551615\n",
                "allowed_lateness_secs",
            ),
            ("[stream.generator]\nlate_rate = 2.0\n", "late_rate"),
            ("[stream.generator]\nlate_rate = nan\n", "late_rate"),
        ] {
            let err = Config::from_toml(toml, "c.toml").unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn leases_need_kinesis_s3_and_a_shared_warehouse() {
        let ok = "[store]\nbackend = \"s3\"\n[store.s3]\nbucket = \"b\"\n\
                  [stream]\nbackend = \"kinesis\"\n[stream.kinesis.leases]\nenabled = true\n\
                  [warehouse]\nbackend = \"postgres\"\n[warehouse.postgres]\nconnection = \"host=h\"\n";
        Config::from_toml(ok, "c.toml").unwrap();
        // Redshift shares a fleet's warehouse too (its locks are `warehouse::fleet_lock`).
        let redshift = ok.replace(
            "backend = \"postgres\"\n[warehouse.postgres]\nconnection = \"host=h\"",
            "backend = \"redshift\"\n[warehouse.redshift]\nworkgroup_name = \"wg\"",
        );
        Config::from_toml(&redshift, "c.toml").unwrap();
        for (broken, why) in [
            (
                ok.replace("backend = \"postgres\"", "backend = \"duckdb\""),
                "DuckDB",
            ),
            (
                ok.replace("backend = \"kinesis\"", "backend = \"local\""),
                "kinesis",
            ),
            (ok.replace("backend = \"s3\"", "backend = \"local\""), "s3"),
            (
                ok.replace("enabled = true", "enabled = true\nrenew_secs = 20"),
                "renew_secs",
            ),
            (
                ok.replace("enabled = true", "enabled = true\nlease_secs = 1"),
                "lease_secs",
            ),
            (
                ok.replace("enabled = true", "enabled = true\nworker_id = \"a b\""),
                "worker_id",
            ),
            (
                ok.replace("enabled = true", "enabled = true\ntable = \"x\""),
                "table",
            ),
        ] {
            let err = Config::from_toml(&broken, "c.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{broken}: {err}");
        }
    }

    #[test]
    fn a_redshift_load_of_any_size_needs_no_copy() {
        // Loads larger than a Data API batch fill their scratch over a session
        // (warehouse::redshift::session_calls): the default segment size is accepted.
        let redshift =
            "[warehouse]\nbackend = \"redshift\"\n[warehouse.redshift]\nworkgroup_name = \"wg\"\n";
        Config::from_toml(redshift, "c.toml").unwrap();
        Config::from_toml(&format!("{redshift}[batch]\nscale = 100\n"), "c.toml").unwrap();
    }

    #[test]
    fn s3_without_bucket_is_refused() {
        let err = Config::from_toml("[store]\nbackend = \"s3\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.s3.bucket"), "{err}");
    }

    #[test]
    fn credentials_are_not_accepted_in_the_file() {
        let err = Config::from_toml(
            "[store.s3]\nbucket = \"b\"\naws_secret_access_key = \"x\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("aws_secret_access_key"), "{err}");
    }

    #[test]
    fn unreadable_file_is_a_config_error() {
        let err = Config::load(Some(Path::new("/nonexistent/ecomops.toml"))).unwrap_err();
        assert!(err.is_usage());
        assert!(err.to_string().contains("/nonexistent/ecomops.toml"));
    }
}
