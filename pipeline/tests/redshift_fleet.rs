//! A fleet on Redshift (issue "When one machine is not enough"): the Redshift backend through
//! the Data API (`support::data_api`, run by the test PostgreSQL in SERIALIZABLE, as Redshift
//! runs transactions). Two members load their shards and publish CURATED at the same time: every
//! transaction commits (the fleet's `LOCK` comes first, so none fails on isolation), each
//! record once. The CURATED hold is one member's at a time, an expired one is taken over, and
//! the member that lost it can no longer commit under it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use ecom_pipeline::config::StreamConfig;
use ecom_pipeline::store::{sha256_hex, ObjectStore};
use ecom_pipeline::stream::consumer::Processor;
use ecom_pipeline::stream::local::LocalLog;
use ecom_pipeline::stream::StreamLog;
use ecom_pipeline::warehouse::{self, curated_files, Warehouse};
use ecom_pipeline::zones::curated_key;

mod support {
    pub mod data_api;
    pub mod pg;
}

use support::data_api::DataApi;

fn event(i: u64) -> (String, Bytes) {
    let t = chrono::Utc::now() - chrono::Duration::hours(30) + chrono::Duration::seconds(i as i64);
    let kind = ["product_view", "add_to_cart", "checkout", "purchase"][(i % 4) as usize];
    let line = serde_json::json!({
        "event_id": format!("r{i:05}"),
        "user_id": 1 + i % 9,
        "product_id": 1 + i % 5,
        "event_type": kind,
        "event_time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "session_id": format!("s{}", i % 11),
    });
    (format!("s{}", i % 11), Bytes::from(line.to_string()))
}

/// Every day of every daily model has its file, and the file holds the model's rows now (not
/// the rows of some earlier refresh).
async fn files_match_models(wh: &dyn Warehouse, store: &dyn ObjectStore) {
    let mut seen = 0;
    for model in curated_files::daily_models() {
        let cols: Vec<&str> = model.columns.iter().map(|c| c.0).collect();
        let cols = cols.join(", ");
        let day_col = model.day.unwrap_or("day");
        let days = wh
            .query(&format!(
                "SELECT DISTINCT CAST({day_col} AS VARCHAR) FROM {}",
                model.table()
            ))
            .await
            .unwrap();
        for d in days {
            let day = d[0].clone().unwrap();
            let rows = wh
                .query(&format!(
                    "SELECT {cols} FROM {} WHERE {day_col} = CAST('{day}' AS DATE) ORDER BY {cols}",
                    model.table()
                ))
                .await
                .unwrap();
            let body = curated_files::encode(&model, &rows).unwrap();
            let key = curated_key(model.name, day.parse::<NaiveDate>().unwrap());
            let meta = store.head(&key).await.unwrap().expect(&key);
            assert_eq!(
                meta.sha256,
                sha256_hex(&body),
                "{key} is not the model's rows"
            );
            seen += 1;
        }
    }
    assert!(seen > 0);
}

async fn count(wh: &dyn Warehouse, sql: &str) -> i64 {
    wh.query(sql).await.unwrap()[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_load_and_publish_at_once_one_transaction_at_a_time() {
    let Some(dsn) = support::pg::fresh_dsn_with("rs_fleet_loads", false).await else {
        return;
    };
    let api = DataApi::start(&dsn).await;
    let (wh_a, wh_b) = (api.fleet_member("a").await, api.fleet_member("b").await);
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(ecom_pipeline::store::LocalStore::open(tmp.path().join("store")).unwrap());
    let log = LocalLog::open(
        tmp.path().join("log"),
        2,
        1 << 20,
        std::time::Duration::from_secs(3600),
        false,
    )
    .unwrap();
    let shards = log.shards();
    log.put((0..600).map(event).collect()).await.unwrap();

    let stream = StreamConfig::default();
    let (mut a, mut b) = (Processor::new(&stream), Processor::new(&stream));
    a.lease_mode("a");
    b.lease_mode("b");
    let owns = |shard: &String| BTreeMap::from([(shard.clone(), 1)]);
    assert!(a
        .own(store.as_ref(), &wh_a, &owns(&shards[0]))
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .own(store.as_ref(), &wh_b, &owns(&shards[1]))
        .await
        .unwrap()
        .is_empty());
    // Both drain their shard at once, in segments of 20: many loads each, interleaved.
    let (ca, cb) = tokio::join!(
        a.drain(&log, store.as_ref(), Some(&wh_a), 20),
        b.drain(&log, store.as_ref(), Some(&wh_b), 20)
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    assert!(ca.staged > 100 && cb.staged > 100, "{ca:?} {cb:?}");
    assert_eq!(ca.staged + cb.staged, 600);
    assert_eq!(
        count(&wh_a, "SELECT COUNT(*) FROM staging.events").await,
        600
    );
    assert_eq!(
        count(
            &wh_b,
            "SELECT CAST(SUM(records) AS BIGINT) FROM ops.segments"
        )
        .await,
        600,
        "every record committed once"
    );

    // Both refresh the models and publish CURATED at once; then one more refresh (a day that
    // turned pending while the other held the publication waits for it).
    let (ra, rb) = tokio::join!(
        warehouse::refresh_models(&wh_a, store.as_ref(), 3),
        warehouse::refresh_models(&wh_b, store.as_ref(), 3)
    );
    ra.unwrap();
    rb.unwrap();
    warehouse::refresh_models(&wh_a, store.as_ref(), 3)
        .await
        .unwrap();
    assert_eq!(
        count(&wh_a, "SELECT COUNT(*) FROM ops.curated_pending").await,
        0
    );
    let files = wh_a
        .query("SELECT object_key, sha256 FROM ops.ledger WHERE zone = 'curated'")
        .await
        .unwrap();
    assert!(!files.is_empty());
    for f in &files {
        let key = f[0].as_deref().unwrap();
        let meta = store.head(key).await.unwrap().expect(key);
        assert_eq!(Some(meta.sha256.as_str()), f[1].as_deref(), "{key}");
    }
    files_match_models(&wh_b, store.as_ref()).await;
    // No transaction failed: not on isolation, not on a lock.
    assert_eq!(api.failures(), Vec::<String>::new());
    // And the loads were transactions that began with the lock, their fills in calls before.
    assert!(api.calls().iter().any(|(_, _, session)| session.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curated_hold_is_one_member_s_and_a_lapsed_holder_cannot_commit() {
    let Some(dsn) = support::pg::fresh_dsn_with("rs_fleet_hold", false).await else {
        return;
    };
    let api = DataApi::start(&dsn).await;
    let (a, b) = (api.fleet_member("a").await, api.fleet_member("b").await);
    let admin = api.warehouse().await;
    let write = || {
        vec![format!(
            "INSERT INTO ops.pruned (object_key, zone, pruned_at) VALUES ('k', 'curated', '{}')",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
        )]
    };
    assert!(a.hold_shared(true).await.unwrap());
    assert!(!b.hold_shared(true).await.unwrap(), "two members held it");
    a.keep_shared().await.unwrap();
    a.execute_tx(write()).await.unwrap();
    // A pauses past its hold (its expiry moved into the past, as time would move it).
    admin
        .execute_tx(vec![
            "UPDATE ops.fleet_locks SET expires_at = '2000-01-01 00:00:00'".into(),
        ])
        .await
        .unwrap();
    assert!(
        b.hold_shared(true).await.unwrap(),
        "an expired hold is taken over"
    );
    let err = a.execute_tx(write()).await.unwrap_err().to_string();
    assert!(err.contains("hold lost"), "{err}");
    assert_eq!(count(&admin, "SELECT COUNT(*) FROM ops.pruned").await, 1);
    // A lets go of what it no longer holds: B's hold stays B's.
    a.hold_shared(false).await.unwrap();
    assert!(
        !a.hold_shared(true).await.unwrap(),
        "B's hold was let go by A"
    );
    b.execute_tx(write()).await.unwrap();
    b.hold_shared(false).await.unwrap();
    assert!(a.hold_shared(true).await.unwrap());
    a.hold_shared(false).await.unwrap();
}

/// A member's model refresh never commits while another member publishes (holds the hold): it
/// would mark a day pending that the publication then clears, its file written from the
/// older rows. The refresh waits for the next cycle instead, its days still dirty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_refresh_commits_while_another_member_publishes() {
    let Some(dsn) = support::pg::fresh_dsn_with("rs_fleet_refresh", false).await else {
        return;
    };
    let api = DataApi::start(&dsn).await;
    let (a, b) = (api.fleet_member("a").await, api.fleet_member("b").await);
    let tmp = tempfile::tempdir().unwrap();
    let store = ecom_pipeline::store::LocalStore::open(tmp.path()).unwrap();
    // A STAGING body: the typed events, with their ingestion time.
    let body: String = (0..40)
        .map(|i| {
            let mut v: serde_json::Value = serde_json::from_slice(&event(i).1).unwrap();
            v["ingestion_time"] = v["event_time"].clone();
            v.to_string() + "\n"
        })
        .collect();
    let staged = ecom_pipeline::warehouse::StagedFile {
        key: "staging/events/dt=x/batch.ndjson".into(),
        entity: "events".into(),
        sha256: sha256_hex(body.as_bytes()),
        body: Bytes::from(body.clone()),
        source: "test".into(),
        checkpoint: None,
        columns: None,
    };
    b.load(&staged).await.unwrap();
    let dirty = "SELECT COUNT(*) FROM ops.dirty_partitions";
    assert!(count(&b, dirty).await > 0);
    // A publishes (holds the hold); B's refresh in its cycle goes by.
    assert!(a.hold_shared(true).await.unwrap());
    let r = warehouse::refresh_models(&b, &store, 1).await.unwrap();
    assert_eq!(r.recomputed_days, 0, "{r:?}");
    assert!(
        count(&b, dirty).await > 0,
        "the refresh committed under A's hold"
    );
    // A is done: B's next refresh recomputes the days and publishes them.
    a.hold_shared(false).await.unwrap();
    let r = warehouse::refresh_models(&b, &store, 1).await.unwrap();
    assert!(r.recomputed_days > 0 && r.curated_files > 0, "{r:?}");
    assert_eq!(count(&b, dirty).await, 0);
    files_match_models(&b, &store).await;
}
