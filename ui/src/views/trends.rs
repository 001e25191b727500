//! The business per day, from the warehouse's CURATED daily models (not from the process's
//! memory): revenue, orders, average order value, sessions and conversion over the last
//! `TREND_DAYS` days, one bar a day labelled with its day of the month, and today so far
//! against yesterday. Each chart's title names its window and its range.

use ecom_model::snapshot::{Snapshot, TREND_DAYS};
use ecom_model::warehouse::DayFigures;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, Block, Paragraph};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

/// One chart: its name, each day's value (for the bar's height) and its text.
struct Series {
    name: &'static str,
    values: Vec<u64>,
    texts: Vec<String>,
}

fn series(days: &[DayFigures]) -> [Series; 6] {
    let pct = |d: &DayFigures| d.conversion_rate.unwrap_or(0.0) * 100.0;
    let cart_to_buy = |d: &DayFigures| {
        if d.carted > 0 {
            d.purchased as f64 * 100.0 / d.carted as f64
        } else {
            0.0
        }
    };
    [
        Series {
            name: "Revenue",
            values: days.iter().map(|d| d.revenue_cents.max(0) as u64).collect(),
            texts: days.iter().map(|d| short_money(d.revenue_cents)).collect(),
        },
        Series {
            name: "Orders",
            values: days.iter().map(|d| d.orders.max(0) as u64).collect(),
            texts: days.iter().map(|d| d.orders.to_string()).collect(),
        },
        Series {
            name: "Conversion %",
            // Tenths of a percent, so small differences still show in the bars.
            values: days
                .iter()
                .map(|d| (pct(d) * 10.0).round() as u64)
                .collect(),
            texts: days.iter().map(|d| format!("{:.1}", pct(d))).collect(),
        },
        Series {
            name: "Sessions",
            values: days.iter().map(|d| d.sessions.max(0) as u64).collect(),
            texts: days.iter().map(|d| d.sessions.to_string()).collect(),
        },
        Series {
            name: "Avg order value",
            values: days
                .iter()
                .map(|d| d.avg_order_value_cents.unwrap_or(0.0).max(0.0) as u64)
                .collect(),
            texts: days
                .iter()
                .map(|d| short_money(d.avg_order_value_cents.unwrap_or(0.0) as i64))
                .collect(),
        },
        Series {
            name: "Cart to purchase %",
            values: days
                .iter()
                .map(|d| (cart_to_buy(d) * 10.0).round() as u64)
                .collect(),
            texts: days
                .iter()
                .map(|d| format!("{:.0}", cart_to_buy(d)))
                .collect(),
        },
    ]
}

/// Dollars without cents, in thousands past $10k: what fits over a bar.
fn short_money(cents: i64) -> String {
    let dollars = cents as f64 / 100.0;
    if dollars.abs() >= 10_000.0 {
        format!("${:.0}k", dollars / 1000.0)
    } else {
        format!("${dollars:.0}")
    }
}

pub fn draw(frame: &mut Frame, area: Rect, _app: &App, snap: &Snapshot, theme: &Theme) {
    let days = &snap.trends;
    if days.is_empty() {
        frame.render_widget(
            Paragraph::new(
                "No daily figures yet: the CURATED daily models are filled by the first load and \
                 model refresh (a cycle, or `ecomops batch run`).",
            )
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::bordered().title(" Trends ")),
            area,
        );
        return;
    }
    // Tall: the funnel per day as a table under the charts.
    let funnel_h = if area.height >= 40 {
        days.len() as u16 + 3
    } else {
        0
    };
    let [summary, grid, funnel] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(4),
        Constraint::Length(funnel_h),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(today_vs_yesterday(days)).block(Block::bordered().title(format!(
            " Per day from the warehouse, last {TREND_DAYS} days ({} .. {}) ",
            days[0].day,
            days[days.len() - 1].day
        ))),
        summary,
    );
    // Two charts a row at 80 columns, three when there is room for 14 bars each.
    let per_row: u32 = if area.width >= 132 { 3 } else { 2 };
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(grid);
    let cols = |r: Rect| {
        Layout::horizontal(vec![Constraint::Ratio(1, per_row); per_row as usize]).split(r)
    };
    let cells: Vec<Rect> = cols(top)
        .iter()
        .chain(cols(bottom).iter())
        .copied()
        .collect();
    // Narrow: revenue, orders, conversion, sessions; wide adds AOV and cart to purchase.
    let all = series(days);
    let order: &[usize] = if per_row == 3 {
        &[0, 1, 4, 2, 3, 5]
    } else {
        &[0, 1, 2, 3]
    };
    for (i, cell) in order.iter().zip(cells) {
        chart(frame, cell, &all[*i], days, theme);
    }
    if funnel_h > 0 {
        funnel_table(frame, funnel, days, theme);
    }
}

/// Sessions reaching each step of the funnel per day, and the drop-off at each step.
fn funnel_table(frame: &mut Frame, area: Rect, days: &[DayFigures], theme: &Theme) {
    let pct = |a: i64, b: i64| {
        if b > 0 {
            format!("{:.1}%", (1.0 - a as f64 / b as f64) * 100.0)
        } else {
            "-".into()
        }
    };
    let rows: Vec<ratatui::widgets::Row> = days
        .iter()
        .rev()
        .map(|d| {
            ratatui::widgets::Row::new(vec![
                d.day.to_string(),
                fmt::count(d.sessions.max(0) as u64),
                fmt::count(d.viewed.max(0) as u64),
                fmt::count(d.carted.max(0) as u64),
                fmt::count(d.checked_out.max(0) as u64),
                fmt::count(d.purchased.max(0) as u64),
                pct(d.carted, d.viewed),
                pct(d.checked_out, d.carted),
                pct(d.purchased, d.checked_out),
            ])
        })
        .collect();
    super::table(
        frame,
        area,
        " Funnel per day, newest first (sessions reaching each step; drop-off between steps) "
            .into(),
        &[
            "day",
            "sessions",
            "viewed",
            "carted",
            "checkout",
            "purchased",
            "view>cart",
            "cart>checkout",
            "checkout>buy",
        ],
        rows,
        &[
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(14),
            Constraint::Length(13),
        ],
        None,
        theme,
    );
}

fn chart(frame: &mut Frame, area: Rect, s: &Series, days: &[DayFigures], theme: &Theme) {
    let n = days.len().max(1) as u16;
    let inner = area.width.saturating_sub(2);
    // Bars as wide as the cell allows, one column apart when there is room; at least two
    // columns, so the day's two digits label each bar.
    let (width, gap) = if inner >= n * 3 {
        ((inner + 1) / n - 1, 1)
    } else {
        ((inner / n).max(1), 0)
    };
    let (lo, hi) = match (
        s.texts.iter().zip(&s.values).min_by_key(|(_, v)| **v),
        s.texts.iter().zip(&s.values).max_by_key(|(_, v)| **v),
    ) {
        (Some((lo, _)), Some((hi, _))) => (lo.clone(), hi.clone()),
        _ => ("-".into(), "-".into()),
    };
    let bars: Vec<Bar> = days
        .iter()
        .zip(&s.values)
        .zip(&s.texts)
        .enumerate()
        .map(|(i, ((d, v), t))| {
            // Touching bars: every other day labelled, so the digits do not run together.
            let label = if gap == 0 && i % 2 == 1 {
                String::new()
            } else {
                d.day.format("%d").to_string()
            };
            let bar = Bar::default().value(*v).label(Line::raw(label));
            // A value's text only where it fits over its bar.
            if (t.chars().count() as u16) <= width {
                bar.text_value(t.clone())
            } else {
                bar.text_value(String::new())
            }
        })
        .collect();
    frame.render_widget(
        BarChart::vertical(bars)
            .bar_width(width)
            .bar_gap(gap)
            .bar_style(theme.ok())
            .value_style(theme.selected())
            .label_style(theme.dim())
            .block(Block::bordered().title(format!(" {} (min {lo}, max {hi}) ", s.name))),
        area,
    );
}

/// "Today so far" against yesterday, for the figures that matter at a glance.
fn today_vs_yesterday(days: &[DayFigures]) -> Vec<Line<'static>> {
    let line = |label: &str, d: &DayFigures| {
        Line::raw(format!(
            "{label:<10}{} rev · {} orders · AOV {} · {} sess. · {} conv",
            fmt::cents(d.revenue_cents),
            fmt::count(d.orders.max(0) as u64),
            d.avg_order_value_cents
                .map_or("-".into(), |c| fmt::cents(c.round() as i64)),
            fmt::count(d.sessions.max(0) as u64),
            d.conversion_rate
                .map_or("-".into(), |c| format!("{:.1}%", c * 100.0)),
        ))
    };
    let mut out = Vec::new();
    if let Some(today) = days.last() {
        out.push(line("today", today));
    }
    if let Some(yesterday) = days.len().checked_sub(2).map(|i| &days[i]) {
        out.push(line("yesterday", yesterday));
    }
    out
}
