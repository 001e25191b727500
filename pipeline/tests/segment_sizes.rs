//! The load is a function of the events, not of how they were cut: the same file ingested in
//! segments of any size gives the same warehouse tables, and ingesting it a second time
//! changes nothing (issue "warehouse load at stream speed": the load path may batch segments,
//! this holds it to the same result).

use ecom_pipeline::command::Command;
use ecom_pipeline::config::Config;
use ecom_pipeline::warehouse::TextRows;

mod support {
    pub mod engine;
}

use support::engine::{open, origin};

/// 400 events over a quarter of an hour with resends (the same event_id again), disorder within the
/// allowed lateness, a few events far behind (late), and a malformed line.
fn workload() -> String {
    let t0 = chrono::Utc::now() - chrono::Duration::hours(3);
    let mut lines = Vec::new();
    let types = ["product_view", "add_to_cart", "checkout", "purchase"];
    for i in 0..400i64 {
        // Mostly in order, with a jitter of up to two minutes.
        let jitter = (i * 7919) % 120 - 60;
        let mut t = t0 + chrono::Duration::seconds(i * 2 + jitter);
        if i % 100 == 99 {
            // Far behind the watermark: late.
            t -= chrono::Duration::hours(1);
        }
        let line = serde_json::json!({
            "event_id": format!("e{i:05}"),
            "user_id": 1 + i % 37,
            "product_id": 1 + i % 11,
            "event_type": types[(i % 4) as usize],
            "event_time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "session_id": format!("s{}", i / 9),
        })
        .to_string();
        lines.push(line.clone());
        if i % 97 == 0 {
            lines.push(line); // a resend
        }
        if i == 123 {
            lines.push("{\"event_id\": \"broken".into());
        }
    }
    lines.join("\n") + "\n"
}

const TABLES: [&str; 4] = [
    "SELECT event_id, user_id, product_id, event_type, CAST(event_time AS VARCHAR), session_id \
     FROM staging.events ORDER BY event_id",
    "SELECT CAST(day AS VARCHAR), sessions, viewed, carted, checked_out, purchased \
     FROM curated.daily_funnel ORDER BY day",
    "SELECT CAST(COUNT(*) AS BIGINT) FROM curated.fct_events",
    "SELECT CAST(SUM(records) AS BIGINT), CAST(SUM(staged) AS BIGINT), \
     CAST(SUM(duplicates) AS BIGINT), CAST(SUM(late) AS BIGINT), \
     CAST(SUM(quarantined) AS BIGINT) FROM ops.segments",
];

async fn tables_after_ingesting(
    file: &std::path::Path,
    segment_records: u32,
    segments_per_commit: u32,
) -> Vec<TextRows> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.stream.segment_records = segment_records;
    config.stream.segments_per_commit = segments_per_commit;
    config.stream.generator.enabled = false;
    let mut p = open(config).await;
    let mut read = Vec::new();
    for round in 0..2 {
        let o = p
            .dispatch(
                Command::IngestFile {
                    path: file.to_path_buf(),
                },
                &origin(),
            )
            .await;
        assert!(
            o.ok,
            "segments of {segment_records} ({segments_per_commit} a transaction), round {round}: {o:?}"
        );
        let wh = p.warehouse().unwrap().clone();
        let mut tables = Vec::new();
        for sql in TABLES {
            tables.push(wh.query(sql).await.unwrap());
        }
        read.push(tables);
    }
    assert_eq!(read[0], read[1], "the same file twice changes nothing");
    let v = p.dispatch(Command::Verify, &origin()).await;
    assert!(v.ok, "segments of {segment_records}: {v:?}");
    read.swap_remove(0)
}

#[tokio::test]
async fn any_segment_size_and_the_same_file_twice_give_the_same_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("events.ndjson");
    std::fs::write(&file, workload()).unwrap();
    let reference = tables_after_ingesting(&file, 10_000, 1).await;
    // Every distinct id once (a file is judged against the watermarks from before it, so
    // none of it is late; the resends are duplicates, the broken line quarantined).
    assert_eq!(reference[0].len(), 400);
    let counts = &reference[3][0];
    assert_eq!(counts[2].as_deref(), Some("5"), "duplicates: {counts:?}");
    assert_eq!(counts[4].as_deref(), Some("1"), "quarantined: {counts:?}");
    // Down to three records a segment, one to all of them a transaction (the smallest sizes
    // one a transaction are slow in a debug build).
    for (size, per_commit) in [(3, 1000), (5, 3), (17, 1), (128, 8)] {
        let got = tables_after_ingesting(&file, size, per_commit).await;
        for (i, (a, b)) in reference.iter().zip(&got).enumerate() {
            assert_eq!(
                a, b,
                "segments of {size}, {per_commit} a transaction: {}",
                TABLES[i]
            );
        }
    }
}
