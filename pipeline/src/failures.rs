//! The failure table: the five scenarios with their detection, mitigation and recovery, and the
//! state each is in, derived from what the pipeline has seen (API health, ledger skips, the late
//! buffer). Partial writes and cost growth are not watched continuously yet: `verify` finds the
//! former on demand, and the cost model has not landed; their rows say so.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;
use crate::zones::Zone;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureState {
    Ok,
    Detected,
    Mitigating,
    Recovering,
    Recovered,
    NeedsOperator,
    /// Not watched continuously by this build.
    NotMonitored,
}

impl FailureState {
    pub fn label(self) -> &'static str {
        match self {
            FailureState::Ok => "ok",
            FailureState::Detected => "detected",
            FailureState::Mitigating => "mitigating",
            FailureState::Recovering => "recovering",
            FailureState::Recovered => "recovered",
            FailureState::NeedsOperator => "needs operator",
            FailureState::NotMonitored => "not monitored",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRow {
    pub scenario: String,
    pub detection: String,
    pub mitigation: String,
    pub recovery: String,
    pub state: FailureState,
    pub count: u64,
    pub last_seen: Option<DateTime<Utc>>,
    /// What the operator does to recover, when it needs one (a command and a dashboard key).
    pub operator: Option<String>,
}

fn row(scenario: &str, detection: &str, mitigation: &str, recovery: &str) -> FailureRow {
    FailureRow {
        scenario: scenario.into(),
        detection: detection.into(),
        mitigation: mitigation.into(),
        recovery: recovery.into(),
        state: FailureState::Ok,
        count: 0,
        last_seen: None,
        operator: None,
    }
}

/// The table for a snapshot (everything else in it must already be filled in).
pub fn table(s: &Snapshot) -> Vec<FailureRow> {
    let mut api = row(
        "API down",
        "timeouts / consecutive failures",
        "retries with backoff",
        "rerun the DAG run",
    );
    let a = &s.batch.api;
    api.count = a.detections;
    let failed_run = s
        .batch
        .runs
        .iter()
        .find(|r| r.status == crate::batch::run::RunStatus::Failed);
    api.state = if a.down {
        FailureState::Mitigating
    } else if let Some(r) = failed_run.filter(|_| a.detections > a.recoveries || a.failures > 0) {
        api.operator = Some(format!("ecomops retry {} (R in Runs)", r.run_id));
        FailureState::NeedsOperator
    } else if a.recoveries > 0 {
        FailureState::Recovered
    } else {
        FailureState::Ok
    };
    api.last_seen = failed_run.and_then(|r| r.ended_at);

    let mut dup = row(
        "duplicate file",
        "hash already in ledger",
        "skip",
        "idempotent MERGE",
    );
    let dups: Vec<_> = s
        .batch
        .runs
        .iter()
        .filter(|r| r.report.files.iter().any(|f| f.duplicate) || r.report.load_skipped > 0)
        .collect();
    dup.count = s
        .batch
        .runs
        .iter()
        .map(|r| r.report.files.iter().filter(|f| f.duplicate).count() as u64)
        .sum();
    dup.last_seen = dups.iter().filter_map(|r| r.ended_at).max();
    if dup.count > 0 {
        dup.state = FailureState::Recovered;
    }

    let mut late = row(
        "late events",
        "behind watermark",
        "late buffer",
        "backfill of dirty partitions",
    );
    late.count = s.stream.as_ref().map_or(0, |st| st.watermarks.late_events);
    let buffered = s
        .zones
        .iter()
        .find(|z| z.zone == Some(Zone::Late))
        .map_or(0, |z| z.objects);
    late.last_seen = s
        .zones
        .iter()
        .find(|z| z.zone == Some(Zone::Late))
        .and_then(|z| z.last_write);
    if late.count > 0 || buffered > 0 {
        late.state = FailureState::Mitigating;
        late.operator = Some("ecomops backfill --from DAY --to DAY (b)".into());
    }

    let mut partial = row(
        "partial write",
        "checksum mismatch",
        "atomic write",
        "replay from source",
    );
    partial.state = FailureState::NotMonitored;
    partial.operator = Some("ecomops verify finds it; ecomops replay (p in Stream)".into());

    let mut cost = row(
        "cost growth",
        "projected cost over budget",
        "lifecycle rules",
        "pruning",
    );
    cost.state = FailureState::NotMonitored;
    vec![api, dup, late, partial, cost]
}
