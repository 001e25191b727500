//! The batch DAG against a fault-injecting FakeStore server on loopback.

mod support {
    pub mod fakestore_server;
}

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecom_pipeline::batch::run::{BatchRunner, RunStatus, Task, TaskStatus};
use ecom_pipeline::batch::synthetic::SyntheticSource;
use ecom_pipeline::config::{BatchSource, Config, RetryConfig};
use ecom_pipeline::store::{LocalStore, ObjectStore};
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use support::fakestore_server::{FakeStoreServer, Fault};

fn config(dir: &Path, url: &str, retry: RetryConfig) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.batch.source = BatchSource::Fakestore;
    c.batch.fakestore.base_url = url.to_string();
    c.batch.fakestore.request_timeout_ms = 300;
    c.batch.fakestore.task_timeout_secs = 30;
    c.batch.retry = retry;
    c
}

fn fast_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        base_delay_ms: 10,
        multiplier: 2.0,
        max_delay_ms: 50,
        max_attempts,
        jitter: true,
        api_down_after: 3,
    }
}

struct Fixture {
    store: Arc<LocalStore>,
    wh: Arc<DuckWarehouse>,
    runner: BatchRunner,
}

fn runner(config: Config) -> Fixture {
    let store = Arc::new(LocalStore::open(config.data_dir.join("store")).unwrap());
    let wh = Arc::new(DuckWarehouse::in_memory().unwrap());
    let runner = BatchRunner::new(&config, store.clone(), Some(wh.clone())).unwrap();
    Fixture { store, wh, runner }
}

async fn setup(retry: RetryConfig) -> (FakeStoreServer, Fixture, tempfile::TempDir) {
    let server = FakeStoreServer::start(SyntheticSource::new(42, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let f = runner(config(dir.path(), &server.url(), retry));
    (server, f, dir)
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn a_flaky_api_completes_within_the_retry_budget() {
    let (server, f, _dir) = setup(fast_retry(12)).await;
    server.set_random(30, 10, Duration::from_millis(600));
    let run = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
    assert_eq!(run.report.staged["products"], 20);
    assert_eq!(run.report.staged["orders"], 40);
    let api = f.runner.api_state();
    assert!(api.failures > 0, "the server injected no fault: {api:?}");
    assert_eq!(api.attempts, server.total_requests() as u64);
    assert!(!api.down);
    let raw = f.store.list("raw/").await.unwrap();
    assert_eq!(raw.len(), 3);
}

#[tokio::test]
async fn api_down_fails_cleanly_and_retry_completes_after_it_returns() {
    let (server, f, _dir) = setup(fast_retry(4)).await;
    server.set_down(true);
    let run = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    for t in ["extract_products", "extract_users", "extract_carts"] {
        let task = run.task(t).unwrap();
        assert_eq!(task.status, TaskStatus::Failed, "{t}");
        assert!(
            task.error
                .as_deref()
                .unwrap()
                .contains("gave up after 4 attempts"),
            "{task:?}"
        );
    }
    assert_eq!(run.task("land").unwrap().status, TaskStatus::UpstreamFailed);
    assert_eq!(server.total_requests(), 12, "3 endpoints x 4 attempts");
    let api = f.runner.api_state();
    assert!(api.down, "the API-down scenario is detected: {api:?}");
    assert_eq!(api.detections, 1);
    assert!(f.store.list("").await.unwrap().is_empty(), "nothing landed");
    assert!(run.summary().contains("retry with `ecomops retry"));

    server.set_down(false);
    let done = f.runner.retry(&run.run_id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{}", done.summary());
    assert_eq!(done.task("extract_users").unwrap().attempts, 2);
    let api = f.runner.api_state();
    assert!(!api.down);
    assert_eq!(api.recoveries, 1);
    assert_eq!(f.store.list("raw/").await.unwrap().len(), 3);
}

#[tokio::test]
async fn rerunning_the_pull_lands_nothing_new() {
    let (_server, f, _dir) = setup(fast_retry(3)).await;
    let first = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded);
    let before = f.store.list("").await.unwrap();
    let second = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(second.status, RunStatus::Succeeded);
    assert_eq!(second.report.duplicates(), 3);
    assert!(second.report.staged.is_empty());
    assert!(
        second.summary().contains("3 duplicate skipped"),
        "{}",
        second.summary()
    );
    assert_eq!(f.store.list("").await.unwrap(), before);
}

#[tokio::test]
async fn retries_back_off_exponentially() {
    let retry = RetryConfig {
        base_delay_ms: 60,
        multiplier: 2.0,
        max_delay_ms: 10_000,
        max_attempts: 5,
        jitter: false,
        api_down_after: 10,
    };
    let (server, f, _dir) = setup(retry).await;
    server.script(
        "products",
        [Fault::Status(503), Fault::Status(500), Fault::Status(502)],
    );
    let run = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
    let g = gaps(&server.requests("products"));
    assert_eq!(g.len(), 3, "three retries");
    for (gap, want) in g.iter().zip([60u64, 120, 240]) {
        assert!(
            *gap >= Duration::from_millis(want),
            "{g:?}: expected >= {want}ms"
        );
    }
    assert!(g[2] >= g[0] * 3, "the delay grows: {g:?}");
}

#[tokio::test]
async fn jitter_never_exceeds_the_cap() {
    let retry = RetryConfig {
        base_delay_ms: 100,
        multiplier: 4.0,
        max_delay_ms: 120,
        max_attempts: 5,
        jitter: true,
        api_down_after: 10,
    };
    let (server, f, _dir) = setup(retry).await;
    server.script("users", std::iter::repeat_n(Fault::Status(503), 5));
    let run = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(
        run.task("extract_users").unwrap().status,
        TaskStatus::Failed
    );
    let g = gaps(&server.requests("users"));
    assert_eq!(g.len(), 4);
    for gap in &g {
        // Uncapped, the 2nd..4th delays would be 400, 1600, 6400 ms.
        assert!(*gap < Duration::from_millis(300), "{g:?}");
        assert!(*gap >= Duration::from_millis(50), "{g:?}");
    }
}

#[tokio::test]
async fn client_errors_are_not_retried_but_429_is_after_retry_after() {
    let (server, f, _dir) = setup(fast_retry(5)).await;
    server.script("users", [Fault::Status(404)]);
    server.script("carts", [Fault::TooMany(1)]);
    let run = f.runner.run_new(None, None).await.unwrap();
    let users = run.task("extract_users").unwrap();
    assert_eq!(users.status, TaskStatus::Failed);
    assert!(
        users.error.as_deref().unwrap().contains("HTTP 404"),
        "{users:?}"
    );
    assert!(users.error.as_deref().unwrap().contains("not retried"));
    assert_eq!(server.requests("users").len(), 1, "a 404 is never retried");

    assert!(run.succeeded("extract_carts"));
    let g = gaps(&server.requests("carts"));
    assert_eq!(g.len(), 1);
    assert!(
        g[0] >= Duration::from_millis(1000),
        "Retry-After honoured: {g:?}"
    );
}

#[tokio::test]
async fn broken_bodies_are_refetched_and_slow_ones_accepted() {
    let (server, f, _dir) = setup(fast_retry(5)).await;
    server.script("products", [Fault::Truncate, Fault::Malformed]);
    server.script("users", [Fault::Hang(Duration::from_millis(800))]);
    server.script("carts", [Fault::SlowBody(Duration::from_millis(40))]);
    let run = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
    assert_eq!(server.requests("products").len(), 3);
    assert_eq!(server.requests("users").len(), 2, "a timeout is retried");
    assert_eq!(
        server.requests("carts").len(),
        1,
        "slow but within the timeout"
    );
    assert_eq!(run.extracted["products"].http_attempts, 3);
    // What landed is the good body, exactly as served.
    let raw = f.store.list("raw/").await.unwrap();
    let products = raw.iter().find(|m| m.key.contains("/products/")).unwrap();
    let body = f.store.get(&products.key).await.unwrap();
    assert_eq!(&body[..], &SyntheticSource::new(42, 1).products()[..]);
}

#[tokio::test]
async fn invalid_records_are_quarantined_with_their_reason() {
    let (server, f, _dir) = setup(fast_retry(3)).await;
    server
        .state
        .invalid_records
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let run = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
    assert_eq!(run.report.staged["products"], 20);
    assert_eq!(run.report.quarantined["products"], 1);
    let q = f.store.list("quarantine/").await.unwrap();
    assert_eq!(q.len(), 1);
    let text = String::from_utf8(f.store.get(&q[0].key).await.unwrap().to_vec()).unwrap();
    assert!(text.contains("price"), "{text}");
}

#[tokio::test]
async fn a_huge_body_fails_clearly_without_retrying() {
    let server = FakeStoreServer::start(SyntheticSource::new(42, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &server.url(), fast_retry(5));
    c.batch.fakestore.max_body_bytes = 1000;
    let f = runner(c);
    let run = f
        .runner
        .run_new(Some(Task::ExtractProducts), None)
        .await
        .unwrap();
    let t = run.task("extract_products").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(
        t.error.as_deref().unwrap().contains("1000 byte limit"),
        "{t:?}"
    );
    assert_eq!(server.requests("products").len(), 1);
}

#[tokio::test]
async fn the_users_password_never_reaches_staging() {
    let (_server, f, _dir) = setup(fast_retry(3)).await;
    let run = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    for m in f.store.list("staging/").await.unwrap() {
        let text = String::from_utf8(f.store.get(&m.key).await.unwrap().to_vec()).unwrap();
        assert!(
            !text.contains("password") && !text.contains("pw-"),
            "{}",
            m.key
        );
    }
}

#[tokio::test]
async fn an_incremental_pull_asks_for_its_carts_window() {
    let (server, f, _dir) = setup(fast_retry(3)).await;
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let window = Some((day("2026-03-01"), day("2026-03-31")));
    let run = f.runner.run_new(None, window).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
    let log = server.state.log.lock().unwrap().clone();
    let carts: Vec<_> = log.iter().filter(|(e, _, _)| e == "carts").collect();
    assert_eq!(carts[0].1, "startdate=2026-03-01&enddate=2026-03-31");
    let raw = f.store.list("raw/fakestore/carts/").await.unwrap();
    assert!(
        raw[0].key.contains("window=2026-03-01_2026-03-31"),
        "the window is in the RAW key: {}",
        raw[0].key
    );
}

/// Repro 7: a catalogue price change used to reprice every past order line (the carts were
/// restaged with the new prices, logged as a partial write). An order keeps the prices it was
/// first staged with; the new prices reach the products.
#[tokio::test]
async fn a_price_change_never_reprices_past_orders() {
    use ecom_pipeline::warehouse::{metrics, Warehouse};
    let (server, f, _dir) = setup(fast_retry(3)).await;
    let first = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded, "{}", first.summary());
    let before = metrics(f.wh.as_ref()).await.unwrap();
    assert!(before.revenue_cents > 0);
    let carts: Vec<_> = f.store.list("staging/order").await.unwrap();

    server
        .state
        .reprice
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let second = f.runner.run_new(None, None).await.unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{}", second.summary());
    let after = metrics(f.wh.as_ref()).await.unwrap();
    assert_eq!(
        after.revenue_cents, before.revenue_cents,
        "past revenue moved"
    );
    assert_eq!(
        f.store.list("staging/order").await.unwrap(),
        carts,
        "the orders' STAGING objects are unchanged"
    );
    // The catalogue itself did change.
    let moved = f
        .wh
        .query("SELECT CAST(COUNT(*) AS BIGINT) FROM staging.products AS p JOIN staging.order_items AS i \
                ON i.product_id = p.product_id WHERE p.price_cents <> i.unit_price_cents")
        .await
        .unwrap();
    assert_ne!(moved[0][0].as_deref(), Some("0"));
}
