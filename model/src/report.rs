//! What a command did, as data: each handler of the core returns one of these, and the
//! binary words them (`src/render.rs`), for the terminal, the dashboard's status line and
//! `--output json` alike.

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::alerts::AlertState;
use crate::batch::BatchRun;
use crate::cost::CostReport;
use crate::snapshot::CycleReport;
use crate::warehouse::Metrics;

/// The typed result of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Report {
    Refreshed,
    Paused,
    Resumed,
    Cycle(CycleOutcome),
    Run(Box<BatchRun>),
    Metrics(Metrics),
    /// Per day, oldest first.
    Trends(Vec<crate::warehouse::DayFigures>),
    /// Per category over a range, by revenue, largest first.
    Categories(Vec<crate::warehouse::CategoryFigures>),
    Verify(VerifyReport),
    Backfill(BackfillReport),
    Replay(ReplayReport),
    Ingest(IngestReport),
    Cost(Box<CostReport>),
    Prune(PruneReport),
    Lifecycle(LifecyclePlan),
    Quarantine(QuarantineReport),
    /// A scenario acknowledged until this time (None: the snooze was lifted).
    Snoozed {
        scenario: crate::failures::Scenario,
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    Reprocess(ReprocessReport),
}

/// What the quarantine holds: every refused record counted by entity and field, and the
/// newest records with their reasons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuarantineReport {
    /// Quarantine objects read.
    pub objects: u64,
    /// Records in them (that match the filter, when one was given).
    pub records: u64,
    /// Counts per entity and field, largest first.
    pub by_reason: Vec<ReasonCount>,
    /// The newest records (by object time, then position), newest first.
    pub recent: Vec<QuarantinedRecord>,
    /// The late buffer beside it: event days waiting for a backfill, with their events.
    #[serde(default)]
    pub late_pending: Vec<(chrono::NaiveDate, u64)>,
}

/// Records refused for one field of one entity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub entity: String,
    pub field: String,
    pub count: u64,
    /// One of the reasons given (they differ by value: "longer than 128 bytes (300)").
    pub example: String,
}

/// One refused record, as received, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// The quarantine object it is in (names the source, entity and segment or run window).
    pub key: String,
    pub entity: String,
    pub field: String,
    pub reason: String,
    /// The record as received (JSON text).
    pub record: String,
    pub written: Option<chrono::DateTime<chrono::Utc>>,
}

/// `reprocess`: quarantined events judged again by the current rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReprocessReport {
    /// Quarantined event records examined.
    pub examined: u64,
    /// Now valid: staged and loaded (or already loaded by an earlier reprocess).
    pub accepted: u64,
    /// Still refused, left in quarantine.
    pub still_refused: u64,
    /// The STAGING objects written for the accepted records.
    pub staged: Vec<String>,
}

/// A cycle run on request, and the critical alerts firing after it (cron's exit code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleOutcome {
    /// Flattened: the JSON is the cycle report's, plus `critical_alerts`.
    #[serde(flatten)]
    pub cycle: CycleReport,
    pub critical_alerts: Vec<AlertState>,
}

/// What a backfill did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Late-buffered events of those days loaded now.
    pub late_loaded: u64,
    pub recomputed_days: usize,
}

/// What `ingest events FILE` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    pub path: PathBuf,
    pub raw_key: String,
    /// The same bytes were ingested before: not fed again.
    pub duplicate: bool,
    /// Non-blank lines fed to the stream.
    pub lines: u64,
    /// Lines over the stream's record limit, quarantined whole.
    pub oversized: u64,
    /// What the drain that followed did.
    pub drained: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub check: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Checks run.
    pub checks: u64,
    pub differences: Vec<Difference>,
    /// STAGING objects whose bytes do not match their ledger hash (partial writes).
    pub partial_writes: Vec<String>,
    /// Data-quality figures, reported beside the reconciliation (they never fail it: an
    /// orphan or a stale table is a finding about the data, not a loss).
    #[serde(default)]
    pub quality: Option<crate::warehouse::Quality>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }

    /// Count a check, and record a difference when it fails.
    pub fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.differences.push(Difference {
                check: name.to_string(),
                detail: detail(),
            });
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// The shard replayed.
    #[serde(default)]
    pub shard: String,
    pub segments: u64,
    /// RAW segments re-read from the log and found byte-identical.
    pub raw_identical: u64,
    /// RAW segments that were missing and were written again.
    pub raw_rewritten: u64,
    /// STAGING objects that were missing and were derived again.
    pub restaged: u64,
    /// STAGING files the warehouse already had (the load is idempotent).
    pub loads_skipped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Objects deleted (or that would be).
    pub deleted: Vec<String>,
    pub deleted_bytes: u64,
    /// Objects past retention kept because the ledger does not show them loaded.
    pub kept_unloaded: Vec<String>,
    /// CURATED rows of days before the cutoff deleted (or that would be).
    pub curated_rows: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecyclePlan {
    pub bucket: String,
    pub current: Vec<String>,
    pub desired: Vec<String>,
    /// Lines only in current ("- ...") or only in desired ("+ ...").
    pub diff: Vec<String>,
    pub applied: bool,
}
