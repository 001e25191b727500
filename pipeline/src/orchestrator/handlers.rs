//! What each command does. Every handler returns a typed report; the wording is the
//! binary's (`src/render.rs`).

use std::sync::Arc;

use chrono::Utc;

use crate::batch::run::{BatchRun, RunRequest, Task, TaskStatus};
use crate::command::{Command, CommandOutcome};
use crate::warehouse::{self, Warehouse};
use ecom_model::report::{BackfillReport, CycleOutcome, IngestReport, Report};

use super::Pipeline;

impl Pipeline {
    pub(super) async fn carry_out(&mut self, command: Command) -> CommandOutcome {
        let outcome = match command {
            Command::Refresh => {
                // Asked for: recount from a listing, not from this process's writes, and read
                // the daily figures again.
                self.zone_tally.expire();
                self.trends = None;
                self.refresh_zones().await;
                CommandOutcome::done(Report::Refreshed)
            }
            Command::RunCycle => {
                let cycle = self.run_cycle(true).await;
                // Cron notices a firing critical alert through the exit code.
                let critical_alerts: Vec<_> = self
                    .deriver
                    .alerts
                    .states()
                    .into_iter()
                    .filter(|a| a.firing && a.severity == crate::config::Severity::Critical)
                    .collect();
                let ok = cycle.ok && critical_alerts.is_empty();
                let error = cycle.error.clone().unwrap_or_default();
                let report = Report::Cycle(CycleOutcome {
                    cycle,
                    critical_alerts,
                });
                if ok {
                    CommandOutcome::done(report)
                } else {
                    CommandOutcome::failed_with(error, report)
                }
            }
            Command::Pause => {
                self.paused = true;
                CommandOutcome::done(Report::Paused)
            }
            Command::Resume => {
                self.paused = false;
                CommandOutcome::done(Report::Resumed)
            }
            Command::BatchRun {
                task,
                only,
                run_id,
                window,
            } => {
                let req = RunRequest {
                    run_id,
                    from: task,
                    only,
                    window,
                };
                self.batch_command(None, req).await
            }
            c @ (Command::Metrics
            | Command::Trends { .. }
            | Command::CategoryTrends { .. }
            | Command::Verify
            | Command::Backfill { .. }
            | Command::IngestFile { .. }
            | Command::Reprocess
            | Command::Replay { .. }) => self.warehouse_command(c).await,
            Command::Snooze { scenario, minutes } => {
                let until = (minutes > 0)
                    .then(|| Utc::now() + chrono::Duration::minutes(i64::from(minutes)));
                self.deriver.snooze(scenario, until);
                CommandOutcome::done(Report::Snoozed { scenario, until })
            }
            Command::Quarantine { reason, limit } => {
                match crate::quarantine::read(self.store.as_ref(), reason.as_deref(), limit).await {
                    Ok(mut q) => {
                        if let Some(wh) = &self.warehouse {
                            match warehouse::late_index::pending_counts(wh.as_ref()).await {
                                Ok(days) => q.late_pending = days,
                                Err(e) => {
                                    tracing::warn!(error = %e, "could not read the late index")
                                }
                            }
                        }
                        CommandOutcome::done(Report::Quarantine(q))
                    }
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::Retry { run_id, task } => {
                let req = RunRequest {
                    from: task,
                    ..RunRequest::default()
                };
                self.batch_command(Some(run_id), req).await
            }
            Command::Cost => {
                self.refresh_zones().await;
                match &self.cost {
                    Some(c) => CommandOutcome::done(Report::Cost(Box::new(c.clone()))),
                    None => CommandOutcome::failed("no estimate: the store could not be listed"),
                }
            }
            Command::Prune { dry_run } => {
                let r = crate::lifecycle::prune(
                    self.store.as_ref(),
                    self.warehouse.as_deref(),
                    &self.config.lifecycle,
                    Utc::now(),
                    dry_run,
                )
                .await;
                self.refresh_zones().await;
                match r {
                    Ok(r) => CommandOutcome::done(Report::Prune(r)),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::Lifecycle { apply } => {
                match crate::lifecycle::s3_lifecycle(&self.config, apply).await {
                    Ok(plan) => CommandOutcome::done(Report::Lifecycle(plan)),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
        };
        self.publish();
        outcome
    }

    pub(super) async fn warehouse_command(&mut self, command: Command) -> CommandOutcome {
        let Some(wh) = self.warehouse.clone() else {
            return CommandOutcome::failed(
                "no warehouse yet: run `ecomops batch run` or `ecomops --no-ui --once` first",
            );
        };
        match command {
            Command::Trends { from, to } => match warehouse::trends(wh.as_ref(), from, to).await {
                Ok(days) => CommandOutcome::done(Report::Trends(days)),
                Err(e) => CommandOutcome::failed(e.to_string()),
            },
            Command::CategoryTrends { from, to } => {
                match warehouse::category_trends(wh.as_ref(), from, to).await {
                    Ok(c) => CommandOutcome::done(Report::Categories(c)),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::Metrics => match warehouse::metrics(wh.as_ref()).await {
                Ok(m) => CommandOutcome::done(Report::Metrics(m)),
                Err(e) => CommandOutcome::failed(e.to_string()),
            },
            Command::Verify => {
                let sla = self.config.warehouse.quality.freshness_sla_secs;
                let checked = async {
                    let mut r = warehouse::verify::verify(self.store.as_ref(), wh.as_ref()).await?;
                    r.quality = Some(
                        warehouse::quality::quality(wh.as_ref(), &sla, chrono::Utc::now()).await?,
                    );
                    Ok::<_, crate::Error>(r)
                };
                let checked = checked.await;
                // Fresh findings: the dashboard shows them too.
                if let Some(q) = checked.as_ref().ok().and_then(|r| r.quality.clone()) {
                    self.quality = Some((std::time::Instant::now(), q));
                }
                match checked {
                    Ok(r) if r.ok() => CommandOutcome::done(Report::Verify(r)),
                    Ok(r) => CommandOutcome::failed_with(
                        format!("{} of {} checks differ", r.differences.len(), r.checks),
                        Report::Verify(r),
                    ),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::Backfill { from, to } => {
                self.backfilling = true;
                self.publish();
                let o = self.backfill(&wh, from, to).await;
                self.backfilling = false;
                o
            }
            Command::Replay {
                shard,
                from_seq,
                from_time,
            } => {
                let result = self
                    .stream
                    .replay(
                        self.store.as_ref(),
                        Some(wh.as_ref()),
                        &shard,
                        from_seq,
                        from_time,
                    )
                    .await;
                self.refresh_zones().await;
                match result {
                    Ok(mut r) => {
                        r.shard = shard;
                        CommandOutcome::done(Report::Replay(r))
                    }
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::IngestFile { path } => {
                let body = match std::fs::read(&path) {
                    Ok(b) => bytes::Bytes::from(b),
                    Err(e) => {
                        return CommandOutcome::failed(format!(
                            "cannot read {}: {e}",
                            path.display()
                        ))
                    }
                };
                let result = self
                    .stream
                    .ingest_file(self.store.as_ref(), Some(wh.as_ref()), body)
                    .await;
                self.refresh_zones().await;
                match result {
                    Ok(r) => CommandOutcome::done(Report::Ingest(IngestReport { path, ..r })),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::Reprocess => {
                let skew = self.config.stream.watermark.max_future_skew_secs;
                let skew_ms = i64::try_from(skew.saturating_mul(1000)).unwrap_or(i64::MAX);
                let r = crate::quarantine::reprocess(
                    self.store.as_ref(),
                    wh.as_ref(),
                    skew_ms,
                    Utc::now(),
                )
                .await;
                // The accepted events' days are dirty: their models are recomputed now.
                let refreshed = match &r {
                    Ok(_) => warehouse::refresh_models(
                        wh.as_ref(),
                        self.store.as_ref(),
                        self.config.warehouse.lookback_days,
                    )
                    .await
                    .map(|_| ()),
                    Err(_) => Ok(()),
                };
                self.refresh_zones().await;
                match (r, refreshed) {
                    (Ok(r), Ok(())) => CommandOutcome::done(Report::Reprocess(r)),
                    (Err(e), _) | (_, Err(e)) => CommandOutcome::failed(e.to_string()),
                }
            }
            _ => CommandOutcome::failed("not a warehouse command"),
        }
    }

    pub(super) async fn backfill(
        &mut self,
        wh: &Arc<dyn Warehouse>,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> CommandOutcome {
        if from > to {
            return CommandOutcome::failed(format!("backfill: {from} is after {to}"));
        }
        let (f, t) = (from, to);
        // The index is complete once per process (objects from before it, or from a run
        // without a warehouse); load_late then reads it alone.
        if let Err(e) = self
            .late_index
            .ensure(self.store.as_ref(), wh.as_ref())
            .await
        {
            return CommandOutcome::failed(e.to_string());
        }
        let late = match self
            .stream
            .load_late(self.store.as_ref(), wh.as_ref(), f, t)
            .await
        {
            Ok(n) => n,
            Err(e) => return CommandOutcome::failed(e.to_string()),
        };
        match warehouse::backfill(wh.as_ref(), self.store.as_ref(), f, t).await {
            Ok(r) => {
                self.refresh_zones().await;
                CommandOutcome::done(Report::Backfill(BackfillReport {
                    from,
                    to,
                    late_loaded: late,
                    recomputed_days: r.recomputed_days,
                }))
            }
            Err(e) => CommandOutcome::failed(e.to_string()),
        }
    }

    pub(super) async fn batch_command(
        &mut self,
        retry: Option<String>,
        req: RunRequest,
    ) -> CommandOutcome {
        if let Some((a, b)) = req.window.filter(|(a, b)| a > b) {
            return CommandOutcome::failed(format!(
                "the carts window {a}..{b} ends before it starts"
            ));
        }
        let run = match &retry {
            Some(id) => self.batch.retry(id, req.from).await,
            None => self.batch.run(&req).await,
        };
        let outcome = match &run {
            Err(e) => CommandOutcome::failed(e.to_string()),
            Ok(run) => run_outcome(run, &req),
        };
        self.refresh_runs();
        self.refresh_zones().await;
        outcome
    }
}

/// A run's outcome for the tasks asked for: done, failed, or waiting for an upstream task.
fn run_outcome(run: &BatchRun, req: &RunRequest) -> CommandOutcome {
    // In dependency order (Task's), so the first one failed or waiting is named.
    let asked = req.selection();
    let report = Report::Run(Box::new(run.clone()));
    let state = |t: Task| run.task(t).map_or(TaskStatus::Pending, |s| s.status);
    if let Some(t) = asked.iter().find(|t| state(**t) == TaskStatus::Failed) {
        let error = run
            .task(*t)
            .and_then(|s| s.error.clone())
            .unwrap_or_default();
        return CommandOutcome::failed_with(format!("{t} failed: {error}"), report);
    }
    if let Some(t) = asked.iter().find(|t| state(**t) != TaskStatus::Succeeded) {
        let missing: Vec<String> = t
            .deps()
            .iter()
            .filter(|d| state(**d) != TaskStatus::Succeeded)
            .map(|d| format!("{d} {}", state(*d).name()))
            .collect();
        return CommandOutcome::waiting(
            format!(
                "{t} of run {} waits for its upstream: {}",
                run.run_id,
                missing.join(", ")
            ),
            report,
        );
    }
    CommandOutcome::done(report)
}
