//! What status shows of the warehouse: tables, ledger, dirty days and the four metrics.

use serde::{Deserialize, Serialize};

/// The four headline metrics. Conversion and funnel come from clickstream sessions; with no
/// events loaded yet they are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub revenue_cents: i64,
    pub orders: i64,
    pub avg_order_value_cents: Option<f64>,
    pub conversion_rate: Option<f64>,
    pub funnel_dropoff: Option<Vec<FunnelStep>>,
    pub by_category: Vec<CategoryRevenue>,
}

/// One day of the CURATED daily models: orders and revenue by order day, the funnel by event
/// day (a day with no orders or no sessions has zeros, not a gap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayFigures {
    pub day: chrono::NaiveDate,
    pub orders: i64,
    pub revenue_cents: i64,
    pub avg_order_value_cents: Option<f64>,
    pub sessions: i64,
    /// Sessions reaching each funnel step that day (purchased below).
    #[serde(default)]
    pub viewed: i64,
    #[serde(default)]
    pub carted: i64,
    #[serde(default)]
    pub checked_out: i64,
    pub purchased: i64,
    /// purchased / sessions, when there were sessions.
    pub conversion_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelStep {
    pub from: String,
    pub to: String,
    pub dropoff: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryRevenue {
    pub category: String,
    pub revenue_cents: i64,
    pub orders: i64,
}

/// One category's business over a range of days (`metrics --by category`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryFigures {
    pub category: String,
    /// Placed orders with at least one line in the category.
    pub orders: i64,
    pub units: i64,
    pub revenue_cents: i64,
}

/// The warehouse part of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WarehouseStatus {
    pub backend: String,
    /// (table, rows) for STAGING and CURATED tables.
    pub tables: Vec<(String, i64)>,
    pub ledger_files: i64,
    pub dirty_days: usize,
    pub metrics: Option<Metrics>,
    /// Data-quality figures; `None` from an older instance.
    #[serde(default)]
    pub quality: Option<Quality>,
}

/// Data-quality figures of the warehouse (`verify`, the snapshot, the Watermarks view).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Per relation ("orders.user_id -> users"): rows naming a row that is not there. Never
    /// dropped: the models keep them (a line's category reads 'unknown').
    pub orphans: Vec<(String, i64)>,
    /// Per STAGING table: its newest data against its freshness SLA.
    pub freshness: Vec<Freshness>,
    /// Events that arrived in the last 24 h.
    pub events_last_24h: i64,
    /// Events per day over the 7 days before those 24 h (over the days of them the data covers).
    pub events_prior_daily_avg: f64,
    /// 1 - last 24 h / the prior daily average, 0 when it grew; `None` without a prior week.
    pub events_volume_drop: Option<f64>,
    /// Ingestion delay (ingestion_time - event_time) per event day, newest first.
    pub ingestion_delay: Vec<DelayDay>,
}

impl Quality {
    pub fn orphan_total(&self) -> i64 {
        self.orphans.iter().map(|(_, n)| n).sum()
    }

    pub fn stale_tables(&self) -> usize {
        self.freshness.iter().filter(|f| f.stale).count()
    }
}

/// One table's freshness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Freshness {
    pub table: String,
    /// Its last successful pull or stream commit; `None` when it never had one.
    pub last_at: Option<chrono::DateTime<chrono::Utc>>,
    pub sla_secs: u64,
    pub stale: bool,
}

/// Ingestion delay of one event day, seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelayDay {
    pub day: chrono::NaiveDate,
    pub events: i64,
    pub p50_secs: Option<f64>,
    pub p95_secs: Option<f64>,
    pub max_secs: Option<f64>,
}
