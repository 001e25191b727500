//! The frame: a header line, the tab bar, the current view, a status/key line, and any overlay.

use ecom_model::snapshot::{RunMode, Snapshot};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};
use ratatui::Frame;

use crate::app::{App, Tab};
use crate::theme::Theme;
use crate::{fmt, popup, views};

/// Smallest area the views are laid out in; below it a one-line note is drawn (if it fits).
/// Below this the views clip what they show (a cut error is worse than none): say so instead.
const MIN_W: u16 = 80;
const MIN_H: u16 = 24;

/// Draw one frame. Never blocks, never mutates the snapshot.
pub fn draw(frame: &mut Frame, app: &App, snap: &Snapshot) {
    let theme = Theme { color: app.color };
    let area = frame.area();
    if area.width < MIN_W || area.height < MIN_H {
        frame.render_widget(
            Paragraph::new(format!(
                "ecomops: this terminal is {}x{}; the dashboard needs {MIN_W}x{MIN_H}. \
                 Enlarge it, or use `ecomops status` (q quits)",
                area.width, area.height
            ))
            .wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let [header, tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(app, snap, &theme)), header);
    let titles: Vec<Line> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| Line::raw(format!("{} {}", i + 1, t.title())))
        .collect();
    // Eight tabs fit 80 columns without the padding around each title.
    let pad = if area.width >= 96 { " " } else { "" };
    frame.render_widget(
        Tabs::new(titles)
            .select(app.tab.index())
            .highlight_style(theme.selected())
            .divider("|")
            .padding(pad, pad),
        tabs,
    );
    match app.tab {
        Tab::Overview => views::overview::draw(frame, body, app, snap, &theme),
        Tab::Stream => views::stream::draw(frame, body, app, snap, &theme),
        Tab::Watermarks => views::watermarks::draw(frame, body, app, snap, &theme),
        Tab::Failures => views::failures::draw(frame, body, app, snap, &theme),
        Tab::Costs => views::costs::draw(frame, body, app, snap, &theme),
        Tab::Runs => views::runs::draw(frame, body, app, snap, &theme),
        Tab::Logs => views::logs::draw(frame, body, app, snap, &theme),
        Tab::Trends => views::trends::draw(frame, body, app, snap, &theme),
    }
    let disabled = app.actions_disabled(snap);
    frame.render_widget(Paragraph::new(status_line(app, disabled, &theme)), status);
    if let Some(p) = &app.popup {
        popup::draw(frame, p, disabled, &theme);
    }
}

fn header_line<'a>(app: &App, snap: &'a Snapshot, theme: &Theme) -> Line<'a> {
    // Most urgent first: on a narrow terminal the end is what gets cut.
    let mut spans = vec![Span::styled("ecomops ", theme.title())];
    if let Some(since) = app.disconnected_since {
        // What follows is the last state seen, frozen.
        spans.push(Span::styled(
            format!(
                "DISCONNECTED since {} (last state shown) ",
                since.format("%H:%M:%S")
            ),
            theme.bad(),
        ));
    }
    match &snap.last_cycle {
        Some(c) if c.ok => spans.push(Span::styled(format!("cycle {} ok", c.cycle), theme.ok())),
        Some(c) => spans.push(Span::styled(
            format!("cycle {} FAILED", c.cycle),
            theme.bad(),
        )),
        None => spans.push(Span::styled("no cycle yet", theme.dim())),
    }
    if let Some(next) = snap.next_cycle_at {
        let secs = (next - app.now(snap)).num_seconds();
        spans.push(Span::raw(format!(" | next in {}", fmt::span_secs(secs))));
    }
    let firing: Vec<&str> = snap
        .alerts
        .iter()
        .filter(|a| a.firing)
        .map(|a| a.name.as_str())
        .collect();
    if !firing.is_empty() {
        spans.push(Span::styled(
            format!(" | ALERT {}", firing.join(", ")),
            theme.bad(),
        ));
    }
    if snap.paused {
        spans.push(Span::styled(" | PAUSED", theme.warn()));
    }
    if app.actions_disabled(snap) {
        spans.push(Span::styled(" | READ-ONLY", theme.warn()));
    }
    if app.attached {
        // A read-only process with no writer to follow reads the data dir itself.
        let label = if snap.instance.read_only {
            " | OBSERVING (no writer running)"
        } else {
            " | ATTACHED"
        };
        spans.push(Span::styled(label, theme.key()));
    }
    let mode = match snap.instance.mode {
        RunMode::Dashboard => "dashboard",
        RunMode::Headless => "headless",
        RunMode::Oneshot => "one-shot",
    };
    spans.push(Span::styled(
        format!(
            " | {} | {}/{}/{} | pid {} {mode}",
            app.now(snap).format("%H:%M:%S"),
            snap.backends.store,
            snap.backends.stream,
            snap.backends.warehouse,
            snap.instance.pid,
        ),
        theme.dim(),
    ));
    Line::from(spans)
}

fn status_line<'a>(app: &'a App, disabled: bool, theme: &Theme) -> Line<'a> {
    if app.filtering {
        return Line::from(vec![
            Span::styled("filter: ", theme.key()),
            Span::raw(format!("{}_", app.filter)),
            Span::styled("  (Enter keeps, Esc clears)", theme.dim()),
        ]);
    }
    let mut spans = Vec::new();
    if let Some(p) = &app.pending {
        spans.push(Span::styled(format!("{p} running… "), theme.warn()));
    } else if let Some((ok, m)) = &app.message {
        spans.push(Span::styled(
            format!("{m} "),
            if *ok { theme.ok() } else { theme.bad() },
        ));
    }
    if !app.filter.is_empty() {
        spans.push(Span::styled(format!("[/{}] ", app.filter), theme.key()));
    }
    // The keys of this view first, then the ones every view has.
    let (view, actions) = match app.tab {
        Tab::Overview => ("Enter quarantine", "b backfill  c cycle"),
        Tab::Stream => ("Enter shard", "p replay"),
        Tab::Watermarks => ("Enter shard", "b backfill"),
        Tab::Failures => ("Enter history", "a snooze  R retry run"),
        Tab::Costs => ("", "c cycle"),
        Tab::Runs => ("Enter run  l its logs", "R retry"),
        Tab::Logs => ("Enter line", ""),
        Tab::Trends => ("r refresh", ""),
    };
    let mut keys = vec![view];
    if disabled {
        keys.push("(read-only)");
    } else {
        keys.push(actions);
    }
    keys.push("? help  q quit  1-8 views  / filter");
    let keys: Vec<&str> = keys.into_iter().filter(|k| !k.is_empty()).collect();
    spans.push(Span::styled(keys.join("  "), theme.dim()));
    Line::from(spans)
}
