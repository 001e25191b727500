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

/// A metric's value as a person reads it, in its unit: durations as 850 ms / 12.3 s / 4m 05s,
/// bytes in KiB/MiB/GiB, counts with thousands separators, `*_usd` metrics in dollars.
pub fn display(name: &str, value: f64, unit: &str) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let secs = |v: f64| {
        let sign = if v < 0.0 { "-" } else { "" };
        let s = v.abs();
        // The unit is chosen on the rounded value: 999.7 ms is "1.0 s", not "1000 ms".
        if (s * 1000.0).round() < 1000.0 {
            format!("{sign}{:.0} ms", s * 1000.0)
        } else if (s * 10.0).round() < 600.0 {
            format!("{sign}{s:.1} s")
        } else if s.round() < 3600.0 {
            let r = s.round() as u64;
            format!("{sign}{}m {:02}s", r / 60, r % 60)
        } else {
            let m = (s / 60.0).round() as u64;
            format!("{sign}{}h {:02}m", m / 60, m % 60)
        }
    };
    match unit {
        "Milliseconds" => secs(value / 1000.0),
        "Seconds" => secs(value),
        "Bytes" => {
            let sign = if value < 0.0 { "-" } else { "" };
            format!("{sign}{}", crate::units::bytes(value.abs().round() as u64))
        }
        _ if name.ends_with("_usd") => format!("${value:.2}"),
        "Count" if value.fract() == 0.0 && value.abs() < 1e15 => {
            let sign = if value < 0.0 { "-" } else { "" };
            format!("{sign}{}", crate::units::thousands(value.abs() as u64))
        }
        _ => format!("{}", (value * 1000.0).round() / 1000.0),
    }
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

#[cfg(test)]
mod tests {
    use super::display;

    #[test]
    fn values_read_in_their_unit() {
        assert_eq!(display("shard_lag_ms", 850.0, "Milliseconds"), "850 ms");
        assert_eq!(display("shard_lag_ms", 12_300.0, "Milliseconds"), "12.3 s");
        assert_eq!(display("x", 245.0, "Seconds"), "4m 05s");
        assert_eq!(display("x", -90.0, "Seconds"), "-1m 30s");
        assert_eq!(display("x", 0.9997, "Seconds"), "1.0 s");
        assert_eq!(display("x", 59.97, "Seconds"), "1m 00s");
        assert_eq!(
            display("zone_bytes", 3.5 * 1024.0 * 1024.0, "Bytes"),
            "3.5 MiB"
        );
        assert_eq!(display("stream_staged", 1_234_567.0, "Count"), "1,234,567");
        assert_eq!(display("cost_projected_usd", 12.345, "None"), "$12.35");
        assert_eq!(display("events_volume_drop", 0.25, "None"), "0.25");
    }
}
