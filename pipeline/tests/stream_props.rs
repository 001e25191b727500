//! The stream path loses nothing: for any interleaving of events with duplicates, disorder,
//! late and malformed records, every record ends in STAGING, the late buffer, quarantine or the
//! duplicate count; an id whose copies arrive within the dedup window reaches STAGING once; and
//! once loaded, every valid event_id is in the warehouse exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ecom_pipeline::config::StreamConfig;
use ecom_pipeline::store::{LocalStore, ObjectStore};
use ecom_pipeline::stream::consumer::Processor;
use ecom_pipeline::stream::local::LocalLog;
use ecom_pipeline::stream::StreamLog;
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::{table_rows, Warehouse};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Input {
    /// (id, seconds after the base time, session)
    Event(u16, u32, u8),
    Malformed(u8),
}

fn record(i: &Input) -> (String, Bytes) {
    match i {
        Input::Event(id, secs, session) => {
            let t = chrono::DateTime::<chrono::Utc>::from_timestamp(
                1_790_000_000 + i64::from(*secs),
                0,
            )
            .unwrap();
            let line = format!(
                r#"{{"event_id":"e{id}","user_id":1,"product_id":2,"event_type":"product_view","event_time":"{}","session_id":"s{session}"}}"#,
                t.format("%Y-%m-%dT%H:%M:%SZ")
            );
            (format!("s{session}"), Bytes::from(line))
        }
        Input::Malformed(k) => (
            format!("m{k}"),
            Bytes::from(format!("{{\"event_id\": {k},")),
        ),
    }
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    proptest::collection::vec(
        prop_oneof![
            // An id's copies share its session, so its shard: dedup is per shard.
            9 => (0u16..200, 0u32..20_000).prop_map(|(a, b)| Input::Event(a, b, (a % 6) as u8)),
            1 => any::<u8>().prop_map(Input::Malformed),
        ],
        1..400,
    )
}

fn lines(store: &LocalStore, prefix: &str, rt: &tokio::runtime::Runtime) -> Vec<serde_json::Value> {
    rt.block_on(async {
        let mut out = Vec::new();
        for m in store.list(prefix).await.unwrap() {
            let body = store.get(&m.key).await.unwrap();
            for l in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(l).unwrap());
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn nothing_is_lost_and_each_id_is_staged_once(
        input in inputs(),
        segment in 1usize..60,
        shards in 1u32..4,
        lateness_secs in 0u64..3000,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("store")).unwrap();
        let log = LocalLog::open(dir.path().join("log"), shards, 1 << 20, Duration::from_secs(3600), false).unwrap();
        let wh = Arc::new(DuckWarehouse::in_memory().unwrap());
        let mut cfg = StreamConfig::default();
        cfg.watermark.out_of_orderness_ms = 1_000;
        cfg.watermark.allowed_lateness_secs = lateness_secs;
        // The window spans every event time here, so every copy is "within the window".
        cfg.dedup.window_secs = 30_000;
        let mut p = Processor::new(&cfg);
        let totals = rt.block_on(async {
            log.put(input.iter().map(record).collect()).await.unwrap();
            p.drain(&log, &store, Some(wh.as_ref() as &dyn Warehouse), segment).await.unwrap()
        });

        // Every record is accounted for.
        prop_assert_eq!(totals.records as usize, input.len());
        prop_assert_eq!(
            totals.staged + totals.duplicates + totals.late + totals.quarantined,
            totals.records
        );
        let malformed = input.iter().filter(|i| matches!(i, Input::Malformed(_))).count();
        prop_assert_eq!(totals.quarantined as usize, malformed);
        let quarantined = lines(&store, "quarantine/", &rt);
        prop_assert_eq!(quarantined.len(), malformed);
        prop_assert!(quarantined.iter().all(|q| q["reason"].as_str().is_some_and(|r| !r.is_empty())));

        // Each distinct id is staged or buffered as late exactly once (the window covers all).
        let staged = lines(&store, "staging/events/", &rt);
        let late = lines(&store, "late/events/", &rt);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for e in staged.iter().chain(late.iter()) {
            *seen.entry(e["event_id"].as_str().unwrap().to_string()).or_default() += 1;
        }
        let ids: HashSet<String> = input
            .iter()
            .filter_map(|i| match i { Input::Event(id, _, _) => Some(format!("e{id}")), _ => None })
            .collect();
        prop_assert_eq!(seen.len(), ids.len());
        prop_assert!(seen.values().all(|n| *n == 1), "an id staged twice: {:?}", seen);

        // In the warehouse once; the checkpoints cover the whole log.
        let rows = rt.block_on(table_rows(wh.as_ref(), "staging.events")).unwrap();
        prop_assert_eq!(rows as usize, staged.len());
        let cps = rt.block_on(ecom_pipeline::stream::consumer::checkpoints(wh.as_ref())).unwrap();
        let total: u64 = rt.block_on(async {
            let mut t = 0;
            for s in log.shards() { t += log.latest_seq(&s).await.unwrap().unwrap_or(0); }
            t
        });
        prop_assert_eq!(cps.values().sum::<u64>(), total);
    }
}

/// A store, a log of `shards` and a DuckDB file, all in `dir`.
async fn on_disk(dir: &tempfile::TempDir, shards: u32) -> (LocalStore, LocalLog, DuckWarehouse) {
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let log = LocalLog::open(
        dir.path().join("log"),
        shards,
        1 << 20,
        Duration::from_secs(3600),
        false,
    )
    .unwrap();
    let wh = DuckWarehouse::open(&dir.path().join("wh.duckdb"), false, 1)
        .await
        .unwrap();
    (store, log, wh)
}

#[tokio::test]
async fn a_restart_resumes_after_the_committed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log, wh) = on_disk(&dir, 2).await;
    let cfg = StreamConfig::default();
    let batch = |from: u16, to: u16| -> Vec<(String, Bytes)> {
        (from..to)
            .map(|i| record(&Input::Event(i, u32::from(i), (i % 5) as u8)))
            .collect()
    };
    log.put(batch(0, 100)).await.unwrap();
    let first = Processor::new(&cfg)
        .drain(&log, &store, Some(&wh), 30)
        .await
        .unwrap();
    assert_eq!(first.staged, 100);
    let raw_before = store.list("raw/").await.unwrap();

    // A new process (fresh state) reads only what came after the checkpoint.
    log.put(batch(100, 150)).await.unwrap();
    let second = Processor::new(&cfg)
        .drain(&log, &store, Some(&wh), 30)
        .await
        .unwrap();
    assert_eq!(second.records, 50);
    assert_eq!(table_rows(&wh, "staging.events").await.unwrap(), 150);
    let raw_after = store.list("raw/").await.unwrap();
    assert!(
        raw_before.iter().all(|m| raw_after.contains(m)),
        "earlier RAW segments untouched"
    );
}

/// Resends the dedup window no longer covers reach the load: DuckDB's loader inserts a group's
/// events as new first, the key refuses the group, and it runs again with the conflict clause.
/// Every id ends up in the warehouse once, as its first copy, and the checkpoints cover the log.
#[tokio::test]
async fn resends_past_the_dedup_window_are_loaded_once_as_their_first_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log, wh) = on_disk(&dir, 1).await;
    let mut cfg = StreamConfig::default();
    // A window of ten seconds of event time: the copies below, hours later, pass it.
    cfg.dedup.window_secs = 10;
    // Session 1 first, then every id again in session 2, three hours later.
    let copies: Vec<(String, Bytes)> = (0..50u16)
        .map(|i| record(&Input::Event(i, u32::from(i), 1)))
        .chain((0..50u16).map(|i| record(&Input::Event(i, 10_800 + u32::from(i), 2))))
        .collect();
    log.put(copies).await.unwrap();
    let totals = Processor::new(&cfg)
        .drain(&log, &store, Some(&wh), 10)
        .await
        .unwrap();
    assert_eq!(totals.records, 100);
    assert!(
        totals.staged > 50,
        "the window let resends through: {totals:?}"
    );
    assert_eq!(table_rows(&wh, "staging.events").await.unwrap(), 50);
    let sessions = wh
        .query("SELECT DISTINCT session_id FROM staging.events")
        .await
        .unwrap();
    assert_eq!(
        sessions,
        vec![vec![Some("s1".to_string())]],
        "first copies kept"
    );
    let cps = ecom_pipeline::stream::consumer::checkpoints(&wh)
        .await
        .unwrap();
    assert_eq!(cps.values().sum::<u64>(), 100);
}
