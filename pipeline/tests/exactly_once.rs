//! Not one event lost, doubled or replaced: the stream state commits with the data, survives
//! the process, and `verify` counts every record. Each repro of the issue is a test here; then a
//! property test over process boundaries and failures, and the transient-fault soak
//! (`ECOMOPS_SOAK_FAULTS`, default 200; `bash scripts/soak.sh N`).

mod support {
    pub mod faulty;
}

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use ecom_pipeline::config::Config;
use ecom_pipeline::generator::Generator;
use ecom_pipeline::store::{sha256_hex, LocalStore, ObjectStore};
use ecom_pipeline::stream::runner::{open_log, StreamRunner};
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::verify::{verify, VerifyReport};
use ecom_pipeline::warehouse::{self, StagedFile, Warehouse};
use proptest::prelude::*;
use support::faulty::{Faults, FaultyStore, FaultyWarehouse};

/// One data dir: log, store and warehouse, with fault dials. A "process" is a fresh
/// `StreamRunner` (nothing in memory) over the same log, store and warehouse.
struct Rig {
    _dir: tempfile::TempDir,
    config: Config,
    faults: Arc<Faults>,
    store: Arc<FaultyStore>,
    duck: Arc<dyn Warehouse>,
    wh: Arc<FaultyWarehouse>,
}

impl Rig {
    async fn new(shards: u32, segment_records: u32) -> Rig {
        Rig::with(shards, segment_records, |_| {}).await
    }

    async fn with(shards: u32, segment_records: u32, tweak: impl FnOnce(&mut Config)) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.stream.shards = shards;
        config.stream.segment_records = segment_records;
        config.stream.generator.enabled = false;
        tweak(&mut config);
        let faults = Faults::new(7);
        let store = Arc::new(FaultyStore {
            inner: LocalStore::open(dir.path().join("store")).unwrap(),
            faults: faults.clone(),
        });
        let duck: Arc<dyn Warehouse> = Arc::new(
            DuckWarehouse::open(&dir.path().join("warehouse.duckdb"), false, 1)
                .await
                .unwrap(),
        );
        let wh = Arc::new(FaultyWarehouse {
            inner: duck.clone(),
            faults: faults.clone(),
        });
        Rig {
            _dir: dir,
            config,
            faults,
            store,
            duck,
            wh,
        }
    }

    async fn process(&self) -> StreamRunner {
        let log = open_log(&self.config).await.unwrap();
        StreamRunner::new(&self.config, log, false)
    }

    async fn ingest(
        &self,
        p: &mut StreamRunner,
        lines: &[String],
    ) -> ecom_pipeline::Result<ecom_model::report::IngestReport> {
        let body = Bytes::from(lines.join("\n") + "\n");
        p.ingest_file(self.store.as_ref(), Some(self.wh.as_ref()), body)
            .await
    }

    async fn cycle(&self, p: &mut StreamRunner) -> ecom_pipeline::Result<String> {
        p.cycle(self.store.as_ref(), Some(self.wh.as_ref()), 1)
            .await
    }

    async fn count(&self, sql: &str) -> i64 {
        let rows = self.duck.query(sql).await.unwrap();
        rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
    }

    async fn verify(&self) -> VerifyReport {
        verify(self.store.as_ref(), self.duck.as_ref())
            .await
            .unwrap()
    }

    /// (records, staged, duplicates, late, quarantined) over the committed segments.
    async fn totals(&self) -> [i64; 5] {
        let rows = self
            .duck
            .query(
                "SELECT CAST(COALESCE(SUM(records), 0) AS BIGINT), CAST(COALESCE(SUM(staged), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(duplicates), 0) AS BIGINT), CAST(COALESCE(SUM(late), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(quarantined), 0) AS BIGINT) FROM ops.segments",
            )
            .await
            .unwrap();
        let n = |i: usize| rows[0][i].as_deref().unwrap_or("0").parse().unwrap();
        [n(0), n(1), n(2), n(3), n(4)]
    }

    /// Lines of every object under `prefix`.
    async fn lines(&self, prefix: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for m in self.store.list(prefix).await.unwrap() {
            let body = self.store.get(&m.key).await.unwrap();
            for l in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(l).unwrap());
            }
        }
        out
    }

    /// What the stream made of its input: ids staged, ids buffered late, quarantined records
    /// (distinct, and how many), and duplicates counted.
    async fn sets(&self) -> Sets {
        let ids = |v: Vec<serde_json::Value>| -> BTreeSet<String> {
            v.iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string())
                .collect()
        };
        let quarantined = self.lines("quarantine/").await;
        Sets {
            staged: ids(self.lines("staging/events/shard=").await),
            late: ids(self.lines("late/events/").await),
            quarantined_count: quarantined.len(),
            quarantined: quarantined
                .iter()
                .map(|q| q["record"].to_string())
                .collect(),
            duplicates: self.totals().await[2],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sets {
    staged: BTreeSet<String>,
    late: BTreeSet<String>,
    quarantined: BTreeSet<String>,
    quarantined_count: usize,
    duplicates: i64,
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn ev(id: &str, t: DateTime<Utc>) -> String {
    format!(
        r#"{{"event_id":"{id}","user_id":1,"product_id":2,"event_type":"product_view","event_time":"{}","session_id":"s-{id}"}}"#,
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// `n` events `<prefix>0..`, a second apart from `start` on.
fn run(prefix: &str, n: i64, start: DateTime<Utc>) -> Vec<String> {
    (0..n)
        .map(|i| ev(&format!("{prefix}{i}"), start + secs(i)))
        .collect()
}

fn assert_clean(r: &VerifyReport) {
    assert!(r.ok(), "verify: {:#?}", r.differences);
}

/// Repro 1: a STAGING write that fails once (a refused directory, as `chattr +i` gives) used to
/// leave the dedup window advanced: the retry counted all 100 records as duplicates.
#[tokio::test]
async fn a_staging_write_that_fails_once_loses_nothing() {
    let rig = Rig::new(1, 100).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let a = run("a", 100, now - secs(600));
    let b = run("b", 100, now - secs(300));
    rig.ingest(&mut p, &a).await.unwrap();

    rig.faults.refuse(Some("staging/events/shard=shard-0000"));
    let err = rig.ingest(&mut p, &b).await.unwrap_err().to_string();
    assert!(err.contains("Operation not permitted"), "{err}");
    rig.faults.refuse(None);

    rig.cycle(&mut p).await.unwrap();
    assert_eq!(rig.count("SELECT COUNT(*) FROM staging.events").await, 200);
    assert_eq!(rig.totals().await, [200, 200, 0, 0, 0]);
    assert_clean(&rig.verify().await);
}

/// Repro 1, verify's side: the state the old code left (the segment's events counted as
/// duplicates, its STAGING object empty) makes verify fail, naming the segment.
#[tokio::test]
async fn verify_names_a_segment_whose_events_were_lost() {
    let rig = Rig::new(1, 100).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let a = run("a", 100, now - secs(600));
    let b = run("b", 100, now - secs(300));
    rig.ingest(&mut p, &a).await.unwrap();
    rig.ingest(&mut p, &b).await.unwrap();
    assert_clean(&rig.verify().await);

    let raw = rig.store.list("raw/stream/events/").await.unwrap()[1]
        .key
        .clone();
    let staging = raw.replacen("raw/stream/", "staging/", 1);
    rig.store.inner.put(&staging, Bytes::new()).await.unwrap();
    let key = format!("'{staging}'");
    rig.duck
        .execute_tx(vec![
            format!("DELETE FROM staging.events WHERE source_key = {key}"),
            format!("DELETE FROM ops.ledger WHERE object_key = {key}"),
            format!("UPDATE ops.segments SET staged = 0, duplicates = 100 WHERE raw_key = '{raw}'"),
        ])
        .await
        .unwrap();
    let r = rig.verify().await;
    let lost = r
        .differences
        .iter()
        .find(|d| d.check == "every event received is placed")
        .unwrap_or_else(|| panic!("no loss reported: {:#?}", r.differences));
    assert!(lost.detail.contains(&raw), "{}", lost.detail);
    assert!(lost.detail.contains("100 record(s)"), "{}", lost.detail);
}

/// Repro 3: dedup window and watermarks survive the process (cron runs `--once`).
#[tokio::test]
async fn stream_state_survives_the_process() {
    let rig = Rig::new(1, 100).await;
    let now = Utc::now();
    let mut first = rig.process().await;
    rig.ingest(
        &mut first,
        &[ev("e1", now - secs(60)), ev("e2", now - secs(30))],
    )
    .await
    .unwrap();
    drop(first);

    // Another process: status shows the committed state before it drains anything; then a
    // resend of e1, and an event three hours behind the watermark.
    let mut second = rig.process().await;
    let st = second
        .status(rig.store.as_ref(), Some(rig.wh.as_ref()))
        .await
        .unwrap();
    assert_eq!(st.dedup.tracked, 2, "{st:?}");
    assert!(st.watermarks.global_ms.is_some(), "{st:?}");
    rig.ingest(
        &mut second,
        &[ev("e1", now - secs(60)), ev("e3", now - secs(3 * 3600))],
    )
    .await
    .unwrap();
    assert_eq!(rig.totals().await, [4, 2, 1, 1, 0]);
    let late = rig.lines("late/events/").await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["event_id"], "e3");
    assert_clean(&rig.verify().await);
}

/// A committed state object that is gone (deleted by hand) is reported and the stream goes on
/// with an empty window: nothing is lost, the checkpoints and data are in the warehouse.
#[tokio::test]
async fn a_lost_state_object_is_reported_and_the_stream_goes_on() {
    let rig = Rig::new(1, 100).await;
    let now = Utc::now();
    let mut first = rig.process().await;
    rig.ingest(&mut first, &run("a", 10, now - secs(100)))
        .await
        .unwrap();
    for m in rig.store.list("state/").await.unwrap() {
        rig.store.delete(&m.key).await.unwrap();
    }
    let mut second = rig.process().await;
    rig.ingest(&mut second, &run("b", 10, now - secs(50)))
        .await
        .unwrap();
    assert_eq!(rig.totals().await, [20, 20, 0, 0, 0]);
    assert_eq!(rig.store.list("state/").await.unwrap().len(), 1);
    assert_clean(&rig.verify().await);
}

/// Repro 4: one event 23 h in the future used to send every later event to the late buffer.
#[tokio::test]
async fn an_event_from_the_future_is_quarantined_and_moves_no_watermark() {
    let rig = Rig::new(1, 10_000).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let mut records = vec![(
        "s".to_string(),
        Bytes::from(ev("future", now + Duration::hours(23))),
    )];
    for i in 0..1000 {
        records.push((
            "s".to_string(),
            Bytes::from(ev(&format!("n{i}"), now - secs(1000 - i))),
        ));
    }
    p.log().put(records).await.unwrap();
    rig.cycle(&mut p).await.unwrap();
    assert_eq!(rig.totals().await, [1001, 1000, 0, 0, 1]);
    let q = rig.lines("quarantine/").await;
    assert_eq!(q[0]["field"], "event_time");
    let reason = q[0]["reason"].as_str().unwrap();
    assert!(reason.contains("ahead of its arrival"), "{reason}");
    assert!(reason.contains("max_future_skew_secs = 300"), "{reason}");

    // Seventy seconds of event time later, 500 more: all on time.
    let later: Vec<_> = (0..500)
        .map(|i| {
            (
                "s".to_string(),
                Bytes::from(ev(&format!("m{i}"), now + secs(70) - secs(500 - i))),
            )
        })
        .collect();
    p.log().put(later).await.unwrap();
    rig.cycle(&mut p).await.unwrap();
    assert_eq!(rig.totals().await, [1501, 1500, 0, 0, 1]);
    assert_clean(&rig.verify().await);
}

/// Repro 5: a producer that adds a field no longer quarantines the stream; a wrong type names
/// the field and what was expected.
#[tokio::test]
async fn unknown_fields_are_ignored_and_wrong_types_say_which_field() {
    let rig = Rig::new(1, 1000).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let mut lines: Vec<String> = (0..100)
        .map(|i| {
            let e = ev(&format!("r{i}"), now - secs(200 - i));
            format!(
                "{},\"referrer\":\"https://example.test/?q={i}\"}}",
                &e[..e.len() - 1]
            )
        })
        .collect();
    lines.push(
        r#"{"event_id":"t1","user_id":1,"product_id":2,"event_type":"checkout","event_time":"2026-11-26 08:00:00","session_id":"x"}"#
            .into(),
    );
    lines.push(
        r#"{"event_id":"t2","user_id":"7","product_id":2,"event_type":"checkout","event_time":"2026-11-26T08:00:00Z","session_id":"x"}"#
            .into(),
    );
    rig.ingest(&mut p, &lines).await.unwrap();
    assert_eq!(rig.totals().await, [102, 100, 0, 0, 2]);
    let q = rig.lines("quarantine/").await;
    let reason = |field: &str| {
        q.iter()
            .find(|r| r["field"] == field)
            .unwrap_or_else(|| panic!("no {field} in {q:?}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let t = reason("event_time");
    assert!(
        t.contains("\"2026-11-26 08:00:00\"") && t.contains("expected an RFC 3339 timestamp"),
        "{t}"
    );
    let u = reason("user_id");
    assert!(u.contains("a string \"7\"; expected an integer"), "{u}");
    // RAW keeps the extra field as received.
    let raw = rig.store.list("raw/stream/").await.unwrap();
    let body = rig.store.get(&raw[0].key).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("referrer"));
    assert_clean(&rig.verify().await);
}

/// Repro 6: a resend outside the dedup window never moves an event to another day (the first
/// copy stays), and an order that moves to another day dirties both.
#[tokio::test]
async fn a_resent_event_stays_put_and_a_moved_order_dirties_both_days() {
    let rig = Rig::new(1, 100).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    rig.ingest(&mut p, &[ev("e1", now - Duration::days(5))])
        .await
        .unwrap();
    // Event time moves on past the dedup window, then e1 comes again, on today.
    rig.ingest(&mut p, &[ev("x1", now - secs(3600))])
        .await
        .unwrap();
    rig.ingest(&mut p, &[ev("e1", now - secs(60))])
        .await
        .unwrap();
    assert_eq!(rig.count("SELECT COUNT(*) FROM staging.events").await, 2);
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM curated.fct_events WHERE event_id = 'e1'")
            .await,
        1
    );
    let day = rig
        .duck
        .query("SELECT CAST(CAST(event_time AS DATE) AS VARCHAR) FROM staging.events WHERE event_id = 'e1'")
        .await
        .unwrap();
    assert_eq!(
        day[0][0].as_deref(),
        Some((now - Duration::days(5)).date_naive().to_string().as_str()),
        "the first copy wins"
    );
    assert_clean(&rig.verify().await);

    // Orders: order 1 moves from five days ago to today.
    let wh = DuckWarehouse::in_memory().unwrap();
    let lake = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(lake.path()).unwrap();
    let order = |key: &str, day: DateTime<Utc>| StagedFile {
        key: key.into(),
        entity: "orders".into(),
        sha256: sha256_hex(key.as_bytes()),
        body: Bytes::from(format!(
            r#"{{"order_id":1,"user_id":1,"order_time":"{}","order_status":"placed","order_total_cents":1000,"item_count":1}}"#,
            day.to_rfc3339()
        )),
        source: "test".into(),
        checkpoint: None,
        columns: None,
    };
    wh.load(&order("staging/orders/a.ndjson", now - Duration::days(5)))
        .await
        .unwrap();
    warehouse::refresh_models(&wh, &lake, 1).await.unwrap();
    wh.load(&order("staging/orders/b.ndjson", now))
        .await
        .unwrap();
    warehouse::refresh_models(&wh, &lake, 1).await.unwrap();
    assert_eq!(
        warehouse::table_rows(&wh, "curated.fct_orders")
            .await
            .unwrap(),
        1
    );
    let m = warehouse::metrics(&wh).await.unwrap();
    assert_eq!((m.revenue_cents, m.orders), (1000, 1));
}

/// Repro 8: a bounded history file is one micro-batch: judged against the watermark before
/// it, so nothing in it is late; the next file is judged against the advanced watermark.
#[tokio::test]
async fn a_history_file_is_one_micro_batch() {
    let rig = Rig::new(2, 10_000).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let lines: Vec<String> = (0..10_000)
        .map(|i| {
            let back = rand::Rng::random_range(&mut rng, 0..31 * 86_400);
            ev(&format!("h{i}"), now - secs(back))
        })
        .collect();
    rig.ingest(&mut p, &lines).await.unwrap();
    assert_eq!(rig.totals().await, [10_000, 10_000, 0, 0, 0]);

    let older: Vec<String> = (0..100)
        .map(|i| ev(&format!("o{i}"), now - Duration::days(40) + secs(i)))
        .collect();
    rig.ingest(&mut p, &older).await.unwrap();
    assert_eq!(rig.totals().await, [10_100, 10_000, 0, 100, 0]);
    assert_clean(&rig.verify().await);
}

/// A history file cut short by a failure after its first segment committed goes on, in the
/// next cycle of another process, against the watermarks it began with; then they advance.
#[tokio::test]
async fn a_file_cut_short_goes_on_against_the_same_watermarks() {
    // One segment a transaction, so a failure can fall right after the first commit.
    let rig = Rig::with(1, 50, |c| c.stream.segments_per_commit = 1).await;
    let now = Utc::now();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
    let lines: Vec<String> = (0..150)
        .map(|i| {
            let back = rand::Rng::random_range(&mut rng, 0..30 * 86_400);
            ev(&format!("h{i}"), now - secs(back))
        })
        .collect();
    let mut p = rig.process().await;
    // The file's RAW object, then the first segment's RAW, STAGING and state; then nothing.
    rig.faults.fail_after_writes(Some(4));
    assert!(rig.ingest(&mut p, &lines).await.is_err());
    rig.faults.fail_after_writes(None);
    assert_eq!(
        rig.totals().await,
        [50, 50, 0, 0, 0],
        "one segment committed"
    );

    let mut next = rig.process().await;
    rig.cycle(&mut next).await.unwrap();
    assert_eq!(
        rig.totals().await,
        [150, 150, 0, 0, 0],
        "nothing in the file is late"
    );
    // The batch ended: the watermarks advanced past the file.
    rig.ingest(&mut next, &run("o", 10, now - Duration::days(40)))
        .await
        .unwrap();
    assert_eq!(rig.totals().await, [160, 150, 0, 10, 0]);
    assert_clean(&rig.verify().await);
}

/// One line over the record limit is quarantined with its line number; the rest go on.
#[tokio::test]
async fn an_oversized_line_is_quarantined_with_its_line_number() {
    let rig = Rig::new(1, 100).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let mut lines = run("k", 10, now - secs(100));
    let e = ev("huge", now);
    lines.insert(
        5,
        format!(
            "{},\"pad\":\"{}\"}}",
            &e[..e.len() - 1],
            "x".repeat(1 << 20)
        ),
    );
    let said = rig.ingest(&mut p, &lines).await.unwrap();
    assert_eq!(said.oversized, 1, "{said:?}");
    assert_eq!(rig.totals().await, [10, 10, 0, 0, 0]);
    let q = rig.lines("quarantine/file/").await;
    assert_eq!(q.len(), 1);
    assert!(
        q[0]["reason"].as_str().unwrap().starts_with("line 6:"),
        "{q:?}"
    );
    assert_clean(&rig.verify().await);
}

/// The warehouse committed but its reply was lost: the next drain resumes from what really
/// committed (state included), so a resend of that segment's events is a duplicate.
#[tokio::test]
async fn a_lost_reply_after_commit_resumes_from_the_committed_state() {
    let rig = Rig::new(1, 100).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let b = run("b", 50, now - secs(300));
    rig.faults.set_warehouse_rate(1.0);
    // Keep failing until one failure was a lost reply after commit.
    for attempt in 0.. {
        assert!(attempt < 100, "no load committed");
        let committed = rig.totals().await[0];
        let _ = rig.ingest(&mut p, &b).await;
        if rig.totals().await[0] > committed {
            break;
        }
    }
    rig.faults.set_rate(0.0);
    rig.cycle(&mut p).await.unwrap();
    rig.ingest(&mut p, &[ev("b7", now - secs(293)), ev("c1", now)])
        .await
        .unwrap();
    assert_eq!(rig.totals().await, [52, 51, 1, 0, 0]);
    assert_clean(&rig.verify().await);
}

/// A workload item: an event, a resend of an earlier line, or a malformed record.
#[derive(Debug, Clone)]
enum Item {
    Event {
        id: u16,
        back_secs: u32,
        session: u8,
    },
    Resend(usize),
    Malformed(u8),
}

fn workload_lines(items: &[Item], now: DateTime<Utc>) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = Vec::new();
    for it in items {
        let rec = match it {
            Item::Event {
                id,
                back_secs,
                session,
            } => {
                let t = now - secs(i64::from(*back_secs));
                let line = format!(
                    r#"{{"event_id":"w{id}","user_id":1,"product_id":2,"event_type":"checkout","event_time":"{}","session_id":"s{session}"}}"#,
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
                (format!("s{session}"), Bytes::from(line))
            }
            Item::Resend(i) if !out.is_empty() => out[i % out.len()].clone(),
            Item::Resend(_) | Item::Malformed(_) => {
                let k = match it {
                    Item::Malformed(k) => *k,
                    _ => 0,
                };
                (
                    format!("m{k}"),
                    Bytes::from(format!("{{\"event_id\":\"bad{k}\",")),
                )
            }
        };
        out.push(rec);
    }
    out
}

/// Feed `records` in `chunks` (each a fresh process), retrying each drain until it succeeds
/// while the faults fire; the sets it ends with.
async fn run_split(
    records: &[(String, Bytes)],
    cuts: &[usize],
    segment: u32,
    shards: u32,
    fault_rate: f64,
) -> Sets {
    let rig = Rig::with(shards, segment, |c| {
        c.stream.watermark.out_of_orderness_ms = 1_000;
        c.stream.watermark.allowed_lateness_secs = 300;
    })
    .await;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (records.len() + 1)).collect();
    bounds.push(0);
    bounds.push(records.len());
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        let mut p = rig.process().await;
        p.log().put(records[w[0]..w[1]].to_vec()).await.unwrap();
        rig.faults.set_rate(fault_rate);
        for attempt in 0.. {
            assert!(attempt < 5_000, "no progress under faults");
            if rig.cycle(&mut p).await.is_ok() {
                break;
            }
        }
        rig.faults.set_rate(0.0);
    }
    // Whatever failed last, a clean drain finishes the work.
    let mut p = rig.process().await;
    rig.cycle(&mut p).await.unwrap();
    assert_clean(&rig.verify().await);
    rig.sets().await
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    proptest::collection::vec(
        prop_oneof![
            // An id's copies share its session, so its shard (the partition key is the
            // session): across shards, which copy is first depends on drain order.
            8 => (0u16..400, 0u32..7_200).prop_map(|(id, back_secs)| Item::Event {
                id,
                back_secs,
                session: (id % 6) as u8,
            }),
            2 => any::<usize>().prop_map(Item::Resend),
            1 => any::<u8>().prop_map(Item::Malformed),
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, ..ProptestConfig::default() })]

    /// One process, several processes split at random points, and several processes under
    /// random failed writes, refused statements and lost replies: the same STAGING, late and
    /// quarantine sets and the same duplicate count.
    #[test]
    fn process_boundaries_and_failures_change_no_classification(
        items in items(),
        cuts in proptest::collection::vec(any::<usize>(), 0..5),
        segment in 4u32..80,
        shards in 1u32..3,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let now = Utc::now();
        let records = workload_lines(&items, now);
        let whole = rt.block_on(run_split(&records, &[], 10_000, shards, 0.0));
        let split = rt.block_on(run_split(&records, &cuts, segment, shards, 0.0));
        prop_assert_eq!(&whole, &split, "split across processes");
        let faulty = rt.block_on(run_split(&records, &cuts, segment, shards, 0.15));
        prop_assert_eq!(&whole, &faulty, "under faults");
    }
}

/// Step `i` of the soak: an event file (with resends, disorder, late and malformed lines), or
/// a generator batch put on the log and drained by a cycle.
fn soak_step(i: usize, now: DateTime<Utc>) -> (bool, Vec<(String, Bytes)>) {
    if i.is_multiple_of(2) {
        let items: Vec<Item> = (0..120)
            .map(|k| match (i * 131 + k * 17) % 23 {
                0 => Item::Resend(k * 7),
                1 => Item::Malformed((k % 250) as u8),
                _ => Item::Event {
                    id: (i * 120 + k) as u16,
                    back_secs: if k % 29 == 0 {
                        5 * 3600
                    } else {
                        ((k * 37) % 900) as u32
                    },
                    session: (k % 7) as u8,
                },
            })
            .collect();
        (
            true,
            workload_lines(&items, now - secs(60 * (400 - i as i64).max(0))),
        )
    } else {
        let mut g = Generator::new(&Config::default().stream.generator, 10, 20)
            .with_run_tag(&format!("soak{i}"));
        let start = now - secs(4 * 3600) + secs(30 * i as i64);
        (false, g.next_batch(150, start, start + secs(30)).0)
    }
}

/// Run the soak's steps at a fault rate: at least `min_steps`, and under faults until `want`
/// were injected. Returns the steps run, the faults injected and the sets.
async fn soak_run(
    now: DateTime<Utc>,
    min_steps: usize,
    want: u64,
    rate: f64,
) -> (usize, u64, Sets) {
    let rig = Rig::with(2, 64, |_| {}).await;
    let mut p = rig.process().await;
    let mut steps = 0;
    while steps < min_steps || (rate > 0.0 && rig.faults.injected() < want) {
        assert!(steps < 2_000, "the soak does not reach {want} faults");
        let i = steps;
        steps += 1;
        let (file, records) = soak_step(i, now);
        let refuse = rate > 0.0 && i % 5 == 3;
        if refuse {
            rig.faults.refuse(Some("staging/events/shard=shard-0001"));
        }
        if !file {
            // The generator writes to the log directly, as the service's cycle does.
            p.log().put(records.clone()).await.unwrap();
        }
        let body = Bytes::from(
            records
                .iter()
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        rig.faults.set_rate(rate);
        for attempt in 0.. {
            assert!(attempt < 500, "no progress under faults");
            if attempt == 2 {
                rig.faults.refuse(None);
            }
            let ok = if file {
                p.ingest_file(rig.store.as_ref(), Some(rig.wh.as_ref()), body.clone())
                    .await
                    .is_ok()
            } else {
                rig.cycle(&mut p).await.is_ok()
            };
            if ok {
                break;
            }
            // A process that keeps failing is replaced now and then, as a restart would.
            if attempt % 4 == 3 {
                p = rig.process().await;
            }
        }
        rig.faults.refuse(None);
        rig.faults.set_rate(0.0);
    }
    rig.cycle(&mut p).await.unwrap();
    assert_clean(&rig.verify().await);
    (steps, rig.faults.injected(), rig.sets().await)
}

/// The transient-fault soak: a running stream over a store and warehouse that fail at random
/// (failed writes, refused statements, lost replies) and a refused STAGING directory now and
/// then, fed by event files and the generator, until `ECOMOPS_SOAK_FAULTS` faults (default
/// 200) were injected. Afterwards verify is clean and the staged, late and quarantined sets
/// equal a fault-free run's. (Counts of duplicates and quarantined copies may be higher: a
/// file whose RAW write failed after its lines reached the log is fed again on the retry,
/// which dedup absorbs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_fault_soak() {
    let want: u64 = std::env::var("ECOMOPS_SOAK_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let now = Utc::now();
    let (steps, injected, faulty) = soak_run(now, 4, want, 0.25).await;
    let (_, _, clean) = soak_run(now, steps, 0, 0.0).await;
    println!("soak: {steps} steps, {injected} faults injected");
    assert!(
        injected >= want,
        "only {injected} faults injected of {want}"
    );
    assert_eq!(faulty.staged, clean.staged);
    assert_eq!(faulty.late, clean.late);
    assert_eq!(faulty.quarantined, clean.quarantined);
}

/// A busy shard does not starve the others: a bounded drain takes one segment per shard in
/// turn, and what is left waits for the next drain, which loses and doubles nothing.
#[tokio::test]
async fn a_bounded_drain_serves_every_shard_in_turn() {
    use ecom_pipeline::stream::local::LocalLog;
    use ecom_pipeline::stream::{consumer::Processor, StreamLog};
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let wh = DuckWarehouse::in_memory().unwrap();
    let log = LocalLog::open(
        dir.path().join("log"),
        2,
        1 << 20,
        std::time::Duration::from_secs(3600),
        false,
    )
    .unwrap();
    // Two sessions on different shards: a busy one (40 events) and a quiet one (5).
    let busy = "busy".to_string();
    let quiet = (0..)
        .map(|i| format!("quiet-{i}"))
        .find(|k| log.shard_for(k) != log.shard_for(&busy))
        .unwrap();
    let now = Utc::now();
    let line = |id: String, session: &str| {
        let e = serde_json::json!({"event_id": id, "user_id": 1, "product_id": 2,
            "event_type": "product_view", "event_time": now.to_rfc3339(), "session_id": session});
        Bytes::from(e.to_string())
    };
    let mut records: Vec<(String, Bytes)> = (0..40)
        .map(|i| (busy.clone(), line(format!("b{i}"), &busy)))
        .collect();
    records.extend((0..5).map(|i| (quiet.clone(), line(format!("q{i}"), &quiet))));
    log.put(records).await.unwrap();

    let config = Config::default();
    let mut p = Processor::new(&config.stream);
    let first = p
        .drain_some(&log, &store, Some(&wh as &dyn Warehouse), 5, Some(2))
        .await
        .unwrap();
    assert_eq!(first.records, 10, "two segments of five");
    let quiet_shard = log.shard_for(&quiet);
    let raw = store
        .list(&format!("raw/stream/events/shard={quiet_shard}/"))
        .await
        .unwrap();
    assert_eq!(
        raw.len(),
        1,
        "the quiet shard had its turn in the first round"
    );
    // The rest, over later drains: every event once.
    let mut total = first.records;
    for _ in 0..20 {
        total += p
            .drain_some(&log, &store, Some(&wh as &dyn Warehouse), 5, Some(2))
            .await
            .unwrap()
            .records;
    }
    assert_eq!(total, 45);
    let rows = warehouse::table_rows(&wh, "staging.events").await.unwrap();
    assert_eq!(rows, 45);
    warehouse::refresh_models(&wh, &store, 2).await.unwrap();
    assert_clean(&verify(&store, &wh).await.unwrap());
}

/// `ingestion_time` is the log's arrival time, whatever a producer sends (its value stays in
/// RAW as received): a producer's 1999 is not the platform's late-data signal.
#[tokio::test]
async fn ingestion_time_is_the_arrival_time_not_the_producers() {
    let rig = Rig::new(1, 100).await;
    let mut p = rig.process().await;
    let now = Utc::now();
    let e = ev("claimed", now - secs(10));
    let line = format!(
        "{},\"ingestion_time\":\"1999-01-01T00:00:00Z\"}}",
        &e[..e.len() - 1]
    );
    rig.ingest(&mut p, &[line]).await.unwrap();
    let staged = rig.lines("staging/events/").await;
    assert_eq!(staged.len(), 1);
    let t: DateTime<Utc> = staged[0]["ingestion_time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((now - t).num_seconds().abs() < 60, "{t}");
    // The producer's claim is kept beside it, as `producer_time`; one that is not a time
    // (below) is no time, and never refuses the event.
    assert_eq!(
        staged[0]["producer_time"].as_str(),
        Some("1999-01-01T00:00:00.000000Z")
    );
    let odd = ev("odd claim", now - secs(5));
    let odd = format!(
        "{},\"ingestion_time\":{{\"at\":[1]}}}}",
        &odd[..odd.len() - 1]
    );
    rig.ingest(&mut p, &[odd]).await.unwrap();
    let staged = rig.lines("staging/events/").await;
    assert_eq!(staged.len(), 2, "{staged:?}");
    assert!(staged
        .iter()
        .any(|r| r["event_id"] == "odd claim" && r.get("producer_time").is_none()));
    let raw = rig.lines("raw/").await;
    assert!(
        raw.iter()
            .any(|r| r["ingestion_time"] == "1999-01-01T00:00:00Z"),
        "RAW keeps what the producer sent: {raw:?}"
    );
}

/// Several segments a transaction: a write that fails while the next group is staged (its load
/// of the group before runs meanwhile) leaves exactly the groups that committed, whole; the
/// next cycle loads the rest once, with the same counts, and checkpoints only move forward.
#[tokio::test]
async fn a_failure_while_the_next_group_stages_keeps_whole_groups() {
    let rig = Rig::with(2, 10, |c| c.stream.segments_per_commit = 4).await;
    let mut p = rig.process().await;
    let lines = run("g", 100, Utc::now() - secs(3600));
    // The file's RAW object, four segments' RAW and STAGING objects, the first group's state,
    // then one more segment: the sixth segment write fails, mid-group.
    rig.faults.fail_after_writes(Some(12));
    assert!(rig.ingest(&mut p, &lines).await.is_err());
    rig.faults.fail_after_writes(None);
    assert_eq!(
        rig.totals().await,
        [40, 40, 0, 0, 0],
        "the first group, whole"
    );
    let first = rig
        .count("SELECT CAST(SUM(sequence_number) AS BIGINT) FROM ops.checkpoints")
        .await;

    rig.cycle(&mut p).await.unwrap();
    assert_eq!(rig.totals().await, [100, 100, 0, 0, 0]);
    assert_eq!(rig.count("SELECT COUNT(*) FROM staging.events").await, 100);
    assert!(
        rig.count("SELECT CAST(SUM(sequence_number) AS BIGINT) FROM ops.checkpoints")
            .await
            > first
    );
    assert_clean(&rig.verify().await);
}

/// A live log that grows while a drain reads it: after the first read of its shard, ten more
/// records arrive (as from a producer), once.
struct GrowingLog {
    inner: ecom_pipeline::stream::local::LocalLog,
    more: std::sync::Mutex<Option<Vec<(String, Bytes)>>>,
}

impl ecom_pipeline::stream::StreamLog for GrowingLog {
    fn backend(&self) -> &'static str {
        "growing"
    }
    fn shards(&self) -> Vec<String> {
        self.inner.shards()
    }
    fn put(
        &self,
        records: Vec<(String, Bytes)>,
    ) -> futures::future::BoxFuture<'_, ecom_pipeline::Result<()>> {
        self.inner.put(records)
    }
    fn read<'a>(
        &'a self,
        shard: &'a str,
        after: Option<u64>,
        max: usize,
    ) -> futures::future::BoxFuture<'a, ecom_pipeline::Result<Vec<ecom_pipeline::stream::Record>>>
    {
        Box::pin(async move {
            let page = self.inner.read(shard, after, max).await?;
            let more = self.more.lock().unwrap().take();
            if let Some(more) = more {
                self.inner.put(more).await?;
            }
            Ok(page)
        })
    }
    fn latest_seq<'a>(
        &'a self,
        shard: &'a str,
    ) -> futures::future::BoxFuture<'a, ecom_pipeline::Result<Option<u64>>> {
        self.inner.latest_seq(shard)
    }
}

/// Review repro: a short read at a shard's tail, then records arriving during the same drain,
/// gave two staged segments of one shard (5 records, then 10) in two groups; the first
/// group's load failed and only the last boundary was kept as the retry cut, so the retry cut
/// the shard 1-10 and 11-15, leaving the first RAW objects beside differently cut ones. Every
/// boundary is kept now: the retry writes the same two segments.
#[tokio::test]
async fn a_retry_cuts_every_staged_segment_where_it_was_cut() {
    retry_cuts(false).await;
}

/// The same failure, but the retry is a new process (the soak replaces a process that keeps
/// failing; a restart after a crash is the same): the cuts die with the failed process, so the
/// new one cut the shard by count (1-10, 11-15) beside the failed one's RAW segments (1-5,
/// 6-15), and verify found RAW objects without STAGING. It now reads the RAW segments past the
/// checkpoint as its cuts.
#[tokio::test]
async fn a_new_process_cuts_where_the_failed_one_staged() {
    retry_cuts(true).await;
}

async fn retry_cuts(new_process: bool) {
    use ecom_pipeline::stream::consumer::Processor;
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let faults = Faults::new(11);
    let duck: Arc<dyn Warehouse> = Arc::new(DuckWarehouse::in_memory().unwrap());
    let wh = FaultyWarehouse {
        inner: duck.clone(),
        faults: faults.clone(),
    };
    let local = ecom_pipeline::stream::local::LocalLog::open(
        dir.path().join("log"),
        1,
        1 << 20,
        std::time::Duration::from_secs(3600),
        false,
    )
    .unwrap();
    let now = Utc::now();
    let line = |i: usize| {
        let e = serde_json::json!({"event_id": format!("g{i}"), "user_id": 1, "product_id": 2,
            "event_type": "product_view", "event_time": now.to_rfc3339(), "session_id": "s"});
        ("s".to_string(), Bytes::from(e.to_string()))
    };
    use ecom_pipeline::stream::StreamLog;
    local.put((0..5).map(line).collect()).await.unwrap();
    let log = GrowingLog {
        inner: local,
        more: std::sync::Mutex::new(Some((5..15).map(line).collect())),
    };
    let mut config = Config::default();
    config.stream.shards = 1;
    config.stream.segments_per_commit = 1;
    let mut p = Processor::new(&config.stream);
    // Every load refused: the first group fails while the second is staged.
    faults.set_warehouse_rate(1.0);
    assert!(p
        .drain_some(&log, &store, Some(&wh as &dyn Warehouse), 10, None)
        .await
        .is_err());
    let keys = |store: &LocalStore| {
        let store = store.clone();
        async move {
            let mut k: Vec<String> = store
                .list("raw/stream/events/")
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.key)
                .collect();
            k.sort();
            k
        }
    };
    let before = keys(&store).await;
    assert_eq!(before.len(), 2, "two segments staged: {before:?}");
    faults.set_warehouse_rate(0.0);
    if new_process {
        p = Processor::new(&config.stream);
    }
    let c = p
        .drain_some(&log, &store, Some(&wh as &dyn Warehouse), 10, None)
        .await
        .unwrap();
    assert_eq!(c.records, 15);
    assert_eq!(
        keys(&store).await,
        before,
        "the retry cut the same segments"
    );
    assert_eq!(
        warehouse::table_rows(duck.as_ref(), "staging.events")
            .await
            .unwrap(),
        15
    );
    warehouse::refresh_models(duck.as_ref(), &store, 2)
        .await
        .unwrap();
    assert_clean(&verify(&store, duck.as_ref()).await.unwrap());
}
