//! Publishing the metrics registry to Amazon CloudWatch (PutMetricData, at most 1,000 values a
//! call, with stream/shard/zone dimensions) and creating an alarm per alert rule
//! (PutMetricAlarm). Like Vector's `aws_cloudwatch_metrics` sink: batched, never blocking the
//! pipeline on a failure (the caller logs it and publishes again next interval).
//!
//! An alarm watches one metric with one set of dimensions; an alert rule is evaluated on the
//! largest value over a metric's dimensions (`metrics::value`). So every metric an alert rule
//! names is also published without dimensions, as that maximum, and its alarm watches exactly
//! that: the alarm and the in-process alert see the same number.

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
    /// Metrics alert rules name: also published as their maximum without dimensions.
    watched: std::collections::BTreeSet<String>,
    /// Notified when an alarm fires or clears (SNS topic ARNs).
    alarm_actions: Vec<String>,
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
            .with_alarm_actions(config.alarm_actions.clone())
    }

    pub fn from_client(client: Client, namespace: &str) -> Publisher {
        Publisher {
            client,
            namespace: namespace.to_string(),
            watched: Default::default(),
            alarm_actions: Vec::new(),
        }
    }

    /// Publish the metrics these rules name as their maximum over dimensions too.
    pub fn watching(mut self, rules: &[AlertRule]) -> Publisher {
        self.watched = rules.iter().map(|r| r.metric.clone()).collect();
        self
    }

    pub fn with_alarm_actions(mut self, actions: Vec<String>) -> Publisher {
        self.alarm_actions = actions;
        self
    }

    /// The points to send: all of them, plus the undimensioned maximum of each watched metric
    /// that is only published with dimensions.
    fn with_aggregates(&self, points: &[MetricPoint]) -> Vec<MetricPoint> {
        let mut out = points.to_vec();
        for name in &self.watched {
            let of: Vec<&MetricPoint> = points.iter().filter(|p| &p.name == name).collect();
            if of.is_empty() || of.iter().any(|p| p.dims.is_empty()) {
                continue;
            }
            if let Some(v) = crate::metrics::value(points, name) {
                out.push(MetricPoint {
                    name: name.clone(),
                    value: v,
                    unit: of[0].unit.clone(),
                    dims: Vec::new(),
                });
            }
        }
        out
    }

    /// Publish the points stamped `at`; returns the number of PutMetricData calls.
    pub async fn publish(&self, points: &[MetricPoint], at: DateTime<Utc>) -> Result<usize> {
        let ts = aws_sdk_cloudwatch::primitives::DateTime::from_millis(at.timestamp_millis());
        let mut calls = 0;
        let points = self.with_aggregates(points);
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
                // No dimensions: the maximum `publish` sends for every watched metric.
                .set_alarm_actions(Some(self.alarm_actions.clone()))
                .set_ok_actions(Some(self.alarm_actions.clone()))
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
