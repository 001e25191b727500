//! The five failure scenarios: detection, mitigation, recovery, state, counts, last seen.

use ecom_pipeline::failures::FailureState;
use ecom_pipeline::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Wrap};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    let [table, detail] = Layout::vertical([Constraint::Min(4), Constraint::Length(6)]).areas(area);
    let rows_data: Vec<_> = snap
        .failures
        .iter()
        .filter(|f| app.matches(&f.scenario))
        .collect();
    let rows: Vec<Row> = rows_data
        .iter()
        .map(|f| {
            let st = match f.state {
                FailureState::Ok | FailureState::Recovered => theme.ok(),
                FailureState::NotMonitored => theme.dim(),
                FailureState::NeedsOperator => theme.bad(),
                _ => theme.warn(),
            };
            Row::new(vec![
                Cell::from(f.scenario.clone()),
                Cell::from(f.state.label()).style(st),
                Cell::from(fmt::count(f.count)),
                Cell::from(fmt::age(f.last_seen, app.now(snap))),
                Cell::from(f.detection.clone()),
                Cell::from(f.mitigation.clone()),
                Cell::from(f.recovery.clone()),
            ])
        })
        .collect();
    super::table(
        frame,
        table,
        " Failure table ".into(),
        &[
            "scenario",
            "state",
            "count",
            "last seen",
            "detection",
            "mitigation",
            "recovery",
        ],
        rows,
        &[
            Constraint::Length(15),
            Constraint::Length(14),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Fill(3),
            Constraint::Fill(2),
            Constraint::Fill(3),
        ],
        Some(app.selected()),
        theme,
    );
    let lines = match rows_data.get(app.selected()) {
        Some(f) => vec![
            Line::styled(f.scenario.clone(), theme.title()),
            Line::raw(format!(
                "{} -> {} -> {}",
                f.detection, f.mitigation, f.recovery
            )),
            Line::raw(match &f.operator {
                Some(op) => format!("operator: {op}"),
                None => "operator: nothing to do".into(),
            }),
        ],
        None => vec![Line::raw("no scenario matches the filter")],
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" Selected ")),
        detail,
    );
}
