//! Loading the same STAGING files in any order, with duplicates and refreshes in between, gives
//! the same CURATED tables and metrics (property test on a real DuckDB).

use std::sync::Arc;

use chrono::NaiveDate;
use ecom_pipeline::batch::run::{BatchRunner, RunStatus};
use ecom_pipeline::config::Config;
use ecom_pipeline::store::{sha256_hex, LocalStore, ObjectStore};
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::{metrics, refresh_models, StagedFile, TextRows, Warehouse};
use proptest::prelude::*;

const TABLES: [&str; 6] = [
    // Not source_key: which of two files with the same order loaded last is order-dependent by
    // design (MERGE: the last load wins); the row itself must not be.
    "SELECT order_id, user_id, order_time, order_status, order_total_cents, item_count FROM staging.orders ORDER BY order_id",
    // Not created_at: when the warehouse first loaded the product, a clock reading.
    "SELECT * EXCLUDE (created_at) FROM curated.dim_products ORDER BY product_id",
    "SELECT * FROM curated.fct_orders ORDER BY order_id",
    "SELECT * FROM curated.fct_order_items ORDER BY order_id, line_no",
    "SELECT CAST(day AS VARCHAR), orders, revenue_cents FROM curated.daily_metrics ORDER BY 1",
    "SELECT CAST(day AS VARCHAR), category, orders, units, revenue_cents FROM curated.daily_category_sales ORDER BY 1, 2",
];

/// STAGING files of two overlapping incremental pulls (the same orders arrive twice, in files
/// with different bytes) plus a full pull.
fn staging_files() -> &'static [StagedFile] {
    static FILES: std::sync::OnceLock<Vec<StagedFile>> = std::sync::OnceLock::new();
    FILES.get_or_init(make_files)
}

fn make_files() -> Vec<StagedFile> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let store = Arc::new(LocalStore::open(dir.path().join("store")).unwrap());
        let wh = Arc::new(DuckWarehouse::in_memory().unwrap());
        let runner = BatchRunner::new(&config, store.clone(), Some(wh)).unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        for window in [
            Some((d("2026-01-01"), d("2026-04-30"))),
            Some((d("2026-03-01"), d("2026-06-30"))),
            None,
        ] {
            let run = runner.run_new(None, window).await.unwrap();
            assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
        }
        let mut files = Vec::new();
        for m in store.list("staging/").await.unwrap() {
            let body = store.get(&m.key).await.unwrap();
            files.push(StagedFile {
                entity: m.key.split('/').nth(1).unwrap().to_string(),
                sha256: sha256_hex(&body),
                key: m.key,
                body,
                source: "synthetic".into(),
                checkpoint: None,
                columns: None,
            });
        }
        assert!(files.len() >= 10, "{}", files.len());
        files
    })
}

async fn load_all(order: &[usize], files: &[StagedFile], refresh_each: bool) -> Vec<TextRows> {
    let wh = DuckWarehouse::in_memory().unwrap();
    let lake = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(lake.path()).unwrap();
    for i in order {
        wh.load(&files[*i]).await.unwrap();
        if refresh_each {
            refresh_models(&wh, &lake, 2).await.unwrap();
        }
    }
    refresh_models(&wh, &lake, 2).await.unwrap();
    let mut out = Vec::new();
    for sql in TABLES {
        out.push(wh.query(sql).await.unwrap());
    }
    let m = metrics(&wh).await.unwrap();
    out.push(vec![vec![
        Some(m.revenue_cents.to_string()),
        Some(m.orders.to_string()),
    ]]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, max_shrink_iters: 0, ..ProptestConfig::default() })]

    #[test]
    fn any_order_with_duplicates_gives_the_same_curated_tables(
        seed in any::<u64>(),
        refresh_each in any::<bool>(),
    ) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let files = staging_files();
        let canonical: Vec<usize> = (0..files.len()).collect();
        // A shuffled order in which some files come twice or three times.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = canonical
            .iter()
            .flat_map(|i| std::iter::repeat_n(*i, 1 + (seed as usize + i) % 3))
            .collect();
        order.shuffle(&mut rng);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let expected = rt.block_on(load_all(&canonical, files, false));
        let got = rt.block_on(load_all(&order, files, refresh_each));
        prop_assert!(!expected[2].is_empty());
        prop_assert_eq!(got, expected);
    }
}
