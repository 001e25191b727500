//! `ecomops verify`: reconcile RAW -> STAGING -> warehouse -> CURATED and list every
//! difference. A STAGING object whose bytes no longer hash to its ledger row is the "partial
//! write" scenario: it is rebuilt from RAW by the next batch run (the stage step rewrites a
//! missing or damaged STAGING object byte-identically) and reloaded.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::schema::{self, TABLES};
use super::{dirty_days, int, parse_rows, Cell, Warehouse};
use crate::error::Result;
use crate::store::{sha256_hex, ObjectStore};
use crate::zones;

pub use ecom_model::report::{Difference, VerifyReport};

/// Entities a RAW batch file is staged into.
pub(crate) fn staged_entities(raw_entity: &str) -> &'static [&'static str] {
    match raw_entity {
        "events" => &["events"],
        "products" => &["products"],
        "users" => &["users"],
        "carts" => &["orders", "order_items"],
        _ => &[],
    }
}

pub async fn verify(store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    // What retention deleted (`prune`): not missing, and not counted again.
    let mut pruned: HashSet<String> = HashSet::new();
    let mut curated_from: Option<chrono::NaiveDate> = None;
    for row in wh.query("SELECT object_key, zone FROM ops.pruned").await? {
        match (
            row.first().cloned().flatten(),
            row.get(1).cloned().flatten(),
        ) {
            (Some(day), Some(zone)) if zone == "curated" => {
                let day = chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok();
                curated_from = curated_from.max(day);
            }
            (Some(key), Some(_)) => {
                pruned.insert(key);
            }
            _ => {}
        }
    }
    let pruned_entities: BTreeSet<String> = pruned
        .iter()
        .filter_map(|k| k.strip_prefix("staging/"))
        .filter_map(|k| k.split('/').next())
        .map(str::to_string)
        .collect();
    let staging: BTreeMap<String, String> = store
        .list("staging/")
        .await?
        .into_iter()
        .map(|m| (m.key, m.sha256))
        .collect();

    // RAW -> STAGING: every batch response has its STAGING objects.
    for m in store.list("raw/").await? {
        let mut parts = m.key.split('/');
        let (_, source, entity) = (parts.next(), parts.next(), parts.next());
        if source == Some("file") {
            continue; // an ingested file reaches STAGING through its stream segments
        }
        for staged in staged_entities(entity.unwrap_or_default()) {
            let key = zones::staging_key_for(&m.key, staged).unwrap_or_default();
            let there = staging.contains_key(&key) || pruned.contains(&key);
            r.check("raw->staging", there, || {
                format!("{} has no STAGING object {key}", m.key)
            });
        }
        if source != Some("stream") {
            batch_records_counted(store, &m.key, entity.unwrap_or_default(), &mut r).await?;
        }
    }

    // STAGING -> ledger: each object's bytes hash to a loaded ledger row.
    let ledger: BTreeMap<String, String> = wh
        .query("SELECT object_key, sha256 FROM ops.ledger")
        .await?
        .into_iter()
        .filter_map(|row| match (row.first(), row.get(1)) {
            (Some(Some(k)), Some(Some(s))) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect();
    let loaded: HashSet<&String> = ledger.values().collect();
    let checkpoints = super::checkpoints(wh).await?;
    let mut keys: BTreeMap<&str, BTreeSet<Vec<String>>> = BTreeMap::new();
    for key in staging.keys() {
        let body = match store.get(key).await {
            Ok(b) => b,
            Err(e) => {
                r.partial_writes.push(key.clone());
                r.check("staging readable", false, || format!("{key}: {e}"));
                continue;
            }
        };
        let actual = sha256_hex(&body);
        if let Some(recorded) = ledger.get(key) {
            let intact = *recorded == actual;
            if !intact {
                r.partial_writes.push(key.clone());
            }
            r.check("staging bytes = ledger hash", intact, || {
                format!("{key}: ledger sha256 {recorded}, object now {actual} (partial write)")
            });
        } else if superseded(key, &checkpoints) {
            // An attempt at a stream segment that never committed (its instance died or lost
            // the shard's lease) while the records it holds were committed in segments cut
            // another way: they are behind the shard's checkpoint, and the stream accounting
            // below places every id received. Not a loss, and not what the warehouse holds: its
            // rows are not counted (the committed segments' judgement of them is what counts).
            r.check("staging -> ledger", true, String::new);
            continue;
        } else {
            r.check("staging -> ledger", loaded.contains(&actual), || {
                format!("{key} (sha256 {actual}) was never loaded")
            });
        }
        // Natural keys per entity, to compare with the warehouse tables.
        let entity = key.split('/').nth(1).unwrap_or_default();
        if let Some(spec) = schema::spec(entity) {
            let key_idx: Vec<usize> = spec
                .key
                .iter()
                .filter_map(|k| spec.fields().position(|c| c.name == *k))
                .collect();
            match parse_rows(&spec, key, &body) {
                Ok(rows) => {
                    let set = keys.entry(spec.entity).or_default();
                    for row in rows {
                        set.insert(
                            key_idx
                                .iter()
                                .map(|i| match &row[*i] {
                                    Cell::Int(v) => v.to_string(),
                                    other => format!("{other:?}"),
                                })
                                .collect(),
                        );
                    }
                }
                Err(e) => r.check("staging parses", false, || e.to_string()),
            }
        }
    }

    // STAGING objects -> warehouse STAGING tables: the same distinct natural keys.
    for spec in TABLES {
        let expected = keys.get(spec.entity).map_or(0, |s| s.len()) as i64;
        let actual = super::table_rows(wh, &spec.table()).await?;
        // Rows of pruned objects stay in the warehouse: what is kept must all be there.
        let agrees = if pruned_entities.contains(spec.entity) {
            expected <= actual
        } else {
            expected == actual
        };
        r.check("staging rows", agrees, || {
            format!(
                "{}: {expected} distinct keys in STAGING objects, {actual} rows in the warehouse",
                spec.table()
            )
        });
    }

    stream_accounting(store, wh, &pruned, &mut r).await?;

    // Warehouse STAGING -> CURATED.
    let dirty = dirty_days(wh).await?.len();
    r.check("models fresh", dirty == 0, || {
        format!("{dirty} day(s) await a model refresh")
    });
    // Days before `curated_from` were pruned from CURATED (not from STAGING): compare the rest.
    let since = |col: &str| {
        curated_from.map_or_else(String::new, |d| {
            format!(" WHERE CAST({col} AS DATE) >= DATE '{d}'")
        })
    };
    let count = |sql: String| async move {
        Ok::<i64, crate::Error>(int(wh.query(&sql).await?.first().and_then(|r| r.first())))
    };
    for (from, to, staged) in [
        (
            "staging.orders",
            "curated.fct_orders",
            format!("SELECT COUNT(*) FROM staging.orders{}", since("order_time")),
        ),
        (
            "staging.order_items",
            "curated.fct_order_items",
            format!(
                "SELECT COUNT(*) FROM staging.order_items AS i JOIN staging.orders AS o ON \
                 o.order_id = i.order_id{}",
                since("o.order_time")
            ),
        ),
        (
            "staging.products",
            "curated.dim_products",
            "SELECT COUNT(*) FROM staging.products".to_string(),
        ),
        (
            "staging.users",
            "curated.dim_users",
            "SELECT COUNT(*) FROM staging.users".to_string(),
        ),
        (
            "staging.events",
            "curated.fct_events",
            format!("SELECT COUNT(*) FROM staging.events{}", since("event_time")),
        ),
    ] {
        let a = if curated_from.is_some() {
            count(staged).await?
        } else {
            super::table_rows(wh, from).await?
        };
        let b = super::table_rows(wh, to).await?;
        r.check("curated rows", a == b, || {
            format!("{from} {a} rows, {to} {b}")
        });
    }
    curated_files(store, wh, &pruned, &mut r).await?;
    let scalar = |rows: super::TextRows| int(rows.first().and_then(|r| r.first()));
    let staged_revenue = scalar(
        wh.query(&format!(
            "SELECT CAST(COALESCE(SUM(order_total_cents), 0) AS BIGINT) FROM staging.orders \
                 WHERE order_status = 'placed'{}",
            since("order_time").replace(" WHERE ", " AND ")
        ))
        .await?,
    );
    let curated_revenue = scalar(
        wh.query(
            "SELECT CAST(COALESCE(SUM(revenue_cents), 0) AS BIGINT) FROM curated.daily_metrics",
        )
        .await?,
    );
    r.check("revenue", staged_revenue == curated_revenue, || {
        format!("staging revenue {staged_revenue} cents, curated {curated_revenue}")
    });
    let category_revenue = scalar(
        wh.query(
            "SELECT CAST(COALESCE(SUM(revenue_cents), 0) AS BIGINT) FROM curated.daily_category_sales",
        )
        .await?,
    );
    r.check(
        "revenue by category",
        category_revenue == curated_revenue,
        || format!("by category {category_revenue} cents, daily {curated_revenue}"),
    );
    Ok(r)
}

/// The event_id of a record as received (a string or an integer), if it has one.
fn record_event_id(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        event_id: serde_json::Value,
    }
    match serde_json::from_slice::<Id>(line).ok()?.event_id {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn nonempty_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
}

/// Lines of an object, 0 when it does not exist.
async fn object_lines(store: &dyn ObjectStore, key: &str) -> Result<(usize, Option<bytes::Bytes>)> {
    // One GET (no HEAD first): absent is an answer, not an error; a damaged object is reported
    // by the STAGING checks as a partial write.
    match store.get(key).await {
        Ok(body) => Ok((nonempty_lines(&body).count(), Some(body))),
        Err(crate::Error::NotFound(_) | crate::Error::ChecksumMismatch { .. }) => Ok((0, None)),
        Err(e) => Err(e),
    }
}

/// A pruned late object's events, from the backfill objects made from it (one per backfilled
/// range; a day backfilled twice is counted once, by event_id): its line count and body.
async fn backfilled_late(
    store: &dyn ObjectStore,
    late_key: &str,
    backfills: &mut Option<BTreeMap<String, Vec<String>>>,
) -> Result<(usize, Option<bytes::Bytes>)> {
    use super::late_index::{BACKFILL_PREFIX, PREFIX};
    if backfills.is_none() {
        let mut by_late: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in store.list_stat(BACKFILL_PREFIX).await? {
            if let Some((_, rest)) = m.key[BACKFILL_PREFIX.len()..].split_once('/') {
                by_late
                    .entry(format!("{PREFIX}{rest}"))
                    .or_default()
                    .push(m.key.clone());
            }
        }
        *backfills = Some(by_late);
    }
    let keys = backfills
        .as_ref()
        .and_then(|b| b.get(late_key))
        .cloned()
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let mut body = Vec::new();
    for key in keys {
        let (_, part) = object_lines(store, &key).await?;
        for line in part.iter().flat_map(|b| nonempty_lines(b)) {
            if record_event_id(line).is_some_and(|id| seen.insert(id)) {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
        }
    }
    Ok((seen.len(), Some(bytes::Bytes::from(body))))
}

/// The stream's records, each counted once: for every committed RAW segment, its records =
/// staged + duplicates + late + quarantined (the counts `ops.segments` recorded with its load),
/// and the STAGING, late and quarantine objects hold exactly those; and every event_id received
/// is in STAGING, the late buffer or quarantine (a duplicate is one whose first copy is). That an
/// event is in the warehouse once is the STAGING table's key, and CURATED is checked against it.
/// (A resend the dedup window no longer covers is staged again by design, so the lake may hold an
/// id twice: the warehouse keeps the first copy.)
async fn stream_accounting(
    store: &dyn ObjectStore,
    wh: &dyn Warehouse,
    pruned: &HashSet<String>,
    r: &mut VerifyReport,
) -> Result<()> {
    let mut recorded: BTreeMap<String, [i64; 5]> = BTreeMap::new();
    for row in wh
        .query(
            "SELECT raw_key, CAST(records AS BIGINT), CAST(staged AS BIGINT), \
             CAST(duplicates AS BIGINT), CAST(late AS BIGINT), CAST(quarantined AS BIGINT) \
             FROM ops.segments",
        )
        .await?
    {
        if let Some(Some(key)) = row.first() {
            let n = |i: usize| int(row.get(i));
            recorded.insert(key.clone(), [n(1), n(2), n(3), n(4), n(5)]);
        }
    }
    // Backfill objects by the late object they came from (listed when first needed).
    let mut backfills: Option<BTreeMap<String, Vec<String>>> = None;
    // Every id received, by the RAW segment it came in.
    let mut received: Vec<(String, Vec<String>)> = Vec::new();
    let mut accounted: HashSet<String> = HashSet::new();
    for m in store.list("raw/stream/events/").await? {
        let raw = store.get(&m.key).await?;
        let ids: Vec<String> = nonempty_lines(&raw).filter_map(record_event_id).collect();
        let records = nonempty_lines(&raw).count() as i64;
        let staging_key = zones::staging_key_for(&m.key, "events").unwrap_or_default();
        let late_key = zones::late_key_for(&m.key).unwrap_or_default();
        let bad_key = zones::quarantine_key_for(&m.key, "events").unwrap_or_default();
        let (staged_lines, staged_body) = object_lines(store, &staging_key).await?;
        if staged_body.is_none() {
            // Reported by raw->staging (or pruned past STAGING's retention): not counted here.
            continue;
        }
        let (mut late_lines, mut late_body) = object_lines(store, &late_key).await?;
        if late_body.is_none() && pruned.contains(&late_key) {
            // Pruned once backfilled: its events are in the backfill objects made from it,
            // unless retention took those too (then, as for quarantine below, uncountable).
            let rest = late_key
                .strip_prefix(super::late_index::PREFIX)
                .unwrap_or_default();
            if pruned.iter().any(|k| {
                k.starts_with(super::late_index::BACKFILL_PREFIX)
                    && k.ends_with(&format!("/{rest}"))
            }) {
                continue;
            }
            (late_lines, late_body) = backfilled_late(store, &late_key, &mut backfills).await?;
        }
        let (bad_lines, bad_body) = object_lines(store, &bad_key).await?;
        // A quarantine object past its retention: the segment cannot be counted any more,
        // its ids not placed; what remains of it is not a loss.
        if pruned.contains(&bad_key) {
            continue;
        }
        let mut add = |body: &Option<bytes::Bytes>, quarantine: bool| {
            for line in body.iter().flat_map(|b| nonempty_lines(b)) {
                let id = if quarantine {
                    // The record as received, kept as text with its reason.
                    serde_json::from_slice::<serde_json::Value>(line)
                        .ok()
                        .and_then(|q| {
                            q["record"]
                                .as_str()
                                .and_then(|t| record_event_id(t.as_bytes()))
                        })
                } else {
                    record_event_id(line)
                };
                if let Some(id) = id {
                    accounted.insert(id);
                }
            }
        };
        add(&staged_body, false);
        add(&late_body, false);
        add(&bad_body, true);
        received.push((m.key.clone(), ids));
        let Some([rec, staged, dups, late, bad]) = recorded.get(&m.key).copied() else {
            // Committed before counts were kept, or a failed attempt whose retry was cut
            // differently: its ids must still be accounted for (below).
            continue;
        };
        r.check(
            "segment counts balance",
            rec == staged + dups + late + bad,
            || {
                format!(
                    "{}: {rec} records but {staged} staged + {dups} duplicates + {late} late + \
                 {bad} quarantined",
                    m.key
                )
            },
        );
        for (what, key, want, have) in [
            ("records", &m.key, rec, records),
            ("staged", &staging_key, staged, staged_lines as i64),
            ("late", &late_key, late, late_lines as i64),
            ("quarantined", &bad_key, bad, bad_lines as i64),
        ] {
            r.check("segment objects = counts", want == have, || {
                format!(
                    "{}: the load recorded {want} {what}, {key} holds {have} lines",
                    m.key
                )
            });
        }
    }
    // Quarantined lines of ingested files (over the record limit) never reached the log.
    for m in store.list("quarantine/file/").await? {
        let body = store.get(&m.key).await?;
        for line in nonempty_lines(&body) {
            if let Some(id) = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|q| {
                    q["record"]
                        .as_str()
                        .and_then(|t| record_event_id(t.as_bytes()))
                })
            {
                accounted.insert(id);
            }
        }
    }
    for (key, ids) in &received {
        let lost: Vec<&String> = ids.iter().filter(|id| !accounted.contains(*id)).collect();
        r.check("every event received is placed", lost.is_empty(), || {
            format!(
                "{key}: {} record(s) whose event_id is in no STAGING, late or quarantine \
                 object (lost), e.g. {}",
                lost.len(),
                lost.iter()
                    .take(3)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    Ok(())
}

/// A RAW batch response's records = the rows staged from it + the records quarantined from it
/// (a cart is an order; its refused lines are counted with the order items).
async fn batch_records_counted(
    store: &dyn ObjectStore,
    raw_key: &str,
    entity: &str,
    r: &mut VerifyReport,
) -> Result<()> {
    let Some(primary) = staged_entities(entity).first() else {
        return Ok(());
    };
    let body = store.get(raw_key).await?;
    // A response that is not an array was never staged: raw->staging says so.
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&body) else {
        return Ok(());
    };
    let staging_key = zones::staging_key_for(raw_key, primary).unwrap_or_default();
    let bad_key = zones::quarantine_key_for(raw_key, primary).unwrap_or_default();
    let (staged, staged_body) = object_lines(store, &staging_key).await?;
    if staged_body.is_none() {
        return Ok(());
    }
    let (bad, _) = object_lines(store, &bad_key).await?;
    r.check(
        "batch records = staged + quarantined",
        items.len() == staged + bad,
        || {
            format!(
                "{raw_key}: {} records, {staged} staged in {staging_key} + {bad} quarantined",
                items.len()
            )
        },
    );
    Ok(())
}

/// The CURATED zone's files against the models: no day waits for its files, each file's bytes
/// hash to its ledger row, and its rows (as the ledger recorded them when it was written) are
/// the model's rows of that day now; every file in the zone is in the ledger.
async fn curated_files(
    store: &dyn ObjectStore,
    wh: &dyn Warehouse,
    pruned: &HashSet<String>,
    r: &mut VerifyReport,
) -> Result<()> {
    let pending = super::curated_files::pending_days(wh).await?.len();
    r.check("curated files written", pending == 0, || {
        format!(
            "{pending} day(s) of CURATED files await writing: the next cycle writes them \
             (`ecomops --no-ui --once`)"
        )
    });
    let objects: BTreeMap<String, String> = store
        .list("curated/")
        .await?
        .into_iter()
        .map(|m| (m.key, m.sha256))
        .collect();
    let rows = wh
        .query(
            "SELECT object_key, entity, sha256, CAST(row_count AS BIGINT) FROM ops.ledger \
             WHERE zone = 'curated'",
        )
        .await?;
    // Rows per day of each daily model, one query each.
    let mut per_day: BTreeMap<(String, String), i64> = BTreeMap::new();
    for model in super::curated_files::daily_models() {
        let day = model.day.unwrap_or("day");
        for r in wh
            .query(&format!(
                "SELECT CAST({day} AS VARCHAR), CAST(COUNT(*) AS BIGINT) FROM {} GROUP BY {day}",
                model.table()
            ))
            .await?
        {
            if let Some(d) = r.first().cloned().flatten() {
                per_day.insert((model.name.to_string(), d), int(r.get(1)));
            }
        }
    }
    let mut recorded = HashSet::new();
    for row in rows {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (key, model, sha, count) = (text(0), text(1), text(2), int(row.get(3)));
        recorded.insert(key.clone());
        if pruned.contains(&key) {
            continue;
        }
        match objects.get(&key) {
            None => r.check("curated file present", false, || {
                format!("{key} is in the ledger but not in the store")
            }),
            Some(actual) => r.check("curated file = ledger hash", *actual == sha, || {
                format!("{key}: ledger sha256 {sha}, object now {actual}")
            }),
        }
        let day = zones::curated_day(&key).map_or_else(String::new, |d| d.to_string());
        let in_table = per_day
            .get(&(model.clone(), day.clone()))
            .copied()
            .unwrap_or(0);
        r.check("curated file rows = model rows", in_table == count, || {
            format!("{key}: {count} rows in the file, {in_table} in curated.{model} for {day}")
        });
    }
    for key in objects.keys().filter(|k| !pruned.contains(*k)) {
        r.check("curated file -> ledger", recorded.contains(key), || {
            format!("{key} is in the CURATED zone but not in the ledger")
        });
    }
    Ok(())
}

/// A STAGING stream segment (`staging/events/shard=<s>/seg-<first>-<last>.ndjson`) whose records
/// all lie at or behind its shard's committed checkpoint.
fn superseded(key: &str, checkpoints: &BTreeMap<String, u64>) -> bool {
    let shard = key
        .strip_prefix("staging/events/shard=")
        .and_then(|rest| rest.split_once('/'))
        .map(|(shard, _)| shard);
    match (
        shard.and_then(|s| checkpoints.get(s)),
        zones::segment_range(key),
    ) {
        (Some(cp), Some((_, last))) => last <= *cp,
        _ => false,
    }
}
