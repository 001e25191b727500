//! tracing set-up: text or JSON lines on stderr, or a daily-rotated file in the data dir while
//! the dashboard owns the terminal; every event is also kept in the pipeline's `LogBuffer` for
//! the dashboard's log view.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context as _;
use chrono::Utc;
use ecom_pipeline::config::LogFormat;
use ecom_pipeline::orchestrator::LogBuffer;
use ecom_pipeline::snapshot::LogLine;
use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Where log lines go.
pub enum Sink<'a> {
    Stderr,
    /// Files `ecomops.log.YYYY-MM-DD` in this directory.
    Files {
        dir: &'a Path,
        max_files: usize,
    },
}

/// Install the global subscriber. Keep the returned guard alive: it flushes the file writer.
pub fn init(
    format: LogFormat,
    level: &str,
    sink: Sink<'_>,
    no_color: bool,
    buffer: LogBuffer,
) -> anyhow::Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .with_context(|| format!("log.level {level:?} is not a valid filter"))?;
    let mut guard = None;
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match sink {
        Sink::Stderr => {
            let ansi = !no_color && std::io::stderr().is_terminal();
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(|| SuspendingStderr)
                .with_ansi(ansi);
            match format {
                LogFormat::Json => layer.json().boxed(),
                LogFormat::Text => layer.boxed(),
            }
        }
        Sink::Files { dir, max_files } => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating log directory {}", dir.display()))?;
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("ecomops.log")
                .max_log_files(max_files.max(1))
                .build(dir)
                .with_context(|| format!("opening log files in {}", dir.display()))?;
            let (writer, g) = tracing_appender::non_blocking(appender);
            guard = Some(g);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false);
            match format {
                LogFormat::Json => layer.json().boxed(),
                LogFormat::Text => layer.boxed(),
            }
        }
    };
    tracing_subscriber::registry()
        .with(vec![fmt, Capture(buffer).boxed()])
        .with(filter)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(guard)
}

/// stderr, written with any progress spinner cleared around the line (`progress::suspend`).
struct SuspendingStderr;

impl std::io::Write for SuspendingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Copies each event into the pipeline's log ring.
struct Capture(LogBuffer);

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut v = Fields::default();
        event.record(&mut v);
        let meta = event.metadata();
        self.0.push(LogLine {
            time: Utc::now(),
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: v.finish(),
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn finish(self) -> String {
        if self.rest.is_empty() {
            self.message
        } else {
            format!("{}{}", self.message, self.rest)
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }
}
