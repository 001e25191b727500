//! The `ecomops` binary: CLI, config loading, wiring, and the headless runner. The pipeline
//! core lives in `ecom-pipeline`, the dashboard in `ecom-ui`.

mod bench;
mod cli;
mod dashboard;
mod headless;
mod logging;
mod observe;
mod progress;
mod render;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use ecom_pipeline::config::{Config, LogFormat};
use ecom_pipeline::orchestrator::LogBuffer;

use cli::{BatchCmd, BenchCmd, Cli, Cmd, IngestCmd, LogFormatArg, StreamCmd};
use ecom_pipeline::command::Command;

/// Exit codes: 0 ok, 1 the run failed, 2 bad usage or bad config, 75 (EX_TEMPFAIL) not done
/// yet because what it needs is not done (a batch task's upstream): retry later.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_WAITING: u8 = 75;

/// A usage problem found after parsing (exit code 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ecomops: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ecomops: {e:#}");
            ExitCode::from(exit_code_for(&e))
        }
    }
}

fn exit_code_for(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<Usage>().is_some() {
            return EXIT_USAGE;
        }
        if let Some(pe) = cause.downcast_ref::<ecom_pipeline::Error>() {
            return if pe.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
        }
    }
    EXIT_FAILED
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.global.config.as_deref())?;
    if let Some(dir) = &cli.global.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(f) = cli.global.log_format {
        config.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    let no_color =
        cli.global.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dashboard = cli.command.is_none() && !cli.no_ui;
    let logs = LogBuffer::default();
    let log_dir = config.data_dir.join("logs");
    let sink = if dashboard {
        // The dashboard owns the terminal: lines on stderr would tear its frames.
        logging::Sink::Files {
            dir: &log_dir,
            max_files: config.log.max_files,
        }
    } else {
        logging::Sink::Stderr
    };
    // A query's INFO lines are noise beside its answer (`log.level` still raises it higher).
    let quiet = cli.command.as_ref().is_some_and(cli::Cmd::is_query) && config.log.level == "info";
    let level = if quiet {
        "warn"
    } else {
        config.log.level.as_str()
    };
    let _guard = logging::init(config.log.format, level, sink, no_color, logs.clone())
        .context("setting up logging")?;

    let read_only = cli.global.read_only;
    match cli.command {
        None if cli.no_ui => headless::run(config, cli.once, cli.output, read_only, logs).await,
        None => dashboard::run(config, read_only, no_color, logs).await,
        Some(Cmd::Status { json }) => headless::status(config, json, logs).await,
        Some(Cmd::Leases { json }) => headless::leases(config, json).await,
        Some(Cmd::Batch(BatchCmd::Run {
            task,
            only,
            run_id,
            data_interval_start,
            data_interval_end,
            carts_from,
            carts_to,
        })) => {
            let window = match data_interval_start.zip(data_interval_end) {
                Some((a, b)) => Some(cli::interval_days(a, b).map_err(Usage)?),
                None => carts_from.zip(carts_to),
            };
            let c = Command::BatchRun {
                task,
                only,
                run_id,
                window,
            };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        Some(Cmd::Bench(BenchCmd::Merge { base, rows })) => {
            bench::merge(base, rows).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Bench(BenchCmd::Frame {
            shards,
            runs,
            size,
            frames,
        })) => {
            let (w, h) = size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                .ok_or_else(|| Usage(format!("--size must be COLSxROWS, got {size:?}")))?;
            bench::frame(shards, runs, w, h, frames)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Bench(BenchCmd::Fleet {
            instances,
            events,
            endpoint,
            postgres,
        })) => {
            bench::fleet(&instances, events, &endpoint, &postgres).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Bench(BenchCmd::Store { objects, endpoint })) => {
            bench::store(objects, endpoint).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Bench(BenchCmd::Keys { rows })) => {
            bench::keys(rows).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Bench(BenchCmd::Batch { scale })) => {
            bench::batch(scale).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Bench(BenchCmd::Ingest { file, peer, python })) => {
            bench::ingest(&file, &peer, &python)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Bench(BenchCmd::Stream { events, file })) => {
            bench::stream(events, file).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Ingest(IngestCmd::Events { file })) => {
            let path = ingest_path(&config.data_dir, &file)?;
            let c = Command::IngestFile { path };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        // The stream runs in every cycle: `stream run` is the headless service.
        Some(Cmd::Stream(StreamCmd::Run)) => {
            headless::run(config, false, cli.output, read_only, logs).await
        }
        Some(Cmd::Replay {
            shard,
            from_seq,
            from_time,
        }) => {
            let c = Command::Replay {
                shard,
                from_seq,
                from_time,
            };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        Some(Cmd::Metrics { json, from, to, by }) => {
            let output = if json { cli::Output::Json } else { cli.output };
            let c = match (from.zip(to), by) {
                (Some((from, to)), cli::TrendBy::Day) => Command::Trends { from, to },
                (Some((from, to)), cli::TrendBy::Category) => Command::CategoryTrends { from, to },
                (None, _) => Command::Metrics,
            };
            headless::command(config, c, output, read_only, logs).await
        }
        Some(c @ (Cmd::Pause | Cmd::Resume)) => {
            // Pausing is a state of the running process: with none, there is nothing to pause.
            if ecom_pipeline::instance::holder(&config.data_dir).is_none() {
                return Err(Usage(format!(
                    "no ecomops runs on {}: pause and resume apply to a running dashboard or --no-ui",
                    config.data_dir.display()
                ))
                .into());
            }
            let c = if matches!(c, Cmd::Pause) {
                Command::Pause
            } else {
                Command::Resume
            };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        Some(Cmd::Verify) => {
            headless::command(config, Command::Verify, cli.output, read_only, logs).await
        }
        Some(Cmd::Backfill { from, to, model }) => {
            use ecom_pipeline::warehouse::models::{model_spec, MODEL_SPECS};
            if let Some(m) = model.filter(|m| model_spec(m).is_none()) {
                let names: Vec<&str> = MODEL_SPECS.iter().map(|s| s.name).collect();
                return Err(Usage(format!(
                    "no model {m:?}; the models are {}",
                    names.join(", ")
                ))
                .into());
            }
            let c = Command::Backfill { from, to };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        Some(Cmd::Cost { json }) => {
            let output = if json { cli::Output::Json } else { cli.output };
            headless::command(config, Command::Cost, output, read_only, logs).await
        }
        Some(Cmd::Prune { dry_run }) => {
            let c = Command::Prune { dry_run };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        Some(Cmd::Quarantine {
            reason,
            limit,
            json,
        }) => {
            let output = if json { cli::Output::Json } else { cli.output };
            let c = Command::Quarantine { reason, limit };
            headless::command(config, c, output, read_only, logs).await
        }
        Some(Cmd::Snooze { scenario, minutes }) => {
            // A snooze is a state of the running process, like pause.
            if ecom_pipeline::instance::holder(&config.data_dir).is_none() {
                return Err(Usage(format!(
                    "no ecomops runs on {}: a snooze applies to a running dashboard or --no-ui",
                    config.data_dir.display()
                ))
                .into());
            }
            let c = Command::Snooze { scenario, minutes };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        Some(Cmd::Reprocess) => {
            headless::command(config, Command::Reprocess, cli.output, read_only, logs).await
        }
        Some(Cmd::Lifecycle { apply }) => {
            let c = Command::Lifecycle { apply };
            headless::command(config, c, cli.output, read_only, logs).await
        }
        Some(Cmd::Retry { run_id, task }) => {
            let c = Command::Retry { run_id, task };
            headless::command(config, c, cli.output, read_only, logs).await
        }
    }
}

/// An absolute path the pipeline process can read: the file itself, or standard input saved
/// under `<data_dir>/ingest/` for `-`.
fn ingest_path(data_dir: &std::path::Path, file: &str) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Read as _;
    if file != "-" {
        return std::fs::canonicalize(file).with_context(|| format!("cannot read {file}"));
    }
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("reading standard input")?;
    let dir = data_dir.join("ingest");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!(
        "stdin-{}.ndjson",
        ecom_pipeline::store::sha256_hex(&body)
    ));
    std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
    Ok(std::fs::canonicalize(&path)?)
}
