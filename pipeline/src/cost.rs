//! Cost estimates from measured volumes: bytes per zone (accrued as byte-hours), S3 requests
//! (counted by a metering wrapper around the store), stream records (PUT payload units), shard
//! hours, warehouse statement seconds (a metering wrapper around the warehouse), and the
//! CloudWatch metrics and alarms in use. Priced with `[cost]`, month to date and projected over
//! the month. Usage is kept in `<data_dir>/usage.json` so it survives restarts and cron runs.
//!
//! On the embedded backends the figures are what the same volume would cost on AWS (S3,
//! Kinesis provisioned, Redshift Serverless), which is what an operator weighs before moving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures::future::BoxFuture;

use crate::atomic_file::{self, Durability};
use crate::config::{CostConfig, KinesisBilling, LifecycleConfig, RedshiftBilling, ZoneLifecycle};
use crate::error::Result;
use crate::store::{ObjectMeta, ObjectStat, ObjectStore, PutResult};
use crate::warehouse::{LoadOutcome, StagedFile, TextRows, Warehouse};
use crate::zones::Zone;

pub use ecom_model::cost::{CostLine, CostReport, Saving, Usage};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Projections extrapolate rates over at least this many hours, so a first short run does not
/// extrapolate a burst to a month.
const MIN_RATE_HOURS: f64 = 1.0;

/// Request counts and warehouse time, shared by the metering wrappers.
#[derive(Debug, Default)]
pub struct Meter {
    /// PUT, COPY, POST, LIST.
    pub s3_put: AtomicU64,
    /// GET, HEAD.
    pub s3_get: AtomicU64,
    /// Warehouse statement time, microseconds.
    pub warehouse_us: AtomicU64,
    /// Stream bytes landed in RAW as received (the Kinesis ingest volume).
    pub stream_bytes: AtomicU64,
}

impl Meter {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// (puts, gets, warehouse µs) so far.
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.s3_put.load(Ordering::Relaxed),
            self.s3_get.load(Ordering::Relaxed),
            self.warehouse_us.load(Ordering::Relaxed),
        )
    }

    pub fn stream_bytes(&self) -> u64 {
        self.stream_bytes.load(Ordering::Relaxed)
    }
}

/// ListObjectsV2 requests for `keys` keys (1,000 a page, one even when empty).
fn list_pages(keys: usize) -> u64 {
    keys.div_ceil(1000).max(1) as u64
}

/// An object store that counts its requests by S3 price class.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    meter: Arc<Meter>,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>, meter: Arc<Meter>) -> Arc<dyn ObjectStore> {
        Arc::new(MeteredStore { inner, meter })
    }
}

impl MeteredStore {
    fn count_stream(&self, key: &str, data: &[u8]) {
        if key.starts_with("raw/stream/") {
            Meter::add(&self.meter.stream_bytes, data.len() as u64);
        }
    }
}

impl ObjectStore for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn put<'a>(&'a self, key: &'a str, data: bytes::Bytes) -> BoxFuture<'a, Result<ObjectMeta>> {
        Meter::add(&self.meter.s3_put, 1);
        self.count_stream(key, &data);
        self.inner.put(key, data)
    }
    fn put_if_absent<'a>(
        &'a self,
        key: &'a str,
        data: bytes::Bytes,
    ) -> BoxFuture<'a, Result<PutResult>> {
        Meter::add(&self.meter.s3_put, 1);
        self.count_stream(key, &data);
        self.inner.put_if_absent(key, data)
    }
    fn put_if_absent_hashed<'a>(
        &'a self,
        key: &'a str,
        data: bytes::Bytes,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<PutResult>> {
        Meter::add(&self.meter.s3_put, 1);
        self.count_stream(key, &data);
        self.inner.put_if_absent_hashed(key, data, sha256)
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bytes::Bytes>> {
        Meter::add(&self.meter.s3_get, 1);
        self.inner.get(key)
    }
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        Meter::add(&self.meter.s3_get, 1);
        self.inner.head(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        Box::pin(async move {
            let out = self.inner.list(prefix).await?;
            // A LIST (PUT class) per 1,000 keys, and on S3 a HEAD (GET class) per object.
            Meter::add(&self.meter.s3_put, list_pages(out.len()));
            if self.inner.backend() == "s3" {
                Meter::add(&self.meter.s3_get, out.len() as u64);
            }
            Ok(out)
        })
    }
    fn list_stat<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectStat>>> {
        Box::pin(async move {
            let out = self.inner.list_stat(prefix).await?;
            Meter::add(&self.meter.s3_put, list_pages(out.len()));
            Ok(out)
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        // DELETE requests are free on S3.
        self.inner.delete(key)
    }
}

/// A warehouse that adds up its statement time.
pub struct MeteredWarehouse {
    inner: Arc<dyn Warehouse>,
    meter: Arc<Meter>,
}

impl MeteredWarehouse {
    pub fn wrap(inner: Arc<dyn Warehouse>, meter: Arc<Meter>) -> Arc<dyn Warehouse> {
        Arc::new(MeteredWarehouse { inner, meter })
    }

    async fn timed<T>(&self, f: BoxFuture<'_, Result<T>>) -> Result<T> {
        let start = std::time::Instant::now();
        let r = f.await;
        Meter::add(&self.meter.warehouse_us, start.elapsed().as_micros() as u64);
        r
    }
}

impl Warehouse for MeteredWarehouse {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn dialect(&self) -> crate::warehouse::schema::Dialect {
        self.inner.dialect()
    }
    fn load<'a>(&'a self, file: &'a StagedFile) -> BoxFuture<'a, Result<LoadOutcome>> {
        Box::pin(self.timed(self.inner.load(file)))
    }
    fn files_per_load(&self) -> usize {
        self.inner.files_per_load()
    }
    fn load_group(&self, files: Vec<StagedFile>) -> BoxFuture<'_, Result<Vec<LoadOutcome>>> {
        Box::pin(self.timed(self.inner.load_group(files)))
    }
    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.timed(self.inner.execute_tx(statements)))
    }
    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<TextRows>> {
        Box::pin(self.timed(self.inner.query(sql)))
    }
    fn hold_shared(&self, hold: bool) -> BoxFuture<'_, Result<bool>> {
        self.inner.hold_shared(hold)
    }
    fn keep_shared(&self) -> BoxFuture<'_, Result<std::time::Duration>> {
        self.inner.keep_shared()
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
}

pub fn usage_path(data_dir: &Path) -> PathBuf {
    data_dir.join("usage.json")
}

/// The saved usage, or a fresh one (also when unreadable: usage is an estimate's input,
/// not data; the problem is logged).
pub fn load_usage(data_dir: &Path, now: DateTime<Utc>) -> Usage {
    let path = usage_path(data_dir);
    match std::fs::read(&path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable usage file; starting anew");
                Usage::new(now)
            }
        },
        Err(_) => Usage::new(now),
    }
}

pub fn save_usage(usage: &Usage, data_dir: &Path) -> Result<()> {
    let body = serde_json::to_vec_pretty(usage)?;
    // Rewritten on every statistics refresh; a power cut costs at most the last update.
    atomic_file::write(&usage_path(data_dir), &body, Durability::Process)
}

/// What is being estimated beyond the usage itself.
#[derive(Debug, Clone)]
pub struct Setup {
    pub shards: u32,
    pub cloudwatch_metrics: u64,
    pub cloudwatch_alarms: u64,
    pub on_aws: BTreeMap<String, bool>,
}

pub fn hours_in_month(now: DateTime<Utc>) -> f64 {
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1);
    let next = if now.month() == 12 {
        NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(now.year(), now.month() + 1, 1)
    };
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days() as f64 * 24.0,
        _ => 30.0 * 24.0,
    }
}

/// Price the usage.
pub fn estimate(
    prices: &CostConfig,
    usage: &Usage,
    zone_bytes: &[(Zone, u64)],
    setup: &Setup,
    saving: Saving,
    now: DateTime<Utc>,
) -> CostReport {
    let month_hours = hours_in_month(now);
    let tracked = ((usage.updated_at - usage.tracked_since)
        .num_milliseconds()
        .max(0) as f64)
        / 3_600_000.0;
    // Rates seen so far, extrapolated to the whole month.
    let scale = month_hours / tracked.max(MIN_RATE_HOURS);
    let mut lines = Vec::new();
    let mut line =
        |service: &str, item: &str, qty: f64, unit: &str, price: f64, mtd: f64, proj: f64| {
            lines.push(CostLine {
                service: service.into(),
                item: item.into(),
                quantity: qty,
                unit: unit.into(),
                unit_price_usd: price,
                month_to_date_usd: mtd,
                projected_usd: proj,
            })
        };
    for (zone, bytes) in zone_bytes {
        let bh = usage.byte_hours.get(zone.name()).copied().unwrap_or(0.0);
        let gb_months = bh / GIB / month_hours;
        line(
            "s3",
            &format!("storage {} (Standard)", zone.name()),
            gb_months,
            "GB-month",
            prices.s3_standard_gb_month,
            gb_months * prices.s3_standard_gb_month,
            *bytes as f64 / GIB * prices.s3_standard_gb_month,
        );
    }
    let puts = usage.s3_put_requests as f64 / 1000.0;
    line(
        "s3",
        "PUT/LIST requests",
        puts,
        "1,000 requests",
        prices.s3_put_per_1000,
        puts * prices.s3_put_per_1000,
        puts * prices.s3_put_per_1000 * scale,
    );
    let gets = usage.s3_get_requests as f64 / 1000.0;
    line(
        "s3",
        "GET/HEAD requests",
        gets,
        "1,000 requests",
        prices.s3_get_per_1000,
        gets * prices.s3_get_per_1000,
        gets * prices.s3_get_per_1000 * scale,
    );
    match prices.kinesis_mode {
        KinesisBilling::Provisioned => {
            line(
                "kinesis",
                "shard hours",
                usage.shard_hours,
                "shard-hour",
                prices.kinesis_shard_hour,
                usage.shard_hours * prices.kinesis_shard_hour,
                setup.shards as f64 * month_hours * prices.kinesis_shard_hour,
            );
            let units = usage.stream_put_units as f64 / 1e6;
            line(
                "kinesis",
                "PUT payload units (25 KB)",
                units,
                "million units",
                prices.kinesis_put_units_per_million,
                units * prices.kinesis_put_units_per_million,
                units * prices.kinesis_put_units_per_million * scale,
            );
        }
        KinesisBilling::OnDemand => {
            let hours = tracked.min(month_hours);
            line(
                "kinesis",
                "on-demand stream hours",
                hours,
                "stream-hour",
                prices.kinesis_on_demand_stream_hour,
                hours * prices.kinesis_on_demand_stream_hour,
                month_hours * prices.kinesis_on_demand_stream_hour,
            );
            let gb = usage.stream_bytes as f64 / GIB;
            line(
                "kinesis",
                "on-demand data in",
                gb,
                "GB",
                prices.kinesis_on_demand_gb_in,
                gb * prices.kinesis_on_demand_gb_in,
                gb * prices.kinesis_on_demand_gb_in * scale,
            );
        }
    }
    match prices.redshift_mode {
        RedshiftBilling::Serverless => {
            let rpu_hours = usage.warehouse_secs / 3600.0 * prices.redshift_base_rpus;
            line(
                "redshift",
                "serverless compute",
                rpu_hours,
                "RPU-hour",
                prices.redshift_rpu_hour,
                rpu_hours * prices.redshift_rpu_hour,
                rpu_hours * prices.redshift_rpu_hour * scale,
            );
        }
        RedshiftBilling::Provisioned => {
            let nodes = prices.redshift_nodes as f64;
            let hours = tracked.min(month_hours);
            line(
                "redshift",
                "provisioned node hours",
                nodes * hours,
                "node-hour",
                prices.redshift_node_hour,
                nodes * hours * prices.redshift_node_hour,
                nodes * month_hours * prices.redshift_node_hour,
            );
        }
    }
    let elapsed = (tracked / month_hours).min(1.0);
    let m = setup.cloudwatch_metrics as f64;
    line(
        "cloudwatch",
        "custom metrics",
        m,
        "metric-month",
        prices.cloudwatch_metric_month,
        m * prices.cloudwatch_metric_month * elapsed,
        m * prices.cloudwatch_metric_month,
    );
    let a = setup.cloudwatch_alarms as f64;
    line(
        "cloudwatch",
        "alarms",
        a,
        "alarm-month",
        prices.cloudwatch_alarm_month,
        a * prices.cloudwatch_alarm_month * elapsed,
        a * prices.cloudwatch_alarm_month,
    );
    // Folded from +0.0: a float sum of nothing is -0.0, printed "$-0.00".
    let mtd = lines.iter().fold(0.0, |a, l| a + l.month_to_date_usd);
    let projected = lines.iter().fold(0.0, |a, l| a + l.projected_usd);
    let billed = lines
        .iter()
        .filter(|l| {
            ecom_model::cost::held_against_budget(
                &setup.on_aws,
                &l.service,
                prices.budget_covers_local,
            )
        })
        .fold(0.0, |a, l| a + l.projected_usd);
    CostReport {
        prices_as_of: prices.prices_as_of.clone(),
        month: usage.month.clone(),
        generated_at: now,
        hours_tracked: tracked,
        hours_in_month: month_hours,
        on_aws: setup.on_aws.clone(),
        lines,
        month_to_date_usd: mtd,
        projected_usd: projected,
        projected_on_aws_usd: billed,
        budget_usd: prices.budget_usd_month,
        over_budget: billed > prices.budget_usd_month,
        saving,
        zone_bytes: zone_bytes
            .iter()
            .map(|(z, b)| (z.name().to_string(), *b))
            .collect(),
        usage: usage.clone(),
    }
}

/// The rules of a zone, when it has any.
pub fn zone_rules(l: &LifecycleConfig, zone: Zone) -> Option<&ZoneLifecycle> {
    match zone {
        Zone::Raw => Some(&l.raw),
        Zone::Staging => Some(&l.staging),
        Zone::Quarantine => Some(&l.quarantine),
        Zone::Curated | Zone::Late => None,
    }
}

/// What the lifecycle rules would save per month on these objects (by age).
pub fn saving(
    prices: &CostConfig,
    lifecycle: &LifecycleConfig,
    objects: &[(Zone, Vec<ObjectStat>)],
    now: DateTime<Utc>,
) -> Saving {
    let mut s = Saving::default();
    for (zone, objs) in objects {
        let Some(rules) = zone_rules(lifecycle, *zone) else {
            continue;
        };
        for o in objs {
            let age_days = o.last_modified.map_or(0, |t| (now - t).num_days().max(0)) as u32;
            let past = |d: u32| d > 0 && age_days >= d;
            if past(rules.retention_days) {
                s.expirable_bytes += o.size;
            } else if past(rules.transition_glacier_days) {
                s.glacier_bytes += o.size;
            } else if past(rules.transition_ia_days) {
                s.ia_bytes += o.size;
            }
        }
    }
    s.usd_month = s.expirable_bytes as f64 / GIB * prices.s3_standard_gb_month
        + s.glacier_bytes as f64 / GIB
            * (prices.s3_standard_gb_month - prices.s3_glacier_ir_gb_month)
        + s.ia_bytes as f64 / GIB * (prices.s3_standard_gb_month - prices.s3_standard_ia_gb_month);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).single().unwrap()
    }

    #[test]
    fn a_known_volume_prices_by_hand() {
        let prices = CostConfig::default();
        let mut u = Usage::new(t(1, 0));
        // 10 GiB of RAW for 72 hours, 2 shards, metered requests and time, 3M records.
        u.observe(t(1, 0), (0, 0, 0), &[(Zone::Raw, 0)], 2, 0, 0);
        u.observe(
            t(4, 0),
            (20_000, 100_000, 3_600_000_000),
            &[(Zone::Raw, 10 * 1024 * 1024 * 1024)],
            2,
            3_000_000,
            3 * 1024 * 1024 * 1024,
        );
        let setup = Setup {
            shards: 2,
            cloudwatch_metrics: 10,
            cloudwatch_alarms: 4,
            on_aws: BTreeMap::new(),
        };
        let r = estimate(
            &prices,
            &u,
            &[(Zone::Raw, 10 * 1024 * 1024 * 1024)],
            &setup,
            Saving::default(),
            t(4, 0),
        );
        let by = |item: &str| r.lines.iter().find(|l| l.item == item).unwrap().clone();
        let month = 30.0 * 24.0;
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} != {b}");
        // Storage: 10 GiB x 72 h = 1 GB-month x (72/720); projected 10 GB-months.
        close(
            by("storage RAW (Standard)").month_to_date_usd,
            10.0 * 72.0 / month * 0.023,
        );
        close(by("storage RAW (Standard)").projected_usd, 10.0 * 0.023);
        // Requests: 20 x 0.005 MTD; rate over 72 h, x10 for the month.
        close(by("PUT/LIST requests").month_to_date_usd, 20.0 * 0.005);
        close(by("PUT/LIST requests").projected_usd, 20.0 * 0.005 * 10.0);
        close(by("GET/HEAD requests").month_to_date_usd, 100.0 * 0.0004);
        close(by("shard hours").month_to_date_usd, 144.0 * 0.015);
        close(by("shard hours").projected_usd, 2.0 * month * 0.015);
        close(
            by("PUT payload units (25 KB)").month_to_date_usd,
            3.0 * 0.014,
        );
        // One hour of statements at 8 RPU.
        close(by("serverless compute").month_to_date_usd, 8.0 * 0.375);
        close(by("serverless compute").projected_usd, 8.0 * 0.375 * 10.0);
        close(by("custom metrics").projected_usd, 10.0 * 0.30);
        close(by("alarms").month_to_date_usd, 4.0 * 0.10 * 72.0 / month);
        let sum: f64 = r.lines.iter().map(|l| l.projected_usd).sum();
        close(r.projected_usd, sum);
        // Nothing runs on AWS in this setup: nothing is billed, nothing is over budget.
        close(r.projected_on_aws_usd, 0.0);
        assert!(!r.over_budget);
        let on_aws = Setup {
            on_aws: ["s3", "kinesis", "redshift", "cloudwatch"]
                .map(|s| (s.to_string(), true))
                .into(),
            ..setup.clone()
        };
        let all = estimate(
            &prices,
            &u,
            &[(Zone::Raw, 10 * 1024 * 1024 * 1024)],
            &on_aws,
            Saving::default(),
            t(4, 0),
        );
        close(all.projected_on_aws_usd, sum);
        assert!(all.over_budget == (sum > prices.budget_usd_month));
    }

    #[test]
    fn on_demand_and_provisioned_billing() {
        let prices = CostConfig {
            kinesis_mode: KinesisBilling::OnDemand,
            redshift_mode: RedshiftBilling::Provisioned,
            ..CostConfig::default()
        };
        let mut u = Usage::new(t(1, 0));
        u.observe(t(1, 0), (0, 0, 0), &[], 4, 0, 0);
        u.observe(t(2, 0), (0, 0, 0), &[], 4, 10, 2 * 1024 * 1024 * 1024);
        let setup = Setup {
            shards: 4,
            cloudwatch_metrics: 0,
            cloudwatch_alarms: 0,
            on_aws: BTreeMap::new(),
        };
        let r = estimate(&prices, &u, &[], &setup, Saving::default(), t(2, 0));
        let by = |item: &str| r.lines.iter().find(|l| l.item == item).unwrap().clone();
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} != {b}");
        close(by("on-demand stream hours").month_to_date_usd, 24.0 * 0.04);
        close(by("on-demand stream hours").projected_usd, 720.0 * 0.04);
        close(by("on-demand data in").month_to_date_usd, 2.0 * 0.08);
        close(by("on-demand data in").projected_usd, 2.0 * 0.08 * 30.0);
        close(
            by("provisioned node hours").month_to_date_usd,
            2.0 * 24.0 * 1.086,
        );
        close(
            by("provisioned node hours").projected_usd,
            2.0 * 720.0 * 1.086,
        );
        assert!(!r.lines.iter().any(|l| l.item == "shard hours"));
    }

    #[test]
    fn a_new_month_starts_from_zero() {
        let mut u = Usage::new(t(30, 0));
        u.observe(t(30, 12), (5, 5, 0), &[(Zone::Raw, 1000)], 1, 10, 0);
        let dec = Utc.with_ymd_and_hms(2026, 12, 1, 1, 0, 0).single().unwrap();
        u.observe(dec, (7, 5, 0), &[(Zone::Raw, 1000)], 1, 12, 0);
        assert_eq!(u.month, "2026-12");
        assert_eq!(u.s3_put_requests, 2, "only requests since the rollover");
        assert_eq!(u.stream_put_units, 2);
    }

    #[test]
    fn savings_by_age() {
        let prices = CostConfig::default();
        let lc = LifecycleConfig::default();
        let obj = |days: i64| ObjectStat {
            key: format!("raw/x/{days}"),
            size: 1024 * 1024 * 1024,
            last_modified: Some(t(30, 0) - chrono::Duration::days(days)),
        };
        let s = saving(
            &prices,
            &lc,
            &[(Zone::Raw, vec![obj(1), obj(40), obj(100), obj(400)])],
            t(30, 0),
        );
        assert_eq!(s.ia_bytes, 1 << 30);
        assert_eq!(s.glacier_bytes, 1 << 30);
        assert_eq!(s.expirable_bytes, 1 << 30);
        let want = 0.023 + (0.023 - 0.004) + (0.023 - 0.0125);
        assert!((s.usd_month - want).abs() < 1e-12);
    }
}
