//! Fault injection below the pipeline: a disk that fills up mid-run gives a clear error and
//! corrupts nothing (no ledger row, no half-written object), and the retry completes; a
//! statement failing inside a warehouse transaction leaves nothing of it behind.

mod support {
    pub mod faulty;
}

use std::sync::Arc;

use ecom_pipeline::batch::run::{BatchRunner, RunStatus};
use ecom_pipeline::config::Config;
use ecom_pipeline::store::{LocalStore, ObjectStore};
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::Warehouse;
use support::faulty::{Faults, FaultyStore};

async fn count(wh: &dyn Warehouse, sql: &str) -> i64 {
    wh.query(sql).await.unwrap()[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_fails_clearly_corrupts_nothing_and_the_retry_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: tmp.path().to_path_buf(),
        ..Config::default()
    };
    let faults = Faults::new(1);
    faults.fill_disk(true);
    let store: Arc<dyn ObjectStore> = Arc::new(FaultyStore {
        inner: LocalStore::open(tmp.path().join("store")).unwrap(),
        faults: faults.clone(),
    });
    let wh: Arc<dyn Warehouse> = Arc::new(DuckWarehouse::in_memory().unwrap());
    let runner = BatchRunner::new(&config, store.clone(), Some(wh.clone())).unwrap();

    let run = runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let error = run
        .tasks
        .iter()
        .find_map(|t| t.error.clone())
        .expect("a task says why");
    assert!(error.contains("No space left on device"), "{error}");
    assert!(
        error.contains("/data/store/raw/"),
        "the error names the object: {error}"
    );
    assert_eq!(
        count(wh.as_ref(), "SELECT COUNT(*) FROM ops.ledger").await,
        0
    );
    assert!(
        store.list("raw/").await.unwrap().is_empty(),
        "no half-written RAW object"
    );
    assert!(store.list("staging/").await.unwrap().is_empty());

    faults.fill_disk(false);
    let run = runner.retry(&run.run_id, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let report = ecom_pipeline::warehouse::verify::verify(store.as_ref(), wh.as_ref())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.differences);
    assert!(count(wh.as_ref(), "SELECT COUNT(*) FROM staging.orders").await > 0);
}

#[tokio::test]
async fn a_statement_failing_mid_transaction_leaves_nothing_behind() {
    let wh = DuckWarehouse::in_memory().unwrap();
    let before = count(&wh, "SELECT COUNT(*) FROM ops.ledger").await;
    let statements = vec![
        "INSERT INTO ops.dirty_partitions (day) VALUES (DATE '2026-11-01')".to_string(),
        "INSERT INTO no_such_schema.no_such_table VALUES (1)".to_string(),
    ];
    let err = wh.execute_tx(statements).await.unwrap_err().to_string();
    assert!(err.contains("no_such_table"), "{err}");
    assert_eq!(count(&wh, "SELECT COUNT(*) FROM ops.ledger").await, before);
    assert_eq!(
        count(&wh, "SELECT COUNT(*) FROM ops.dirty_partitions").await,
        0,
        "the first statement was rolled back with the second"
    );
}
