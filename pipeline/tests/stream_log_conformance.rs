//! One conformance suite for the `StreamLog` trait, run against every backend: the local log
//! always, Kinesis on the moto server `scripts/test.sh` starts (ECOMOPS_TEST_MOTO_ENDPOINT).
//! What the consumer relies on: the records of one partition key land on one shard, in put
//! order; a shard gives its records with increasing sequence numbers; a read after a sequence number
//! returns only what follows it, at most `max` at a time, the same bytes on every read (a
//! replay rewrites RAW byte-identically); and the last sequence number is known once read.

mod support {
    pub mod moto;
}

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ecom_pipeline::config::KinesisConfig;
use ecom_pipeline::stream::kinesis::KinesisLog;
use ecom_pipeline::stream::local::LocalLog;
use ecom_pipeline::stream::{Record, StreamLog};
use support::moto::moto_endpoint;

async fn suite(log: &dyn StreamLog) {
    shards_are_named_and_stable(log);
    let written = put_in_order(log).await;
    reads_follow_put_order(log, &written).await;
    reads_after_a_position_and_in_pages(log, &written).await;
    reads_are_repeatable(log, &written).await;
    empty_put_is_a_no_op(log).await;
}

fn shards_are_named_and_stable(log: &dyn StreamLog) {
    let shards = log.shards();
    assert!(!shards.is_empty());
    assert_eq!(log.shards(), shards, "the shard list is stable");
}

/// Records of several keys over two puts; returns the data put per key, in order.
async fn put_in_order(log: &dyn StreamLog) -> BTreeMap<String, Vec<Bytes>> {
    let mut expected: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
    for round in 0..2 {
        let mut batch = Vec::new();
        for i in 0..40 {
            let key = format!("session-{}", i % 7);
            // Arbitrary bytes a producer may send: JSON with non-ASCII text, quotes, a NUL.
            let data = Bytes::from(format!(
                "{{\"key\":\"{key}\",\"event_id\":\"r{round}-{i}\",\"note\":\"é \\\"q\\\" \\u0000\"}}"
            ));
            expected.entry(key.clone()).or_default().push(data.clone());
            batch.push((key, data));
        }
        log.put(batch).await.unwrap();
    }
    expected
}

fn key_of(r: &Record) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
    v["key"].as_str().unwrap().to_string()
}

/// Every record of `shard` after `after`, reading `page` at a time (a backend may answer a
/// read with fewer records than there are; Kinesis with none while it catches up).
async fn read_all(
    log: &dyn StreamLog,
    shard: &str,
    after: Option<u64>,
    page: usize,
    want: usize,
) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut empty = 0;
    while out.len() < want && empty < 5 {
        let from = out.last().map(|r| r.seq).or(after);
        let got = log.read(shard, from, page).await.unwrap();
        assert!(
            got.len() <= page,
            "read returned {} > max {page}",
            got.len()
        );
        if got.is_empty() {
            empty += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out.extend(got);
    }
    out
}

async fn reads_follow_put_order(log: &dyn StreamLog, written: &BTreeMap<String, Vec<Bytes>>) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let total: usize = written.values().map(Vec::len).sum();
    let mut by_key: BTreeMap<String, (String, Vec<Bytes>)> = BTreeMap::new();
    let mut seen = 0;
    for shard in log.shards() {
        // A shard holds at most everything; read until it stops giving.
        let got = read_all(log, &shard, None, 1000, total - seen).await;
        seen += got.len();
        for r in &got {
            let (home, data) = by_key
                .entry(key_of(r))
                .or_insert_with(|| (shard.clone(), Vec::new()));
            assert_eq!(*home, shard, "one partition key, one shard");
            data.push(r.data.clone());
        }
        assert!(
            got.windows(2).all(|w| w[0].seq < w[1].seq),
            "{shard}: sequence numbers increase"
        );
        assert!(
            got.windows(2).all(|w| w[0].arrival_ms <= w[1].arrival_ms),
            "{shard}: arrival times never go back"
        );
        assert!(
            got.iter().all(|r| (r.arrival_ms - now_ms).abs() < 600_000),
            "{shard}: arrival times are the log's clock"
        );
        if let Some(last) = got.last() {
            assert_eq!(
                log.latest_seq(&shard).await.unwrap(),
                Some(last.seq),
                "{shard}: the last sequence number, once read"
            );
        }
        let after_end = log
            .read(&shard, got.last().map(|r| r.seq), 10)
            .await
            .unwrap();
        assert!(
            after_end.is_empty(),
            "{shard}: nothing after the last record"
        );
    }
    assert_eq!(seen, total, "every record is read back once");
    for (key, want) in written {
        assert_eq!(&by_key[key].1, want, "{key}: byte for byte, in put order");
    }
}

async fn reads_after_a_position_and_in_pages(
    log: &dyn StreamLog,
    written: &BTreeMap<String, Vec<Bytes>>,
) {
    let total: usize = written.values().map(Vec::len).sum();
    let shard = &log.shards()[0];
    let all = read_all(log, shard, None, 1000, total).await;
    if all.len() < 3 {
        return;
    }
    let cut = all.len() / 3;
    let rest = read_all(log, shard, Some(all[cut].seq), 1000, all.len() - cut - 1).await;
    assert_eq!(
        rest,
        all[cut + 1..].to_vec(),
        "only what follows the position"
    );
    let paged = read_all(log, shard, None, 3, all.len()).await;
    assert_eq!(paged, all, "pages of 3 give the same records");
}

async fn reads_are_repeatable(log: &dyn StreamLog, written: &BTreeMap<String, Vec<Bytes>>) {
    let total: usize = written.values().map(Vec::len).sum();
    for shard in &log.shards() {
        let a = read_all(log, shard, None, 1000, total).await;
        let b = read_all(log, shard, None, 1000, a.len()).await;
        assert_eq!(
            a, b,
            "{shard}: the same records, seqs and arrival times on every read"
        );
    }
}

async fn empty_put_is_a_no_op(log: &dyn StreamLog) {
    let before: Vec<Option<u64>> = {
        let mut v = Vec::new();
        for s in log.shards() {
            v.push(log.latest_seq(&s).await.unwrap());
        }
        v
    };
    log.put(Vec::new()).await.unwrap();
    for (s, b) in log.shards().iter().zip(before) {
        assert_eq!(log.latest_seq(s).await.unwrap(), b);
    }
}

#[tokio::test]
async fn the_local_log_conforms() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the reads cross segment files.
    let log = LocalLog::open(dir.path(), 4, 4096, Duration::from_secs(3600), false).unwrap();
    suite(&log).await;
    // And after a restart, from the files alone.
    let again = LocalLog::open(dir.path(), 4, 4096, Duration::from_secs(3600), false).unwrap();
    let mut total = 0;
    for s in again.shards() {
        total += again.read(&s, None, 1000).await.unwrap().len();
    }
    assert_eq!(total, 80);
}

#[tokio::test]
async fn kinesis_conforms() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let name = format!("conformance-{}", std::process::id());
    let sdk = ecom_pipeline::aws::sdk_config(Some("us-east-1"), Some(&endpoint)).await;
    aws_sdk_kinesis::Client::new(&sdk)
        .create_stream()
        .stream_name(&name)
        .shard_count(3)
        .send()
        .await
        .unwrap();
    let cfg = KinesisConfig {
        stream_name: name,
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint),
        list_shards_interval_secs: 1,
        max_put_attempts: 4,
        put_backoff_base_ms: 1,
        ..KinesisConfig::default()
    };
    let log = KinesisLog::connect(&cfg).await.unwrap();
    suite(&log).await;
}
