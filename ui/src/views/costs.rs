//! Costs per service (month to date and projected, against the budget), what the lifecycle
//! rules would save, and the metrics registry the estimates and alerts are built from.

use ecom_model::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    let Some(c) = &snap.cost else {
        frame.render_widget(
            Paragraph::new("no cost estimate yet (the first statistics refresh makes one)")
                .block(Block::bordered().title(" Costs ")),
            area,
        );
        return;
    };
    // The cost lines take what the budget pane and a few registry rows leave; when they do
    // not all fit, the most expensive are shown (the title says how many are left out).
    let room = area.height.saturating_sub(5 + 6).max(4);
    let lines_h = (c.lines.len() as u16 + 3).min(room);
    let shown = lines_h.saturating_sub(3) as usize;
    let mut priced: Vec<&ecom_model::cost::CostLine> = c.lines.iter().collect();
    if shown < priced.len() {
        priced.sort_by(|a, b| b.projected_usd.total_cmp(&a.projected_usd));
        priced.truncate(shown);
    }
    let hidden = c.lines.len() - priced.len();
    let [table, summary, registry] = Layout::vertical([
        Constraint::Length(lines_h),
        Constraint::Length(5),
        Constraint::Min(3),
    ])
    .areas(area);
    let usd = |v: f64| {
        if v < 10.0 {
            format!("${v:.4}")
        } else {
            format!("${v:.2}")
        }
    };
    let rows: Vec<Row> = priced
        .iter()
        .map(|l| {
            let on = c.on_aws.get(&l.service).copied().unwrap_or(false);
            Row::new(vec![
                Cell::from(format!("{}{}", l.service, if on { "" } else { "*" })),
                Cell::from(l.item.clone()),
                Cell::from(format!("{:.3} {}", l.quantity, l.unit)),
                Cell::from(usd(l.month_to_date_usd)),
                Cell::from(usd(l.projected_usd)),
            ])
        })
        .collect();
    super::table(
        frame,
        table,
        if hidden == 0 {
            format!(" Costs {} (prices {}) ", c.month, c.prices_as_of)
        } else {
            format!(
                " Costs {} (prices {}; {} largest of {}) ",
                c.month,
                c.prices_as_of,
                priced.len(),
                c.lines.len()
            )
        },
        &["service", "item", "quantity", "to date", "projected"],
        rows,
        &[
            Constraint::Length(11),
            Constraint::Length(26),
            Constraint::Length(24),
            Constraint::Length(10),
            Constraint::Min(10),
        ],
        None,
        theme,
    );
    let budget_style = if c.over_budget {
        theme.bad()
    } else {
        theme.ok()
    };
    let lines = vec![
        Line::styled(
            format!(
                // The budget is held against what is billed on AWS (or all of it, with
                // cost.budget_covers_local): that figure, not the projection, beside it.
                "to date {}, projected {}; budgeted {} of {}: {}",
                usd(c.month_to_date_usd),
                usd(c.projected_usd),
                usd(c.projected_on_aws_usd),
                usd(c.budget_usd),
                if c.over_budget { "OVER BUDGET" } else { "within budget" }
            ),
            budget_style,
        ),
        Line::raw(format!(
            "lifecycle rules would save {}/month: {} to expire, {} to Standard-IA, {} to Glacier IR",
            usd(c.saving.usd_month),
            fmt::bytes(c.saving.expirable_bytes),
            fmt::bytes(c.saving.ia_bytes),
            fmt::bytes(c.saving.glacier_bytes)
        )),
        Line::styled(
            "* not on AWS here: the same volume priced on AWS",
            theme.dim(),
        ),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Budget ")),
        summary,
    );
    let visible = registry.height.saturating_sub(3) as usize;
    let points: Vec<_> = snap
        .metrics
        .iter()
        .filter(|p| app.matches(&p.name))
        .take(visible.max(1))
        .collect();
    let rows: Vec<Row> = points
        .iter()
        .map(|p| {
            let dims: Vec<String> = p.dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Row::new(vec![
                Cell::from(p.name.clone()),
                Cell::from(dims.join(",")),
                Cell::from(ecom_model::metrics::display(&p.name, p.value, &p.unit)),
                Cell::from(p.unit.clone()),
            ])
        })
        .collect();
    super::table(
        frame,
        registry,
        format!(
            " Metrics registry ({} points; / filters) ",
            snap.metrics.len()
        ),
        &["metric", "dimensions", "value", "unit"],
        rows,
        &[
            Constraint::Length(31),
            Constraint::Length(22),
            Constraint::Length(14),
            Constraint::Min(6),
        ],
        None,
        theme,
    );
}
