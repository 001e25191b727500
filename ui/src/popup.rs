//! Overlays: the help, confirmations (focus starts on Cancel) and the small forms that collect
//! an action's arguments before its confirmation.

use ecom_model::command::Command;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::theme::Theme;

#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    Help,
    Confirm(Confirm),
    Form(Form),
    Detail(Detail),
}

/// A row opened whole (`Enter`): its text wrapped, scrolled with j/k.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub title: String,
    pub lines: Vec<String>,
    /// First line shown.
    pub scroll: u16,
}

impl Detail {
    pub fn new(title: &str, lines: Vec<String>) -> Detail {
        Detail {
            title: title.into(),
            lines,
            scroll: 0,
        }
    }
}

/// "This is exactly what will happen": Cancel or Confirm.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub title: String,
    pub lines: Vec<String>,
    /// None: the quit confirmation.
    pub command: Option<Command>,
    /// Focus starts on Cancel.
    pub focus_confirm: bool,
}

impl Confirm {
    pub fn new(title: &str, lines: Vec<String>, command: Command) -> Confirm {
        Confirm {
            title: title.into(),
            lines,
            command: Some(command),
            focus_confirm: false,
        }
    }

    pub fn quit(action: &str) -> Confirm {
        Confirm {
            title: "Quit".into(),
            lines: vec![
                format!("{action} is still running. Quit the dashboard anyway?"),
                "The pipeline finishes the action either way; its outcome is in the audit log."
                    .into(),
            ],
            command: None,
            focus_confirm: false,
        }
    }

    /// Quitting the dashboard that runs the pipeline stops ingestion for the data dir.
    pub fn quit_owner() -> Confirm {
        Confirm {
            title: "Quit".into(),
            lines: vec![
                "This dashboard runs the pipeline: quitting stops ingestion for this data dir"
                    .into(),
                "(batch pulls, the stream, loads) until ecomops runs again (--no-ui, systemd)."
                    .into(),
            ],
            command: None,
            focus_confirm: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    Backfill,
    Replay,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub label: String,
    pub value: String,
}

impl Field {
    pub fn new(label: &str, value: &str) -> Field {
        Field {
            label: label.into(),
            value: value.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub kind: FormKind,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub error: Option<String>,
}

impl Form {
    pub fn new(kind: FormKind, fields: Vec<Field>) -> Form {
        Form {
            kind,
            fields,
            focus: 0,
            error: None,
        }
    }
}

/// Every key, for the help overlay (and the README).
pub const KEYS: &[(&str, &str)] = &[
    ("1..8, Tab, S-Tab", "switch view"),
    ("j/k, Down/Up", "move in a table"),
    ("PgDn/PgUp", "move ten rows"),
    ("g / G", "first / last row"),
    ("/", "filter the table (Enter keeps, Esc clears)"),
    ("Enter", "open the row whole (Overview: the quarantine)"),
    ("Q", "the quarantine: refused records, by reason"),
    ("l", "Runs: the selected run's log lines"),
    ("s", "sort: shards by lag/throttles, runs failed first"),
    ("f / w", "Logs: pause or follow / wrap long lines"),
    ("a", "Failures: snooze for an hour / lift"),
    ("r", "refresh the pipeline's statistics now"),
    ("+ / -", "redraw faster / slower"),
    ("b", "backfill a date range"),
    ("p", "replay a shard (the selected one in Stream)"),
    ("R", "retry the selected batch run (Runs)"),
    ("c", "run a full cycle now"),
    ("?", "this help (any key closes it)"),
    ("q, Ctrl-C", "quit (asks while an action runs)"),
];

/// A centred rectangle of at most `w` x `h` inside `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [c] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    c
}

/// Keys that start actions, hidden from the help when actions are disabled.
const ACTION_KEYS: [&str; 5] = ["b", "p", "R", "c", "a"];

/// Rows `lines` take wrapped into `width` columns.
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let w = width.max(1) as usize;
    lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(w) as u16)
        .sum()
}

pub fn draw(frame: &mut Frame, popup: &Popup, actions_disabled: bool, theme: &Theme) {
    let area = frame.area();
    match popup {
        Popup::Help => {
            let mut lines: Vec<Line> = KEYS
                .iter()
                .filter(|(k, _)| !(actions_disabled && ACTION_KEYS.contains(k)))
                .map(|(k, what)| {
                    Line::from(vec![
                        Span::styled(format!("{k:>18}  "), theme.key()),
                        Span::raw(*what),
                    ])
                })
                .collect();
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                if actions_disabled {
                    "Read-only: the action keys (b, p, R, c, a) are off."
                } else {
                    "Read-only mode (--read-only) turns off b, p, R, c and a."
                },
                theme.dim(),
            ));
            let r = centred(area, 72, lines.len() as u16 + 2);
            frame.render_widget(Clear, r);
            frame.render_widget(
                Paragraph::new(lines).block(Block::bordered().title(" Keys ")),
                r,
            );
        }
        Popup::Confirm(c) => {
            let mut lines: Vec<Line> = c.lines.iter().map(|l| Line::raw(l.as_str())).collect();
            lines.push(Line::raw(""));
            let button = |label: &str, focused: bool| {
                if focused {
                    Span::styled(format!("[ {label} ]"), theme.selected())
                } else {
                    Span::raw(format!("  {label}  "))
                }
            };
            lines.push(Line::from(vec![
                button("Cancel", !c.focus_confirm),
                Span::raw("   "),
                button("Confirm", c.focus_confirm),
            ]));
            lines.push(Line::styled(
                "Tab/arrows move, Enter chooses, Esc cancels",
                theme.dim(),
            ));
            // Height from the wrapped text, so the buttons are never cut off.
            let w = 84.min(area.width);
            let r = centred(area, w, wrapped_height(&lines, w.saturating_sub(2)) + 2);
            frame.render_widget(Clear, r);
            frame.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(Block::bordered().title(format!(" {} ", c.title))),
                r,
            );
        }
        Popup::Detail(d) => {
            let w = area.width.saturating_sub(4).clamp(20, 120);
            let h = area.height.saturating_sub(2).max(3);
            let r = centred(area, w, h);
            let mut lines: Vec<Line> = d.lines.iter().map(|l| Line::raw(l.as_str())).collect();
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "j/k PgDn/PgUp scroll · Esc, Enter or q closes",
                theme.dim(),
            ));
            // The scroll is clamped here, on the wrapped height: the last screenful is the end.
            let rows = wrapped_height(&lines, r.width.saturating_sub(2));
            let scroll = d
                .scroll
                .min(rows.saturating_sub(r.height.saturating_sub(2)));
            frame.render_widget(Clear, r);
            frame.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .scroll((scroll, 0))
                    .block(Block::bordered().title(format!(" {} ", d.title))),
                r,
            );
        }
        Popup::Form(f) => {
            let title = match f.kind {
                FormKind::Backfill => " Backfill ",
                FormKind::Replay => " Replay ",
            };
            let mut lines = Vec::new();
            for (i, field) in f.fields.iter().enumerate() {
                let focused = i == f.focus;
                lines.push(Line::from(vec![
                    Span::raw(format!("{:>24}: ", field.label)),
                    Span::styled(
                        format!("{}{}", field.value, if focused { "_" } else { "" }),
                        if focused {
                            theme.selected()
                        } else {
                            theme.normal()
                        },
                    ),
                ]));
            }
            lines.push(Line::raw(""));
            if let Some(e) = &f.error {
                lines.push(Line::styled(e.as_str(), theme.bad()));
            }
            lines.push(Line::styled(
                "Tab moves, Enter reviews what will happen, Esc cancels",
                theme.dim(),
            ));
            let r = centred(area, 72, lines.len() as u16 + 2);
            frame.render_widget(Clear, r);
            frame.render_widget(
                Paragraph::new(lines).block(Block::bordered().title(title)),
                r,
            );
        }
    }
}
