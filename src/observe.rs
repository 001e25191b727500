//! A `--read-only` process observes: it never takes the data dir's lock, runs no cycle and
//! writes nothing. When a writer runs it follows the writer's snapshots through the control
//! socket; when none does it reads the data dir as it is, opening the store, the log and the
//! warehouse read-only for each look and closing them after, so a writer that starts meanwhile
//! is never in the way (DuckDB locks its file per process).

use std::sync::Arc;
use std::time::Duration;

use ecom_pipeline::command::{Command, CommandOutcome, Origin};
use ecom_pipeline::config::Config;
use ecom_pipeline::control::ControlClient;
use ecom_pipeline::instance;
use ecom_pipeline::orchestrator::{LogBuffer, Pipeline, PipelineOptions};
use ecom_pipeline::snapshot::{RunMode, Snapshot};
use tokio::sync::watch;

/// How often a writer is looked for (cheap: the lock file). The data dir itself is read again
/// every `runtime.stats_interval_secs`, as a writer refreshes its statistics: a full look
/// lists every zone and queries the warehouse.
const WRITER_EVERY: Duration = Duration::from_secs(2);

fn options(mode: RunMode, log: LogBuffer) -> PipelineOptions {
    PipelineOptions {
        mode,
        read_only: true,
        schedule: false,
        log,
    }
}

/// One look at the data dir, with nothing kept open after it.
pub async fn look(config: &Config, mode: RunMode, log: LogBuffer) -> anyhow::Result<Snapshot> {
    let pipeline = Pipeline::open(config.clone(), options(mode, log)).await?;
    Ok((*pipeline.snapshot()).clone())
}

/// Snapshots as they change: the writer's, or a look every statistics interval.
pub async fn follow(
    config: Config,
    mode: RunMode,
    log: LogBuffer,
) -> anyhow::Result<watch::Receiver<Arc<Snapshot>>> {
    let first = match instance::holder(&config.data_dir) {
        Some(pid) => {
            crate::headless::connect_running(&config.data_dir, pid)
                .await?
                .snapshot()
                .await?
        }
        None => look(&config, mode, log.clone()).await?,
    };
    let (tx, rx) = watch::channel(Arc::new(first));
    let look_every = Duration::from_secs(config.runtime.stats_interval_secs.max(2));
    tokio::spawn(async move {
        let mut looked = std::time::Instant::now();
        loop {
            if tx.is_closed() {
                return;
            }
            if let Some(pid) = instance::holder(&config.data_dir) {
                // Attached: every change of the writer's, until it goes away.
                if let Ok(mut client) =
                    crate::headless::connect_running(&config.data_dir, pid).await
                {
                    if client.subscribe().await.is_ok() {
                        while let Ok(Some(s)) = client.next_snapshot().await {
                            if tx.send(s).is_err() {
                                return;
                            }
                        }
                    }
                }
            } else if looked.elapsed() >= look_every {
                looked = std::time::Instant::now();
                match look(&config, mode, log.clone()).await {
                    Ok(s) => {
                        if tx.send(Arc::new(s)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not read the data dir"),
                }
            }
            tokio::time::sleep(WRITER_EVERY).await;
        }
    });
    Ok(rx)
}

/// A command from a read-only process: to the writer when one runs (which refuses what would
/// change anything, the origin being read-only), else carried out on a read-only look.
pub async fn command(
    config: &Config,
    command: Command,
    origin: Origin,
    log: LogBuffer,
) -> anyhow::Result<CommandOutcome> {
    if let Some(pid) = instance::holder(&config.data_dir) {
        let mut client: ControlClient =
            crate::headless::connect_running(&config.data_dir, pid).await?;
        return Ok(client.command(command, origin).await?);
    }
    let mut pipeline = Pipeline::open(config.clone(), options(RunMode::Oneshot, log)).await?;
    Ok(pipeline.dispatch(command, &origin).await)
}
