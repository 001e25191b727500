//! Short histories for the dashboard's sparklines and trends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Samples kept per series.
pub const SAMPLES: usize = 60;

/// What snapshots carry: oldest sample first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Records consumed per second, per shard.
    pub shard_rates: BTreeMap<String, Vec<u64>>,
    /// How far behind its tip each shard's reader was, ms, per sample.
    #[serde(default)]
    pub shard_lag_ms: BTreeMap<String, Vec<u64>>,
    pub revenue_cents: Vec<i64>,
    pub avg_order_value_cents: Vec<i64>,
    /// Conversion rate in basis points (1/100 of a percent), to keep samples integral.
    pub conversion_bp: Vec<i64>,
    pub orders: Vec<i64>,
}
