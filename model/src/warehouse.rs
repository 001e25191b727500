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

/// The warehouse part of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WarehouseStatus {
    pub backend: String,
    /// (table, rows) for STAGING and CURATED tables.
    pub tables: Vec<(String, i64)>,
    pub ledger_files: i64,
    pub dirty_days: usize,
    pub metrics: Option<Metrics>,
}
