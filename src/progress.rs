//! Progress of long CLI work on a terminal: a spinner with the elapsed time and what the
//! pipeline last logged (`ingest` of a large file, a backfill, a replay, verify, prune,
//! reprocess, a batch run). Off a terminal nothing is drawn: the log lines on stderr are the
//! progress. Log lines written while the spinner shows are printed above it (the stderr writer
//! goes through `suspend`), so neither tears the other.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use ecom_pipeline::command::Command;
use ecom_pipeline::orchestrator::LogBuffer;
use indicatif::{ProgressBar, ProgressStyle};

/// The spinner showing now, if any.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Run `f` (a write to stderr) with the spinner, if one shows, cleared and redrawn around it.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// Commands that can take long enough to want a sign of life.
fn is_long(c: &Command) -> bool {
    matches!(
        c,
        Command::IngestFile { .. }
            | Command::Backfill { .. }
            | Command::Replay { .. }
            | Command::Verify
            | Command::Prune { .. }
            | Command::Reprocess
            | Command::BatchRun { .. }
            | Command::Retry { .. }
            | Command::RunCycle
    )
}

/// A spinner for `command` while it runs, when stderr is a terminal; dropped, it clears.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(command: &Command, text_output: bool, log: &LogBuffer) -> Progress {
        if !text_output || !is_long(command) || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix}: {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(command.name());
        bar.enable_steady_tick(Duration::from_millis(120));
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
        // What the pipeline last said is the best word on where it is.
        let (b, log) = (bar.clone(), log.clone());
        let ticker = tokio::spawn(async move {
            loop {
                if let Some(l) = log.last() {
                    b.set_message(l.message.lines().next().unwrap_or_default().to_string());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
