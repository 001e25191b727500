//! The failure table: a state machine per scenario with the seed's detection, mitigation and
//! recovery made real. The orchestrator gathers `Signals` after every cycle, command and
//! statistics refresh; `Tracker::observe` moves each scenario through ok -> detected ->
//! mitigating -> recovering -> recovered (or needs operator, naming the command and key that
//! recover it), counting detections and logging every change.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

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
    pub scenario: String,
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
}

/// What the pipeline has seen, gathered by the orchestrator.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// The FakeStore API is down (consecutive failures over the threshold).
    pub api_down: bool,
    /// The newest batch run failed, and its id.
    pub failed_run: Option<String>,
    pub api_last_error: Option<String>,
    /// Files skipped as duplicates (hash already in RAW / the ledger), ever.
    pub duplicate_files: u64,
    /// Late events seen by this process, and event days in the late buffer not yet backfilled.
    pub late_events: u64,
    pub late_pending_days: Vec<NaiveDate>,
    /// A backfill is running now.
    pub backfilling: bool,
    /// RAW/STAGING objects whose bytes fail their checksum, and whether repairs are under way.
    pub damaged: Vec<String>,
    pub repairing: bool,
    /// A repair failed: the message (the operator's turn).
    pub repair_error: Option<String>,
    /// Projected monthly cost and the budget.
    pub projected_usd: f64,
    pub budget_usd: f64,
    /// Lifecycle rules would save this much per month on current objects.
    pub saving_usd: f64,
}

const SCENARIOS: [(&str, &str, &str, &str); 5] = [
    (
        "API down",
        "timeouts / consecutive failures",
        "retries with backoff",
        "rerun the DAG run",
    ),
    (
        "duplicate file",
        "hash already in ledger",
        "skip",
        "idempotent MERGE",
    ),
    (
        "late events",
        "behind watermark",
        "late buffer",
        "backfill of dirty partitions",
    ),
    (
        "partial write",
        "checksum mismatch",
        "atomic write",
        "replay from source",
    ),
    (
        "cost growth",
        "projected cost over budget",
        "lifecycle rules",
        "pruning",
    ),
];

#[derive(Debug, Clone)]
pub struct Tracker {
    rows: Vec<FailureRow>,
    duplicates_seen: u64,
    late_seen: u64,
    /// The first observation (at process start) logs at debug only.
    started: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            rows: SCENARIOS
                .iter()
                .map(|(s, d, m, r)| FailureRow {
                    scenario: s.to_string(),
                    detection: d.to_string(),
                    mitigation: m.to_string(),
                    recovery: r.to_string(),
                    state: FailureState::Ok,
                    count: 0,
                    first_seen: None,
                    last_seen: None,
                    detail: None,
                    operator: None,
                    transitions: Vec::new(),
                })
                .collect(),
            duplicates_seen: 0,
            late_seen: 0,
            started: false,
        }
    }

    pub fn rows(&self) -> Vec<FailureRow> {
        self.rows.clone()
    }

    /// Move scenario `i` to `state`, through the states an episode passes on the way (an
    /// episode starts with detected).
    fn go(&mut self, i: usize, now: DateTime<Utc>, path: &[FailureState]) {
        // Mid-episode, walk on from where the scenario is: only the states after the current
        // one, or straight to the path's end when the episode went back (a new late day while
        // a backfill runs).
        let current = self.rows[i].state;
        let rank = |s: FailureState| match s {
            FailureState::Ok | FailureState::Recovered => 0,
            FailureState::Detected => 1,
            FailureState::Mitigating => 2,
            FailureState::NeedsOperator => 3,
            FailureState::Recovering => 4,
        };
        let later: Vec<FailureState>;
        let path = if current.at_rest() {
            path
        } else {
            later = path
                .iter()
                .copied()
                .filter(|s| *s == FailureState::Recovered || rank(*s) > rank(current))
                .collect();
            if later.is_empty() {
                &path[path.len().saturating_sub(1)..]
            } else {
                &later[..]
            }
        };
        let quiet = !self.started;
        for &state in path {
            let row = &mut self.rows[i];
            if row.state == state {
                continue;
            }
            if row.state.at_rest() && !state.at_rest() {
                row.count += 1;
                row.first_seen.get_or_insert(now);
                if state != FailureState::Detected {
                    // Every episode is seen as detected first.
                    push(row, now, FailureState::Detected);
                }
            }
            if !state.at_rest() || state == FailureState::Recovered {
                row.last_seen = Some(now);
            }
            let from = row.state;
            push(row, now, state);
            let (scenario, detail) = (row.scenario.clone(), row.detail.clone().unwrap_or_default());
            if quiet {
                // A process starting finds the state the data is in; that is no news.
                tracing::debug!(%scenario, to = state.label(), %detail, "failure scenario state at start");
                continue;
            }
            match state {
                FailureState::Recovered | FailureState::Ok => {
                    tracing::info!(%scenario, from = from.label(), to = state.label(), %detail, "failure scenario state")
                }
                _ => {
                    tracing::warn!(%scenario, from = from.label(), to = state.label(), %detail, "failure scenario state")
                }
            }
        }
    }

    pub fn observe(&mut self, s: &Signals, now: DateTime<Utc>) {
        use FailureState::*;
        // API down.
        let api = 0;
        if s.api_down {
            self.rows[api].detail = s.api_last_error.clone();
            self.rows[api].operator = None;
            self.go(api, now, &[Detected, Mitigating]);
        } else if let Some(run) = &s.failed_run {
            if !self.rows[api].state.at_rest() {
                self.rows[api].operator =
                    Some(format!("ecomops retry {run}  (R on the run in Runs)"));
                self.go(api, now, &[NeedsOperator]);
            }
        } else if !self.rows[api].state.at_rest() {
            self.rows[api].operator = None;
            self.go(api, now, &[Recovering, Recovered]);
        }

        // Duplicate file: skipped at once, the MERGE is idempotent: recovered in one step.
        let dup = 1;
        if s.duplicate_files > self.duplicates_seen {
            let n = s.duplicate_files - self.duplicates_seen;
            self.rows[dup].detail = Some(format!("{n} duplicate file(s) skipped"));
            self.go(dup, now, &[Detected, Mitigating, Recovered]);
        }
        self.duplicates_seen = s.duplicate_files;

        // Late events: buffered, then waiting for a backfill of their days.
        let late = 2;
        let new_late = s.late_events > self.late_seen;
        self.late_seen = s.late_events;
        if !s.late_pending_days.is_empty() {
            let (from, to) = (
                s.late_pending_days.first().copied(),
                s.late_pending_days.last().copied(),
            );
            if let (Some(from), Some(to)) = (from, to) {
                self.rows[late].detail = Some(format!(
                    "late events of {} day(s) in the late buffer",
                    s.late_pending_days.len()
                ));
                self.rows[late].operator =
                    Some(format!("ecomops backfill --from {from} --to {to}  (b)"));
            }
            if s.backfilling {
                self.go(late, now, &[Recovering]);
            } else {
                self.go(late, now, &[Detected, Mitigating, NeedsOperator]);
            }
        } else if new_late || !self.rows[late].state.at_rest() {
            self.rows[late].operator = None;
            if new_late && self.rows[late].state.at_rest() {
                self.go(late, now, &[Detected, Mitigating]);
            }
            self.go(late, now, &[Recovering, Recovered]);
        }

        // Partial write.
        let pw = 3;
        if !s.damaged.is_empty() {
            self.rows[pw].detail = Some(format!(
                "{} object(s) fail their checksum, e.g. {}",
                s.damaged.len(),
                s.damaged[0]
            ));
            if let Some(e) = &s.repair_error {
                self.rows[pw].operator = Some(format!(
                    "repair failed ({e}); `ecomops replay --shard ID --from-seq N` (p) or `ecomops batch run`"
                ));
                self.go(pw, now, &[Detected, Mitigating, NeedsOperator]);
            } else if s.repairing {
                self.go(pw, now, &[Detected, Mitigating, Recovering]);
            } else {
                self.go(pw, now, &[Detected, Mitigating]);
            }
        } else if !self.rows[pw].state.at_rest() {
            self.rows[pw].operator = None;
            self.go(pw, now, &[Recovering, Recovered]);
        }

        // Cost growth.
        let cost = 4;
        if s.projected_usd > s.budget_usd {
            self.rows[cost].detail = Some(format!(
                "projected ${:.2}/month over the ${:.2} budget; lifecycle rules would save ${:.2}",
                s.projected_usd, s.budget_usd, s.saving_usd
            ));
            self.rows[cost].operator = Some(
                "ecomops prune (deletes loaded objects past retention; `ecomops lifecycle --apply` on S3), \
                 or shorten [lifecycle] retention / raise cost.budget_usd_month"
                    .into(),
            );
            self.go(cost, now, &[Detected, Mitigating, NeedsOperator]);
        } else if !self.rows[cost].state.at_rest() {
            self.rows[cost].operator = None;
            self.go(cost, now, &[Recovering, Recovered]);
        }
        self.started = true;
    }
}

fn push(row: &mut FailureRow, now: DateTime<Utc>, state: FailureState) {
    row.state = state;
    row.transitions.push((now, state));
    if row.transitions.len() > 16 {
        row.transitions.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureState::*;

    fn states(t: &Tracker, i: usize) -> Vec<FailureState> {
        t.rows[i].transitions.iter().map(|(_, s)| *s).collect()
    }

    #[test]
    fn api_down_then_retry() {
        let mut t = Tracker::new();
        let now = Utc::now();
        t.observe(
            &Signals {
                api_down: true,
                ..Default::default()
            },
            now,
        );
        t.observe(
            &Signals {
                failed_run: Some("r1".into()),
                ..Default::default()
            },
            now,
        );
        assert_eq!(t.rows[0].state, NeedsOperator);
        assert!(t.rows[0]
            .operator
            .as_deref()
            .unwrap()
            .contains("ecomops retry r1"));
        t.observe(&Signals::default(), now);
        assert_eq!(
            states(&t, 0),
            vec![Detected, Mitigating, NeedsOperator, Recovering, Recovered]
        );
        assert_eq!(t.rows[0].count, 1);
    }

    #[test]
    fn late_events_wait_for_a_backfill() {
        let mut t = Tracker::new();
        let now = Utc::now();
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let pending = Signals {
            late_events: 3,
            late_pending_days: vec![day],
            ..Default::default()
        };
        t.observe(&pending, now);
        assert_eq!(t.rows[2].state, NeedsOperator);
        assert!(t.rows[2]
            .operator
            .as_deref()
            .unwrap()
            .contains("--from 2026-11-20 --to 2026-11-20"));
        t.observe(
            &Signals {
                late_events: 3,
                ..Default::default()
            },
            now,
        );
        assert_eq!(
            states(&t, 2),
            vec![Detected, Mitigating, NeedsOperator, Recovering, Recovered]
        );
    }

    #[test]
    fn duplicates_and_budget() {
        let mut t = Tracker::new();
        let now = Utc::now();
        t.observe(
            &Signals {
                duplicate_files: 2,
                budget_usd: 1.0,
                projected_usd: 2.0,
                ..Default::default()
            },
            now,
        );
        assert_eq!(states(&t, 1), vec![Detected, Mitigating, Recovered]);
        assert_eq!(t.rows[4].state, NeedsOperator);
        t.observe(
            &Signals {
                duplicate_files: 2,
                budget_usd: 1.0,
                projected_usd: 0.5,
                ..Default::default()
            },
            now,
        );
        assert_eq!(t.rows[4].state, Recovered);
        assert_eq!(t.rows[1].count, 1);
    }
}
