//! `warehouse.backend = "postgres"` (issue "When one machine is not enough": the shared
//! warehouse): the engine ingests an events file, runs a batch and verifies on a real
//! PostgreSQL 15, with the same tables as on DuckDB; a second engine on the same database (its
//! own data dir, the same object store) sees what the first loaded and loads nothing twice; a
//! load refused mid-transaction leaves nothing half-written; the config refuses what cannot
//! work.

use ecom_pipeline::command::Command;
use ecom_pipeline::config::{Config, WarehouseBackend};
use ecom_pipeline::warehouse::TextRows;

mod support {
    pub mod engine;
    pub mod pg;
}

use support::engine::{open, origin};

/// 300 events over an hour, with resends and a malformed line.
fn workload() -> String {
    let t0 = chrono::Utc::now() - chrono::Duration::hours(3);
    let types = ["product_view", "add_to_cart", "checkout", "purchase"];
    let mut lines = Vec::new();
    for i in 0..300i64 {
        let line = serde_json::json!({
            "event_id": format!("e{i:05}"),
            "user_id": 1 + i % 23,
            "product_id": 1 + i % 7,
            "event_type": types[(i % 4) as usize],
            "event_time": (t0 + chrono::Duration::seconds(i * 10))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "session_id": format!("s{}", i / 5),
        })
        .to_string();
        lines.push(line.clone());
        if i % 50 == 0 {
            lines.push(line);
        }
    }
    lines.push("{\"event_id\": \"broken".into());
    lines.join("\n") + "\n"
}

/// Read the same way on both engines (integers and text print alike).
const TABLES: [&str; 4] = [
    "SELECT event_id, CAST(user_id AS BIGINT), CAST(product_id AS BIGINT), event_type, session_id \
     FROM staging.events ORDER BY event_id",
    "SELECT CAST(day AS VARCHAR), CAST(sessions AS BIGINT), CAST(viewed AS BIGINT), \
     CAST(purchased AS BIGINT) FROM curated.daily_funnel ORDER BY day",
    "SELECT CAST(SUM(records) AS BIGINT), CAST(SUM(staged) AS BIGINT), \
     CAST(SUM(duplicates) AS BIGINT), CAST(SUM(quarantined) AS BIGINT) FROM ops.segments",
    "SELECT CAST(COUNT(*) AS BIGINT), CAST(SUM(order_total_cents) AS BIGINT) FROM staging.orders",
];

fn config(data: &std::path::Path, store: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    c.store.local.root = Some(store.to_path_buf());
    c.stream.generator.enabled = false;
    c
}

async fn ingest_batch_verify(c: Config, file: &std::path::Path) -> Vec<TextRows> {
    use ecom_pipeline::orchestrator::{LogBuffer, Pipeline, PipelineOptions};
    // The writer before may still be closing its connection (and with it the writer lock).
    let mut opened = None;
    for _ in 0..50 {
        let options = PipelineOptions {
            mode: ecom_pipeline::snapshot::RunMode::Oneshot,
            read_only: false,
            schedule: false,
            log: LogBuffer::default(),
        };
        match Pipeline::open(c.clone(), options).await {
            Ok(p) => {
                opened = Some(p);
                break;
            }
            Err(e) if e.to_string().contains("another ecomops instance") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut p = opened.expect("the writer lock was never released");
    let o = p
        .dispatch(
            Command::IngestFile {
                path: file.to_path_buf(),
            },
            &origin(),
        )
        .await;
    assert!(o.ok, "{o:?}");
    let batch = Command::BatchRun {
        task: None,
        only: None,
        run_id: None,
        window: None,
    };
    let o = p.dispatch(batch, &origin()).await;
    assert!(o.ok, "{o:?}");
    let v = p.dispatch(Command::Verify, &origin()).await;
    assert!(v.ok, "{v:?}");
    let wh = p.warehouse().unwrap().clone();
    let mut out = Vec::new();
    for sql in TABLES {
        out.push(wh.query(sql).await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_engine_on_postgres_loads_what_duckdb_loads_and_a_second_instance_shares_it() {
    let Some(dsn) = support::pg::fresh_dsn("backend").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("events.ndjson");
    std::fs::write(&file, workload()).unwrap();

    let duck = ingest_batch_verify(
        config(&tmp.path().join("duck"), &tmp.path().join("duck-store")),
        &file,
    )
    .await;
    assert_eq!(duck[0].len(), 300);

    let shared_store = tmp.path().join("store");
    let mut first = config(&tmp.path().join("a"), &shared_store);
    first.warehouse.backend = WarehouseBackend::Postgres;
    first.warehouse.postgres.connection = dsn.clone();
    let on_pg = ingest_batch_verify(first.clone(), &file).await;
    for (i, (d, p)) in duck.iter().zip(&on_pg).enumerate() {
        assert_eq!(d, p, "DuckDB and PostgreSQL differ: {}", TABLES[i]);
    }

    // A second instance: its own data dir, the same store and database. The file is a
    // duplicate, the batch's files are in the ledger: nothing is loaded twice.
    let mut second = first.clone();
    second.data_dir = tmp.path().join("b");
    let again = ingest_batch_verify(second, &file).await;
    assert_eq!(
        again, on_pg,
        "the second instance doubled or lost something"
    );
}

#[tokio::test]
async fn a_load_refused_mid_transaction_leaves_nothing() {
    let Some(dsn) = support::pg::fresh_dsn("refused").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(&tmp.path().join("a"), &tmp.path().join("store"));
    c.warehouse.backend = WarehouseBackend::Postgres;
    c.warehouse.postgres.connection = dsn.clone();
    let p = open(c).await;
    let wh = p.warehouse().unwrap().clone();
    // The ledger row goes in after the rows: a trigger refuses it, as a constraint or a
    // full disk would, after the MERGE ran.
    let (admin, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ \
             LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE INSERT ON ops.ledger \
             FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
        .await
        .unwrap();
    let body = "{\"order_id\":1,\"user_id\":1,\"order_time\":\"2026-03-01T10:00:00Z\",\
                \"order_status\":\"placed\",\"order_total_cents\":100,\"item_count\":1}\n";
    let file = ecom_pipeline::warehouse::StagedFile {
        key: "staging/orders/x.ndjson".into(),
        entity: "orders".into(),
        sha256: ecom_pipeline::store::sha256_hex(body.as_bytes()),
        body: bytes::Bytes::from(body),
        source: "test".into(),
        checkpoint: None,
        columns: None,
    };
    let err = wh.load(&file).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    let n = wh
        .query("SELECT CAST(COUNT(*) AS BIGINT) FROM staging.orders")
        .await
        .unwrap();
    assert_eq!(n[0][0].as_deref(), Some("0"), "the MERGE was rolled back");
    // The connection is usable again, and the load goes through once the refusal is gone.
    admin
        .batch_execute("DROP TRIGGER refuse ON ops.ledger")
        .await
        .unwrap();
    let o = wh.load(&file).await.unwrap();
    assert_eq!((o.rows, o.skipped), (1, false));
}

#[test]
fn the_config_names_what_postgres_needs() {
    let parse = |text: &str| Config::from_toml(text, "test.toml");
    let err = parse("[warehouse]\nbackend = \"postgres\"\n").unwrap_err();
    assert!(
        err.to_string().contains("warehouse.postgres.connection"),
        "{err}"
    );
    let err = parse(
        "[warehouse]\nbackend = \"postgres\"\n[warehouse.postgres]\nconnection = \"host=h password=x\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("password_env"), "{err}");
    let err = parse(
        "[warehouse]\nbackend = \"postgres\"\n[warehouse.postgres]\nconnection = \"host=h port=notaport\"\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("warehouse.postgres.connection"),
        "{err}"
    );
    let ok = parse(
        "[warehouse]\nbackend = \"postgres\"\n[warehouse.postgres]\nconnection = \"host=10.0.0.5 user=ecomops dbname=analytics\"\npassword_env = \"PGPASSWORD\"\n",
    )
    .unwrap();
    assert_eq!(ok.warehouse.backend, WarehouseBackend::Postgres);
}

/// Review repro: two writers on one database would overwrite each other's checkpoints and
/// stream state (named by shard alone). The second writer is refused while the first runs; a
/// reader is not; once the first stops, the second may write.
#[tokio::test]
async fn a_second_writer_on_the_database_is_refused_while_the_first_runs() {
    use ecom_pipeline::orchestrator::{LogBuffer, Pipeline, PipelineOptions};
    use ecom_pipeline::snapshot::RunMode;
    let Some(dsn) = support::pg::fresh_dsn("writers").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let with = |dir: &str| {
        let mut c = config(&tmp.path().join(dir), &tmp.path().join("store"));
        c.warehouse.backend = WarehouseBackend::Postgres;
        c.warehouse.postgres.connection = dsn.clone();
        c
    };
    let options = |read_only| PipelineOptions {
        mode: RunMode::Oneshot,
        read_only,
        schedule: false,
        log: LogBuffer::default(),
    };
    let first = open(with("a")).await;
    let err = Pipeline::open(with("b"), options(false))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("another ecomops instance writes"),
        "{err}"
    );
    assert!(Pipeline::open(with("c"), options(true)).await.is_ok());
    drop(first);
    // The lock goes with the first writer's connection (closed in the background).
    let mut opened = None;
    for _ in 0..50 {
        if let Ok(p) = Pipeline::open(with("b"), options(false)).await {
            opened = Some(p);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(opened.is_some(), "the second writer could not take over");
}
