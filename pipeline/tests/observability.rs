//! CloudWatch publication (aws-smithy-mocks: moto cannot speak CloudWatch's CBOR protocol) and
//! the S3 bucket lifecycle rules on the moto server that `scripts/test.sh` starts.

mod support {
    pub mod moto;
}

use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataOutput;
use aws_sdk_cloudwatch::types::ComparisonOperator;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use ecom_pipeline::cloudwatch::Publisher;
use ecom_pipeline::config::{AlertRule, Config, StoreBackend};
use ecom_pipeline::metrics::MetricPoint;
use support::moto::moto_endpoint;

#[tokio::test]
async fn metrics_are_batched_by_a_thousand_with_dimensions() {
    /// (namespace, datums, dimensions) per call.
    type Calls = Arc<Mutex<Vec<(String, usize, Vec<String>)>>>;
    let seen: Calls = Arc::default();
    let s = seen.clone();
    let put = mock!(aws_sdk_cloudwatch::Client::put_metric_data)
        .match_requests(move |r| {
            let data = r.metric_data();
            let dims: Vec<String> = data
                .iter()
                .flat_map(|d| d.dimensions())
                .map(|d| format!("{}={}", d.name().unwrap_or(""), d.value().unwrap_or("")))
                .collect();
            s.lock()
                .unwrap()
                .push((r.namespace().unwrap_or("").to_string(), data.len(), dims));
            true
        })
        .then_output(|| PutMetricDataOutput::builder().build());
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&put]);
    let publisher = Publisher::from_client(client, "ecomops-test");
    let points: Vec<MetricPoint> = (0..1500)
        .map(|i| MetricPoint {
            name: "shard_lag_records".into(),
            value: i as f64,
            unit: "Count".into(),
            dims: vec![("shard".into(), format!("shard-{i:04}"))],
        })
        .collect();
    let calls = publisher
        .publish(&points, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(calls, 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].0.as_str(), seen[0].1), ("ecomops-test", 1000));
    assert_eq!(seen[1].1, 500);
    assert_eq!(seen[0].2[0], "shard=shard-0000");
    assert_eq!(seen[1].2[499], "shard=shard-1499");
}

#[tokio::test]
async fn a_failed_publication_is_an_error_not_a_panic() {
    let fail = mock!(aws_sdk_cloudwatch::Client::put_metric_data).then_error(|| {
        aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError::InternalServiceFault(
            aws_sdk_cloudwatch::types::error::InternalServiceFault::builder()
                .message("boom")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&fail]);
    let publisher = Publisher::from_client(client, "ns");
    let points = vec![MetricPoint {
        name: "api_down".into(),
        value: 1.0,
        unit: "None".into(),
        dims: vec![],
    }];
    let err = publisher
        .publish(&points, chrono::Utc::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PutMetricData"), "{err}");
}

#[tokio::test]
async fn every_alert_rule_becomes_an_alarm() {
    /// (alarm, metric, threshold, periods, operator, dimensions, actions) per call.
    type Alarms = Arc<
        Mutex<
            Vec<(
                String,
                String,
                f64,
                i32,
                ComparisonOperator,
                usize,
                Vec<String>,
            )>,
        >,
    >;
    let seen: Alarms = Arc::default();
    let s = seen.clone();
    let put = mock!(aws_sdk_cloudwatch::Client::put_metric_alarm)
        .match_requests(move |r| {
            s.lock().unwrap().push((
                r.alarm_name().unwrap_or("").to_string(),
                r.metric_name().unwrap_or("").to_string(),
                r.threshold().unwrap_or(0.0),
                r.evaluation_periods().unwrap_or(0),
                r.comparison_operator().cloned().unwrap(),
                r.dimensions().len(),
                r.alarm_actions().to_vec(),
            ));
            true
        })
        .then_output(|| PutMetricAlarmOutput::builder().build());
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&put]);
    let rules = AlertRule::defaults();
    let topic = "arn:aws:sns:us-east-1:123456789012:oncall".to_string();
    let n = Publisher::from_client(client, "ns")
        .with_alarm_actions(vec![topic.clone()])
        .put_alarms(&rules)
        .await
        .unwrap();
    assert_eq!(n, rules.len());
    let seen = seen.lock().unwrap();
    let lag = seen.iter().find(|a| a.1 == "stream_lag_records").unwrap();
    assert_eq!(lag.0, "ecomops: stream lag");
    assert_eq!(lag.2, 100_000.0);
    assert_eq!(lag.3, 5, "300 s in 60 s periods");
    assert_eq!(lag.4, ComparisonOperator::GreaterThanThreshold);
    assert_eq!(lag.5, 0, "the undimensioned maximum `publish` sends");
    assert_eq!(lag.6, vec![topic], "the on-call topic is notified");
}

/// The "stream lag" alarm watches `stream_lag_records` without dimensions: it must receive
/// data, as the maximum over the dimensions the registry publishes it with.
#[tokio::test]
async fn alarmed_metrics_are_also_published_as_their_maximum() {
    type Seen = Arc<Mutex<Vec<(String, f64, usize)>>>;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let put = mock!(aws_sdk_cloudwatch::Client::put_metric_data)
        .match_requests(move |r| {
            for d in r.metric_data() {
                s.lock().unwrap().push((
                    d.metric_name().unwrap_or("").to_string(),
                    d.value().unwrap_or(0.0),
                    d.dimensions().len(),
                ));
            }
            true
        })
        .then_output(|| PutMetricDataOutput::builder().build());
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&put]);
    let point = |name: &str, value: f64, dim: &str| ecom_pipeline::metrics::MetricPoint {
        name: name.into(),
        value,
        unit: "Count".into(),
        dims: vec![("shard".into(), dim.into())],
    };
    let points = vec![
        point("shard_lag_records", 3.0, "shard-0000"),
        point("shard_lag_records", 9.0, "shard-0001"),
        point("stream_lag_records", 12.0, "local"),
    ];
    let rules = AlertRule::defaults();
    Publisher::from_client(client, "ns")
        .watching(&rules)
        .publish(&points, chrono::Utc::now())
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&("stream_lag_records".to_string(), 12.0, 0)),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|(n, _, d)| n == "shard_lag_records" && *d == 0),
        "only what an alert watches is aggregated: {seen:?}"
    );
    assert_eq!(seen.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_lifecycle_dry_run_shows_the_difference_then_apply_sets_it() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let mut c = Config::default();
    c.store.backend = StoreBackend::S3;
    c.store.s3.bucket = format!("lifecycle-{}", std::process::id());
    c.store.s3.prefix = "ecomops/".into();
    c.store.s3.endpoint_url = Some(endpoint);
    c.store.s3.region = Some("us-east-1".into());
    c.store.s3.force_path_style = true;
    let client = ecom_pipeline::store::s3_client(&c.store.s3).await;
    client
        .create_bucket()
        .bucket(&c.store.s3.bucket)
        .send()
        .await
        .unwrap();

    let plan = ecom_pipeline::lifecycle::s3_lifecycle(&c, false)
        .await
        .unwrap();
    assert!(!plan.applied);
    assert!(plan.current.is_empty());
    assert_eq!(plan.diff.len(), 2, "{:?}", plan.diff);
    assert!(plan.diff.iter().all(|l| l.starts_with("+ ")));

    let plan = ecom_pipeline::lifecycle::s3_lifecycle(&c, true)
        .await
        .unwrap();
    assert!(plan.applied);
    let plan = ecom_pipeline::lifecycle::s3_lifecycle(&c, false)
        .await
        .unwrap();
    assert!(
        plan.diff.is_empty(),
        "applied rules read back equal: {:?}",
        plan.diff
    );
    assert_eq!(
        plan.current.len(),
        2,
        "RAW and STAGING: quarantine has only retention"
    );

    // A changed transition shows as one rule out, one in; retention is never the bucket's
    // (prune applies it, knowing what is loaded).
    c.lifecycle.staging.transition_ia_days = 45;
    let plan = ecom_pipeline::lifecycle::s3_lifecycle(&c, false)
        .await
        .unwrap();
    assert_eq!(plan.diff.len(), 2, "{:?}", plan.diff);
    assert!(plan.diff[0].starts_with("- ecomops-staging"));
    assert!(plan.diff[1].contains("after 45d"), "{:?}", plan.diff);
    assert!(plan.diff[1].contains("expire never"), "{:?}", plan.diff);
}
