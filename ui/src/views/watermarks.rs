//! Per-shard and global watermarks, allowed lateness, the late buffer and dirty partitions.

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
    let [summary, table] =
        Layout::vertical([Constraint::Length(7), Constraint::Min(3)]).areas(area);
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
        " Per shard ".into(),
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
