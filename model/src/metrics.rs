//! The metrics registry's points: the pipeline's figures as named values with dimensions for
//! stream, shard and zone. Shown by the dashboard, evaluated by alerts, published to CloudWatch.

use serde::{Deserialize, Serialize};

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
    "dq_orphans",
    "dq_orphans_by_relation",
    "dq_stale_tables",
    "events_volume_drop",
    "ingestion_delay_p95_secs",
    "warehouse_seconds",
    "late_pending_days",
    "partial_writes",
    "cost_month_to_date_usd",
    "cost_projected_usd",
    "cost_projected_over_budget_usd",
    "alerts_firing",
];

/// A metric's value for alerting: the largest over its dimensions.
pub fn value(points: &[MetricPoint], name: &str) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.name == name)
        .map(|p| p.value)
        .reduce(f64::max)
}
