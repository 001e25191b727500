//! The metrics registry: the pipeline's figures as named points (with dimensions for stream,
//! shard and zone), derived from each snapshot. Shown by the dashboard, evaluated by alerts,
//! and published to CloudWatch when enabled.

use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;
use crate::zones::Zone;

/// One figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub name: String,
    pub value: f64,
    /// A CloudWatch unit name: Count, Bytes, Seconds, Milliseconds, None.
    pub unit: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dims: Vec<(String, String)>,
}

/// Every metric name the registry produces (alert rules are checked against it).
pub const NAMES: &[&str] = &[
    "stream_records_in",
    "stream_staged",
    "stream_duplicates",
    "stream_late",
    "stream_quarantined",
    "stream_lag_records",
    "shard_lag_records",
    "shard_lag_ms",
    "dedup_tracked_ids",
    "batch_runs_failed",
    "batch_files_duplicate",
    "batch_quarantined",
    "batch_merged_rows",
    "api_attempts",
    "api_retries",
    "api_down",
    "zone_bytes",
    "zone_objects",
    "warehouse_ledger_files",
    "warehouse_dirty_days",
    "warehouse_seconds",
    "late_pending_days",
    "partial_writes",
    "cost_month_to_date_usd",
    "cost_projected_usd",
    "cost_projected_over_budget_usd",
    "alerts_firing",
];

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

/// The registry's points for a snapshot (its own `metrics` field is not read).
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
        .filter(|r| r.status == crate::batch::run::RunStatus::Failed)
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
    }
    let late_days = s
        .failures
        .iter()
        .find(|f| f.scenario == "late events")
        .and_then(|f| f.operator.as_ref())
        .map_or(0.0, |_| 1.0);
    out.push(p("late_pending_days", late_days, "Count"));
    out.push(p("partial_writes", s.damaged.len() as f64, "Count"));
    if let Some(c) = &s.cost {
        out.push(p("warehouse_seconds", c.usage.warehouse_secs, "Seconds"));
        out.push(p("cost_month_to_date_usd", c.month_to_date_usd, "None"));
        out.push(p("cost_projected_usd", c.projected_usd, "None"));
        out.push(p(
            "cost_projected_over_budget_usd",
            (c.projected_usd - c.budget_usd).max(0.0),
            "None",
        ));
    }
    out.push(p(
        "alerts_firing",
        s.alerts.iter().filter(|a| a.firing).count() as f64,
        "Count",
    ));
    out
}

/// A metric's value for alerting: the largest over its dimensions.
pub fn value(points: &[MetricPoint], name: &str) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.name == name)
        .map(|p| p.value)
        .reduce(f64::max)
}
