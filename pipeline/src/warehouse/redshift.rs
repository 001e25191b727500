//! Redshift through the Data API. Anything that must be one transaction goes in one
//! BatchExecuteStatement (the Data API runs a batch as a single transaction); single queries use
//! ExecuteStatement. Both are asynchronous: DescribeStatement is polled with a capped backoff
//! until FINISHED, and FAILED or ABORTED come back with Redshift's own error text. A statement
//! running past `statement_timeout_secs` is cancelled. Results are read with GetStatementResult,
//! page by page.
//!
//! Loads fill the scratch table with multi-row INSERTs (the statements the PostgreSQL tests run)
//! and then run the MERGE with the ledger row and checkpoint in one batch. A load of more
//! statements than one batch takes fills its temporary table over several calls in one Data API
//! session (`SessionKeepAliveSeconds`, then `SessionId`: temporary tables live as long as the
//! session, <https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html>), and its last
//! call is still the one transaction that changes anything lasting.
//!
//! In a fleet (shard leases), every transaction begins with `LOCK` of the fleet's lock table and
//! its scratch fills run in calls before it, so the instances' loads fill side by side and
//! commit one at a time; the CURATED publication takes a hold with an expiry
//! (`fleet_lock`).

use std::time::{Duration, Instant};

use aws_sdk_redshiftdata::error::ProvideErrorMetadata;
use aws_sdk_redshiftdata::types::{Field, StatusString};
use aws_sdk_redshiftdata::Client;
use futures::future::BoxFuture;

use super::fleet_lock::{self, CURATED};
use super::schema::{self, Dialect};
use super::{LoadOutcome, StagedFile, TextRows, Warehouse};
use crate::config::RedshiftConfig;
use crate::error::{Error, Result};

/// The Data API's limit on statements per BatchExecuteStatement.
const MAX_BATCH: usize = 40;
/// Rows per INSERT (each INSERT is also kept under the Data API's 100 KB by its bytes).
const ROWS_PER_INSERT: usize = 100;
/// How long an idle Data API session is kept: long enough to reuse it from one load to the
/// next, short enough that a stopped process leaves none open for long (the Data API allows
/// 500 sessions per cluster or workgroup and at most 24 hours).
const SESSION_KEEP_ALIVE_SECS: i32 = 600;

/// A Data API session this warehouse reuses, and when it was started and last used: it closes
/// after `SESSION_KEEP_ALIVE_SECS` idle and after 24 hours whatever happens.
#[derive(Debug)]
struct Session {
    id: String,
    started: Instant,
    used: Instant,
}

impl Session {
    /// Close enough to either limit that a new one is safer than a failed call.
    fn stale(&self) -> bool {
        self.used.elapsed() >= Duration::from_secs(SESSION_KEEP_ALIVE_SECS as u64 - 60)
            || self.started.elapsed() >= Duration::from_secs(23 * 3600)
    }
}

/// The Data API calls of a load or a long transaction: the `fill` statements first (they only
/// touch the session's temporary tables), then the whole of `tx` in the last call, which is the
/// one transaction that changes anything lasting. No call has more than `MAX_BATCH` statements.
pub fn session_calls(fill: Vec<String>, tx: Vec<String>) -> Result<Vec<Vec<String>>> {
    if tx.len() > MAX_BATCH {
        return Err(Error::Warehouse(format!(
            "a transaction of {} statements does not fit one Data API batch ({MAX_BATCH})",
            tx.len()
        )));
    }
    if fill.len() + tx.len() <= MAX_BATCH {
        let mut one = fill;
        one.extend(tx);
        return Ok(vec![one]);
    }
    // The last call takes the transaction and as many of the last fills as fit beside it.
    let split = fill.len() - (MAX_BATCH - tx.len()).min(fill.len());
    let mut fill = fill;
    let mut last = fill.split_off(split);
    last.extend(tx);
    let mut calls: Vec<Vec<String>> = fill.chunks(MAX_BATCH).map(<[String]>::to_vec).collect();
    calls.push(last);
    Ok(calls)
}

/// The calls of a fleet's load: the fills alone (they touch only the session's temporary tables),
/// then the transaction, `LOCK` first so its snapshot follows the wait (`fleet_lock`).
pub fn fleet_calls(fill: Vec<String>, tx: Vec<String>) -> Result<Vec<Vec<String>>> {
    let mut last = vec![fleet_lock::serialise()];
    last.extend(tx);
    if last.len() > MAX_BATCH {
        return Err(Error::Warehouse(format!(
            "a fleet transaction of {} statements does not fit one Data API batch ({MAX_BATCH})",
            last.len()
        )));
    }
    let mut calls: Vec<Vec<String>> = fill.chunks(MAX_BATCH).map(<[String]>::to_vec).collect();
    calls.push(last);
    Ok(calls)
}

/// How a call in a session went wrong.
enum CallError {
    /// The service refused the request: nothing ran.
    NotSent(Error),
    /// It ran and FAILED or was ABORTED: its batch rolled back, the session is usable.
    RolledBack(Error),
    /// Its end is unknown (a poll failed, the timeout came): it may still be running.
    Unknown(Error),
}

/// This instance in a fleet: who it is, how long its holds last, and the CURATED hold while it
/// has one.
#[derive(Debug)]
struct Fleet {
    worker: String,
    hold_for: Duration,
    hold: tokio::sync::Mutex<Option<Hold>>,
}

/// When a hold was last taken or renewed, measured before the request (so the local view of its
/// expiry is early), by the monotonic clock and by the wall clock (which also runs while the
/// host is suspended).
type Renewed = std::sync::Arc<std::sync::Mutex<(Instant, chrono::DateTime<chrono::Utc>)>>;

/// A hold of this instance: its holder string (fresh per take), its last renewal, and the task
/// that renews it (stopped when the hold is let go or dropped).
#[derive(Debug)]
struct Hold {
    holder: String,
    renewed: Renewed,
    beat: tokio::task::AbortHandle,
}

impl Hold {
    /// How long the hold is surely this instance's still (zero: no longer): its length less a
    /// renewal period, from the last renewal.
    fn left(&self, hold_for: Duration) -> Duration {
        let (since, since_wall) = *self
            .renewed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let wall = (chrono::Utc::now() - since_wall)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let age = since.elapsed().max(wall);
        hold_for.saturating_sub(fleet_lock::renew_every(hold_for) + age)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

/// Where COPY reads STAGING objects: the S3 store's bucket and prefix, and the role to assume.
#[derive(Clone)]
pub struct CopyFrom {
    pub store: std::sync::Arc<dyn crate::store::ObjectStore>,
    pub bucket: String,
    pub prefix: String,
    pub iam_role: String,
}

impl std::fmt::Debug for CopyFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyFrom")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl CopyFrom {
    fn uri(&self, key: &str) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}/{key}", self.bucket)
        } else {
            format!("s3://{}/{prefix}/{key}", self.bucket)
        }
    }
}

#[derive(Debug, Clone)]
enum Target {
    Workgroup(String),
    Cluster(String),
}

/// Where and how statements run.
#[derive(Debug, Clone)]
pub struct RedshiftWarehouse {
    client: Client,
    target: Target,
    database: String,
    secret_arn: Option<String>,
    db_user: Option<String>,
    statement_timeout: Duration,
    poll_first: Duration,
    poll_max: Duration,
    copy: Option<CopyFrom>,
    /// The Data API session that multi-call loads reuse (one at a time: a session runs one
    /// statement at a time, and its temporary tables are the loads' scratch).
    session: std::sync::Arc<tokio::sync::Mutex<Option<Session>>>,
    /// One of a fleet sharing the stream by leases.
    fleet: Option<std::sync::Arc<Fleet>>,
}

fn aws(operation: &'static str, e: impl ProvideErrorMetadata + std::fmt::Display) -> Error {
    Error::Aws {
        service: "redshift-data",
        operation,
        message: e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    }
}

/// Database, credentials and cluster or workgroup on a request builder (the two statement
/// builders are different types with the same setters).
macro_rules! addressed {
    ($wh:expr, $req:expr) => {{
        let req = $req
            .database(&$wh.database)
            .set_secret_arn($wh.secret_arn.clone())
            .set_db_user($wh.db_user.clone());
        match &$wh.target {
            Target::Workgroup(w) => req.workgroup_name(w),
            Target::Cluster(c) => req.cluster_identifier(c),
        }
    }};
}

impl RedshiftWarehouse {
    pub async fn connect(cfg: &RedshiftConfig) -> Result<RedshiftWarehouse> {
        let sdk = crate::aws::sdk_config(cfg.region.as_deref(), cfg.endpoint_url.as_deref()).await;
        RedshiftWarehouse::from_client(Client::new(&sdk), cfg)
    }

    pub fn from_client(client: Client, cfg: &RedshiftConfig) -> Result<RedshiftWarehouse> {
        let target = match (&cfg.workgroup_name, &cfg.cluster_identifier) {
            (Some(w), None) => Target::Workgroup(w.clone()),
            (None, Some(c)) => Target::Cluster(c.clone()),
            _ => {
                return Err(Error::Config {
                    path: "warehouse.redshift".into(),
                    message: "set exactly one of workgroup_name (Serverless) and \
                              cluster_identifier (provisioned)"
                        .into(),
                })
            }
        };
        Ok(RedshiftWarehouse {
            client,
            target,
            database: cfg.database.clone(),
            secret_arn: cfg.secret_arn.clone(),
            db_user: cfg.db_user.clone(),
            statement_timeout: Duration::from_secs(cfg.statement_timeout_secs.max(1)),
            poll_first: Duration::from_millis(50),
            poll_max: Duration::from_millis(cfg.poll_max_ms.max(1)),
            copy: None,
            session: Default::default(),
            fleet: None,
        })
    }

    /// Load by COPY from S3 instead of INSERTs.
    pub fn with_copy(mut self, copy: CopyFrom) -> RedshiftWarehouse {
        self.copy = Some(copy);
        self
    }

    /// One of a fleet (`worker`: its lease owner name): transactions serialised, CURATED
    /// refreshed under a hold of `hold_for` (its shard leases' length).
    pub fn in_fleet(mut self, worker: &str, hold_for: Duration) -> RedshiftWarehouse {
        self.fleet = Some(std::sync::Arc::new(Fleet {
            worker: worker.to_string(),
            hold_for,
            hold: Default::default(),
        }));
        self
    }

    /// Create the tables (a fleet's lock table first, then the rest under its lock: instances
    /// that start together do not race on a `CREATE`).
    pub async fn create_tables(&self) -> Result<()> {
        if self.fleet.is_none() {
            self.batch(schema::ddl(Dialect::Redshift)).await?;
            return Ok(());
        }
        // Two first starts at once can both miss the table and one `CREATE` fail: once more.
        if self.batch(fleet_lock::ddl()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.batch(fleet_lock::ddl()).await?;
        }
        self.execute_tx(schema::ddl(Dialect::Redshift)).await
    }

    /// Take the CURATED hold, unless another live instance has it (false: not waited for),
    /// and start renewing it.
    async fn take_hold(&self, fleet: &Fleet) -> Result<bool> {
        let holder = format!("{}/{:016x}", fleet.worker, rand::random::<u64>());
        let (since, since_wall) = (Instant::now(), chrono::Utc::now());
        self.batch(fleet_lock::take_sql(
            CURATED,
            &holder,
            since_wall,
            fleet.hold_for,
        ))
        .await?;
        let rows = match self.query(&fleet_lock::holder_sql(CURATED)).await {
            Ok(rows) => rows,
            Err(e) => {
                // Perhaps taken, unknown to us: let it go rather than leave it to its expiry.
                let _ = self.batch(fleet_lock::release_sql(CURATED, &holder)).await;
                return Err(e);
            }
        };
        let now = rows.first().and_then(|r| r.first().cloned().flatten());
        if now.as_deref() != Some(holder.as_str()) {
            tracing::debug!(holder = ?now, "the CURATED refresh is another instance's now");
            return Ok(false);
        }
        let renewed: Renewed = std::sync::Arc::new(std::sync::Mutex::new((since, since_wall)));
        // Renewed apart from the work, so no step of it has to be short; a renewal refused (the
        // hold taken over) or failing leaves `left` to run out, and the work stops.
        let (wh, name, last, every) = (
            RedshiftWarehouse {
                fleet: None,
                ..self.clone()
            },
            holder.clone(),
            renewed.clone(),
            fleet_lock::renew_every(fleet.hold_for),
        );
        let hold_for = fleet.hold_for;
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let (since, since_wall) = (Instant::now(), chrono::Utc::now());
                match wh
                    .batch(fleet_lock::renew_sql(CURATED, &name, since_wall, hold_for))
                    .await
                {
                    Ok(_) => {
                        *last
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            (since, since_wall)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, holder = %name, "CURATED hold not renewed")
                    }
                }
            }
        })
        .abort_handle();
        *fleet.hold.lock().await = Some(Hold {
            holder,
            renewed,
            beat,
        });
        Ok(true)
    }

    /// Run statements as one transaction; returns the statement id once it has FINISHED.
    pub async fn batch(&self, sqls: Vec<String>) -> Result<String> {
        let req = self.client.batch_execute_statement().set_sqls(Some(sqls));
        let out = addressed!(self, req)
            .send()
            .await
            .map_err(|e| aws("BatchExecuteStatement", e))?;
        let id = out.id().unwrap_or_default().to_string();
        self.wait(&id).await?;
        Ok(id)
    }

    /// Run `calls` (from `session_calls` or `fleet_calls`): one call as a plain batch; more in
    /// this warehouse's session, started by the first call that needs one. A call that FAILED
    /// rolled back whole and keeps the session (the next load recreates its scratch); any other
    /// failure drops it (it may be closed, or still running a statement), and the next load
    /// starts a fresh one: a member refused again and again never piles up open sessions.
    pub async fn run_calls(&self, calls: Vec<Vec<String>>) -> Result<()> {
        if calls.len() <= 1 {
            for sqls in calls {
                self.batch(sqls).await?;
            }
            return Ok(());
        }
        let mut session = self.session.lock().await;
        if session.as_ref().is_some_and(Session::stale) {
            *session = None;
        }
        let reused = session.is_some();
        for (i, sqls) in calls.into_iter().enumerate() {
            let mut result = self.session_batch(&mut session, sqls.clone()).await;
            if let (0, true, Err(CallError::NotSent(_))) = (i, reused, &result) {
                // The service closed the reused session and refused the call unrun: send it
                // again on a new one.
                *session = None;
                result = self.session_batch(&mut session, sqls).await;
            }
            match result {
                Ok(()) => {}
                Err(CallError::RolledBack(e)) => return Err(e),
                Err(CallError::NotSent(e) | CallError::Unknown(e)) => {
                    *session = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn session_batch(
        &self,
        session: &mut Option<Session>,
        sqls: Vec<String>,
    ) -> std::result::Result<(), CallError> {
        let req = self.client.batch_execute_statement().set_sqls(Some(sqls));
        // In a session the statement goes by its id alone, as the documented example
        // (`--session-id`) does; the connection settings are the session's.
        let req = match session.as_ref() {
            Some(s) => req.session_id(&s.id),
            None => addressed!(
                self,
                req.session_keep_alive_seconds(SESSION_KEEP_ALIVE_SECS)
            ),
        };
        let out = req
            .send()
            .await
            .map_err(|e| CallError::NotSent(aws("BatchExecuteStatement", e)))?;
        if session.is_none() {
            let id = out.session_id().map(str::to_string).ok_or_else(|| {
                CallError::Unknown(Error::Warehouse(
                    "the Data API started no session (no SessionId returned)".into(),
                ))
            })?;
            *session = Some(Session {
                id,
                started: Instant::now(),
                used: Instant::now(),
            });
        }
        let waited = self.settle(out.id().unwrap_or_default()).await;
        if let Some(s) = session.as_mut() {
            s.used = Instant::now();
        }
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CallError::RolledBack(e)),
            Err(e) => Err(CallError::Unknown(e)),
        }
    }

    /// Run one statement; returns its id and whether it has a result set.
    async fn execute(&self, sql: &str) -> Result<(String, bool)> {
        let req = self.client.execute_statement().sql(sql);
        let out = addressed!(self, req)
            .send()
            .await
            .map_err(|e| aws("ExecuteStatement", e))?;
        let id = out.id().unwrap_or_default().to_string();
        let has_result = self.wait(&id).await?;
        Ok((id, has_result))
    }

    /// Poll until FINISHED (returns has_result_set), FAILED, ABORTED or the timeout.
    async fn wait(&self, id: &str) -> Result<bool> {
        self.settle(id).await?
    }

    /// `wait`, telling a statement that ended in FAILED or ABORTED (the inner error: its batch
    /// rolled back whole) from one whose end is unknown (the outer: a poll failed, or the
    /// timeout came).
    async fn settle(&self, id: &str) -> Result<Result<bool>> {
        let start = Instant::now();
        let mut delay = self.poll_first;
        loop {
            match self.client.describe_statement().id(id).send().await {
                Ok(d) => match d.status() {
                    Some(StatusString::Finished) => {
                        return Ok(Ok(d.has_result_set().unwrap_or(false)))
                    }
                    Some(StatusString::Failed) => {
                        return Ok(Err(Error::Warehouse(format!(
                            "Redshift statement {id} FAILED: {}",
                            d.error().unwrap_or("no error text")
                        ))))
                    }
                    Some(StatusString::Aborted) => {
                        return Ok(Err(Error::Warehouse(format!(
                            "Redshift statement {id} ABORTED{}",
                            d.error().map(|e| format!(": {e}")).unwrap_or_default()
                        ))))
                    }
                    _ => {}
                },
                // Throttled polls are expected under load: wait and poll again.
                Err(e) if e.code() == Some("ThrottlingException") => {
                    tracing::debug!(id, "DescribeStatement throttled");
                }
                Err(e) => return Err(aws("DescribeStatement", e)),
            }
            if start.elapsed() >= self.statement_timeout {
                let cancelled = self.client.cancel_statement().id(id).send().await.is_ok();
                return Err(Error::Warehouse(format!(
                    "Redshift statement {id} ran past statement_timeout_secs ({}s){}",
                    self.statement_timeout.as_secs(),
                    if cancelled {
                        "; cancelled"
                    } else {
                        "; cancel failed"
                    }
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.poll_max);
        }
    }

    async fn results(&self, id: &str) -> Result<TextRows> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_statement_result()
                .id(id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws("GetStatementResult", e))?;
            for record in page.records() {
                out.push(record.iter().map(field_text).collect());
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

fn field_text(f: &Field) -> Option<String> {
    match f {
        Field::StringValue(s) => Some(s.clone()),
        Field::LongValue(v) => Some(v.to_string()),
        Field::DoubleValue(v) => Some(v.to_string()),
        Field::BooleanValue(b) => Some(b.to_string()),
        Field::IsNull(_) => None,
        _ => None,
    }
}

impl Warehouse for RedshiftWarehouse {
    fn backend(&self) -> &'static str {
        "redshift"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Redshift
    }

    /// One segment a transaction: a group would be one scratch fill of up to a group's rows
    /// within the Data API's statement limits; not done (see the README).
    fn files_per_load(&self) -> usize {
        1
    }

    fn load_group(&self, files: Vec<StagedFile>) -> BoxFuture<'_, Result<Vec<LoadOutcome>>> {
        Box::pin(async move { super::load_single(self, &files).await })
    }

    fn load<'a>(&'a self, file: &'a StagedFile) -> BoxFuture<'a, Result<LoadOutcome>> {
        Box::pin(async move {
            let (spec, rows) = file.parse()?;
            let seen = self.query(&schema::ledger_check(&file.sha256)).await?;
            if super::int(seen.first().and_then(|r| r.first())) > 0 {
                return Ok(file.outcome(0, true));
            }
            let entry = file.ledger_entry(rows.len());
            let (before, after) = schema::load_sql(Dialect::Redshift, &spec, &entry);
            let fill = match &self.copy {
                Some(c) => {
                    // The JSONPaths file maps fields to columns (users' lat/long differ).
                    let paths_key = format!("ops/jsonpaths/{}.json", spec.entity);
                    c.store
                        .put(&paths_key, bytes::Bytes::from(schema::jsonpaths(&spec)))
                        .await?;
                    let mut v = schema::scratch_copy_ddl(&spec, &file.key);
                    v.push(schema::copy_sql(
                        &spec,
                        &c.uri(&file.key),
                        &c.uri(&paths_key),
                        &c.iam_role,
                    ));
                    v
                }
                None => {
                    let mut v = before;
                    v.extend(schema::scratch_inserts(&spec, &rows, ROWS_PER_INSERT));
                    v
                }
            };
            let calls = match self.fleet {
                Some(_) => fleet_calls(fill, after)?,
                None => session_calls(fill, after)?,
            };
            self.run_calls(calls).await?;
            Ok(file.outcome(rows.len(), false))
        })
    }

    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // More than one batch is more than one transaction (in one session, so temporary
            // tables carry over); refresh batches are sized to fit (see models::refresh_sql),
            // so this only splits very long backfills.
            let Some(fleet) = &self.fleet else {
                let calls = statements
                    .chunks(MAX_BATCH)
                    .map(<[String]>::to_vec)
                    .collect();
                return self.run_calls(calls).await;
            };
            // A fleet's: each transaction serialised, and while this instance holds the
            // CURATED hold, refused if it lapsed (what commits under it is the publication's).
            let mut head = vec![fleet_lock::serialise()];
            if let Some(h) = fleet.hold.lock().await.as_ref() {
                head.push(fleet_lock::held_sql(CURATED, &h.holder, chrono::Utc::now()));
            }
            let calls = statements
                .chunks(MAX_BATCH - head.len())
                .map(|c| [head.as_slice(), c].concat())
                .collect();
            self.run_calls(calls).await
        })
    }

    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<TextRows>> {
        Box::pin(async move {
            let (id, has_result) = self.execute(sql).await?;
            if !has_result {
                return Ok(Vec::new());
            }
            self.results(&id).await
        })
    }

    fn shared(&self) -> bool {
        self.fleet.is_some()
    }

    fn hold_shared(&self, hold: bool) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            let Some(fleet) = &self.fleet else {
                return Ok(true);
            };
            if hold {
                return self.take_hold(fleet).await;
            }
            let held = fleet.hold.lock().await.take();
            if let Some(h) = held {
                self.batch(fleet_lock::release_sql(CURATED, &h.holder))
                    .await?;
            }
            Ok(true)
        })
    }

    /// What is left of the hold (renewed in the background); an error once it is gone.
    fn keep_shared(&self) -> BoxFuture<'_, Result<Duration>> {
        Box::pin(async move {
            let Some(fleet) = &self.fleet else {
                return Ok(Duration::MAX);
            };
            let hold = fleet.hold.lock().await;
            let Some(h) = hold.as_ref() else {
                return Err(Error::Warehouse(
                    "the CURATED refresh runs without its hold".into(),
                ));
            };
            let left = h.left(fleet.hold_for);
            if left.is_zero() {
                return Err(Error::Warehouse(format!(
                    "the CURATED hold of {} lapsed (not renewed): the work under it stops, its \
                     days stay dirty or pending",
                    h.holder
                )));
            }
            Ok(left)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{SegmentCounts, StreamCommit};
    use crate::warehouse::schema::LedgerEntry;

    /// Every entity's load transaction, events with their stream commit included, fits one
    /// Data API batch, whatever the number of rows filled before it.
    #[test]
    fn every_load_transaction_fits_one_batch() {
        let commit = StreamCommit {
            shard: "shard-0000".into(),
            raw_key: "raw/x".into(),
            first_seq: 1,
            last_seq: 2,
            counts: SegmentCounts::default(),
            state_generation: Some(1),
            fence: None,
            late_days: Default::default(),
        };
        for spec in &schema::TABLES {
            let entry = LedgerEntry {
                key: "staging/x",
                entity: spec.entity,
                sha256: "0",
                bytes: 1,
                rows: 1,
                source: "t",
                loaded_at: chrono::Utc::now(),
                checkpoint: (spec.entity == "events").then_some(&commit),
            };
            let (_, after) = schema::load_sql(Dialect::Redshift, spec, &entry);
            assert!(after.len() <= MAX_BATCH, "{}: {}", spec.entity, after.len());
        }
        // A fleet's, with its fence and the lock before it, too.
        let fenced = StreamCommit {
            fence: Some(crate::ledger::FenceCommit {
                owner: "w1".into(),
                tokens: (0..64).map(|i| (format!("shard-{i:04}"), 7)).collect(),
                committing: ["shard-0000".to_string()].into(),
                state_key: "ops/state/w1.json".into(),
            }),
            ..commit
        };
        let spec = schema::spec("events").unwrap();
        let entry = LedgerEntry {
            key: "staging/x",
            entity: "events",
            sha256: "0",
            bytes: 1,
            rows: 1,
            source: "t",
            loaded_at: chrono::Utc::now(),
            checkpoint: Some(&fenced),
        };
        let (before, after) = schema::load_sql(Dialect::Redshift, &spec, &entry);
        let calls = fleet_calls(before, after).unwrap();
        assert_eq!(calls.last().unwrap()[0], fleet_lock::serialise());
        assert!(calls.iter().all(|c| c.len() <= MAX_BATCH));
    }

    #[test]
    fn session_calls_keep_the_transaction_whole_and_last() {
        let s = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        assert_eq!(session_calls(s("f", 3), s("t", 5)).unwrap().len(), 1);
        for fills in [36, 37, 80, 101, 1000] {
            let calls = session_calls(s("f", fills), s("t", 5)).unwrap();
            assert!(calls.iter().all(|c| !c.is_empty() && c.len() <= MAX_BATCH));
            let flat: Vec<String> = calls.concat();
            assert_eq!(flat, [s("f", fills), s("t", 5)].concat(), "order kept");
            assert!(calls.last().unwrap().ends_with(&s("t", 5)));
            assert!(calls[..calls.len() - 1]
                .iter()
                .flatten()
                .all(|x| x.starts_with('f')));
        }
        assert!(session_calls(s("f", 1), s("t", 41)).is_err());
    }
}
