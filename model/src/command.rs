//! Operator commands: what the dashboard, the control socket and the CLI ask the running
//! pipeline to do, and who asked.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::batch::Task;

/// A request to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Recompute the snapshot now (read-only).
    Refresh,
    /// Run one full cycle now and report it.
    RunCycle,
    /// Stop scheduling cycles (a cycle in flight finishes).
    Pause,
    /// Resume scheduling.
    Resume,
    /// Start a batch run now (all tasks, or `task` and what follows it, or `only` one task),
    /// or resume the run named `run_id`.
    BatchRun {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<Task>,
        /// Exactly this task (its upstream must have succeeded in the run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        only: Option<Task>,
        /// Create the run with this id, or resume it when it exists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        /// Carts date window (inclusive) for an incremental pull.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<(NaiveDate, NaiveDate)>,
    },
    /// Feed an NDJSON events file (a path the pipeline can read) through the stream path.
    IngestFile { path: std::path::PathBuf },
    /// Re-read committed segments of a shard from a sequence number or an arrival time.
    Replay {
        shard: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_time: Option<DateTime<Utc>>,
    },
    /// The four metrics (read-only).
    Metrics,
    /// The metrics per day of `from..=to`, from the CURATED daily models (read-only).
    Trends { from: NaiveDate, to: NaiveDate },
    /// Revenue, orders and units per category over `from..=to`, from
    /// `curated.daily_category_sales` (read-only).
    CategoryTrends { from: NaiveDate, to: NaiveDate },
    /// Reconcile RAW -> STAGING -> warehouse -> CURATED (read-only).
    Verify,
    /// Recompute CURATED days `from..=to`.
    Backfill { from: NaiveDate, to: NaiveDate },
    /// Cost estimates (read-only).
    Cost,
    /// Delete what lifecycle retention allows (loaded objects only); `dry_run` lists it.
    Prune {
        #[serde(default)]
        dry_run: bool,
    },
    /// Compare (and with `apply`, set) the S3 bucket's lifecycle rules.
    Lifecycle {
        #[serde(default)]
        apply: bool,
    },
    /// What the quarantine holds: counts per reason and the newest `limit` records, those whose
    /// field or reason contains `reason` when given (read-only).
    Quarantine {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        limit: usize,
    },
    /// Judge the quarantined events again by the current rules (after a fix): those now valid
    /// are staged and loaded (idempotent: a second run loads nothing new).
    Reprocess,
    /// Acknowledge a failure scenario for `minutes` (0 lifts it): shown, marked, but not
    /// counted in health or the next action meanwhile. Held by the running instance.
    Snooze {
        scenario: crate::failures::Scenario,
        minutes: u32,
    },
    /// Rerun the tasks of a batch run that have not succeeded.
    Retry {
        run_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<Task>,
    },
}

impl Command {
    /// Whether the command changes data or pipeline state (refused in read-only mode).
    pub fn is_mutating(&self) -> bool {
        !matches!(
            self,
            Command::Refresh
                | Command::Metrics
                | Command::Trends { .. }
                | Command::CategoryTrends { .. }
                | Command::Quarantine { .. }
                | Command::Verify
                | Command::Cost
                | Command::Prune { dry_run: true }
                | Command::Lifecycle { apply: false }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::Refresh => "refresh",
            Command::RunCycle => "run_cycle",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::BatchRun { .. } => "batch_run",
            Command::Metrics => "metrics",
            Command::Trends { .. } => "trends",
            Command::CategoryTrends { .. } => "category_trends",
            Command::IngestFile { .. } => "ingest_file",
            Command::Replay { .. } => "replay",
            Command::Verify => "verify",
            Command::Backfill { .. } => "backfill",
            Command::Retry { .. } => "retry",
            Command::Cost => "cost",
            Command::Prune { .. } => "prune",
            Command::Lifecycle { .. } => "lifecycle",
            Command::Quarantine { .. } => "quarantine",
            Command::Reprocess => "reprocess",
            Command::Snooze { .. } => "snooze",
        }
    }
}

/// Who asked for a command, for the audit trail and for read-only enforcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The user name (from the peer's uid for control-socket clients).
    pub user: String,
    /// `SSH_CONNECTION` of the asking process, when it runs in an SSH session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_connection: Option<String>,
    /// Where the command came from: `dashboard`, `cli`, `socket`.
    pub via: String,
    /// The asking process runs with `--read-only`: its mutating commands are refused even by a
    /// writable instance.
    #[serde(default)]
    pub read_only: bool,
}
