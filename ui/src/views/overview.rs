//! Zones, the four metrics with their trends, and overall health.

use ecom_model::snapshot::{Health, Snapshot};
use ecom_model::zone::Zone;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    let [top, bottom] = Layout::vertical([
        Constraint::Length(snap.zones.len() as u16 + 3),
        Constraint::Min(0),
    ])
    .areas(area);
    let now = app.now(snap);
    // CURATED is the models' tables and their daily files: the tables' rows go beside the
    // files (which lag a refresh, and are few: a file per day of each daily model).
    let curated_rows: i64 = snap
        .warehouse
        .as_ref()
        .map(|w| {
            w.tables
                .iter()
                .filter(|(t, _)| t.starts_with("curated."))
                .map(|(_, n)| n)
                .sum()
        })
        .unwrap_or(0);
    let errors = |z: Zone| -> String {
        match z {
            Zone::Quarantine => "refused records".into(),
            // The zone keeps backfilled events too: say how many days still wait.
            Zone::Late => match snap.late_pending_days.len() {
                0 => "all backfilled".into(),
                n => format!("{n} day(s) to backfill"),
            },
            Zone::Curated => format!("{} rows in tables", fmt::count(curated_rows as u64)),
            _ => String::new(),
        }
    };
    let rows: Vec<Row> = snap
        .zones
        .iter()
        .map(|z| {
            let zone = z.zone.unwrap_or(Zone::Raw);
            let fresh = z.last_write.map_or(i64::MAX, |t| (now - t).num_seconds());
            let fresh_style = if z.objects == 0 || fresh < 3600 {
                theme.normal()
            } else {
                theme.warn()
            };
            Row::new(vec![
                Cell::from(zone.name()),
                Cell::from(fmt::count(z.objects)),
                Cell::from(fmt::bytes(z.bytes)),
                Cell::from(fmt::time(z.last_write)),
                Cell::from(fmt::age(z.last_write, now)).style(fresh_style),
                Cell::from(
                    if z.objects > 0 || (zone == Zone::Curated && curated_rows > 0) {
                        errors(zone)
                    } else {
                        String::new()
                    },
                ),
            ])
        })
        .collect();
    super::table(
        frame,
        top,
        " Zones ".into(),
        &[
            "zone",
            "objects",
            "bytes",
            "last write",
            "freshness",
            "note",
        ],
        rows,
        &[
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Min(0),
        ],
        None,
        theme,
    );

    let [metrics, health_area] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(bottom);
    let h = &snap.history;
    // name 15 + value 12 + trend 11 + borders.
    let spark_w = (metrics.width as usize).saturating_sub(40).clamp(0, 30);
    let mut lines = Vec::new();
    match snap.warehouse.as_ref().and_then(|w| w.metrics.as_ref()) {
        Some(m) => {
            // Wide enough: each trend line with its range over the window.
            let ranged = metrics.width >= 90;
            let metric =
                |name: &str, value: String, series: &[i64], show: &dyn Fn(i64) -> String| {
                    let mut spans = vec![
                        Span::styled(format!("{name:<15}"), theme.title()),
                        Span::raw(format!("{value:>11} ")),
                        Span::styled(fmt::trendline(series, spark_w), theme.key()),
                        Span::raw(format!(" {}", fmt::trend(series))),
                    ];
                    if let (true, Some(lo), Some(hi)) =
                        (ranged, series.iter().min(), series.iter().max())
                    {
                        spans.push(Span::styled(
                            format!("  min {} max {}", show(*lo), show(*hi)),
                            theme.dim(),
                        ));
                    }
                    Line::from(spans)
                };
            let money = |c: i64| fmt::cents(c);
            let bp = |b: i64| format!("{:.2}%", b as f64 / 100.0);
            let count = |n: i64| fmt::count(n.max(0) as u64);
            lines.push(metric(
                "revenue",
                fmt::cents(m.revenue_cents),
                &h.revenue_cents,
                &money,
            ));
            lines.push(metric(
                "avg order value",
                m.avg_order_value_cents
                    .map_or("-".into(), |v| fmt::cents(v.round() as i64)),
                &h.avg_order_value_cents,
                &money,
            ));
            lines.push(metric(
                "conversion",
                m.conversion_rate
                    .map_or("-".into(), |v| format!("{:.2}%", v * 100.0)),
                &h.conversion_bp,
                &bp,
            ));
            lines.push(metric(
                "orders",
                fmt::count(m.orders.max(0) as u64),
                &h.orders,
                &count,
            ));
            lines.push(Line::raw(""));
            lines.push(Line::styled("funnel drop-off", theme.title()));
            for step in m.funnel_dropoff.iter().flatten() {
                lines.push(Line::raw(format!(
                    "  {} -> {}: {:.1}%",
                    step.from,
                    step.to,
                    step.dropoff * 100.0
                )));
            }
        }
        None => lines.push(Line::styled(
            "no warehouse yet: the first cycle creates it",
            theme.dim(),
        )),
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(
            " Metrics (trend: last {} refreshes; per day: 8) ",
            h.revenue_cents.len()
        ))),
        metrics,
    );

    // Derived by the core (`ecom_model::derive::health`), so `status` shows the same.
    let label = snap.health.label();
    let style = match snap.health {
        Health::Healthy => theme.ok(),
        Health::Degraded => theme.warn(),
        Health::NeedsAttention => theme.bad(),
    };
    let mut lines = vec![Line::styled(label, style)];
    // The one thing to do first (ranked by the core), before the table of states.
    match &snap.next_action {
        Some(next) => lines.push(Line::styled(format!("NEXT: {next}"), theme.bad())),
        None => lines.push(Line::styled("nothing to do", theme.dim())),
    }
    lines.push(Line::raw(""));
    for f in &snap.failures {
        let st = theme.failure(f.state);
        lines.push(Line::from(vec![
            Span::raw(format!("{:<15}", f.scenario)),
            // Full words: the state never depends on colour alone.
            Span::styled(f.state.label(), st),
            // What the configuration makes normal is shown, not counted (see `health`).
            Span::styled(
                if f.expected {
                    " (expected)".to_string()
                } else {
                    match f.snoozed_until {
                        Some(t) if t > app.now(snap) => {
                            format!(" (snoozed until {})", t.format("%H:%M"))
                        }
                        _ => String::new(),
                    }
                },
                theme.dim(),
            ),
        ]));
    }
    if let Some(c) = &snap.last_cycle {
        lines.push(Line::raw(""));
        lines.push(Line::raw(format!(
            "cycle {} {} at {}",
            c.cycle,
            if c.ok { "ok" } else { "failed" },
            c.finished_at.format("%H:%M:%S")
        )));
        if let Some(e) = &c.error {
            lines.push(Line::styled(e.as_str(), theme.bad()));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::bordered().title(" Health ")),
        health_area,
    );
}
