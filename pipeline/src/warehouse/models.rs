//! CURATED models, incremental by day.
//!
//! Dimensions (`dim_products`, `dim_users`) are small and rebuilt whole. Facts
//! (`fct_orders`, `fct_order_items`) and the daily aggregates (`daily_metrics`,
//! `daily_category_sales`) are partitioned by order day: a refresh deletes and re-inserts only
//! the days in the temporary table `refresh_days` (one per session, so two loaders never
//! share it), which is the dirty days plus a lookback window (or exactly
//! the days asked for by a backfill). Delete-then-insert of a whole day from STAGING makes a
//! refresh idempotent: running it twice gives the same rows. (The tables carry no primary keys:
//! they are derived, rewritten by day, and `verify` checks their counts against STAGING.)
//!
//! Definitions (also in the README): revenue is the sum of `order_total_cents` of orders in
//! state `placed` (a cart with at least one valid line); `empty` orders never count. Average
//! order value is revenue / placed orders. A category's orders are the placed orders with at
//! least one line in it. A session (by event day) reaches a funnel step when it has at least one
//! event of that type; conversion rate is sessions with a purchase / sessions; the drop-off of a
//! step is 1 - sessions reaching the next step / sessions reaching it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{Days, NaiveDate};

use super::schema::{Dialect, Ty};

/// A CURATED model's table: its columns (name, type, nullable) and, for a model partitioned
/// by day, the day column (its refreshed days are also written as Parquet files, see
/// `curated_files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Ty, bool)],
    /// The day column of a daily model.
    pub day: Option<&'static str>,
}

impl ModelSpec {
    pub fn table(&self) -> String {
        format!("curated.{}", self.name)
    }

    /// Whether its days are written to the CURATED zone as files.
    pub fn is_daily(&self) -> bool {
        self.name.starts_with("daily_")
    }
}

const fn m(
    name: &'static str,
    columns: &'static [(&'static str, Ty, bool)],
    day: Option<&'static str>,
) -> ModelSpec {
    ModelSpec { name, columns, day }
}

use Ty::{BigInt as I, Bool as B, Date as D, Double as F, Text as T, Timestamp as TS};

/// Every model, in refresh order. Columns marked nullable (`true`) after the first schema's
/// were added later: `migrate` adds them to an existing warehouse.
pub const MODEL_SPECS: [ModelSpec; 9] = [
    m(
        "dim_products",
        &[
            ("product_id", I, false),
            ("title", T, false),
            ("category", T, false),
            ("price_cents", I, false),
            ("rating_rate", F, false),
            ("rating_count", I, false),
            ("name", T, true),
            ("is_active", B, true),
            ("created_at", TS, true),
        ],
        None,
    ),
    m(
        "dim_users",
        &[
            ("user_id", I, false),
            ("username", T, false),
            ("city", T, false),
            ("zipcode", T, false),
            ("country", T, true),
            ("created_at", TS, true),
        ],
        None,
    ),
    m(
        "fct_orders",
        &[
            ("order_id", I, false),
            ("user_id", I, false),
            ("order_day", D, false),
            ("order_time", TS, false),
            ("order_status", T, false),
            ("order_total_cents", I, false),
            ("item_count", I, false),
        ],
        Some("order_day"),
    ),
    m(
        "fct_order_items",
        &[
            ("order_id", I, false),
            ("line_no", I, false),
            ("order_day", D, false),
            ("product_id", I, false),
            ("category", T, false),
            ("quantity", I, false),
            ("unit_price_cents", I, false),
            ("line_total_cents", I, false),
            ("order_status", T, false),
            ("order_item_id", I, true),
        ],
        Some("order_day"),
    ),
    m(
        "fct_events",
        &[
            ("event_id", T, false),
            ("event_day", D, false),
            ("user_id", I, false),
            ("product_id", I, false),
            ("event_type", T, false),
            ("event_time", TS, false),
            ("session_id", T, false),
            ("ingestion_time", TS, true),
            ("producer_time", TS, true),
        ],
        Some("event_day"),
    ),
    m(
        "daily_metrics",
        &[
            ("day", D, false),
            ("orders", I, false),
            ("revenue_cents", I, false),
            ("avg_order_value_cents", F, true),
        ],
        Some("day"),
    ),
    m(
        "daily_category_sales",
        &[
            ("day", D, false),
            ("category", T, false),
            ("orders", I, false),
            ("units", I, false),
            ("revenue_cents", I, false),
        ],
        Some("day"),
    ),
    m(
        "daily_funnel",
        &[
            ("day", D, false),
            ("sessions", I, false),
            ("viewed", I, false),
            ("carted", I, false),
            ("checked_out", I, false),
            ("purchased", I, false),
        ],
        Some("day"),
    ),
    // Ingestion delay (ingestion_time - event_time, seconds) of each event day: the late-data
    // signal as a distribution.
    m(
        "daily_ingestion_delay",
        &[
            ("day", D, false),
            ("events", I, false),
            ("p50_secs", F, true),
            ("p95_secs", F, true),
            ("max_secs", F, true),
        ],
        Some("day"),
    ),
];

pub fn model_spec(name: &str) -> Option<ModelSpec> {
    MODEL_SPECS.into_iter().find(|m| m.name == name)
}

pub fn ddl(d: Dialect) -> Vec<String> {
    MODEL_SPECS
        .iter()
        .map(|m| {
            let cols: Vec<String> = m
                .columns
                .iter()
                .map(|(name, ty, nullable)| {
                    format!(
                        "{name} {}{}",
                        ty.sql(d),
                        if *nullable { "" } else { " NOT NULL" }
                    )
                })
                .collect();
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                m.table(),
                cols.join(", ")
            )
        })
        .collect()
}

/// The days an incremental refresh recomputes: each dirty day and the `lookback` days before it.
pub fn refresh_days(dirty: &BTreeSet<NaiveDate>, lookback: u32) -> BTreeSet<NaiveDate> {
    dirty
        .iter()
        // Checked: a day near the calendar's start has fewer days before it.
        .flat_map(|d| {
            (0..=u64::from(lookback)).filter_map(move |k| d.checked_sub_days(Days::new(k)))
        })
        .collect()
}

/// The refresh's days: a temporary table of the session running it (on Redshift the Data API
/// session), so refreshes of two processes never read each other's days.
const DAYS_TABLE: &str = "refresh_days";
const IN_DAYS: &str = "IN (SELECT day FROM refresh_days)";

/// The statements of one refresh of `days`, to run in one transaction.
pub fn refresh_sql(d: Dialect, days: &BTreeSet<NaiveDate>) -> Vec<String> {
    // Seconds since the epoch with their fraction. Redshift's EXTRACT of a TIMESTAMP is an
    // INTEGER, of a TIMESTAMPTZ a DOUBLE PRECISION
    // (docs.aws.amazon.com/redshift/latest/dg/r_EXTRACT_function.html); DuckDB keeps the
    // fraction of a TIMESTAMP, and its TIMESTAMPTZ needs the ICU extension it is built without.
    let epoch = |col: &str| match d {
        Dialect::DuckDb => format!("EXTRACT(EPOCH FROM {col})"),
        Dialect::Redshift => format!("EXTRACT(EPOCH FROM CAST({col} AS TIMESTAMPTZ))"),
    };
    let mut out = vec![
        format!("DROP TABLE IF EXISTS {DAYS_TABLE}"),
        format!("CREATE TEMP TABLE {DAYS_TABLE} (day DATE NOT NULL)"),
    ];
    // One INSERT per 500 days keeps statements small.
    let all: Vec<&NaiveDate> = days.iter().collect();
    for chunk in all.chunks(500) {
        let mut sql = format!("INSERT INTO {DAYS_TABLE} (day) VALUES ");
        for (i, d) in chunk.iter().enumerate() {
            let _ = write!(
                sql,
                "{}(CAST('{}' AS DATE))",
                if i == 0 { "" } else { ", " },
                d.format("%Y-%m-%d")
            );
        }
        out.push(sql);
    }
    out.extend([
        "DELETE FROM curated.dim_products".to_string(),
        "INSERT INTO curated.dim_products (product_id, title, category, price_cents, rating_rate, \
         rating_count, name, is_active, created_at) SELECT product_id, title, category, \
         price_cents, rating_rate, rating_count, name, is_active, created_at FROM staging.products"
            .to_string(),
        "DELETE FROM curated.dim_users".to_string(),
        "INSERT INTO curated.dim_users (user_id, username, city, zipcode, country, created_at) \
         SELECT user_id, username, city, zipcode, country, created_at FROM staging.users"
            .to_string(),
        format!("DELETE FROM curated.fct_orders WHERE order_day {IN_DAYS}"),
        format!(
            "INSERT INTO curated.fct_orders (order_id, user_id, order_day, order_time, \
             order_status, order_total_cents, item_count) SELECT order_id, user_id, \
             CAST(order_time AS DATE), order_time, order_status, order_total_cents, item_count \
             FROM staging.orders WHERE CAST(order_time AS DATE) {IN_DAYS}"
        ),
        format!("DELETE FROM curated.fct_order_items WHERE order_day {IN_DAYS}"),
        format!(
            "INSERT INTO curated.fct_order_items (order_id, line_no, order_day, product_id, \
             category, quantity, unit_price_cents, line_total_cents, order_status, order_item_id) \
             SELECT i.order_id, i.line_no, CAST(o.order_time AS DATE), i.product_id, \
             COALESCE(p.category, 'unknown'), i.quantity, i.unit_price_cents, i.line_total_cents, \
             o.order_status, i.order_item_id FROM staging.order_items AS i JOIN staging.orders AS o ON o.order_id = \
             i.order_id LEFT JOIN staging.products AS p ON p.product_id = i.product_id WHERE \
             CAST(o.order_time AS DATE) {IN_DAYS}"
        ),
        format!("DELETE FROM curated.daily_metrics WHERE day {IN_DAYS}"),
        format!(
            "INSERT INTO curated.daily_metrics (day, orders, revenue_cents, avg_order_value_cents) \
             SELECT order_day, SUM(CASE WHEN order_status = 'placed' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN order_status = 'placed' THEN order_total_cents ELSE 0 END), \
             CASE WHEN SUM(CASE WHEN order_status = 'placed' THEN 1 ELSE 0 END) > 0 THEN \
             SUM(CASE WHEN order_status = 'placed' THEN order_total_cents ELSE 0 END) * 1.0 / \
             SUM(CASE WHEN order_status = 'placed' THEN 1 ELSE 0 END) END \
             FROM curated.fct_orders WHERE order_day {IN_DAYS} GROUP BY order_day"
        ),
        format!("DELETE FROM curated.daily_category_sales WHERE day {IN_DAYS}"),
        format!(
            "INSERT INTO curated.daily_category_sales (day, category, orders, units, revenue_cents) \
             SELECT order_day, category, COUNT(DISTINCT order_id), SUM(quantity), \
             SUM(line_total_cents) FROM curated.fct_order_items WHERE order_status = 'placed' AND \
             order_day {IN_DAYS} GROUP BY order_day, category"
        ),
        format!("DELETE FROM curated.fct_events WHERE event_day {IN_DAYS}"),
        format!(
            "INSERT INTO curated.fct_events (event_id, event_day, user_id, product_id, event_type, \
             event_time, session_id, ingestion_time, producer_time) SELECT event_id, \
             CAST(event_time AS DATE), user_id, product_id, event_type, event_time, session_id, \
             ingestion_time, producer_time FROM staging.events WHERE CAST(event_time AS DATE) \
             {IN_DAYS}"
        ),
        format!("DELETE FROM curated.daily_funnel WHERE day {IN_DAYS}"),
        format!(
            "INSERT INTO curated.daily_funnel (day, sessions, viewed, carted, checked_out, purchased) \
             SELECT event_day, COUNT(*), SUM(viewed), SUM(carted), SUM(checked_out), SUM(purchased) \
             FROM (SELECT event_day, session_id, \
             MAX(CASE WHEN event_type = 'product_view' THEN 1 ELSE 0 END) AS viewed, \
             MAX(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carted, \
             MAX(CASE WHEN event_type = 'checkout' THEN 1 ELSE 0 END) AS checked_out, \
             MAX(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased \
             FROM curated.fct_events WHERE event_day {IN_DAYS} GROUP BY event_day, session_id) AS s \
             GROUP BY event_day"
        ),
        format!("DELETE FROM curated.daily_ingestion_delay WHERE day {IN_DAYS}"),
        // EXTRACT(EPOCH ...) and the ordered-set PERCENTILE_CONT read the same on DuckDB,
        // PostgreSQL and Redshift (whose sort-based aggregates in one query must share their
        // ORDER BY, as these do: docs.aws.amazon.com/redshift/latest/dg/r_PERCENTILE_CONT.html).
        format!(
            "INSERT INTO curated.daily_ingestion_delay (day, events, p50_secs, p95_secs, max_secs) \
             SELECT event_day, COUNT(*), \
             PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY delay), \
             PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY delay), MAX(delay) \
             FROM (SELECT event_day, CAST({} - {} AS DOUBLE PRECISION) AS delay FROM \
             curated.fct_events WHERE event_day {IN_DAYS} AND ingestion_time IS NOT NULL) AS x \
             GROUP BY event_day",
            epoch("ingestion_time"),
            epoch("event_time")
        ),
        // The refreshed days' CURATED files are (re)written after the commit (`curated_files`).
        format!(
            "INSERT INTO ops.curated_pending (day) SELECT r.day FROM {DAYS_TABLE} AS r WHERE \
             NOT EXISTS (SELECT 1 FROM ops.curated_pending AS p WHERE p.day = r.day)"
        ),
        format!("DELETE FROM ops.dirty_partitions WHERE day {IN_DAYS}"),
        format!("DROP TABLE {DAYS_TABLE}"),
    ]);
    out
}

/// Totals over all days: revenue (cents) and placed orders.
pub const TOTALS_SQL: &str = "SELECT CAST(COALESCE(SUM(revenue_cents), 0) AS BIGINT), \
     CAST(COALESCE(SUM(orders), 0) AS BIGINT) FROM curated.daily_metrics";

/// Sessions reaching each funnel step, over all days.
pub const FUNNEL_SQL: &str = "SELECT CAST(COALESCE(SUM(sessions), 0) AS BIGINT), \
     CAST(COALESCE(SUM(viewed), 0) AS BIGINT), CAST(COALESCE(SUM(carted), 0) AS BIGINT), \
     CAST(COALESCE(SUM(checked_out), 0) AS BIGINT), CAST(COALESCE(SUM(purchased), 0) AS BIGINT) \
     FROM curated.daily_funnel";

/// Revenue by category over all days, largest first.
pub const BY_CATEGORY_SQL: &str = "SELECT category, CAST(SUM(revenue_cents) AS BIGINT), \
     CAST(SUM(orders) AS BIGINT) FROM curated.daily_category_sales GROUP BY category \
     ORDER BY 2 DESC, 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookback_extends_each_dirty_day_backwards() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let dirty = BTreeSet::from([d("2026-03-10"), d("2026-03-20")]);
        let days = refresh_days(&dirty, 2);
        assert_eq!(days.len(), 6);
        assert!(days.contains(&d("2026-03-08")) && days.contains(&d("2026-03-20")));
        assert_eq!(refresh_days(&dirty, 0), dirty);
        // No panic at the calendar's start.
        let first = BTreeSet::from([NaiveDate::MIN]);
        assert_eq!(refresh_days(&first, 3), first);
    }
}
