//! The pure derivation the core runs on every publication, in one order:
//! observations (`Signals`) -> failure table -> metrics -> alerts -> health. Nothing here does
//! I/O or logs: what changed comes back as `Change`s for the caller to log, so the same code
//! runs in the core, in unit tests and in the dashboard's fixtures.

use chrono::{DateTime, NaiveDate, Utc};

use crate::alerts::{AlertOp, AlertRule, AlertState, Severity};
use crate::batch::RunStatus;
use crate::failures::{FailureRow, FailureState, Scenario};
use crate::metrics::{value, MetricPoint};
use crate::snapshot::{Health, Snapshot};
use crate::zone::Zone;

/// A change of state worth a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Failure {
        scenario: Scenario,
        from: FailureState,
        to: FailureState,
        detail: String,
        /// Seen at the first observation of a process: the state the data is in, no news.
        quiet: bool,
    },
    AlertFiring {
        name: String,
        severity: Severity,
        value: Option<f64>,
        condition: String,
    },
    AlertResolved {
        name: String,
        value: Option<f64>,
    },
}

/// The failure table and the alerts, carried from one publication to the next.
#[derive(Debug, Clone)]
pub struct Deriver {
    pub tracker: Tracker,
    pub alerts: Alerts,
}

impl Deriver {
    /// Acknowledge a scenario for a while (`Command::Snooze`).
    pub fn snooze(&mut self, scenario: Scenario, until: Option<DateTime<Utc>>) {
        self.tracker.snooze(scenario, until);
    }

    pub fn new(rules: Vec<AlertRule>) -> Deriver {
        Deriver {
            tracker: Tracker::new(),
            alerts: Alerts::new(rules),
        }
    }

    /// Fill the derived parts of `snapshot` (failures, metrics, alerts, health) from its
    /// observed parts and `signals`, at `snapshot.generated_at`; returns what changed.
    pub fn derive(&mut self, snapshot: &mut Snapshot, signals: &Signals) -> Vec<Change> {
        let now = snapshot.generated_at;
        self.tracker.observe(signals, now);
        let mut changes = self.tracker.take_changes();
        snapshot.failures = self.tracker.rows();
        snapshot.late_pending_days = signals.late_pending_days.clone();
        let mut metrics = points(snapshot);
        self.alerts.evaluate(&metrics, now, &mut changes);
        snapshot.alerts = self.alerts.states();
        let firing = snapshot.alerts.iter().filter(|a| a.firing).count();
        metrics.push(p("alerts_firing", firing as f64, "Count"));
        snapshot.metrics = metrics;
        snapshot.health = health(snapshot);
        snapshot.next_action = next_action(snapshot);
        // A lapsed snooze is not shown.
        for f in &mut snapshot.failures {
            f.snoozed_until = f.snoozed_until.filter(|t| *t > now);
        }
        changes
    }
}

/// The API-down row is snoozed: its failed run is acknowledged with it.
fn api_down_snoozed(snap: &Snapshot) -> bool {
    snap.failures
        .iter()
        .any(|f| f.scenario == Scenario::ApiDown && f.discounted(snap.generated_at) && !f.expected)
}

/// What the operator should do first, in one line, or None when nothing needs them: a failed
/// cycle, then a failed batch run (it waits for a retry), then the failure rows that need the
/// operator (the worst scenario first: data damage, the source, money, late data), then firing
/// alerts (critical first). What the configuration makes normal never ranks.
pub fn next_action(snap: &Snapshot) -> Option<String> {
    if let Some(c) = snap.last_cycle.as_ref().filter(|c| !c.ok) {
        return Some(format!(
            "cycle {} failed: {} — fix the cause, then c runs a cycle now",
            c.cycle,
            c.error.as_deref().unwrap_or("no error text")
        ));
    }
    if let Some(run) = snap
        .batch
        .runs
        .first()
        .filter(|r| r.status == RunStatus::Failed && !api_down_snoozed(snap))
    {
        let cause = run
            .tasks
            .iter()
            .find_map(|t| t.error.as_ref().map(|e| format!("{}: {e}", t.name.name())))
            .unwrap_or_else(|| "a task failed".into());
        // While the API is still down a retry would fail the same way.
        let api_down = snap.batch.api.down;
        return Some(if api_down {
            format!(
                "batch run {} failed ({cause}) and the API is still down — once it answers: \
                 ecomops retry {} (R in Runs)",
                run.run_id, run.run_id
            )
        } else {
            format!(
                "batch run {} failed ({cause}) — nothing retries it before the next scheduled \
                 run: ecomops retry {} (R in Runs)",
                run.run_id, run.run_id
            )
        });
    }
    const RANK: [Scenario; 5] = [
        Scenario::PartialWrite,
        Scenario::ApiDown,
        Scenario::CostGrowth,
        Scenario::LateEvents,
        Scenario::DuplicateFile,
    ];
    for scenario in RANK {
        if let Some(f) = snap.failures.iter().find(|f| {
            f.scenario == scenario
                && !f.discounted(snap.generated_at)
                && f.state == FailureState::NeedsOperator
        }) {
            return Some(format!(
                "{}: {}",
                f.scenario.label(),
                f.operator.as_deref().unwrap_or("see the Failures view")
            ));
        }
    }
    let mut firing: Vec<&crate::alerts::AlertState> =
        snap.alerts.iter().filter(|a| a.firing).collect();
    firing.sort_by_key(|a| a.severity != crate::alerts::Severity::Critical);
    firing.first().map(|a| {
        format!(
            "alert {} fires: {} (now {})",
            a.name,
            a.condition,
            a.value.map_or("-".into(), |v| crate::metrics::display(
                &a.metric, v, &a.unit
            ))
        )
    })
}

/// Overall health: the worst of the last cycle and the failure table, leaving out what the
/// configuration makes normal.
pub fn health(snap: &Snapshot) -> Health {
    let now = snap.generated_at;
    let counted = || snap.failures.iter().filter(|f| !f.discounted(now));
    // A failed batch run stays the operator's until it is retried (batch runs are hourly: the
    // stream cycles in between succeed), unless the API-down row it belongs to is snoozed.
    let failed_run = snap
        .batch
        .runs
        .first()
        .is_some_and(|r| r.status == RunStatus::Failed)
        && !api_down_snoozed(snap);
    let failing = snap.last_cycle.as_ref().is_some_and(|c| !c.ok)
        || failed_run
        || counted().any(|f| f.state == FailureState::NeedsOperator);
    // A firing alert is the operator's news too: never "healthy" beside it.
    let degraded = snap.alerts.iter().any(|a| a.firing)
        || counted().any(|f| {
            matches!(
                f.state,
                FailureState::Detected | FailureState::Mitigating | FailureState::Recovering
            )
        });
    if failing {
        Health::NeedsAttention
    } else if degraded {
        Health::Degraded
    } else {
        Health::Healthy
    }
}

/// What the core has seen, gathered before each publication: the derivation's input.
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
    /// The clickstream generator injects late events (`stream.generator.late_rate`): late
    /// days are expected, information rather than a problem.
    pub late_expected: bool,
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
    /// The cost line with the largest projection: (service and item, USD per month).
    pub biggest_cost: Option<(String, f64)>,
    /// Instances share the stream by shard leases (the lost-lease row is shown).
    pub leases: bool,
    /// Leases this instance lost to another since it started, and the last (shard, when).
    pub leases_lost: u64,
    pub last_lost: Option<(String, DateTime<Utc>)>,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    rows: Vec<FailureRow>,
    duplicates_seen: u64,
    late_seen: u64,
    lost_seen: u64,
    /// The lost-lease row is shown (instances share the stream by leases).
    leases: bool,
    /// The first observation (at process start) logs at debug only.
    started: bool,
    /// State changes since the last `take_changes`.
    changes: Vec<Change>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            rows: Scenario::ALL
                .iter()
                .map(|&scenario| {
                    let (d, m, r) = scenario.design();
                    (scenario, d, m, r)
                })
                .map(|(scenario, d, m, r)| FailureRow {
                    scenario,
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
                    expected: false,
                    snoozed_until: None,
                })
                .collect(),
            duplicates_seen: 0,
            late_seen: 0,
            lost_seen: 0,
            leases: false,
            started: false,
            changes: Vec::new(),
        }
    }

    pub fn rows(&self) -> Vec<FailureRow> {
        self.rows
            .iter()
            .filter(|r| self.leases || r.scenario != Scenario::LostLease)
            .cloned()
            .collect()
    }

    /// Acknowledge a scenario until `until` (None: lift it). Shown, marked, not counted.
    pub fn snooze(&mut self, scenario: Scenario, until: Option<DateTime<Utc>>) {
        self.rows[scenario as usize].snoozed_until = until;
    }

    /// The state changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Move scenario `i` to `state`, through the states an episode passes on the way (an
    /// episode starts with detected).
    fn go(&mut self, scenario: Scenario, now: DateTime<Utc>, path: &[FailureState]) {
        let i = scenario as usize;
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
        // Still happening: seen now, not only when the state last changed.
        if path.last().is_some_and(|s| !s.at_rest()) {
            self.rows[i].last_seen = Some(now);
        }
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
            if state.at_rest() {
                // A snooze covers its episode, not the next one.
                row.snoozed_until = None;
            }
            push(row, now, state);
            self.changes.push(Change::Failure {
                scenario,
                from,
                to: state,
                detail: row.detail.clone().unwrap_or_default(),
                // A process starting finds the state the data is in; that is no news.
                quiet,
            });
        }
    }

    pub fn observe(&mut self, s: &Signals, now: DateTime<Utc>) {
        use FailureState::*;
        // API down.
        let api = Scenario::ApiDown;
        if s.api_down {
            self.rows[api as usize].detail = s.api_last_error.clone();
            // The pipeline keeps probing; a run that already failed is not retried by it.
            self.rows[api as usize].operator = s.failed_run.as_ref().map(|run| {
                format!(
                    "once the API answers again: ecomops retry {run} (R on the run in Runs); \
                     nothing retries the failed run before the next scheduled one"
                )
            });
            self.go(api, now, &[Detected, Mitigating]);
        } else if let Some(run) = &s.failed_run {
            if !self.rows[api as usize].state.at_rest() {
                self.rows[api as usize].operator =
                    Some(format!("ecomops retry {run}  (R on the run in Runs)"));
                // The API answers again: "last seen" stays when it was last seen down.
                let seen = self.rows[api as usize].last_seen;
                self.go(api, now, &[NeedsOperator]);
                self.rows[api as usize].last_seen = seen;
            }
        } else if !self.rows[api as usize].state.at_rest() {
            self.rows[api as usize].operator = None;
            self.go(api, now, &[Recovering, Recovered]);
        }

        // Duplicate file: skipped at once, the MERGE is idempotent: recovered in one step.
        let dup = Scenario::DuplicateFile;
        if s.duplicate_files > self.duplicates_seen {
            let n = s.duplicate_files - self.duplicates_seen;
            self.rows[dup as usize].detail = Some(format!("{n} duplicate file(s) skipped"));
            self.go(dup, now, &[Detected, Mitigating, Recovered]);
        }
        self.duplicates_seen = s.duplicate_files;

        // Late events: buffered, then waiting for a backfill of their days.
        let late = Scenario::LateEvents;
        self.rows[late as usize].expected = s.late_expected;
        let new_late = s.late_events > self.late_seen;
        self.late_seen = s.late_events;
        if !s.late_pending_days.is_empty() {
            let (from, to) = (
                s.late_pending_days.first().copied(),
                s.late_pending_days.last().copied(),
            );
            if let (Some(from), Some(to)) = (from, to) {
                self.rows[late as usize].detail = Some(format!(
                    "late events of {} day(s) in the late buffer",
                    s.late_pending_days.len()
                ));
                self.rows[late as usize].operator =
                    Some(format!("ecomops backfill --from {from} --to {to}  (b)"));
            }
            if s.backfilling {
                self.go(late, now, &[Recovering]);
            } else {
                self.go(late, now, &[Detected, Mitigating, NeedsOperator]);
            }
        } else if new_late || !self.rows[late as usize].state.at_rest() {
            self.rows[late as usize].operator = None;
            if new_late && self.rows[late as usize].state.at_rest() {
                self.go(late, now, &[Detected, Mitigating]);
            }
            self.go(late, now, &[Recovering, Recovered]);
        }

        // Partial write.
        let pw = Scenario::PartialWrite;
        if !s.damaged.is_empty() {
            self.rows[pw as usize].detail = Some(format!(
                "{} object(s) fail their checksum, e.g. {}",
                s.damaged.len(),
                s.damaged[0]
            ));
            if let Some(e) = &s.repair_error {
                self.rows[pw as usize].operator = Some(format!(
                    "repair failed ({e}); `ecomops replay --shard ID --from-seq N` (p) or `ecomops batch run`"
                ));
                self.go(pw, now, &[Detected, Mitigating, NeedsOperator]);
            } else if s.repairing {
                self.go(pw, now, &[Detected, Mitigating, Recovering]);
            } else {
                self.go(pw, now, &[Detected, Mitigating]);
            }
        } else if !self.rows[pw as usize].state.at_rest() {
            self.rows[pw as usize].operator = None;
            self.go(pw, now, &[Recovering, Recovered]);
        }

        // Cost growth.
        let cost = Scenario::CostGrowth;
        if s.projected_usd > s.budget_usd {
            self.rows[cost as usize].detail = Some(format!(
                "projected ${:.2}/month over the ${:.2} budget; lifecycle rules would save ${:.2}",
                s.projected_usd, s.budget_usd, s.saving_usd
            ));
            let driver = s
                .biggest_cost
                .as_ref()
                .map(|(what, usd)| format!("the biggest driver is {what} (${usd:.2}/month); "))
                .unwrap_or_default();
            // Pruning only helps when storage is what costs: say so when it saves nothing.
            let prune = if s.saving_usd >= 0.01 {
                format!(
                    "retention saves ${:.2}/month: ecomops prune (loaded objects past \
                     retention, backfilled late objects) and, on S3, `ecomops lifecycle \
                     --apply` (older objects to cheaper classes)",
                    s.saving_usd
                )
            } else {
                "retention saves nothing now: reduce that service's capacity".into()
            };
            self.rows[cost as usize].operator = Some(format!(
                "{driver}{prune}; or shorten [lifecycle] retention / raise cost.budget_usd_month"
            ));
            self.go(cost, now, &[Detected, Mitigating, NeedsOperator]);
        } else if !self.rows[cost as usize].state.at_rest() {
            self.rows[cost as usize].operator = None;
            self.go(cost, now, &[Recovering, Recovered]);
        }

        // Lost lease: the fence refuses the old owner's loads and the new owner resumes from
        // the committed checkpoint and state: handled without the operator, in one step.
        self.leases = s.leases;
        let lost = Scenario::LostLease;
        if s.leases_lost > self.lost_seen {
            self.lost_seen = s.leases_lost;
            if let Some((shard, at)) = &s.last_lost {
                self.rows[lost as usize].detail = Some(format!(
                    "{shard} taken by another instance at {} ({} lost since start): loads \
                     under the old lease are refused, the new owner goes on from the checkpoint",
                    at.format("%H:%M:%S UTC"),
                    s.leases_lost
                ));
            }
            self.go(lost, now, &[Detected, Mitigating, Recovering, Recovered]);
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

#[derive(Debug, Clone)]
pub struct Alerts {
    rules: Vec<AlertRule>,
    states: Vec<AlertState>,
}

impl Alerts {
    pub fn new(rules: Vec<AlertRule>) -> Alerts {
        let states = rules
            .iter()
            .map(|r| AlertState {
                name: r.name.clone(),
                metric: r.metric.clone(),
                severity: r.severity,
                condition: format!(
                    "{} {} {} for {}s",
                    r.metric,
                    match r.op {
                        AlertOp::Above => ">",
                        AlertOp::Below => "<",
                    },
                    r.threshold,
                    r.for_secs
                ),
                value: None,
                unit: String::new(),
                pending_since: None,
                firing: false,
                firing_since: None,
            })
            .collect();
        Alerts { rules, states }
    }

    pub fn evaluate(
        &mut self,
        points: &[MetricPoint],
        now: DateTime<Utc>,
        changes: &mut Vec<Change>,
    ) {
        for (rule, st) in self.rules.iter().zip(self.states.iter_mut()) {
            st.value = value(points, &rule.metric);
            if let Some(p) = points.iter().find(|p| p.name == rule.metric) {
                st.unit = p.unit.clone();
            }
            let holds = st.value.is_some_and(|v| match rule.op {
                AlertOp::Above => v > rule.threshold,
                AlertOp::Below => v < rule.threshold,
            });
            if !holds {
                if st.firing {
                    changes.push(Change::AlertResolved {
                        name: rule.name.clone(),
                        value: st.value,
                    });
                }
                st.pending_since = None;
                st.firing = false;
                st.firing_since = None;
                continue;
            }
            let since = *st.pending_since.get_or_insert(now);
            if !st.firing && (now - since).num_seconds() >= rule.for_secs as i64 {
                st.firing = true;
                st.firing_since = Some(now);
                changes.push(Change::AlertFiring {
                    name: rule.name.clone(),
                    severity: rule.severity,
                    value: st.value,
                    condition: st.condition.clone(),
                });
            }
        }
    }

    pub fn states(&self) -> Vec<AlertState> {
        self.states.clone()
    }
}

fn p(name: &str, value: f64, unit: &str) -> MetricPoint {
    MetricPoint {
        name: name.into(),
        value,
        unit: unit.into(),
        dims: Vec::new(),
    }
}

fn d(name: &str, value: f64, unit: &str, key: &str, val: &str) -> MetricPoint {
    MetricPoint {
        dims: vec![(key.into(), val.into())],
        ..p(name, value, unit)
    }
}

/// The registry's points for a snapshot, but `alerts_firing` (added once the alerts are
/// evaluated on these points); its own `metrics` and `alerts` are not read.
pub fn points(s: &Snapshot) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    if let Some(st) = &s.stream {
        let t = &st.totals;
        out.push(d(
            "stream_records_in",
            t.records as f64,
            "Count",
            "stream",
            &st.backend,
        ));
        out.push(d(
            "stream_staged",
            t.staged as f64,
            "Count",
            "stream",
            &st.backend,
        ));
        out.push(d(
            "stream_duplicates",
            t.duplicates as f64,
            "Count",
            "stream",
            &st.backend,
        ));
        out.push(d(
            "stream_late",
            t.late as f64,
            "Count",
            "stream",
            &st.backend,
        ));
        out.push(d(
            "stream_quarantined",
            t.quarantined as f64,
            "Count",
            "stream",
            &st.backend,
        ));
        let lag: u64 = st.shards.iter().map(|x| x.lag_records).sum();
        out.push(d(
            "stream_lag_records",
            lag as f64,
            "Count",
            "stream",
            &st.backend,
        ));
        for sh in &st.shards {
            out.push(d(
                "shard_lag_records",
                sh.lag_records as f64,
                "Count",
                "shard",
                &sh.shard,
            ));
            out.push(d(
                "shard_lag_ms",
                sh.lag_ms as f64,
                "Milliseconds",
                "shard",
                &sh.shard,
            ));
        }
        out.push(p("dedup_tracked_ids", st.dedup.tracked as f64, "Count"));
    }
    let runs = &s.batch.runs;
    let failed = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count();
    out.push(p("batch_runs_failed", failed as f64, "Count"));
    out.push(p(
        "batch_files_duplicate",
        runs.iter().map(|r| r.report.duplicates()).sum::<usize>() as f64,
        "Count",
    ));
    out.push(p(
        "batch_quarantined",
        runs.iter()
            .flat_map(|r| r.report.quarantined.values())
            .sum::<u64>() as f64,
        "Count",
    ));
    out.push(p(
        "batch_merged_rows",
        runs.iter()
            .flat_map(|r| r.report.loaded.values())
            .sum::<u64>() as f64,
        "Count",
    ));
    let api = &s.batch.api;
    out.push(p("api_attempts", api.attempts as f64, "Count"));
    out.push(p("api_retries", api.failures as f64, "Count"));
    out.push(p("api_down", if api.down { 1.0 } else { 0.0 }, "None"));
    for z in &s.zones {
        let name = z.zone.unwrap_or(Zone::Raw).name();
        out.push(d("zone_bytes", z.bytes as f64, "Bytes", "zone", name));
        out.push(d("zone_objects", z.objects as f64, "Count", "zone", name));
    }
    if let Some(w) = &s.warehouse {
        out.push(p("warehouse_ledger_files", w.ledger_files as f64, "Count"));
        out.push(p("warehouse_dirty_days", w.dirty_days as f64, "Count"));
        if let Some(q) = &w.quality {
            out.push(p("dq_orphans", q.orphan_total() as f64, "Count"));
            for (relation, n) in &q.orphans {
                out.push(d(
                    "dq_orphans_by_relation",
                    *n as f64,
                    "Count",
                    "relation",
                    relation,
                ));
            }
            out.push(p("dq_stale_tables", q.stale_tables() as f64, "Count"));
            // An alert rule input (e.g. `events_volume_drop > 0.5`): absent without a prior week.
            if let Some(drop) = q.events_volume_drop {
                out.push(p("events_volume_drop", drop, "None"));
            }
            if let Some(p95) = q.ingestion_delay.first().and_then(|x| x.p95_secs) {
                out.push(p("ingestion_delay_p95_secs", p95, "Seconds"));
            }
        }
    }
    out.push(p(
        "late_pending_days",
        s.late_pending_days.len() as f64,
        "Count",
    ));
    out.push(p("partial_writes", s.damaged.len() as f64, "Count"));
    if let Some(c) = &s.cost {
        out.push(p("warehouse_seconds", c.usage.warehouse_secs, "Seconds"));
        out.push(p("cost_month_to_date_usd", c.month_to_date_usd, "None"));
        out.push(p("cost_projected_usd", c.projected_usd, "None"));
        out.push(p(
            "cost_projected_over_budget_usd",
            (c.projected_on_aws_usd - c.budget_usd).max(0.0),
            "None",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureState::*;

    fn states(t: &Tracker, i: Scenario) -> Vec<FailureState> {
        t.rows[i as usize]
            .transitions
            .iter()
            .map(|(_, s)| *s)
            .collect()
    }

    #[test]
    fn a_lost_lease_is_shown_only_under_leases_and_recovers_without_the_operator() {
        let mut t = Tracker::new();
        let now = Utc::now();
        t.observe(&Signals::default(), now);
        assert!(t.rows().iter().all(|r| r.scenario != Scenario::LostLease));
        assert_eq!(t.rows().len(), 5);
        let leased = Signals {
            leases: true,
            ..Default::default()
        };
        t.observe(&leased, now);
        let row = |t: &Tracker| {
            t.rows()
                .into_iter()
                .find(|r| r.scenario == Scenario::LostLease)
                .unwrap()
        };
        assert_eq!(row(&t).state, Ok);
        t.observe(
            &Signals {
                leases_lost: 1,
                last_lost: Some(("shardId-000000000003".into(), now)),
                ..leased.clone()
            },
            now,
        );
        let r = row(&t);
        assert_eq!(
            states(&t, Scenario::LostLease),
            vec![Detected, Mitigating, Recovering, Recovered]
        );
        assert!(r.detail.unwrap().contains("shardId-000000000003"));
        assert!(r.operator.is_none());
        // The same count again is no new episode.
        t.observe(
            &Signals {
                leases_lost: 1,
                ..leased
            },
            now,
        );
        assert_eq!(states(&t, Scenario::LostLease).len(), 4);
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
        assert_eq!(t.rows[Scenario::ApiDown as usize].state, NeedsOperator);
        assert!(t.rows[Scenario::ApiDown as usize]
            .operator
            .as_deref()
            .unwrap()
            .contains("ecomops retry r1"));
        t.observe(&Signals::default(), now);
        assert_eq!(
            states(&t, Scenario::ApiDown),
            vec![Detected, Mitigating, NeedsOperator, Recovering, Recovered]
        );
        assert_eq!(t.rows[Scenario::ApiDown as usize].count, 1);
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
        assert_eq!(t.rows[Scenario::LateEvents as usize].state, NeedsOperator);
        assert!(t.rows[Scenario::LateEvents as usize]
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
            states(&t, Scenario::LateEvents),
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
        assert_eq!(
            states(&t, Scenario::DuplicateFile),
            vec![Detected, Mitigating, Recovered]
        );
        assert_eq!(t.rows[Scenario::CostGrowth as usize].state, NeedsOperator);
        t.observe(
            &Signals {
                duplicate_files: 2,
                budget_usd: 1.0,
                projected_usd: 0.5,
                ..Default::default()
            },
            now,
        );
        assert_eq!(t.rows[Scenario::CostGrowth as usize].state, Recovered);
        assert_eq!(t.rows[Scenario::DuplicateFile as usize].count, 1);
    }

    fn rule(for_secs: u64) -> AlertRule {
        AlertRule {
            name: "lag".into(),
            metric: "stream_lag_records".into(),
            op: AlertOp::Above,
            threshold: 10.0,
            for_secs,
            severity: Severity::Critical,
        }
    }

    fn pts(v: f64) -> Vec<MetricPoint> {
        vec![MetricPoint {
            name: "stream_lag_records".into(),
            value: v,
            unit: "Count".into(),
            dims: vec![],
        }]
    }

    #[test]
    fn fires_after_the_duration_and_resolves() {
        let mut a = Alerts::new(vec![rule(60)]);
        let t0 = Utc::now();
        a.evaluate(&pts(11.0), t0, &mut Vec::new());
        assert!(!a.states()[0].firing, "pending, not firing yet");
        a.evaluate(
            &pts(12.0),
            t0 + chrono::Duration::seconds(61),
            &mut Vec::new(),
        );
        assert!(a.states()[0].firing);
        a.evaluate(
            &pts(5.0),
            t0 + chrono::Duration::seconds(62),
            &mut Vec::new(),
        );
        assert!(!a.states()[0].firing);
    }

    fn snapshot(at: DateTime<Utc>) -> Snapshot {
        use crate::snapshot::{Backends, InstanceInfo, RunMode};
        let instance = InstanceInfo {
            pid: 1,
            started_at: at,
            data_dir: "/tmp/x".into(),
            mode: RunMode::Headless,
            read_only: false,
            version: "0".into(),
        };
        let backends = Backends {
            store: "local".into(),
            stream: "local".into(),
            warehouse: "duckdb".into(),
        };
        Snapshot::empty(instance, backends, at)
    }

    #[test]
    fn alerts_firing_counts_the_alerts_that_fire_now() {
        let mut d = Deriver::new(AlertRule::defaults());
        let mut s = snapshot(Utc::now());
        s.batch.api.down = true;
        s.damaged = vec!["raw/x".into()];
        let changes = d.derive(&mut s, &Signals::default());
        let firing = s.alerts.iter().filter(|a| a.firing).count();
        assert_eq!(firing, 2, "{:?}", s.alerts);
        assert_eq!(value(&s.metrics, "alerts_firing"), Some(2.0));
        assert_eq!(
            changes
                .iter()
                .filter(|c| matches!(c, Change::AlertFiring { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn health_is_the_worst_of_the_cycle_and_the_table() {
        let mut d = Deriver::new(Vec::new());
        let mut s = snapshot(Utc::now());
        d.derive(&mut s, &Signals::default());
        assert_eq!(s.health, Health::Healthy);
        let api_down = Signals {
            api_down: true,
            ..Default::default()
        };
        d.derive(&mut s, &api_down);
        assert_eq!(s.health, Health::Degraded);
        let failed = Signals {
            failed_run: Some("r1".into()),
            ..Default::default()
        };
        d.derive(&mut s, &failed);
        assert_eq!(s.health, Health::NeedsAttention);
    }

    /// One line says what to do first: a failed cycle, then a failed run, then the worst
    /// scenario needing the operator (what the configuration makes normal never), then alerts.
    #[test]
    fn the_next_action_is_ranked() {
        let mut d = Deriver::new(Vec::new());
        let mut s = snapshot(Utc::now());
        d.derive(&mut s, &Signals::default());
        assert_eq!(s.next_action, None, "healthy: nothing to do");
        // Expected late events (the generator's) need a backfill but do not rank.
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let late = Signals {
            late_events: 3,
            late_pending_days: vec![day],
            late_expected: true,
            ..Default::default()
        };
        d.derive(&mut s, &late);
        assert_eq!(s.next_action, None, "{:?}", s.failures);
        let both = Signals {
            late_expected: false,
            damaged: vec!["raw/x".into()],
            repair_error: Some("replay failed".into()),
            ..late.clone()
        };
        d.derive(&mut s, &both);
        let next = s.next_action.clone().unwrap();
        assert!(next.starts_with("partial write"), "{next}");
        // API down with a failed run: the run waits for the operator, and says so.
        let api = Signals {
            api_down: true,
            failed_run: Some("r1".into()),
            ..Default::default()
        };
        d.derive(&mut s, &api);
        let row = &s.failures[Scenario::ApiDown as usize];
        assert!(
            row.operator
                .as_deref()
                .unwrap()
                .contains("ecomops retry r1"),
            "{row:?}"
        );
        let mut run = crate::batch::BatchRun::new("r1".into(), "fakestore", None);
        run.status = RunStatus::Failed;
        run.tasks[0].error = Some("GET /products: HTTP 503".into());
        s.batch.runs = vec![run];
        d.derive(&mut s, &api);
        let next = s.next_action.clone().unwrap();
        assert!(
            next.starts_with("batch run r1 failed") && next.contains("HTTP 503"),
            "{next}"
        );
        s.last_cycle = Some(crate::snapshot::CycleReport {
            cycle: 9,
            started_at: s.generated_at,
            finished_at: s.generated_at,
            ok: false,
            steps: Vec::new(),
            error: Some("stream: disk full".into()),
        });
        d.derive(&mut s, &api);
        assert!(s
            .next_action
            .unwrap()
            .starts_with("cycle 9 failed: stream: disk full"));
    }

    /// A snoozed scenario is shown, marked, but neither turns health red nor ranks as the
    /// next action until the snooze lapses.
    #[test]
    fn a_snoozed_scenario_does_not_count_until_it_lapses() {
        let mut d = Deriver::new(Vec::new());
        let t0 = Utc::now();
        let mut s = snapshot(t0);
        let late = Signals {
            late_events: 3,
            late_pending_days: vec![NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()],
            ..Default::default()
        };
        d.derive(&mut s, &late);
        assert_eq!(s.health, Health::NeedsAttention);
        assert!(s.next_action.is_some());
        d.snooze(
            Scenario::LateEvents,
            Some(t0 + chrono::Duration::minutes(60)),
        );
        d.derive(&mut s, &late);
        assert_eq!(s.health, Health::Healthy, "{:?}", s.failures);
        assert_eq!(s.next_action, None);
        let row = &s.failures[Scenario::LateEvents as usize];
        assert_eq!(row.state, NeedsOperator, "still shown as it is");
        assert!(row.snoozed_until.is_some());
        // An hour and a minute later it counts again, and the lapsed snooze is not shown.
        s.generated_at = t0 + chrono::Duration::minutes(61);
        d.derive(&mut s, &late);
        assert_eq!(s.health, Health::NeedsAttention);
        assert_eq!(
            s.failures[Scenario::LateEvents as usize].snoozed_until,
            None
        );
        assert_eq!(
            "Late Events".parse::<Scenario>(),
            Result::Ok(Scenario::LateEvents)
        );
        assert!("refunds"
            .parse::<Scenario>()
            .unwrap_err()
            .contains("late events"));
    }

    /// "last seen" is when the condition was last observed, not when its state last changed.
    #[test]
    fn last_seen_follows_a_condition_that_persists() {
        let mut t = Tracker::new();
        let t0 = Utc::now();
        let late = Signals {
            late_events: 1,
            late_pending_days: vec![NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()],
            ..Default::default()
        };
        t.observe(&late, t0);
        let later = t0 + chrono::Duration::minutes(9);
        t.observe(&late, later);
        let row = &t.rows[Scenario::LateEvents as usize];
        assert_eq!(row.state, NeedsOperator);
        assert_eq!(row.last_seen, Some(later));
        assert_eq!(row.count, 1, "one episode");
    }

    /// Cost growth names the biggest driver, and does not send the operator to prune when
    /// pruning saves nothing.
    #[test]
    fn cost_growth_names_its_driver() {
        let mut d = Deriver::new(Vec::new());
        let mut s = snapshot(Utc::now());
        let over = Signals {
            projected_usd: 400.0,
            budget_usd: 100.0,
            saving_usd: 0.0,
            biggest_cost: Some(("redshift serverless RPU-hours".into(), 350.0)),
            ..Default::default()
        };
        d.derive(&mut s, &over);
        let op = s.failures[Scenario::CostGrowth as usize]
            .operator
            .clone()
            .unwrap();
        assert!(
            op.contains("redshift serverless RPU-hours ($350.00/month)"),
            "{op}"
        );
        assert!(op.contains("retention saves nothing"), "{op}");
        assert!(s.next_action.unwrap().starts_with("cost growth"));
    }

    #[test]
    fn late_pending_days_follows_the_late_events_row() {
        let mut d = Deriver::new(Vec::new());
        let mut s = snapshot(Utc::now());
        let pending = Signals {
            late_events: 2,
            late_pending_days: vec![NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()],
            ..Default::default()
        };
        d.derive(&mut s, &pending);
        assert_eq!(value(&s.metrics, "late_pending_days"), Some(1.0));
    }

    #[test]
    fn late_pending_days_counts_the_days() {
        let mut d = Deriver::new(Vec::new());
        let mut s = snapshot(Utc::now());
        let day = |n| NaiveDate::from_ymd_opt(2026, 11, n).unwrap();
        let pending = Signals {
            late_events: 5,
            late_pending_days: vec![day(18), day(19), day(20)],
            ..Default::default()
        };
        d.derive(&mut s, &pending);
        assert_eq!(value(&s.metrics, "late_pending_days"), Some(3.0));
        assert_eq!(s.late_pending_days.len(), 3);
    }

    /// The generator's injected late events keep the late-events row truthful (a backfill is
    /// due) but do not turn the pipeline red.
    #[test]
    fn expected_late_events_do_not_count_against_health() {
        let mut d = Deriver::new(Vec::new());
        let mut s = snapshot(Utc::now());
        let pending = Signals {
            late_events: 2,
            late_pending_days: vec![NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()],
            late_expected: true,
            ..Default::default()
        };
        d.derive(&mut s, &pending);
        let row = &s.failures[Scenario::LateEvents as usize];
        assert_eq!(row.state, FailureState::NeedsOperator);
        assert!(row.expected);
        assert_eq!(s.health, Health::Healthy);
        let unexpected = Signals {
            late_expected: false,
            ..pending
        };
        d.derive(&mut s, &unexpected);
        assert_eq!(s.health, Health::NeedsAttention);
    }

    /// The newest batch run failed: red until a retry succeeds, whatever the stream does.
    #[test]
    fn a_failed_run_keeps_health_red_until_retried() {
        use crate::batch::BatchRun;
        let mut d = Deriver::new(Vec::new());
        let mut s = snapshot(Utc::now());
        let mut run = BatchRun::new("r1".into(), "fakestore", None);
        run.status = RunStatus::Failed;
        s.batch.runs = vec![run.clone()];
        s.last_cycle = Some(crate::snapshot::CycleReport {
            cycle: 2,
            started_at: s.generated_at,
            finished_at: s.generated_at,
            ok: true,
            steps: vec!["stream: 10 records".into()],
            error: None,
        });
        d.derive(&mut s, &Signals::default());
        assert_eq!(s.health, Health::NeedsAttention);
        run.status = RunStatus::Succeeded;
        s.batch.runs = vec![run];
        d.derive(&mut s, &Signals::default());
        assert_eq!(s.health, Health::Healthy);
    }
}
