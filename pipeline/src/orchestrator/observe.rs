//! What the engine observes between commands: zone, warehouse and stream statistics, cost,
//! and the integrity scan with its repairs.

use std::sync::Arc;

use chrono::Utc;

use crate::store::ObjectStore;
use crate::warehouse::{self};
use crate::zones::{self};

use super::Pipeline;

impl Pipeline {
    pub(super) async fn refresh_zones(&mut self) {
        let now = Utc::now();
        let rt = &self.config.runtime;
        let every = std::time::Duration::from_secs(
            rt.zone_listing_interval_secs.max(rt.stats_interval_secs),
        );
        if self.zone_tally.listing_due(every) {
            match zones::zone_listing(self.store.as_ref()).await {
                Ok(listing) => {
                    self.zone_tally.replace(&listing);
                    self.saving = Some(crate::cost::saving(
                        &self.config.cost,
                        &self.config.lifecycle,
                        &listing,
                        now,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not refresh zone statistics");
                    self.refresh_error = Some(e);
                }
            }
        }
        self.zones = self.zone_tally.stats();
        let saving = self.saving.clone();
        if let Some(wh) = self.warehouse.clone() {
            match self
                .late_index
                .pending(self.store.as_ref(), wh.as_ref())
                .await
            {
                Ok(days) => self.late_pending = days,
                Err(e) => tracing::warn!(error = %e, "could not read the late buffer"),
            }
        }
        if let Some(wh) = self.warehouse.clone() {
            match warehouse::status(wh.as_ref()).await {
                Ok(s) => self.warehouse_status = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read warehouse statistics");
                    self.refresh_error = Some(e);
                }
            }
            self.refresh_quality(wh.as_ref(), now).await;
            self.refresh_trends(wh.as_ref(), now).await;
        }
        match self
            .stream
            .status(self.store.as_ref(), self.warehouse.as_deref())
            .await
        {
            Ok(s) => self.stream_status = Some(s),
            Err(e) => tracing::warn!(error = %e, "could not read stream statistics"),
        }
        self.history
            .observe(self.stream_status.as_ref(), self.warehouse_status.as_ref());
        // Priced last, from the fresh zone sizes and stream counts.
        if let Some(saving) = saving {
            self.update_cost(saving, now);
        }
    }

    /// The data-quality findings, recomputed when a statistics interval has passed since the
    /// last time, and carried in the warehouse status.
    async fn refresh_quality(&mut self, wh: &dyn warehouse::Warehouse, now: chrono::DateTime<Utc>) {
        let every = std::time::Duration::from_secs(self.config.runtime.stats_interval_secs);
        if self
            .quality
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= every)
        {
            let sla = &self.config.warehouse.quality.freshness_sla_secs;
            match warehouse::quality::quality(wh, sla, now).await {
                Ok(q) => self.quality = Some((std::time::Instant::now(), q)),
                Err(e) => tracing::warn!(error = %e, "could not check data quality"),
            }
        }
        if let Some(s) = &mut self.warehouse_status {
            s.quality = self.quality.as_ref().map(|(_, q)| q.clone());
        }
    }

    /// The Trends view's days, read again when a statistics interval has passed (or after
    /// `r`, which clears them).
    async fn refresh_trends(&mut self, wh: &dyn warehouse::Warehouse, now: chrono::DateTime<Utc>) {
        let every = std::time::Duration::from_secs(self.config.runtime.stats_interval_secs);
        if self
            .trends
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= every)
        {
            let today = now.date_naive();
            let days = ecom_model::snapshot::TREND_DAYS - 1;
            let from = today - chrono::Days::new(days);
            match warehouse::trends(wh, from, today).await {
                Ok(t) => self.trends = Some((std::time::Instant::now(), t)),
                Err(e) => tracing::warn!(error = %e, "could not read the daily figures"),
            }
        }
    }

    /// Accrue usage to `now` and price it.
    pub(super) fn update_cost(&mut self, saving: crate::cost::Saving, now: chrono::DateTime<Utc>) {
        let zone_bytes: Vec<(zones::Zone, u64)> = self
            .zones
            .iter()
            .filter_map(|z| z.zone.map(|zone| (zone, z.bytes)))
            .collect();
        let records = self.stream_status.as_ref().map_or(0, |s| s.totals.records);
        // The open shards the log has (Kinesis: ListShards, after any reshard; a closed parent
        // is no longer billed), not the config's. Under leases the shards this instance owns
        // (none is a real answer): the fleet's figures add up to each shard hour once.
        let shards = self
            .stream_status
            .as_ref()
            .map(|s| {
                (
                    s.shards.iter().filter(|x| !x.closed).count() as u32,
                    s.fleet.is_some(),
                )
            })
            .filter(|(n, fleet)| *n > 0 || *fleet)
            .map_or(self.config.stream.shards, |(n, _)| n);
        self.usage.observe(
            now,
            self.meter.read(),
            &zone_bytes,
            shards,
            records,
            self.meter.stream_bytes(),
        );
        if !self.options.read_only {
            if let Err(e) = crate::cost::save_usage(&self.usage, &self.config.data_dir) {
                tracing::warn!(error = %e, "could not save usage");
            }
        }
        let cw = &self.config.telemetry.cloudwatch;
        let setup = crate::cost::Setup {
            shards,
            cloudwatch_metrics: if cw.enabled {
                crate::metrics::NAMES.len() as u64
            } else {
                0
            },
            cloudwatch_alarms: if cw.enabled && cw.create_alarms {
                self.config.alerts.len() as u64
            } else {
                0
            },
            on_aws: [
                ("s3".to_string(), self.backends.store == "s3"),
                ("kinesis".to_string(), self.backends.stream == "kinesis"),
                (
                    "redshift".to_string(),
                    self.backends.warehouse == "redshift",
                ),
                ("cloudwatch".to_string(), cw.enabled),
            ]
            .into(),
        };
        self.cost = Some(crate::cost::estimate(
            &self.config.cost,
            &self.usage,
            &zone_bytes,
            &setup,
            saving,
            now,
        ));
    }

    /// The integrity scan (when due, or `force`) and the repair of what it finds: stream
    /// segments are replayed from the log, batch files pulled or staged again by a batch run.
    pub(super) async fn scan_and_repair(&mut self, force: bool) {
        let every = self.config.runtime.integrity_scan_interval_secs;
        if !force
            && (every == 0
                || self
                    .last_scan
                    .is_some_and(|t| t.elapsed().as_secs() < every))
        {
            return;
        }
        self.last_scan = Some(std::time::Instant::now());
        let budget = self.config.runtime.integrity_scan_budget_bytes;
        // What was written since the last scan, and a rolling sample of the rest.
        let scan = |store: Arc<dyn ObjectStore>, plan: crate::integrity::ScanPlan| async move {
            let mut objects = Vec::new();
            for zone in [zones::Zone::Raw, zones::Zone::Staging] {
                objects.extend(store.list_stat(zone.prefix()).await?);
            }
            let (keys, next) = plan.select(&objects, budget);
            let damaged = crate::integrity::check(store.as_ref(), &keys).await?;
            Ok::<_, crate::Error>((damaged, next))
        };
        // Damage found before and not repaired yet stays found.
        let before = std::mem::take(&mut self.damaged);
        self.damaged = match scan(self.store.clone(), self.scan_plan.clone()).await {
            Ok((mut d, next)) => {
                let recheck = crate::integrity::check(self.store.as_ref(), &before)
                    .await
                    .unwrap_or(before);
                d.extend(recheck);
                d.sort();
                d.dedup();
                self.scan_plan = next;
                self.scan_plan.damaged = d.clone();
                self.save_scan_plan();
                d
            }
            Err(e) => {
                tracing::warn!(error = %e, "integrity scan failed");
                self.damaged = before;
                return;
            }
        };
        if self.damaged.is_empty() {
            self.repair_error = None;
            return;
        }
        tracing::warn!(count = self.damaged.len(), first = %self.damaged[0], "failure scenario: partial write detected");
        if self.options.read_only {
            return;
        }
        self.repairing = true;
        self.publish();
        let mut replays: std::collections::BTreeMap<String, u64> = Default::default();
        let mut batch = false;
        for key in &self.damaged {
            match crate::integrity::repair_for(key) {
                crate::integrity::Repair::Replay { shard, from_seq } => {
                    let e = replays.entry(shard).or_insert(from_seq);
                    *e = (*e).min(from_seq);
                }
                crate::integrity::Repair::BatchRun => batch = true,
            }
        }
        let mut error = None;
        for (shard, from) in replays {
            let r = self
                .stream
                .replay(
                    self.store.as_ref(),
                    self.warehouse.as_deref(),
                    &shard,
                    Some(from),
                    None,
                )
                .await;
            if let Err(e) = r {
                error = Some(format!("replay {shard} from {from}: {e}"));
            }
        }
        if batch {
            if let Err(e) = self.run_batch().await {
                error = Some(format!("batch run: {e}"));
            }
        }
        // The repaired objects, read back.
        self.damaged = match crate::integrity::check(self.store.as_ref(), &self.damaged).await {
            Ok(d) => d,
            Err(e) => {
                error.get_or_insert(e.to_string());
                self.damaged.clone()
            }
        };
        if !self.damaged.is_empty() && error.is_none() {
            error = Some(format!(
                "{} object(s) still damaged after repair",
                self.damaged.len()
            ));
        }
        self.repairing = false;
        self.repair_error = error;
        // What the repair left damaged, for the next process too.
        self.scan_plan.damaged = self.damaged.clone();
        self.save_scan_plan();
    }

    fn save_scan_plan(&self) {
        if self.options.read_only {
            return;
        }
        if let Err(e) = self.scan_plan.save(&self.config.data_dir) {
            tracing::warn!(error = %e, "could not save the integrity scan's place");
        }
    }
}
