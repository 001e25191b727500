//! Cost estimates: measured usage of the month and its priced lines.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::zone::Zone;

/// Measured usage of the current month, persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// "YYYY-MM".
    pub month: String,
    pub tracked_since: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub s3_put_requests: u64,
    pub s3_get_requests: u64,
    /// Stream records consumed; each is one 25 KB PUT payload unit (events are far smaller).
    pub stream_put_units: u64,
    pub shard_hours: f64,
    #[serde(default)]
    pub stream_bytes: u64,
    pub warehouse_secs: f64,
    /// Byte-hours accrued per zone (storage month to date).
    pub byte_hours: BTreeMap<String, f64>,
    /// Meter readings at the last update (per process; reset when the process restarts).
    #[serde(skip)]
    last_meter: Option<(u64, u64, u64)>,
    #[serde(skip)]
    last_records: Option<u64>,
    #[serde(skip)]
    last_stream_bytes: Option<u64>,
}

impl Usage {
    pub fn new(now: DateTime<Utc>) -> Usage {
        Usage {
            month: now.format("%Y-%m").to_string(),
            tracked_since: now,
            updated_at: now,
            s3_put_requests: 0,
            s3_get_requests: 0,
            stream_put_units: 0,
            shard_hours: 0.0,
            stream_bytes: 0,
            warehouse_secs: 0.0,
            byte_hours: BTreeMap::new(),
            last_meter: None,
            last_records: None,
            last_stream_bytes: None,
        }
    }

    /// Accrue since the last update: storage for the elapsed time at `zone_bytes`, shard hours,
    /// and the meter's and stream's increments.
    pub fn observe(
        &mut self,
        now: DateTime<Utc>,
        meter: (u64, u64, u64),
        zone_bytes: &[(Zone, u64)],
        shards: u32,
        stream_records: u64,
        stream_bytes: u64,
    ) {
        let month = now.format("%Y-%m").to_string();
        if month != self.month {
            let (m, r, b) = (self.last_meter, self.last_records, self.last_stream_bytes);
            *self = Usage::new(now);
            self.last_meter = m;
            self.last_records = r;
            self.last_stream_bytes = b;
        }
        let hours = ((now - self.updated_at).num_milliseconds().max(0) as f64) / 3_600_000.0;
        for (zone, bytes) in zone_bytes {
            *self.byte_hours.entry(zone.name().to_string()).or_default() += *bytes as f64 * hours;
        }
        self.shard_hours += shards as f64 * hours;
        let (p0, g0, w0) = self.last_meter.unwrap_or((0, 0, 0));
        self.s3_put_requests += meter.0.saturating_sub(p0);
        self.s3_get_requests += meter.1.saturating_sub(g0);
        self.warehouse_secs += meter.2.saturating_sub(w0) as f64 / 1e6;
        self.last_meter = Some(meter);
        // A consumer restarted from zero counts from zero again.
        let before = self
            .last_records
            .filter(|r| *r <= stream_records)
            .unwrap_or(0);
        self.stream_put_units += stream_records - before;
        self.last_records = Some(stream_records);
        let b0 = self.last_stream_bytes.unwrap_or(0);
        self.stream_bytes += stream_bytes.saturating_sub(b0);
        self.last_stream_bytes = Some(stream_bytes);
        self.updated_at = now;
    }
}

/// One priced item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    pub service: String,
    pub item: String,
    /// Month-to-date quantity in `unit`.
    pub quantity: f64,
    pub unit: String,
    pub unit_price_usd: f64,
    pub month_to_date_usd: f64,
    pub projected_usd: f64,
}

/// What the lifecycle rules would save per month on the current objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saving {
    /// Bytes past retention (deleted by pruning / expiration).
    pub expirable_bytes: u64,
    /// Bytes that would move to Standard-IA and to Glacier IR.
    pub ia_bytes: u64,
    pub glacier_bytes: u64,
    pub usd_month: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub prices_as_of: String,
    pub month: String,
    pub generated_at: DateTime<Utc>,
    pub hours_tracked: f64,
    pub hours_in_month: f64,
    /// Which services run on AWS here (the others are estimates of the same volume on AWS).
    pub on_aws: BTreeMap<String, bool>,
    pub lines: Vec<CostLine>,
    pub month_to_date_usd: f64,
    /// Every line, as if it all ran on AWS.
    pub projected_usd: f64,
    /// The lines of the services that do run on AWS here: what is billed, and what the
    /// budget is held against (an all-local instance is never over budget).
    #[serde(default)]
    pub projected_on_aws_usd: f64,
    pub budget_usd: f64,
    /// `projected_on_aws_usd` over `budget_usd`.
    pub over_budget: bool,
    pub saving: Saving,
    /// Current bytes per zone.
    pub zone_bytes: BTreeMap<String, u64>,
    pub usage: Usage,
}

/// Whether a service's cost is held against the budget: it is billed on AWS here, or every
/// service is with `cost.budget_covers_local` (capacity planning before a move).
pub fn held_against_budget(
    on_aws: &BTreeMap<String, bool>,
    service: &str,
    covers_local: bool,
) -> bool {
    covers_local || on_aws.get(service).copied().unwrap_or(false)
}

impl CostReport {
    /// The priced line held against the budget with the largest projection: the cost
    /// driver to name (a local service is never the one to cut).
    pub fn biggest_held(&self, covers_local: bool) -> Option<&CostLine> {
        self.lines
            .iter()
            .filter(|l| held_against_budget(&self.on_aws, &l.service, covers_local))
            .filter(|l| l.projected_usd > 0.0)
            .max_by(|a, b| a.projected_usd.total_cmp(&b.projected_usd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(service: &str, usd: f64) -> CostLine {
        CostLine {
            service: service.into(),
            item: "x".into(),
            quantity: 1.0,
            unit: "u".into(),
            unit_price_usd: usd,
            month_to_date_usd: usd,
            projected_usd: usd,
        }
    }

    /// The driver named is the largest line the budget is held against: with S3 on AWS and
    /// a local warehouse, S3 — not the larger Redshift estimate of the local warehouse.
    #[test]
    fn the_biggest_line_held_against_the_budget() {
        let mut on_aws = BTreeMap::new();
        on_aws.insert("s3".to_string(), true);
        on_aws.insert("redshift".to_string(), false);
        assert!(held_against_budget(&on_aws, "s3", false));
        assert!(!held_against_budget(&on_aws, "redshift", false));
        assert!(held_against_budget(&on_aws, "redshift", true));
        let now = Utc::now();
        let report = CostReport {
            prices_as_of: "2026-11-01".into(),
            month: "2026-11".into(),
            generated_at: now,
            hours_tracked: 1.0,
            hours_in_month: 720.0,
            on_aws,
            lines: vec![line("s3", 3.0), line("redshift", 300.0)],
            month_to_date_usd: 303.0,
            projected_usd: 303.0,
            projected_on_aws_usd: 3.0,
            budget_usd: 1.0,
            over_budget: true,
            saving: Saving::default(),
            zone_bytes: BTreeMap::new(),
            usage: Usage::new(now),
        };
        let pick = |covers| report.biggest_held(covers).map(|l| l.service.as_str());
        assert_eq!(pick(false), Some("s3"));
        assert_eq!(pick(true), Some("redshift"));
    }
}
