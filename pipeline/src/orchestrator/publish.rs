//! Observations -> the pure derivation (`ecom_model::derive`) -> an immutable snapshot.

use std::sync::Arc;

use chrono::Utc;

use crate::batch::run::RunStatus;
use crate::snapshot::{BatchStatus, Snapshot};

use super::Pipeline;

impl Pipeline {
    /// Build and publish a new snapshot.
    pub(super) fn publish(&mut self) {
        self.seq += 1;
        let (pushed, recent_log) = self.options.log.read();
        self.log_seen = pushed;
        let mut snapshot = Snapshot {
            seq: self.seq,
            generated_at: Utc::now(),
            instance: self.info.clone(),
            backends: self.backends.clone(),
            paused: self.paused,
            zones: self.zones.clone(),
            cycles: self.cycles,
            last_cycle: self.last_cycle.clone(),
            batch: BatchStatus {
                source: self.batch.source_name().to_string(),
                api: self.batch.api_state(),
                runs: self.runs.clone(),
            },
            warehouse: self.warehouse_status.clone(),
            stream: self.stream_status.clone(),
            recent_log,
            next_cycle_at: self.next_cycle_at.filter(|_| !self.paused),
            next_batch_at: self.next_batch_at(),
            history: self.history.history(),
            failures: Vec::new(),
            recent_actions: self.actions.iter().cloned().collect(),
            cost: self.cost.clone(),
            damaged: self.damaged.clone(),
            // From the signals, with the other derived parts.
            late_pending_days: Vec::new(),
            trends: self
                .trends
                .as_ref()
                .map(|(_, t)| t.clone())
                .unwrap_or_default(),
            metrics: Vec::new(),
            alerts: Vec::new(),
            health: Default::default(),
            next_action: None,
        };
        let signals = self.signals();
        crate::failures::log_changes(&self.deriver.derive(&mut snapshot, &signals));
        self.tx.send_replace(Arc::new(snapshot));
    }

    /// Publish new log lines only: the derived parts (failure table, alerts) stay as the last
    /// observation left them, so redrawing the log never moves a state machine.
    pub(super) fn publish_log(&mut self) {
        let (pushed, recent_log) = self.options.log.read();
        self.log_seen = pushed;
        self.seq += 1;
        let mut snapshot = (*self.snapshot()).clone();
        snapshot.seq = self.seq;
        snapshot.recent_log = recent_log;
        self.tx.send_replace(Arc::new(snapshot));
    }

    /// When the next scheduled batch run is due: a batch interval after the last one, or the
    /// next cycle when none ran yet.
    fn next_batch_at(&self) -> Option<chrono::DateTime<Utc>> {
        if !self.options.schedule || self.paused {
            return None;
        }
        let Some(last) = self.last_batch else {
            return self.next_cycle_at;
        };
        let every = std::time::Duration::from_secs(self.config.batch.interval_secs);
        let left = every.saturating_sub(last.elapsed());
        let due = Utc::now() + chrono::Duration::from_std(left).ok()?;
        // It runs with the first cycle at or after that.
        Some(self.next_cycle_at.map_or(due, |c| c.max(due)))
    }

    /// What the failure table's state machines look at.
    pub(super) fn signals(&self) -> crate::failures::Signals {
        let api = self.batch.api_state();
        let newest = self.runs.first();
        let duplicate_files = self
            .runs
            .iter()
            .map(|r| r.report.duplicates() as u64)
            .sum::<u64>();
        crate::failures::Signals {
            api_down: api.down,
            failed_run: newest
                .filter(|r| r.status == RunStatus::Failed)
                .map(|r| r.run_id.clone()),
            api_last_error: api.last_error.clone(),
            duplicate_files,
            late_events: self
                .stream_status
                .as_ref()
                .map_or(0, |s| s.watermarks.late_events),
            late_pending_days: self.late_pending.clone(),
            late_expected: {
                let g = &self.config.stream.generator;
                g.enabled && g.late_rate > 0.0
            },
            backfilling: self.backfilling,
            damaged: self.damaged.clone(),
            repairing: self.repairing,
            repair_error: self.repair_error.clone(),
            projected_usd: self.cost.as_ref().map_or(0.0, |c| c.projected_on_aws_usd),
            budget_usd: self.config.cost.budget_usd_month,
            saving_usd: self.cost.as_ref().map_or(0.0, |c| c.saving.usd_month),
            // Among the lines held against the budget: a local service is never the driver.
            biggest_cost: self.cost.as_ref().and_then(|c| {
                c.biggest_held(self.config.cost.budget_covers_local)
                    .map(|l| (format!("{} {}", l.service, l.item), l.projected_usd))
            }),
            leases: self.config.stream.kinesis.leases.enabled,
            leases_lost: self
                .stream_status
                .as_ref()
                .and_then(|s| s.fleet.as_ref())
                .map_or(0, |f| f.lost),
            last_lost: self
                .stream_status
                .as_ref()
                .and_then(|s| s.fleet.as_ref())
                .and_then(|f| f.last_lost.as_ref())
                .map(|l| (l.shard.clone(), l.at)),
        }
    }
}
