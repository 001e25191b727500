//! The failure table: a state machine per scenario with the seed's detection, mitigation and
//! recovery made real. The types and the state machines are pure and live in the contract
//! crate (`ecom_model::derive`); this module logs what they report.

pub use ecom_model::derive::{Change, Signals, Tracker};
pub use ecom_model::failures::{FailureRow, FailureState, Scenario};

/// Log the changes one derivation reports: failure states and alerts.
pub fn log_changes(changes: &[Change]) {
    for c in changes {
        match c {
            Change::Failure {
                scenario,
                from,
                to,
                detail,
                quiet,
            } => {
                let (from, to) = (from.label(), to.label());
                if *quiet {
                    tracing::debug!(%scenario, to, %detail, "failure scenario state at start");
                } else if matches!(to, "recovered" | "ok") {
                    tracing::info!(%scenario, from, to, %detail, "failure scenario state");
                } else {
                    tracing::warn!(%scenario, from, to, %detail, "failure scenario state");
                }
            }
            Change::AlertFiring {
                name,
                severity,
                value,
                condition,
            } => match severity {
                crate::config::Severity::Critical => {
                    tracing::error!(alert = %name, value = ?value, condition = %condition, "critical alert firing")
                }
                crate::config::Severity::Warning => {
                    tracing::warn!(alert = %name, value = ?value, condition = %condition, "alert firing")
                }
            },
            Change::AlertResolved { name, value } => {
                tracing::info!(alert = %name, value = ?value, "alert resolved");
            }
        }
    }
}
