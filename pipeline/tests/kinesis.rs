//! The Kinesis stream log: the stream property scenario on a moto server with several shards
//! (nothing lost, each id staged once, once in the warehouse, a restart resumes after the
//! checkpoint, a reshard is read parents first), and the producer's partial-failure path on
//! aws-smithy-mocks (only the failed records are sent again).

mod support {
    pub mod moto;
}

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::types::PutRecordsResultEntry;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use bytes::Bytes;
use ecom_pipeline::config::{KinesisConfig, StreamConfig};
use ecom_pipeline::store::{LocalStore, ObjectStore};
use ecom_pipeline::stream::consumer::Processor;
use ecom_pipeline::stream::kinesis::KinesisLog;
use ecom_pipeline::stream::StreamLog;
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::{table_rows, Warehouse};
use support::moto::moto_endpoint;

fn config(stream: &str, endpoint: Option<String>) -> KinesisConfig {
    KinesisConfig {
        stream_name: stream.into(),
        region: Some("us-east-1".into()),
        endpoint_url: endpoint,
        list_shards_interval_secs: 1,
        max_put_attempts: 4,
        put_backoff_base_ms: 1,
        ..KinesisConfig::default()
    }
}

/// A deterministic mix: ~8% resent ids, disorder, some late, ~5% malformed.
fn inputs(n: u32, first: u32) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(first);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(20) {
            out.push((
                format!("m{i}"),
                Bytes::from(format!("{{\"event_id\": {i},")),
            ));
            continue;
        }
        let id = if x % 12 == 1 && i > 0 {
            first + (x as u32 % i)
        } else {
            first + i
        };
        let secs = 1_790_000_000 + i64::from(id % 500) * 7 + if id % 40 == 0 { -4000 } else { 0 };
        let t = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0).unwrap();
        let session = id % 9;
        let line = format!(
            r#"{{"event_id":"e{id}","user_id":1,"product_id":2,"event_type":"product_view","event_time":"{}","session_id":"s{session}"}}"#,
            t.format("%Y-%m-%dT%H:%M:%SZ")
        );
        out.push((format!("s{session}"), Bytes::from(line)));
    }
    out
}

fn stream_config() -> StreamConfig {
    let mut cfg = StreamConfig::default();
    cfg.watermark.out_of_orderness_ms = 1_000;
    cfg.watermark.allowed_lateness_secs = 600;
    cfg.dedup.window_secs = 30_000;
    cfg
}

async fn lines(store: &LocalStore, prefix: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for m in store.list(prefix).await.unwrap() {
        let body = store.get(&m.key).await.unwrap();
        for l in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(l).unwrap());
        }
    }
    out
}

async fn create_stream(endpoint: &str, name: &str, shards: i32) -> aws_sdk_kinesis::Client {
    let sdk = ecom_pipeline::aws::sdk_config(Some("us-east-1"), Some(endpoint)).await;
    let client = aws_sdk_kinesis::Client::new(&sdk);
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    client
}

/// Everything accounted for; each distinct id once in STAGING or the late buffer, and the
/// warehouse holds what STAGING holds.
async fn check(
    store: &LocalStore,
    wh: &DuckWarehouse,
    records: usize,
    totals: &ecom_pipeline::stream::consumer::SegmentCounts,
    input: &[(String, Bytes)],
) {
    assert_eq!(totals.records as usize, records);
    assert_eq!(
        totals.staged + totals.duplicates + totals.late + totals.quarantined,
        totals.records
    );
    let malformed = input.iter().filter(|(k, _)| k.starts_with('m')).count();
    assert_eq!(totals.quarantined as usize, malformed);
    let staged = lines(store, "staging/events/").await;
    let late = lines(store, "late/events/").await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in staged.iter().chain(late.iter()) {
        *seen
            .entry(e["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let ids: HashSet<String> = input
        .iter()
        .filter(|(k, _)| k.starts_with('s'))
        .map(|(_, d)| {
            let v: serde_json::Value = serde_json::from_slice(d).unwrap();
            v["event_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(seen.len(), ids.len(), "every id arrives");
    assert!(seen.values().all(|n| *n == 1), "an id staged twice");
    let rows = table_rows(wh as &dyn Warehouse, "staging.events")
        .await
        .unwrap();
    assert_eq!(rows as usize, staged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_scenario_holds_on_kinesis_with_a_restart_and_a_reshard() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let name = format!("ecomops-props-{}", std::process::id());
    let client = create_stream(&endpoint, &name, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let wh = DuckWarehouse::in_memory().unwrap();
    let cfg = config(&name, Some(endpoint.clone()));

    // A reshard before any data: moto's SplitShard moves the parent's records into the children
    // with new arrival times (moto/kinesis/models.py `split_shard` re-puts them), where Kinesis
    // keeps them in the parent until retention; splitting a shard that holds records would read
    // them twice here, on moto only. The parent (empty, closed) is still read to its end first.
    let shard0 = {
        let log = KinesisLog::connect(&cfg).await.unwrap();
        assert_eq!(log.shards().len(), 3);
        log.shards()[0].clone()
    };
    client
        .split_shard()
        .stream_name(&name)
        .shard_to_split(&shard0)
        .new_starting_hash_key("10")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let log = KinesisLog::connect(&cfg).await.unwrap();
    let first = inputs(700, 0);
    log.put(first.clone()).await.unwrap();
    let mut p = Processor::new(&stream_config());
    let totals = p
        .drain(&log, &store, Some(&wh as &dyn Warehouse), 50)
        .await
        .unwrap();
    check(&store, &wh, first.len(), &totals, &first).await;

    // A restart: a new reader resumes after the committed checkpoints and reads nothing old.
    let log = KinesisLog::connect(&cfg).await.unwrap();
    let mut p2 = Processor::new(&stream_config());
    let again = p2
        .drain(&log, &store, Some(&wh as &dyn Warehouse), 50)
        .await
        .unwrap();
    assert_eq!(again.records, 0, "resumed after the checkpoint");

    // More data after the restart, on the children.
    let second = inputs(400, 10_000);
    log.put(second.clone()).await.unwrap();
    let more = p2
        .drain(&log, &store, Some(&wh as &dyn Warehouse), 50)
        .await
        .unwrap();
    assert!(
        log.shards().len() >= 5,
        "children listed: {:?}",
        log.shards()
    );
    let all: Vec<(String, Bytes)> = first.iter().chain(second.iter()).cloned().collect();
    let mut sum = totals;
    sum.records += more.records;
    sum.staged += more.staged;
    sum.duplicates += more.duplicates;
    sum.late += more.late;
    sum.quarantined += more.quarantined;
    check(&store, &wh, all.len(), &sum, &all).await;
    let status = p2.status(&log, Some(&wh as &dyn Warehouse)).await.unwrap();
    assert!(
        status.shards.iter().all(|s| s.lag_ms == 0),
        "{:?}",
        status.shards
    );
    // The split parent is closed (ListShards gives it an ending sequence number): shown so,
    // and not one of the shard hours the cost prices.
    let closed: Vec<&str> = status
        .shards
        .iter()
        .filter(|s| s.closed)
        .map(|s| s.shard.as_str())
        .collect();
    assert_eq!(closed, vec![shard0.as_str()], "{:?}", status.shards);
    assert!(status
        .shards
        .iter()
        .all(|s| s.lag_estimated && s.lag_records == 0));
}

/// GetRecords refused for throughput is counted per shard and retried (a transient 5xx is
/// retried too, not counted); the lag in records is
/// MillisBehindLatest times the arrival rate of the records read (Kinesis has no count).
#[tokio::test]
async fn throttles_are_counted_per_shard_and_lag_in_records_is_estimated() {
    use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
    use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorOutput;
    use aws_sdk_kinesis::operation::list_shards::ListShardsOutput;
    use aws_sdk_kinesis::primitives::{Blob, DateTime};
    use aws_sdk_kinesis::types::{HashKeyRange, Record, SequenceNumberRange, Shard};
    let shard = |id: &str, closed: bool| {
        let mut range = SequenceNumberRange::builder().starting_sequence_number("1");
        if closed {
            range = range.ending_sequence_number("99");
        }
        Shard::builder()
            .shard_id(id)
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key("0")
                    .ending_hash_key("1")
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(range.build().unwrap())
            .build()
            .unwrap()
    };
    let list = mock!(aws_sdk_kinesis::Client::list_shards).then_output(move || {
        ListShardsOutput::builder()
            .shards(shard("shardId-000000000000", true))
            .shards(shard("shardId-000000000001", false))
            .build()
    });
    let iterator = mock!(aws_sdk_kinesis::Client::get_shard_iterator).then_output(|| {
        GetShardIteratorOutput::builder()
            .shard_iterator("it-1")
            .build()
    });
    // 11 records 10 ms apart (a rate of one per 10 ms), 1,000 ms behind the tip.
    let records = mock!(aws_sdk_kinesis::Client::get_records)
        .sequence()
        // A transient service error first: retried, not counted as a throttle.
        .http_status(
            500,
            Some(r#"{"__type":"InternalFailure","message":"try again"}"#.into()),
        )
        .http_status(
            400,
            Some(
                r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded"}"#
                    .into(),
            ),
        )
        .output(|| {
            let mut out = GetRecordsOutput::builder()
                .next_shard_iterator("it-2")
                .millis_behind_latest(1_000);
            for i in 0..11i64 {
                out = out.records(
                    Record::builder()
                        .sequence_number(format!("{}", 100 + i))
                        .partition_key("k")
                        .data(Blob::new(b"{}".to_vec()))
                        .approximate_arrival_timestamp(DateTime::from_millis(
                            1_700_000_000_000 + i * 10,
                        ))
                        .build()
                        .unwrap(),
                );
            }
            out.build().unwrap()
        })
        .build();
    let client: aws_sdk_kinesis::Client = mock_client!(
        aws_sdk_kinesis,
        RuleMode::MatchAny,
        &[&list, &iterator, &records]
    );
    let log = KinesisLog::from_client(client, &config("s", None));
    log.refresh_shards().await.unwrap();
    let got = log.read("shardId-000000000001", None, 100).await.unwrap();
    assert_eq!(got.len(), 11);
    assert_eq!(log.read_throttles("shardId-000000000001"), 1);
    assert_eq!(log.read_throttles("shardId-000000000000"), 0);
    assert_eq!(log.lag_records_estimate("shardId-000000000001"), Some(100));
    assert!(log.closed("shardId-000000000000"));
    assert!(!log.closed("shardId-000000000001"));
}

#[tokio::test]
async fn a_partial_failure_resends_only_the_failed_records() {
    let calls: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let c1 = calls.clone();
    let first = mock!(aws_sdk_kinesis::Client::put_records)
        .match_requests(move |r| {
            let keys = r
                .records()
                .iter()
                .map(|e| e.partition_key().unwrap_or_default().to_string())
                .collect();
            c1.lock().unwrap().push(keys);
            true
        })
        .sequence()
        .output(|| {
            let ok = || {
                PutRecordsResultEntry::builder()
                    .sequence_number("1")
                    .shard_id("s")
                    .build()
            };
            let failed = || {
                PutRecordsResultEntry::builder()
                    .error_code("ProvisionedThroughputExceededException")
                    .error_message("Rate exceeded")
                    .build()
            };
            PutRecordsOutput::builder()
                .failed_record_count(2)
                .records(ok())
                .records(failed())
                .records(ok())
                .records(failed())
                .build()
                .unwrap()
        })
        .output(|| {
            PutRecordsOutput::builder()
                .failed_record_count(0)
                .records(
                    PutRecordsResultEntry::builder()
                        .sequence_number("2")
                        .build(),
                )
                .records(
                    PutRecordsResultEntry::builder()
                        .sequence_number("3")
                        .build(),
                )
                .build()
                .unwrap()
        })
        .build();
    let client = mock_client!(aws_sdk_kinesis, RuleMode::Sequential, [&first]);
    let log = KinesisLog::from_client(client, &config("s", None));
    let records: Vec<(String, Bytes)> = (0..4)
        .map(|i| (format!("k{i}"), Bytes::from(format!("{{\"n\":{i}}}"))))
        .collect();
    log.put(records).await.unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0], vec!["k0", "k1", "k2", "k3"]);
    assert_eq!(
        calls[1],
        vec!["k1", "k3"],
        "only the failed records, in order"
    );
}

#[tokio::test]
async fn batches_stay_within_500_records_and_5_mib() {
    let sizes: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let s = sizes.clone();
    let ok = mock!(aws_sdk_kinesis::Client::put_records)
        .match_requests(move |r| {
            let bytes = r
                .records()
                .iter()
                .map(|e| e.data().as_ref().len() + e.partition_key().map_or(0, str::len))
                .sum();
            s.lock().unwrap().push((r.records().len(), bytes));
            true
        })
        .then_output(|| {
            PutRecordsOutput::builder()
                .failed_record_count(0)
                .set_records(Some(Vec::new()))
                .build()
                .unwrap()
        });
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&ok]);
    let log = KinesisLog::from_client(client, &config("s", None));
    // 1,200 small records, then 30 records of 400 KB.
    let mut records: Vec<(String, Bytes)> = (0..1200)
        .map(|i| (format!("k{i}"), Bytes::from_static(b"{}")))
        .collect();
    records.extend((0..30).map(|i| (format!("b{i}"), Bytes::from(vec![b'x'; 400 * 1024]))));
    log.put(records).await.unwrap();
    let sizes = sizes.lock().unwrap();
    assert!(
        sizes
            .iter()
            .all(|(n, b)| *n <= 500 && *b <= 5 * 1024 * 1024),
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().map(|(n, _)| n).sum::<usize>(), 1230);
}
