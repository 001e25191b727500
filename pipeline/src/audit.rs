//! The audit trail of operator actions: who asked (user, SSH session, via what), what, with
//! which arguments, when, and how it ended — refusals included. Appended to
//! `<data_dir>/audit.jsonl` always (a read-only instance cannot write its warehouse) and to
//! `ops.audit` when the instance may write the warehouse.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::warehouse::{schema, Warehouse};

pub use ecom_model::audit::Record;

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit.jsonl")
}

/// Write the record to both places; a failure is logged, never fatal (the action itself has
/// already happened or been refused).
pub async fn write(data_dir: &Path, wh: Option<&dyn Warehouse>, record: &Record) {
    if let Err(e) = append(data_dir, record) {
        tracing::warn!(error = %e, "could not append to the audit file");
    }
    if let Some(wh) = wh {
        if let Err(e) = wh.execute_tx(schema::audit_sql(record)).await {
            tracing::warn!(error = %e, "could not record the action in ops.audit");
        }
    }
}

fn append(data_dir: &Path, record: &Record) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    std::fs::create_dir_all(data_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(data_dir))?;
    // One write call per line: concurrent appenders never interleave within a line.
    f.write_all(&line)
}

/// The last `n` records of the audit file (oldest first); unreadable lines are skipped.
pub fn recent(data_dir: &Path, n: usize) -> Vec<Record> {
    let Ok(text) = std::fs::read_to_string(path(data_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Record> = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str(l).ok())
        .take(n)
        .collect();
    out.reverse();
    out
}
