//! The Redshift rules check: every statement the Redshift path sends through the Data API
//! (captured from a mocked client while loading real STAGING files of every entity, refreshing
//! the models and creating the schema) obeys what the AWS documentation says the service
//! accepts, which the emulators (PostgreSQL 15, the Data API mocks) do not enforce.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_sdk_redshiftdata::operation::batch_execute_statement::BatchExecuteStatementOutput;
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::operation::execute_statement::ExecuteStatementOutput;
use aws_sdk_redshiftdata::operation::get_statement_result::GetStatementResultOutput;
use aws_sdk_redshiftdata::types::{Field, StatusString};
use aws_sdk_redshiftdata::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use chrono::NaiveDate;
use ecom_pipeline::batch::run::{BatchRunner, RunStatus};
use ecom_pipeline::config::{Config, RedshiftConfig};
use ecom_pipeline::ledger::{SegmentCounts, StreamCommit};
use ecom_pipeline::store::{sha256_hex, LocalStore, ObjectStore};
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::redshift::RedshiftWarehouse;
use ecom_pipeline::warehouse::schema::{self, Dialect};
use ecom_pipeline::warehouse::{models, StagedFile, Warehouse};

/// One rule, with the page it comes from.
struct Rule {
    source: &'static str,
    broken_by: fn(&str) -> Option<String>,
}

/// The single-quoted literals of a statement (`''` inside is a quote).
fn literals(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut lit = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    lit.push('\'');
                    continue;
                }
                break;
            }
            lit.push(c);
        }
        out.push(lit);
    }
    out
}

const STATEMENT_RULES: &[Rule] = &[
    Rule {
        // "MERGE INTO target_table USING source_table [ [ AS ] alias ] ON match_condition"
        source: "https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html (no target alias)",
        broken_by: |sql| {
            let rest = sql.strip_prefix("MERGE INTO ")?;
            let mut words = rest.split_whitespace();
            let _target = words.next();
            (words.next() != Some("USING")).then(|| "the target has an alias".into())
        },
    },
    Rule {
        // "source_table: The temporary or permanent table supplying the rows to merge"
        source: "https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html (source is a table)",
        broken_by: |sql| {
            let rest = sql.strip_prefix("MERGE INTO ")?;
            let after = rest.split_once(" USING ")?.1.trim_start();
            after
                .starts_with('(')
                .then(|| "the source is a subquery".into())
        },
    },
    Rule {
        // The Data API: "The maximum query statement size is 100 KB."
        source:
            "https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html (100 KB per statement)",
        broken_by: |sql| (sql.len() > 100 * 1024).then(|| format!("{} bytes", sql.len())),
    },
    Rule {
        // A backslash in a literal is an escape in Redshift (QUOTE_LITERAL doubles them); the
        // path writes none (CHR(92) instead), so text can never end a literal early.
        source: "https://docs.aws.amazon.com/redshift/latest/dg/r_QUOTE_LITERAL.html (backslashes)",
        broken_by: |sql| {
            literals(sql)
                .into_iter()
                .find(|l| l.contains('\\'))
                .map(|l| format!("a backslash in the literal {l:?}"))
        },
    },
];

fn check(batches: &[Vec<String>]) {
    let mut broken = Vec::new();
    for batch in batches {
        // BatchExecuteStatement: "Sqls ... Array Members: Minimum number of 1 item. Maximum
        // number of 40 items."
        if batch.is_empty() || batch.len() > 40 {
            broken.push(format!(
                "https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_BatchExecuteStatement.html: \
                 {} statements in one batch",
                batch.len()
            ));
        }
        for sql in batch {
            for rule in STATEMENT_RULES {
                if let Some(why) = (rule.broken_by)(sql) {
                    let head: String = sql.chars().take(160).collect();
                    broken.push(format!("{}: {why}: {head}", rule.source));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_rules_catch_what_they_are_for() {
    let bad = vec![vec![
        "MERGE INTO staging.orders AS t USING (SELECT 1) AS s ON t.a = s.a".to_string(),
    ]];
    let caught = std::panic::catch_unwind(|| check(&bad)).unwrap_err();
    let msg = caught.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("no target alias") && msg.contains("source is a table"),
        "{msg}"
    );
    assert!(std::panic::catch_unwind(|| check(&[vec!["SELECT 'a\\'".into()]])).is_err());
    assert!(std::panic::catch_unwind(|| check(&[vec!["SELECT 1".into(); 41]])).is_err());
    assert!(std::panic::catch_unwind(|| check(&[vec!["x".repeat(100 * 1024 + 1)]])).is_err());
    check(&[vec!["SELECT 'it''s' || CHR(92)".into()]]);
}

/// 60,000 bytes (under Redshift's VARCHAR(65535)): backslashes, quotes and unicode.
fn long_text() -> String {
    "a\\b'c€😀".repeat(5_000)
}

/// STAGING files of every entity from the real batch and stream paths, plus events whose
/// text a SQL literal must survive.
async fn staging_files() -> Vec<StagedFile> {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let store = Arc::new(LocalStore::open(dir.path().join("store")).unwrap());
    let duck = Arc::new(DuckWarehouse::in_memory().unwrap());
    let runner = BatchRunner::new(&config, store.clone(), Some(duck)).unwrap();
    let run = runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
    let mut files = Vec::new();
    for entity in ["products", "users", "orders", "order_items"] {
        for m in store.list(&format!("staging/{entity}/")).await.unwrap() {
            let body = store.get(&m.key).await.unwrap();
            files.push(StagedFile {
                key: m.key.clone(),
                entity: entity.into(),
                sha256: sha256_hex(&body),
                body,
                source: "synthetic".into(),
                checkpoint: None,
                columns: None,
            });
        }
    }
    let hostile = [
        "ends with a backslash \\",
        "o'neil \\' ; DROP TABLE ops.ledger; --",
        "unicode é € 😀",
    ];
    let body: String = hostile
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "event_id": format!("e{i}\\"), "user_id": 1, "product_id": 2,
                "event_type": "product_view", "event_time": "2026-11-20T10:00:00.000000Z",
                "ingestion_time": "2026-11-20T10:00:01.000000Z", "session_id": s,
            })
            .to_string()
                + "\n"
        })
        .collect();
    // A segment of the default size (10,000 records): more rows than one batch of INSERTs.
    let big: String = (0..10_000)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("big-{i}"), "user_id": 1, "product_id": 2,
                "event_type": "product_view", "event_time": "2026-11-21T10:00:00.000000Z",
                "ingestion_time": "2026-11-21T10:00:01.000000Z", "session_id": format!("s\\{i}'"),
            })
            .to_string()
                + "\n"
        })
        .collect();
    files.push(StagedFile {
        key: "staging/events/dt=2026-11-21/seg-big.ndjson".into(),
        entity: "events".into(),
        sha256: sha256_hex(big.as_bytes()),
        body: bytes::Bytes::from(big),
        source: "stream".into(),
        checkpoint: Some(StreamCommit {
            shard: "shard-0001".into(),
            raw_key: "raw/stream/events/shard=shard-0001/seg-big.ndjson".into(),
            first_seq: 1,
            last_seq: 10_000,
            counts: SegmentCounts {
                records: 10_000,
                staged: 10_000,
                ..SegmentCounts::default()
            },
            state_generation: Some(8),
            fence: None,
            late_days: Default::default(),
        }),
        columns: None,
    });
    // A product whose description alone is over 100 KB as a literal (each backslash is
    // written as CHR(92)).
    let long = serde_json::json!({
        "product_id": 77, "title": "long", "price_cents": 100, "description": long_text(),
        "category": "c", "image": "i", "rating_rate": 1.0, "rating_count": 1,
    })
    .to_string()
        + "\n";
    files.push(StagedFile {
        key: "staging/products/window=all_all/long-text.ndjson".into(),
        entity: "products".into(),
        sha256: sha256_hex(long.as_bytes()),
        body: bytes::Bytes::from(long),
        source: "synthetic".into(),
        checkpoint: None,
        columns: None,
    });
    files.push(StagedFile {
        key: "staging/events/dt=2026-11-20/seg-1-3.ndjson".into(),
        entity: "events".into(),
        sha256: sha256_hex(body.as_bytes()),
        body: bytes::Bytes::from(body),
        source: "stream".into(),
        checkpoint: Some(StreamCommit {
            shard: "shard-0000".into(),
            raw_key: "raw/stream/events/shard=shard-0000/seg-1-3.ndjson".into(),
            first_seq: 1,
            last_seq: 3,
            counts: SegmentCounts {
                records: 3,
                staged: 3,
                ..SegmentCounts::default()
            },
            state_generation: Some(7),
            fence: None,
            late_days: Default::default(),
        }),
        columns: None,
    });
    files
}

#[tokio::test]
async fn every_statement_of_the_redshift_path_follows_the_documented_rules() {
    let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let seen = batches.clone();
    let seen_calls = calls.clone();
    let batch = mock!(Client::batch_execute_statement)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.sqls().to_vec());
            seen_calls.lock().unwrap().push(Call {
                statements: r.sqls().len(),
                session_id: r.session_id().map(str::to_string),
                keep_alive: r.session_keep_alive_seconds(),
                addressed: r.database().is_some()
                    || r.workgroup_name().is_some()
                    || r.cluster_identifier().is_some(),
            });
            true
        })
        .then_output(|| {
            BatchExecuteStatementOutput::builder()
                .id("b-1")
                .session_id("8d7e2a8c-1b2c-4d5e-9f00-0123456789ab")
                .build()
        });
    let single = batches.clone();
    let submit = mock!(Client::execute_statement)
        .match_requests(move |r| {
            single
                .lock()
                .unwrap()
                .push(r.sql().map(str::to_string).into_iter().collect());
            true
        })
        .then_output(|| ExecuteStatementOutput::builder().id("s-1").build());
    let polls = mock!(Client::describe_statement).then_output(|| {
        DescribeStatementOutput::builder()
            .id("s-1")
            .status(StatusString::Finished)
            .has_result_set(true)
            .created_at(aws_sdk_redshiftdata::primitives::DateTime::from_secs(0))
            .updated_at(aws_sdk_redshiftdata::primitives::DateTime::from_secs(0))
            .build()
            .unwrap()
    });
    // Every ledger check answers "not loaded yet".
    let count = mock!(Client::get_statement_result).then_output(|| {
        GetStatementResultOutput::builder()
            .records(vec![Field::LongValue(0)])
            .build()
            .unwrap()
    });
    let client: Client = mock_client!(
        aws_sdk_redshiftdata,
        RuleMode::MatchAny,
        &[&batch, &submit, &polls, &count]
    );
    let cfg = RedshiftConfig {
        workgroup_name: Some("wg".into()),
        database: "dev".into(),
        poll_max_ms: 1,
        ..RedshiftConfig::default()
    };
    let wh = RedshiftWarehouse::from_client(client, &cfg).unwrap();

    wh.batch(schema::ddl(Dialect::Redshift)).await.unwrap();
    let files = staging_files().await;
    let entities: BTreeSet<&str> = files.iter().map(|f| f.entity.as_str()).collect();
    assert_eq!(entities.len(), 5, "{entities:?}");
    for f in &files {
        let before = calls.lock().unwrap().len();
        wh.load(f).await.unwrap();
        let made = calls.lock().unwrap().len() - before;
        if f.key.contains("seg-big") {
            assert!(made > 1, "{}: {made} call(s); it needs a session", f.key);
        }
    }
    let days: BTreeSet<NaiveDate> = NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .iter_days()
        .take(400)
        .collect();
    wh.execute_tx(models::refresh_sql(Dialect::Redshift, &days))
        .await
        .unwrap();

    let batches = batches.lock().unwrap().clone();
    let merges = batches
        .iter()
        .flatten()
        .filter(|s| s.starts_with("MERGE INTO"))
        .count();
    assert_eq!(merges, 5, "one MERGE per non-event file");
    assert!(
        batches.iter().flatten().any(|s| s.contains("CHR(92)")),
        "the hostile text reached a statement"
    );
    check(&batches);
    check_sessions(&calls.lock().unwrap());
}

/// What a BatchExecuteStatement call said of its session.
#[derive(Debug, Clone)]
struct Call {
    statements: usize,
    session_id: Option<String>,
    keep_alive: Option<i32>,
    addressed: bool,
}

/// Session reuse as documented
/// (<https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html>, "session reuse"): a
/// session is started by a call with the connection and `SessionKeepAliveSeconds` (at most 24
/// hours); later calls name it by `SessionId` alone, as the documented `--session-id` example
/// does; and a call without either is a plain one-off batch.
fn check_sessions(calls: &[Call]) {
    let mut broken = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        match (&c.session_id, c.keep_alive) {
            (Some(_), _) if c.addressed => {
                broken.push(format!("call {i}: SessionId with connection parameters"))
            }
            (Some(_), Some(_)) => broken.push(format!("call {i}: SessionId and a keep-alive")),
            (None, Some(k)) if !(1..=86_400).contains(&k) || !c.addressed => {
                broken.push(format!("call {i}: a session started with keep-alive {k}"))
            }
            (None, None) if !c.addressed => broken.push(format!("call {i}: no connection")),
            _ => {}
        }
        if c.statements > 40 {
            broken.push(format!("call {i}: {} statements", c.statements));
        }
    }
    assert!(
        calls.iter().any(|c| c.session_id.is_some()),
        "no call reused a session"
    );
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
