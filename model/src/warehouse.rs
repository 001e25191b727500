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
