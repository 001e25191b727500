//! The pipeline core, split by responsibility:
//!
//! - this module, the engine: owns the backends and the state, runs cycles on a schedule and
//!   commands as they arrive, one at a time (`run`);
//! - `dispatch`: the one gate every command passes (read-only mode, the audit trail);
//! - `handlers`: what each command does, returning a typed report (`ecom_model::report`);
//! - `observe`: statistics, cost, the integrity scan and its repairs;
//! - `publish`: observations -> `ecom_model::derive` -> an immutable `Snapshot`;
//! - `handle`: the way in for the dashboard, `--no-ui` and the control socket.
//!
//! See docs/ARCHITECTURE.md.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};

use crate::audit;
use crate::batch::run::{BatchRun, BatchRunner, RunStatus};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::snapshot::{Backends, CycleReport, InstanceInfo, Snapshot};
use crate::store::{self, ObjectStore};
use crate::stream::consumer::StreamStatus;
use crate::stream::runner::{self, StreamRunner};
use crate::warehouse::{self, Warehouse, WarehouseStatus};
use crate::zones::ZoneStats;

/// Log lines kept for the dashboard.
const LOG_CAPACITY: usize = 500;
/// Batch runs shown in snapshots.
const RECENT_RUNS: usize = 20;
/// Audited actions shown in snapshots.
const RECENT_ACTIONS: usize = 20;

mod dispatch;
mod handle;
mod handlers;
mod observe;
mod publish;

use handle::Envelope;
pub use handle::{LogBuffer, PipelineHandle, PipelineOptions, PipelineTask};

/// The pipeline core.
pub struct Pipeline {
    config: Config,
    store: Arc<dyn ObjectStore>,
    batch: BatchRunner,
    runs: Vec<BatchRun>,
    warehouse: Option<Arc<dyn Warehouse>>,
    warehouse_status: Option<WarehouseStatus>,
    stream: StreamRunner,
    stream_status: Option<StreamStatus>,
    info: InstanceInfo,
    backends: Backends,
    options: PipelineOptions,
    paused: bool,
    zones: Vec<ZoneStats>,
    cycles: u64,
    last_cycle: Option<CycleReport>,
    /// When the last batch pull started; the next is due `batch.interval_secs` later.
    last_batch: Option<std::time::Instant>,
    seq: u64,
    log_seen: u64,
    history: crate::history::Recorder,
    /// Audited actions shown in snapshots.
    actions: VecDeque<audit::Record>,
    next_cycle_at: Option<chrono::DateTime<Utc>>,
    meter: Arc<crate::cost::Meter>,
    usage: crate::cost::Usage,
    cost: Option<crate::cost::CostReport>,
    /// Failure table and alerts: the derivation's state between publications.
    deriver: ecom_model::derive::Deriver,
    /// RAW/STAGING objects failing their checksum at the last scan, and the last repair error.
    damaged: Vec<String>,
    repair_error: Option<String>,
    repairing: bool,
    last_scan: Option<std::time::Instant>,
    /// Where the incremental integrity scan goes on (`<data_dir>/integrity.json`).
    scan_plan: crate::integrity::ScanPlan,
    late_pending: Vec<chrono::NaiveDate>,
    /// The late buffer's objects, each read once.
    late_index: crate::warehouse::late_index::LateIndex,
    /// The data-quality findings and when they were computed: their anti-joins and scans read
    /// whole STAGING tables, so they run once per statistics interval, not on every refresh.
    quality: Option<(std::time::Instant, ecom_model::warehouse::Quality)>,
    /// The last days' figures for the Trends view, read once per statistics interval.
    trends: Option<(std::time::Instant, Vec<ecom_model::warehouse::DayFigures>)>,
    backfilling: bool,
    /// Zone figures from the last listing moved by this process's writes (`zone_tally`).
    zone_tally: Arc<crate::zone_tally::ZoneTally>,
    /// What lifecycle rules would save, from the last listing (it needs the objects' ages).
    saving: Option<crate::cost::Saving>,
    cloudwatch: Option<crate::cloudwatch::Publisher>,
    /// The last statistics refresh's failure (checked once, at open).
    refresh_error: Option<Error>,
    tx: watch::Sender<Arc<Snapshot>>,
}
impl Pipeline {
    /// Open the configured backends. The caller holds the data-dir lock when it will write.
    pub async fn open(config: Config, options: PipelineOptions) -> Result<Pipeline> {
        let data_dir = config.data_dir.clone();
        let meter = Arc::new(crate::cost::Meter::default());
        let zone_tally = Arc::new(crate::zone_tally::ZoneTally::default());
        let store = crate::zone_tally::TalliedStore::wrap(
            crate::cost::MeteredStore::wrap(
                store::open_as(&config, options.read_only).await?,
                meter.clone(),
            ),
            zone_tally.clone(),
        );
        let info = InstanceInfo {
            pid: std::process::id(),
            started_at: Utc::now(),
            data_dir: config.data_dir.clone(),
            mode: options.mode,
            read_only: options.read_only,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let backends = Backends {
            store: store.backend().to_string(),
            stream: format!("{:?}", config.stream.backend).to_lowercase(),
            warehouse: format!("{:?}", config.warehouse.backend).to_lowercase(),
        };
        // Zones, warehouse and stream statistics come from the one refresh at the end of open.
        let zones = Vec::new();
        let cloudwatch = if config.telemetry.cloudwatch.enabled {
            let p = crate::cloudwatch::Publisher::connect(&config.telemetry.cloudwatch)
                .await
                .watching(&config.alerts);
            if config.telemetry.cloudwatch.create_alarms && !options.read_only {
                match p.put_alarms(&config.alerts).await {
                    Ok(n) => tracing::info!(alarms = n, "CloudWatch alarms created or updated"),
                    Err(e) => tracing::warn!(error = %e, "could not create CloudWatch alarms"),
                }
            }
            Some(p)
        } else {
            None
        };
        let wh = warehouse::open(&config, options.read_only, &store)
            .await?
            .map(|w| crate::cost::MeteredWarehouse::wrap(w, meter.clone()));
        let warehouse_status = None;
        let batch = BatchRunner::new(&config, store.clone(), wh.clone())?;
        let stream = StreamRunner::new(
            &config,
            runner::open_log_as(&config, options.read_only).await?,
            !options.read_only,
        );
        let stream_status = None;
        let runs = batch.runs().recent(RECENT_RUNS);
        let placeholder = Arc::new(Snapshot::empty(info.clone(), backends.clone(), Utc::now()));
        let config_alerts = config.alerts.clone();
        let (tx, _) = watch::channel(placeholder);
        let scan_plan = crate::integrity::ScanPlan::load(&data_dir);
        let mut p = Pipeline {
            config,
            store,
            batch,
            runs,
            warehouse: wh,
            warehouse_status,
            stream,
            stream_status,
            info,
            backends,
            options,
            paused: false,
            zones,
            cycles: 0,
            last_cycle: None,
            last_batch: None,
            seq: 0,
            log_seen: 0,
            history: crate::history::Recorder::default(),
            actions: audit::recent(&data_dir, RECENT_ACTIONS).into(),
            next_cycle_at: None,
            usage: crate::cost::load_usage(&data_dir, Utc::now()),
            meter,
            cost: None,
            deriver: ecom_model::derive::Deriver::new(config_alerts),
            // Found by an earlier process and not repaired yet.
            damaged: scan_plan.damaged.clone(),
            repair_error: None,
            repairing: false,
            last_scan: None,
            scan_plan,
            late_pending: Vec::new(),
            late_index: Default::default(),
            quality: None,
            trends: None,
            backfilling: false,
            zone_tally,
            saving: None,
            cloudwatch,
            refresh_error: None,
            tx,
        };
        p.refresh_zones().await;
        // A store or warehouse that cannot be read at start is an error, not a warning.
        if let Some(e) = p.refresh_error.take() {
            return Err(e);
        }
        p.publish();
        Ok(p)
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The warehouse, once it exists.
    pub fn warehouse(&self) -> Option<&Arc<dyn Warehouse>> {
        self.warehouse.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One cycle: every step that is due (all of them when `force`), then fresh zone statistics.
    pub async fn run_cycle(&mut self, force: bool) -> CycleReport {
        self.cycles += 1;
        let started_at = Utc::now();
        let mut steps = Vec::new();
        let mut error: Option<String> = None;
        let batch_every = Duration::from_secs(self.config.batch.interval_secs);
        if force || self.last_batch.is_none_or(|t| t.elapsed() >= batch_every) {
            self.last_batch = Some(std::time::Instant::now());
            match self.run_batch().await {
                Ok(summary) => steps.push(format!("batch: {summary}")),
                Err(e) => error = Some(format!("batch: {e}")),
            }
        }
        let every = self.config.runtime.cycle_interval_secs;
        match self
            .stream
            .cycle(self.store.as_ref(), self.warehouse.as_deref(), every)
            .await
        {
            Ok(summary) => steps.push(summary),
            Err(e) => {
                let e = format!("stream: {e}");
                error = Some(error.map_or(e.clone(), |b| format!("{b}; {e}")));
            }
        }
        self.scan_and_repair(false).await;
        self.refresh_zones().await;
        let report = CycleReport {
            cycle: self.cycles,
            started_at,
            finished_at: Utc::now(),
            ok: error.is_none(),
            steps,
            error,
        };
        tracing::info!(cycle = report.cycle, ok = report.ok, "cycle finished");
        self.last_cycle = Some(report.clone());
        self.publish();
        report
    }

    /// A new batch run; its one-line summary, or an error when it did not succeed.
    async fn run_batch(&mut self) -> Result<String> {
        let run = self.batch.run_new(None, None).await;
        self.batch_finished(run)
    }

    /// The runs the snapshot shows, read again after one ran.
    pub(super) fn refresh_runs(&mut self) {
        self.runs = self.batch.runs().recent(RECENT_RUNS);
    }

    fn batch_finished(&mut self, run: Result<BatchRun>) -> Result<String> {
        self.refresh_runs();
        let run = run?;
        let summary = run.summary();
        match run.status {
            RunStatus::Succeeded | RunStatus::Incomplete => Ok(summary),
            _ => Err(Error::Other(summary)),
        }
    }

    /// Run the pipeline as a task; returns the handle and the task.
    pub fn spawn(self) -> (PipelineHandle, PipelineTask) {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let handle = PipelineHandle {
            snapshot: self.tx.subscribe(),
            commands: cmd_tx,
        };
        let join = tokio::spawn(self.run(cmd_rx, shutdown_rx));
        (
            handle,
            PipelineTask {
                join,
                shutdown: shutdown_tx,
            },
        )
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Envelope>,
        mut shutdown: oneshot::Receiver<()>,
    ) {
        let cycle_every = Duration::from_secs(self.config.runtime.cycle_interval_secs.max(1));
        let stats_every = Duration::from_secs(self.config.runtime.stats_interval_secs.max(1));
        let mut cycle_tick = tokio::time::interval(cycle_every);
        let mut stats_tick = tokio::time::interval(stats_every);
        // Log lines arrive between events; a short tick republishes when there are new ones.
        let mut log_tick = tokio::time::interval(Duration::from_millis(500));
        let cw_every = self.config.telemetry.cloudwatch.interval_secs.max(10);
        let mut cw_tick = tokio::time::interval(Duration::from_secs(cw_every));
        for t in [
            &mut cycle_tick,
            &mut stats_tick,
            &mut log_tick,
            &mut cw_tick,
        ] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    // Commands already queued are answered: a client that reached this
                    // process before it stopped gets its outcome, never a dropped request.
                    commands.close();
                    while let Ok(Envelope { command, origin, reply }) = commands.try_recv() {
                        let outcome = self.dispatch(command, &origin).await;
                        let _ = reply.send(outcome);
                    }
                    break;
                }
                envelope = commands.recv() => {
                    let Some(Envelope { command, origin, reply }) = envelope else { break };
                    let outcome = self.dispatch(command, &origin).await;
                    let _ = reply.send(outcome);
                }
                _ = cycle_tick.tick(), if self.options.schedule && !self.paused => {
                    self.run_cycle(false).await;
                    self.next_cycle_at = chrono::Duration::from_std(cycle_every)
                        .ok()
                        .map(|d| Utc::now() + d);
                    self.publish();
                }
                _ = stats_tick.tick() => {
                    self.refresh_zones().await;
                    self.publish();
                }
                _ = cw_tick.tick(), if self.cloudwatch.is_some() => {
                    let snap = self.snapshot();
                    if let Some(p) = &self.cloudwatch {
                        match p.publish(&snap.metrics, snap.generated_at).await {
                            Ok(calls) => tracing::debug!(calls, "metrics published to CloudWatch"),
                            Err(e) => tracing::warn!(error = %e, "could not publish metrics to CloudWatch"),
                        }
                    }
                }
                _ = log_tick.tick() => {
                    if self.options.log.read().0 != self.log_seen {
                        self.publish_log();
                    }
                }
            }
        }
        self.stream.stop_leases().await;
        tracing::info!("pipeline stopped");
    }
}
