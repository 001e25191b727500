//! One row per shard: sequence numbers, lag, a records/s sparkline, idle state; totals below.

use ecom_model::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    // Under shard leases the fleet has a panel of its own: instances, leases, lag per shard.
    let fleet_rows = snap
        .stream
        .as_ref()
        .and_then(|s| s.fleet.as_ref())
        .map_or(0, |f| f.leases.len() as u16 + 3);
    let [table, fleet, totals] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(fleet_rows.min(area.height / 2)),
        Constraint::Length(5),
    ])
    .areas(area);
    let Some(st) = &snap.stream else {
        frame.render_widget(
            Paragraph::new("no stream status yet").block(Block::bordered().title(" Shards ")),
            area,
        );
        return;
    };
    let idle: std::collections::BTreeMap<&str, bool> = st
        .watermarks
        .shards
        .iter()
        .map(|(s, _, idle)| (s.as_str(), *idle))
        .collect();
    let spark_w = (area.width as usize).saturating_sub(72).clamp(4, 40);
    // Wide: records/s and lag over time side by side; the header says how many samples.
    let lag_w = if spark_w >= 20 { spark_w / 2 } else { 0 };
    let spark_w = spark_w - lag_w;
    let samples = snap
        .history
        .shard_rates
        .values()
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let shards = app.shards(snap);
    let rows: Vec<Row> = shards
        .iter()
        .map(|s| {
            let rates = snap.history.shard_rates.get(&s.shard);
            let last = rates.and_then(|r| r.last()).copied().unwrap_or(0);
            let lag_style = if s.lag_ms > 60_000 {
                theme.bad()
            } else if s.lag_records > 0 {
                theme.warn()
            } else {
                theme.normal()
            };
            let state = if s.closed {
                "closed"
            } else if idle.get(s.shard.as_str()).copied().unwrap_or(true) {
                "idle"
            } else {
                "active"
            };
            Row::new(vec![
                Cell::from(s.shard.clone()),
                Cell::from(s.latest_seq.map_or("-".into(), |v| v.to_string())),
                Cell::from(s.checkpoint.map_or("-".into(), |v| v.to_string())),
                // Kinesis cannot count the records behind: an estimate says so.
                Cell::from(if s.lag_estimated {
                    format!("≈{}", fmt::count(s.lag_records))
                } else {
                    fmt::count(s.lag_records)
                })
                .style(lag_style),
                Cell::from(ecom_model::metrics::display(
                    "shard_lag_ms",
                    s.lag_ms as f64,
                    "Milliseconds",
                ))
                .style(lag_style),
                Cell::from(fmt::count(last)),
                Cell::from(fmt::sparkline(
                    &rates.map_or(Vec::new(), |r| {
                        r.iter().map(|v| (*v).min(i64::MAX as u64) as i64).collect()
                    }),
                    spark_w,
                )),
                Cell::from(fmt::sparkline(
                    &snap
                        .history
                        .shard_lag_ms
                        .get(&s.shard)
                        .map_or(Vec::new(), |r| {
                            r.iter().map(|v| (*v).min(i64::MAX as u64) as i64).collect()
                        }),
                    lag_w,
                )),
                // Only Kinesis throttles; the local log has nothing to count.
                Cell::from(if st.backend == "kinesis" {
                    fmt::count(s.read_throttles)
                } else {
                    "-".into()
                })
                .style(if s.read_throttles > 0 {
                    theme.warn()
                } else {
                    theme.normal()
                }),
                Cell::from(state),
            ])
        })
        .collect();
    super::table(
        frame,
        table,
        format!(
            " Shards ({}, backend {}; by {}, s sorts) ",
            shards.len(),
            st.backend,
            app.sort_name().unwrap_or("shard")
        ),
        &[
            "shard",
            "latest",
            "committed",
            "lag rec",
            "lag time",
            "rec/s",
            &format!("rate, last {samples}"),
            &format!("lag, last {samples}"),
            "thr",
            "state",
        ],
        rows,
        &[
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(spark_w as u16),
            Constraint::Length(lag_w as u16),
            Constraint::Length(3),
            Constraint::Length(6),
        ],
        Some(app.selected()),
        theme,
    );
    if let Some(f) = &st.fleet {
        draw_fleet(frame, fleet, f, st, theme);
    }
    let t = &st.totals;
    let d = &st.dedup;
    let lines = vec![
        Line::raw(format!(
            "consumer: {} records, {} staged, {} duplicates, {} late, {} quarantined, {} segments",
            fmt::count(t.records),
            fmt::count(t.staged),
            fmt::count(t.duplicates),
            fmt::count(t.late),
            fmt::count(t.quarantined),
            fmt::count(st.segments)
        )),
        Line::raw(format!(
            "producer: {} records written across {} shards (latest sequence numbers)",
            fmt::count(st.shards.iter().filter_map(|s| s.latest_seq).sum()),
            st.shards.len()
        )),
        Line::raw(format!(
            "dedup: {} seen, {} duplicates, {} ids tracked, {} evicted early",
            fmt::count(d.seen),
            fmt::count(d.duplicates),
            fmt::count(d.tracked),
            fmt::count(d.evicted_early)
        )),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Totals ")),
        totals,
    );
}

/// The Fleet panel: each lease's owner (this instance marked), counter, age, checkpoint and lag
/// where this instance reads it; an expired lease in red (its owner stopped renewing).
fn draw_fleet(
    frame: &mut Frame,
    area: Rect,
    f: &ecom_model::stream::FleetStatus,
    st: &ecom_model::stream::StreamStatus,
    theme: &Theme,
) {
    let lag: std::collections::BTreeMap<&str, u64> = st
        .shards
        .iter()
        .map(|s| (s.shard.as_str(), s.lag_ms))
        .collect();
    let rows: Vec<Row> = f
        .leases
        .iter()
        .map(|l| {
            let mine = l.owner.as_deref() == Some(f.worker.as_str());
            let (state, style) = if l.finished {
                ("finished", theme.normal())
            } else if l.owner.is_none() {
                ("free", theme.warn())
            } else if l.expired {
                ("expired", theme.bad())
            } else if mine {
                ("held here", theme.ok())
            } else {
                ("held", theme.normal())
            };
            Row::new(vec![
                Cell::from(l.shard.clone()),
                Cell::from(l.owner.clone().unwrap_or_else(|| "-".into())),
                Cell::from(l.counter.to_string()),
                Cell::from(ecom_model::metrics::display(
                    "lease_age_ms",
                    l.age_ms as f64,
                    "Milliseconds",
                )),
                Cell::from(l.checkpoint.map_or("-".into(), |c| c.to_string())),
                Cell::from(lag.get(l.shard.as_str()).map_or("-".into(), |ms| {
                    ecom_model::metrics::display("shard_lag_ms", *ms as f64, "Milliseconds")
                })),
                Cell::from(state).style(style),
            ])
        })
        .collect();
    let live = f.instances().iter().filter(|(_, s)| !s.is_empty()).count();
    let lost = match &f.last_lost {
        Some(l) => format!(
            "; lost {} lease{} (last {} at {})",
            f.lost,
            if f.lost == 1 { "" } else { "s" },
            l.shard,
            l.at.format("%H:%M:%S UTC")
        ),
        None => String::new(),
    };
    super::table(
        frame,
        area,
        format!(
            " Fleet: {live} instance{} holding leases on {}; this one, {}, holds {} shard{}{lost} ",
            if live == 1 { "" } else { "s" },
            f.table,
            f.worker,
            f.owned().len(),
            if f.owned().len() == 1 { "" } else { "s" },
        ),
        &[
            "shard",
            "owner",
            "counter",
            "age",
            "committed",
            "lag",
            "state",
        ],
        rows,
        &[
            Constraint::Length(22),
            Constraint::Length(24),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(20),
            Constraint::Length(8),
            Constraint::Length(9),
        ],
        None,
        theme,
    );
}
