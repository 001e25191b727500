//! The one dispatcher: in read-only mode (the instance's, or the asking client's) every mutating
//! command is refused and audited as refused; a writable instance audits what it did, with who
//! asked and from where, in `ops.audit` and the audit file.

use ecom_pipeline::audit;
use ecom_pipeline::command::{Command, Origin};
use ecom_pipeline::config::Config;
use ecom_pipeline::orchestrator::{LogBuffer, Pipeline, PipelineOptions};
use ecom_pipeline::snapshot::RunMode;

fn mutating() -> Vec<Command> {
    vec![
        Command::RunCycle,
        Command::Pause,
        Command::Resume,
        Command::BatchRun {
            task: None,
            only: None,
            run_id: None,
            window: None,
        },
        Command::IngestFile {
            path: "/nonexistent.ndjson".into(),
        },
        Command::Replay {
            shard: "shard-0000".into(),
            from_seq: Some(1),
            from_time: None,
        },
        Command::Backfill {
            from: "2026-11-01".parse().unwrap(),
            to: "2026-11-02".parse().unwrap(),
        },
        Command::Retry {
            run_id: "r1".into(),
            task: None,
        },
        Command::Prune { dry_run: false },
        Command::Lifecycle { apply: true },
        Command::Reprocess,
        Command::Snooze {
            scenario: ecom_pipeline::failures::Scenario::LateEvents,
            minutes: 60,
        },
    ]
}

fn origin(read_only: bool) -> Origin {
    Origin {
        user: "oncall".into(),
        ssh_connection: Some("10.1.2.3 50000 10.1.2.4 22".into()),
        via: "dashboard".into(),
        read_only,
    }
}

async fn open(dir: &std::path::Path, read_only: bool) -> Pipeline {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let options = PipelineOptions {
        mode: RunMode::Oneshot,
        read_only,
        schedule: false,
        log: LogBuffer::default(),
    };
    Pipeline::open(config, options).await.unwrap()
}

#[tokio::test]
async fn read_only_refuses_and_audits_every_mutating_command() {
    // Every variant must be listed above: a new mutating command fails this match first.
    for c in mutating() {
        match c {
            Command::RunCycle
            | Command::Pause
            | Command::Resume
            | Command::BatchRun { .. }
            | Command::IngestFile { .. }
            | Command::Replay { .. }
            | Command::Backfill { .. }
            | Command::Retry { .. }
            | Command::Prune { dry_run: false }
            | Command::Lifecycle { apply: true }
            | Command::Reprocess
            | Command::Snooze { .. } => assert!(c.is_mutating()),
            Command::Refresh
            | Command::Metrics
            | Command::Trends { .. }
            | Command::CategoryTrends { .. }
            | Command::Quarantine { .. }
            | Command::Verify
            | Command::Cost
            | Command::Prune { dry_run: true }
            | Command::Lifecycle { apply: false } => unreachable!(),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // A writable run first, so there is data a mutating command could have changed.
    let mut p = open(&dir, false).await;
    assert!(p.dispatch(Command::RunCycle, &origin(false)).await.ok);
    drop(p);
    let before = audit::recent(&dir, 1000).len();

    let mut p = open(&dir, true).await;
    for c in mutating() {
        let o = p.dispatch(c.clone(), &origin(false)).await;
        assert!(!o.ok && o.message.starts_with("refused"), "{c:?}: {o:?}");
    }
    // Read-only commands still answer.
    assert!(p.dispatch(Command::Metrics, &origin(false)).await.ok);
    let records = audit::recent(&dir, 1000);
    let refused: Vec<_> = records[before..].iter().collect();
    assert_eq!(
        refused.len(),
        mutating().len(),
        "one record per refused command"
    );
    for (r, c) in refused.iter().zip(mutating()) {
        assert_eq!(r.action, c.name());
        assert_eq!(r.outcome, "refused");
        assert_eq!(r.user, "oncall");
        assert_eq!(
            r.ssh_connection.as_deref(),
            Some("10.1.2.3 50000 10.1.2.4 22")
        );
        assert_eq!(r.arguments, serde_json::to_string(&c).unwrap());
    }
    let snap = p.snapshot();
    assert_eq!(
        snap.recent_actions.last().map(|r| r.outcome.as_str()),
        Some("refused")
    );
}

#[tokio::test]
async fn a_read_only_client_is_refused_by_a_writable_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut p = open(&dir, false).await;
    for c in mutating() {
        let o = p.dispatch(c.clone(), &origin(true)).await;
        assert!(
            o.message.contains("the asking client is read-only"),
            "{c:?}: {o:?}"
        );
    }
    assert!(audit::recent(&dir, 100)
        .iter()
        .all(|r| r.outcome == "refused"));
}

#[tokio::test]
async fn a_writable_instance_audits_to_the_ops_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut p = open(&dir, false).await;
    assert!(p.dispatch(Command::RunCycle, &origin(false)).await.ok);
    let o = p
        .dispatch(
            Command::Backfill {
                from: "2026-11-01".parse().unwrap(),
                to: "2026-11-02".parse().unwrap(),
            },
            &origin(false),
        )
        .await;
    assert!(o.ok, "{o:?}");
    let wh = p.warehouse().unwrap();
    let rows = wh
        .query("SELECT action, user_name, ssh_connection, via, outcome FROM ops.audit ORDER BY acted_at")
        .await
        .unwrap();
    let got: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| c.clone().unwrap_or_default()).collect())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0][0], "run_cycle");
    assert_eq!(
        got[1],
        vec![
            "backfill",
            "oncall",
            "10.1.2.3 50000 10.1.2.4 22",
            "dashboard",
            "ok"
        ]
    );
    // What each did, in words: the audit is read without the command's output at hand.
    let said = wh
        .query("SELECT message FROM ops.audit ORDER BY acted_at")
        .await
        .unwrap();
    let said: Vec<String> = said
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert!(said[0].starts_with("cycle 1 "), "{said:?}");
    assert!(
        said[1].starts_with("backfill 2026-11-01..2026-11-02: "),
        "{said:?}"
    );
}

/// A snooze is carried out by the instance, shown in its snapshot and audited; 0 lifts it.
#[tokio::test]
async fn a_snooze_is_shown_and_audited() {
    use ecom_pipeline::failures::Scenario;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut p = open(&dir, false).await;
    let snooze = |minutes| Command::Snooze {
        scenario: Scenario::LateEvents,
        minutes,
    };
    let o = p.dispatch(snooze(30), &origin(false)).await;
    assert!(
        o.ok && o.summary().contains("late events snoozed until"),
        "{o:?}"
    );
    let row = |p: &Pipeline| p.snapshot().failures[Scenario::LateEvents as usize].clone();
    assert!(row(&p).snoozed_until.is_some());
    assert!(p.dispatch(snooze(0), &origin(false)).await.ok);
    assert_eq!(row(&p).snoozed_until, None);
    let actions: Vec<String> = audit::recent(&dir, 10)
        .into_iter()
        .map(|r| format!("{} {}", r.action, r.outcome))
        .collect();
    assert_eq!(actions, ["snooze ok", "snooze ok"]);
}
