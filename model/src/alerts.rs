//! Alert rules (as configured) and their states.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How an alert compares its metric with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertOp {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

/// One alert rule: fires when `metric op threshold` has held for `for_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    /// A metric of the registry (`ecomops status --json` lists them under "metrics").
    pub metric: String,
    pub op: AlertOp,
    pub threshold: f64,
    #[serde(default)]
    pub for_secs: u64,
    pub severity: Severity,
}

impl AlertRule {
    pub fn defaults() -> Vec<AlertRule> {
        let rule = |name: &str, metric: &str, op, threshold, for_secs, severity| AlertRule {
            name: name.into(),
            metric: metric.into(),
            op,
            threshold,
            for_secs,
            severity,
        };
        vec![
            rule(
                "fakestore api down",
                "api_down",
                AlertOp::Above,
                0.0,
                0,
                Severity::Critical,
            ),
            rule(
                "partial writes",
                "partial_writes",
                AlertOp::Above,
                0.0,
                0,
                Severity::Critical,
            ),
            rule(
                "stream lag",
                "stream_lag_records",
                AlertOp::Above,
                100_000.0,
                300,
                Severity::Warning,
            ),
            rule(
                "over budget",
                "cost_projected_over_budget_usd",
                AlertOp::Above,
                0.0,
                0,
                Severity::Warning,
            ),
        ]
    }
}

/// A rule's current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub name: String,
    pub metric: String,
    pub severity: Severity,
    pub condition: String,
    pub value: Option<f64>,
    /// The metric's unit (a CloudWatch unit name), for showing the value.
    #[serde(default)]
    pub unit: String,
    /// The condition holds now, since this time.
    pub pending_since: Option<DateTime<Utc>>,
    pub firing: bool,
    pub firing_since: Option<DateTime<Utc>>,
}
