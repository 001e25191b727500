//! Publishing the metrics registry to Amazon CloudWatch (PutMetricData, at most 1,000 values a
//! call, with stream/shard/zone dimensions) and creating an alarm per alert rule
//! (PutMetricAlarm). Like Vector's `aws_cloudwatch_metrics` sink: batched, never blocking the
//! pipeline on a failure (the caller logs it and publishes again next interval).

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricDatum, StandardUnit, Statistic,
};
use aws_sdk_cloudwatch::Client;
use chrono::{DateTime, Utc};

use crate::config::{AlertOp, AlertRule, CloudWatchConfig};
use crate::error::{Error, Result};
use crate::metrics::MetricPoint;

/// PutMetricData accepts up to 1,000 MetricDatum per request.
pub const MAX_DATUMS_PER_CALL: usize = 1000;

pub struct Publisher {
    client: Client,
    namespace: String,
}

fn aws_err(operation: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Aws {
        service: "cloudwatch",
        operation,
        message: e.to_string(),
    }
}

impl Publisher {
    pub async fn connect(config: &CloudWatchConfig) -> Publisher {
        let sdk =
            crate::aws::sdk_config(config.region.as_deref(), config.endpoint_url.as_deref()).await;
        Publisher::from_client(Client::new(&sdk), &config.namespace)
    }

    pub fn from_client(client: Client, namespace: &str) -> Publisher {
        Publisher {
            client,
            namespace: namespace.to_string(),
        }
    }

    /// Publish the points stamped `at`; returns the number of PutMetricData calls.
    pub async fn publish(&self, points: &[MetricPoint], at: DateTime<Utc>) -> Result<usize> {
        let ts = aws_sdk_cloudwatch::primitives::DateTime::from_millis(at.timestamp_millis());
        let mut calls = 0;
        for chunk in points.chunks(MAX_DATUMS_PER_CALL) {
            let data: Vec<MetricDatum> = chunk
                .iter()
                .map(|p| {
                    MetricDatum::builder()
                        .metric_name(&p.name)
                        .value(p.value)
                        .unit(StandardUnit::from(p.unit.as_str()))
                        .timestamp(ts)
                        .set_dimensions(Some(
                            p.dims
                                .iter()
                                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                                .collect(),
                        ))
                        .build()
                })
                .collect();
            self.client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(data))
                .send()
                .await
                .map_err(|e| {
                    aws_err(
                        "PutMetricData",
                        aws_sdk_cloudwatch::error::DisplayErrorContext(e),
                    )
                })?;
            calls += 1;
        }
        Ok(calls)
    }

    /// Create or update one alarm per rule (same name, 60 s periods covering `for_secs`).
    pub async fn put_alarms(&self, rules: &[AlertRule]) -> Result<usize> {
        for r in rules {
            let periods = (r.for_secs.div_ceil(60)).max(1) as i32;
            self.client
                .put_metric_alarm()
                .alarm_name(format!("ecomops: {}", r.name))
                .namespace(&self.namespace)
                .metric_name(&r.metric)
                .statistic(Statistic::Maximum)
                .period(60)
                .evaluation_periods(periods)
                .threshold(r.threshold)
                .comparison_operator(match r.op {
                    AlertOp::Above => ComparisonOperator::GreaterThanThreshold,
                    AlertOp::Below => ComparisonOperator::LessThanThreshold,
                })
                .send()
                .await
                .map_err(|e| {
                    aws_err(
                        "PutMetricAlarm",
                        aws_sdk_cloudwatch::error::DisplayErrorContext(e),
                    )
                })?;
        }
        Ok(rules.len())
    }
}
