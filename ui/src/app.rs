//! Dashboard state and key handling. Pure: a key press changes the `App` and may return an
//! `Effect` for the caller (the binary) to carry out; nothing here does I/O.

use chrono::NaiveDate;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ecom_model::batch::{RunStatus, TaskStatus};
use ecom_model::command::Command;
use ecom_model::snapshot::Snapshot;

use crate::popup::{Confirm, Detail, Field, Form, FormKind, Popup};

/// The views, in tab order (number keys 1..8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Stream,
    Watermarks,
    Failures,
    Costs,
    Runs,
    Logs,
    Trends,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Overview,
        Tab::Stream,
        Tab::Watermarks,
        Tab::Failures,
        Tab::Costs,
        Tab::Runs,
        Tab::Logs,
        Tab::Trends,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Stream => "Stream",
            Tab::Watermarks => "Watermarks",
            Tab::Failures => "Failures",
            Tab::Costs => "Costs",
            Tab::Runs => "Runs",
            Tab::Logs => "Logs",
            Tab::Trends => "Trends",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// What the caller should do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    /// State changed: draw again.
    Redraw,
    Quit,
    /// Send this command to the pipeline (the dispatcher enforces read-only again).
    Dispatch(Command),
    /// The refresh interval changed.
    RefreshRate(u64),
}

/// Redraw intervals `+`/`-` step through, in ms: how often ages, countdowns and the clock
/// advance on screen. (The pipeline publishes a new snapshot on every change; `r` asks it to
/// recount zone statistics now, which on S3 costs LIST requests.)
pub const REFRESH_STEPS: [u64; 6] = [250, 500, 1000, 2000, 5000, 10_000];

/// The dashboard's own state (the pipeline's is in the snapshot).
#[derive(Debug, Clone)]
pub struct App {
    pub tab: Tab,
    /// Selected row per view.
    pub selected: [usize; 8],
    /// Table filter (substring, case-insensitive) and whether it is being typed.
    pub filter: String,
    pub filtering: bool,
    pub popup: Option<Popup>,
    pub read_only: bool,
    pub color: bool,
    /// Attached to another process's pipeline over its control socket.
    pub attached: bool,
    pub refresh_ms: u64,
    /// The last message for the status line: (ok, text).
    pub message: Option<(bool, String)>,
    /// An action sent and not answered yet.
    pub pending: Option<String>,
    /// Attached, and the instance went away at this time (reconnection is being tried).
    pub disconnected_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Sort order per view (an index into the view's orders; `s` cycles).
    pub sort: [usize; 8],
    /// The log view is paused at this time (`f`): new lines wait until it follows again.
    pub log_paused_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The log view wraps long messages over several lines (`w`).
    pub log_wrap: bool,
    /// The wall clock for ages and countdowns, advanced by the caller's redraw tick; `None`
    /// uses the snapshot's own time (tests, `status`).
    pub clock: Option<chrono::DateTime<chrono::Utc>>,
}

impl App {
    pub fn new(read_only: bool, color: bool, attached: bool) -> App {
        App {
            tab: Tab::Overview,
            selected: [0; 8],
            filter: String::new(),
            filtering: false,
            popup: None,
            read_only,
            color,
            attached,
            refresh_ms: 1000,
            message: None,
            pending: None,
            disconnected_since: None,
            sort: [0; 8],
            log_paused_at: None,
            log_wrap: false,
            clock: None,
        }
    }

    /// "Now" for ages and countdowns.
    pub fn now(&self, snap: &Snapshot) -> chrono::DateTime<chrono::Utc> {
        self.clock.unwrap_or(snap.generated_at)
    }

    pub fn selected(&self) -> usize {
        self.selected[self.tab.index()]
    }

    /// Keep every view's selection inside its (filtered) rows, e.g. after a new snapshot.
    pub fn clamp(&mut self, snap: &Snapshot) {
        let current = self.tab;
        for tab in Tab::ALL {
            self.tab = tab;
            let n = self.rows(snap);
            let i = &mut self.selected[tab.index()];
            *i = (*i).min(n.saturating_sub(1));
        }
        self.tab = current;
    }

    /// Read-only here or in the instance we watch: no action is offered.
    pub fn actions_disabled(&self, snap: &Snapshot) -> bool {
        self.read_only || snap.instance.read_only
    }

    /// Whether a table row's text passes the filter.
    pub fn matches(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// The answer to the command named `name`: clears "still running" only if it was that one
    /// (a `Q` or `r` answered meanwhile leaves a running backfill's guard in place).
    pub fn finished_command(&mut self, name: &str, ok: bool, message: String) {
        if self.pending.as_deref() == Some(name) {
            self.pending = None;
        }
        self.message = Some((ok, message));
    }

    /// An answer with a report to show: the quarantine's records open in a popup.
    pub fn answered(&mut self, report: &ecom_model::report::Report) {
        let ecom_model::report::Report::Quarantine(q) = report else {
            return;
        };
        if self.popup.is_some() {
            // Never over a form being filled or a confirmation: Q again shows it.
            self.message = Some((
                true,
                "the quarantine's records are ready: Q shows them".into(),
            ));
            return;
        }
        self.popup = Some(Popup::Detail(Detail::new(
            "Quarantine (newest first)",
            crate::detail::quarantine_lines(q),
        )));
    }

    pub fn on_key(&mut self, key: KeyEvent, snap: &Snapshot) -> Effect {
        if key.kind == KeyEventKind::Release {
            return Effect::None;
        }
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if let Some(popup) = self.popup.take() {
            return self.on_popup_key(popup, key, ctrl_c);
        }
        if self.filtering {
            match key.code {
                KeyCode::Enter => self.filtering = false,
                KeyCode::Esc => {
                    self.filtering = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !ctrl_c => self.filter.push(c),
                _ if ctrl_c => return self.quit(),
                _ => return Effect::None,
            }
            self.clamp(snap);
            return Effect::Redraw;
        }
        if ctrl_c {
            return self.quit();
        }
        match key.code {
            KeyCode::Char('q') => return self.quit(),
            KeyCode::Char('?') => self.popup = Some(Popup::Help),
            KeyCode::Char(c @ '1'..='8') => {
                self.tab = Tab::ALL[(c as u8 - b'1') as usize];
                self.filter.clear();
            }
            KeyCode::Tab => {
                self.tab = Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()];
                self.filter.clear();
            }
            KeyCode::BackTab => {
                self.tab = Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()];
                self.filter.clear();
            }
            KeyCode::Char('j') | KeyCode::Down => self.step(snap, 1),
            KeyCode::Char('k') | KeyCode::Up => self.step(snap, -1),
            KeyCode::PageDown => self.step(snap, 10),
            KeyCode::PageUp => self.step(snap, -10),
            KeyCode::Char('g') | KeyCode::Home => self.selected[self.tab.index()] = 0,
            KeyCode::Char('G') | KeyCode::End => {
                self.selected[self.tab.index()] = self.rows(snap).saturating_sub(1)
            }
            KeyCode::Char('/') => {
                self.filtering = true;
                self.filter.clear();
            }
            KeyCode::Esc if !self.filter.is_empty() => self.filter.clear(),
            KeyCode::Char('r') => return Effect::Dispatch(Command::Refresh),
            KeyCode::Enter if self.tab == Tab::Overview => return quarantine(),
            KeyCode::Enter => match crate::detail::of_selection(self, snap) {
                Some(d) => self.popup = Some(Popup::Detail(d)),
                None => return Effect::None,
            },
            KeyCode::Char('Q') => return quarantine(),
            KeyCode::Char('s') if !sort_orders(self.tab).is_empty() => {
                self.sort[sort_slot(self.tab)] += 1;
                self.message = Some((
                    true,
                    format!("sorted by {}", self.sort_name().unwrap_or("-")),
                ));
            }
            KeyCode::Char('w') if self.tab == Tab::Logs => self.log_wrap = !self.log_wrap,
            KeyCode::Char('f') if self.tab == Tab::Logs => {
                self.log_paused_at = match self.log_paused_at {
                    Some(_) => None,
                    None => Some(snap.recent_log.last().map_or(self.now(snap), |l| l.time)),
                };
            }
            KeyCode::Char('l') if self.tab == Tab::Runs => {
                // A run's log lines name its id: Logs, filtered by it.
                let Some(run) = self
                    .runs(snap)
                    .get(self.selected())
                    .map(|r| r.run_id.clone())
                else {
                    return Effect::None;
                };
                self.tab = Tab::Logs;
                self.filter = run;
                self.selected[Tab::Logs.index()] = 0;
            }
            KeyCode::Char('+') | KeyCode::Char('=') => return self.rate(-1),
            KeyCode::Char('-') => return self.rate(1),
            KeyCode::Char('b') => return self.open_backfill(snap),
            KeyCode::Char('p') => return self.open_replay(snap),
            KeyCode::Char('R') => return self.open_retry(snap),
            KeyCode::Char('c') => return self.open_cycle(snap),
            KeyCode::Char('a') if self.tab == Tab::Failures => return self.open_snooze(snap),
            _ => return Effect::None,
        }
        self.clamp(snap);
        Effect::Redraw
    }

    fn quit(&mut self) -> Effect {
        if let Some(action) = &self.pending {
            self.popup = Some(Popup::Confirm(Confirm::quit(action)));
            return Effect::Redraw;
        }
        if !self.attached {
            // The owner: quitting stops ingestion, so it asks first.
            self.popup = Some(Popup::Confirm(Confirm::quit_owner()));
            return Effect::Redraw;
        }
        Effect::Quit
    }

    fn rate(&mut self, dir: isize) -> Effect {
        let i = REFRESH_STEPS
            .iter()
            .position(|r| *r >= self.refresh_ms)
            .unwrap_or(REFRESH_STEPS.len() - 1);
        let j = (i as isize + dir).clamp(0, REFRESH_STEPS.len() as isize - 1) as usize;
        self.refresh_ms = REFRESH_STEPS[j];
        self.message = Some((true, format!("redraw every {} ms", self.refresh_ms)));
        Effect::RefreshRate(self.refresh_ms)
    }

    fn step(&mut self, snap: &Snapshot, by: isize) {
        let n = self.rows(snap);
        let i = &mut self.selected[self.tab.index()];
        *i = (*i as isize + by).clamp(0, n.saturating_sub(1) as isize) as usize;
    }

    /// Rows of the current view's main table after filtering.
    pub fn rows(&self, snap: &Snapshot) -> usize {
        match self.tab {
            Tab::Overview | Tab::Costs | Tab::Trends => 0,
            Tab::Stream | Tab::Watermarks => self.shards(snap).len(),
            // The scenarios, then the alerts under them (one selection moves through both).
            Tab::Failures => {
                snap.failures
                    .iter()
                    .filter(|f| self.matches(f.scenario.label()))
                    .count()
                    + self.alerts(snap).len()
            }
            Tab::Runs => self.runs(snap).len(),
            Tab::Logs => self.log_lines(snap).len(),
        }
    }

    /// The current view's sort order, as its title says it (`s` cycles).
    pub fn sort_name(&self) -> Option<&'static str> {
        let orders = sort_orders(self.tab);
        orders
            .get(self.sort[sort_slot(self.tab)] % orders.len().max(1))
            .copied()
    }

    /// Shards passing the filter, in the view's order (`s`: name, lag, throttles).
    pub fn shards<'a>(&self, snap: &'a Snapshot) -> Vec<&'a ecom_model::stream::ShardStatus> {
        let mut v: Vec<_> = snap
            .stream
            .iter()
            .flat_map(|s| s.shards.iter())
            .filter(|s| self.matches(&s.shard))
            .collect();
        let by = self.sort[Tab::Stream.index()] % SHARD_ORDERS.len();
        match SHARD_ORDERS[by] {
            "lag ms" => v.sort_by_key(|s| std::cmp::Reverse(s.lag_ms)),
            "lag records" => v.sort_by_key(|s| std::cmp::Reverse(s.lag_records)),
            "throttles" => v.sort_by_key(|s| std::cmp::Reverse(s.read_throttles)),
            _ => {}
        }
        v
    }

    /// Batch runs passing the filter: newest first, or failed first (`s`).
    pub fn runs<'a>(&self, snap: &'a Snapshot) -> Vec<&'a ecom_model::batch::BatchRun> {
        let mut v: Vec<_> = snap
            .batch
            .runs
            .iter()
            .filter(|r| self.matches(&format!("{} {:?}", r.run_id, r.status)))
            .collect();
        if RUN_ORDERS[self.sort[Tab::Runs.index()] % RUN_ORDERS.len()] == "failed first" {
            // Stable: newest first within each group.
            v.sort_by_key(|r| r.status != RunStatus::Failed);
        }
        v
    }

    /// Alert rules passing the filter, firing first, then pending, then quiet: what is cut at
    /// a small height is what is quiet.
    pub fn alerts<'a>(&self, snap: &'a Snapshot) -> Vec<&'a ecom_model::alerts::AlertState> {
        let mut v: Vec<_> = snap
            .alerts
            .iter()
            .filter(|a| self.matches(&a.name))
            .collect();
        v.sort_by_key(|a| (!a.firing, a.pending_since.is_none()));
        v
    }

    /// Log lines passing the filter, newest first; while paused (`f`), none after the pause.
    pub fn log_lines<'a>(&self, snap: &'a Snapshot) -> Vec<&'a ecom_model::snapshot::LogLine> {
        snap.recent_log
            .iter()
            .rev()
            .filter(|l| self.log_paused_at.is_none_or(|t| l.time <= t))
            .filter(|l| self.matches(&crate::views::logs::line_text(l)))
            .collect()
    }

    fn refuse_read_only(&mut self, snap: &Snapshot) -> Option<Effect> {
        if self.actions_disabled(snap) {
            self.message = Some((
                false,
                "read-only: actions are disabled (started with --read-only)".into(),
            ));
            return Some(Effect::Redraw);
        }
        if let Some(p) = &self.pending {
            self.message = Some((false, format!("wait: {p} is still running")));
            return Some(Effect::Redraw);
        }
        None
    }

    fn open_backfill(&mut self, snap: &Snapshot) -> Effect {
        if let Some(e) = self.refuse_read_only(snap) {
            return e;
        }
        let today = self.now(snap).date_naive().to_string();
        self.popup = Some(Popup::Form(Form::new(
            FormKind::Backfill,
            vec![
                Field::new("from (YYYY-MM-DD)", &today),
                Field::new("to (YYYY-MM-DD)", &today),
            ],
        )));
        Effect::Redraw
    }

    fn open_replay(&mut self, snap: &Snapshot) -> Effect {
        if let Some(e) = self.refuse_read_only(snap) {
            return e;
        }
        let shards = self.shards(snap);
        // The highlighted shard in the shard views; elsewhere the first one.
        let shard = if matches!(self.tab, Tab::Stream | Tab::Watermarks) {
            shards.get(self.selected()).map(|s| s.shard.clone())
        } else {
            shards.first().map(|s| s.shard.clone())
        };
        let Some(shard) = shard else {
            self.message = Some((false, "no shard to replay yet".into()));
            return Effect::Redraw;
        };
        self.popup = Some(Popup::Form(Form::new(
            FormKind::Replay,
            vec![
                Field::new("shard", &shard),
                Field::new("from sequence number", "1"),
                Field::new("or from time (RFC 3339)", ""),
            ],
        )));
        Effect::Redraw
    }

    fn open_retry(&mut self, snap: &Snapshot) -> Effect {
        if let Some(e) = self.refuse_read_only(snap) {
            return e;
        }
        let runs = self.runs(snap);
        let run = if self.tab == Tab::Runs {
            runs.get(self.selected()).copied()
        } else {
            runs.iter().find(|r| r.status == RunStatus::Failed).copied()
        };
        let Some(run) = run else {
            self.message = Some((false, "no run selected (Runs view, j/k)".into()));
            return Effect::Redraw;
        };
        let todo: Vec<String> = run
            .tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Succeeded)
            .map(|t| format!("{} ({})", t.name, t.status.name()))
            .collect();
        if todo.is_empty() {
            self.message = Some((false, format!("run {} has nothing to retry", run.run_id)));
            return Effect::Redraw;
        }
        self.popup = Some(Popup::Confirm(Confirm::new(
            "Retry batch run",
            vec![
                format!(
                    "Rerun the tasks of batch run {} that have not succeeded:",
                    run.run_id
                ),
                format!("  {}", todo.join(", ")),
                "Succeeded tasks are not rerun; spooled responses are not fetched again.".into(),
            ],
            Command::Retry {
                run_id: run.run_id.clone(),
                task: None,
            },
        )));
        Effect::Redraw
    }

    fn open_cycle(&mut self, snap: &Snapshot) -> Effect {
        if let Some(e) = self.refuse_read_only(snap) {
            return e;
        }
        self.popup = Some(Popup::Confirm(Confirm::new(
            "Run a cycle now",
            vec![
                format!(
                    "Run one full cycle now: a batch pull from {} (extract, land, stage, load),",
                    snap.batch.source
                ),
                "then the stream (drain every shard into RAW, STAGING, the late buffer and".into(),
                "quarantine, load), then refresh the CURATED models.".into(),
            ],
            Command::RunCycle,
        )));
        Effect::Redraw
    }

    /// `a` on a failure: acknowledge it for an hour (or lift the snooze), after a confirmation.
    fn open_snooze(&mut self, snap: &Snapshot) -> Effect {
        if let Some(e) = self.refuse_read_only(snap) {
            return e;
        }
        let rows: Vec<_> = snap
            .failures
            .iter()
            .filter(|f| self.matches(f.scenario.label()))
            .collect();
        let Some(f) = rows.get(self.selected()) else {
            return Effect::None;
        };
        let now = self.now(snap);
        let (title, lines, minutes) = if f.snoozed_until.is_some_and(|t| t > now) {
            (
                "Lift the snooze",
                vec![format!(
                    "{} counts in health and the next action again.",
                    f.scenario.label()
                )],
                0,
            )
        } else {
            (
                "Snooze",
                vec![
                    format!(
                        "Acknowledge {} for 60 minutes: it stays in the table, marked snoozed,",
                        f.scenario.label()
                    ),
                    "but does not turn health red or rank as the next action meanwhile.".into(),
                    "The pipeline keeps handling it; the audit trail records who snoozed it."
                        .into(),
                ],
                60,
            )
        };
        self.popup = Some(Popup::Confirm(Confirm::new(
            title,
            lines,
            Command::Snooze {
                scenario: f.scenario,
                minutes,
            },
        )));
        Effect::Redraw
    }

    fn on_popup_key(&mut self, popup: Popup, key: KeyEvent, ctrl_c: bool) -> Effect {
        match popup {
            Popup::Detail(mut d) => {
                // An upper bound (wrapped rows can be many per line); the draw clamps it.
                let last = (d.lines.iter().map(|l| l.len() / 20 + 1).sum::<usize>())
                    .min(u16::MAX as usize) as u16;
                match key.code {
                    _ if ctrl_c => return self.quit(),
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => return Effect::Redraw,
                    KeyCode::Char('j') | KeyCode::Down => d.scroll = (d.scroll + 1).min(last),
                    KeyCode::Char('k') | KeyCode::Up => d.scroll = d.scroll.saturating_sub(1),
                    KeyCode::PageDown => d.scroll = (d.scroll + 10).min(last),
                    KeyCode::PageUp => d.scroll = d.scroll.saturating_sub(10),
                    KeyCode::Char('g') | KeyCode::Home => d.scroll = 0,
                    KeyCode::Char('G') | KeyCode::End => d.scroll = last,
                    _ => {}
                }
                self.popup = Some(Popup::Detail(d));
                Effect::Redraw
            }
            // Any key closes the help.
            Popup::Help if ctrl_c => self.quit(),
            Popup::Help => Effect::Redraw,
            Popup::Confirm(mut c) => match key.code {
                KeyCode::Esc | KeyCode::Char('n') => Effect::Redraw,
                KeyCode::Left
                | KeyCode::Right
                | KeyCode::Tab
                | KeyCode::BackTab
                | KeyCode::Char('h')
                | KeyCode::Char('l') => {
                    c.focus_confirm = !c.focus_confirm;
                    self.popup = Some(Popup::Confirm(c));
                    Effect::Redraw
                }
                KeyCode::Enter if c.focus_confirm => match c.command {
                    // Quitting while an action runs: the pipeline finishes it either way.
                    None => Effect::Quit,
                    Some(command) => {
                        self.pending = Some(command.name().to_string());
                        self.message = Some((true, format!("{} sent…", command.name())));
                        Effect::Dispatch(command)
                    }
                },
                KeyCode::Enter => Effect::Redraw,
                _ if ctrl_c => Effect::Quit,
                _ => {
                    self.popup = Some(Popup::Confirm(c));
                    Effect::None
                }
            },
            Popup::Form(mut f) => match key.code {
                KeyCode::Esc => Effect::Redraw,
                _ if ctrl_c => self.quit(),
                KeyCode::Tab | KeyCode::Down => {
                    f.focus = (f.focus + 1) % f.fields.len();
                    self.popup = Some(Popup::Form(f));
                    Effect::Redraw
                }
                KeyCode::BackTab | KeyCode::Up => {
                    f.focus = (f.focus + f.fields.len() - 1) % f.fields.len();
                    self.popup = Some(Popup::Form(f));
                    Effect::Redraw
                }
                KeyCode::Backspace => {
                    f.fields[f.focus].value.pop();
                    self.popup = Some(Popup::Form(f));
                    Effect::Redraw
                }
                KeyCode::Char(ch) => {
                    f.fields[f.focus].value.push(ch);
                    f.error = None;
                    self.popup = Some(Popup::Form(f));
                    Effect::Redraw
                }
                KeyCode::Enter => {
                    match confirm_form(&f) {
                        Ok(c) => self.popup = Some(Popup::Confirm(c)),
                        Err(e) => {
                            f.error = Some(e);
                            self.popup = Some(Popup::Form(f));
                        }
                    }
                    Effect::Redraw
                }
                _ => {
                    self.popup = Some(Popup::Form(f));
                    Effect::None
                }
            },
        }
    }
}

const SHARD_ORDERS: [&str; 4] = ["shard", "lag ms", "lag records", "throttles"];
const RUN_ORDERS: [&str; 2] = ["newest first", "failed first"];

/// Where a view's order is kept: Stream and Watermarks list the same shards, in one order.
fn sort_slot(tab: Tab) -> usize {
    match tab {
        Tab::Watermarks => Tab::Stream.index(),
        t => t.index(),
    }
}

/// The orders a view's table can be sorted in (`s`); empty: not sortable.
fn sort_orders(tab: Tab) -> &'static [&'static str] {
    match tab {
        Tab::Stream | Tab::Watermarks => &SHARD_ORDERS,
        Tab::Runs => &RUN_ORDERS,
        _ => &[],
    }
}

/// Ask the pipeline for the quarantine's records (read-only; shown when the answer arrives).
fn quarantine() -> Effect {
    Effect::Dispatch(Command::Quarantine {
        reason: None,
        limit: 50,
    })
}

/// Validate a filled form and say exactly what its command will do.
fn confirm_form(f: &Form) -> Result<Confirm, String> {
    let v = |i: usize| f.fields[i].value.trim().to_string();
    match f.kind {
        FormKind::Backfill => {
            let day = |s: &str| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
            };
            let (from, to) = (day(&v(0))?, day(&v(1))?);
            if from > to {
                return Err(format!("from {from} is after to {to}"));
            }
            Ok(Confirm::new(
                "Backfill",
                vec![
                    format!("Load the late-buffered events of event days {from}..{to} into the"),
                    "warehouse (MERGE on event_id: events already there are not doubled),".into(),
                    format!("then recompute the CURATED daily models for {from}..{to}."),
                    "Idempotent: running it again changes nothing more.".into(),
                ],
                Command::Backfill { from, to },
            ))
        }
        FormKind::Replay => {
            let shard = v(0);
            if shard.is_empty() {
                return Err("the shard is empty".into());
            }
            let (seq, time) = (v(1), v(2));
            if !seq.is_empty() && !time.is_empty() {
                return Err("give a sequence number or a time, not both".into());
            }
            let (from_seq, from_time, from_text) = if !time.is_empty() {
                let t = chrono::DateTime::parse_from_rfc3339(&time)
                    .map_err(|e| format!("{time:?} is not an RFC 3339 time: {e}"))?;
                (
                    None,
                    Some(t.with_timezone(&chrono::Utc)),
                    format!("the first record that arrived at {time}"),
                )
            } else {
                let n: u64 = seq
                    .parse()
                    .map_err(|_| format!("{seq:?} is not a sequence number"))?;
                (Some(n), None, format!("sequence number {n}"))
            };
            Ok(Confirm::new(
                "Replay",
                vec![
                    format!("Re-read the committed segments of {shard} from {from_text}."),
                    "RAW files are rewritten byte-identical (a difference is refused), lost".into(),
                    "STAGING objects are derived again, and loads the ledger already has are"
                        .into(),
                    "skipped: nothing is doubled.".into(),
                ],
                Command::Replay {
                    shard,
                    from_seq,
                    from_time,
                },
            ))
        }
    }
}
