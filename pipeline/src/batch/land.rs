//! Landing and staging of one batch pull: each response lands in RAW as received under a
//! key made of source, entity, window and content hash (put-if-absent, so a rerun of the same
//! pull is a duplicate file: skipped and counted), then its typed rows go to STAGING and its
//! refused records to quarantine, under keys derived from the RAW key.

use bytes::Bytes;
use serde::Serialize;

use super::stage::{self, Quarantined};
use crate::error::{Error, Result};
use crate::store::{sha256_hex, ObjectStore, PutOutcome};
use crate::zones;

pub use ecom_model::batch::{LandedFile, PullReport};

/// Land one response in RAW (put-if-absent) and record it in the report. Every landed file goes
/// on to stage, which rewrites a STAGING object only when it is missing or its bytes differ from
/// what RAW gives (a crash between the writes, or a partial write).
pub(crate) async fn land(
    store: &dyn ObjectStore,
    report: &mut PullReport,
    entity: &str,
    window: &str,
    body: Vec<u8>,
) -> Result<()> {
    let sha = sha256_hex(&body);
    let key = zones::raw_batch_key(&report.source, entity, window, &sha);
    let put = crate::store::put_immutable_repairing(store, &key, Bytes::from(body)).await?;
    let duplicate = put.outcome == PutOutcome::AlreadyPresent;
    report.files.push(LandedFile {
        entity: entity.to_string(),
        raw_key: key.clone(),
        sha256: sha,
        bytes: put.meta.size,
        duplicate,
    });
    if duplicate {
        tracing::info!(raw_key = %key, "duplicate file: already in RAW, skipped");
    }
    Ok(())
}

/// Put `bytes` at `key` unless exactly these bytes are already there. Returns whether it wrote.
async fn put_if_changed(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) -> Result<bool> {
    match store.get(key).await {
        Ok(existing) if existing[..] == bytes[..] => return Ok(false),
        Ok(_) | Err(Error::ChecksumMismatch { .. }) => {
            tracing::warn!(key, "failure scenario: partial write; rebuilding from RAW");
        }
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    store.put(key, Bytes::from(bytes)).await?;
    Ok(true)
}

pub(crate) async fn write_staged<T: Serialize>(
    store: &dyn ObjectStore,
    report: &mut PullReport,
    raw_key: &str,
    entity: &str,
    rows: &[T],
    quarantined: &[Quarantined],
) -> Result<()> {
    let missing = || Error::Other(format!("no zone key derivable from {raw_key}"));
    let staging = zones::staging_key_for(raw_key, entity).ok_or_else(missing)?;
    if put_if_changed(store, &staging, stage::to_ndjson(rows)).await? {
        *report.staged.entry(entity.to_string()).or_default() += rows.len() as u64;
    }
    if !quarantined.is_empty() {
        let key = zones::quarantine_key_for(raw_key, entity).ok_or_else(missing)?;
        if put_if_changed(store, &key, stage::to_ndjson(quarantined)).await? {
            tracing::warn!(entity, count = quarantined.len(), key = %key, "records quarantined");
            *report.quarantined.entry(entity.to_string()).or_default() += quarantined.len() as u64;
        }
    }
    Ok(())
}
