//! The metrics registry: the pipeline's figures as named points (with dimensions for stream,
//! shard and zone), derived from each snapshot. Shown by the dashboard, evaluated by alerts,
//! and published to CloudWatch when enabled.

pub use ecom_model::derive::points;
pub use ecom_model::metrics::{value, MetricPoint, NAMES};
