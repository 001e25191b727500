//! The SQL generated for Redshift runs on a real PostgreSQL 15 (started by `scripts/test.sh`),
//! where the two dialects agree, and gives the same STAGING and CURATED tables as DuckDB for the
//! same input, loaded twice.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDate;
use ecom_pipeline::batch::run::{BatchRunner, RunStatus};
use ecom_pipeline::config::Config;
use ecom_pipeline::generator::Generator;
use ecom_pipeline::ledger::{SegmentCounts, StreamCommit};
use ecom_pipeline::store::{sha256_hex, LocalStore, ObjectStore};
use ecom_pipeline::stream::consumer::Processor;
use ecom_pipeline::stream::local::LocalLog;
use ecom_pipeline::stream::StreamLog;
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::schema::{self, Dialect, LedgerEntry};
use ecom_pipeline::warehouse::{models, parse_rows, Warehouse};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

mod support {
    pub mod pg;
}

use support::pg::{fresh_db, fresh_db_with};

async fn rows(pg: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    pg.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e} in {sql}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

async fn tx(pg: &Client, statements: &[String]) {
    pg.batch_execute("BEGIN").await.unwrap();
    for s in statements {
        if let Err(e) = pg.batch_execute(s).await {
            panic!("PostgreSQL refused generated SQL: {e:?}\n{s}");
        }
    }
    pg.batch_execute("COMMIT").await.unwrap();
}

/// Load one STAGING file into PostgreSQL with exactly the statements the Redshift path uses.
async fn pg_load(pg: &Client, key: &str, entity: &str, body: &[u8]) -> bool {
    let sha = sha256_hex(body);
    let seen = rows(pg, &schema::ledger_check(&sha)).await;
    if seen[0][0].as_deref() != Some("0") {
        return false;
    }
    let spec = schema::spec(entity).unwrap();
    let parsed = parse_rows(&spec, key, body).unwrap();
    // Events commit a stream checkpoint, their counts and the state generation in the same
    // transaction.
    let commit = (entity == "events").then(|| StreamCommit {
        shard: "shard-0000".into(),
        raw_key: format!("raw/stream/events/shard=shard-0000/{key}"),
        first_seq: 1,
        last_seq: body.len() as u64,
        counts: SegmentCounts {
            records: parsed.len() as u64,
            staged: parsed.len() as u64,
            ..SegmentCounts::default()
        },
        state_generation: Some(body.len() as u64),
        fence: None,
        // The late index's rows commit with it too.
        late_days: [(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(), 2)].into(),
    });
    let entry = LedgerEntry {
        key,
        entity,
        sha256: &sha,
        bytes: body.len() as u64,
        rows: parsed.len() as u64,
        source: "synthetic",
        loaded_at: chrono::Utc::now(),
        checkpoint: commit.as_ref(),
    };
    let (before, after) = schema::load_sql(Dialect::Redshift, &spec, &entry);
    let mut all = before;
    all.extend(schema::scratch_inserts(&spec, &parsed, 200));
    all.extend(after);
    tx(pg, &all).await;
    true
}

async fn pg_refresh(pg: &Client, lookback: u32) {
    let dirty: BTreeSet<NaiveDate> =
        rows(pg, "SELECT CAST(day AS VARCHAR) FROM ops.dirty_partitions")
            .await
            .into_iter()
            .map(|r| NaiveDate::parse_from_str(r[0].as_deref().unwrap(), "%Y-%m-%d").unwrap())
            .collect();
    let days = models::refresh_days(&dirty, lookback);
    if !days.is_empty() {
        tx(pg, &models::refresh_sql(Dialect::Redshift, &days)).await;
    }
}

/// Comparable text of the tables both warehouses must agree on.
const COMPARE: [&str; 10] = [
    "SELECT event_id, user_id, event_type, CAST(CAST(event_time AS DATE) AS VARCHAR), session_id FROM staging.events ORDER BY 1",
    "SELECT CAST(day AS VARCHAR), sessions, viewed, carted, checked_out, purchased FROM curated.daily_funnel ORDER BY 1",
    "SELECT CAST(COUNT(*) AS BIGINT) FROM curated.fct_events",
    "SELECT order_id, user_id, order_status, order_total_cents, item_count FROM staging.orders ORDER BY 1",
    "SELECT order_id, line_no, product_id, quantity, line_total_cents FROM staging.order_items ORDER BY 1, 2",
    "SELECT product_id, title, category, price_cents FROM curated.dim_products ORDER BY 1",
    "SELECT order_id, CAST(order_day AS VARCHAR), order_status, order_total_cents FROM curated.fct_orders ORDER BY 1",
    "SELECT CAST(day AS VARCHAR), orders, revenue_cents, CAST(FLOOR(avg_order_value_cents) AS BIGINT) FROM curated.daily_metrics ORDER BY 1",
    "SELECT CAST(day AS VARCHAR), category, orders, units, revenue_cents FROM curated.daily_category_sales ORDER BY 1, 2",
    "SELECT CAST(SUM(revenue_cents) AS BIGINT), CAST(SUM(orders) AS BIGINT) FROM curated.daily_metrics",
];

#[tokio::test]
async fn redshift_sql_runs_on_postgres_and_matches_duckdb() {
    if let Some(pg) = fresh_db("merge").await {
        same_tables_as_duckdb(&pg).await;
    }
}

/// The same with backslashes read as escapes, as Redshift reads them.
#[tokio::test]
async fn redshift_sql_runs_on_postgres_with_standard_conforming_strings_off() {
    if let Some(pg) = fresh_db_with("merge_nscs", false).await {
        let scs = rows(&pg, "SHOW standard_conforming_strings").await;
        assert_eq!(scs[0][0].as_deref(), Some("off"));
        same_tables_as_duckdb(&pg).await;
    }
}

/// Arbitrary text (quotes, backslashes, a trailing backslash, unicode) reads back unchanged
/// from the literal the Redshift path writes, on PostgreSQL with either setting and on DuckDB.
#[tokio::test]
async fn text_literals_round_trip_with_either_setting() {
    use ecom_pipeline::warehouse::Cell;
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let (Some(on), Some(off)) = (
        fresh_db_with("lit_on", true).await,
        fresh_db_with("lit_off", false).await,
    ) else {
        return;
    };
    let duck = DuckWarehouse::in_memory().unwrap();
    let strategy = proptest::string::string_regex("[a-z'\\\\\"%_é€\u{1F600} ]{0,24}").unwrap();
    let mut runner = TestRunner::deterministic();
    let mut cases: Vec<String> = vec![
        "ends with \\".into(),
        "\\".into(),
        "\\'; DROP TABLE ops.ledger; --".into(),
        "o''brien \\n \\t".into(),
    ];
    for _ in 0..64 {
        cases.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for text in cases {
        let sql = format!("SELECT {}", schema::literal(&Cell::Text(text.clone())));
        for (name, pg) in [("on", &on), ("off", &off)] {
            let got = rows(pg, &sql).await;
            assert_eq!(
                got[0][0].as_deref(),
                Some(text.as_str()),
                "scs {name}: {sql}"
            );
        }
        let got = duck.query(&sql).await.unwrap();
        assert_eq!(got[0][0].as_deref(), Some(text.as_str()), "duckdb: {sql}");
    }
}

async fn same_tables_as_duckdb(pg: &Client) {
    // DDL, twice: idempotent.
    for _ in 0..2 {
        tx(pg, &schema::ddl(Dialect::Redshift)).await;
    }

    // The same STAGING files, through the real batch path into DuckDB.
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let store = Arc::new(LocalStore::open(dir.path().join("store")).unwrap());
    let duck = Arc::new(DuckWarehouse::in_memory().unwrap());
    let runner = BatchRunner::new(&config, store.clone(), Some(duck.clone())).unwrap();
    let run = runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
    // And clickstream events, through the real stream path into DuckDB.
    let log = LocalLog::open(
        dir.path().join("log"),
        2,
        1 << 20,
        std::time::Duration::from_secs(3600),
        false,
    )
    .unwrap();
    let now = chrono::Utc::now();
    let (records, _) = Generator::new(&config.stream.generator, 10, 20).next_batch(
        3000,
        now - chrono::Duration::hours(3),
        now,
    );
    log.put(records).await.unwrap();
    let mut processor = Processor::new(&config.stream);
    processor
        .drain(
            &log,
            store.as_ref(),
            Some(duck.as_ref() as &dyn Warehouse),
            500,
        )
        .await
        .unwrap();
    ecom_pipeline::warehouse::refresh_models(
        duck.as_ref(),
        store.as_ref(),
        config.warehouse.lookback_days,
    )
    .await
    .unwrap();

    let mut files = Vec::new();
    for entity in ["products", "users", "orders", "order_items", "events"] {
        for m in store.list(&format!("staging/{entity}/")).await.unwrap() {
            files.push((entity, m.key.clone(), store.get(&m.key).await.unwrap()));
        }
    }
    assert!(files.len() > 4, "{}", files.len());
    // Twice, as a rerun would: the second pass is skipped by the ledger.
    for pass in 0..2 {
        for (entity, key, body) in &files {
            let loaded = pg_load(pg, key, entity, body).await;
            // (Pass 0 may skip an empty events file whose hash an earlier one had.)
            assert!(pass == 0 || !loaded, "{key} loaded twice");
        }
        pg_refresh(pg, config.warehouse.lookback_days).await;
    }
    // A backfill of a range recomputes those days to the same rows.
    let days: BTreeSet<NaiveDate> = NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .iter_days()
        .take(400)
        .collect();
    tx(pg, &models::refresh_sql(Dialect::Redshift, &days)).await;

    for sql in COMPARE {
        let on_pg = rows(pg, sql).await;
        let on_duck = duck.query(sql).await.unwrap();
        assert!(!on_pg.is_empty(), "{sql}");
        assert_eq!(on_pg, on_duck, "PostgreSQL and DuckDB differ on {sql}");
    }
    // The ops bookkeeping statements run there too.
    tx(pg, &ecom_pipeline::batch::run::run_sql(&run)).await;
    let status = processor.status(&log, None).await.unwrap();
    tx(
        pg,
        &ecom_pipeline::stream::consumer::watermarks_sql(&status.watermarks, None),
    )
    .await;
    let record = ecom_pipeline::audit::Record {
        at: chrono::Utc::now(),
        user: "o'neil".into(),
        ssh_connection: Some("10.0.0.1 5000 10.0.0.2 22".into()),
        via: "dashboard".into(),
        action: "backfill".into(),
        arguments: "{\"from\":\"o'k\"}".into(),
        outcome: "refused".into(),
        message: "refused: read-only".into(),
    };
    tx(pg, &schema::audit_sql(&record)).await;
    let audit = rows(pg, "SELECT user_name, outcome FROM ops.audit").await;
    assert_eq!(
        audit,
        vec![vec![
            Some("o'neil".to_string()),
            Some("refused".to_string())
        ]]
    );
    let tasks = rows(pg, "SELECT CAST(COUNT(*) AS BIGINT) FROM ops.tasks").await;
    assert_eq!(tasks[0][0].as_deref(), Some("6"));
    let cp = rows(pg, "SELECT shard FROM ops.checkpoints").await;
    assert_eq!(
        cp,
        vec![vec![Some("shard-0000".to_string())]],
        "one row per shard"
    );
    let revenue: i64 = rows(pg, COMPARE[9]).await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(revenue > 0);
}

#[test]
fn scratch_inserts_quote_text_safely() {
    let spec = schema::spec("users").unwrap();
    let row = vec![
        ecom_pipeline::warehouse::Cell::Int(1),
        ecom_pipeline::warehouse::Cell::Text("o'brien".into()),
    ];
    let sql = schema::scratch_inserts(&spec, &[row], 10);
    assert!(sql[0].contains("'o''brien'"), "{}", sql[0]);
}

#[tokio::test]
async fn the_copy_scratch_table_fills_its_own_source_key() {
    let Some(pg) = fresh_db("copy").await else {
        return;
    };
    tx(&pg, &schema::ddl(Dialect::Redshift)).await;
    let spec = schema::spec("orders").unwrap();
    let mut sql = schema::scratch_copy_ddl(&spec, "staging/orders/o'k.ndjson");
    // What COPY does: the file's columns only.
    sql.push(
        "INSERT INTO load_orders (order_id, user_id, order_time, order_status, \
         order_total_cents, item_count) VALUES (1, 2, CAST('2026-03-01 10:00:00' AS TIMESTAMP), \
         'placed', 100, 1)"
            .into(),
    );
    sql.extend(schema::merge(Dialect::Redshift, &spec, chrono::Utc::now()));
    tx(&pg, &sql).await;
    let got = rows(&pg, "SELECT order_id, source_key FROM staging.orders").await;
    assert_eq!(
        got,
        vec![vec![
            Some("1".into()),
            Some("staging/orders/o'k.ndjson".into())
        ]]
    );
}

/// Two loads of one entity at once, in two sessions, as two instances sharing a Redshift
/// warehouse would run them: each fills its own (temporary) scratch table, neither waits for
/// nor overwrites the other's.
#[tokio::test]
async fn two_loaders_at_once_keep_their_own_scratch_tables() {
    let Some(a) = fresh_db("two_loaders").await else {
        return;
    };
    tx(&a, &schema::ddl(Dialect::Redshift)).await;
    let base = std::env::var("ECOMOPS_TEST_PG").unwrap();
    let db = format!("t_two_loaders_{}", std::process::id());
    let (b, conn) = tokio_postgres::connect(&format!("{base} dbname={db}"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let spec = schema::spec("orders").unwrap();
    let file = |id: i64| {
        format!(
            "{{\"order_id\":{id},\"user_id\":1,\"order_time\":\"2026-03-01T10:00:00Z\",\
             \"order_status\":\"placed\",\"order_total_cents\":100,\"item_count\":1}}\n"
        )
    };
    let statements = |key: &str, body: &str| {
        let parsed = parse_rows(&spec, key, body.as_bytes()).unwrap();
        let sha = sha256_hex(body.as_bytes());
        let entry = LedgerEntry {
            key,
            entity: "orders",
            sha256: &sha,
            bytes: body.len() as u64,
            rows: parsed.len() as u64,
            source: "test",
            loaded_at: chrono::Utc::now(),
            checkpoint: None,
        };
        let (before, after) = schema::load_sql(Dialect::Redshift, &spec, &entry);
        (before, schema::scratch_inserts(&spec, &parsed, 100), after)
    };
    let (a_before, a_rows, a_after) = statements("staging/orders/a.ndjson", &file(1));
    // A is mid-load: scratch filled, transaction open.
    a.batch_execute("BEGIN").await.unwrap();
    for s in a_before.iter().chain(&a_rows) {
        a.batch_execute(s).await.unwrap();
    }
    // B loads another file of the same entity, whole, meanwhile.
    let (b_before, b_rows, b_after) = statements("staging/orders/b.ndjson", &file(2));
    let all: Vec<String> = b_before.into_iter().chain(b_rows).chain(b_after).collect();
    tokio::time::timeout(std::time::Duration::from_secs(10), tx(&b, &all))
        .await
        .expect("the second loader waited for the first one's scratch table");
    for s in &a_after {
        a.batch_execute(s).await.unwrap();
    }
    a.batch_execute("COMMIT").await.unwrap();
    let got = rows(
        &a,
        "SELECT order_id, source_key FROM staging.orders ORDER BY 1",
    )
    .await;
    assert_eq!(
        got,
        vec![
            vec![Some("1".into()), Some("staging/orders/a.ndjson".into())],
            vec![Some("2".into()), Some("staging/orders/b.ndjson".into())],
        ]
    );
}

/// A load larger than one Data API batch, as the Redshift path sends it (the scratch filled
/// over several calls of one session, the transaction last), on PostgreSQL reading literals as
/// Redshift does: a 10,000-event segment and a product whose description is over 100 KB as a
/// literal (filled by 32 KB appends) load whole and read back as DuckDB reads them.
#[tokio::test]
async fn a_load_larger_than_a_batch_fills_over_a_session_without_copy() {
    use ecom_pipeline::warehouse::redshift::session_calls;
    use ecom_pipeline::warehouse::StagedFile;
    let Some(pg) = fresh_db_with("big_load", false).await else {
        return;
    };
    let pg = support::pg::PgWarehouse(pg);
    pg.execute_tx(schema::ddl(Dialect::Redshift)).await.unwrap();
    let duck = DuckWarehouse::in_memory().unwrap();
    let events: String = (0..10_000)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("big-{i:05}"), "user_id": 1 + i % 7, "product_id": 2,
                "event_type": "product_view", "event_time": "2026-11-21T10:00:00.000000Z",
                "ingestion_time": "2026-11-21T10:00:01.000000Z",
                "session_id": format!("s\\{i}'€"),
            })
            .to_string()
                + "\n"
        })
        .collect();
    let description = "a\\b'c€😀".repeat(5_000);
    let product = serde_json::json!({
        "product_id": 77, "title": "long", "price_cents": 100, "description": description,
        "category": "c", "image": "i", "rating_rate": 1.0, "rating_count": 1,
    })
    .to_string()
        + "\n";
    let file = |key: &str, entity: &str, body: &str, commit: bool| StagedFile {
        key: key.into(),
        entity: entity.into(),
        sha256: sha256_hex(body.as_bytes()),
        body: bytes::Bytes::from(body.to_string()),
        source: "test".into(),
        checkpoint: commit.then(|| StreamCommit {
            shard: "shard-0000".into(),
            raw_key: "raw/stream/events/shard=shard-0000/seg-1-10000.ndjson".into(),
            first_seq: 1,
            last_seq: 10_000,
            counts: SegmentCounts {
                records: 10_000,
                staged: 10_000,
                ..SegmentCounts::default()
            },
            state_generation: Some(1),
            fence: None,
            late_days: Default::default(),
        }),
        columns: None,
    };
    let files = [
        file(
            "staging/events/dt=2026-11-21/seg-big.ndjson",
            "events",
            &events,
            true,
        ),
        file(
            "staging/products/window=all_all/long.ndjson",
            "products",
            &product,
            false,
        ),
    ];
    for f in &files {
        // The Redshift path's calls for it: the segment needs more than one (a session).
        let (spec, parsed) = f.parse().unwrap();
        let (before, after) =
            schema::load_sql(Dialect::Redshift, &spec, &f.ledger_entry(parsed.len()));
        let mut fill = before;
        fill.extend(schema::scratch_inserts(&spec, &parsed, 100));
        assert!(fill.iter().all(|s| s.len() <= schema::MAX_STATEMENT_BYTES));
        let calls = session_calls(fill, after).unwrap().len();
        assert!(calls > 1 || f.entity != "events", "{}: {calls}", f.key);
        assert!(!pg.load(f).await.unwrap().skipped);
        duck.load(f).await.unwrap();
    }
    for sql in [
        "SELECT event_id, session_id FROM staging.events ORDER BY 1",
        "SELECT description FROM staging.products",
        "SELECT shard, CAST(sequence_number AS VARCHAR) FROM ops.checkpoints",
    ] {
        let (a, b) = (pg.query(sql).await.unwrap(), duck.query(sql).await.unwrap());
        assert_eq!(a, b, "{sql}");
        assert!(!a.is_empty(), "{sql}");
    }
    let got = pg
        .query("SELECT description FROM staging.products")
        .await
        .unwrap();
    assert_eq!(got[0][0].as_deref(), Some(description.as_str()));
    // Everything the path reads back afterwards (refresh and CURATED files, status, quality)
    // stays within the Data API's 64 KB per result row (PgWarehouse checks every row).
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    ecom_pipeline::warehouse::refresh_models(&pg, &store, 1)
        .await
        .unwrap();
    ecom_pipeline::warehouse::status(&pg).await.unwrap();
    ecom_pipeline::warehouse::quality::quality(&pg, &Default::default(), chrono::Utc::now())
        .await
        .unwrap();
    // And the check itself catches a wider row.
    use futures::FutureExt;
    let wide = std::panic::AssertUnwindSafe(pg.query("SELECT REPEAT('x', 70000)"))
        .catch_unwind()
        .await;
    assert!(wide.is_err(), "a 70,000-byte row passed the 64 KB check");
}
