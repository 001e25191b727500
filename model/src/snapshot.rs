//! The immutable picture of pipeline state that the dashboard draws, `status --json` prints and
//! the control socket serves. Produced by the core, never mutated after publication.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::batch::{ApiState, BatchRun};
use crate::failures::FailureRow;
use crate::history::History;
use crate::stream::StreamStatus;
use crate::warehouse::WarehouseStatus;
use crate::zone::ZoneStats;

/// How the owning process runs the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// The interactive dashboard.
    Dashboard,
    /// `--no-ui`, a long-running service.
    Headless,
    /// A single invocation with no instance running (`--once`, `batch run`, `status` ...).
    Oneshot,
}

/// Who is running and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub data_dir: PathBuf,
    pub mode: RunMode,
    pub read_only: bool,
    pub version: String,
}

/// Which backend serves each concern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backends {
    pub store: String,
    pub stream: String,
    pub warehouse: String,
}

/// One log line kept for the dashboard's log view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub time: DateTime<Utc>,
    pub level: String,
    pub target: String,
    pub message: String,
}

/// The outcome of one pipeline cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleReport {
    pub cycle: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    /// What each step did, in order, e.g. "batch: run 20261124T... succeeded".
    pub steps: Vec<String>,
    pub error: Option<String>,
}

/// Everything the UI and `status` show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Increases with every publication; the UI redraws only when it changes.
    pub seq: u64,
    pub generated_at: DateTime<Utc>,
    pub instance: InstanceInfo,
    pub backends: Backends,
    pub paused: bool,
    pub zones: Vec<ZoneStats>,
    pub cycles: u64,
    pub last_cycle: Option<CycleReport>,
    pub batch: BatchStatus,
    /// Tables, ledger, dirty days and metrics; `None` until the warehouse exists.
    pub warehouse: Option<WarehouseStatus>,
    /// Shards, lag, watermarks, dedup and the stream's counts.
    pub stream: Option<StreamStatus>,
    pub recent_log: Vec<LogLine>,
    /// When the next scheduled cycle starts (None when not scheduled or paused).
    #[serde(default)]
    pub next_cycle_at: Option<DateTime<Utc>>,
    /// When the next scheduled batch run is due (runs are `batch.interval_secs` apart; the
    /// cycle at or after this time pulls). None when not scheduled or paused.
    #[serde(default)]
    pub next_batch_at: Option<DateTime<Utc>>,
    /// Sparkline and trend series.
    #[serde(default)]
    pub history: History,
    /// The five failure scenarios and their states.
    #[serde(default)]
    pub failures: Vec<FailureRow>,
    /// The latest audited operator actions, oldest first.
    #[serde(default)]
    pub recent_actions: Vec<crate::audit::Record>,
    /// Cost estimates from measured volumes.
    #[serde(default)]
    pub cost: Option<crate::cost::CostReport>,
    /// Objects that failed their checksum at the last integrity scan.
    #[serde(default)]
    pub damaged: Vec<String>,
    /// Event days with late events in the late buffer not backfilled yet (the LATE zone also
    /// holds the ones already backfilled).
    #[serde(default)]
    pub late_pending_days: Vec<chrono::NaiveDate>,
    /// The business figures per day of the last `TREND_DAYS` days (oldest first, zeros where
    /// nothing happened), from the CURATED daily models: the Trends view.
    #[serde(default)]
    pub trends: Vec<crate::warehouse::DayFigures>,
    /// The metrics registry.
    #[serde(default)]
    pub metrics: Vec<crate::metrics::MetricPoint>,
    /// Alert rules and whether they fire.
    #[serde(default)]
    pub alerts: Vec<crate::alerts::AlertState>,
    /// The worst of the last cycle and the failure table (`derive::health`).
    #[serde(default)]
    pub health: Health,
    /// What the operator should do first (`derive::next_action`); None when nothing.
    #[serde(default)]
    pub next_action: Option<String>,
}

/// Days the Trends view covers, today included.
pub const TREND_DAYS: u64 = 14;

impl Snapshot {
    /// The snapshot before anything was observed.
    pub fn empty(instance: InstanceInfo, backends: Backends, at: DateTime<Utc>) -> Snapshot {
        Snapshot {
            seq: 0,
            generated_at: at,
            instance,
            backends,
            paused: false,
            zones: Vec::new(),
            cycles: 0,
            last_cycle: None,
            batch: BatchStatus::default(),
            warehouse: None,
            stream: None,
            recent_log: Vec::new(),
            next_cycle_at: None,
            next_batch_at: None,
            history: History::default(),
            failures: Vec::new(),
            recent_actions: Vec::new(),
            cost: None,
            damaged: Vec::new(),
            late_pending_days: Vec::new(),
            trends: Vec::new(),
            metrics: Vec::new(),
            alerts: Vec::new(),
            health: Health::Healthy,
            next_action: None,
        }
    }
}

/// Overall health, as the dashboard's header and `status` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Healthy,
    /// A failure scenario is being handled by the pipeline itself.
    Degraded,
    /// The last cycle failed, or a scenario needs the operator.
    NeedsAttention,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Degraded => "DEGRADED",
            Health::NeedsAttention => "NEEDS ATTENTION",
        }
    }
}

/// Batch ingestion: the source, what the client has seen of the API, the latest runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchStatus {
    pub source: String,
    pub api: ApiState,
    /// Newest first.
    pub runs: Vec<BatchRun>,
}
