//! The Redshift Data API client against aws-smithy-mocks (moto mis-serialises the Data API's
//! timestamps): FINISHED, FAILED, ABORTED, a statement past its timeout, paged results and
//! throttled polls.

use aws_sdk_redshiftdata::operation::batch_execute_statement::BatchExecuteStatementOutput;
use aws_sdk_redshiftdata::operation::cancel_statement::CancelStatementOutput;
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::operation::execute_statement::ExecuteStatementOutput;
use aws_sdk_redshiftdata::operation::get_statement_result::GetStatementResultOutput;
use aws_sdk_redshiftdata::types::{Field, StatusString};
use aws_sdk_redshiftdata::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use ecom_pipeline::config::RedshiftConfig;
use ecom_pipeline::warehouse::redshift::RedshiftWarehouse;
use ecom_pipeline::warehouse::Warehouse;

fn config(timeout_secs: u64) -> RedshiftConfig {
    RedshiftConfig {
        workgroup_name: Some("wg".into()),
        database: "dev".into(),
        statement_timeout_secs: timeout_secs,
        poll_max_ms: 20,
        ..RedshiftConfig::default()
    }
}

fn warehouse(rules: &[&Rule], timeout_secs: u64) -> RedshiftWarehouse {
    let client: Client = mock_client!(aws_sdk_redshiftdata, RuleMode::MatchAny, rules);
    RedshiftWarehouse::from_client(client, &config(timeout_secs)).unwrap()
}

fn describe(
    status: StatusString,
    error: Option<&'static str>,
    result: bool,
) -> DescribeStatementOutput {
    DescribeStatementOutput::builder()
        .id("s-1")
        .status(status)
        .set_error(error.map(str::to_string))
        .has_result_set(result)
        .created_at(aws_sdk_redshiftdata::primitives::DateTime::from_secs(0))
        .updated_at(aws_sdk_redshiftdata::primitives::DateTime::from_secs(0))
        .build()
        .unwrap()
}

/// A one-order STAGING file.
fn orders_file() -> ecom_pipeline::warehouse::StagedFile {
    let body = b"{\"order_id\":1,\"user_id\":1,\"order_time\":\"2026-03-01T10:00:00Z\",\"order_status\":\"placed\",\"order_total_cents\":100,\"item_count\":1}\n";
    ecom_pipeline::warehouse::StagedFile {
        key: "staging/orders/x.ndjson".into(),
        entity: "orders".into(),
        sha256: ecom_pipeline::store::sha256_hex(body),
        body: bytes::Bytes::from_static(body),
        source: "test".into(),
        checkpoint: None,
        columns: None,
    }
}

fn batch_rule() -> Rule {
    mock!(Client::batch_execute_statement)
        .match_requests(|r| r.workgroup_name() == Some("wg") && r.database() == Some("dev"))
        .then_output(|| BatchExecuteStatementOutput::builder().id("s-1").build())
}

#[tokio::test]
async fn a_batch_waits_until_finished() {
    let submit = batch_rule();
    let polls = mock!(Client::describe_statement)
        .sequence()
        .output(|| describe(StatusString::Submitted, None, false))
        .output(|| describe(StatusString::Started, None, false))
        .output(|| describe(StatusString::Finished, None, false))
        .build();
    let wh = warehouse(&[&submit, &polls], 30);
    let id = wh.batch(vec!["SELECT 1".into()]).await.unwrap();
    assert_eq!(id, "s-1");
    assert_eq!(polls.num_calls(), 3);
}

#[tokio::test]
async fn failed_and_aborted_carry_redshifts_text() {
    let submit = batch_rule();
    let failed = mock!(Client::describe_statement).then_output(|| {
        describe(
            StatusString::Failed,
            Some("ERROR: relation \"staging.orders\" does not exist"),
            false,
        )
    });
    let wh = warehouse(&[&submit, &failed], 30);
    let err = wh.batch(vec!["MERGE ...".into()]).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("FAILED") && text.contains("relation \"staging.orders\""),
        "{text}"
    );

    let submit = batch_rule();
    let aborted = mock!(Client::describe_statement)
        .then_output(|| describe(StatusString::Aborted, Some("cancelled by user"), false));
    let wh = warehouse(&[&submit, &aborted], 30);
    let text = wh.batch(vec!["x".into()]).await.unwrap_err().to_string();
    assert!(text.contains("ABORTED: cancelled by user"), "{text}");
}

#[tokio::test]
async fn a_slow_statement_is_cancelled_at_its_timeout() {
    let submit = batch_rule();
    let running = mock!(Client::describe_statement)
        .sequence()
        .output(|| describe(StatusString::Started, None, false))
        .repeatedly()
        .build();
    let cancel = mock!(Client::cancel_statement)
        .match_requests(|r| r.id() == Some("s-1"))
        .then_output(|| CancelStatementOutput::builder().status(true).build());
    let wh = warehouse(&[&submit, &running, &cancel], 1);
    let start = std::time::Instant::now();
    let text = wh.batch(vec!["x".into()]).await.unwrap_err().to_string();
    assert!(
        text.contains("statement_timeout_secs (1s); cancelled"),
        "{text}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(cancel.num_calls(), 1);
    assert!(running.num_calls() > 3, "polled with a capped backoff");
}

#[tokio::test]
async fn results_are_read_page_by_page_and_throttled_polls_retried() {
    let submit = mock!(Client::execute_statement)
        .then_output(|| ExecuteStatementOutput::builder().id("s-1").build());
    let polls = mock!(Client::describe_statement)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into()),
        )
        .output(|| describe(StatusString::Finished, None, true))
        .build();
    let pages = mock!(Client::get_statement_result)
        .sequence()
        .output(|| {
            GetStatementResultOutput::builder()
                .records(vec![
                    Field::StringValue("electronics".into()),
                    Field::LongValue(1200),
                ])
                .records(vec![
                    Field::StringValue("jewelery".into()),
                    Field::IsNull(true),
                ])
                .next_token("page-2")
                .build()
                .unwrap()
        })
        .output(|| {
            GetStatementResultOutput::builder()
                .records(vec![
                    Field::StringValue("men's clothing".into()),
                    Field::DoubleValue(2.5),
                ])
                .build()
                .unwrap()
        })
        .build();
    let wh = warehouse(&[&submit, &polls, &pages], 30);
    let rows = wh.query("SELECT category, revenue FROM x").await.unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Some("electronics".to_string()), Some("1200".to_string())],
            vec![Some("jewelery".to_string()), None],
            vec![Some("men's clothing".to_string()), Some("2.5".to_string())],
        ]
    );
    assert_eq!(pages.num_calls(), 2);
    assert!(polls.num_calls() >= 2, "the throttled poll was retried");
}

#[tokio::test]
async fn a_load_already_in_the_ledger_is_skipped_without_a_batch() {
    let submit = mock!(Client::execute_statement)
        .match_requests(|r| {
            r.sql()
                .is_some_and(|s| s.contains("FROM ops.ledger WHERE sha256"))
        })
        .then_output(|| ExecuteStatementOutput::builder().id("s-1").build());
    let polls = mock!(Client::describe_statement)
        .then_output(|| describe(StatusString::Finished, None, true));
    let count = mock!(Client::get_statement_result).then_output(|| {
        GetStatementResultOutput::builder()
            .records(vec![Field::LongValue(1)])
            .build()
            .unwrap()
    });
    let batch = batch_rule();
    let wh = warehouse(&[&submit, &polls, &count, &batch], 30);
    let file = orders_file();
    let out = wh.load(&file).await.unwrap();
    assert!(out.skipped);
    assert_eq!(batch.num_calls(), 0);
}

#[tokio::test]
async fn with_copy_a_load_is_one_batch_copying_from_s3() {
    let submit = mock!(Client::execute_statement)
        .then_output(|| ExecuteStatementOutput::builder().id("s-1").build());
    let polls = mock!(Client::describe_statement)
        .then_output(|| describe(StatusString::Finished, None, true));
    let count = mock!(Client::get_statement_result).then_output(|| {
        GetStatementResultOutput::builder()
            .records(vec![Field::LongValue(0)])
            .build()
            .unwrap()
    });
    let batch = mock!(Client::batch_execute_statement)
        .match_requests(|r| {
            let sqls = r.sqls();
            sqls.iter().any(|s| {
                s.starts_with("COPY load_orders (order_id,")
                    && s.contains("FROM 's3://bucket/pre/staging/orders/x.ndjson'")
                    && s.contains("IAM_ROLE 'arn:aws:iam::1:role/copy'")
                    && s.contains("FORMAT AS JSON 's3://bucket/pre/ops/jsonpaths/orders.json'")
            }) && sqls
                .iter()
                .any(|s| s.starts_with("MERGE INTO staging.orders"))
                && sqls.iter().any(|s| s.starts_with("INSERT INTO ops.ledger"))
                && !sqls
                    .iter()
                    .any(|s| s.starts_with("INSERT INTO load_orders"))
        })
        .then_output(|| BatchExecuteStatementOutput::builder().id("s-1").build());
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(ecom_pipeline::store::LocalStore::open(dir.path()).unwrap());
    let client: Client = mock_client!(
        aws_sdk_redshiftdata,
        RuleMode::MatchAny,
        &[&submit, &polls, &count, &batch]
    );
    let wh = RedshiftWarehouse::from_client(client, &config(30))
        .unwrap()
        .with_copy(ecom_pipeline::warehouse::redshift::CopyFrom {
            store: store.clone(),
            bucket: "bucket".into(),
            prefix: "pre/".into(),
            iam_role: "arn:aws:iam::1:role/copy".into(),
        });
    let file = orders_file();
    let out = wh.load(&file).await.unwrap();
    assert_eq!((out.rows, out.skipped), (1, false));
    assert_eq!(batch.num_calls(), 1, "the COPY batch matched");
    use ecom_pipeline::store::ObjectStore;
    let paths = store.get("ops/jsonpaths/orders.json").await.unwrap();
    assert!(std::str::from_utf8(&paths)
        .unwrap()
        .contains("$['order_time']"));
}

/// A load larger than a batch reuses the warehouse's Data API session from load to load; when
/// the service has closed it (idle past its keep-alive, or 24 h), the load's first call fails
/// on it and the load goes on in a new session instead of failing.
#[tokio::test]
async fn a_closed_session_is_replaced_and_the_load_goes_on() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let closed = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let (c, s) = (closed.clone(), started.clone());
    let refuse = mock!(Client::batch_execute_statement)
        .match_requests(move |r| r.session_id().is_some() && c.swap(false, Ordering::SeqCst))
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ValidationException","message":"Session is not available"}"#.into()),
        )
        .build();
    let ok = mock!(Client::batch_execute_statement)
        .match_requests(move |r| {
            if r.session_keep_alive_seconds().is_some() {
                s.fetch_add(1, Ordering::SeqCst);
            }
            true
        })
        .then_output(|| {
            BatchExecuteStatementOutput::builder()
                .id("b-1")
                .session_id("8d7e2a8c-1b2c-4d5e-9f00-0123456789ab")
                .build()
        });
    let polls = mock!(Client::describe_statement)
        .then_output(|| describe(StatusString::Finished, None, true));
    let submit = mock!(Client::execute_statement)
        .then_output(|| ExecuteStatementOutput::builder().id("s-1").build());
    let count = mock!(Client::get_statement_result).then_output(|| {
        GetStatementResultOutput::builder()
            .records(vec![Field::LongValue(0)])
            .build()
            .unwrap()
    });
    let wh = warehouse(&[&refuse, &ok, &polls, &submit, &count], 5);
    // 6,000 orders: over a hundred INSERTs, so more than one Data API call.
    let file = |name: &str, first: i64| {
        let body: String = (first..first + 6_000)
            .map(|i| {
                format!(
                    "{{\"order_id\":{i},\"user_id\":1,\"order_time\":\"2026-03-01T10:00:00Z\",\
                     \"order_status\":\"placed\",\"order_total_cents\":100,\"item_count\":1}}\n"
                )
            })
            .collect();
        ecom_pipeline::warehouse::StagedFile {
            key: format!("staging/orders/{name}.ndjson"),
            entity: "orders".into(),
            sha256: ecom_pipeline::store::sha256_hex(body.as_bytes()),
            body: bytes::Bytes::from(body),
            source: "test".into(),
            checkpoint: None,
            columns: None,
        }
    };
    wh.load(&file("a", 1)).await.unwrap();
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "one session for the first load"
    );
    closed.store(true, Ordering::SeqCst);
    wh.load(&file("b", 10_000)).await.unwrap();
    assert!(
        !closed.load(Ordering::SeqCst),
        "the reused session was refused once"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "and a new one carried the load"
    );
}
