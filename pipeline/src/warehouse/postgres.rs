//! PostgreSQL as the warehouse several instances share (`warehouse.backend = "postgres"`): the
//! Redshift statements (`Dialect::Redshift`, which the tests already run on PostgreSQL 15), each
//! load one transaction of this instance's connection with its own temporary scratch table and
//! its ledger check inside it. One connection per instance, behind a lock: a transaction's
//! statements never interleave with another task's; a closed connection is opened again on the
//! next call.
//!
//! Without shard leases, one writer per database: checkpoints, the stream state and segment keys
//! are named by shard alone, so two instances each reading the whole stream would overwrite each
//! other's. Such a writer holds a session advisory lock (`WRITER_LOCK`) and a second is refused.
//! With leases (`stream.kinesis.leases`) every instance writes, each its own shards (fenced by
//! `ops.shard_owners`); what they share (dirty days, the ledger, the models, DDL) is written
//! under a transaction advisory lock (`FLEET_LOCK`), so two instances never race on a day's
//! row: the scratch fills, the bulk of a load, still run side by side.

use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::schema::{self, Dialect};
use super::{LoadOutcome, StagedFile, TextRows, Warehouse};
use crate::config::PostgresConfig;
use crate::error::{Error, Result};

/// The advisory lock key a writing instance holds for its session ("ecomops" in ASCII).
const WRITER_LOCK: i64 = 0x0065_636f_6d6f_7073;
/// The lock a fleet's instances take before shared writes ("ecomflt" in ASCII).
const FLEET_LOCK: i64 = 0x0065_636f_6d66_6c74;
/// Taken first in the shared part of a fleet's transaction; released at its commit or rollback.
fn fleet_lock_sql() -> String {
    format!("SELECT pg_advisory_xact_lock({FLEET_LOCK})")
}

/// Rows a scratch INSERT carries at most (it is also cut by bytes: `scratch_inserts`).
const ROWS_PER_INSERT: usize = 1000;

pub struct PostgresWarehouse {
    config: tokio_postgres::Config,
    client: Mutex<Option<Client>>,
    /// The fleet lock is held for this session (`hold_shared`): a connection lost meanwhile
    /// lost it too, and what ran under it must not go on without it.
    shared_held: std::sync::atomic::AtomicBool,
    /// A writer: each connection takes the writer lock first (alone) or writes under the
    /// fleet lock (leases).
    writer: Writer,
}

/// How this instance writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Reads only.
    Reader,
    /// The only writer (the session lock refuses a second).
    Alone,
    /// One of a fleet sharing the stream by leases.
    Fleet,
}

impl std::fmt::Debug for PostgresWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresWarehouse").finish_non_exhaustive()
    }
}

/// The server's own message when there is one ("db error" alone says nothing).
fn pg(e: &tokio_postgres::Error, sql: &str) -> Error {
    let head: String = sql.chars().take(300).collect();
    match e.as_db_error() {
        Some(d) => Error::Warehouse(format!("{} ({}) in: {head}", d.message(), d.code().code())),
        None => Error::Warehouse(format!("{e} in: {head}")),
    }
}

impl PostgresWarehouse {
    /// Connect (the password from `password_env`, when set); a writer takes the writer lock.
    pub async fn connect(cfg: &PostgresConfig, writer: Writer) -> Result<PostgresWarehouse> {
        let mut config: tokio_postgres::Config =
            cfg.connection.parse().map_err(|e| Error::Config {
                path: "warehouse.postgres.connection".into(),
                message: format!("{e}"),
            })?;
        if let Some(var) = &cfg.password_env {
            let password = std::env::var(var).map_err(|_| Error::Config {
                path: "warehouse.postgres.password_env".into(),
                message: format!("the environment variable {var} is not set"),
            })?;
            config.password(password);
        }
        let wh = PostgresWarehouse {
            config,
            client: Mutex::new(None),
            shared_held: std::sync::atomic::AtomicBool::new(false),
            writer,
        };
        // Fail at start when the database cannot be reached, not at the first load.
        wh.rows("SELECT 1").await?;
        Ok(wh)
    }

    async fn open(&self) -> Result<Client> {
        let (client, conn) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| Error::Warehouse(format!("cannot connect to PostgreSQL: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        // A lone writer holds the writer lock alone; a fleet's members share it: neither kind
        // ever writes beside the other (a writer without leases would read every shard).
        let (f, why) = match self.writer {
            Writer::Reader => return Ok(client),
            Writer::Alone => (
                "pg_try_advisory_lock",
                "another ecomops instance writes to this PostgreSQL database: one writer per \
                 database unless every writer shares the stream by leases \
                 (stream.kinesis.leases.enabled = true)",
            ),
            Writer::Fleet => (
                "pg_try_advisory_lock_shared",
                "an ecomops instance without stream leases writes to this PostgreSQL database: \
                 a fleet cannot share it until that one stops (or enables leases)",
            ),
        };
        let sql = format!("SELECT {f}({WRITER_LOCK})");
        let got = client
            .simple_query(&sql)
            .await
            .map_err(|e| pg(&e, &sql))?
            .into_iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
        if !got {
            return Err(Error::Warehouse(why.into()));
        }
        Ok(client)
    }

    /// Run `f` with the connection, opening it first if it is closed.
    async fn with<T>(
        &self,
        f: impl for<'c> FnOnce(&'c Client) -> BoxFuture<'c, Result<T>>,
    ) -> Result<T> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            if self
                .shared_held
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                *guard = None;
                return Err(Error::Warehouse(
                    "the PostgreSQL connection closed while it held the fleet lock: what ran \
                     under it is abandoned (done again next time)"
                        .into(),
                ));
            }
            *guard = Some(self.open().await?);
        }
        match guard.as_ref() {
            Some(client) => f(client).await,
            None => Err(Error::Warehouse("no PostgreSQL connection".into())),
        }
    }

    async fn rows(&self, sql: &str) -> Result<TextRows> {
        let sql = sql.to_string();
        self.with(move |c| {
            Box::pin(async move {
                Ok(c.simple_query(&sql)
                    .await
                    .map_err(|e| pg(&e, &sql))?
                    .into_iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => {
                            Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                        }
                        _ => None,
                    })
                    .collect())
            })
        })
        .await
    }

    /// `statements` in one transaction, rolled back on the first failure.
    pub async fn tx(&self, mut statements: Vec<String>) -> Result<()> {
        if self.writer == Writer::Fleet {
            statements.insert(0, fleet_lock_sql());
        }
        self.tx_unless(None, statements).await.map(|_| ())
    }

    /// `tx`, unless `loaded` (a `SELECT COUNT(*)`, run first in the same transaction) counts
    /// more than zero: then nothing is written and the answer is false.
    async fn tx_unless(&self, loaded: Option<String>, statements: Vec<String>) -> Result<bool> {
        self.with(move |c| {
            Box::pin(async move {
                // A transaction left open by a call dropped midway ends here.
                c.batch_execute("ROLLBACK; BEGIN")
                    .await
                    .map_err(|e| pg(&e, "BEGIN"))?;
                if let Some(check) = &loaded {
                    let seen = c.simple_query(check).await.map_err(|e| pg(&e, check))?;
                    let before = seen.iter().any(|m| {
                        matches!(m, SimpleQueryMessage::Row(r) if r.get(0).is_some_and(|n| n != "0"))
                    });
                    if before {
                        c.batch_execute("ROLLBACK")
                            .await
                            .map_err(|e| pg(&e, "ROLLBACK"))?;
                        return Ok(false);
                    }
                }
                for s in &statements {
                    if let Err(e) = c.batch_execute(s).await {
                        // A connection that broke mid-transaction rolls back on its own.
                        let _ = c.batch_execute("ROLLBACK").await;
                        return Err(pg(&e, s));
                    }
                }
                c.batch_execute("COMMIT")
                    .await
                    .map_err(|e| pg(&e, "COMMIT"))?;
                Ok(true)
            })
        })
        .await
    }
}

impl Warehouse for PostgresWarehouse {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Redshift
    }

    fn files_per_load(&self) -> usize {
        1
    }

    fn load_group(&self, files: Vec<StagedFile>) -> BoxFuture<'_, Result<Vec<LoadOutcome>>> {
        Box::pin(async move { super::load_single(self, &files).await })
    }

    /// The ledger check, the scratch fill, MERGE, dirty days and ledger row (and a stream
    /// commit) in one transaction; the scratch table is temporary, this connection's own.
    fn load<'a>(&'a self, file: &'a StagedFile) -> BoxFuture<'a, Result<LoadOutcome>> {
        Box::pin(async move {
            let (spec, rows) = file.parse()?;
            let entry = file.ledger_entry(rows.len());
            let (before, after) = schema::load_sql(Dialect::Redshift, &spec, &entry);
            let mut statements = before;
            statements.extend(schema::scratch_inserts(&spec, &rows, ROWS_PER_INSERT));
            // A fleet fills its scratch tables side by side; the MERGE and what it shares with
            // the others (dirty days, ledger, fence) one instance at a time.
            if self.writer == Writer::Fleet {
                statements.push(fleet_lock_sql());
            }
            statements.extend(after);
            // The ledger check in the loading transaction: nothing commits in between.
            let check = schema::ledger_check(&file.sha256);
            let loaded = self.tx_unless(Some(check), statements).await?;
            Ok(file.outcome(if loaded { rows.len() } else { 0 }, !loaded))
        })
    }

    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.tx(statements))
    }

    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<TextRows>> {
        Box::pin(self.rows(sql))
    }

    fn shared(&self) -> bool {
        self.writer == Writer::Fleet
    }

    /// The session lock lives as long as the connection: gone with it, never renewed.
    fn keep_shared(&self) -> BoxFuture<'_, Result<std::time::Duration>> {
        Box::pin(async move {
            let open = self
                .client
                .lock()
                .await
                .as_ref()
                .is_some_and(|c| !c.is_closed());
            if self.writer == Writer::Fleet
                && !(open && self.shared_held.load(std::sync::atomic::Ordering::SeqCst))
            {
                return Err(Error::Warehouse(
                    "the fleet lock was lost with its PostgreSQL connection: the work under it \
                     stops (done again next time)"
                        .into(),
                ));
            }
            Ok(std::time::Duration::MAX)
        })
    }

    /// The fleet lock as a session lock (the same key, so it also excludes the others'
    /// shared transactions); a connection that dies lets it go.
    fn hold_shared(&self, hold: bool) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            if self.writer != Writer::Fleet {
                return Ok(true);
            }
            let f = if hold {
                "pg_advisory_lock"
            } else {
                "pg_advisory_unlock"
            };
            if !hold
                && !self
                    .shared_held
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                // Lost with its connection: nothing to let go.
                return Ok(true);
            }
            self.rows(&format!("SELECT {f}({FLEET_LOCK})")).await?;
            if hold {
                self.shared_held
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(true)
        })
    }
}
