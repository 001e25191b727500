//! The failure table's scenarios, their states and rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The failure scenarios of the platform's failure table, in table order: the design's five,
/// then a lost shard lease (shown only where instances share a stream by leases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scenario {
    #[serde(rename = "API down")]
    ApiDown,
    #[serde(rename = "duplicate file")]
    DuplicateFile,
    #[serde(rename = "late events")]
    LateEvents,
    #[serde(rename = "partial write")]
    PartialWrite,
    #[serde(rename = "cost growth")]
    CostGrowth,
    /// Under shard leases only: another instance took a shard this one held.
    #[serde(rename = "lost lease")]
    LostLease,
}

impl std::str::FromStr for Scenario {
    type Err = String;

    /// A scenario by its table name ("late events") or its JSON name.
    fn from_str(s: &str) -> Result<Scenario, String> {
        let wanted = s.trim().to_lowercase().replace(['_', '-'], " ");
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.label().to_lowercase() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.label()).collect();
                format!("no scenario {s:?}; the scenarios are {}", names.join(", "))
            })
    }
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::ApiDown,
        Scenario::DuplicateFile,
        Scenario::LateEvents,
        Scenario::PartialWrite,
        Scenario::CostGrowth,
        Scenario::LostLease,
    ];

    /// The name the failure table shows (and the JSON carries).
    pub fn label(self) -> &'static str {
        match self {
            Scenario::ApiDown => "API down",
            Scenario::DuplicateFile => "duplicate file",
            Scenario::LateEvents => "late events",
            Scenario::PartialWrite => "partial write",
            Scenario::CostGrowth => "cost growth",
            Scenario::LostLease => "lost lease",
        }
    }

    /// Detection, mitigation and recovery, as the platform's design names them.
    pub fn design(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Scenario::ApiDown => (
                "timeouts / consecutive failures",
                "retries with backoff",
                "rerun the DAG run",
            ),
            Scenario::DuplicateFile => ("hash already in ledger", "skip", "idempotent MERGE"),
            Scenario::LateEvents => (
                "behind watermark",
                "late buffer",
                "backfill of dirty partitions",
            ),
            Scenario::PartialWrite => ("checksum mismatch", "atomic write", "replay from source"),
            Scenario::CostGrowth => ("projected cost over budget", "lifecycle rules", "pruning"),
            Scenario::LostLease => (
                "lease counter moved by another instance",
                "fencing: the old owner's loads refused",
                "the new owner resumes from the checkpoint",
            ),
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.label())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureState {
    Ok,
    Detected,
    Mitigating,
    Recovering,
    Recovered,
    NeedsOperator,
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
        }
    }

    /// Ok and recovered are at rest; everything else is an episode in progress.
    pub fn at_rest(self) -> bool {
        matches!(self, FailureState::Ok | FailureState::Recovered)
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRow {
    pub scenario: Scenario,
    pub detection: String,
    pub mitigation: String,
    pub recovery: String,
    pub state: FailureState,
    /// Episodes detected.
    pub count: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// What was seen, in a few words.
    pub detail: Option<String>,
    /// What the operator does to recover, when it needs one (a command and a dashboard key).
    pub operator: Option<String>,
    /// The latest state changes, oldest first (at most 16).
    pub transitions: Vec<(DateTime<Utc>, FailureState)>,
    /// The configuration makes this normal (the clickstream generator injects late events):
    /// shown, but not counted against health.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expected: bool,
    /// An operator acknowledged it (`snooze`): until then it is shown, marked, but does not
    /// count against health or rank as the next action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<DateTime<Utc>>,
}

impl FailureRow {
    /// Shown but not counted: the configuration makes it normal, or an operator snoozed it.
    pub fn discounted(&self, now: DateTime<Utc>) -> bool {
        self.expected || self.snoozed_until.is_some_and(|t| t > now)
    }
}
