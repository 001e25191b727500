//! Recent log lines (filterable) and the operator actions of the audit trail.

use ecom_model::snapshot::{LogLine, Snapshot};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Cell, Row};
use ratatui::Frame;

use crate::app::App;
use crate::theme::Theme;

/// The text the filter matches a line against.
pub fn line_text(l: &LogLine) -> String {
    format!("{} {} {}", l.level, l.target, l.message)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    let audit_h = (snap.recent_actions.len() as u16 + 3)
        .min(area.height / 3)
        .max(3);
    let [logs, audit] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(audit_h)]).areas(area);
    // Newest first: what just happened is what on-call looks for.
    let lines: Vec<&LogLine> = app.log_lines(snap);
    let visible = logs.height.saturating_sub(3) as usize;
    // The message column's width: the rest after time, level, target and the spacing.
    let msg_w = (logs.width as usize)
        .saturating_sub(2 + 8 + 5 + 24 + 3)
        .max(10);
    let sel = app.selected().min(lines.len().saturating_sub(1));
    let first = sel.saturating_sub(visible.saturating_sub(1));
    let rows: Vec<Row> = lines
        .iter()
        .skip(first)
        .take(visible.max(1))
        .map(|l| {
            let st = match l.level.as_str() {
                "ERROR" => theme.bad(),
                "WARN" => theme.warn(),
                "DEBUG" | "TRACE" => theme.dim(),
                _ => theme.normal(),
            };
            let (message, height) = if app.log_wrap {
                // At most six lines a message; Enter shows the rest.
                let chars: Vec<char> = l.message.chars().collect();
                let parts: Vec<String> = chars
                    .chunks(msg_w)
                    .take(6)
                    .map(|c| c.iter().collect())
                    .collect();
                let n = parts.len().max(1) as u16;
                (ratatui::text::Text::from(parts.join("\n")), n)
            } else {
                (ratatui::text::Text::from(l.message.clone()), 1)
            };
            Row::new(vec![
                Cell::from(l.time.format("%H:%M:%S").to_string()),
                Cell::from(l.level.clone()).style(st),
                Cell::from(l.target.clone()),
                Cell::from(message),
            ])
            .height(height)
        })
        .collect();
    super::table(
        frame,
        logs,
        match app.log_paused_at {
            Some(t) => format!(
                " Log PAUSED at {} ({} of {} lines; f follows again) ",
                t.format("%H:%M:%S"),
                lines.len(),
                snap.recent_log.len()
            ),
            None => format!(
                " Log, newest first, following ({} of {} lines; / filters, f pauses, w wraps) ",
                lines.len(),
                snap.recent_log.len()
            ),
        },
        &["time", "level", "target", "message"],
        rows,
        &[
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(24),
            Constraint::Min(0),
        ],
        Some(sel - first),
        theme,
    );
    let rows: Vec<Row> = snap
        .recent_actions
        .iter()
        .rev()
        .map(|a| {
            let st = match a.outcome.as_str() {
                "ok" => theme.ok(),
                _ => theme.bad(),
            };
            Row::new(vec![
                Cell::from(a.at.format("%H:%M:%S").to_string()),
                Cell::from(a.user.clone()),
                Cell::from(a.action.clone()),
                Cell::from(a.outcome.clone()).style(st),
                Cell::from(a.message.clone()),
            ])
        })
        .collect();
    super::table(
        frame,
        audit,
        " Operator actions (audit) ".into(),
        &["time", "user", "action", "outcome", "message"],
        rows,
        &[
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Min(0),
        ],
        None,
        theme,
    );
}
