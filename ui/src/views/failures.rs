//! The five failure scenarios: detection, mitigation, recovery, state, counts, last seen.

use ecom_model::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Wrap};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    // The five scenarios and the selected one first; the alerts take what is left (at 80x24
    // the first few, firing ones first in the header line too).
    let table_h = (snap.failures.len() as u16 + 3).max(4);
    let [table, detail, alerts] = Layout::vertical([
        Constraint::Length(table_h),
        Constraint::Length(6),
        Constraint::Min(0),
    ])
    .areas(area);
    let rows_data: Vec<_> = snap
        .failures
        .iter()
        .filter(|f| app.matches(f.scenario.label()))
        .collect();
    // Narrow: the state's detail and command take the width; detection, mitigation and
    // recovery (the same for every episode) are in the wide layout and behind Enter.
    let wide = area.width >= 120;
    let rows: Vec<Row> = rows_data
        .iter()
        .map(|f| {
            let st = theme.failure(f.state);
            let snoozed = f.snoozed_until.filter(|t| *t > app.now(snap));
            let mut cells = vec![
                Cell::from(f.scenario.label()),
                Cell::from(f.state.label()).style(if snoozed.is_some() { theme.dim() } else { st }),
                Cell::from(fmt::count(f.count)),
                Cell::from(fmt::age(f.last_seen, app.now(snap))),
            ];
            if wide {
                cells.extend([
                    Cell::from(f.detection.clone()),
                    Cell::from(f.mitigation.clone()),
                    Cell::from(f.recovery.clone()),
                ]);
            } else {
                let text = f
                    .operator
                    .clone()
                    .or_else(|| f.detail.clone())
                    .unwrap_or_default();
                cells.push(Cell::from(match snoozed {
                    Some(t) => format!("snoozed until {} · {text}", t.format("%H:%M")),
                    None => text,
                }));
            }
            Row::new(cells)
        })
        .collect();
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec![
                "scenario",
                "state",
                "episodes",
                "last seen",
                "detection",
                "mitigation",
                "recovery",
            ],
            vec![
                Constraint::Length(15),
                Constraint::Length(14),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Fill(3),
                Constraint::Fill(2),
                Constraint::Fill(3),
            ],
        )
    } else {
        (
            vec![
                "scenario",
                "state",
                "episodes",
                "last seen",
                "what to do / seen",
            ],
            vec![
                Constraint::Length(15),
                Constraint::Length(14),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Fill(1),
            ],
        )
    };
    super::table(
        frame,
        table,
        " Failure table (Enter: history and what each state means) ".into(),
        &header,
        rows,
        &widths,
        (app.selected() < rows_data.len()).then(|| app.selected()),
        theme,
    );
    let alert_sel = app.selected().checked_sub(rows_data.len());
    let ordered = app.alerts(snap);
    let lines = match rows_data.get(app.selected()) {
        Some(f) => {
            let path: Vec<&str> = f.transitions.iter().map(|(_, s)| s.label()).collect();
            vec![
                Line::styled(
                    format!("{}: {}", f.scenario, f.detail.clone().unwrap_or_default()),
                    theme.title(),
                ),
                Line::raw(format!(
                    "states: {}",
                    if path.is_empty() {
                        "ok".into()
                    } else {
                        path.join(" -> ")
                    }
                )),
                Line::raw(match &f.operator {
                    Some(op) => format!("operator: {op}"),
                    None => "operator: nothing to do".into(),
                }),
                Line::styled(
                    match f.snoozed_until {
                        Some(t) if t > app.now(snap) => format!(
                            "snoozed until {}: not counted in health (a lifts it)",
                            t.format("%H:%M:%S")
                        ),
                        _ => "a snoozes it for an hour (audited)".into(),
                    },
                    theme.dim(),
                ),
            ]
        }
        None => match alert_sel.and_then(|i| ordered.get(i)) {
            Some(a) => vec![
                Line::styled(format!("alert {}: {}", a.name, a.condition), theme.title()),
                Line::raw(format!(
                    "now {}; {}",
                    a.value.map_or("-".into(), |v| {
                        ecom_model::metrics::display(&a.metric, v, &a.unit)
                    }),
                    if a.firing {
                        "FIRING"
                    } else if a.pending_since.is_some() {
                        "pending (the condition holds, not yet for long enough)"
                    } else {
                        "quiet"
                    }
                )),
                Line::styled("Enter: the rule and its times", theme.dim()),
            ],
            None => vec![Line::raw("no scenario matches the filter")],
        },
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" Selected ")),
        detail,
    );
    let rows: Vec<Row> = ordered
        .iter()
        .map(|a| {
            let (text, st) = if a.firing {
                ("FIRING", theme.bad())
            } else if a.pending_since.is_some() {
                ("pending", theme.warn())
            } else {
                ("ok", theme.ok())
            };
            Row::new(vec![
                Cell::from(a.name.clone()),
                Cell::from(format!("{:?}", a.severity).to_lowercase()),
                Cell::from(text).style(st),
                Cell::from(a.value.map_or("-".into(), |v| {
                    ecom_model::metrics::display(&a.metric, v, &a.unit)
                })),
                Cell::from(a.condition.clone()),
            ])
        })
        .collect();
    super::table(
        frame,
        alerts,
        format!(
            " Alerts ({}, {} firing) ",
            snap.alerts.len(),
            snap.alerts.iter().filter(|a| a.firing).count()
        ),
        &["alert", "severity", "state", "value", "condition"],
        rows,
        &[
            Constraint::Length(20),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Min(0),
        ],
        alert_sel,
        theme,
    );
}
