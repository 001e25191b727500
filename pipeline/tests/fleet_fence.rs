//! Fencing (issue "When one machine is not enough"): an instance that lost a shard's lease (it
//! paused, another took the shard at a newer lease counter) can never commit that shard again,
//! and the instance that took it carries on from the shard's committed checkpoint and state.
//! Two consumers in lease mode on one local log and one real PostgreSQL 15, written as a fleet
//! member writes it: by the PostgreSQL backend, and by the Redshift backend through the Data API
//! (`support::data_api`, run by the same PostgreSQL).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ecom_pipeline::config::{Config, StreamConfig};
use ecom_pipeline::store::ObjectStore;
use ecom_pipeline::stream::consumer::Processor;
use ecom_pipeline::stream::local::LocalLog;
use ecom_pipeline::stream::StreamLog;
use ecom_pipeline::warehouse::postgres::{PostgresWarehouse, Writer};
use ecom_pipeline::warehouse::{schema, LoadOutcome, StagedFile, TextRows, Warehouse};
use futures::future::BoxFuture;

mod support {
    pub mod data_api;
    pub mod pg;
}

fn event(i: u64) -> (String, Bytes) {
    let t =
        chrono::Utc::now() - chrono::Duration::minutes(30) + chrono::Duration::seconds(i as i64);
    let line = serde_json::json!({
        "event_id": format!("f{i:05}"),
        "user_id": 1 + i % 9,
        "product_id": 1 + i % 5,
        "event_type": "product_view",
        "event_time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "session_id": format!("s{}", i % 3),
    });
    ("k".to_string(), Bytes::from(line.to_string()))
}

/// `inner`, whose first `load_group` runs `hook` first: another instance acting while this
/// one's load is on its way.
struct TakenMidLoad<'a> {
    inner: &'a dyn Warehouse,
    hook: std::sync::Mutex<Option<futures::future::BoxFuture<'a, ()>>>,
}

impl Warehouse for TakenMidLoad<'_> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn dialect(&self) -> schema::Dialect {
        self.inner.dialect()
    }
    fn load<'b>(
        &'b self,
        file: &'b StagedFile,
    ) -> BoxFuture<'b, ecom_pipeline::Result<LoadOutcome>> {
        self.inner.load(file)
    }
    fn files_per_load(&self) -> usize {
        self.inner.files_per_load()
    }
    fn load_group(
        &self,
        files: Vec<StagedFile>,
    ) -> BoxFuture<'_, ecom_pipeline::Result<Vec<LoadOutcome>>> {
        Box::pin(async move {
            let hook = self.hook.lock().unwrap().take();
            if let Some(h) = hook {
                h.await;
            }
            self.inner.load_group(files).await
        })
    }
    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, ecom_pipeline::Result<()>> {
        self.inner.execute_tx(statements)
    }
    fn query<'b>(&'b self, sql: &'b str) -> BoxFuture<'b, ecom_pipeline::Result<TextRows>> {
        self.inner.query(sql)
    }
}

async fn count(wh: &dyn Warehouse, sql: &str) -> i64 {
    wh.query(sql).await.unwrap()[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_instance_cannot_commit_and_the_new_owner_goes_on() {
    let Some(dsn) = support::pg::fresh_dsn("fleet_fence").await else {
        return;
    };
    let mut cfg = Config::default();
    cfg.warehouse.postgres.connection = dsn;
    let connect = || async {
        let wh = PostgresWarehouse::connect(&cfg.warehouse.postgres, Writer::Fleet)
            .await
            .unwrap();
        wh.tx(schema::ddl(schema::Dialect::Redshift)).await.unwrap();
        wh
    };
    fenced_out(&connect().await, &connect().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redshift_a_fenced_out_instance_cannot_commit_and_the_new_owner_goes_on() {
    let Some(dsn) = support::pg::fresh_dsn_with("fleet_fence_rs", false).await else {
        return;
    };
    let api = support::data_api::DataApi::start(&dsn).await;
    fenced_out(&api.fleet_member("a").await, &api.fleet_member("b").await).await;
    // Every fleet transaction began with the lock (the failures are the fence's refusals).
    let failures = api.failures();
    assert!(
        failures.iter().all(|f| f.contains("lease lost")),
        "{failures:?}"
    );
}

/// A commits a shard under its lease, B takes the shard, A's next commit is refused and B goes
/// on from A's checkpoint and dedup window.
async fn fenced_out(wh_a: &dyn Warehouse, wh_b: &dyn Warehouse) {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(ecom_pipeline::store::LocalStore::open(tmp.path().join("store")).unwrap());
    let log = LocalLog::open(
        tmp.path().join("log"),
        1,
        1 << 20,
        std::time::Duration::from_secs(3600),
        false,
    )
    .unwrap();
    let shard = log.shards()[0].clone();
    log.put((0..30).map(event).collect()).await.unwrap();

    let stream = StreamConfig::default();
    let mut a = Processor::new(&stream);
    a.lease_mode("a");
    let mut b = Processor::new(&stream);
    b.lease_mode("b");

    // A takes the shard at counter 1 and commits the first 30 records.
    let owned = |token: u64| BTreeMap::from([(shard.clone(), token)]);
    assert!(a
        .own(store.as_ref(), wh_a, &owned(1))
        .await
        .unwrap()
        .is_empty());
    let c = a.drain(&log, store.as_ref(), Some(wh_a), 10).await.unwrap();
    assert_eq!(c.staged, 30);

    // More records, and their resends. A drains: it finds the shard still its own and stages,
    // and B takes the shard (A paused past its lease) while A's load is on its way: the fence
    // refuses A's commit under its old token.
    log.put((30..60).chain(20..40).map(event).collect())
        .await
        .unwrap();
    let b_takes = async {
        assert!(b
            .own(store.as_ref(), wh_b, &owned(5))
            .await
            .unwrap()
            .is_empty());
    };
    let hooked = TakenMidLoad {
        inner: wh_a,
        hook: std::sync::Mutex::new(Some(Box::pin(b_takes))),
    };
    let refused = a.drain(&log, store.as_ref(), Some(&hooked), 10).await;
    assert!(
        hooked.hook.lock().unwrap().is_none(),
        "B never took the shard"
    );
    drop(hooked);
    let err = refused
        .expect_err("a fenced-out instance committed")
        .to_string();
    assert!(err.contains("lease lost"), "{err}");
    assert_eq!(
        count(wh_a, "SELECT COUNT(*) FROM staging.events").await,
        30,
        "the refused load left rows"
    );
    // A take under an older token than the registered one is refused too.
    assert_eq!(
        a.own(store.as_ref(), wh_a, &owned(3)).await.unwrap(),
        vec![(shard.clone(), 5)],
        "refused, with the newer token registered"
    );

    // The same token to another owner (a lease table recreated, its counters started again)
    // is refused too, not an error every drain.
    let mut c = Processor::new(&stream);
    c.lease_mode("c");
    assert_eq!(
        c.own(store.as_ref(), wh_a, &owned(5)).await.unwrap(),
        vec![(shard.clone(), 5)]
    );

    // B goes on from A's checkpoint with A's dedup window: the resends of the first 30 are
    // duplicates, not staged again.
    let c = b.drain(&log, store.as_ref(), Some(wh_b), 10).await.unwrap();
    assert_eq!((c.records, c.staged, c.duplicates), (50, 30, 20), "{c:?}");
    assert_eq!(count(wh_b, "SELECT COUNT(*) FROM staging.events").await, 60);
    assert_eq!(
        count(
            wh_b,
            "SELECT CAST(SUM(records) AS BIGINT) FROM ops.segments"
        )
        .await,
        80,
        "every record committed exactly once"
    );
    // A, unaware it lost the shard, writes its watermark: the new owner's row stays.
    let marks = "SELECT CAST(watermark AS VARCHAR(40)) FROM ops.watermarks";
    let before = wh_b.query(marks).await.unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    let stale = ecom_model::stream::WatermarkStatus {
        shards: vec![(shard.clone(), 0, false)],
        ..Default::default()
    };
    let sql = ecom_pipeline::stream::consumer::watermarks_sql(&stale, Some(("a", &owned(1))));
    wh_a.execute_tx(sql).await.unwrap();
    assert_eq!(wh_b.query(marks).await.unwrap(), before);

    // The takes, in order, with their tokens.
    let history = wh_b
        .query(
            "SELECT owner, CAST(token AS BIGINT) FROM ops.lease_history ORDER BY taken_at, token",
        )
        .await
        .unwrap();
    let history: Vec<(String, String)> = history
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        history,
        vec![("a".to_string(), "1".to_string()), ("b".into(), "5".into())]
    );

    // B pauses in turn, and D takes the shard at counter 7. B's next drain reads who owns the
    // shard before anything else: it drops it and writes nothing (its cut from D's checkpoint
    // would be D's next, judged by B's older state and written over D's committed objects).
    let mut d = Processor::new(&stream);
    d.lease_mode("d");
    assert!(d
        .own(store.as_ref(), wh_b, &owned(7))
        .await
        .unwrap()
        .is_empty());
    log.put((60..70).map(event).collect()).await.unwrap();
    let objects = store.list("staging/").await.unwrap().len();
    let c = b.drain(&log, store.as_ref(), Some(wh_b), 10).await.unwrap();
    assert_eq!(c.records, 0, "{c:?}");
    assert_eq!(store.list("staging/").await.unwrap().len(), objects);
    let c = d.drain(&log, store.as_ref(), Some(wh_b), 10).await.unwrap();
    assert_eq!((c.records, c.staged), (10, 10), "{c:?}");

    // A's attempt lands late, cut another way than B's segments (B never saw it): its records
    // are behind the checkpoint, judged by B's commits. `verify` passes it by, and does not
    // count its ids as rows the warehouse should hold.
    ecom_pipeline::warehouse::refresh_models(wh_b, store.as_ref(), 1)
        .await
        .unwrap();
    let clean = ecom_pipeline::warehouse::verify::verify(store.as_ref(), wh_b)
        .await
        .unwrap();
    assert!(clean.ok(), "{:?}", clean.differences);
    let (first, last) = (1, 2);
    let raw = ecom_pipeline::zones::raw_segment_key(&shard, first, last);
    let staged = ecom_pipeline::zones::staging_key_for(&raw, "events").unwrap();
    let (_, line) = event(9_999);
    let mut body: serde_json::Value = serde_json::from_slice(&line).unwrap();
    body["ingestion_time"] = body["event_time"].clone();
    store
        .put(&staged, Bytes::from(body.to_string() + "\n"))
        .await
        .unwrap();
    let report = ecom_pipeline::warehouse::verify::verify(store.as_ref(), wh_b)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.differences);
}

/// Fleet members share the writer lock a lone writer (leases off) holds alone: any number of
/// the first write together, never beside the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_without_leases_never_writes_beside_a_fleet() {
    let Some(dsn) = support::pg::fresh_dsn("fleet_lock").await else {
        return;
    };
    let mut cfg = Config::default();
    cfg.warehouse.postgres.connection = dsn;
    let pg = &cfg.warehouse.postgres;
    let a = PostgresWarehouse::connect(pg, Writer::Fleet).await.unwrap();
    let b = PostgresWarehouse::connect(pg, Writer::Fleet).await.unwrap();
    let alone = PostgresWarehouse::connect(pg, Writer::Alone).await;
    let err = alone.expect_err("a lone writer beside a fleet").to_string();
    assert!(err.contains("leases"), "{err}");
    drop((a, b));
    // The fleet gone (its sessions closed), the lone writer gets in, and a fleet is refused.
    let mut alone = None;
    for _ in 0..50 {
        match PostgresWarehouse::connect(pg, Writer::Alone).await {
            Ok(w) => {
                alone = Some(w);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(alone.is_some(), "the lone writer never got the lock");
    let err = PostgresWarehouse::connect(pg, Writer::Fleet)
        .await
        .expect_err("a fleet member beside a lone writer")
        .to_string();
    assert!(err.contains("without stream leases"), "{err}");
}
