//! Alert rules from config, evaluated in process on every snapshot's metrics: a rule fires
//! once its condition has held for `for_secs`, resolves when it stops holding; both are logged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{AlertOp, AlertRule, Severity};
use crate::error::{Error, Result};
use crate::metrics::{self, MetricPoint};

/// A rule's current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub name: String,
    pub metric: String,
    pub severity: Severity,
    pub condition: String,
    pub value: Option<f64>,
    /// The condition holds now, since this time.
    pub pending_since: Option<DateTime<Utc>>,
    pub firing: bool,
    pub firing_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Alerts {
    rules: Vec<AlertRule>,
    states: Vec<AlertState>,
}

/// Refuse rules naming a metric the registry does not produce.
pub fn validate(rules: &[AlertRule]) -> Result<()> {
    for r in rules {
        if !metrics::NAMES.contains(&r.metric.as_str()) {
            return Err(Error::Config {
                path: "alerts".into(),
                message: format!(
                    "alert {:?} names unknown metric {:?}; the metrics are: {}",
                    r.name,
                    r.metric,
                    metrics::NAMES.join(", ")
                ),
            });
        }
    }
    Ok(())
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
                pending_since: None,
                firing: false,
                firing_since: None,
            })
            .collect();
        Alerts { rules, states }
    }

    pub fn evaluate(&mut self, points: &[MetricPoint], now: DateTime<Utc>) {
        for (rule, st) in self.rules.iter().zip(self.states.iter_mut()) {
            st.value = metrics::value(points, &rule.metric);
            let holds = st.value.is_some_and(|v| match rule.op {
                AlertOp::Above => v > rule.threshold,
                AlertOp::Below => v < rule.threshold,
            });
            if !holds {
                if st.firing {
                    tracing::info!(alert = %rule.name, value = ?st.value, "alert resolved");
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
                match rule.severity {
                    Severity::Critical => {
                        tracing::error!(alert = %rule.name, value = ?st.value, condition = %st.condition, "critical alert firing")
                    }
                    Severity::Warning => {
                        tracing::warn!(alert = %rule.name, value = ?st.value, condition = %st.condition, "alert firing")
                    }
                }
            }
        }
    }

    pub fn states(&self) -> Vec<AlertState> {
        self.states.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        a.evaluate(&pts(11.0), t0);
        assert!(!a.states()[0].firing, "pending, not firing yet");
        a.evaluate(&pts(12.0), t0 + chrono::Duration::seconds(61));
        assert!(a.states()[0].firing);
        a.evaluate(&pts(5.0), t0 + chrono::Duration::seconds(62));
        assert!(!a.states()[0].firing);
    }

    #[test]
    fn unknown_metric_is_a_config_error() {
        let mut r = rule(0);
        r.metric = "lagg".into();
        let e = validate(&[r]).unwrap_err().to_string();
        assert!(e.contains("lagg"), "{e}");
    }
}
