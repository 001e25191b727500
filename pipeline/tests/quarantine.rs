//! The quarantine in view and judged again: `quarantine` counts refused records by entity and
//! field and shows the newest whole (filtered by reason); `reprocess` loads the quarantined
//! events the current rules accept, once, and `verify` stays clean.

use std::path::Path;

use ecom_pipeline::command::{Command, CommandOutcome, Origin, Report};
use ecom_pipeline::config::Config;
use ecom_pipeline::orchestrator::Pipeline;

mod support {
    pub mod engine;
}

use support::engine::origin;

async fn open(dir: &Path, skew_secs: u64) -> Pipeline {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.stream.watermark.max_future_skew_secs = skew_secs;
    support::engine::open(config).await
}

fn event(id: &str, ahead_secs: i64, event_type: &str) -> String {
    let t = chrono::Utc::now() + chrono::Duration::seconds(ahead_secs);
    serde_json::json!({
        "event_id": id, "user_id": 1, "product_id": 2, "event_type": event_type,
        "event_time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "session_id": "s-1",
    })
    .to_string()
}

async fn staged_events(p: &Pipeline) -> i64 {
    let rows = p
        .warehouse()
        .unwrap()
        .query("SELECT COUNT(*) FROM staging.events")
        .await
        .unwrap();
    rows[0][0].as_deref().unwrap().parse().unwrap()
}

fn quarantine(o: &CommandOutcome) -> &ecom_pipeline::quarantine::QuarantineReport {
    match &o.report {
        Some(Report::Quarantine(q)) => q,
        _ => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn quarantined_records_are_shown_by_reason_and_reprocessed_once_after_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = open(tmp.path(), 60).await;
    let file = tmp.path().join("events.ndjson");
    let lines = [
        event("good-1", -60, "product_view"),
        event("good-2", -50, "add_to_cart"),
        "{\"event_id\": \"broken".to_string(),
        // Four minutes ahead of its arrival: over the 60 s this process allows.
        event("ahead-1", 240, "purchase"),
        event("refund-1", -40, "refund"),
    ];
    let mut body = (lines.join("\n") + "\n").into_bytes();
    // Not UTF-8: quarantined, and kept only as a lossy copy, which is never loaded.
    body.extend_from_slice(
        event("bytes-1", -30, "product_view")
            .replace("bytes-1", "bytes-\u{1}")
            .as_bytes(),
    );
    let at = body.len() - body.iter().rev().position(|b| *b == 1).unwrap() - 1;
    body[at] = 0xff;
    body.push(b'\n');
    std::fs::write(&file, body).unwrap();
    let o = p
        .dispatch(Command::IngestFile { path: file }, &origin())
        .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(staged_events(&p).await, 2);

    let o = p
        .dispatch(
            Command::Quarantine {
                reason: None,
                limit: 10,
            },
            &origin(),
        )
        .await;
    let q = quarantine(&o);
    assert_eq!(q.records, 4, "{q:?}");
    let fields: Vec<&str> = q.by_reason.iter().map(|r| r.field.as_str()).collect();
    assert!(
        fields.contains(&"event_time") && fields.contains(&"event_type"),
        "{q:?}"
    );
    assert!(q.by_reason.iter().all(|r| r.entity == "events"));
    assert_eq!(q.recent.len(), 4);
    assert!(q.recent.iter().any(|r| r.record.contains("broken")));

    let o = p
        .dispatch(
            Command::Quarantine {
                reason: Some("EVENT_TIME".into()),
                limit: 1,
            },
            &origin(),
        )
        .await;
    let q = quarantine(&o);
    assert_eq!((q.records, q.recent.len()), (1, 1), "{q:?}");
    assert!(q.recent[0].record.contains("ahead-1"));
    assert!(q.recent[0].reason.contains("ahead of its arrival"), "{q:?}");

    // The fix: the default skew (300 s). Reprocess accepts the event that was ahead, once.
    drop(p);
    let mut p = open(tmp.path(), 300).await;
    for round in 0..2 {
        let o = p.dispatch(Command::Reprocess, &origin()).await;
        let Some(Report::Reprocess(r)) = &o.report else {
            panic!("{o:?}")
        };
        assert_eq!(
            (r.examined, r.accepted, r.still_refused),
            (4, 1, 3),
            "round {round}: {r:?}"
        );
        assert_eq!(staged_events(&p).await, 3, "round {round}");
    }
    let v = p.dispatch(Command::Verify, &origin()).await;
    assert!(v.ok, "{v:?}");
    // A read-only client may look but not reprocess.
    let ro = Origin {
        read_only: true,
        ..origin()
    };
    assert!(!p.dispatch(Command::Reprocess, &ro).await.ok);
    assert!(
        p.dispatch(
            Command::Quarantine {
                reason: None,
                limit: 1
            },
            &ro
        )
        .await
        .ok
    );
}
