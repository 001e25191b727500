//! The warehouse: one trait, DuckDB embedded (the default). Loads are idempotent: a STAGING
//! file whose hash is in the ledger is skipped; otherwise its rows go to a scratch table, are
//! deduplicated on the natural key and MERGEd, and the ledger row is written in the same
//! transaction. CURATED models are refreshed by day (see `models`).

pub mod columns;
pub mod curated_files;
#[cfg(feature = "duckdb")]
pub mod duck;
pub mod fleet_lock;
pub mod late_index;
pub mod migrate;
pub mod models;
pub mod postgres;
pub mod quality;
pub mod redshift;
pub mod schema;
pub mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::{Config, WarehouseBackend};
use crate::error::{Error, Result};

pub use ecom_model::warehouse::{
    CategoryRevenue, DayFigures, FunnelStep, Metrics, WarehouseStatus,
};
use schema::{TableSpec, Ty};

/// One value for a scratch-table row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Float(f64),
    Text(String),
    Time(DateTime<Utc>),
    Null,
}

/// A STAGING object to load.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub key: String,
    pub entity: String,
    pub sha256: String,
    pub body: bytes::Bytes,
    /// Where the rows came from, e.g. "synthetic" or "fakestore".
    pub source: String,
    /// For stream segments: the checkpoint, counts and state generation committed with the
    /// load.
    pub checkpoint: Option<crate::ledger::StreamCommit>,
    /// The body's scratch-table columns when its writer has them typed already (the stream's
    /// segments): the load takes them instead of parsing the body again. They are exactly
    /// `parse_rows` of the body (`columns::EventColumns` is tested against it).
    pub columns: Option<Arc<columns::RecordBatch>>,
}

impl StagedFile {
    fn spec(&self) -> Result<TableSpec> {
        schema::spec(&self.entity).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no warehouse table for {}",
                self.key, self.entity
            ))
        })
    }

    /// The file's warehouse table and its scratch-table rows.
    pub fn parse(&self) -> Result<(TableSpec, Arc<Vec<Vec<Cell>>>)> {
        let spec = self.spec()?;
        let rows = match &self.columns {
            Some(c) => columns::cells_of(c)?,
            None => parse_rows(&spec, &self.key, &self.body)?,
        };
        Ok((spec, Arc::new(rows)))
    }

    /// The file's warehouse table and its scratch-table columns (DuckDB's appender).
    pub fn columns(&self) -> Result<(TableSpec, Arc<columns::RecordBatch>)> {
        let spec = self.spec()?;
        let cols = match &self.columns {
            Some(c) => c.clone(),
            None => Arc::new(columns::of_cells(
                &spec,
                &parse_rows(&spec, &self.key, &self.body)?,
            )?),
        };
        Ok((spec, cols))
    }

    /// The ledger row of this file, loaded now.
    pub fn ledger_entry(&self, rows: usize) -> schema::LedgerEntry<'_> {
        schema::LedgerEntry {
            key: &self.key,
            entity: &self.entity,
            sha256: &self.sha256,
            bytes: self.body.len() as u64,
            rows: rows as u64,
            source: &self.source,
            loaded_at: Utc::now(),
            checkpoint: self.checkpoint.as_ref(),
        }
    }

    pub fn outcome(&self, rows: usize, skipped: bool) -> LoadOutcome {
        LoadOutcome {
            key: self.key.clone(),
            entity: self.entity.clone(),
            rows: rows as u64,
            skipped,
        }
    }
}

/// What one load did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadOutcome {
    pub key: String,
    pub entity: String,
    pub rows: u64,
    /// Its hash was already in the ledger: nothing loaded.
    pub skipped: bool,
}

/// Rows of a query, each cell as text (`None` for NULL).
pub type TextRows = Vec<Vec<Option<String>>>;

/// A warehouse backend.
pub trait Warehouse: Send + Sync {
    fn backend(&self) -> &'static str;

    /// The SQL it speaks (where the engines differ).
    fn dialect(&self) -> schema::Dialect;

    /// Load one STAGING file, idempotently, in one transaction with its ledger row.
    fn load<'a>(&'a self, file: &'a StagedFile) -> BoxFuture<'a, Result<LoadOutcome>>;

    /// How many files one `load_group` transaction takes (1: one file a transaction).
    fn files_per_load(&self) -> usize;

    /// Load several STAGING files of one entity in one transaction, with their ledger rows and
    /// their stream commits (checkpoints, counts, state): all or nothing. A file already in the
    /// ledger (or a second copy of the same bytes in the group) is skipped, its stream commit
    /// still committed. At most `files_per_load` files (`load_single` for a backend of one).
    fn load_group(&self, files: Vec<StagedFile>) -> BoxFuture<'_, Result<Vec<LoadOutcome>>>;

    /// Run statements in one transaction.
    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, Result<()>>;

    /// Rows of a query, every cell as text.
    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<TextRows>>;

    /// Hold (`true`) or let go the lock the instances sharing this warehouse take before
    /// shared writes, across several calls (the CURATED publication reads, writes files, then
    /// commits: two instances interleaved would delete each other's files). A no-op where one
    /// instance writes. Taking it answers false where another instance holds it and it is not
    /// waited for (Redshift's hold outlives a killed holder by minutes): the caller skips the
    /// work, which stays pending for the next time.
    fn hold_shared(&self, _hold: bool) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    /// Between the steps of work under `hold_shared`: renew the hold where it would expire,
    /// and fail where it is lost (the work stops; what it left undone is done again next time).
    /// The answer is how long the hold is sure to last (`Duration::MAX`: as long as this
    /// instance lives): the next step must end within it.
    fn keep_shared(&self) -> BoxFuture<'_, Result<std::time::Duration>> {
        Box::pin(async { Ok(std::time::Duration::MAX) })
    }

    /// Whether other instances write this warehouse beside this one (`hold_shared` locks).
    fn shared(&self) -> bool {
        false
    }
}

/// Committed stream checkpoints by shard.
pub async fn checkpoints(wh: &dyn Warehouse) -> Result<std::collections::BTreeMap<String, u64>> {
    Ok(wh
        .query("SELECT shard, CAST(sequence_number AS BIGINT) FROM ops.checkpoints")
        .await?
        .into_iter()
        .filter_map(|r| {
            let shard = r.first().cloned().flatten()?;
            let seq = r.get(1).cloned().flatten()?.parse().ok()?;
            Some((shard, seq))
        })
        .collect())
}

/// `work` (a model refresh and the CURATED publication after it) under the hold the instances
/// sharing this warehouse take, so no other instance's refresh commits between a publication's
/// read of the pending days and its commit (a day it marked pending again would be cleared with
/// older rows). `wait`: an operator's command waits for another holder (Redshift: polled,
/// within the hold's expiry); a cycle does not: None, its days stay dirty or pending for the
/// next refresh. Where one instance writes, `work` just runs.
async fn exclusive<T>(
    wh: &dyn Warehouse,
    wait: bool,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<Option<T>> {
    if !wh.shared() {
        return work.await.map(Some);
    }
    let deadline = std::time::Instant::now() + fleet_lock::LONGEST;
    while !wh.hold_shared(true).await? {
        if !wait {
            tracing::debug!("another instance refreshes CURATED now; the days wait for the next");
            return Ok(None);
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Warehouse(
                "another instance has held the CURATED refresh past its expiry".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let done = work.await;
    let released = wh.hold_shared(false).await;
    let done = done?;
    released?;
    Ok(Some(done))
}

/// The CURATED publication (within `exclusive` where instances share the warehouse).
async fn publish(
    wh: &dyn Warehouse,
    store: &dyn crate::store::ObjectStore,
) -> Result<curated_files::Published> {
    if wh.shared() {
        wh.keep_shared().await?;
    }
    curated_files::publish(wh, store).await
}

/// `load_group` for a backend that loads one file a transaction: the file, then its stream
/// commit on its own when the file was loaded before (an empty STAGING object, or a replay).
pub async fn load_single(wh: &dyn Warehouse, files: &[StagedFile]) -> Result<Vec<LoadOutcome>> {
    match files {
        [] => Ok(Vec::new()),
        [file] => {
            let outcome = wh.load(file).await?;
            if let (true, Some(c)) = (outcome.skipped, &file.checkpoint) {
                wh.execute_tx(schema::stream_commit_sql(c)).await?;
            }
            Ok(vec![outcome])
        }
        _ => Err(Error::Unsupported {
            key: "warehouse.backend".into(),
            message: format!(
                "{} loads one file a transaction, not {}",
                wh.backend(),
                files.len()
            ),
        }),
    }
}

/// Open the configured warehouse (creating schemas and tables). `read_only` opens an existing
/// DuckDB file without taking its write lock, and gives `None` when there is none yet.
pub async fn open(
    config: &Config,
    read_only: bool,
    store: &Arc<dyn crate::store::ObjectStore>,
) -> Result<Option<Arc<dyn Warehouse>>> {
    match config.warehouse.backend {
        #[cfg(not(feature = "duckdb"))]
        WarehouseBackend::Duckdb => Err(crate::Error::Unsupported {
            key: "warehouse.backend".into(),
            message: "this build has no DuckDB (the `duckdb` feature is off)".into(),
        }),
        #[cfg(feature = "duckdb")]
        WarehouseBackend::Duckdb => {
            let path = config.duckdb_path();
            if read_only && !path.exists() {
                return Ok(None);
            }
            match duck::DuckWarehouse::open(&path, read_only, config.warehouse.duckdb.threads).await
            {
                Ok(wh) if read_only => Ok(Some(Arc::new(wh))),
                Ok(wh) => {
                    migrate::migrate(&wh, schema::Dialect::DuckDb).await?;
                    Ok(Some(Arc::new(wh)))
                }
                // A reader must never stand in a writer's way: show the rest without it.
                Err(e) if read_only => {
                    tracing::warn!(error = %e, "warehouse not readable now; status shows no tables");
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        }
        WarehouseBackend::Postgres => {
            let writer = match (read_only, config.stream.kinesis.leases.enabled) {
                (true, _) => postgres::Writer::Reader,
                (false, false) => postgres::Writer::Alone,
                (false, true) => postgres::Writer::Fleet,
            };
            let wh =
                postgres::PostgresWarehouse::connect(&config.warehouse.postgres, writer).await?;
            if !read_only {
                wh.tx(schema::ddl(schema::Dialect::Redshift)).await?;
                migrate_shared(&wh).await?;
            }
            Ok(Some(Arc::new(wh)))
        }
        WarehouseBackend::Redshift => {
            let rs = &config.warehouse.redshift;
            let mut wh = redshift::RedshiftWarehouse::connect(rs).await?;
            // Config::validate refuses a COPY role without an S3 store.
            if let Some(role) = &rs.copy_iam_role {
                wh = wh.with_copy(redshift::CopyFrom {
                    store: store.clone(),
                    bucket: config.store.s3.bucket.clone(),
                    prefix: config.store.s3.prefix.clone(),
                    iam_role: role.clone(),
                });
            }
            let leases = &config.stream.kinesis.leases;
            if leases.enabled && !read_only {
                wh = wh.in_fleet(
                    &leases.worker(),
                    std::time::Duration::from_secs(leases.lease_secs),
                );
            }
            if !read_only {
                wh.create_tables().await?;
                migrate_shared(&wh).await?;
            }
            Ok(Some(Arc::new(wh)))
        }
    }
}

/// Migrate a warehouse other instances may be migrating too: two that start together both read
/// the columns before either adds them, and the second's `ADD COLUMN` fails; once more, it reads
/// them added.
async fn migrate_shared(wh: &dyn Warehouse) -> Result<()> {
    if let Err(e) = migrate::migrate(wh, schema::Dialect::Redshift).await {
        if !wh.shared() {
            return Err(e);
        }
        tracing::info!(error = %e, "migration raced another instance's; once more");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        migrate::migrate(wh, schema::Dialect::Redshift).await?;
    }
    Ok(())
}

/// Parse a STAGING NDJSON body into scratch-table rows (the spec's columns, then the source key
/// and the line's ordinal). STAGING is our own typed output: a line that does not fit is
/// corruption, reported with its line number.
pub fn parse_rows(spec: &TableSpec, key: &str, body: &[u8]) -> Result<Vec<Vec<Cell>>> {
    // A large body is parsed in parts, one per core, cut at line ends: line numbers (the
    // ordinals) carry on from part to part.
    if body.len() < PARALLEL_PARSE_BYTES {
        return parse_lines(spec, key, body, 0);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores < 2 {
        return parse_lines(spec, key, body, 0);
    }
    let mut parts = Vec::with_capacity(cores);
    let mut rest = body;
    let mut first_line = 0;
    for i in (1..=cores).rev() {
        let cut = if i == 1 {
            rest.len()
        } else {
            let want = rest.len() / i;
            rest[want..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |p| want + p + 1)
        };
        let (part, tail) = rest.split_at(cut);
        parts.push((part, first_line));
        first_line += part.iter().filter(|b| **b == b'\n').count();
        rest = tail;
    }
    let parsed: Vec<Result<Vec<Vec<Cell>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|(part, first)| scope.spawn(move || parse_lines(spec, key, part, first)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Other(format!("{key}: a parse thread panicked")))
                })
            })
            .collect()
    });
    let mut rows = Vec::new();
    for part in parsed {
        rows.extend(part?);
    }
    Ok(rows)
}

/// Below this a body is parsed on one thread (a thread costs more than it saves).
const PARALLEL_PARSE_BYTES: usize = 1 << 20;

/// `parse_rows` of `body`, whose first line is line `first_line` (0-based) of its file.
fn parse_lines(
    spec: &TableSpec,
    key: &str,
    body: &[u8],
    first_line: usize,
) -> Result<Vec<Vec<Cell>>> {
    let fields: Vec<&schema::Column> = spec.fields().collect();
    let mut rows = Vec::with_capacity(body.len() / 128);
    for (n, line) in body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(n, l)| (n + first_line, l))
    {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |why: String| Error::Invalid(format!("{key} line {}: {why}", n + 1));
        // The line's values of the spec's fields, by place (a repeated field: the last wins);
        // other fields are skipped unread and nothing is copied into a map.
        let mut de = serde_json::Deserializer::from_slice(line);
        let mut slots = serde::de::DeserializeSeed::deserialize(LineSeed(&fields), &mut de)
            .and_then(|slots| de.end().map(|()| slots))
            .map_err(|e| bad(e.to_string()))?;
        let mut row = Vec::with_capacity(fields.len() + 2);
        for (c, slot) in fields.iter().zip(slots.iter_mut()) {
            let field = c.field().unwrap_or(c.name);
            let v = slot.take().unwrap_or(serde_json::Value::Null);
            let cell = match (c.ty, v) {
                (_, serde_json::Value::Null) if c.nullable => Ok(Cell::Null),
                (Ty::BigInt, v) => v.as_i64().map(Cell::Int).ok_or(v),
                (Ty::Double, v) => v.as_f64().map(Cell::Float).ok_or(v),
                (Ty::Text, serde_json::Value::String(s)) => Ok(Cell::Text(s)),
                (Ty::Timestamp, serde_json::Value::String(s)) => match parse_time(&s) {
                    Some(t) => Ok(Cell::Time(t)),
                    None => Err(serde_json::Value::String(s)),
                },
                (_, v) => Err(v),
            }
            .map_err(|v| bad(format!("field {field} is not a {:?}: {v}", c.ty)))?;
            row.push(cell);
        }
        row.push(Cell::Text(key.to_string()));
        row.push(Cell::Int(n as i64));
        rows.push(row);
    }
    Ok(rows)
}

/// Reads one JSON object into a slot per field.
struct LineSeed<'a>(&'a [&'a schema::Column]);

impl<'de> serde::de::DeserializeSeed<'de> for LineSeed<'_> {
    type Value = Vec<Option<serde_json::Value>>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for LineSeed<'_> {
    type Value = Vec<Option<serde_json::Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut slots = vec![None; self.0.len()];
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self
                .0
                .iter()
                .position(|c| c.field().unwrap_or(c.name) == name)
            {
                Some(i) => slots[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(slots)
    }
}

/// An RFC 3339 time; `write_time`'s own form (`2026-03-01T10:00:00.000000Z`) is read digit by
/// digit, anything else by chrono.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let fast = (b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z')
        .then(|| {
            let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
            let time = chrono::NaiveTime::from_hms_micro_opt(
                num(11..13)?,
                num(14..16)?,
                num(17..19)?,
                num(20..26)?,
            )?;
            Some(date.and_time(time).and_utc())
        })
        .flatten();
    fast.or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// Days waiting for a model refresh.
pub async fn dirty_days(wh: &dyn Warehouse) -> Result<BTreeSet<NaiveDate>> {
    let rows = wh
        .query("SELECT CAST(day AS VARCHAR) FROM ops.dirty_partitions")
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .filter_map(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
        .collect())
}

/// What a model refresh did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshReport {
    pub dirty_days: usize,
    pub recomputed_days: usize,
    /// CURATED files written (`curated_files`).
    #[serde(default)]
    pub curated_files: usize,
}

/// Recompute the dirty days plus `lookback` days before each, then write the CURATED files
/// of every day still pending (these and any an interrupted refresh left).
pub async fn refresh_models(
    wh: &dyn Warehouse,
    store: &dyn crate::store::ObjectStore,
    lookback: u32,
) -> Result<RefreshReport> {
    // Nothing to do: no hold taken (a fleet's instances would queue on it every cycle).
    if wh.shared()
        && dirty_days(wh).await?.is_empty()
        && curated_files::pending_days(wh).await?.is_empty()
    {
        return Ok(RefreshReport::default());
    }
    Ok(exclusive(wh, false, refresh_dirty(wh, store, lookback))
        .await?
        .unwrap_or_default())
}

async fn refresh_dirty(
    wh: &dyn Warehouse,
    store: &dyn crate::store::ObjectStore,
    lookback: u32,
) -> Result<RefreshReport> {
    let dirty = dirty_days(wh).await?;
    if dirty.is_empty() {
        let files = publish(wh, store).await?.files;
        return Ok(RefreshReport {
            curated_files: files,
            ..RefreshReport::default()
        });
    }
    let days = models::refresh_days(&dirty, lookback);
    wh.execute_tx(models::refresh_sql(wh.dialect(), &days))
        .await?;
    let files = publish(wh, store).await?.files;
    tracing::info!(
        dirty = dirty.len(),
        recomputed = days.len(),
        "curated models refreshed"
    );
    Ok(RefreshReport {
        dirty_days: dirty.len(),
        recomputed_days: days.len(),
        curated_files: files,
    })
}

/// Recompute exactly the days `from..=to` (a backfill).
pub async fn backfill(
    wh: &dyn Warehouse,
    store: &dyn crate::store::ObjectStore,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<RefreshReport> {
    if to < from {
        return Err(Error::Usage(format!(
            "backfill range {from}..{to} is empty"
        )));
    }
    let days: BTreeSet<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    let work = async {
        wh.execute_tx(models::refresh_sql(wh.dialect(), &days))
            .await?;
        publish(wh, store).await
    };
    let files = exclusive(wh, true, work).await?.unwrap_or_default().files;
    Ok(RefreshReport {
        dirty_days: 0,
        recomputed_days: days.len(),
        curated_files: files,
    })
}

pub(crate) fn int(cell: Option<&Option<String>>) -> i64 {
    cell.and_then(|c| c.as_deref())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub async fn metrics(wh: &dyn Warehouse) -> Result<Metrics> {
    let totals = wh.query(models::TOTALS_SQL).await?;
    let row = totals.first();
    let revenue_cents = int(row.and_then(|r| r.first()));
    let orders = int(row.and_then(|r| r.get(1)));
    let by_category = wh
        .query(models::BY_CATEGORY_SQL)
        .await?
        .into_iter()
        .map(|r| CategoryRevenue {
            category: r.first().cloned().flatten().unwrap_or_default(),
            revenue_cents: int(r.get(1)),
            orders: int(r.get(2)),
        })
        .collect();
    let funnel = wh.query(models::FUNNEL_SQL).await?;
    let f: Vec<i64> = (0..5)
        .map(|i| int(funnel.first().and_then(|r| r.get(i))))
        .collect();
    let (sessions, steps) = (f[0], &f[1..]);
    let names = ["product_view", "add_to_cart", "checkout", "purchase"];
    let funnel_dropoff = (sessions > 0).then(|| {
        (0..3)
            .map(|i| FunnelStep {
                from: names[i].to_string(),
                to: names[i + 1].to_string(),
                dropoff: if steps[i] > 0 {
                    1.0 - steps[i + 1] as f64 / steps[i] as f64
                } else {
                    0.0
                },
            })
            .collect()
    });
    Ok(Metrics {
        revenue_cents,
        orders,
        avg_order_value_cents: (orders > 0).then(|| revenue_cents as f64 / orders as f64),
        conversion_rate: (sessions > 0).then(|| steps[3] as f64 / sessions as f64),
        funnel_dropoff,
        by_category,
    })
}

/// Days a trend covers at most (a year and a day).
pub const MAX_TREND_DAYS: i64 = 366;

/// The figures of each day of `from..=to` from the CURATED daily models, oldest first; a day
/// without orders or sessions has zeros.
pub async fn trends(
    wh: &dyn Warehouse,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<DayFigures>> {
    if from > to || (to - from).num_days() >= MAX_TREND_DAYS {
        return Err(Error::Usage(format!(
            "a trend covers 1 to {MAX_TREND_DAYS} days, from {from} to {to} is not that"
        )));
    }
    let range = format!("day >= DATE '{from}' AND day <= DATE '{to}'");
    let mut days: std::collections::BTreeMap<chrono::NaiveDate, DayFigures> = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(|day| {
            let zero = DayFigures {
                day,
                orders: 0,
                revenue_cents: 0,
                avg_order_value_cents: None,
                sessions: 0,
                viewed: 0,
                carted: 0,
                checked_out: 0,
                purchased: 0,
                conversion_rate: None,
            };
            (day, zero)
        })
        .collect();
    let day_of = |row: &Vec<Option<String>>| {
        row.first()
            .cloned()
            .flatten()
            .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
    };
    // Two sums per day of one daily model, for the days of the range.
    let sums = |table: &'static str, a: &'static str, b: &'static str| {
        let sql = format!(
            "SELECT CAST(day AS VARCHAR), CAST(SUM({a}) AS BIGINT), CAST(SUM({b}) AS BIGINT) \
             FROM curated.{table} WHERE {range} GROUP BY day"
        );
        async move {
            let rows = wh.query(&sql).await?;
            Ok::<_, Error>(
                rows.iter()
                    .filter_map(|r| Some((day_of(r)?, int(r.get(1)), int(r.get(2)))))
                    .collect::<Vec<_>>(),
            )
        }
    };
    for (day, orders, revenue) in sums("daily_metrics", "orders", "revenue_cents").await? {
        if let Some(f) = days.get_mut(&day) {
            f.orders = orders;
            f.revenue_cents = revenue;
            f.avg_order_value_cents = (orders > 0).then(|| revenue as f64 / orders as f64);
        }
    }
    for (day, sessions, purchased) in sums("daily_funnel", "sessions", "purchased").await? {
        if let Some(f) = days.get_mut(&day) {
            f.sessions = sessions;
            f.purchased = purchased;
            f.conversion_rate = (sessions > 0).then(|| purchased as f64 / sessions as f64);
        }
    }
    for (day, viewed, carted) in sums("daily_funnel", "viewed", "carted").await? {
        if let Some(f) = days.get_mut(&day) {
            f.viewed = viewed;
            f.carted = carted;
        }
    }
    for (day, checked_out, _) in sums("daily_funnel", "checked_out", "purchased").await? {
        if let Some(f) = days.get_mut(&day) {
            f.checked_out = checked_out;
        }
    }
    Ok(days.into_values().collect())
}

/// Revenue, orders and units per category over `from..=to` (the range checked as `trends`
/// checks it), largest revenue first.
pub async fn category_trends(
    wh: &dyn Warehouse,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<ecom_model::warehouse::CategoryFigures>> {
    if from > to || (to - from).num_days() >= MAX_TREND_DAYS {
        return Err(Error::Usage(format!(
            "a trend covers 1 to {MAX_TREND_DAYS} days, from {from} to {to} is not that"
        )));
    }
    let rows = wh
        .query(&format!(
            "SELECT category, CAST(SUM(orders) AS BIGINT), CAST(SUM(units) AS BIGINT), \
             CAST(SUM(revenue_cents) AS BIGINT) FROM curated.daily_category_sales WHERE \
             day >= DATE '{from}' AND day <= DATE '{to}' GROUP BY category ORDER BY 4 DESC, 1"
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| ecom_model::warehouse::CategoryFigures {
            category: r.first().cloned().flatten().unwrap_or_default(),
            orders: int(r.get(1)),
            units: int(r.get(2)),
            revenue_cents: int(r.get(3)),
        })
        .collect())
}

/// Rows per table, for status and verify.
pub async fn table_rows(wh: &dyn Warehouse, table: &str) -> Result<i64> {
    let rows = wh
        .query(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"))
        .await?;
    Ok(int(rows.first().and_then(|r| r.first())))
}

/// Tables, ledger, dirty days and metrics; the data-quality findings are left to the caller
/// (`quality::quality`: they read whole tables, so not on every refresh).
pub async fn status(wh: &dyn Warehouse) -> Result<WarehouseStatus> {
    let mut tables = Vec::new();
    for spec in schema::TABLES {
        tables.push((spec.table(), table_rows(wh, &spec.table()).await?));
    }
    for m in models::MODEL_SPECS {
        let t = m.table();
        let n = table_rows(wh, &t).await?;
        tables.push((t, n));
    }
    Ok(WarehouseStatus {
        backend: wh.backend().to_string(),
        tables,
        // Loaded STAGING files; the CURATED files the ledger also records are written, not
        // loaded.
        ledger_files: int(wh
            .query("SELECT CAST(COUNT(*) AS BIGINT) FROM ops.ledger WHERE zone = 'staging'")
            .await?
            .first()
            .and_then(|r| r.first())),
        dirty_days: dirty_days(wh).await?.len(),
        metrics: Some(metrics(wh).await?),
        quality: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reading `parse_rows` replaced (a map of every field, then a lookup per column): the
    /// field-by-field reader must give the same rows and refuse the same lines.
    fn by_map(spec: &TableSpec, key: &str, body: &[u8]) -> Result<Vec<Vec<Cell>>> {
        let mut rows = Vec::new();
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |why: String| Error::Invalid(format!("{key} line {}: {why}", n + 1));
            let obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
            let mut row = Vec::new();
            for c in spec.fields() {
                let field = c.field().unwrap_or(c.name);
                let v = obj.get(field).unwrap_or(&serde_json::Value::Null);
                let cell = match (c.ty, v) {
                    (_, serde_json::Value::Null) if c.nullable => Some(Cell::Null),
                    (Ty::BigInt, v) => v.as_i64().map(Cell::Int),
                    (Ty::Double, v) => v.as_f64().map(Cell::Float),
                    (Ty::Text, v) => v.as_str().map(|s| Cell::Text(s.to_string())),
                    (Ty::Timestamp, v) => v
                        .as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| Cell::Time(t.with_timezone(&Utc))),
                    (Ty::Date | Ty::Bool, _) => None,
                }
                .ok_or_else(|| bad(format!("field {field} is not a {:?}: {v}", c.ty)))?;
                row.push(cell);
            }
            row.push(Cell::Text(key.to_string()));
            row.push(Cell::Int(n as i64));
            rows.push(row);
        }
        Ok(rows)
    }

    #[test]
    fn a_leap_second_loads_as_staging_writes_it() {
        use chrono::TimeZone;
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 1_500_000))
            .map(|t| Utc.from_utc_datetime(&t))
            .unwrap();
        let e = crate::domain::Event {
            event_id: "leap".into(),
            user_id: 1,
            product_id: 2,
            event_type: crate::domain::EventType::Purchase,
            event_time: leap,
            ingestion_time: Some(leap),
            session_id: "s".into(),
            producer_time: None,
        };
        let mut line = Vec::new();
        crate::stream::consumer::write_event(&e, &mut line);
        let parsed = parse_rows(&schema::EVENTS, "k", &line).unwrap();
        let mut cols = columns::EventColumns::with_capacity(1);
        cols.push(&e);
        assert_eq!(
            parsed,
            columns::cells_of(&cols.finish("k").unwrap()).unwrap()
        );
    }

    #[test]
    fn a_large_body_parses_in_parts_to_the_same_rows_and_line_numbers() {
        let line = |i: usize| {
            format!(
                r#"{{"order_id":{i},"user_id":1,"order_time":"2026-03-01T10:00:00Z","order_status":"placed","order_total_cents":{i},"item_count":1}}"#
            )
        };
        // Over the threshold, with blank lines in it; then a bad line far into the body.
        let mut lines: Vec<String> = (0..20_000).map(line).collect();
        lines.insert(7_000, String::new());
        let body = lines.join("\n") + "\n";
        assert!(body.len() > PARALLEL_PARSE_BYTES);
        let spec = schema::ORDERS;
        let whole = parse_lines(&spec, "k", body.as_bytes(), 0).unwrap();
        assert_eq!(parse_rows(&spec, "k", body.as_bytes()).unwrap(), whole);
        assert_eq!(
            whole[7_000].last(),
            Some(&Cell::Int(7_001)),
            "the blank line counts"
        );
        lines[15_000] = "{\"order_id\":\"x\"}".into();
        let body = lines.join("\n");
        let err = parse_rows(&spec, "k", body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("k line 15001:"), "{err}");
    }

    #[test]
    fn the_field_reader_reads_and_refuses_as_the_map_did() {
        let ok = [
            // Our own form; the field repeated (the last wins); escapes in a key and a value;
            // unknown fields, nested; a producer time null, then absent.
            r#"{"event_id":"a","user_id":1,"product_id":2,"event_type":"checkout","event_time":"2026-03-01T10:00:00.123456Z","ingestion_time":"2026-03-01T10:00:01.000000Z","session_id":"s","producer_time":null}"#,
            r#"{"event_id":"x","event_id":"b\"\u00e9","user_id":-3,"product_id":2,"event_type":"purchase","event_time":"2026-03-01T10:00:00Z","ingestion_time":"2026-03-01T12:00:00+02:00","session\u005fid":"s","extra":{"a":[1,{"b":null}]}}"#,
            r#"{"event_id":"c","user_id":1,"product_id":2,"event_type":"x","event_time":"2026-12-31T23:59:60.5Z","ingestion_time":"2026-03-01T10:00:00.1Z","session_id":"","producer_time":"2026-03-01T10:00:00.000000Z"}"#,
        ];
        let body = ok.join("\n") + "\n\n";
        let spec = schema::EVENTS;
        let ours = parse_rows(&spec, "k", body.as_bytes()).unwrap();
        assert_eq!(ours, by_map(&spec, "k", body.as_bytes()).unwrap());
        assert_eq!(ours.len(), 3);
        assert_eq!(ours[1][0], Cell::Text("b\"é".into()));
        for bad in [
            r#"{"event_id":1,"user_id":1,"product_id":2,"event_type":"x","event_time":"2026-03-01T10:00:00Z","ingestion_time":"2026-03-01T10:00:00Z","session_id":"s"}"#,
            r#"{"event_id":"a","user_id":1.5,"product_id":2,"event_type":"x","event_time":"2026-03-01T10:00:00Z","ingestion_time":"2026-03-01T10:00:00Z","session_id":"s"}"#,
            r#"{"event_id":"a","user_id":1,"product_id":2,"event_type":"x","event_time":"2026-02-30T10:00:00.000000Z","ingestion_time":"2026-03-01T10:00:00Z","session_id":"s"}"#,
            r#"{"event_id":"a","user_id":1,"product_id":2,"event_type":"x","event_time":"2026-03-01T10:00:00Z","session_id":"s"}"#,
            r#"{"event_id":"a","user_id":1,"product_id":2,"event_type":"x","event_time":"2026-03-01T10:00:00Z","ingestion_time":"2026-03-01T10:00:00Z","session_id":"s"} x"#,
            r#"["event_id"]"#,
            r#"{"event_id":"a""#,
        ] {
            let ours = parse_rows(&spec, "k", bad.as_bytes())
                .unwrap_err()
                .to_string();
            let map = by_map(&spec, "k", bad.as_bytes()).unwrap_err().to_string();
            assert!(ours.contains("k line 1: "), "{ours}");
            // The same line and field named (serde's own wording may differ in what it expected).
            assert_eq!(
                ours.split(" is not a").next(),
                map.split(" is not a").next(),
                "{bad}"
            );
        }
    }
}
