//! Batch runs as persisted and shown: the DAG's tasks, their states, the pull report and
//! what the client has seen of the API.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The tasks, in an order that respects their dependencies.
pub const TASKS: [&str; 6] = [
    "extract_products",
    "extract_users",
    "extract_carts",
    "land",
    "stage",
    "load",
];

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub name: String,
    pub status: TaskStatus,
    /// Times the task was started (HTTP attempts are in `detail`).
    pub attempts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// What it did, in a few words.
    pub detail: Option<String>,
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
            tasks: TASKS
                .iter()
                .map(|t| TaskState {
                    name: (*t).to_string(),
                    status: TaskStatus::Pending,
                    attempts: 0,
                    started_at: None,
                    ended_at: None,
                    error: None,
                    detail: None,
                })
                .collect(),
            extracted: BTreeMap::new(),
            report: PullReport {
                source: source.to_string(),
                ..PullReport::default()
            },
        }
    }

    pub fn task(&self, name: &str) -> Option<&TaskState> {
        self.tasks.iter().find(|t| t.name == name)
    }

    pub fn task_mut(&mut self, name: &str) -> &mut TaskState {
        // Every run is created with all of TASKS; a name outside it is a programming error
        // caught by `select` before we get here.
        let i = self
            .tasks
            .iter()
            .position(|t| t.name == name)
            .unwrap_or_default();
        &mut self.tasks[i]
    }

    pub fn succeeded(&self, name: &str) -> bool {
        self.task(name)
            .is_some_and(|t| t.status == TaskStatus::Succeeded)
    }

    pub fn start(&mut self, name: &str) {
        let t = self.task_mut(name);
        t.status = TaskStatus::Running;
        t.attempts += 1;
        t.started_at = Some(Utc::now());
        t.ended_at = None;
        t.error = None;
    }

    pub fn finish(&mut self, name: &str, result: std::result::Result<String, String>) {
        let t = self.task_mut(name);
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
        let status = format!("{:?}", self.status).to_lowercase();
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
