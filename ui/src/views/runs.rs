//! Batch runs and the selected run's tasks: state, attempts, duration, error, and when the next
//! scheduled run starts.

use ecom_model::batch::{BatchRun, RunStatus, TaskStatus};
use ecom_model::snapshot::Snapshot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Cell, Row};
use ratatui::Frame;

use crate::app::App;
use crate::fmt;
use crate::theme::Theme;

fn duration(
    r_start: Option<chrono::DateTime<chrono::Utc>>,
    r_end: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    match (r_start, r_end) {
        (Some(s), Some(e)) => {
            let ms = (e - s).num_milliseconds().max(0);
            if ms < 10_000 {
                format!("{:.1}s", ms as f64 / 1000.0)
            } else {
                fmt::span_secs(ms / 1000)
            }
        }
        (Some(_), None) => "running".into(),
        _ => "-".into(),
    }
}

fn run_status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Incomplete => "incomplete",
    }
}

fn task_status(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Pending => "pending",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "succeeded",
        TaskStatus::Failed => "failed",
        TaskStatus::UpstreamFailed => "upstream failed",
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, snap: &Snapshot, theme: &Theme) {
    let [runs_area, tasks_area] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let runs = app.runs(snap);
    let style = |s: RunStatus| match s {
        RunStatus::Succeeded => theme.ok(),
        RunStatus::Failed => theme.bad(),
        _ => theme.warn(),
    };
    // Narrow: the error gets the width; starts, start time and duplicates are in the wide
    // layout and behind Enter.
    let wide = area.width >= 120;
    // Only the rows that can show are built: a thousand runs cost nothing per frame.
    let visible = runs_area.height.saturating_sub(3) as usize;
    let sel = app.selected().min(runs.len().saturating_sub(1));
    let first = sel.saturating_sub(visible.saturating_sub(1));
    let rows: Vec<Row> = runs
        .iter()
        .skip(first)
        .take(visible.max(1))
        .map(|r: &&BatchRun| {
            let ok = r
                .tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Succeeded)
                .count();
            let attempts: u32 = r.tasks.iter().map(|t| t.attempts).sum();
            let error = r
                .tasks
                .iter()
                .find_map(|t| t.error.clone())
                .unwrap_or_default();
            let mut cells = vec![
                Cell::from(r.run_id.clone()),
                Cell::from(run_status(r.status)).style(style(r.status)),
                Cell::from(format!("{ok}/{}", r.tasks.len())),
            ];
            if wide {
                cells.extend([
                    Cell::from(attempts.to_string()),
                    Cell::from(fmt::time(r.started_at)),
                ]);
            }
            cells.push(Cell::from(duration(r.started_at, r.ended_at)));
            if wide {
                cells.push(Cell::from(r.report.duplicates().to_string()));
            }
            cells.push(Cell::from(error));
            Row::new(cells)
        })
        .collect();
    // The batch's own schedule (hourly by default), not the cycle's countdown.
    let next = match snap.next_batch_at {
        Some(t) => format!(
            "next batch run in {}",
            fmt::span_secs((t - app.now(snap)).num_seconds())
        ),
        None => "not scheduled".into(),
    };
    super::table(
        frame,
        runs_area,
        format!(
            " Batch runs ({}, {}; {next}; R retries the selected, s sorts) ",
            runs.len(),
            app.sort_name().unwrap_or("newest first")
        ),
        &if wide {
            vec![
                "run", "state", "tasks", "starts", "started", "took", "dups", "error",
            ]
        } else {
            vec!["run", "state", "tasks", "took", "error (Enter: whole)"]
        },
        rows,
        &if wide {
            vec![
                Constraint::Length(22),
                Constraint::Length(10),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(4),
                Constraint::Min(0),
            ]
        } else {
            vec![
                Constraint::Length(21),
                Constraint::Length(10),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Min(0),
            ]
        },
        Some(sel - first),
        theme,
    );
    let task_rows: Vec<Row> = runs
        .get(sel)
        .map(|r| {
            r.tasks
                .iter()
                .map(|t| {
                    let st = match t.status {
                        TaskStatus::Succeeded => theme.ok(),
                        TaskStatus::Failed | TaskStatus::UpstreamFailed => theme.bad(),
                        _ => theme.warn(),
                    };
                    Row::new(vec![
                        Cell::from(t.name.name()),
                        Cell::from(task_status(t.status)).style(st),
                        Cell::from(t.attempts.to_string()),
                        Cell::from(duration(t.started_at, t.ended_at)),
                        Cell::from(
                            t.error
                                .clone()
                                .or_else(|| t.detail.clone())
                                .unwrap_or_default(),
                        ),
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    super::table(
        frame,
        tasks_area,
        format!(
            " Tasks of {} ",
            runs.get(sel).map_or("-", |r| r.run_id.as_str())
        ),
        // Times the task was started; the HTTP attempts of an extract are in its detail.
        &["task", "state", "starts", "took", "detail / error"],
        task_rows,
        &[
            Constraint::Length(17),
            Constraint::Length(16),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Min(0),
        ],
        None,
        theme,
    );
}
