//! The pipeline core: owns the backends and the state, runs cycles on a schedule, takes
//! commands through one dispatcher, and publishes an immutable `Snapshot` after every change.
//! The dashboard, `--no-ui` and the control socket all drive it through a `PipelineHandle`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::audit;
use crate::batch::run::{BatchRun, BatchRunner, RunStatus};
use crate::command::{Command, CommandOutcome, Origin};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::snapshot::{
    Backends, BatchStatus, CycleReport, InstanceInfo, LogLine, RunMode, Snapshot,
};
use crate::store::{self, ObjectStore};
use crate::stream::consumer::StreamStatus;
use crate::stream::runner::{self, StreamRunner};
use crate::warehouse::{self, Warehouse, WarehouseStatus};
use crate::zones::{self, ZoneStats};
use ecom_model::report::{BackfillReport, CycleOutcome, IngestReport, Report};

/// Log lines kept for the dashboard.
const LOG_CAPACITY: usize = 500;
/// Batch runs shown in snapshots.
const RECENT_RUNS: usize = 20;
/// Audited actions shown in snapshots.
const RECENT_ACTIONS: usize = 20;

/// Recent log lines, filled by the binary's tracing layer and read into each snapshot.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer {
    inner: Arc<Mutex<LogRing>>,
}

#[derive(Debug, Default)]
struct LogRing {
    lines: VecDeque<LogLine>,
    /// Lines ever pushed: tells the orchestrator whether to republish.
    pushed: u64,
}

impl LogBuffer {
    pub fn push(&self, line: LogLine) {
        // A poisoned lock only means a panic elsewhere mid-push; the ring is still usable.
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ring.lines.len() == LOG_CAPACITY {
            ring.lines.pop_front();
        }
        ring.lines.push_back(line);
        ring.pushed += 1;
    }

    fn read(&self) -> (u64, Vec<LogLine>) {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (ring.pushed, ring.lines.iter().cloned().collect())
    }
}

/// How the pipeline is run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub mode: RunMode,
    pub read_only: bool,
    /// Run cycles on the configured interval (off for one-shot invocations).
    pub schedule: bool,
    pub log: LogBuffer,
}

struct Envelope {
    command: Command,
    origin: Origin,
    reply: oneshot::Sender<CommandOutcome>,
}

/// The way in: snapshots out, commands in. Cheap to clone.
#[derive(Clone)]
pub struct PipelineHandle {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    commands: mpsc::Sender<Envelope>,
}

impl std::fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandle").finish_non_exhaustive()
    }
}

impl PipelineHandle {
    /// A handle to no pipeline: an empty snapshot, and commands that fail.
    #[cfg(test)]
    pub(crate) fn detached() -> PipelineHandle {
        let info = InstanceInfo {
            pid: 0,
            started_at: Utc::now(),
            data_dir: Default::default(),
            mode: RunMode::Oneshot,
            read_only: true,
            version: String::new(),
        };
        let backends = Backends {
            store: String::new(),
            stream: String::new(),
            warehouse: String::new(),
        };
        let (_, snapshot) = watch::channel(Arc::new(Snapshot::empty(info, backends, Utc::now())));
        let (commands, _) = mpsc::channel(1);
        PipelineHandle { snapshot, commands }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// Send a command on behalf of `origin` and wait for its outcome.
    pub async fn send_as(&self, command: Command, origin: Origin) -> Result<CommandOutcome> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Envelope {
                command,
                origin,
                reply,
            })
            .await
            .map_err(|_| Error::Other("the pipeline has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Other("the pipeline stopped before answering".into()))
    }
}

/// The running pipeline task; `stop` ends it after the current step.
pub struct PipelineTask {
    join: JoinHandle<()>,
    shutdown: oneshot::Sender<()>,
}

impl PipelineTask {
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.join.await;
    }
}

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
    late_pending: Vec<chrono::NaiveDate>,
    backfilling: bool,
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
        let store = crate::cost::MeteredStore::wrap(store::open(&config).await?, meter.clone());
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
            let p = crate::cloudwatch::Publisher::connect(&config.telemetry.cloudwatch).await;
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
            runner::open_log(&config).await?,
            !options.read_only,
        );
        let stream_status = None;
        let runs = batch.runs().recent(RECENT_RUNS);
        let placeholder = Arc::new(Snapshot::empty(info.clone(), backends.clone(), Utc::now()));
        let config_alerts = config.alerts.clone();
        let (tx, _) = watch::channel(placeholder);
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
            damaged: Vec::new(),
            repair_error: None,
            repairing: false,
            last_scan: None,
            late_pending: Vec::new(),
            backfilling: false,
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

    /// Build and publish a new snapshot.
    fn publish(&mut self) {
        self.seq += 1;
        let (pushed, recent_log) = self.options.log.read();
        self.log_seen = pushed;
        let mut snapshot = Snapshot {
            seq: self.seq,
            generated_at: Utc::now(),
            instance: self.info.clone(),
            backends: self.backends.clone(),
            paused: self.paused,
            zones: self.zones.clone(),
            cycles: self.cycles,
            last_cycle: self.last_cycle.clone(),
            batch: BatchStatus {
                source: self.batch.source_name().to_string(),
                api: self.batch.api_state(),
                runs: self.runs.clone(),
            },
            warehouse: self.warehouse_status.clone(),
            stream: self.stream_status.clone(),
            recent_log,
            next_cycle_at: self.next_cycle_at.filter(|_| !self.paused),
            history: self.history.history(),
            failures: Vec::new(),
            recent_actions: self.actions.iter().cloned().collect(),
            cost: self.cost.clone(),
            damaged: self.damaged.clone(),
            metrics: Vec::new(),
            alerts: Vec::new(),
            health: Default::default(),
        };
        let signals = self.signals();
        crate::failures::log_changes(&self.deriver.derive(&mut snapshot, &signals));
        self.tx.send_replace(Arc::new(snapshot));
    }

    /// What the failure table's state machines look at.
    fn signals(&self) -> crate::failures::Signals {
        let api = self.batch.api_state();
        let newest = self.runs.first();
        let duplicate_files = self
            .runs
            .iter()
            .map(|r| r.report.duplicates() as u64)
            .sum::<u64>();
        crate::failures::Signals {
            api_down: api.down,
            failed_run: newest
                .filter(|r| r.status == RunStatus::Failed)
                .map(|r| r.run_id.clone()),
            api_last_error: api.last_error.clone(),
            duplicate_files,
            late_events: self
                .stream_status
                .as_ref()
                .map_or(0, |s| s.watermarks.late_events),
            late_pending_days: self.late_pending.clone(),
            backfilling: self.backfilling,
            damaged: self.damaged.clone(),
            repairing: self.repairing,
            repair_error: self.repair_error.clone(),
            projected_usd: self.cost.as_ref().map_or(0.0, |c| c.projected_usd),
            budget_usd: self.config.cost.budget_usd_month,
            saving_usd: self.cost.as_ref().map_or(0.0, |c| c.saving.usd_month),
        }
    }

    async fn refresh_zones(&mut self) {
        let now = Utc::now();
        let mut saving = None;
        match zones::zone_listing(self.store.as_ref()).await {
            Ok(listing) => {
                self.zones = zones::summarise_all(&listing);
                saving = Some(crate::cost::saving(
                    &self.config.cost,
                    &self.config.lifecycle,
                    &listing,
                    now,
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh zone statistics");
                self.refresh_error = Some(e);
            }
        }
        if let Some(wh) = self.warehouse.clone() {
            match crate::stream::runner::late_pending(self.store.as_ref(), wh.as_ref()).await {
                Ok(days) => self.late_pending = days,
                Err(e) => tracing::warn!(error = %e, "could not read the late buffer"),
            }
        }
        if let Some(wh) = &self.warehouse {
            match warehouse::status(wh.as_ref()).await {
                Ok(s) => self.warehouse_status = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read warehouse statistics");
                    self.refresh_error = Some(e);
                }
            }
        }
        match self
            .stream
            .status(self.store.as_ref(), self.warehouse.as_deref())
            .await
        {
            Ok(s) => self.stream_status = Some(s),
            Err(e) => tracing::warn!(error = %e, "could not read stream statistics"),
        }
        self.history
            .observe(self.stream_status.as_ref(), self.warehouse_status.as_ref());
        // Priced last, from the fresh zone sizes and stream counts.
        if let Some(saving) = saving {
            self.update_cost(saving, now);
        }
    }

    /// Accrue usage to `now` and price it.
    fn update_cost(&mut self, saving: crate::cost::Saving, now: chrono::DateTime<Utc>) {
        let zone_bytes: Vec<(zones::Zone, u64)> = self
            .zones
            .iter()
            .filter_map(|z| z.zone.map(|zone| (zone, z.bytes)))
            .collect();
        let records = self.stream_status.as_ref().map_or(0, |s| s.totals.records);
        self.usage.observe(
            now,
            self.meter.read(),
            &zone_bytes,
            self.config.stream.shards,
            records,
            self.meter.stream_bytes(),
        );
        if !self.options.read_only {
            if let Err(e) = crate::cost::save_usage(&self.usage, &self.config.data_dir) {
                tracing::warn!(error = %e, "could not save usage");
            }
        }
        let cw = &self.config.telemetry.cloudwatch;
        let setup = crate::cost::Setup {
            shards: self.config.stream.shards,
            cloudwatch_metrics: if cw.enabled {
                crate::metrics::NAMES.len() as u64
            } else {
                0
            },
            cloudwatch_alarms: if cw.enabled && cw.create_alarms {
                self.config.alerts.len() as u64
            } else {
                0
            },
            on_aws: [
                ("s3".to_string(), self.backends.store == "s3"),
                ("kinesis".to_string(), self.backends.stream == "kinesis"),
                (
                    "redshift".to_string(),
                    self.backends.warehouse == "redshift",
                ),
                ("cloudwatch".to_string(), cw.enabled),
            ]
            .into(),
        };
        self.cost = Some(crate::cost::estimate(
            &self.config.cost,
            &self.usage,
            &zone_bytes,
            &setup,
            saving,
            now,
        ));
    }

    /// The integrity scan (when due, or `force`) and the repair of what it finds: stream
    /// segments are replayed from the log, batch files pulled or staged again by a batch run.
    async fn scan_and_repair(&mut self, force: bool) {
        let every = self.config.runtime.integrity_scan_interval_secs;
        if !force
            && (every == 0
                || self
                    .last_scan
                    .is_some_and(|t| t.elapsed().as_secs() < every))
        {
            return;
        }
        self.last_scan = Some(std::time::Instant::now());
        let scan = |store: Arc<dyn ObjectStore>| async move {
            let listing = zones::zone_listing(store.as_ref()).await?;
            crate::integrity::scan(store.as_ref(), &listing).await
        };
        self.damaged = match scan(self.store.clone()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "integrity scan failed");
                return;
            }
        };
        if self.damaged.is_empty() {
            self.repair_error = None;
            return;
        }
        tracing::warn!(count = self.damaged.len(), first = %self.damaged[0], "failure scenario: partial write detected");
        if self.options.read_only {
            return;
        }
        self.repairing = true;
        self.publish();
        let mut replays: std::collections::BTreeMap<String, u64> = Default::default();
        let mut batch = false;
        for key in &self.damaged {
            match crate::integrity::repair_for(key) {
                crate::integrity::Repair::Replay { shard, from_seq } => {
                    let e = replays.entry(shard).or_insert(from_seq);
                    *e = (*e).min(from_seq);
                }
                crate::integrity::Repair::BatchRun => batch = true,
            }
        }
        let mut error = None;
        for (shard, from) in replays {
            let r = self
                .stream
                .replay(
                    self.store.as_ref(),
                    self.warehouse.as_deref(),
                    &shard,
                    Some(from),
                    None,
                )
                .await;
            if let Err(e) = r {
                error = Some(format!("replay {shard} from {from}: {e}"));
            }
        }
        if batch {
            if let Err(e) = self.run_batch().await {
                error = Some(format!("batch run: {e}"));
            }
        }
        self.damaged = scan(self.store.clone()).await.unwrap_or_else(|e| {
            error.get_or_insert(e.to_string());
            self.damaged.clone()
        });
        if !self.damaged.is_empty() && error.is_none() {
            error = Some(format!(
                "{} object(s) still damaged after repair",
                self.damaged.len()
            ));
        }
        self.repairing = false;
        self.repair_error = error;
    }

    async fn warehouse_command(&mut self, command: Command) -> CommandOutcome {
        let Some(wh) = self.warehouse.clone() else {
            return CommandOutcome::failed(
                "no warehouse yet: run `ecomops batch run` or `ecomops --no-ui --once` first",
            );
        };
        match command {
            Command::Metrics => match warehouse::metrics(wh.as_ref()).await {
                Ok(m) => CommandOutcome::done(Report::Metrics(m)),
                Err(e) => CommandOutcome::failed(e.to_string()),
            },
            Command::Verify => {
                match warehouse::verify::verify(self.store.as_ref(), wh.as_ref()).await {
                    Ok(r) if r.ok() => CommandOutcome::done(Report::Verify(r)),
                    Ok(r) => CommandOutcome::failed_with(
                        format!("{} of {} checks differ", r.differences.len(), r.checks),
                        Report::Verify(r),
                    ),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::Backfill { from, to } => {
                self.backfilling = true;
                self.publish();
                let o = self.backfill(&wh, from, to).await;
                self.backfilling = false;
                o
            }
            Command::Replay {
                shard,
                from_seq,
                from_time,
            } => {
                let result = self
                    .stream
                    .replay(
                        self.store.as_ref(),
                        Some(wh.as_ref()),
                        &shard,
                        from_seq,
                        from_time,
                    )
                    .await;
                self.refresh_zones().await;
                match result {
                    Ok(mut r) => {
                        r.shard = shard;
                        CommandOutcome::done(Report::Replay(r))
                    }
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::IngestFile { path } => {
                let body = match std::fs::read(&path) {
                    Ok(b) => bytes::Bytes::from(b),
                    Err(e) => {
                        return CommandOutcome::failed(format!(
                            "cannot read {}: {e}",
                            path.display()
                        ))
                    }
                };
                let result = self
                    .stream
                    .ingest_file(self.store.as_ref(), Some(wh.as_ref()), body)
                    .await;
                self.refresh_zones().await;
                match result {
                    Ok(r) => CommandOutcome::done(Report::Ingest(IngestReport { path, ..r })),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            _ => CommandOutcome::failed("not a warehouse command"),
        }
    }

    async fn backfill(
        &mut self,
        wh: &Arc<dyn Warehouse>,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> CommandOutcome {
        if from > to {
            return CommandOutcome::failed(format!("backfill: {from} is after {to}"));
        }
        let (f, t) = (from, to);
        let late = match self
            .stream
            .load_late(self.store.as_ref(), wh.as_ref(), f, t)
            .await
        {
            Ok(n) => n,
            Err(e) => return CommandOutcome::failed(e.to_string()),
        };
        match warehouse::backfill(wh.as_ref(), f, t).await {
            Ok(r) => {
                self.refresh_zones().await;
                CommandOutcome::done(Report::Backfill(BackfillReport {
                    from,
                    to,
                    late_loaded: late,
                    recomputed_days: r.recomputed_days,
                }))
            }
            Err(e) => CommandOutcome::failed(e.to_string()),
        }
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
                Ok(summary) => steps.push(summary),
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

    fn batch_finished(&mut self, run: Result<BatchRun>) -> Result<String> {
        self.runs = self.batch.runs().recent(RECENT_RUNS);
        let run = run?;
        let summary = format!("batch: {}", run.summary());
        match run.status {
            RunStatus::Succeeded | RunStatus::Incomplete => Ok(summary),
            _ => Err(Error::Other(summary)),
        }
    }

    async fn batch_command(
        &mut self,
        retry: Option<String>,
        task: Option<crate::batch::run::Task>,
        window: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    ) -> CommandOutcome {
        if let Some((a, b)) = window.filter(|(a, b)| a > b) {
            return CommandOutcome::failed(format!(
                "the carts window {a}..{b} ends before it starts"
            ));
        }
        let run = match &retry {
            Some(id) => self.batch.retry(id, task).await,
            None => self.batch.run_new(task, window).await,
        };
        let report = run.as_ref().ok().map(|r| Report::Run(Box::new(r.clone())));
        let outcome = match (self.batch_finished(run), report) {
            (Ok(_), Some(r)) => CommandOutcome::done(r),
            (Err(e), Some(r)) => CommandOutcome::failed_with(e.to_string(), r),
            (Err(e), None) => CommandOutcome::failed(e.to_string()),
            (Ok(_), None) => CommandOutcome::failed("the batch run left no report"),
        };
        self.refresh_zones().await;
        outcome
    }

    /// The one place commands are carried out: read-only mode (the instance's or the asking
    /// client's) is enforced here, and every mutating command, refused or not, is audited.
    pub async fn dispatch(&mut self, command: Command, origin: &Origin) -> CommandOutcome {
        if !command.is_mutating() {
            return self.carry_out(command).await;
        }
        let started = Utc::now();
        let (outcome, result) = if self.options.read_only || origin.read_only {
            tracing::warn!(command = command.name(), user = %origin.user, "refused: read-only mode");
            let who = if self.options.read_only {
                "this instance"
            } else {
                "the asking client"
            };
            let o = CommandOutcome::failed(format!(
                "refused: {} changes the pipeline and {who} is read-only",
                command.name()
            ));
            (o, "refused")
        } else {
            tracing::info!(command = command.name(), user = %origin.user, via = %origin.via, "operator command");
            let o = self.carry_out(command.clone()).await;
            let r = if o.ok { "ok" } else { "failed" };
            (o, r)
        };
        let record = audit::Record {
            at: started,
            user: origin.user.clone(),
            ssh_connection: origin.ssh_connection.clone(),
            via: origin.via.clone(),
            action: command.name().to_string(),
            arguments: serde_json::to_string(&command).unwrap_or_default(),
            outcome: result.to_string(),
            message: outcome.message.clone(),
        };
        let writable = if self.options.read_only {
            None
        } else {
            self.warehouse.as_deref()
        };
        audit::write(&self.config.data_dir, writable, &record).await;
        if self.actions.len() == RECENT_ACTIONS {
            self.actions.pop_front();
        }
        self.actions.push_back(record);
        self.publish();
        outcome
    }

    async fn carry_out(&mut self, command: Command) -> CommandOutcome {
        let outcome = match command {
            Command::Refresh => {
                self.refresh_zones().await;
                CommandOutcome::done(Report::Refreshed)
            }
            Command::RunCycle => {
                let cycle = self.run_cycle(true).await;
                // Cron notices a firing critical alert through the exit code.
                let critical_alerts: Vec<_> = self
                    .deriver
                    .alerts
                    .states()
                    .into_iter()
                    .filter(|a| a.firing && a.severity == crate::config::Severity::Critical)
                    .collect();
                let ok = cycle.ok && critical_alerts.is_empty();
                let error = cycle.error.clone().unwrap_or_default();
                let report = Report::Cycle(CycleOutcome {
                    cycle,
                    critical_alerts,
                });
                if ok {
                    CommandOutcome::done(report)
                } else {
                    CommandOutcome::failed_with(error, report)
                }
            }
            Command::Pause => {
                self.paused = true;
                CommandOutcome::done(Report::Paused)
            }
            Command::Resume => {
                self.paused = false;
                CommandOutcome::done(Report::Resumed)
            }
            Command::BatchRun { task, window } => self.batch_command(None, task, window).await,
            c @ (Command::Metrics
            | Command::Verify
            | Command::Backfill { .. }
            | Command::IngestFile { .. }
            | Command::Replay { .. }) => self.warehouse_command(c).await,
            Command::Retry { run_id, task } => self.batch_command(Some(run_id), task, None).await,
            Command::Cost => {
                self.refresh_zones().await;
                match &self.cost {
                    Some(c) => CommandOutcome::done(Report::Cost(Box::new(c.clone()))),
                    None => CommandOutcome::failed("no estimate: the store could not be listed"),
                }
            }
            Command::Prune { dry_run } => {
                let r = crate::lifecycle::prune(
                    self.store.as_ref(),
                    self.warehouse.as_deref(),
                    &self.config.lifecycle,
                    Utc::now(),
                    dry_run,
                )
                .await;
                self.refresh_zones().await;
                match r {
                    Ok(r) => CommandOutcome::done(Report::Prune(r)),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
            Command::Lifecycle { apply } => {
                match crate::lifecycle::s3_lifecycle(&self.config, apply).await {
                    Ok(plan) => CommandOutcome::done(Report::Lifecycle(plan)),
                    Err(e) => CommandOutcome::failed(e.to_string()),
                }
            }
        };
        self.publish();
        outcome
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
                _ = &mut shutdown => break,
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
                        self.publish();
                    }
                }
            }
        }
        tracing::info!("pipeline stopped");
    }
}
