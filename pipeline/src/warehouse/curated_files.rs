//! The CURATED zone as files, for the lake's readers (Athena, Spark, DuckDB): after a model
//! refresh commits, each refreshed day of every daily model is written as one Parquet file,
//! `curated/<model>/dt=<day>/<model>.parquet`, replacing the day's previous file (a store `put`
//! is atomic: a reader sees the old file or the new one), and its SHA-256 and row count go to the
//! ledger (zone `curated`). A day with no rows has no file.
//!
//! The refresh records its days in `ops.curated_pending` in the same transaction, and the days
//! leave it only with the ledger rows of their files, once the files are written: a crash or a
//! store error in between leaves them pending, written again by the next refresh (every
//! cycle runs one: `ecomops --no-ui --once`).
//!
//! The rows are read through the warehouse trait and encoded here (arrow + parquet, the arrow
//! version DuckDB already links), so every backend writes the same files to the configured
//! store: DuckDB's parquet extension is not in its bundled build, and on Redshift it avoids an
//! UNLOAD role; a daily model's day is a few rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::models::{ModelSpec, MODEL_SPECS};
use super::schema::{literal, Ty};
use super::{Cell, TextRows, Warehouse};
use crate::error::{Error, Result};
use crate::store::{sha256_hex, ObjectStore};
use crate::zones::curated_key;

/// What one publication wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub days: usize,
    /// Files written (a day whose rows did not change keeps its file).
    pub files: usize,
    pub rows: u64,
    /// Files removed because their day has no rows any more.
    pub removed: usize,
}

/// The models written as files: the daily ones.
pub fn daily_models() -> impl Iterator<Item = ModelSpec> {
    MODEL_SPECS.into_iter().filter(|m| m.is_daily())
}

/// `write`, unless it outlasts `left` (what remains of a fleet's publication hold).
async fn within<T>(
    left: Duration,
    write: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if left == Duration::MAX {
        return write.await;
    }
    tokio::time::timeout(left, write).await.map_err(|_| {
        Error::Warehouse(
            "a CURATED write outlasted the publication's hold: the publication stops".into(),
        )
    })?
}

/// Days whose files are still to be written.
pub async fn pending_days(wh: &dyn Warehouse) -> Result<BTreeSet<NaiveDate>> {
    Ok(wh
        .query("SELECT DISTINCT CAST(day AS VARCHAR) FROM ops.curated_pending")
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .filter_map(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
        .collect())
}

/// Write the files of every pending day: one query per model for all of them, one put per file
/// whose bytes changed, and the ledger rows with the days leaving `ops.curated_pending` in one
/// transaction at the end, in few statements (a Redshift Data API batch holds 40). A failure
/// before it leaves every day pending, rewritten next time (a put replaces).
pub async fn publish(wh: &dyn Warehouse, store: &dyn ObjectStore) -> Result<Published> {
    let pending = pending_days(wh).await?;
    if pending.is_empty() {
        return Ok(Published::default());
    }
    // The files the zone holds and their hashes, from the ledger: no request per day.
    let written: HashMap<String, String> = wh
        .query("SELECT object_key, sha256 FROM ops.ledger WHERE zone = 'curated'")
        .await?
        .into_iter()
        .filter_map(|r| match (r.first(), r.get(1)) {
            (Some(Some(k)), Some(Some(s))) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect();
    let mut out = Published {
        days: pending.len(),
        ..Published::default()
    };
    let now = literal(&Cell::Time(Utc::now()));
    let (mut gone, mut rows_sql) = (Vec::new(), Vec::new());
    for model in daily_models() {
        let mut by_day: BTreeMap<NaiveDate, TextRows> = BTreeMap::new();
        if wh.shared() {
            wh.keep_shared().await?;
        }
        for row in wh.query(&pending_sql(&model)).await? {
            let day = row
                .first()
                .and_then(|c| c.as_deref())
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            if let Some(day) = day {
                by_day.entry(day).or_default().push(row);
            }
        }
        for day in &pending {
            let key = curated_key(model.name, *day);
            let quoted = literal(&Cell::Text(key.clone()));
            // A fleet's publication writes only while it surely holds the publication, each
            // write bounded by what is left of the hold: one whose hold lapsed could overwrite
            // a newer file with its older rows.
            let left = if wh.shared() {
                wh.keep_shared().await?
            } else {
                Duration::MAX
            };
            let Some(rows) = by_day.remove(day) else {
                // Deleted whether or not the ledger knows it: a put whose ledger row never
                // committed leaves no file behind.
                within(left, store.delete(&key)).await?;
                if written.contains_key(&key) {
                    out.removed += 1;
                    gone.push(quoted);
                }
                continue;
            };
            let body = encode(&model, &rows)?;
            let sha = sha256_hex(&body);
            // The same rows give the same file: not written again while the one there is
            // intact (a HEAD, far cheaper than a PUT of the day).
            if written.get(&key) == Some(&sha)
                && within(left, store.head(&key))
                    .await?
                    .is_some_and(|m| m.sha256 == sha)
            {
                continue;
            }
            let bytes = body.len();
            within(left, store.put(&key, bytes::Bytes::from(body))).await?;
            gone.push(quoted.clone());
            rows_sql.push(format!(
                "({quoted}, 'curated', {}, {}, {bytes}, {}, 'models', 'written', {now})",
                literal(&Cell::Text(model.name.to_string())),
                literal(&Cell::Text(sha)),
                rows.len(),
            ));
            out.files += 1;
            out.rows += rows.len() as u64;
        }
    }
    let mut statements = Vec::new();
    for chunk in gone.chunks(200) {
        statements.push(format!(
            "DELETE FROM ops.ledger WHERE object_key IN ({})",
            chunk.join(", ")
        ));
    }
    for chunk in rows_sql.chunks(200) {
        statements.push(format!(
            "INSERT INTO ops.ledger (object_key, zone, entity, sha256, bytes, row_count, source, \
             status, loaded_at) VALUES {}",
            chunk.join(", ")
        ));
    }
    let days: Vec<String> = pending.iter().map(|d| format!("DATE '{d}'")).collect();
    for chunk in days.chunks(500) {
        statements.push(format!(
            "DELETE FROM ops.curated_pending WHERE day IN ({})",
            chunk.join(", ")
        ));
    }
    wh.execute_tx(statements).await?;
    tracing::info!(
        days = out.days,
        files = out.files,
        removed = out.removed,
        "CURATED files written"
    );
    Ok(out)
}

/// The rows of every pending day of a daily model (its day column first), in a stable order:
/// the same rows give the same file.
pub fn pending_sql(model: &ModelSpec) -> String {
    let cols: Vec<&str> = model.columns.iter().map(|(n, _, _)| *n).collect();
    format!(
        "SELECT {list} FROM {table} WHERE {day_col} IN (SELECT day FROM ops.curated_pending) \
         ORDER BY {list}",
        list = cols.join(", "),
        table = model.table(),
        day_col = model.day.unwrap_or("day"),
    )
}

/// Rows of `model` as one Parquet file (snappy).
pub fn encode(model: &ModelSpec, rows: &TextRows) -> Result<Vec<u8>> {
    let bad = |what: String| Error::Warehouse(format!("curated.{}: {what}", model.name));
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, (name, ty, nullable)) in model.columns.iter().enumerate() {
        let cells = rows.iter().map(|r| r.get(i).cloned().flatten());
        let (data_type, array): (DataType, ArrayRef) = match ty {
            Ty::BigInt => (
                DataType::Int64,
                Arc::new(Int64Array::from(
                    cells
                        .map(|c| c.map(|s| s.parse::<i64>()).transpose())
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| bad(format!("{name}: {e}")))?,
                )),
            ),
            Ty::Double => (
                DataType::Float64,
                Arc::new(Float64Array::from(
                    cells
                        .map(|c| c.map(|s| s.parse::<f64>()).transpose())
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| bad(format!("{name}: {e}")))?,
                )),
            ),
            Ty::Date => (
                DataType::Date32,
                Arc::new(Date32Array::from(
                    cells
                        .map(|c| {
                            c.map(|s| {
                                NaiveDate::parse_from_str(&s, "%Y-%m-%d").map(|d| {
                                    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
                                        .num_days() as i32
                                })
                            })
                            .transpose()
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| bad(format!("{name}: {e}")))?,
                )),
            ),
            Ty::Text => (
                DataType::Utf8,
                Arc::new(StringArray::from(cells.collect::<Vec<_>>())),
            ),
            Ty::Timestamp | Ty::Bool => {
                return Err(bad(format!("{name}: no daily model column is a {ty:?}")))
            }
        };
        fields.push(Field::new(*name, data_type, *nullable));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| bad(e.to_string()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))
        .map_err(|e| bad(e.to_string()))?;
    writer.write(&batch).map_err(|e| bad(e.to_string()))?;
    writer.close().map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn a_day_encodes_to_parquet_with_the_models_types() {
        let model = super::super::models::model_spec("daily_metrics").unwrap();
        let rows: TextRows = vec![vec![
            Some("2026-03-01".into()),
            Some("3".into()),
            Some("4500".into()),
            None,
        ]];
        let body = encode(&model, &rows).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(body)).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 1);
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            ["day", "orders", "revenue_cents", "avg_order_value_cents"]
        );
        // `publish` reads each row's day from its first column.
        assert!(daily_models().all(|m| m.day == Some(m.columns[0].0)));
        let bad: TextRows = vec![vec![Some("x".into()), None, None, None]];
        assert!(encode(&model, &bad).is_err());
    }
}
