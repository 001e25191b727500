//! The late buffer's index in the ops schema, `ops.late_objects`: one row per late object and
//! event day, written with the segment's checkpoint (so it commits with the segment), marked
//! `backfilled_at` when a backfill has loaded that day of the object. What is waiting for a
//! backfill is then one query, not a read of the whole buffer; `backfill` reads only the
//! objects holding its days; `prune` deletes a late object once every day of it is loaded
//! (its events are in STAGING, and RAW keeps the segment as received).
//!
//! Late objects written before the index existed, or by a run without a warehouse, are indexed
//! once per process from a listing (`reindex`): only objects the index lacks are read.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

use super::schema::literal;
use super::{Cell, Warehouse};
use crate::domain::Event;
use crate::error::{Error, Result};
use crate::store::ObjectStore;

/// Where the late buffer lives in the store.
pub const PREFIX: &str = "late/events/";
/// Where a backfill writes the STAGING object made from a late one:
/// `staging/events/backfill/<from>_<to>/<the late object's key after PREFIX>`.
pub const BACKFILL_PREFIX: &str = "staging/events/backfill/";

/// The index rows of one late object: its events per day.
pub fn index_sql(
    late_key: &str,
    days: &BTreeMap<NaiveDate, u64>,
    at: DateTime<Utc>,
) -> Vec<String> {
    if days.is_empty() {
        return Vec::new();
    }
    let key = literal(&Cell::Text(late_key.to_string()));
    let at = literal(&Cell::Time(at));
    let values: Vec<String> = days
        .iter()
        .map(|(d, n)| format!("({key}, DATE '{d}', {n}, {at}, NULL)"))
        .collect();
    vec![
        format!("DELETE FROM ops.late_objects WHERE object_key = {key}"),
        format!(
            "INSERT INTO ops.late_objects (object_key, day, events, buffered_at, backfilled_at) \
             VALUES {}",
            values.join(", ")
        ),
    ]
}

/// Mark the days `from..=to` of a late object as loaded by a backfill.
pub fn backfilled_sql(late_key: &str, from: NaiveDate, to: NaiveDate, at: DateTime<Utc>) -> String {
    format!(
        "UPDATE ops.late_objects SET backfilled_at = {} WHERE object_key = {} AND day >= \
         DATE '{from}' AND day <= DATE '{to}' AND backfilled_at IS NULL",
        literal(&Cell::Time(at)),
        literal(&Cell::Text(late_key.to_string()))
    )
}

/// The event days of a late object's body, with their counts.
pub fn days_of(body: &[u8]) -> BTreeMap<NaiveDate, u64> {
    let mut days = BTreeMap::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        // Written by us as typed events; a line that does not parse is not pending work.
        if let Ok(e) = serde_json::from_slice::<Event>(line) {
            *days.entry(e.event_time.date_naive()).or_insert(0) += 1;
        }
    }
    days
}

fn first_column(rows: super::TextRows) -> impl Iterator<Item = String> {
    rows.into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
}

fn day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Index the late objects the index lacks; returns how many. Days a backfill already loaded
/// (a backfill object in the ledger whose range covers them) are indexed as backfilled.
pub async fn reindex(store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<usize> {
    let listed = store.list_stat(PREFIX).await?;
    if listed.is_empty() {
        return Ok(0);
    }
    let indexed: HashSet<String> = first_column(
        wh.query("SELECT DISTINCT object_key FROM ops.late_objects")
            .await?,
    )
    .collect();
    let missing: Vec<_> = listed
        .into_iter()
        .filter(|m| !indexed.contains(&m.key))
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    // The ranges each late object was backfilled over, from the backfill objects' keys.
    let mut covered: BTreeMap<String, Vec<(NaiveDate, NaiveDate)>> = BTreeMap::new();
    let loaded = wh
        .query(&format!(
            "SELECT object_key FROM ops.ledger WHERE object_key LIKE '{BACKFILL_PREFIX}%'"
        ))
        .await?;
    for key in first_column(loaded) {
        let Some((range, object)) = key
            .strip_prefix(BACKFILL_PREFIX)
            .and_then(|r| r.split_once('/'))
        else {
            continue;
        };
        if let Some((Some(f), Some(t))) = range.split_once('_').map(|(f, t)| (day(f), day(t))) {
            covered.entry(object.to_string()).or_default().push((f, t));
        }
    }
    let now = Utc::now();
    let mut statements = Vec::new();
    for m in &missing {
        let body = match store.get(&m.key).await {
            Ok(b) => b,
            // Deleted since the listing (a prune): nothing to index.
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let days = days_of(&body);
        statements.extend(index_sql(&m.key, &days, now));
        let rest = &m.key[PREFIX.len()..];
        for (f, t) in covered.get(rest).into_iter().flatten() {
            statements.push(backfilled_sql(&m.key, *f, *t, now));
        }
    }
    wh.execute_tx(statements).await?;
    tracing::info!(objects = missing.len(), "late buffer objects indexed");
    Ok(missing.len())
}

/// Event days in the late buffer that no backfill has loaded yet.
pub async fn pending(wh: &dyn Warehouse) -> Result<Vec<NaiveDate>> {
    let rows = wh
        .query(
            "SELECT DISTINCT CAST(day AS VARCHAR) FROM ops.late_objects WHERE backfilled_at IS \
             NULL ORDER BY 1",
        )
        .await?;
    Ok(first_column(rows).filter_map(|s| day(&s)).collect())
}

/// Event days waiting for a backfill, with their late events.
pub async fn pending_counts(wh: &dyn Warehouse) -> Result<Vec<(NaiveDate, u64)>> {
    let rows = wh
        .query(
            "SELECT CAST(day AS VARCHAR), CAST(SUM(events) AS BIGINT) FROM ops.late_objects \
             WHERE backfilled_at IS NULL GROUP BY day ORDER BY day",
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let d = day(r.first()?.as_deref()?)?;
            Some((d, super::int(r.get(1)).max(0) as u64))
        })
        .collect())
}

/// Forget pruned late objects (in the prune's own transaction).
pub fn forget_sql(keys: &[String]) -> Vec<String> {
    keys.chunks(200)
        .map(|chunk| {
            let list: Vec<String> = chunk
                .iter()
                .map(|k| literal(&Cell::Text(k.clone())))
                .collect();
            format!(
                "DELETE FROM ops.late_objects WHERE object_key IN ({})",
                list.join(", ")
            )
        })
        .collect()
}

/// The late objects holding events of `from..=to` not yet backfilled.
pub async fn objects_for(
    wh: &dyn Warehouse,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<String>> {
    let rows = wh
        .query(&format!(
            "SELECT DISTINCT object_key FROM ops.late_objects WHERE day >= DATE '{from}' AND \
             day <= DATE '{to}' AND backfilled_at IS NULL ORDER BY 1"
        ))
        .await?;
    Ok(first_column(rows).collect())
}

/// Late objects every day of which a backfill has loaded: what `prune` may delete.
pub async fn fully_backfilled(wh: &dyn Warehouse) -> Result<BTreeSet<String>> {
    let rows = wh
        .query(
            "SELECT object_key FROM ops.late_objects GROUP BY object_key HAVING \
             COUNT(*) = COUNT(backfilled_at)",
        )
        .await?;
    Ok(first_column(rows).collect())
}

/// The late buffer's pending days, for the snapshot: the index is completed from a listing
/// once per process, then read by one query each refresh.
#[derive(Debug, Default)]
pub struct LateIndex {
    reindexed: bool,
}

impl LateIndex {
    /// Index what the index lacks, once per process.
    pub async fn ensure(&mut self, store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<()> {
        if !self.reindexed {
            reindex(store, wh).await?;
            self.reindexed = true;
        }
        Ok(())
    }

    pub async fn pending(
        &mut self,
        store: &dyn ObjectStore,
        wh: &dyn Warehouse,
    ) -> Result<Vec<NaiveDate>> {
        self.ensure(store, wh).await?;
        pending(wh).await
    }
}
