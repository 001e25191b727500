//! Batch runs: a small DAG with persisted per-task state.
//!
//! ```text
//! extract_products ─┐
//! extract_users ────┼─> land ─> stage ─> load
//! extract_carts ────┘
//! ```
//!
//! Extract fetches a response and spools it under `<data_dir>/runs/<run_id>.spool/`; land puts
//! spooled bodies into RAW (put-if-absent: a body already there is a duplicate file); stage types
//! RAW bodies into STAGING and quarantine; load MERGEs the run's STAGING files into the warehouse
//! (a file already in the ledger is skipped) and refreshes the dirty CURATED days. The run is saved (atomically) after every task, so a
//! crash or a failure leaves a run that `retry` resumes: it reruns only what has not succeeded,
//! and a spooled body is never fetched twice.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::fakestore::{Endpoint, FakeStoreClient, Fetched};
use super::land;
use super::retry::ApiHealth;
use super::stage;
use super::synthetic::SyntheticSource;
use crate::atomic_file::{self, Durability};
use crate::config::{BatchSource, Config};
use crate::error::{Error, IoContext, Result};
use crate::store::{sha256_hex, ObjectStore};
use crate::warehouse::{self, StagedFile, Warehouse};
use crate::zones;

pub use ecom_model::batch::{
    ApiState, BatchRun, Entity, Extracted, LandedFile, RunStatus, Task, TaskState, TaskStatus,
    TASKS,
};

/// Persisted runs: `<dir>/<run_id>.json`, spools in `<dir>/<run_id>.spool/`.
#[derive(Debug, Clone)]
pub struct RunStore {
    dir: PathBuf,
}

impl RunStore {
    pub fn new(dir: impl Into<PathBuf>) -> RunStore {
        RunStore { dir: dir.into() }
    }

    fn path(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.json"))
    }

    fn spool(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.spool"))
    }

    /// A fresh id: the UTC second plus a counter, e.g. `20261124T080000Z-1`.
    fn new_id(&self) -> String {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        (1..)
            .map(|n| format!("{stamp}-{n}"))
            .find(|id| !self.path(id).exists())
            .unwrap_or_else(|| stamp.to_string())
    }

    pub fn save(&self, run: &BatchRun) -> Result<()> {
        std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        let json = serde_json::to_vec_pretty(run)
            .map_err(|e| Error::Other(format!("cannot encode run {}: {e}", run.run_id)))?;
        // Retry resumes from this file: it must survive power loss.
        atomic_file::write(&self.path(&run.run_id), &json, Durability::PowerLoss)
    }

    /// A run id names a file: letters, digits and `-_.:+T` (Airflow's run ids fit), at most
    /// 200 characters, not starting with a dot.
    pub fn check_id(run_id: &str) -> Result<()> {
        let ok = !run_id.is_empty()
            && run_id.len() <= 200
            && !run_id.starts_with('.')
            && run_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:+".contains(c));
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "{run_id:?} is not a run id (letters, digits and -_.:+, at most 200)"
            )))
        }
    }

    /// The run, or None when there is no such run.
    pub fn find(&self, run_id: &str) -> Result<Option<BatchRun>> {
        RunStore::check_id(run_id)?;
        if !self.path(run_id).exists() {
            return Ok(None);
        }
        self.load(run_id).map(Some)
    }

    pub fn load(&self, run_id: &str) -> Result<BatchRun> {
        RunStore::check_id(run_id)?;
        let path = self.path(run_id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Usage(format!(
                    "no batch run {run_id} in {} (see `ecomops status`)",
                    self.dir.display()
                )))
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("run file {} is unreadable: {e}", path.display())))
    }

    /// The newest `n` runs, newest first (ids sort by time).
    pub fn recent(&self, n: usize) -> Vec<BatchRun> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        ids.sort_by_key(|id| std::cmp::Reverse(run_id_order(id)));
        ids.iter()
            .take(n)
            .filter_map(|id| self.load(id).ok())
            .collect()
    }
}

/// Ids sort by stamp, then by counter as a number.
fn run_id_order(id: &str) -> (String, u64) {
    match id.rsplit_once('-') {
        Some((stamp, n)) => (stamp.to_string(), n.parse().unwrap_or(0)),
        None => (id.to_string(), 0),
    }
}

/// What `batch run` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    /// Create the run with this id, or resume it if it exists.
    pub run_id: Option<String>,
    /// This task and what follows it (all tasks when None).
    pub from: Option<Task>,
    /// Exactly this task.
    pub only: Option<Task>,
    /// Carts date window (inclusive), when the pull is incremental.
    pub window: Option<(NaiveDate, NaiveDate)>,
}

impl RunRequest {
    /// The tasks it covers: `only`, or `from` and everything downstream of it, or all.
    pub fn selection(&self) -> BTreeSet<Task> {
        match self.only {
            Some(t) => BTreeSet::from([t]),
            None => select(self.from),
        }
    }
}

/// Where batch responses come from.
#[derive(Debug, Clone)]
pub enum Source {
    Synthetic(SyntheticSource),
    FakeStore(FakeStoreClient),
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Synthetic(_) => "synthetic",
            Source::FakeStore(_) => "fakestore",
        }
    }

    async fn fetch(
        &self,
        endpoint: Endpoint,
        window: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<Fetched> {
        match self {
            Source::Synthetic(s) => Ok(Fetched {
                url: format!("synthetic:/{}", endpoint.name()),
                body: match endpoint {
                    Endpoint::Products => s.products(),
                    Endpoint::Users => s.users(),
                    Endpoint::Carts => s.carts(window.map(|w| w.0), window.map(|w| w.1)),
                },
                attempts: 1,
            }),
            Source::FakeStore(c) => c.fetch(endpoint, window).await,
        }
    }
}

/// Runs and resumes batch runs.
pub struct BatchRunner {
    store: Arc<dyn ObjectStore>,
    warehouse: Option<Arc<dyn Warehouse>>,
    lookback_days: u32,
    /// Removed from responses before the spool (`batch.redact_fields`).
    redact_fields: Vec<String>,
    source: Source,
    runs: RunStore,
    health: Arc<ApiHealth>,
}

impl BatchRunner {
    /// The configured source, runs kept in `<data_dir>/runs`.
    pub fn new(
        config: &Config,
        store: Arc<dyn ObjectStore>,
        warehouse: Option<Arc<dyn Warehouse>>,
    ) -> Result<BatchRunner> {
        let b = &config.batch;
        let health = Arc::new(ApiHealth::new(b.retry.api_down_after));
        let source = match b.source {
            BatchSource::Synthetic => Source::Synthetic(SyntheticSource::new(b.seed, b.scale)),
            BatchSource::Fakestore => Source::FakeStore(FakeStoreClient::new(
                &b.fakestore,
                &b.retry,
                health.clone(),
            )?),
        };
        Ok(BatchRunner {
            store,
            warehouse,
            // `password` always: a list configured without it must not let credentials land.
            redact_fields: std::iter::once("password".to_string())
                .chain(
                    config
                        .batch
                        .redact_fields
                        .iter()
                        .filter(|f| *f != "password")
                        .cloned(),
                )
                .collect(),
            lookback_days: config.warehouse.lookback_days,
            source,
            runs: RunStore::new(config.data_dir.join("runs")),
            health,
        })
    }

    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    pub fn api_state(&self) -> ApiState {
        self.health.state()
    }

    pub fn runs(&self) -> &RunStore {
        &self.runs
    }

    /// Start a new run of every task, or of `task` and what follows it.
    pub async fn run_new(
        &self,
        task: Option<Task>,
        window: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<BatchRun> {
        self.run(&RunRequest {
            from: task,
            window,
            ..RunRequest::default()
        })
        .await
    }

    /// A run as asked: a new one, or the run named `run_id`, created with that id or resumed
    /// (what succeeded in it is never done again: this is the retry path of an orchestrator
    /// that names its runs). `only` runs exactly one task; it needs its upstream succeeded.
    pub async fn run(&self, req: &RunRequest) -> Result<BatchRun> {
        let selection = req.selection();
        let mut run = match &req.run_id {
            None => BatchRun::new(self.runs.new_id(), self.source.name(), req.window),
            Some(id) => match self.runs.find(id)? {
                Some(run) => {
                    self.check_resumable(&run, req.window)?;
                    tracing::info!(run_id = %id, "batch run resumed");
                    run
                }
                None => {
                    RunStore::check_id(id)?;
                    BatchRun::new(id.clone(), self.source.name(), req.window)
                }
            },
        };
        if selection.iter().all(|t| run.succeeded(*t)) && req.run_id.is_some() {
            // An orchestrator's retry of what is done already: nothing to do, and no error.
            tracing::info!(run_id = %run.run_id, "batch run: the selected tasks already succeeded");
            return Ok(run);
        }
        tracing::info!(run_id = %run.run_id, source = %run.source, "batch run started");
        self.execute(&mut run, &selection).await?;
        Ok(run)
    }

    /// A run resumes under the source and window it was created with.
    fn check_resumable(
        &self,
        run: &BatchRun,
        window: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<()> {
        if run.source != self.source.name() {
            return Err(Error::Usage(format!(
                "run {} pulled from {} but batch.source is now {}",
                run.run_id,
                run.source,
                self.source.name()
            )));
        }
        if window.is_some() && window != run.window {
            let show = |w: Option<(NaiveDate, NaiveDate)>| {
                w.map_or_else(|| "no window".to_string(), |(a, b)| format!("{a}..{b}"))
            };
            return Err(Error::Usage(format!(
                "run {} pulls carts of {}, not {}: a run id names one data interval",
                run.run_id,
                show(run.window),
                show(window)
            )));
        }
        Ok(())
    }

    /// Rerun what has not succeeded in `run_id` (only `task` and what follows it, if given).
    pub async fn retry(&self, run_id: &str, task: Option<Task>) -> Result<BatchRun> {
        let mut run = self.runs.load(run_id)?;
        self.check_resumable(&run, None)?;
        if let Some(t) = task {
            if run.succeeded(t) {
                return Err(Error::Usage(format!(
                    "task {t} of run {run_id} already succeeded; nothing to retry"
                )));
            }
        }
        let selection = select(task);
        tracing::info!(
            run_id,
            task = task.map_or("all", Task::name),
            "batch run retried"
        );
        self.execute(&mut run, &selection).await?;
        Ok(run)
    }

    async fn execute(&self, run: &mut BatchRun, selection: &BTreeSet<Task>) -> Result<()> {
        run.started_at.get_or_insert_with(Utc::now);
        run.ended_at = None;
        run.status = RunStatus::Running;
        let wanted = |run: &BatchRun, t: Task| selection.contains(&t) && !run.succeeded(t);

        // Extracts run concurrently: an API that is down costs one retry budget, not three.
        let todo: Vec<Entity> = TASKS
            .into_iter()
            .filter(|t| wanted(run, *t))
            .filter_map(Task::extracts)
            .collect();
        for ep in &todo {
            run.start(ep.extract_task());
        }
        self.runs.save(run)?;
        let fetched =
            futures::future::join_all(todo.iter().map(|ep| self.source.fetch(*ep, run.window)))
                .await;
        for (ep, result) in todo.iter().zip(fetched) {
            let task = ep.extract_task();
            let outcome = match result {
                Ok(f) => self.spool(run, *ep, f),
                Err(e) => Err(e.to_string()),
            };
            finish(run, task, outcome);
        }
        self.runs.save(run)?;

        for task in [Task::Land, Task::Stage, Task::Load] {
            if !wanted(run, task) {
                continue;
            }
            if task.deps().iter().any(|d| {
                run.task(*d).is_some_and(|t| {
                    matches!(t.status, TaskStatus::Failed | TaskStatus::UpstreamFailed)
                })
            }) {
                run.task_mut(task).status = TaskStatus::UpstreamFailed;
                continue;
            }
            if !task.deps().iter().all(|d| run.succeeded(*d)) {
                continue; // left pending: a dependency was not selected
            }
            run.start(task);
            self.runs.save(run)?;
            let outcome = match task {
                Task::Land => self.land(run).await,
                Task::Stage => self.stage(run).await,
                _ => self.load(run).await,
            };
            finish(run, task, outcome.map_err(|e| e.to_string()));
            self.runs.save(run)?;
        }

        run.ended_at = Some(Utc::now());
        run.status = if run.tasks.iter().all(|t| t.status == TaskStatus::Succeeded) {
            RunStatus::Succeeded
        } else if run
            .tasks
            .iter()
            .any(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::UpstreamFailed))
        {
            RunStatus::Failed
        } else {
            RunStatus::Incomplete
        };
        self.runs.save(run)?;
        if run.status == RunStatus::Succeeded {
            // Everything is in RAW now; the spool has done its job.
            let spool = self.runs.spool(&run.run_id);
            if let Err(e) = std::fs::remove_dir_all(&spool) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %spool.display(), error = %e, "could not remove spool");
                }
            }
        }
        if let Some(wh) = &self.warehouse {
            // The run in ops.runs/ops.tasks too, for SQL users; the JSON file stays the source.
            if let Err(e) = wh.execute_tx(run_sql(run)).await {
                tracing::warn!(error = %e, "could not record the run in ops.runs");
            }
        }
        tracing::info!("{}", run.summary());
        Ok(())
    }

    fn spool(
        &self,
        run: &mut BatchRun,
        ep: Endpoint,
        f: Fetched,
    ) -> std::result::Result<String, String> {
        let dir = self.runs.spool(&run.run_id);
        let path = dir.join(format!("{}.json", ep.name()));
        // Credentials go here, before anything is written.
        let body = super::redact::redact(&f.body, &self.redact_fields);
        atomic_file::owner_only_dirs(&dir)
            // A spooled body is never fetched again: it must survive power loss.
            .and_then(|_| atomic_file::write(&path, &body, Durability::PowerLoss))
            .map_err(|e| e.to_string())?;
        let detail = format!("{} bytes in {} attempt(s)", body.len(), f.attempts);
        run.extracted.insert(
            ep.name().to_string(),
            Extracted {
                url: f.url,
                sha256: sha256_hex(&body),
                bytes: body.len() as u64,
                http_attempts: f.attempts,
            },
        );
        Ok(detail)
    }

    async fn land(&self, run: &mut BatchRun) -> Result<String> {
        let window = zones::window_partition(run.window.map(|w| w.0), run.window.map(|w| w.1));
        // A retried land starts over: put-if-absent makes the files it already put duplicates
        // of themselves, so count only this attempt's outcome.
        run.report.files.clear();
        for ep in Endpoint::ALL {
            let entity = ep.name();
            let path = self.runs.spool(&run.run_id).join(format!("{entity}.json"));
            let body = std::fs::read(&path).map_err(|e| {
                Error::Other(format!(
                    "spooled {entity} response {} unreadable ({e}); rerun its extract: \
                     `ecomops retry {} --task extract_{entity}` after marking it failed",
                    path.display(),
                    run.run_id
                ))
            })?;
            let expected = run.extracted.get(entity).map(|x| x.sha256.clone());
            let actual = sha256_hex(&body);
            if expected.as_deref() != Some(actual.as_str()) {
                return Err(Error::ChecksumMismatch {
                    key: path.display().to_string(),
                    expected: expected.unwrap_or_default(),
                    actual,
                });
            }
            land::land(self.store.as_ref(), &mut run.report, entity, &window, body).await?;
        }
        let dup = run.report.duplicates();
        Ok(format!(
            "{} new, {dup} duplicate file(s) skipped",
            run.report.files.len() - dup
        ))
    }

    async fn stage(&self, run: &mut BatchRun) -> Result<String> {
        let key_of = |run: &BatchRun, entity: &str| -> Result<String> {
            run.report
                .files
                .iter()
                .find(|f: &&LandedFile| f.entity == entity)
                .map(|f| f.raw_key.clone())
                .ok_or_else(|| Error::Other(format!("run {} landed no {entity}", run.run_id)))
        };
        let invalid = |what: &str, why: crate::domain::Invalid| {
            Error::Invalid(format!("{what} response unusable: {why}"))
        };
        run.report.staged.clear();
        run.report.quarantined.clear();
        let now = run.created_at;
        // Carts are priced from this pull's products, whether or not that file was new.
        let products_key = key_of(run, "products")?;
        let products_body = self.store.get(&products_key).await?;
        let products = stage::stage_products(&products_body).map_err(|e| invalid("products", e))?;
        let prices: HashMap<i64, i64> = products
            .rows
            .iter()
            .map(|p| (p.product_id, p.price_cents))
            .collect();
        // An order already staged keeps the prices it was first staged with.
        let fixed = match &self.warehouse {
            Some(wh) => first_prices(wh.as_ref()).await?,
            None => HashMap::new(),
        };
        // Every landed file is staged; stage writes only what is missing or damaged.
        for entity in Endpoint::ALL.map(Endpoint::name) {
            let raw_key = key_of(run, entity)?;
            let report = &mut run.report;
            let store = self.store.as_ref();
            match entity {
                "products" => {
                    land::write_staged(
                        store,
                        report,
                        &raw_key,
                        "products",
                        &products.rows,
                        &products.quarantined,
                    )
                    .await?
                }
                "users" => {
                    let body = store.get(&raw_key).await?;
                    let users = stage::stage_users(&body).map_err(|e| invalid("users", e))?;
                    land::write_staged(
                        store,
                        report,
                        &raw_key,
                        "users",
                        &users.rows,
                        &users.quarantined,
                    )
                    .await?
                }
                _ => {
                    let body = store.get(&raw_key).await?;
                    let (orders, items) = stage::stage_carts_priced(&body, &prices, &fixed, now)
                        .map_err(|e| invalid("carts", e))?;
                    land::write_staged(
                        store,
                        report,
                        &raw_key,
                        "orders",
                        &orders.rows,
                        &orders.quarantined,
                    )
                    .await?;
                    land::write_staged(
                        store,
                        report,
                        &raw_key,
                        "order_items",
                        &items.rows,
                        &items.quarantined,
                    )
                    .await?
                }
            }
        }
        let rows: u64 = run.report.staged.values().sum();
        let bad: u64 = run.report.quarantined.values().sum();
        Ok(format!("{rows} rows staged, {bad} quarantined"))
    }
}

/// The unit price of every order line in the warehouse, by (order_id, product_id).
async fn first_prices(wh: &dyn Warehouse) -> Result<HashMap<(i64, i64), i64>> {
    let rows = wh
        .query(
            "SELECT CAST(order_id AS BIGINT), CAST(product_id AS BIGINT), \
             CAST(unit_price_cents AS BIGINT) FROM staging.order_items",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let n = |i: usize| r.get(i)?.as_deref()?.parse::<i64>().ok();
            Some(((n(0)?, n(1)?), n(2)?))
        })
        .collect())
}

impl BatchRunner {
    /// MERGE this run's STAGING files into the warehouse, then refresh the dirty CURATED days.
    async fn load(&self, run: &mut BatchRun) -> Result<String> {
        let wh = self
            .warehouse
            .as_ref()
            .ok_or_else(|| Error::Other("no warehouse is open (read-only?)".into()))?;
        run.report.loaded.clear();
        run.report.load_skipped = 0;
        // Load order matters for dirty-day marking: orders before their lines.
        let mut files = Vec::new();
        for entity in ["products", "users", "orders", "order_items"] {
            let raw_entity = match entity {
                "orders" | "order_items" => "carts",
                e => e,
            };
            for f in run.report.files.iter().filter(|f| f.entity == raw_entity) {
                if let Some(key) = zones::staging_key_for(&f.raw_key, entity) {
                    files.push((entity, key));
                }
            }
        }
        for (entity, key) in files {
            let body = self.store.get(&key).await?;
            let file = StagedFile {
                sha256: sha256_hex(&body),
                key,
                entity: entity.to_string(),
                body,
                source: run.source.clone(),
                checkpoint: None,
                columns: None,
            };
            let outcome = wh.load(&file).await?;
            if outcome.skipped {
                run.report.load_skipped += 1;
            } else {
                *run.report.loaded.entry(entity.to_string()).or_default() += outcome.rows;
            }
        }
        let refreshed =
            warehouse::refresh_models(wh.as_ref(), self.store.as_ref(), self.lookback_days).await?;
        let rows: u64 = run.report.loaded.values().sum();
        Ok(format!(
            "{rows} rows merged, {} file(s) already loaded; {} day(s) of models recomputed",
            run.report.load_skipped, refreshed.recomputed_days
        ))
    }
}

/// Replace the run's rows in `ops.runs` and `ops.tasks`.
pub fn run_sql(run: &BatchRun) -> Vec<String> {
    use crate::warehouse::schema::literal;
    use crate::warehouse::Cell;
    let text = |s: &str| literal(&Cell::Text(s.to_string()));
    let time = |t: Option<DateTime<Utc>>| {
        t.map_or_else(|| "NULL".to_string(), |t| literal(&Cell::Time(t)))
    };
    let id = text(&run.run_id);
    let r = &run.report;
    let mut out = vec![
        format!("DELETE FROM ops.runs WHERE run_id = {id}"),
        format!(
            "INSERT INTO ops.runs (run_id, source, status, started_at, ended_at, files, duplicates, \
             staged_rows, quarantined, loaded_rows) VALUES ({id}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            text(&run.source),
            text(run.status.name()),
            time(run.started_at),
            time(run.ended_at),
            r.files.len(),
            r.duplicates(),
            r.staged.values().sum::<u64>(),
            r.quarantined.values().sum::<u64>(),
            r.loaded.values().sum::<u64>(),
        ),
        format!("DELETE FROM ops.tasks WHERE run_id = {id}"),
    ];
    let rows: Vec<String> = run
        .tasks
        .iter()
        .map(|t| {
            format!(
                "({id}, {}, {}, {}, {}, {}, {})",
                text(t.name.name()),
                text(t.status.name()),
                t.attempts,
                time(t.started_at),
                time(t.ended_at),
                t.error.as_deref().map_or_else(|| "NULL".to_string(), text)
            )
        })
        .collect();
    out.push(format!(
        "INSERT INTO ops.tasks (run_id, task, status, attempts, started_at, ended_at, error) VALUES {}",
        rows.join(", ")
    ));
    out
}

/// Record a task's end, and log a failure.
fn finish(run: &mut BatchRun, task: Task, outcome: std::result::Result<String, String>) {
    if let Err(e) = &outcome {
        tracing::error!(task = task.name(), error = %e, "batch task failed");
    }
    run.finish(task, outcome);
}

/// The tasks a request covers: all of them, or `task` and everything downstream of it.
fn select(task: Option<Task>) -> BTreeSet<Task> {
    match task {
        None => TASKS.into_iter().collect(),
        Some(t) => t.with_downstream().into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use std::path::Path;

    fn runner(dir: &Path) -> BatchRunner {
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let store = Arc::new(LocalStore::open(dir.join("store")).unwrap());
        let wh = Arc::new(crate::warehouse::duck::DuckWarehouse::in_memory().unwrap());
        BatchRunner::new(&config, store, Some(wh)).unwrap()
    }

    #[test]
    fn statuses_read_the_same_in_the_run_file_and_in_sql() {
        let mut run = BatchRun::new("r1".into(), "synthetic", None);
        run.task_mut(Task::Land).status = TaskStatus::UpstreamFailed;
        run.status = RunStatus::Incomplete;
        let json = serde_json::to_string(&run).unwrap();
        assert!(json.contains("\"upstream_failed\""), "{json}");
        let sql = run_sql(&run).join("\n");
        assert!(sql.contains("'upstream_failed'"), "{sql}");
        assert!(sql.contains("'incomplete'"), "{sql}");
        use TaskStatus::*;
        for s in [Pending, Running, Succeeded, Failed, UpstreamFailed] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        for t in TASKS {
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
            assert_eq!(Task::parse(t.name()), Ok(t));
        }
    }

    /// FakeStore's plaintext passwords never land: not in the spool, not in RAW; and the
    /// store's files are the owner's only.
    #[tokio::test]
    async fn credentials_never_land_and_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let r = runner(dir.path());
        // Cut short after the extracts: the spool is still there to read.
        let run = r.run_new(Some(Task::ExtractUsers), None).await.unwrap();
        let spooled = std::fs::read(r.runs.spool(&run.run_id).join("users.json")).unwrap();
        let text = String::from_utf8_lossy(&spooled);
        assert!(
            !text.contains("password") && !text.contains("pw-"),
            "{text}"
        );
        let done = r.retry(&run.run_id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{}", done.summary());
        let raw = r.store.list("raw/synthetic/users/").await.unwrap();
        let body = r.store.get(&raw[0].key).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("password") && !text.contains("pw-"),
            "{text}"
        );
        assert!(text.contains("\"email\""), "the rest is kept: {text}");
        let path = dir.path().join("store").join(&raw[0].key);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn selection_follows_the_dag() {
        let all = select(None);
        assert_eq!(all.len(), 6);
        let s = select(Some(Task::ExtractUsers));
        assert_eq!(
            s,
            BTreeSet::from([Task::ExtractUsers, Task::Land, Task::Stage, Task::Load]),
            "a task and what follows it"
        );
        assert!(Task::parse("publish")
            .unwrap_err()
            .contains("extract_products"));
    }

    #[tokio::test]
    async fn a_rerun_lands_nothing_new_and_counts_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(dir.path());
        let first = r.run_new(None, None).await.unwrap();
        assert_eq!(first.status, RunStatus::Succeeded, "{}", first.summary());
        assert_eq!(first.report.duplicates(), 0);
        assert_eq!(first.report.staged["orders"], 40);
        assert_eq!(first.report.staged["products"], 20);
        assert_eq!(first.report.loaded["orders"], 40);
        assert!(!r.runs.spool(&first.run_id).exists(), "spool removed");
        let before = r.store.list("").await.unwrap();

        let second = r.run_new(None, None).await.unwrap();
        assert_ne!(second.run_id, first.run_id);
        assert_eq!(second.report.duplicates(), 3);
        assert!(second.report.staged.is_empty(), "{:?}", second.report);
        assert!(second.report.loaded.is_empty(), "{:?}", second.report);
        assert_eq!(second.report.load_skipped, 4);
        assert_eq!(
            r.store.list("").await.unwrap(),
            before,
            "a rerun changes nothing"
        );

        // A lost STAGING object (crash between RAW and STAGING) is rebuilt, byte-identical.
        let orders = before
            .iter()
            .find(|m| m.key.starts_with("staging/orders/"))
            .unwrap();
        r.store.delete(&orders.key).await.unwrap();
        let third = r.run_new(None, None).await.unwrap();
        assert_eq!(third.report.staged["orders"], 40);
        let sha = |l: &[crate::store::ObjectMeta]| {
            l.iter()
                .map(|m| (m.key.clone(), m.sha256.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(sha(&r.store.list("").await.unwrap()), sha(&before));

        let recent = r.runs.recent(10);
        assert_eq!(recent.len(), 3);
        let wh = r.warehouse.clone().unwrap();
        assert_eq!(
            warehouse::table_rows(wh.as_ref(), "ops.runs")
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            warehouse::table_rows(wh.as_ref(), "ops.tasks")
                .await
                .unwrap(),
            18
        );
        assert_eq!(recent[0].run_id, third.run_id, "newest first");
    }

    #[tokio::test]
    async fn verify_detects_a_partial_write_and_a_rerun_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(dir.path());
        let run = r.run_new(None, None).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded, "{}", run.summary());
        let wh = r.warehouse.clone().unwrap();
        let v = warehouse::verify::verify(r.store.as_ref(), wh.as_ref())
            .await
            .unwrap();
        assert!(v.ok(), "{:?}", v.differences);
        assert!(v.checks >= 15, "{}", v.checks);
        let m = warehouse::metrics(wh.as_ref()).await.unwrap();
        assert!(m.revenue_cents > 0 && m.orders > 0, "{m:?}");
        assert_eq!(m.by_category.len(), 4, "{m:?}");

        let key = r.store.list("staging/orders/").await.unwrap().remove(0).key;
        let body = r.store.get(&key).await.unwrap();
        r.store
            .put(&key, body.slice(..body.len() / 2))
            .await
            .unwrap();
        let v = warehouse::verify::verify(r.store.as_ref(), wh.as_ref())
            .await
            .unwrap();
        assert!(!v.ok());
        assert_eq!(v.partial_writes, vec![key.clone()]);

        let rerun = r.run_new(None, None).await.unwrap();
        assert_eq!(
            rerun.report.staged.get("orders"),
            Some(&40),
            "rebuilt from RAW"
        );
        assert_eq!(r.store.get(&key).await.unwrap(), body);
        let v = warehouse::verify::verify(r.store.as_ref(), wh.as_ref())
            .await
            .unwrap();
        assert!(v.ok(), "{:?}", v.differences);
        assert_eq!(
            warehouse::metrics(wh.as_ref()).await.unwrap(),
            m,
            "nothing changed"
        );
    }

    #[tokio::test]
    async fn a_partial_run_is_finished_by_retry_without_refetching() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(dir.path());
        let run = r.run_new(Some(Task::ExtractProducts), None).await.unwrap();
        assert_eq!(run.status, RunStatus::Incomplete);
        assert!(run.succeeded("extract_products"));
        assert_eq!(run.task("land").unwrap().status, TaskStatus::Pending);

        let err = r
            .retry(&run.run_id, Some(Task::ExtractProducts))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already succeeded"), "{err}");

        let done = r.retry(&run.run_id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{}", done.summary());
        assert_eq!(
            done.task("extract_products").unwrap().attempts,
            1,
            "a succeeded task is not rerun"
        );
        assert_eq!(done.task("extract_users").unwrap().attempts, 1);
        assert_eq!(r.runs.load(&run.run_id).unwrap(), done, "persisted");
        assert!(r.retry("nope", None).await.unwrap_err().is_usage());
    }
}
