//! Alert rules from config, evaluated on every snapshot's metrics (`ecom_model::derive`): a
//! rule fires once its condition has held for `for_secs`, resolves when it stops holding.

use crate::config::AlertRule;
use crate::error::{Error, Result};
use crate::metrics;

pub use ecom_model::alerts::AlertState;
pub use ecom_model::derive::Alerts;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlertOp, Severity};

    #[test]
    fn unknown_metric_is_a_config_error() {
        let r = AlertRule {
            name: "lag".into(),
            metric: "lagg".into(),
            op: AlertOp::Above,
            threshold: 10.0,
            for_secs: 0,
            severity: Severity::Critical,
        };
        let e = validate(&[r]).unwrap_err().to_string();
        assert!(e.contains("lagg"), "{e}");
    }
}
