//! `--no-ui` and the one-shot commands. The long-running form owns the data dir (lock +
//! control socket) exactly as the dashboard does; one-shot commands go through the running
//! instance's socket when there is one, and open the data dir themselves when not.

use std::process::ExitCode;

use anyhow::Context as _;
use ecom_pipeline::command::{Command, CommandOutcome};
use ecom_pipeline::config::Config;
use ecom_pipeline::control::{self, ControlClient, ControlServer};
use ecom_pipeline::instance::{self, InstanceLock};
use ecom_pipeline::orchestrator::{
    LogBuffer, Pipeline, PipelineHandle, PipelineOptions, PipelineTask,
};
use ecom_pipeline::snapshot::RunMode;
use ecom_pipeline::Error;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::Output;
use crate::render;

/// `ecomops --no-ui [--once]`.
pub async fn run(
    config: Config,
    once: bool,
    output: Output,
    read_only: bool,
    log: LogBuffer,
) -> anyhow::Result<ExitCode> {
    if once {
        return command(config, Command::RunCycle, output, read_only, log).await;
    }
    if read_only {
        return observe(config, output, log).await;
    }
    let data_dir = config.data_dir.clone();
    let lock = InstanceLock::acquire(&data_dir)?;
    let options = PipelineOptions {
        mode: RunMode::Headless,
        read_only,
        schedule: true,
        log,
    };
    let (handle, task, _server) = start(config, options).await?;
    tracing::info!(pid = std::process::id(), data_dir = %data_dir.display(), "ecomops started");

    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut snapshots = handle.subscribe();
    let mut last_cycle_printed = 0;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            // A service under nohup/systemd ignores hang-ups of the terminal that started it.
            _ = hup.recv() => { tracing::info!("SIGHUP ignored: the pipeline keeps running"); }
            changed = snapshots.changed() => {
                if changed.is_err() { break; }
                let snap = snapshots.borrow_and_update().clone();
                match output {
                    Output::Json => println!("{}", serde_json::to_string(&*snap)?),
                    Output::Text => {
                        if let Some(c) = snap.last_cycle.as_ref().filter(|c| c.cycle != last_cycle_printed) {
                            last_cycle_printed = c.cycle;
                            println!("{}", render::cycle_line(c));
                        }
                    }
                }
            }
        }
    }
    task.stop().await;
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

/// `--no-ui --read-only`: the snapshots of the data dir as they change (see `observe`), printed
/// like a writer's, until a signal; never the lock, never a cycle, nothing written.
async fn observe(config: Config, output: Output, log: LogBuffer) -> anyhow::Result<ExitCode> {
    let mut snapshots = crate::observe::follow(config, RunMode::Headless, log).await?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut last: Option<serde_json::Value> = None;
    loop {
        {
            let snap = snapshots.borrow_and_update().clone();
            // A look that found nothing new prints nothing. What it found is the snapshot but
            // its sequence, clock and log tail: a writer's cycles, or (with no writer) what each
            // look of the data dir reads, which the cycle count and pid alone never show.
            let now = match output {
                Output::Json => {
                    let mut v = serde_json::to_value(&*snap)?;
                    if let Some(o) = v.as_object_mut() {
                        for volatile in ["seq", "generated_at", "recent_log"] {
                            o.remove(volatile);
                        }
                    }
                    v
                }
                Output::Text => serde_json::Value::String(render::observed_line(&snap)),
            };
            if last.as_ref() != Some(&now) {
                last = Some(now);
                match output {
                    Output::Json => println!("{}", serde_json::to_string(&*snap)?),
                    Output::Text => println!("{}", render::observed_line(&snap)),
                }
            }
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One command (`--once`, `batch run`, `retry` ...): sent to the running instance when there is
/// one, otherwise carried out here while holding the data dir like any instance.
pub async fn command(
    config: Config,
    command: Command,
    output: Output,
    read_only: bool,
    log: LogBuffer,
) -> anyhow::Result<ExitCode> {
    // `metrics --json` and `cost --json` print the figures themselves, for jq and dashboards.
    let detail_only = matches!(
        command,
        Command::Metrics | Command::Cost | Command::Trends { .. } | Command::CategoryTrends { .. }
    );
    let data_dir = config.data_dir.clone();
    let origin = ecom_pipeline::command::current_origin("cli", read_only);
    // A spinner on a terminal while long work runs; cleared before the outcome prints.
    let progress = crate::progress::Progress::start(&command, matches!(output, Output::Text), &log);
    let report_outcome = |outcome: &CommandOutcome, output: Output, detail_only: bool| {
        drop(progress);
        report_outcome(outcome, output, detail_only)
    };
    if read_only {
        // Never the lock: to the writer, or on a read-only look at the data dir.
        let outcome = crate::observe::command(&config, command, origin, log).await?;
        return Ok(report_outcome(&outcome, output, detail_only));
    }
    // The holder may be a one-shot invocation about to exit (Airflow runs the three extracts
    // at once): when it hangs up without answering, the command was not carried out, so take
    // the data dir or attach to whoever holds it now, again.
    let mut attempt = 0;
    let lock = loop {
        attempt += 1;
        match InstanceLock::acquire(&data_dir) {
            Ok(lock) => break lock,
            Err(Error::AlreadyRunning { pid, .. }) => {
                let sent = async {
                    let mut client = connect_running(&data_dir, pid).await?;
                    anyhow::Ok(client.command(command.clone(), origin.clone()).await?)
                };
                match sent.await {
                    Ok(outcome) => return Ok(report_outcome(&outcome, output, detail_only)),
                    Err(e)
                        if attempt < 50
                            && (instance::holder(&data_dir) != Some(pid)
                                || matches!(e.downcast_ref(), Some(Error::HungUp { .. }))) =>
                    {
                        tracing::debug!(error = %e, pid, "the holder went away; trying again");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let options = PipelineOptions {
        mode: RunMode::Oneshot,
        read_only,
        schedule: false,
        log,
    };
    // Others may attach (status, a dashboard) while this runs.
    let (handle, task, _server) = start(config, options).await?;
    let outcome = handle.send_as(command, origin).await?;
    task.stop().await;
    drop(lock);
    Ok(report_outcome(&outcome, output, detail_only))
}

/// Open the pipeline, run it as a task, and serve its control socket (the caller holds the lock).
pub(crate) async fn start(
    config: Config,
    options: PipelineOptions,
) -> anyhow::Result<(PipelineHandle, PipelineTask, ControlServer)> {
    let socket = instance::socket_path(&config.data_dir);
    let pipeline = Pipeline::open(config, options).await?;
    let (handle, task) = pipeline.spawn();
    let server = control::serve(&socket, handle.clone())?;
    Ok((handle, task, server))
}

pub(crate) async fn connect_running(
    data_dir: &std::path::Path,
    pid: u32,
) -> anyhow::Result<ControlClient> {
    // The holder may be between taking the lock and binding its socket: give it a moment.
    for _ in 0..50 {
        if let Some(c) = ControlClient::connect(data_dir).await? {
            return Ok(c);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "ecomops pid {pid} holds {} but its control socket does not answer",
        data_dir.display()
    )
}

/// `--output json`: the outcome as cron jobs and scripts read it: ok, one line, the report's
/// kind and its data under `detail`.
#[derive(serde::Serialize)]
struct JsonOutcome<'a> {
    ok: bool,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<serde_json::Value>,
}

fn report_outcome(outcome: &CommandOutcome, output: Output, detail_only: bool) -> ExitCode {
    // The report is adjacently tagged: {"kind": ..., "data": ...}.
    let tagged = outcome
        .report
        .as_ref()
        .and_then(|r| serde_json::to_value(r).ok());
    let kind = tagged.as_ref().and_then(|t| t["kind"].as_str());
    let detail = tagged
        .as_ref()
        .map(|t| t["data"].clone())
        .filter(|d| !d.is_null());
    let json = match output {
        Output::Json if detail_only && detail.is_some() => serde_json::to_string(&detail),
        Output::Json => serde_json::to_string(&JsonOutcome {
            ok: outcome.ok,
            message: if outcome.ok {
                render::summary(outcome)
            } else {
                outcome.message.clone()
            },
            report: kind,
            detail: detail.clone(),
        }),
        Output::Text => {
            print!("{}", render::outcome_text(outcome));
            Ok(String::new())
        }
    };
    match json {
        Ok(s) if !s.is_empty() => println!("{s}"),
        Ok(_) => {}
        Err(e) => eprintln!("ecomops: {e}"),
    }
    if outcome.ok {
        ExitCode::SUCCESS
    } else if outcome.waiting {
        ExitCode::from(crate::EXIT_WAITING)
    } else {
        ExitCode::from(crate::EXIT_FAILED)
    }
}

/// `ecomops status [--json]`.
pub async fn status(config: Config, json: bool, log: LogBuffer) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir.clone();
    let snapshot = match instance::holder(&data_dir) {
        Some(pid) => connect_running(&data_dir, pid).await?.snapshot().await?,
        // Nobody runs: read the data dir ourselves, changing nothing.
        None => crate::observe::look(&config, RunMode::Oneshot, log).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&snapshot)?);
    } else {
        print!("{}", render::status_text(&snapshot));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ecomops leases [--json]`: the lease table and the shared warehouse's checkpoints, read
/// directly (no instance needed; nothing written).
pub async fn leases(config: Config, json: bool) -> anyhow::Result<ExitCode> {
    if !config.stream.kinesis.leases.enabled {
        eprintln!(
            "ecomops: shard leases are off (stream.kinesis.leases.enabled = false): this \
             instance reads every shard itself"
        );
        return Ok(ExitCode::from(2));
    }
    let fleet = ecom_pipeline::stream::leases::look(&config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&fleet)?);
    } else {
        print!("{}", render::fleet_text(&fleet));
    }
    Ok(ExitCode::SUCCESS)
}
