//! PostgreSQL as the warehouse several instances share (`warehouse.backend = "postgres"`): the
//! Redshift statements (`Dialect::Redshift`, which the tests already run on PostgreSQL 15), each
//! load one transaction of this instance's connection with its own temporary scratch table, so
//! two instances loading at once never share one. One connection per instance, behind a lock:
//! a transaction's statements never interleave with another task's; a closed connection is
//! opened again on the next call.

use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::schema::{self, Dialect};
use super::{LoadOutcome, StagedFile, TextRows, Warehouse};
use crate::config::PostgresConfig;
use crate::error::{Error, Result};

/// Rows a scratch INSERT carries at most (it is also cut by bytes: `scratch_inserts`).
const ROWS_PER_INSERT: usize = 1000;

pub struct PostgresWarehouse {
    config: tokio_postgres::Config,
    client: Mutex<Option<Client>>,
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
    /// Connect (the password from `password_env`, when set).
    pub async fn connect(cfg: &PostgresConfig) -> Result<PostgresWarehouse> {
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
        Ok(client)
    }

    /// Run `f` with the connection, opening it first if it is closed.
    async fn with<T>(
        &self,
        f: impl for<'c> FnOnce(&'c Client) -> BoxFuture<'c, Result<T>>,
    ) -> Result<T> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
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
    pub async fn tx(&self, statements: Vec<String>) -> Result<()> {
        self.with(move |c| {
            Box::pin(async move {
                c.batch_execute("BEGIN")
                    .await
                    .map_err(|e| pg(&e, "BEGIN"))?;
                for s in &statements {
                    if let Err(e) = c.batch_execute(s).await {
                        // A connection that broke mid-transaction rolls back on its own.
                        let _ = c.batch_execute("ROLLBACK").await;
                        return Err(pg(&e, s));
                    }
                }
                c.batch_execute("COMMIT")
                    .await
                    .map_err(|e| pg(&e, "COMMIT"))
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
            let seen = self.rows(&schema::ledger_check(&file.sha256)).await?;
            if super::int(seen.first().and_then(|r| r.first())) > 0 {
                return Ok(file.outcome(0, true));
            }
            let (spec, rows) = file.parse()?;
            let entry = file.ledger_entry(rows.len());
            let (before, after) = schema::load_sql(Dialect::Redshift, &spec, &entry);
            let mut statements = before;
            statements.extend(schema::scratch_inserts(&spec, &rows, ROWS_PER_INSERT));
            statements.extend(after);
            self.tx(statements).await?;
            Ok(file.outcome(rows.len(), false))
        })
    }

    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.tx(statements))
    }

    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<TextRows>> {
        Box::pin(self.rows(sql))
    }
}
