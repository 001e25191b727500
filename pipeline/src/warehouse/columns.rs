//! A load's scratch-table rows as Arrow columns: what DuckDB's appender takes whole (one call
//! per column chunk, not per value). The stream builds an event segment's columns as it stages
//! it (`EventColumns`), so a segment's rows are never held as one heap cell per value; other
//! loads convert the rows they parse (`of_cells`), and the backends that bind values one by one
//! (PostgreSQL, Redshift) read cells back (`cells_of`).

use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use duckdb::arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, Int64Array, Int64Builder, StringArray,
    StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
pub use duckdb::arrow::record_batch::RecordBatch;

use super::schema::{TableSpec, Ty};
use super::Cell;
use crate::error::{Error, Result};

/// One scratch column being built.
enum Col {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Time(TimestampMicrosecondBuilder),
}

impl Col {
    fn finish(self) -> ArrayRef {
        match self {
            Col::Int(mut b) => Arc::new(b.finish()),
            Col::Float(mut b) => Arc::new(b.finish()),
            Col::Text(mut b) => Arc::new(b.finish()),
            Col::Time(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The scratch table's column kinds in order: the spec's fields, the source key, the ordinal.
fn kinds(spec: &TableSpec) -> Vec<Col> {
    let mut cols: Vec<Col> = spec
        .fields()
        .map(|c| match c.ty {
            Ty::BigInt => Col::Int(Int64Builder::new()),
            Ty::Double => Col::Float(Float64Builder::new()),
            Ty::Timestamp => Col::Time(TimestampMicrosecondBuilder::new()),
            Ty::Text | Ty::Date | Ty::Bool => Col::Text(StringBuilder::new()),
        })
        .collect();
    cols.push(Col::Text(StringBuilder::new()));
    cols.push(Col::Int(Int64Builder::new()));
    cols
}

fn batch(cols: Vec<Col>) -> Result<RecordBatch> {
    batch_of(cols.into_iter().map(Col::finish).collect())
}

/// The arrays as a batch, named by position (the appender matches by position or by the names
/// it is given, never by these).
fn batch_of(arrays: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_from_iter(
        arrays
            .into_iter()
            .enumerate()
            .map(|(j, a)| (format!("c{j}"), a)),
    )
    .map_err(|e| Error::Warehouse(format!("scratch columns: {e}")))
}

/// `rows` (as `parse_rows` gives them) as the scratch table's columns.
pub fn of_cells(spec: &TableSpec, rows: &[Vec<Cell>]) -> Result<RecordBatch> {
    let mut cols = kinds(spec);
    for row in rows {
        if row.len() != cols.len() {
            return Err(Error::Invalid(format!(
                "a {} row of {} cells for {} scratch columns",
                spec.entity,
                row.len(),
                cols.len()
            )));
        }
        for (j, (col, cell)) in cols.iter_mut().zip(row).enumerate() {
            match (col, cell) {
                (Col::Int(b), Cell::Int(v)) => b.append_value(*v),
                (Col::Float(b), Cell::Float(v)) => b.append_value(*v),
                (Col::Float(b), Cell::Int(v)) => b.append_value(*v as f64),
                (Col::Text(b), Cell::Text(v)) => b.append_value(v),
                (Col::Time(b), Cell::Time(t)) => b.append_value(t.timestamp_micros()),
                (Col::Int(b), Cell::Null) => b.append_null(),
                (Col::Float(b), Cell::Null) => b.append_null(),
                (Col::Text(b), Cell::Null) => b.append_null(),
                (Col::Time(b), Cell::Null) => b.append_null(),
                (_, c) => {
                    return Err(Error::Invalid(format!(
                        "scratch column {j} of {} cannot hold {c:?}",
                        spec.entity
                    )))
                }
            }
        }
    }
    batch(cols)
}

/// The columns back as rows of cells (the backends that bind values one by one).
pub fn cells_of(batch: &RecordBatch) -> Result<Vec<Vec<Cell>>> {
    let mut rows = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
    for (j, col) in batch.columns().iter().enumerate() {
        let any = col.as_any();
        let cell: Box<dyn Fn(usize) -> Result<Cell>> =
            if let Some(a) = any.downcast_ref::<Int64Array>() {
                Box::new(move |i| Ok(Cell::Int(a.value(i))))
            } else if let Some(a) = any.downcast_ref::<Float64Array>() {
                Box::new(move |i| Ok(Cell::Float(a.value(i))))
            } else if let Some(a) = any.downcast_ref::<StringArray>() {
                Box::new(move |i| Ok(Cell::Text(a.value(i).to_string())))
            } else if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
                Box::new(move |i| {
                    DateTime::from_timestamp_micros(a.value(i))
                        .map(Cell::Time)
                        .ok_or_else(|| out_of_range(j, a.value(i)))
                })
            } else {
                return Err(Error::Invalid(format!(
                    "scratch column {j} has an unexpected type {}",
                    col.data_type()
                )));
            };
        for (i, row) in rows.iter_mut().enumerate() {
            row.push(if col.is_null(i) { Cell::Null } else { cell(i)? });
        }
    }
    Ok(rows)
}

fn out_of_range(column: usize, micros: i64) -> Error {
    Error::Invalid(format!(
        "scratch column {column}: {micros} µs is outside the timestamps this build reads"
    ))
}

/// The batch with its ordinal column (the last) offset by the file's place in its group
/// (`place << 32`): "first copy" and "last copy" keep their meaning across a group's files.
pub fn with_place(batch: &RecordBatch, place: usize) -> Result<RecordBatch> {
    let last = batch.num_columns().saturating_sub(1);
    let ordinals = batch
        .column(last)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Invalid("the scratch ordinal column is not BIGINT".into()))?;
    let offset = (place as i64) << 32;
    let moved: Int64Array = ordinals.iter().map(|v| v.map(|v| v + offset)).collect();
    let mut cols = batch.columns().to_vec();
    cols[last] = Arc::new(moved);
    RecordBatch::try_new(batch.schema(), cols)
        .map_err(|e| Error::Warehouse(format!("scratch columns: {e}")))
}

/// Are the rows' natural keys all distinct across `batches`? (Then the MERGE needs no
/// deduplicating window.) Keys are compared by a 64-bit hash: a collision only costs the window.
pub fn keys_distinct<'b>(spec: &TableSpec, batches: impl Iterator<Item = &'b RecordBatch>) -> bool {
    use std::hash::{BuildHasher, Hash, Hasher};
    let at: Vec<usize> = spec
        .fields()
        .enumerate()
        .filter(|(_, c)| spec.key.contains(&c.name))
        .map(|(i, _)| i)
        .collect();
    if at.len() != spec.key.len() {
        return false;
    }
    let state = std::collections::hash_map::RandomState::new();
    let mut seen = std::collections::HashSet::new();
    for b in batches {
        let keys: Vec<&dyn Array> = at.iter().map(|&i| b.column(i).as_ref()).collect();
        for row in 0..b.num_rows() {
            let mut h = state.build_hasher();
            for k in &keys {
                if k.is_null(row) {
                    return false;
                }
                if let Some(a) = k.as_any().downcast_ref::<Int64Array>() {
                    a.value(row).hash(&mut h);
                } else if let Some(a) = k.as_any().downcast_ref::<StringArray>() {
                    a.value(row).hash(&mut h);
                } else {
                    return false;
                }
            }
            if !seen.insert(h.finish()) {
                return false;
            }
        }
    }
    true
}

/// The rows of `batches` whose text key (column `at`) no earlier row has: the first copy of each
/// id, in order — what the exact path keeps (`ROW_NUMBER` over the ordinal, then `ON CONFLICT DO
/// NOTHING`). None where a key is null or not text (the exact path decides those).
pub fn first_copies(batches: &[&RecordBatch], at: usize) -> Result<Option<Vec<RecordBatch>>> {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let Some(ids) = b.column(at).as_any().downcast_ref::<StringArray>() else {
            return Ok(None);
        };
        if ids.null_count() > 0 {
            return Ok(None);
        }
        let keep: duckdb::arrow::array::BooleanArray = (0..b.num_rows())
            .map(|r| Some(seen.insert(ids.value(r))))
            .collect();
        out.push(
            duckdb::arrow::compute::filter_record_batch(b, &keep)
                .map_err(|e| Error::Invalid(format!("first copies: {e}")))?,
        );
    }
    Ok(Some(out))
}

/// The days (UTC) of a timestamp column `at` across `batches`.
pub fn days_of<'b>(
    batches: impl Iterator<Item = &'b RecordBatch>,
    at: usize,
) -> Result<std::collections::BTreeSet<chrono::NaiveDate>> {
    let mut days = std::collections::BTreeSet::new();
    for b in batches {
        let times = b
            .column(at)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Invalid(format!("scratch column {at} is not a timestamp")))?;
        for t in times.iter().flatten() {
            let day = DateTime::from_timestamp_micros(t).ok_or_else(|| out_of_range(at, t))?;
            days.insert(day.date_naive());
        }
    }
    Ok(days)
}

/// An event segment's scratch columns, built as its events are staged (`schema::EVENTS`'
/// fields, the source key, the ordinal). Exactly `of_cells(parse_rows(..))` of the STAGING body
/// `write_event` writes (held by a proptest in the consumer).
pub struct EventColumns {
    event_id: StringBuilder,
    user_id: Int64Builder,
    product_id: Int64Builder,
    event_type: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    ingestion_time: TimestampMicrosecondBuilder,
    session_id: StringBuilder,
    producer_time: TimestampMicrosecondBuilder,
    rows: usize,
}

impl EventColumns {
    pub fn with_capacity(n: usize) -> EventColumns {
        let text = || StringBuilder::with_capacity(n, n * 12);
        let int = || Int64Builder::with_capacity(n);
        let time = || TimestampMicrosecondBuilder::with_capacity(n);
        EventColumns {
            event_id: text(),
            user_id: int(),
            product_id: int(),
            event_type: text(),
            event_time: time(),
            ingestion_time: time(),
            session_id: text(),
            producer_time: time(),
            rows: 0,
        }
    }

    pub fn push(&mut self, e: &crate::domain::Event) {
        // As `write_time` writes it: a leap second's fraction stops at .999999 of its second.
        let micros = |t: DateTime<Utc>| {
            let t = if t.nanosecond() >= 1_000_000_000 {
                t.with_nanosecond(999_999_000).unwrap_or(t)
            } else {
                t
            };
            t.timestamp_micros()
        };
        self.event_id.append_value(&e.event_id);
        self.user_id.append_value(e.user_id);
        self.product_id.append_value(e.product_id);
        self.event_type.append_value(e.event_type.as_str());
        self.event_time.append_value(micros(e.event_time));
        self.ingestion_time
            .append_option(e.ingestion_time.map(micros));
        self.session_id.append_value(&e.session_id);
        self.producer_time
            .append_option(e.producer_time.map(micros));
        self.rows += 1;
    }

    /// The columns, each row's source key `key` and ordinal its place in the segment.
    pub fn finish(mut self, key: &str) -> Result<RecordBatch> {
        let n = self.rows;
        let mut source = StringBuilder::with_capacity(n, n * key.len());
        for _ in 0..n {
            source.append_value(key);
        }
        let ordinal: Int64Array = (0..n as i64).collect::<Vec<i64>>().into();
        batch_of(vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.product_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.ingestion_time.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.producer_time.finish()),
            Arc::new(source.finish()),
            Arc::new(ordinal),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::{parse_rows, schema};

    #[test]
    fn cells_go_to_columns_and_back() {
        let body = concat!(
            r#"{"order_id":1,"user_id":1,"order_time":"2026-03-01T10:00:00Z","order_status":"placed","order_total_cents":1000,"item_count":1}"#,
            "\n",
            r#"{"order_id":2,"user_id":2,"order_time":"2026-03-02T10:00:00Z","order_status":"empty","order_total_cents":0,"item_count":0}"#,
            "\n",
        );
        let spec = schema::ORDERS;
        let rows = parse_rows(&spec, "k", body.as_bytes()).unwrap();
        let b = of_cells(&spec, &rows).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(cells_of(&b).unwrap(), rows);
        let moved = cells_of(&with_place(&b, 3).unwrap()).unwrap();
        assert_eq!(moved[1].last(), Some(&Cell::Int((3 << 32) + 1)));
        assert!(keys_distinct(&spec, [&b].into_iter()));
        assert!(
            !keys_distinct(&spec, [&b, &b].into_iter()),
            "the same keys twice"
        );
    }

    #[test]
    fn a_timestamp_outside_chrono_is_an_error_not_a_null() {
        let times: TimestampMicrosecondArray = vec![Some(0), Some(i64::MAX)].into();
        let b = batch_of(vec![Arc::new(times)]).unwrap();
        let err = cells_of(&b).unwrap_err().to_string();
        assert!(err.contains("outside the timestamps"), "{err}");
        assert!(days_of([&b].into_iter(), 0).is_err());
    }

    #[test]
    fn first_copies_keep_each_id_once_in_order() {
        let batch = |ids: &[&str]| {
            let arr: ArrayRef = Arc::new(StringArray::from(ids.to_vec()));
            let n: ArrayRef = Arc::new(Int64Array::from((0..ids.len() as i64).collect::<Vec<_>>()));
            RecordBatch::try_from_iter([("id", arr), ("n", n)]).unwrap()
        };
        let (a, b) = (batch(&["x", "y", "x"]), batch(&["z", "y", "w"]));
        let out = first_copies(&[&a, &b], 0).unwrap().unwrap();
        let ids = |r: &RecordBatch| {
            let c = r.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let n = r.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..r.num_rows())
                .map(|i| format!("{}{}", c.value(i), n.value(i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&out[0]), ["x0", "y1"]);
        assert_eq!(ids(&out[1]), ["z0", "w2"]);
        let nulls: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None]));
        let with_null = RecordBatch::try_from_iter([("id", nulls)]).unwrap();
        assert!(first_copies(&[&with_null], 0).unwrap().is_none());
    }

    #[test]
    fn a_row_of_the_wrong_shape_is_refused() {
        let err = of_cells(&schema::ORDERS, &[vec![Cell::Int(1)]]).unwrap_err();
        assert!(err.to_string().contains("1 cells"), "{err}");
    }
}
