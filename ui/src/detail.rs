//! What `Enter` opens: the selected row of the current view in full, wrapped (a task's whole
//! error, a failure's history and the command that recovers it, a whole log line), and the
//! quarantine's records (`Q`, or `Enter` on the Overview).

use ecom_model::failures::FailureState;
use ecom_model::report::QuarantineReport;
use ecom_model::snapshot::Snapshot;

use crate::app::{App, Tab};
use crate::popup::Detail;

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or("-".into(), |t| {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

/// What each failure state means: what the system does, what the operator does, and when the
/// row returns to `ok`.
pub const STATE_LEGEND: &[(&str, &str)] = &[
    (
        "ok",
        "nothing seen; the row stays here until the condition is detected",
    ),
    (
        "detected",
        "seen this cycle; the pipeline starts its mitigation at once",
    ),
    (
        "mitigating",
        "the pipeline acts on its own (retries, skips, buffers, repairs)",
    ),
    (
        "needs operator",
        "it cannot finish alone: run the command shown (or its key)",
    ),
    (
        "recovering",
        "the fix is running (a retry, a backfill, a prune)",
    ),
    (
        "recovered",
        "done; shown until the next cycle, then the row reads ok again",
    ),
];

fn state_name(s: FailureState) -> String {
    format!("{s:?}").to_lowercase()
}

/// The selected row of the current view, whole; None when the view has no rows.
pub fn of_selection(app: &App, snap: &Snapshot) -> Option<Detail> {
    let i = app.selected();
    match app.tab {
        Tab::Overview | Tab::Costs | Tab::Trends => None,
        Tab::Stream | Tab::Watermarks => {
            let s = *app.shards(snap).get(i)?;
            let wm = snap
                .stream
                .as_ref()
                .and_then(|st| st.watermarks.shards.iter().find(|(n, _, _)| *n == s.shard));
            let mut lines = vec![
                format!("shard          {}", s.shard),
                format!(
                    "latest seq     {}",
                    s.latest_seq.map_or("-".into(), |v| v.to_string())
                ),
                format!(
                    "committed seq  {}",
                    s.checkpoint.map_or("-".into(), |v| v.to_string())
                ),
                format!(
                    "lag            {}{} records, {} behind the tip",
                    if s.lag_estimated { "≈" } else { "" },
                    s.lag_records,
                    ecom_model::metrics::display("lag", s.lag_ms as f64, "Milliseconds")
                ),
                format!("read throttles {}", s.read_throttles),
                format!(
                    "closed         {}",
                    if s.closed {
                        "yes (read to its end)"
                    } else {
                        "no"
                    }
                ),
            ];
            if let Some((_, ms, idle)) = wm {
                let t = chrono::DateTime::from_timestamp_millis(*ms);
                lines.push(format!(
                    "watermark      {}{}",
                    time(t),
                    if *idle { " (idle)" } else { "" }
                ));
            }
            // The sparklines' windows, with their ranges.
            let range = |v: Option<&Vec<u64>>, show: &dyn Fn(u64) -> String| match v {
                Some(v) if !v.is_empty() => format!(
                    "last {} samples: min {}, max {}, now {}",
                    v.len(),
                    show(*v.iter().min().unwrap_or(&0)),
                    show(*v.iter().max().unwrap_or(&0)),
                    show(*v.last().unwrap_or(&0))
                ),
                _ => "no samples yet".into(),
            };
            lines.push(format!(
                "rate           {}",
                range(snap.history.shard_rates.get(&s.shard), &|v| format!(
                    "{v} rec/s"
                ))
            ));
            lines.push(format!(
                "lag over time  {}",
                range(snap.history.shard_lag_ms.get(&s.shard), &|v| {
                    ecom_model::metrics::display("lag", v as f64, "Milliseconds")
                })
            ));
            lines.push(String::new());
            lines.push("p replays this shard (from a sequence number or a time).".into());
            Some(Detail::new(&format!("Shard {}", s.shard), lines))
        }
        Tab::Failures => {
            let rows: Vec<_> = snap
                .failures
                .iter()
                .filter(|f| app.matches(f.scenario.label()))
                .collect();
            let Some(f) = rows.get(i).copied() else {
                return alert(app, snap, i - rows.len());
            };
            let mut lines = vec![
                format!(
                    "state          {}{}",
                    state_name(f.state),
                    if f.expected {
                        " (expected: the configuration makes it normal)"
                    } else {
                        ""
                    }
                ),
                format!("episodes       {}", f.count),
                format!("first seen     {}", time(f.first_seen)),
                format!("last seen      {}", time(f.last_seen)),
                String::new(),
                format!("detection:  {}", f.detection),
                format!("mitigation: {}", f.mitigation),
                format!("recovery:   {}", f.recovery),
            ];
            if let Some(d) = &f.detail {
                lines.push(String::new());
                lines.push(format!("seen: {d}"));
            }
            if let Some(op) = &f.operator {
                lines.push(String::new());
                lines.push(format!("YOU: {op}"));
            }
            if !f.transitions.is_empty() {
                lines.push(String::new());
                lines.push("history:".into());
                for (t, s) in &f.transitions {
                    lines.push(format!("  {}  {}", time(Some(*t)), state_name(*s)));
                }
            }
            lines.push(String::new());
            lines.push("states:".into());
            for (s, what) in STATE_LEGEND {
                lines.push(format!("  {s:<15} {what}"));
            }
            Some(Detail::new(f.scenario.label(), lines))
        }
        Tab::Runs => {
            let run = *app.runs(snap).get(i)?;
            let mut lines = vec![
                format!("run            {}", run.run_id),
                format!(
                    "status         {}",
                    format!("{:?}", run.status).to_lowercase()
                ),
                format!("source         {}", run.source),
                format!(
                    "carts window   {}",
                    run.window
                        .map_or("all".into(), |(a, b)| format!("{a} .. {b}"))
                ),
                format!("created        {}", time(Some(run.created_at))),
                format!("started        {}", time(run.started_at)),
                format!("ended          {}", time(run.ended_at)),
                String::new(),
            ];
            for t in &run.tasks {
                lines.push(format!(
                    "{:<18} {:<16} started {} time(s)",
                    t.name.name(),
                    t.status.name(),
                    t.attempts
                ));
                if let Some(d) = &t.detail {
                    lines.push(format!("    {d}"));
                }
                if let Some(e) = &t.error {
                    lines.push(format!("    error: {e}"));
                }
            }
            lines.push(String::new());
            lines.push(format!(
                "R retries this run; l shows its log lines (Logs filtered by {}).",
                run.run_id
            ));
            Some(Detail::new(&format!("Run {}", run.run_id), lines))
        }
        Tab::Logs => {
            let l = *app.log_lines(snap).get(i)?;
            Some(Detail::new(
                "Log line",
                vec![
                    format!("{}  {}  {}", time(Some(l.time)), l.level, l.target),
                    String::new(),
                    l.message.clone(),
                ],
            ))
        }
    }
}

/// An alert rule, whole: its condition, the value now in its unit, since when.
fn alert(app: &App, snap: &Snapshot, i: usize) -> Option<Detail> {
    let a = *app.alerts(snap).get(i)?;
    let state = if a.firing {
        "FIRING"
    } else if a.pending_since.is_some() {
        "pending: the condition holds, not yet for the rule's duration"
    } else {
        "quiet: the condition does not hold"
    };
    Some(Detail::new(
        &format!("Alert {}", a.name),
        vec![
            format!("state          {state}"),
            format!(
                "severity       {}",
                format!("{:?}", a.severity).to_lowercase()
            ),
            format!("condition      {}", a.condition),
            format!(
                "value now      {}",
                a.value.map_or("-".into(), |v| {
                    ecom_model::metrics::display(&a.metric, v, &a.unit)
                })
            ),
            format!("holding since  {}", time(a.pending_since)),
            format!("firing since   {}", time(a.firing_since)),
            String::new(),
            "Rules are [[alerts]] in the config; with CloudWatch on, each is also an alarm on \
             the metric's maximum (alarm_actions notify)."
                .into(),
        ],
    ))
}

/// The quarantine's records view: counts per entity and field, then the newest records whole.
pub fn quarantine_lines(q: &QuarantineReport) -> Vec<String> {
    let mut lines = vec![format!(
        "{} refused record(s) in {} quarantine object(s)",
        q.records, q.objects
    )];
    if !q.by_reason.is_empty() {
        lines.push(String::new());
        lines.push(format!(
            "{:>9}  {:<12} {:<16} example reason",
            "records", "entity", "field"
        ));
        for r in &q.by_reason {
            lines.push(format!(
                "{:>9}  {:<12} {:<16} {}",
                r.count, r.entity, r.field, r.example
            ));
        }
    }
    if !q.late_pending.is_empty() {
        lines.push(String::new());
        let events: u64 = q.late_pending.iter().map(|(_, n)| n).sum();
        lines.push(format!(
            "late buffer: {events} event(s) on {} day(s) waiting for a backfill (ecomops backfill, b):",
            q.late_pending.len()
        ));
        for (day, n) in &q.late_pending {
            lines.push(format!("  {day}  {n} event(s)"));
        }
    }
    for r in &q.recent {
        lines.push(String::new());
        lines.push(format!(
            "{} {} ({}): {}",
            r.entity,
            r.field,
            time(r.written),
            r.reason
        ));
        lines.push(format!("  in {}", r.key));
        lines.push(format!("  {}", r.record));
    }
    lines
}
