//! DuckDB, embedded: one file in the data dir. DuckDB is synchronous, so every call runs on the
//! blocking pool with the one connection behind a mutex (DuckDB allows one writing process, and
//! this process is it).

use std::path::Path;
use std::sync::{Arc, Mutex};

use duckdb::types::{TimeUnit, Value};
use duckdb::{AccessMode, Connection};
use futures::future::BoxFuture;

use super::columns::{self, RecordBatch};
use super::schema::{self, Dialect};
use super::{LoadOutcome, StagedFile, TextRows, Warehouse};
use crate::error::{Error, Result};

/// How long a writer's open waits for another process's lock on the file; a reader gives up
/// after a second (it must never hold up a writer).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
const READER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub struct DuckWarehouse {
    conn: Arc<Mutex<Connection>>,
    threads: Arc<Threads>,
}

/// DuckDB's worker threads: `load` while a load runs (`warehouse.duckdb.threads`: the stream
/// stages the next group on the other core meanwhile), DuckDB's own default (one per core) for
/// model refreshes and queries. `now` is what is set; it changes only under the connection's
/// lock.
#[derive(Debug)]
struct Threads {
    load: u32,
    other: u32,
    now: std::sync::atomic::AtomicU32,
}

/// What a call on the connection does, for its thread count.
#[derive(Clone, Copy)]
enum Work {
    Load,
    Other,
}

impl Threads {
    /// DuckDB's default everywhere (readers, in-memory warehouses).
    fn default_of(conn: &Connection, load: Option<u32>) -> Result<Threads> {
        let other: i64 = conn
            .query_row("SELECT current_setting('threads')", [], |r| r.get(0))
            .map_err(db)?;
        let other = u32::try_from(other).unwrap_or(1).max(1);
        Ok(Threads {
            load: load.unwrap_or(other).max(1),
            other,
            now: std::sync::atomic::AtomicU32::new(other),
        })
    }

    fn set(&self, conn: &Connection, work: Work) -> Result<()> {
        use std::sync::atomic::Ordering;
        let want = match work {
            Work::Load => self.load,
            Work::Other => self.other,
        };
        if self.now.load(Ordering::Relaxed) != want {
            conn.execute_batch(&format!("SET threads = {want}"))
                .map_err(db)?;
            self.now.store(want, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl std::fmt::Debug for DuckWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckWarehouse").finish_non_exhaustive()
    }
}

fn db(e: duckdb::Error) -> Error {
    Error::Warehouse(e.to_string())
}

fn value_text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Boolean(b) => Some(b.to_string()),
        Value::TinyInt(x) => Some(x.to_string()),
        Value::SmallInt(x) => Some(x.to_string()),
        Value::Int(x) => Some(x.to_string()),
        Value::BigInt(x) => Some(x.to_string()),
        Value::HugeInt(x) => Some(x.to_string()),
        Value::UTinyInt(x) => Some(x.to_string()),
        Value::USmallInt(x) => Some(x.to_string()),
        Value::UInt(x) => Some(x.to_string()),
        Value::UBigInt(x) => Some(x.to_string()),
        Value::Float(x) => Some(x.to_string()),
        Value::Double(x) => Some(x.to_string()),
        Value::Text(s) => Some(s),
        Value::Timestamp(unit, v) => {
            let micros = match unit {
                TimeUnit::Second => v.saturating_mul(1_000_000),
                TimeUnit::Millisecond => v.saturating_mul(1_000),
                TimeUnit::Microsecond => v,
                TimeUnit::Nanosecond => v / 1_000,
            };
            chrono::DateTime::from_timestamp_micros(micros)
                .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
        }
        Value::Date32(days) => chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
            .map(|d| d.format("%Y-%m-%d").to_string()),
        // Queries cast anything else to VARCHAR; this is a readable fallback.
        other => Some(format!("{other:?}")),
    }
}

impl DuckWarehouse {
    /// Open (or create) the file and its schemas. `read_only` never writes or locks for write;
    /// a writer runs DuckDB on `threads` worker threads (`warehouse.duckdb.threads`).
    pub async fn open(path: &Path, read_only: bool, threads: u32) -> Result<DuckWarehouse> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let open = || {
                if read_only {
                    let cfg = duckdb::Config::default().access_mode(AccessMode::ReadOnly)?;
                    Connection::open_with_flags(&path, cfg)
                } else {
                    Connection::open(&path)
                }
            };
            // DuckDB locks the file per process: a short-lived reader (`status` with no
            // instance running) may hold it for a moment, so a lock conflict is retried.
            let wait = if read_only {
                READER_LOCK_WAIT
            } else {
                LOCK_WAIT
            };
            let deadline = std::time::Instant::now() + wait;
            let conn = loop {
                match open() {
                    Ok(c) => break c,
                    Err(e)
                        if e.to_string().contains("lock")
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    Err(e) => {
                        return Err(Error::Warehouse(format!(
                            "cannot open {}: {e}",
                            path.display()
                        )))
                    }
                }
            };
            let threads = Threads::default_of(&conn, (!read_only).then_some(threads))?;
            if !read_only {
                conn.execute_batch(&schema::ddl(Dialect::DuckDb).join(";\n"))
                    .map_err(db)?;
            }
            Ok(DuckWarehouse {
                conn: Arc::new(Mutex::new(conn)),
                threads: Arc::new(threads),
            })
        })
        .await
        .map_err(|e| Error::Other(format!("warehouse task failed: {e}")))?
    }

    /// An in-memory warehouse (tests and benchmarks).
    pub fn in_memory() -> Result<DuckWarehouse> {
        let conn = Connection::open_in_memory().map_err(db)?;
        conn.execute_batch(&schema::ddl(Dialect::DuckDb).join(";\n"))
            .map_err(db)?;
        let threads = Threads::default_of(&conn, None)?;
        Ok(DuckWarehouse {
            conn: Arc::new(Mutex::new(conn)),
            threads: Arc::new(threads),
        })
    }

    /// Run `f` with the connection on the blocking pool, on the threads `work` runs on.
    async fn with<T: Send + 'static>(
        &self,
        work: Work,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (conn, threads) = (self.conn.clone(), self.threads.clone());
        tokio::task::spawn_blocking(move || {
            // A panic mid-statement poisons the lock; DuckDB rolled the transaction back.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            threads.set(&guard, work)?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Other(format!("warehouse task failed: {e}")))?
    }

    /// The load, synchronously: ledger check, scratch table, MERGE, dirty days, ledger row
    /// (and a stream commit, even when the file was loaded before), all in one transaction.
    pub fn load_blocking(conn: &mut Connection, file: &StagedFile) -> Result<LoadOutcome> {
        DuckWarehouse::load_group_blocking(conn, std::slice::from_ref(file))?
            .pop()
            .ok_or_else(|| Error::Other(format!("{}: no load outcome", file.key)))
    }

    /// Several files of one entity in one transaction: one scratch table holds every file's
    /// rows (ordinals offset by the file's place, so "first copy" and "last copy" keep their
    /// meaning across files), one MERGE, then the ledger rows and stream commits of all.
    pub fn load_group_blocking(
        conn: &mut Connection,
        files: &[StagedFile],
    ) -> Result<Vec<LoadOutcome>> {
        let parsed = files
            .iter()
            .map(StagedFile::columns)
            .collect::<Result<Vec<_>>>()?;
        let Some((spec, _)) = parsed.first() else {
            return Ok(Vec::new());
        };
        if let Some(f) = files.iter().find(|f| f.entity != spec.entity) {
            return Err(Error::Invalid(format!(
                "{}: a group load takes one entity ({}), not {}",
                f.key, spec.entity, f.entity
            )));
        }
        // Events are first inserted as new (one index probe per row); a group that meets an id
        // already in the table (a resend past the dedup window) is loaded again, exactly.
        match DuckWarehouse::group_tx(conn, files, &parsed, spec, true) {
            Err(Error::Warehouse(m))
                if spec.entity == schema::EVENTS.entity && schema::is_key_violation(&m) =>
            {
                tracing::debug!(
                    files = files.len(),
                    "an event id of the group is in the table already: loading it again with a \
                     conflict clause"
                );
                DuckWarehouse::group_tx(conn, files, &parsed, spec, false)
            }
            other => other,
        }
    }

    /// One attempt at a group's transaction (see `load_group_blocking`); `new_keys`: take the
    /// events' ids to be new and append them straight into their table, the first copy of an
    /// id repeated within the group only (the primary key refuses one already there).
    fn group_tx(
        conn: &mut Connection,
        files: &[StagedFile],
        parsed: &[(schema::TableSpec, Arc<RecordBatch>)],
        spec: &schema::TableSpec,
        new_keys: bool,
    ) -> Result<Vec<LoadOutcome>> {
        let tx = conn.transaction().map_err(db)?;
        let hashes: Vec<String> = files
            .iter()
            .map(|f| schema::literal(&super::Cell::Text(f.sha256.clone())))
            .collect();
        let mut seen: std::collections::HashSet<String> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT sha256 FROM ops.ledger WHERE sha256 IN ({})",
                    hashes.join(", ")
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)?;
            rows.collect::<std::result::Result<_, _>>().map_err(db)?
        };
        // A second copy of the same bytes in the group is skipped as a later load would be.
        let load: Vec<bool> = files
            .iter()
            .map(|f| seen.insert(f.sha256.clone()))
            .collect();
        let outcomes: Vec<LoadOutcome> = files
            .iter()
            .zip(parsed)
            .zip(&load)
            .map(|((f, (_, cols)), &l)| f.outcome(if l { cols.num_rows() } else { 0 }, !l))
            .collect();
        let entries: Vec<schema::LedgerEntry<'_>> = files
            .iter()
            .zip(parsed)
            .zip(&load)
            .filter(|(_, &l)| l)
            .map(|((f, (_, cols)), _)| f.ledger_entry(cols.num_rows()))
            .collect();
        let t0 = std::time::Instant::now();
        let mut phases = [0u128; 3];
        if let Some(first) = entries.first() {
            let loaded = || {
                parsed
                    .iter()
                    .zip(&load)
                    .enumerate()
                    .filter(|(_, (_, &l))| l)
                    .map(|(i, ((_, cols), _))| (i, cols.as_ref()))
            };
            let keys = match (
                columns::keys_distinct(spec, loaded().map(|(_, c)| c)),
                new_keys,
            ) {
                (false, _) => schema::Keys::MayRepeat,
                (true, false) => schema::Keys::Distinct,
                (true, true) => schema::Keys::DistinctNew,
            };
            // Only where every column is read from the file (no derived or first-loaded value
            // the scratch path would fill in).
            let events = new_keys
                && spec.entity == schema::EVENTS.entity
                && spec.fields().count() == spec.columns.len();
            // An id twice in the group (a resend past the dedup window, both copies here): its
            // first copy is what the exact path would keep, so the group keeps only first
            // copies and still goes in directly.
            let firsts = match (events, keys) {
                (true, schema::Keys::DistinctNew) => Some(
                    loaded()
                        .map(|(_, c)| c.clone())
                        .collect::<Vec<RecordBatch>>(),
                ),
                (true, schema::Keys::MayRepeat) if spec.key == ["event_id"] => {
                    let at = spec
                        .fields()
                        .position(|c| c.name == "event_id")
                        .ok_or_else(|| Error::Invalid("events have no event_id".into()))?;
                    let all: Vec<&RecordBatch> = loaded().map(|(_, c)| c).collect();
                    columns::first_copies(&all, at)?
                }
                _ => None,
            };
            if let Some(firsts) = firsts {
                // New events need no scratch table: straight into the table (the primary key
                // refuses one already there), then their days are marked dirty.
                append_events(&tx, spec, firsts.iter())?;
                phases[0] = t0.elapsed().as_millis();
                let at = spec
                    .fields()
                    .position(|c| c.name == "event_time")
                    .ok_or_else(|| Error::Invalid("events have no event_time".into()))?;
                let days = columns::days_of(firsts.iter(), at)?;
                run_all(
                    &tx,
                    &schema::mark_days_dirty(&days)
                        .into_iter()
                        .collect::<Vec<_>>(),
                )?;
                phases[1] = t0.elapsed().as_millis();
                return DuckWarehouse::finish_group(tx, files, entries, outcomes, t0, phases);
            }
            let (before, after) = schema::rows_sql(Dialect::DuckDb, spec, first.loaded_at, keys);
            run_all(&tx, &before)?;
            let table = spec.scratch(Dialect::DuckDb);
            let name = table.trim_start_matches("temp.main.");
            let mut app = tx
                .appender_to_catalog_and_db(name, "temp", "main")
                .map_err(db)?;
            // Whole columns go to DuckDB's appender: one call per column chunk, not per value.
            // The file's place is in the high bits of the ordinal, its line in the low.
            for (i, cols) in loaded() {
                app.append_record_batch(columns::with_place(cols, i)?)
                    .map_err(db)?;
            }
            app.flush().map_err(db)?;
            drop(app);
            phases[0] = t0.elapsed().as_millis();
            run_all(&tx, &after)?;
            phases[1] = t0.elapsed().as_millis();
        }
        DuckWarehouse::finish_group(tx, files, entries, outcomes, t0, phases)
    }

    /// A group's ledger rows and stream commits, then the commit.
    fn finish_group(
        tx: duckdb::Transaction<'_>,
        files: &[StagedFile],
        entries: Vec<schema::LedgerEntry<'_>>,
        outcomes: Vec<LoadOutcome>,
        t0: std::time::Instant,
        mut phases: [u128; 3],
    ) -> Result<Vec<LoadOutcome>> {
        let commits: Vec<&crate::ledger::StreamCommit> =
            files.iter().filter_map(|f| f.checkpoint.as_ref()).collect();
        run_all(&tx, &schema::group_commit_sql(&entries, &commits))?;
        phases[2] = t0.elapsed().as_millis();
        tx.commit().map_err(db)?;
        tracing::debug!(
            files = files.len(),
            append_ms = phases[0] as u64,
            merge_ms = (phases[1].saturating_sub(phases[0])) as u64,
            ledger_ms = (phases[2].saturating_sub(phases[1])) as u64,
            commit_ms = (t0.elapsed().as_millis().saturating_sub(phases[2])) as u64,
            "group load"
        );
        Ok(outcomes)
    }
}

/// Append event columns straight into `staging.events` (every column by name, so a table whose
/// columns a migration reordered takes them too); the ordinal column stays behind.
fn append_events<'b>(
    tx: &duckdb::Transaction<'_>,
    spec: &schema::TableSpec,
    batches: impl Iterator<Item = &'b RecordBatch>,
) -> Result<()> {
    let mut names: Vec<&str> = spec.fields().map(|c| c.name).collect();
    names.push(schema::SOURCE_KEY);
    let table = spec.table();
    let (schema_name, table_name) = table.split_once('.').unwrap_or(("main", &table));
    let mut app = tx
        .appender_with_columns_to_db(table_name, schema_name, &names)
        .map_err(db)?;
    let keep: Vec<usize> = (0..names.len()).collect();
    for b in batches {
        let b = b
            .project(&keep)
            .map_err(|e| Error::Warehouse(format!("event columns: {e}")))?;
        app.append_record_batch(b).map_err(db)?;
    }
    app.flush().map_err(db)
}

fn run_all(tx: &duckdb::Transaction<'_>, statements: &[String]) -> Result<()> {
    for sql in statements {
        tx.execute_batch(sql)
            .map_err(|e| Error::Warehouse(format!("{e} in: {sql}")))?;
    }
    Ok(())
}

impl Warehouse for DuckWarehouse {
    fn backend(&self) -> &'static str {
        "duckdb"
    }

    fn dialect(&self) -> Dialect {
        Dialect::DuckDb
    }

    fn load<'a>(&'a self, file: &'a StagedFile) -> BoxFuture<'a, Result<LoadOutcome>> {
        let file = file.clone();
        Box::pin(self.with(Work::Load, move |conn| {
            DuckWarehouse::load_blocking(conn, &file)
        }))
    }

    /// Stream segments are grouped: a transaction's statements and commit cost more than
    /// thousands of rows.
    fn files_per_load(&self) -> usize {
        usize::MAX
    }

    fn load_group(&self, files: Vec<StagedFile>) -> BoxFuture<'_, Result<Vec<LoadOutcome>>> {
        Box::pin(self.with(Work::Load, move |conn| {
            DuckWarehouse::load_group_blocking(conn, &files)
        }))
    }

    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.with(Work::Other, move |conn| {
            let tx = conn.transaction().map_err(db)?;
            for s in &statements {
                tx.execute_batch(s)
                    .map_err(|e| Error::Warehouse(format!("{e} in: {s}")))?;
            }
            tx.commit().map_err(db)
        }))
    }

    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<TextRows>> {
        let sql = sql.to_string();
        Box::pin(self.with(Work::Other, move |conn| {
            let mut stmt = conn.prepare(&sql).map_err(db)?;
            let mut rows = stmt.query([]).map_err(db)?;
            let mut out = Vec::new();
            let n = rows.as_ref().map_or(0, |s| s.column_count());
            while let Some(row) = rows.next().map_err(db)? {
                let mut cells = Vec::with_capacity(n);
                for i in 0..n {
                    cells.push(value_text(row.get::<_, Value>(i).map_err(db)?));
                }
                out.push(cells);
            }
            Ok(out)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::{metrics, refresh_models, table_rows};

    fn file(entity: &str, key: &str, body: &str) -> StagedFile {
        StagedFile {
            key: key.into(),
            entity: entity.into(),
            sha256: crate::store::sha256_hex(body.as_bytes()),
            body: bytes::Bytes::from(body.to_string()),
            source: "test".into(),
            checkpoint: None,
            columns: None,
        }
    }

    const ORDERS: &str = concat!(
        r#"{"order_id":1,"user_id":1,"order_time":"2026-03-01T10:00:00Z","order_status":"placed","order_total_cents":1000,"item_count":1}"#,
        "\n",
        r#"{"order_id":2,"user_id":2,"order_time":"2026-03-02T10:00:00Z","order_status":"empty","order_total_cents":0,"item_count":0}"#,
        "\n",
        // A duplicate key within the file: the last copy wins.
        r#"{"order_id":1,"user_id":1,"order_time":"2026-03-01T10:00:00Z","order_status":"placed","order_total_cents":1500,"item_count":1}"#,
        "\n",
    );

    #[tokio::test]
    async fn a_load_merges_dedups_and_is_skipped_the_second_time() {
        let wh = DuckWarehouse::in_memory().unwrap();
        let lake = tempfile::tempdir().unwrap();
        let lake = crate::store::LocalStore::open(lake.path()).unwrap();
        let f = file("orders", "staging/orders/a.ndjson", ORDERS);
        let first = wh.load(&f).await.unwrap();
        assert_eq!((first.rows, first.skipped), (3, false));
        assert_eq!(table_rows(&wh, "staging.orders").await.unwrap(), 2);
        let again = wh.load(&f).await.unwrap();
        assert!(again.skipped);
        assert_eq!(table_rows(&wh, "ops.ledger").await.unwrap(), 1);

        let r = refresh_models(&wh, &lake, 1).await.unwrap();
        assert_eq!(r.dirty_days, 2);
        let m = metrics(&wh).await.unwrap();
        assert_eq!((m.revenue_cents, m.orders), (1500, 1), "{m:?}");
        assert_eq!(m.avg_order_value_cents, Some(1500.0));
        // Nothing dirty: a second refresh recomputes nothing.
        assert_eq!(
            refresh_models(&wh, &lake, 1).await.unwrap().recomputed_days,
            0
        );
    }

    #[test]
    fn keys_are_distinct_unless_one_repeats() {
        let spec = schema::spec("orders").unwrap();
        let cols = |spec: &schema::TableSpec, body: &str| {
            let rows = crate::warehouse::parse_rows(spec, "k", body.as_bytes()).unwrap();
            columns::of_cells(spec, &rows).unwrap()
        };
        let keys_distinct = |spec: &schema::TableSpec, body: &str| {
            columns::keys_distinct(spec, [&cols(spec, body)].into_iter())
        };
        assert!(!keys_distinct(&spec, ORDERS), "order 1 twice");
        let first_two: String = ORDERS.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert!(keys_distinct(&spec, &first_two));
        // A composite key: (order_id, line_no).
        let items = schema::spec("order_items").unwrap();
        let line = |o: i64, n: i64| {
            format!(
                r#"{{"order_id":{o},"line_no":{n},"product_id":3,"quantity":1,"unit_price_cents":5,"line_total_cents":5}}"#
            )
        };
        let body = [line(1, 1), line(1, 2), line(2, 1)].join("\n");
        assert!(keys_distinct(&items, &body));
        let body = [line(1, 1), line(2, 1), line(1, 1)].join("\n");
        assert!(!keys_distinct(&items, &body));
    }

    fn events_body(ids: &[(&str, i64)]) -> String {
        let mut body = Vec::new();
        for (id, user) in ids {
            let t = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
            let e = crate::domain::Event {
                event_id: (*id).into(),
                user_id: *user,
                product_id: 2,
                event_type: crate::domain::EventType::ProductView,
                event_time: t,
                ingestion_time: Some(t),
                session_id: "s".into(),
                producer_time: None,
            };
            crate::stream::consumer::write_event(&e, &mut body);
        }
        String::from_utf8(body).unwrap()
    }

    /// Events go in without a conflict clause first; an id already in the table (a resend past
    /// the dedup window) makes DuckDB refuse the insert, and the group loads again exactly. This
    /// also pins DuckDB's primary-key message (`schema::is_key_violation`): if an upgrade changes
    /// it, this fails here instead of every such load in production.
    #[tokio::test]
    async fn an_event_id_already_loaded_sends_the_group_down_the_exact_path() {
        let wh = DuckWarehouse::in_memory().unwrap();
        let a = file(
            "events",
            "staging/events/a.ndjson",
            &events_body(&[("e1", 1), ("e2", 1)]),
        );
        let b = file(
            "events",
            "staging/events/b.ndjson",
            &events_body(&[("e2", 9), ("e3", 9)]),
        );
        wh.load(&a).await.unwrap();
        let err = {
            let mut conn = wh.conn.lock().unwrap();
            let parsed = vec![b.columns().unwrap()];
            DuckWarehouse::group_tx(
                &mut conn,
                std::slice::from_ref(&b),
                &parsed,
                &parsed[0].0,
                true,
            )
            .unwrap_err()
        };
        assert!(schema::is_key_violation(&err.to_string()), "{err}");
        let out = wh.load_group(vec![b.clone()]).await.unwrap();
        assert_eq!((out[0].rows, out[0].skipped), (2, false));
        let rows = wh
            .query("SELECT event_id, user_id FROM staging.events ORDER BY event_id")
            .await
            .unwrap();
        let got: Vec<(String, String)> = rows
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        // The first copy of e2 stays; e3 is in; both files are in the ledger.
        assert_eq!(
            got,
            [("e1", "1"), ("e2", "1"), ("e3", "9")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(table_rows(&wh, "ops.ledger").await.unwrap(), 2);
    }

    /// An id twice in one group (both copies of a resend past the dedup window): the group still
    /// goes in directly, as its first copies. Shown by a group whose repeat sits beside an id
    /// already in the table: the direct attempt is refused by the key (the scratch path, which
    /// such groups took before, would have taken it), then the exact path keeps first copies.
    #[tokio::test]
    async fn an_id_twice_in_a_group_goes_in_directly_as_its_first_copy() {
        let wh = DuckWarehouse::in_memory().unwrap();
        let body = |ids: &[(&str, i64)]| events_body(ids);
        wh.load(&file(
            "events",
            "staging/events/a.ndjson",
            &body(&[("e1", 1), ("e2", 1)]),
        ))
        .await
        .unwrap();
        let direct = |files: Vec<StagedFile>| {
            let mut conn = wh.conn.lock().unwrap();
            let parsed: Vec<_> = files.iter().map(|f| f.columns().unwrap()).collect();
            DuckWarehouse::group_tx(&mut conn, &files, &parsed, &parsed[0].0, true)
        };
        let b = file(
            "events",
            "staging/events/b.ndjson",
            &body(&[("e3", 9), ("e4", 9)]),
        );
        let c = file(
            "events",
            "staging/events/c.ndjson",
            &body(&[("e3", 7), ("e5", 7)]),
        );
        direct(vec![b, c]).unwrap();
        let d = file(
            "events",
            "staging/events/d.ndjson",
            &body(&[("e2", 5), ("e6", 5)]),
        );
        let e = file("events", "staging/events/e.ndjson", &body(&[("e6", 6)]));
        let err = direct(vec![d.clone(), e.clone()]).unwrap_err();
        assert!(schema::is_key_violation(&err.to_string()), "{err}");
        wh.load_group(vec![d, e]).await.unwrap();
        let rows = wh
            .query("SELECT event_id, user_id FROM staging.events ORDER BY event_id")
            .await
            .unwrap();
        let got: Vec<String> = rows
            .into_iter()
            .map(|r| format!("{}:{}", r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        assert_eq!(got, ["e1:1", "e2:1", "e3:9", "e4:9", "e5:7", "e6:5"]);
        assert_eq!(table_rows(&wh, "ops.ledger").await.unwrap(), 5);
    }

    #[tokio::test]
    async fn a_corrupt_staging_line_fails_the_load_and_leaves_nothing() {
        let wh = DuckWarehouse::in_memory().unwrap();
        let body = format!("{ORDERS}{{\"order_id\":\"x\"}}\n");
        let err = wh
            .load(&file("orders", "staging/orders/b.ndjson", &body))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
        assert_eq!(table_rows(&wh, "staging.orders").await.unwrap(), 0);
        assert_eq!(table_rows(&wh, "ops.ledger").await.unwrap(), 0);
    }
}
