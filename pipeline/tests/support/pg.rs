//! The test PostgreSQL as a `Warehouse`: the Redshift statements (`Dialect::Redshift`) run on
//! it through the same trait the pipeline uses, so code written against the trait (migration,
//! quality checks, CURATED files) is exercised on a second real engine.
// Not every test file that includes this module uses all of it.
#![allow(dead_code)]

use ecom_pipeline::warehouse::redshift::session_calls;
use ecom_pipeline::warehouse::schema::{self, Dialect};
use ecom_pipeline::warehouse::{LoadOutcome, StagedFile, TextRows, Warehouse};
use ecom_pipeline::Error;
use futures::future::BoxFuture;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A fresh database on the test server, or None when no server is configured (outside
/// `scripts/test.sh`; there ECOMOPS_REQUIRE_PG makes a missing server a failure).
pub async fn fresh_db(name: &str) -> Option<Client> {
    fresh_db_with(name, true).await
}

/// A fresh database whose sessions read string literals with `standard_conforming_strings`
/// on (PostgreSQL's default) or off (a backslash escapes, as in Redshift).
pub async fn fresh_db_with(name: &str, conforming: bool) -> Option<Client> {
    let Ok(base) = std::env::var("ECOMOPS_TEST_PG") else {
        assert!(
            std::env::var_os("ECOMOPS_REQUIRE_PG").is_none(),
            "ECOMOPS_REQUIRE_PG is set but ECOMOPS_TEST_PG is not"
        );
        eprintln!("skipped: no PostgreSQL (run scripts/test.sh)");
        return None;
    };
    assert!(base.contains("host=127.0.0.1"), "tests only use loopback");
    let (admin, conn) = tokio_postgres::connect(&base, NoTls).await.unwrap();
    tokio::spawn(conn);
    let db = format!("t_{name}_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    if !conforming {
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {db} SET standard_conforming_strings = off"
            ))
            .await
            .unwrap();
    }
    let (client, conn) = tokio_postgres::connect(&format!("{base} dbname={db}"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    Some(client)
}

/// A fresh database's connection string (for `warehouse.postgres.connection`), or None when no
/// server is configured.
pub async fn fresh_dsn(name: &str) -> Option<String> {
    fresh_dsn_with(name, true).await
}

/// `fresh_dsn`, its sessions reading literals with `standard_conforming_strings` as given.
pub async fn fresh_dsn_with(name: &str, conforming: bool) -> Option<String> {
    fresh_db_with(name, conforming).await?;
    let base = std::env::var("ECOMOPS_TEST_PG").ok()?;
    Some(format!("{base} dbname=t_{name}_{}", std::process::id()))
}

pub struct PgWarehouse(pub Client);

fn pg(e: tokio_postgres::Error, sql: &str) -> Error {
    Error::Warehouse(format!("{e:?} in: {sql}"))
}

/// The Data API's limit on one result row: "The maximum size of a row in a result is 64 KB"
/// (<https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html>, considerations).
/// PostgreSQL returns any row; every query the Redshift path reads through this warehouse is
/// held to it.
pub const MAX_RESULT_ROW_BYTES: usize = 64 * 1024;

impl PgWarehouse {
    async fn rows(&self, sql: &str) -> ecom_pipeline::Result<TextRows> {
        let rows: TextRows = self
            .0
            .simple_query(sql)
            .await
            .map_err(|e| pg(e, sql))?
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect();
        for row in &rows {
            let bytes: usize = row.iter().flatten().map(String::len).sum();
            assert!(
                bytes <= MAX_RESULT_ROW_BYTES,
                "a {bytes}-byte result row, over the Data API's 64 KB, from: {}",
                sql.chars().take(200).collect::<String>()
            );
        }
        Ok(rows)
    }

    async fn tx(&self, statements: &[String]) -> ecom_pipeline::Result<()> {
        self.0
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg(e, "BEGIN"))?;
        for s in statements {
            if let Err(e) = self.0.batch_execute(s).await {
                let _ = self.0.batch_execute("ROLLBACK").await;
                return Err(pg(e, s));
            }
        }
        self.0
            .batch_execute("COMMIT")
            .await
            .map_err(|e| pg(e, "COMMIT"))
    }

    /// A load with exactly the statements and calls the Redshift path sends (INSERTs into the
    /// scratch table, as the Data API path does; each call a transaction of this connection,
    /// as each is of the Data API session, whose temporary tables last between them).
    async fn load_file(&self, file: &StagedFile) -> ecom_pipeline::Result<LoadOutcome> {
        let seen = self.rows(&schema::ledger_check(&file.sha256)).await?;
        if seen[0][0].as_deref() != Some("0") {
            return Ok(file.outcome(0, true));
        }
        let (spec, rows) = file.parse()?;
        let entry = file.ledger_entry(rows.len());
        let (before, after) = schema::load_sql(Dialect::Redshift, &spec, &entry);
        let mut fill = before;
        fill.extend(schema::scratch_inserts(&spec, &rows, 100));
        for call in session_calls(fill, after)? {
            self.tx(&call).await?;
        }
        Ok(file.outcome(rows.len(), false))
    }
}

impl Warehouse for PgWarehouse {
    fn backend(&self) -> &'static str {
        "postgres-test"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Redshift
    }

    fn files_per_load(&self) -> usize {
        1
    }

    fn load_group(
        &self,
        files: Vec<StagedFile>,
    ) -> BoxFuture<'_, ecom_pipeline::Result<Vec<LoadOutcome>>> {
        Box::pin(async move { ecom_pipeline::warehouse::load_single(self, &files).await })
    }

    fn load<'a>(
        &'a self,
        file: &'a StagedFile,
    ) -> BoxFuture<'a, ecom_pipeline::Result<LoadOutcome>> {
        Box::pin(self.load_file(file))
    }

    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, ecom_pipeline::Result<()>> {
        Box::pin(async move { self.tx(&statements).await })
    }

    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, ecom_pipeline::Result<TextRows>> {
        Box::pin(self.rows(sql))
    }
}
