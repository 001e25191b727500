//! Schema migration, on every writer's open: `CREATE TABLE IF NOT EXISTS` makes new tables but
//! never reaches a table that already exists, so each column of the specs that an existing
//! table lacks is added (`ALTER TABLE ... ADD COLUMN`, one column per statement: the form
//! DuckDB, PostgreSQL and Redshift all take,
//! <https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html>), its existing rows
//! filled where the value can be derived, and the schema version recorded, all in one
//! transaction before any load. Columns are only ever added, never dropped or retyped.

use std::collections::HashSet;

use super::models::MODEL_SPECS;
use super::schema::{literal, Dialect, Fill, TableSpec, TABLES};
use super::{Cell, Warehouse};
use crate::error::{Error, Result};

/// The schema this build writes. 1: the first; 2: the entity model's missing fields
/// (users.country/created_at, products.name/is_active/created_at, orders.created_at,
/// order_items.order_item_id, events.producer_time), `curated.daily_ingestion_delay`, the
/// CURATED files' pending days; 3: `ops.late_objects` (a new table), the refresh's days in a
/// temporary table instead of the shared `ops.refresh_days` (dropped).
pub const SCHEMA_VERSION: i64 = 3;

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    /// The version found (None: a new warehouse, or one from before versions were recorded).
    pub from: Option<i64>,
    /// `table.column` of each column added.
    pub added: Vec<String>,
}

/// Bring the warehouse to `SCHEMA_VERSION` (its tables exist: `schema::ddl` ran first).
pub async fn migrate(wh: &dyn Warehouse, d: Dialect) -> Result<Migration> {
    let found = wh
        .query("SELECT CAST(MAX(version) AS BIGINT) FROM ops.schema_version")
        .await?;
    // MAX over no rows is NULL: no version recorded.
    let from = found
        .first()
        .and_then(|r| r.first())
        .and_then(|c| c.as_deref())
        .and_then(|v| v.parse::<i64>().ok());
    if let Some(v) = from.filter(|v| *v > SCHEMA_VERSION) {
        return Err(Error::Warehouse(format!(
            "the warehouse is at schema version {v}, newer than this ecomops ({SCHEMA_VERSION}): \
             upgrade ecomops"
        )));
    }
    let existing: HashSet<String> = wh
        .query(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns \
             WHERE table_schema IN ('staging', 'curated')",
        )
        .await?
        .into_iter()
        .filter_map(|r| match (r.first(), r.get(1), r.get(2)) {
            (Some(Some(s)), Some(Some(t)), Some(Some(c))) => {
                Some(format!("{s}.{t}.{c}").to_ascii_lowercase())
            }
            _ => None,
        })
        .collect();
    let mut m = Migration {
        from,
        added: Vec::new(),
    };
    let mut statements = Vec::new();
    for spec in TABLES {
        for c in spec.columns {
            if existing.contains(&format!("{}.{}", spec.table(), c.name)) {
                continue;
            }
            statements.push(add_column(&spec.table(), c.name, c.ty.sql(d)));
            statements.extend(backfill(&spec, c.name, c.fill));
            m.added.push(format!("{}.{}", spec.table(), c.name));
        }
    }
    let mut curated_changed = false;
    for model in MODEL_SPECS {
        for (name, ty, _) in model.columns {
            if existing.contains(&format!("{}.{name}", model.table())) {
                continue;
            }
            statements.push(add_column(&model.table(), name, ty.sql(d)));
            m.added.push(format!("{}.{name}", model.table()));
            curated_changed = true;
        }
    }
    if curated_changed {
        // A model's new column is filled by recomputing its days: every day is marked dirty.
        statements.push(
            "INSERT INTO ops.dirty_partitions (day) SELECT x.day FROM (SELECT DISTINCT \
             CAST(order_time AS DATE) AS day FROM staging.orders UNION SELECT DISTINCT \
             CAST(event_time AS DATE) AS day FROM staging.events) AS x WHERE NOT EXISTS \
             (SELECT 1 FROM ops.dirty_partitions AS p WHERE p.day = x.day)"
                .into(),
        );
    }
    if from != Some(SCHEMA_VERSION) || !statements.is_empty() {
        // Version 2's shared table of a refresh's days: two loaders collided on it.
        statements.push("DROP TABLE IF EXISTS ops.refresh_days".into());
        statements.push("DELETE FROM ops.schema_version".into());
        statements.push(format!(
            "INSERT INTO ops.schema_version (version, applied_at) VALUES ({SCHEMA_VERSION}, {})",
            literal(&Cell::Time(chrono::Utc::now()))
        ));
        wh.execute_tx(statements).await?;
    }
    if !m.added.is_empty() {
        tracing::info!(from = ?m.from, to = SCHEMA_VERSION, added = ?m.added, "warehouse schema migrated");
    }
    Ok(m)
}

/// Added columns are nullable: the table already holds rows.
fn add_column(table: &str, column: &str, ty: &str) -> String {
    format!("ALTER TABLE {table} ADD COLUMN {column} {ty}")
}

/// Fill an added column of the rows already there: a derived column from its expression, a
/// first-seen time from the ledger row of the file the row was last loaded from (the closest
/// record left of when it arrived); a field of the file stays NULL (older files lack it).
fn backfill(spec: &TableSpec, column: &str, fill: Fill) -> Option<String> {
    let table = spec.table();
    match fill {
        Fill::Field(_) => None,
        Fill::Derived(expr) => Some(format!(
            "UPDATE {table} SET {column} = {}",
            expr.replace("{s}", "")
        )),
        Fill::FirstLoaded => Some(format!(
            "UPDATE {table} SET {column} = l.loaded_at FROM ops.ledger AS l WHERE \
             l.object_key = {}.source_key",
            spec.entity
        )),
    }
}
