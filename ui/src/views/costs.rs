//! Costs. The cost model (prices, month to date, projection, budget) has not landed; until it
//! does this view shows the measured volumes it will price, and says so.

use ecom_pipeline::snapshot::Snapshot;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, _app: &App, snap: &Snapshot, theme: &Theme) {
    let mut lines =
        vec![
        Line::styled(
            "No cost estimates in this build: prices and projections arrive with `ecomops cost`.",
            theme.warn(),
        ),
        Line::raw(""),
        Line::styled("Measured volumes (what the estimates will price):", theme.title()),
    ];
    for z in &snap.zones {
        if let Some(zone) = z.zone {
            lines.push(Line::raw(format!(
                "  S3 {:<11} {:>10} in {} objects",
                zone.name(),
                fmt::bytes(z.bytes),
                fmt::count(z.objects)
            )));
        }
    }
    if let Some(st) = &snap.stream {
        lines.push(Line::raw(format!(
            "  stream ({})  {} shards, {} records consumed",
            st.backend,
            st.shards.len(),
            fmt::count(st.totals.records)
        )));
    }
    if let Some(w) = &snap.warehouse {
        let rows: i64 = w.tables.iter().map(|(_, n)| *n).sum();
        lines.push(Line::raw(format!(
            "  warehouse ({})  {} tables, {} rows, {} files in the ledger",
            w.backend,
            w.tables.len(),
            fmt::count(rows.max(0) as u64),
            fmt::count(w.ledger_files.max(0) as u64)
        )));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Costs ")),
        area,
    );
}
