//! The quarantine, read back: every refused record with its field and reason
//! (`quarantine/<source>/<entity>/<partition>/<name>.ndjson`, one `{field, reason, record}` per
//! line), counted by entity and field, the newest shown whole; and `reprocess`, which judges
//! quarantined events again by the current rules after a fix.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::batch::stage::to_ndjson;
use crate::error::{Error, Result};
use crate::store::{sha256_hex, ObjectStat, ObjectStore};
use crate::stream::consumer::typed_event;
use crate::warehouse::{StagedFile, Warehouse};

pub use ecom_model::report::{QuarantineReport, QuarantinedRecord, ReasonCount, ReprocessReport};

const PREFIX: &str = "quarantine/";
/// Where `reprocess` stages what it accepts: `staging/events/reprocessed/<quarantine key after
/// PREFIX>`, so a second run writes the same bytes (which the ledger skips).
const REPROCESSED: &str = "staging/events/reprocessed/";

/// The entity a quarantine key names (`quarantine/<source>/<entity>/...`).
fn entity_of(key: &str) -> &str {
    key.split('/').nth(2).unwrap_or("unknown")
}

/// One quarantine line: its field, reason and the record as received (text).
fn parse_line(line: &[u8]) -> (String, String, String) {
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(v) => {
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let record = match &v["record"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (text("field"), text("reason"), record)
        }
        // Written by us; a line that does not parse is still a refused record.
        Err(e) => (
            "line".into(),
            format!("unreadable quarantine line: {e}"),
            String::from_utf8_lossy(line).into_owned(),
        ),
    }
}

/// Quarantine objects, newest first.
async fn objects(store: &dyn ObjectStore) -> Result<Vec<ObjectStat>> {
    let mut objects = store.list_stat(PREFIX).await?;
    objects.sort_by(|a, b| {
        b.last_modified
            .cmp(&a.last_modified)
            .then_with(|| b.key.cmp(&a.key))
    });
    Ok(objects)
}

/// Read the quarantine: counts per entity and field of the records whose field or reason
/// contains `reason` (any, when None; case-insensitive), and the newest `limit` of them.
pub async fn read(
    store: &dyn ObjectStore,
    reason: Option<&str>,
    limit: usize,
) -> Result<QuarantineReport> {
    let needle = reason.map(str::to_lowercase);
    let mut report = QuarantineReport::default();
    let mut counts: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    for o in objects(store).await? {
        let body = match store.get(&o.key).await {
            Ok(b) => b,
            // Pruned since the listing.
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        report.objects += 1;
        let entity = entity_of(&o.key).to_string();
        let lines: Vec<&[u8]> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for line in lines.into_iter().rev() {
            let (field, why, record) = parse_line(line);
            if let Some(n) = &needle {
                if !field.to_lowercase().contains(n) && !why.to_lowercase().contains(n) {
                    continue;
                }
            }
            report.records += 1;
            let c = counts
                .entry((entity.clone(), field.clone()))
                .or_insert((0, why.clone()));
            c.0 += 1;
            if report.recent.len() < limit {
                report.recent.push(QuarantinedRecord {
                    key: o.key.clone(),
                    entity: entity.clone(),
                    field,
                    reason: why,
                    record,
                    written: o.last_modified,
                });
            }
        }
    }
    report.by_reason = counts
        .into_iter()
        .map(|((entity, field), (count, example))| ReasonCount {
            entity,
            field,
            count,
            example,
        })
        .collect();
    report
        .by_reason
        .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.field.cmp(&b.field)));
    Ok(report)
}

/// Judge every quarantined event again by the current rules (`consumer::typed_event`, at the
/// time it was quarantined, which stands for its arrival: the arrival is not kept): the
/// records that pass now are staged (`staging/events/reprocessed/...`, one object per
/// quarantine object) and loaded; the rest stay in quarantine. Duplicates and lateness are
/// not judged again: the warehouse keeps one row per event_id whatever is loaded. Quarantine objects are never changed: they remain the record
/// of what was refused. Idempotent: a second run stages the same bytes, which the ledger skips,
/// and the warehouse never takes an event_id twice.
pub async fn reprocess(
    store: &dyn ObjectStore,
    wh: &dyn Warehouse,
    max_future_skew_ms: i64,
    now: DateTime<Utc>,
) -> Result<ReprocessReport> {
    let mut report = ReprocessReport::default();
    for o in objects(store).await? {
        if entity_of(&o.key) != "events" {
            continue;
        }
        let body = match store.get(&o.key).await {
            Ok(b) => b,
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let mut accepted = Vec::new();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            report.examined += 1;
            let (_, _, record) = parse_line(line);
            // The quarantine keeps a record as text, lossily (invalid UTF-8 becomes U+FFFD)
            // and cut at 4 KiB (`consumer::quarantined`): such a copy is not what arrived, and
            // is never loaded.
            if record.len() >= 4096 || record.contains('\u{FFFD}') {
                report.still_refused += 1;
                continue;
            }
            let arrival = o.last_modified.unwrap_or(now).timestamp_millis();
            match typed_event(record.as_bytes(), arrival, max_future_skew_ms) {
                Ok(e) => accepted.push(e),
                Err(_) => report.still_refused += 1,
            }
        }
        if accepted.is_empty() {
            continue;
        }
        report.accepted += accepted.len() as u64;
        let key = format!("{REPROCESSED}{}", &o.key[PREFIX.len()..]);
        let body = Bytes::from(to_ndjson(&accepted));
        store.put(&key, body.clone()).await?;
        wh.load(&StagedFile {
            sha256: sha256_hex(&body),
            key: key.clone(),
            entity: "events".into(),
            body,
            source: "reprocess".into(),
            checkpoint: None,
            columns: None,
        })
        .await?;
        report.staged.push(key);
    }
    Ok(report)
}
