//! Per-shard and global watermarks, allowed lateness, the late buffer and dirty partitions;
//! below them the ingestion delay per event day and the data-quality findings.

use ecom_model::snapshot::Snapshot;
use ecom_model::zone::Zone;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    let quality = snap.warehouse.as_ref().and_then(|w| w.quality.as_ref());
    // The delay table's days, its two finding lines, header and borders; at least the shards'
    // header and one row stay above it.
    let delay_rows = quality.map_or(0, |q| q.ingestion_delay.len().min(7)) as u16;
    let [summary, table, delay] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Min(4),
        Constraint::Length(if quality.is_some() { delay_rows + 5 } else { 0 }),
    ])
    .areas(area);
    if let Some(q) = quality {
        draw_quality(frame, delay, q, app, snap, theme);
    }
    let wm = snap.stream.as_ref().map(|s| &s.watermarks);
    let late_zone = snap.zones.iter().find(|z| z.zone == Some(Zone::Late));
    let global = wm.and_then(|w| w.global_ms);
    let lines = vec![
        Line::raw(format!(
            "global watermark: {}   ({})",
            global.map_or("- (no active shard)".into(), fmt::time_ms),
            global.map_or("lag -".into(), |g| {
                let behind = (app.now(snap).timestamp_millis() - g) / 1000;
                // Event times ahead of this clock (a producer's clock, or ours): say so, not "0s".
                if behind < 0 {
                    format!("AHEAD of this clock by {}", fmt::span_secs(-behind))
                } else {
                    format!("lag behind now: {}", fmt::span_secs(behind))
                }
            })
        )),
        Line::raw(format!(
            "out-of-orderness: {} ms   allowed lateness: {} ms",
            wm.map_or(0, |w| w.out_of_orderness_ms),
            wm.map_or(0, |w| w.allowed_lateness_ms)
        )),
        Line::raw(format!(
            "late events seen: {}   late buffer: {} objects, {}",
            fmt::count(wm.map_or(0, |w| w.late_events)),
            fmt::count(late_zone.map_or(0, |z| z.objects)),
            fmt::bytes(late_zone.map_or(0, |z| z.bytes))
        )),
        Line::raw(format!(
            "dirty partitions awaiting model refresh/backfill: {}",
            snap.warehouse.as_ref().map_or(0, |w| w.dirty_days)
        )),
        Line::styled(
            "b backfills a date range: late events loaded, days recomputed",
            theme.dim(),
        ),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Watermarks ")),
        summary,
    );
    let marks: std::collections::BTreeMap<&str, (i64, bool)> = wm
        .map(|w| {
            w.shards
                .iter()
                .map(|(s, m, idle)| (s.as_str(), (*m, *idle)))
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Row> = app
        .shards(snap)
        .iter()
        .map(|s| {
            let m = marks.get(s.shard.as_str());
            let behind = match (m, global) {
                (Some((m, _)), Some(g)) => fmt::span_secs((m - g) / 1000),
                _ => "-".into(),
            };
            Row::new(vec![
                Cell::from(s.shard.clone()),
                Cell::from(m.map_or("-".into(), |(m, _)| fmt::time_ms(*m))),
                Cell::from(behind),
                Cell::from(match m {
                    Some((_, true)) | None => "idle (not holding back)",
                    Some((_, false)) => "active",
                }),
            ])
        })
        .collect();
    super::table(
        frame,
        table,
        format!(
            " Per shard (by {}, s sorts) ",
            app.sort_name().unwrap_or("shard")
        ),
        &["shard", "watermark", "ahead of global", "state"],
        rows,
        &[
            Constraint::Length(12),
            Constraint::Length(16),
            Constraint::Length(16),
            Constraint::Min(0),
        ],
        Some(app.selected()),
        theme,
    );
}

/// Ingestion delay per event day (p50/p95/max of ingestion_time - event_time), then the
/// orphans and stale tables, if any.
fn draw_quality(
    frame: &mut Frame,
    area: Rect,
    q: &ecom_model::warehouse::Quality,
    app: &App,
    snap: &Snapshot,
    theme: &Theme,
) {
    if area.height == 0 {
        return;
    }
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| fmt::span_secs(v.round() as i64));
    let rows: Vec<Row> = q
        .ingestion_delay
        .iter()
        .take(7)
        .map(|d| {
            Row::new(vec![
                Cell::from(d.day.to_string()),
                Cell::from(fmt::count(d.events.max(0) as u64)),
                Cell::from(secs(d.p50_secs)),
                Cell::from(secs(d.p95_secs)),
                Cell::from(secs(d.max_secs)),
            ])
        })
        .collect();
    let orphans: Vec<String> = q
        .orphans
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let now = app.now(snap);
    let stale: Vec<String> = q
        .freshness
        .iter()
        .filter(|f| f.stale)
        .map(|f| format!("{} ({})", f.table, fmt::age(f.last_at, now)))
        .collect();
    let finding = |label: &str, items: &[String], ok: &str| {
        if items.is_empty() {
            Line::styled(format!(" {label}: {ok}"), theme.dim())
        } else {
            Line::styled(format!(" {label}: {}", items.join(", ")), theme.warn())
        }
    };
    let findings = vec![
        finding("orphans", &orphans, "none"),
        finding("stale", &stale, "every table within its freshness SLA"),
    ];
    let [area, below] = Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    frame.render_widget(Paragraph::new(findings), below);
    let title = match q.events_volume_drop {
        Some(d) if d > 0.0 => format!(
            " Ingestion delay per event day · events 24h {} ({:.0}% below the week before) ",
            fmt::count(q.events_last_24h.max(0) as u64),
            d * 100.0
        ),
        _ => " Ingestion delay per event day (ingestion_time - event_time) ".to_string(),
    };
    super::table(
        frame,
        area,
        title,
        &["day", "events", "p50", "p95", "max"],
        rows,
        &[
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Min(0),
        ],
        None,
        theme,
    );
}
