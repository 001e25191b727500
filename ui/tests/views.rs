//! insta snapshots of every view (and the overlays) at 80x24 and 160x48, from the
//! deterministic fixture, drawn on ratatui's TestBackend; plus small and odd sizes never panic.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ecom_ui::{draw, fixture, App, Effect, Tab};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn render(app: &App, snap: &ecom_model::snapshot::Snapshot, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, app, snap)).unwrap();
    term.backend().to_string()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

#[test]
fn every_view_at_both_sizes() {
    let snap = fixture::snapshot(6, 8);
    for (w, h) in [(80, 24), (160, 48)] {
        for tab in Tab::ALL {
            let mut app = App::new(false, true, false);
            app.tab = tab;
            insta::assert_snapshot!(
                format!("{}_{w}x{h}", tab.title().to_lowercase()),
                render(&app, &snap, w, h)
            );
        }
    }
}

#[test]
fn overlays() {
    let snap = fixture::snapshot(6, 8);
    let mut app = App::new(false, true, false);
    app.on_key(key('?'), &snap);
    insta::assert_snapshot!("help_80x24", render(&app, &snap, 80, 24));
    app.on_key(code(KeyCode::Esc), &snap);
    assert!(app.popup.is_none(), "any key closes the help");

    // Backfill: form, then the confirmation with focus on Cancel.
    app.on_key(key('b'), &snap);
    insta::assert_snapshot!("backfill_form_80x24", render(&app, &snap, 80, 24));
    app.on_key(code(KeyCode::Enter), &snap);
    insta::assert_snapshot!("backfill_confirm_80x24", render(&app, &snap, 80, 24));
    // Enter on the initial focus cancels.
    assert_eq!(app.on_key(code(KeyCode::Enter), &snap), Effect::Redraw);
    assert!(app.popup.is_none());

    // Replay from the Stream view takes the selected shard.
    app.on_key(key('2'), &snap);
    app.on_key(key('j'), &snap);
    app.on_key(key('p'), &snap);
    app.on_key(code(KeyCode::Enter), &snap);
    app.on_key(code(KeyCode::Tab), &snap);
    let e = app.on_key(code(KeyCode::Enter), &snap);
    assert_eq!(
        e,
        Effect::Dispatch(ecom_model::command::Command::Replay {
            shard: "shard-0001".into(),
            from_seq: Some(1),
            from_time: None
        })
    );
    assert_eq!(app.pending.as_deref(), Some("replay"));
    // Quitting while it runs asks first.
    assert_eq!(app.on_key(key('q'), &snap), Effect::Redraw);
    insta::assert_snapshot!("quit_confirm_80x24", render(&app, &snap, 80, 24));
}

#[test]
fn retry_confirms_the_failed_run_and_its_tasks() {
    let snap = fixture::snapshot(4, 8);
    let mut app = App::new(false, true, false);
    app.on_key(key('6'), &snap);
    app.on_key(key('j'), &snap);
    app.on_key(key('j'), &snap);
    app.on_key(key('R'), &snap);
    let shown = render(&app, &snap, 100, 30);
    assert!(
        shown.contains("Rerun the tasks of batch run 20261124T115498-0002"),
        "{shown}"
    );
    assert!(shown.contains("extract_products (failed)"), "{shown}");
    app.on_key(code(KeyCode::Right), &snap);
    assert_eq!(
        app.on_key(code(KeyCode::Enter), &snap),
        Effect::Dispatch(ecom_model::command::Command::Retry {
            run_id: "20261124T115498-0002".into(),
            task: None
        })
    );
}

#[test]
fn read_only_reaches_no_mutating_action() {
    let snap = fixture::snapshot(4, 8);
    for tab in Tab::ALL {
        let mut app = App::new(true, false, false);
        app.tab = tab;
        // Every printable key and the navigation keys, twice over (popups would open on the
        // first pass), then Enter everywhere: no effect may carry a mutating command.
        let keys: Vec<KeyEvent> = (0x20u8..0x7f)
            .map(|c| key(c as char))
            .chain([KeyCode::Enter, KeyCode::Tab, KeyCode::Right, KeyCode::Left].map(code))
            .collect();
        for _ in 0..2 {
            for k in &keys {
                if k.code == KeyCode::Char('q') {
                    continue;
                }
                if let Effect::Dispatch(c) = app.on_key(*k, &snap) {
                    assert!(!c.is_mutating(), "read-only dashboard dispatched {c:?}");
                }
            }
        }
    }
    let mut app = App::new(true, false, false);
    app.on_key(key('b'), &snap);
    assert!(app.popup.is_none());
    assert!(render(&app, &snap, 80, 24).contains("read-only: actions are disabled"));
}

#[test]
fn filter_narrows_tables() {
    let snap = fixture::snapshot(12, 8);
    let mut app = App::new(false, false, false);
    app.on_key(key('2'), &snap);
    for c in "/0011".chars() {
        app.on_key(key(c), &snap);
    }
    app.on_key(code(KeyCode::Enter), &snap);
    assert_eq!(app.rows(&snap), 1);
    let shown = render(&app, &snap, 100, 30);
    assert!(
        shown.contains("shard-0011") && !shown.contains("shard-0010"),
        "{shown}"
    );
}

#[test]
fn no_panic_at_any_size_and_no_colour_mode() {
    let snap = fixture::snapshot(64, 1000);
    for tab in Tab::ALL {
        for (w, h) in [
            (1, 1),
            (2, 3),
            (10, 5),
            (39, 7),
            (40, 8),
            (41, 9),
            (80, 24),
            (300, 100),
        ] {
            let mut app = App::new(false, false, false);
            app.tab = tab;
            render(&app, &snap, w, h);
            app.popup = Some(ecom_ui::popup::Popup::Help);
            render(&app, &snap, w, h);
        }
    }
}

/// Below 80x24 the views would cut what matters: the dashboard says so instead of clipping.
#[test]
fn too_small_says_so() {
    let snap = fixture::snapshot(6, 8);
    let app = App::new(false, true, false);
    insta::assert_snapshot!("too_small_60x20", render(&app, &snap, 60, 20));
}

/// The replay form takes a sequence number or a time, and says so when given both (it used to
/// ignore the number silently).
#[test]
fn the_replay_form_refuses_both_starts_at_once() {
    let snap = fixture::snapshot(6, 8);
    let mut app = App::new(false, true, false);
    app.on_key(key('2'), &snap);
    app.on_key(key('p'), &snap);
    // Shard, then sequence number (prefilled), then time.
    app.on_key(code(KeyCode::Tab), &snap);
    app.on_key(code(KeyCode::Tab), &snap);
    for c in "2026-11-24T08:00:00Z".chars() {
        app.on_key(key(c), &snap);
    }
    app.on_key(code(KeyCode::Enter), &snap);
    match &app.popup {
        Some(ecom_ui::popup::Popup::Form(f)) => {
            assert_eq!(
                f.error.as_deref(),
                Some("give a sequence number or a time, not both")
            )
        }
        other => panic!("the form should stay open with the reason: {other:?}"),
    }
}

/// The owner's `q` asks first (quitting stops ingestion); an attached dashboard just leaves.
#[test]
fn the_owner_asks_before_quitting() {
    let snap = fixture::snapshot(6, 8);
    let mut owner = App::new(false, true, false);
    assert_eq!(owner.on_key(key('q'), &snap), Effect::Redraw);
    insta::assert_snapshot!("owner_quit_80x24", render(&owner, &snap, 80, 24));
    owner.on_key(code(KeyCode::Tab), &snap);
    assert_eq!(owner.on_key(code(KeyCode::Enter), &snap), Effect::Quit);
    let mut attached = App::new(false, true, true);
    assert_eq!(attached.on_key(key('q'), &snap), Effect::Quit);
}

/// A watermark ahead of the clock says so (it used to read "lag 0s").
#[test]
fn a_watermark_in_the_future_is_called_ahead() {
    let mut snap = fixture::snapshot(6, 8);
    let ahead = fixture::now() + chrono::Duration::hours(2);
    snap.stream.as_mut().unwrap().watermarks.global_ms = Some(ahead.timestamp_millis());
    let mut app = App::new(false, true, true);
    app.tab = Tab::Watermarks;
    let shown = render(&app, &snap, 160, 48);
    assert!(shown.contains("AHEAD of this clock by"), "{shown}");
}

/// Alert rules are checked against the registry's names: every metric a snapshot carries (the
/// fixture has stream, batch, warehouse, data-quality and cost figures) must be one of them.
#[test]
fn every_metric_a_snapshot_carries_is_registered() {
    let snap = fixture::snapshot(6, 8);
    assert!(snap.metrics.iter().any(|p| p.name == "events_volume_drop"));
    for p in &snap.metrics {
        assert!(
            ecom_model::metrics::NAMES.contains(&p.name.as_str()),
            "{} is emitted but not in metrics::NAMES: an alert rule on it is refused",
            p.name
        );
    }
}

/// `Enter` opens the selected row whole: a run with its tasks' full errors (at 80x24 the Runs
/// table cuts them), a failure with its history and the states' legend; `l` goes from a run to
/// its log lines; the Overview's `Enter` (and `Q`) asks for the quarantine's records, which
/// open when the answer arrives.
#[test]
fn enter_opens_the_selected_row_and_the_quarantine() {
    use ecom_model::command::Command;
    use ecom_model::report::{QuarantineReport, QuarantinedRecord, ReasonCount, Report};
    let snap = fixture::snapshot(4, 8);
    let mut app = App::new(false, true, false);
    app.on_key(key('6'), &snap);
    let failed = app
        .runs(&snap)
        .iter()
        .position(|r| r.tasks.iter().any(|t| t.error.is_some()))
        .expect("the fixture has a failed run");
    for _ in 0..failed {
        app.on_key(key('j'), &snap);
    }
    assert_eq!(app.on_key(code(KeyCode::Enter), &snap), Effect::Redraw);
    let error = app.runs(&snap)[failed]
        .tasks
        .iter()
        .find_map(|t| t.error.clone())
        .unwrap();
    let screen = render(&app, &snap, 80, 24);
    insta::assert_snapshot!("run_detail_80x24", screen);
    let flat: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    let head: String = error
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(flat.contains(&head), "{head:?} not on screen");
    app.on_key(code(KeyCode::Esc), &snap);
    assert!(app.popup.is_none());
    // From the run to its log lines.
    let run_id = app.runs(&snap)[failed].run_id.clone();
    app.on_key(key('l'), &snap);
    assert_eq!((app.tab, app.filter.as_str()), (Tab::Logs, run_id.as_str()));

    app.on_key(key('4'), &snap);
    app.on_key(code(KeyCode::Enter), &snap);
    let screen = render(&app, &snap, 160, 48);
    insta::assert_snapshot!("failure_detail_160x48", screen);
    assert!(screen.contains("needs operator") && screen.contains("history:"));
    app.on_key(code(KeyCode::Esc), &snap);

    app.on_key(key('1'), &snap);
    let asked = Effect::Dispatch(Command::Quarantine {
        reason: None,
        limit: 50,
    });
    assert_eq!(app.on_key(code(KeyCode::Enter), &snap), asked);
    assert_eq!(app.on_key(key('Q'), &snap), asked);
    let q = QuarantineReport {
        objects: 2,
        records: 3,
        by_reason: vec![ReasonCount {
            entity: "events".into(),
            field: "event_time".into(),
            count: 2,
            example: "2026-11-20T10:00:00Z is 400s ahead of its arrival".into(),
        }],
        recent: vec![QuarantinedRecord {
            key: "quarantine/stream/events/shard=shard-0001/seg-1-9.ndjson".into(),
            entity: "events".into(),
            field: "event_time".into(),
            reason: "2026-11-20T10:00:00Z is 400s ahead of its arrival".into(),
            record: r#"{"event_id":"e-77","event_time":"2026-11-20T10:00:00Z"}"#.into(),
            written: None,
        }],
        late_pending: vec![(fixture::now().date_naive(), 12)],
    };
    app.answered(&Report::Quarantine(q));
    let screen = render(&app, &snap, 80, 24);
    insta::assert_snapshot!("quarantine_80x24", screen);
    insta::assert_snapshot!("quarantine_160x48", render(&app, &snap, 160, 48));
    assert!(screen.contains("e-77") && screen.contains("ahead of its arrival"));
    assert!(screen.contains("12 event(s) on 1 day(s) waiting for a backfill"));
    // It fits: nothing to scroll. Esc closes.
    app.on_key(key('j'), &snap);
    assert_eq!(render(&app, &snap, 80, 24), screen);
    app.on_key(code(KeyCode::Esc), &snap);
    assert!(app.popup.is_none());
    // Fifty records: j scrolls, G reaches the very last one, g the top again.
    let many = QuarantineReport {
        objects: 50,
        records: 50,
        recent: (0..50)
            .map(|i| QuarantinedRecord {
                key: format!("quarantine/stream/events/shard=shard-0000/seg-{i}.ndjson"),
                entity: "events".into(),
                field: "event_type".into(),
                reason: "unknown event type \"refund\"".into(),
                record: format!("{{\"event_id\":\"r-{i:02}\"}}"),
                written: None,
            })
            .collect(),
        ..QuarantineReport::default()
    };
    app.answered(&Report::Quarantine(many));
    let top = render(&app, &snap, 80, 24);
    assert!(top.contains("r-00") && !top.contains("r-49"));
    app.on_key(key('j'), &snap);
    assert_ne!(render(&app, &snap, 80, 24), top);
    app.on_key(key('G'), &snap);
    let end = render(&app, &snap, 80, 24);
    assert!(
        end.contains("r-49") && end.contains("Esc, Enter or q closes"),
        "{end}"
    );
    app.on_key(key('g'), &snap);
    assert_eq!(render(&app, &snap, 80, 24), top);
}

/// Attached and the instance gone: the header leads with DISCONNECTED and the time.
#[test]
fn a_disconnected_dashboard_says_so_first() {
    let snap = fixture::snapshot(4, 8);
    let mut app = App::new(false, true, true);
    app.disconnected_since = Some(fixture::now());
    let screen = render(&app, &snap, 80, 24);
    insta::assert_snapshot!("disconnected_80x24", screen);
    insta::assert_snapshot!("disconnected_160x48", render(&app, &snap, 160, 48));
    assert!(screen
        .lines()
        .next()
        .unwrap()
        .contains("DISCONNECTED since 12:00:00"));
}

/// `s` sorts the shard and run tables (the selection and Enter follow the order shown); `f`
/// pauses the log so new lines do not move it, and follows again.
#[test]
fn tables_sort_and_the_log_pauses() {
    let mut snap = fixture::snapshot(6, 8);
    let mut app = App::new(false, true, false);
    app.on_key(key('2'), &snap);
    let names = |app: &App, snap: &ecom_model::snapshot::Snapshot| -> Vec<String> {
        app.shards(snap).iter().map(|s| s.shard.clone()).collect()
    };
    let by_name = names(&app, &snap);
    app.on_key(key('s'), &snap);
    assert_eq!(app.sort_name(), Some("lag ms"));
    let lags: Vec<u64> = app.shards(&snap).iter().map(|s| s.lag_ms).collect();
    assert!(lags.windows(2).all(|w| w[0] >= w[1]), "{lags:?}");
    assert_ne!(names(&app, &snap), by_name);
    assert!(render(&app, &snap, 80, 24).contains("by lag ms, s sorts"));
    // The Watermarks view lists the shards in the same order.
    app.on_key(key('3'), &snap);
    assert_eq!(app.sort_name(), Some("lag ms"));

    app.on_key(key('6'), &snap);
    app.on_key(key('s'), &snap);
    assert_eq!(app.sort_name(), Some("failed first"));
    assert_eq!(
        app.runs(&snap)[0].status,
        ecom_model::batch::RunStatus::Failed
    );

    app.on_key(key('7'), &snap);
    let before = app.log_lines(&snap).len();
    app.on_key(key('f'), &snap);
    assert!(render(&app, &snap, 80, 24).contains("Log PAUSED at"));
    let mut late = snap.recent_log.last().unwrap().clone();
    late.time += chrono::Duration::seconds(5);
    late.message = "arrived after the pause".into();
    snap.recent_log.push(late);
    assert_eq!(
        app.log_lines(&snap).len(),
        before,
        "paused: the new line waits"
    );
    app.on_key(key('f'), &snap);
    assert_eq!(app.log_lines(&snap).len(), before + 1);
    assert!(render(&app, &snap, 160, 48).contains("arrived after the pause"));
}

/// `a` on a failure asks to snooze it for an hour (a mutating, audited command); on a snoozed
/// one, to lift it; read-only offers neither.
#[test]
fn a_failure_can_be_snoozed_after_a_confirmation() {
    use ecom_model::command::Command;
    use ecom_model::failures::Scenario;
    let mut snap = fixture::snapshot(4, 8);
    let mut app = App::new(false, true, false);
    app.on_key(key('4'), &snap);
    app.on_key(key('j'), &snap);
    app.on_key(key('j'), &snap);
    assert_eq!(app.on_key(key('a'), &snap), Effect::Redraw);
    let screen = render(&app, &snap, 80, 24);
    assert!(
        screen.contains("Acknowledge late events for 60 minutes"),
        "{screen}"
    );
    app.on_key(code(KeyCode::Tab), &snap);
    let e = app.on_key(code(KeyCode::Enter), &snap);
    assert_eq!(
        e,
        Effect::Dispatch(Command::Snooze {
            scenario: Scenario::LateEvents,
            minutes: 60
        })
    );
    app.finished_command("snooze", true, "late events snoozed".into());
    snap.failures[Scenario::LateEvents as usize].snoozed_until =
        Some(fixture::now() + chrono::Duration::minutes(60));
    let screen = render(&app, &snap, 80, 24);
    insta::assert_snapshot!("failures_snoozed_80x24", screen);
    insta::assert_snapshot!("failures_snoozed_160x48", render(&app, &snap, 160, 48));
    assert!(screen.contains("snoozed until 13:00"), "{screen}");
    app.on_key(key('a'), &snap);
    app.on_key(code(KeyCode::Tab), &snap);
    assert_eq!(
        app.on_key(code(KeyCode::Enter), &snap),
        Effect::Dispatch(Command::Snooze {
            scenario: Scenario::LateEvents,
            minutes: 0
        })
    );
    let mut ro = App::new(true, true, false);
    ro.on_key(key('4'), &snap);
    ro.on_key(key('a'), &snap);
    assert!(ro.popup.is_none());
}

/// Every row that opens, opened at both sizes: a shard (with its sparklines' windows and
/// ranges), a run, a failure, an alert (selected under the scenarios), a log line; and the log
/// wrapping its long lines (`w`).
#[test]
fn every_detail_at_both_sizes_and_the_log_wraps() {
    let mut snap = fixture::snapshot(4, 8);
    for (w, h) in [(80, 24), (160, 48)] {
        for (tab, downs, name) in [
            ('2', 1, "shard"),
            ('6', 2, "run"),
            ('4', 2, "failure"),
            ('4', 5, "alert"),
            ('7', 0, "log"),
        ] {
            let mut app = App::new(false, true, false);
            app.on_key(key(tab), &snap);
            for _ in 0..downs {
                app.on_key(key('j'), &snap);
            }
            assert_eq!(
                app.on_key(code(KeyCode::Enter), &snap),
                Effect::Redraw,
                "{name}"
            );
            let screen = render(&app, &snap, w, h);
            insta::assert_snapshot!(format!("detail_{name}_{w}x{h}"), screen);
            match name {
                "shard" => assert!(screen.contains("last 60 samples: min"), "{screen}"),
                "alert" => assert!(screen.contains("Alert ") && screen.contains("condition")),
                _ => {}
            }
        }
    }
    let mut long = snap.recent_log.last().unwrap().clone();
    long.time += chrono::Duration::seconds(1);
    long.message = format!("a long message {} THE END", "word ".repeat(40));
    snap.recent_log.push(long);
    let mut app = App::new(false, true, false);
    app.on_key(key('7'), &snap);
    assert!(!render(&app, &snap, 80, 24).contains("THE END"));
    app.on_key(key('w'), &snap);
    let screen = render(&app, &snap, 80, 24);
    insta::assert_snapshot!("logs_wrapped_80x24", screen);
    insta::assert_snapshot!("logs_wrapped_160x48", render(&app, &snap, 160, 48));
    assert!(screen.contains("THE END"), "{screen}");
}

/// Under shard leases the Stream view has a Fleet panel: every lease's owner (this instance's
/// marked "held here"), counter, age, committed checkpoint, lag where read here, an expired
/// lease named as such; the failure table gains its lost-lease row.
#[test]
fn the_fleet_panel_under_leases() {
    use ecom_model::stream::{FleetStatus, LeaseRow, LostLease};
    let mut snap = fixture::snapshot(6, 8);
    let generated = snap.generated_at;
    let stream = snap.stream.as_mut().unwrap();
    let shards: Vec<String> = stream.shards.iter().map(|s| s.shard.clone()).collect();
    let owners = ["w1", "w1", "w2", "w2", "w3", "w3"];
    stream.fleet = Some(FleetStatus {
        worker: "w1".into(),
        table: "ecomops-leases".into(),
        leases: shards
            .iter()
            .zip(owners.iter().chain(std::iter::repeat(&"w3")))
            .enumerate()
            .map(|(i, (s, o))| LeaseRow {
                shard: s.clone(),
                owner: (i != 5).then(|| o.to_string()),
                counter: 40 + i as u64,
                age_ms: if *o == "w3" { 45_000 } else { 1_200 },
                expired: *o == "w3" && i != 5,
                finished: false,
                checkpoint: Some(1_000 * i as u64),
            })
            .collect(),
        lost: 1,
        last_lost: Some(LostLease {
            shard: shards[2].clone(),
            at: generated,
        }),
    });
    let mut app = App::new(false, true, false);
    app.tab = Tab::Stream;
    insta::assert_snapshot!("stream_fleet_160x48", render(&app, &snap, 160, 48));
}
