//! The way in: snapshots out, commands in; the recent log lines; the running task.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::command::{Command, CommandOutcome, Origin};
use crate::error::{Error, Result};
use crate::snapshot::{LogLine, RunMode, Snapshot};

use super::LOG_CAPACITY;

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

    /// The newest line, for a progress display.
    pub fn last(&self) -> Option<LogLine> {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ring.lines.back().cloned()
    }

    pub(super) fn read(&self) -> (u64, Vec<LogLine>) {
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

pub(super) struct Envelope {
    pub(super) command: Command,
    pub(super) origin: Origin,
    pub(super) reply: oneshot::Sender<CommandOutcome>,
}

/// The way in: snapshots out, commands in. Cheap to clone.
#[derive(Clone)]
pub struct PipelineHandle {
    pub(super) snapshot: watch::Receiver<Arc<Snapshot>>,
    pub(super) commands: mpsc::Sender<Envelope>,
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
        use crate::snapshot::{Backends, InstanceInfo, RunMode};
        use chrono::Utc;
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
    pub(super) join: JoinHandle<()>,
    pub(super) shutdown: oneshot::Sender<()>,
}

impl PipelineTask {
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.join.await;
    }
}
