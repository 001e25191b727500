//! Batch runs as persisted and shown: the DAG's tasks, their states, the pull report and
//! what the client has seen of the API.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The tasks of a batch run:
///
/// ```text
/// extract_products ─┐
/// extract_users ────┼─> land ─> stage ─> load
/// extract_carts ────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    ExtractProducts,
    ExtractUsers,
    ExtractCarts,
    Land,
    Stage,
    Load,
}

/// The tasks, in an order that respects their dependencies.
pub const TASKS: [Task; 6] = Task::ALL;

impl Task {
    /// In an order that respects the dependencies.
    pub const ALL: [Task; 6] = [
        Task::ExtractProducts,
        Task::ExtractUsers,
        Task::ExtractCarts,
        Task::Land,
        Task::Stage,
        Task::Load,
    ];

    /// The name in run files, `ops.tasks`, the CLI and the Airflow DAG.
    pub fn name(self) -> &'static str {
        match self {
            Task::ExtractProducts => "extract_products",
            Task::ExtractUsers => "extract_users",
            Task::ExtractCarts => "extract_carts",
            Task::Land => "land",
            Task::Stage => "stage",
            Task::Load => "load",
        }
    }

    /// The task named `name`, or an error listing the tasks.
    pub fn parse(name: &str) -> Result<Task, String> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                let all: Vec<&str> = Task::ALL.iter().map(|t| t.name()).collect();
                format!("no task {name:?}; the tasks are {}", all.join(", "))
            })
    }

    /// The tasks that must have succeeded before this one runs.
    pub fn deps(self) -> &'static [Task] {
        match self {
            Task::Land => &[
                Task::ExtractProducts,
                Task::ExtractUsers,
                Task::ExtractCarts,
            ],
            Task::Stage => &[Task::Land],
            Task::Load => &[Task::Stage],
            _ => &[],
        }
    }

    /// The entity an extract task fetches.
    pub fn extracts(self) -> Option<Entity> {
        match self {
            Task::ExtractProducts => Some(Entity::Products),
            Task::ExtractUsers => Some(Entity::Users),
            Task::ExtractCarts => Some(Entity::Carts),
            _ => None,
        }
    }

    /// This task and every task downstream of it, in dependency order.
    pub fn with_downstream(self) -> Vec<Task> {
        let mut out = vec![self];
        // ALL is in dependency order, so one pass collects every descendant.
        for t in Task::ALL {
            if t.deps().iter().any(|d| out.contains(d)) {
                out.push(t);
            }
        }
        out
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Task, String> {
        Task::parse(s)
    }
}

/// Lets a run's tasks be looked up by name as well as by value.
impl PartialEq<&str> for Task {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// What a batch pull fetches from the source API, one response each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Products,
    Users,
    Carts,
}

impl Entity {
    pub const ALL: [Entity; 3] = [Entity::Products, Entity::Users, Entity::Carts];

    /// The API path segment, the RAW key's entity and the spool file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Entity::Products => "products",
            Entity::Users => "users",
            Entity::Carts => "carts",
        }
    }

    pub fn parse(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The task that extracts it.
    pub fn extract_task(self) -> Task {
        match self {
            Entity::Products => Task::ExtractProducts,
            Entity::Users => Task::ExtractUsers,
            Entity::Carts => Task::ExtractCarts,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    /// Saved before the work starts: a run found in this state was interrupted.
    Running,
    Succeeded,
    Failed,
    /// Not run because a task it needs failed.
    UpstreamFailed,
}

impl TaskStatus {
    /// The name in run files and in `ops.tasks` (serde's, so the two never differ).
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::UpstreamFailed => "upstream_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub name: Task,
    pub status: TaskStatus,
    /// Times the task was started (HTTP attempts are in `detail`).
    pub attempts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What it did, in a few words.
    pub detail: Option<String>,
}

impl TaskState {
    /// Not started yet.
    pub fn new(task: Task) -> TaskState {
        TaskState {
            name: task,
            status: TaskStatus::Pending,
            attempts: 0,
            started_at: None,
            ended_at: None,
            error: None,
            detail: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Some tasks were not selected (`--task`) and are still pending.
    Incomplete,
}

impl RunStatus {
    /// The name in run files and in `ops.runs`.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Incomplete => "incomplete",
        }
    }
}

/// A spooled response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extracted {
    pub url: String,
    pub sha256: String,
    pub bytes: u64,
    pub http_attempts: u32,
}

/// One batch run, as persisted in `<data_dir>/runs/<run_id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRun {
    pub run_id: String,
    pub source: String,
    /// Carts date window (inclusive), when the pull is incremental.
    pub window: Option<(NaiveDate, NaiveDate)>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub tasks: Vec<TaskState>,
    /// Spooled responses by entity.
    pub extracted: BTreeMap<String, Extracted>,
    pub report: PullReport,
}

impl BatchRun {
    pub fn new(run_id: String, source: &str, window: Option<(NaiveDate, NaiveDate)>) -> BatchRun {
        BatchRun {
            run_id,
            source: source.to_string(),
            window,
            created_at: Utc::now(),
            started_at: None,
            ended_at: None,
            status: RunStatus::Running,
            tasks: Task::ALL.into_iter().map(TaskState::new).collect(),
            extracted: BTreeMap::new(),
            report: PullReport {
                source: source.to_string(),
                ..PullReport::default()
            },
        }
    }

    /// A task's state, by value or by name.
    pub fn task<T>(&self, task: T) -> Option<&TaskState>
    where
        Task: PartialEq<T>,
    {
        self.tasks.iter().find(|t| t.name == task)
    }

    pub fn task_mut(&mut self, task: Task) -> &mut TaskState {
        let i = match self.tasks.iter().position(|t| t.name == task) {
            Some(i) => i,
            // Every run is created with all tasks; a run file edited by hand may lack one.
            None => {
                self.tasks.push(TaskState::new(task));
                self.tasks.len() - 1
            }
        };
        &mut self.tasks[i]
    }

    pub fn succeeded<T>(&self, task: T) -> bool
    where
        Task: PartialEq<T>,
    {
        self.task(task)
            .is_some_and(|t| t.status == TaskStatus::Succeeded)
    }

    pub fn start(&mut self, task: Task) {
        let t = self.task_mut(task);
        t.status = TaskStatus::Running;
        t.attempts += 1;
        t.started_at = Some(Utc::now());
        t.ended_at = None;
        t.error = None;
    }

    pub fn finish(&mut self, task: Task, result: std::result::Result<String, String>) {
        let t = self.task_mut(task);
        t.ended_at = Some(Utc::now());
        match result {
            Ok(detail) => {
                t.status = TaskStatus::Succeeded;
                t.detail = Some(detail);
            }
            Err(e) => {
                t.status = TaskStatus::Failed;
                t.error = Some(e);
            }
        }
    }

    /// One line: id, status, tasks that failed, and the pull report.
    pub fn summary(&self) -> String {
        let failed: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Failed)
            .map(|t| format!("{}: {}", t.name, t.error.clone().unwrap_or_default()))
            .collect();
        let status = self.status.name();
        if failed.is_empty() {
            format!("run {} {status}; {}", self.run_id, self.report.summary())
        } else {
            format!(
                "run {} {status} ({}); retry with `ecomops retry {}`",
                self.run_id,
                failed.join("; "),
                self.run_id
            )
        }
    }
}

/// What happened to one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandedFile {
    pub entity: String,
    pub raw_key: String,
    pub sha256: String,
    pub bytes: u64,
    /// The same bytes were already in RAW.
    pub duplicate: bool,
}

/// The outcome of one pull.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullReport {
    pub source: String,
    pub files: Vec<LandedFile>,
    /// Rows written to STAGING per entity (by this pull; duplicates stage nothing new).
    pub staged: BTreeMap<String, u64>,
    /// Records refused per entity.
    pub quarantined: BTreeMap<String, u64>,
    /// Rows merged into the warehouse per entity (by this run).
    #[serde(default)]
    pub loaded: BTreeMap<String, u64>,
    /// STAGING files the warehouse already had (by hash): not loaded again.
    #[serde(default)]
    pub load_skipped: u64,
}

impl PullReport {
    pub fn duplicates(&self) -> usize {
        self.files.iter().filter(|f| f.duplicate).count()
    }

    /// One line for logs and the cycle report.
    pub fn summary(&self) -> String {
        let staged: Vec<String> = self
            .staged
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let quarantined: u64 = self.quarantined.values().sum();
        let loaded: u64 = self.loaded.values().sum();
        format!(
            "batch ({}): {} files, {} new, {} duplicate skipped; staged {}; quarantined {quarantined}; \
             loaded {loaded} rows ({} file(s) already in the warehouse)",
            self.source,
            self.files.len(),
            self.files.len() - self.duplicates(),
            self.duplicates(),
            if staged.is_empty() { "nothing new".to_string() } else { staged.join(", ") },
            self.load_skipped,
        )
    }
}

/// A copy of the API's health for snapshots and reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiState {
    /// The "API down" failure scenario is detected (and not yet recovered).
    pub down: bool,
    pub consecutive_failures: u32,
    pub attempts: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Times the scenario was detected, and recovered.
    pub detections: u64,
    pub recoveries: u64,
}
