//! The control socket's protocol: newline-delimited JSON, one request per line. A client
//! says hello first with the protocol version it speaks; an instance speaking another one
//! answers with an error naming both, and the client gives up (rather than misread a
//! snapshot of a different shape).

use serde::{Deserialize, Serialize};

use crate::command::{Command, Origin};
use crate::report::Report;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The first request of a connection.
    Hello {
        protocol: u32,
    },
    Snapshot,
    /// A snapshot now and one per change, until the client hangs up.
    Subscribe,
    Command {
        command: Command,
        /// The client's SSH session and `--read-only` flag; the user comes from the socket's
        /// peer credentials, not from the client's word.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Hello { protocol: u32, version: String },
    Snapshot { snapshot: Box<Snapshot> },
    Outcome { outcome: CommandOutcome },
    Error { message: String },
}

/// The core's answer to a command: whether it succeeded, why not, and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub ok: bool,
    /// Why it failed or was refused (empty on success: the report says what happened).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// Not done because what it needs is not done yet (a batch task whose upstream has not
    /// succeeded): try again later. The CLI exits 75 (EX_TEMPFAIL) for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
}

impl CommandOutcome {
    /// Done, as the report says.
    pub fn done(report: Report) -> CommandOutcome {
        CommandOutcome {
            ok: true,
            message: String::new(),
            report: Some(report),
            waiting: false,
        }
    }

    /// Not done yet: `message` says what it waits for.
    pub fn waiting(message: impl Into<String>, report: Report) -> CommandOutcome {
        CommandOutcome {
            ok: false,
            message: message.into(),
            report: Some(report),
            waiting: true,
        }
    }

    pub fn failed(message: impl Into<String>) -> CommandOutcome {
        CommandOutcome {
            ok: false,
            message: message.into(),
            report: None,
            waiting: false,
        }
    }

    /// Ran, but with a result that fails the command (a failed run, a verify difference).
    pub fn failed_with(message: impl Into<String>, report: Report) -> CommandOutcome {
        CommandOutcome {
            ok: false,
            message: message.into(),
            report: Some(report),
            waiting: false,
        }
    }

    /// One line for the outcome: the dashboard's status line, `--output json`, and the message
    /// the audit trail records.
    pub fn summary(&self) -> String {
        let Some(report) = &self.report else {
            return self.message.clone();
        };
        match report {
            Report::Refreshed => "refreshed".into(),
            Report::Paused => "paused: no new cycles will start".into(),
            Report::Resumed => "resumed".into(),
            Report::Cycle(c) if !c.critical_alerts.is_empty() => {
                let names: Vec<&str> = c.critical_alerts.iter().map(|a| a.name.as_str()).collect();
                format!(
                    "cycle {} finished, but critical alert(s) fire: {}",
                    c.cycle.cycle,
                    names.join(", ")
                )
            }
            Report::Cycle(c) if c.cycle.ok => format!("cycle {} succeeded", c.cycle.cycle),
            Report::Cycle(c) => format!(
                "cycle {} failed: {}",
                c.cycle.cycle,
                c.cycle.error.clone().unwrap_or_default()
            ),
            Report::Run(run) => format!("batch: {}", run.summary()),
            Report::Metrics(_) => "metrics".into(),
            Report::Trends(days) => format!("{} day(s) of figures", days.len()),
            Report::Categories(c) => format!("{} categor(ies)", c.len()),
            Report::Snoozed {
                scenario,
                until: Some(t),
            } => format!(
                "{} snoozed until {}: shown, not counted in health",
                scenario.label(),
                t.format("%H:%M:%S UTC")
            ),
            Report::Snoozed {
                scenario,
                until: None,
            } => format!("{} counts in health again", scenario.label()),
            Report::Quarantine(q) => format!(
                "quarantine: {} record(s) in {} object(s)",
                q.records, q.objects
            ),
            Report::Reprocess(r) => format!(
                "reprocess: {} quarantined event(s) judged again, {} accepted and loaded, {} still refused",
                r.examined, r.accepted, r.still_refused
            ),
            Report::Cost(_) => "cost".into(),
            Report::Verify(v) if v.ok() => format!("verify: {} checks, no difference", v.checks),
            Report::Verify(v) => format!(
                "verify: {} of {} checks differ",
                v.differences.len(),
                v.checks
            ),
            Report::Backfill(b) => format!(
                "backfill {}..{}: {} late event(s) loaded, {} day(s) recomputed",
                b.from, b.to, b.late_loaded, b.recomputed_days
            ),
            Report::Replay(r) => format!(
                "replay {}: {} segment(s), {} RAW byte-identical, {} rewritten, {} restaged, \
                 {} load(s) already in the warehouse",
                r.shard, r.segments, r.raw_identical, r.raw_rewritten, r.restaged, r.loads_skipped
            ),
            Report::Ingest(i) if i.duplicate => format!(
                "duplicate file: {} was already ingested; not fed again ({})",
                i.raw_key, i.drained
            ),
            Report::Ingest(i) => {
                let cut = if i.oversized == 0 {
                    String::new()
                } else {
                    format!(" ({} over the record limit, quarantined)", i.oversized)
                };
                format!(
                    "ingested {} lines{cut} from {}: {}",
                    i.lines, i.raw_key, i.drained
                )
            }
            Report::Prune(r) => format!(
                "prune{}: {} object(s), {} bytes {}; {} kept (not loaded yet); {} CURATED row(s) of old days",
                if r.dry_run { " (dry run)" } else { "" },
                r.deleted.len(),
                r.deleted_bytes,
                if r.dry_run { "would be deleted" } else { "deleted" },
                r.kept_unloaded.len(),
                r.curated_rows
            ),
            Report::Lifecycle(plan) if plan.diff.is_empty() => format!(
                "bucket {}: lifecycle rules already as configured",
                plan.bucket
            ),
            Report::Lifecycle(plan) => format!(
                "bucket {}: {}",
                plan.bucket,
                if plan.applied {
                    "applied"
                } else {
                    "dry run (--apply sets it)"
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BackfillReport, CycleOutcome};
    use crate::snapshot::CycleReport;

    /// What the socket carries reads back as the same typed report: no guessing by shape.
    #[test]
    fn outcomes_round_trip_with_their_report_kind() {
        let at = chrono::DateTime::UNIX_EPOCH;
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        for outcome in [
            CommandOutcome::done(Report::Backfill(BackfillReport {
                from: day,
                to: day,
                late_loaded: 3,
                recomputed_days: 1,
            })),
            CommandOutcome::failed_with(
                "batch: HTTP 503",
                Report::Cycle(CycleOutcome {
                    cycle: CycleReport {
                        cycle: 7,
                        started_at: at,
                        finished_at: at,
                        ok: false,
                        steps: vec!["stream: 0 records".into()],
                        error: Some("batch: HTTP 503".into()),
                    },
                    critical_alerts: Vec::new(),
                }),
            ),
            CommandOutcome::done(Report::Paused),
            CommandOutcome::failed("refused"),
        ] {
            let line = serde_json::to_string(&Response::Outcome {
                outcome: outcome.clone(),
            })
            .unwrap();
            let back: Response = serde_json::from_str(&line).unwrap();
            assert_eq!(back, Response::Outcome { outcome }, "{line}");
        }
    }
}
