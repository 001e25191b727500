//! CURATED models, incremental by day.
//!
//! Dimensions (`dim_products`, `dim_users`) are small and rebuilt whole. Facts
//! (`fct_orders`, `fct_order_items`) and the daily aggregates (`daily_metrics`,
//! `daily_category_sales`) are partitioned by order day: a refresh deletes and re-inserts only
//! the days in `ops.refresh_days`, which is the dirty days plus a lookback window (or exactly
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

pub const MODELS: [&str; 8] = [
    "dim_products",
    "dim_users",
    "fct_orders",
    "fct_order_items",
    "fct_events",
    "daily_metrics",
    "daily_category_sales",
    "daily_funnel",
];

pub fn ddl(d: Dialect) -> Vec<String> {
    let text = Ty::Text.sql(d);
    let double = Ty::Double.sql(d);
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS curated.dim_products (product_id BIGINT NOT NULL, \
             title {text} NOT NULL, category {text} NOT NULL, price_cents BIGINT NOT NULL, \
             rating_rate {double} NOT NULL, rating_count BIGINT NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS curated.dim_users (user_id BIGINT NOT NULL, \
             username {text} NOT NULL, city {text} NOT NULL, zipcode {text} NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS curated.fct_orders (order_id BIGINT NOT NULL, \
             user_id BIGINT NOT NULL, order_day DATE NOT NULL, order_time TIMESTAMP NOT NULL, \
             order_status {text} NOT NULL, order_total_cents BIGINT NOT NULL, item_count BIGINT NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS curated.fct_order_items (order_id BIGINT NOT NULL, \
             line_no BIGINT NOT NULL, order_day DATE NOT NULL, product_id BIGINT NOT NULL, \
             category {text} NOT NULL, quantity BIGINT NOT NULL, unit_price_cents BIGINT NOT NULL, \
             line_total_cents BIGINT NOT NULL, order_status {text} NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS curated.fct_events (event_id {text} NOT NULL, \
             event_day DATE NOT NULL, user_id BIGINT NOT NULL, product_id BIGINT NOT NULL, \
             event_type {text} NOT NULL, event_time TIMESTAMP NOT NULL, session_id {text} NOT NULL)"
        ),
        "CREATE TABLE IF NOT EXISTS curated.daily_funnel (day DATE NOT NULL, sessions BIGINT NOT NULL, \
         viewed BIGINT NOT NULL, carted BIGINT NOT NULL, checked_out BIGINT NOT NULL, \
         purchased BIGINT NOT NULL)"
            .to_string(),
        format!(
            "CREATE TABLE IF NOT EXISTS curated.daily_metrics (day DATE NOT NULL, \
             orders BIGINT NOT NULL, revenue_cents BIGINT NOT NULL, avg_order_value_cents {double})"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS curated.daily_category_sales (day DATE NOT NULL, \
             category {text} NOT NULL, orders BIGINT NOT NULL, units BIGINT NOT NULL, \
             revenue_cents BIGINT NOT NULL)"
        ),
    ]
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

const IN_DAYS: &str = "IN (SELECT day FROM ops.refresh_days)";

/// The statements of one refresh of `days`, to run in one transaction.
pub fn refresh_sql(days: &BTreeSet<NaiveDate>) -> Vec<String> {
    let mut out = vec!["DELETE FROM ops.refresh_days".to_string()];
    // One INSERT per 500 days keeps statements small.
    let all: Vec<&NaiveDate> = days.iter().collect();
    for chunk in all.chunks(500) {
        let mut sql = String::from("INSERT INTO ops.refresh_days (day) VALUES ");
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
         rating_count) SELECT product_id, title, category, price_cents, rating_rate, rating_count \
         FROM staging.products"
            .to_string(),
        "DELETE FROM curated.dim_users".to_string(),
        "INSERT INTO curated.dim_users (user_id, username, city, zipcode) SELECT user_id, \
         username, city, zipcode FROM staging.users"
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
             category, quantity, unit_price_cents, line_total_cents, order_status) SELECT \
             i.order_id, i.line_no, CAST(o.order_time AS DATE), i.product_id, \
             COALESCE(p.category, 'unknown'), i.quantity, i.unit_price_cents, i.line_total_cents, \
             o.order_status FROM staging.order_items AS i JOIN staging.orders AS o ON o.order_id = \
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
             event_time, session_id) SELECT event_id, CAST(event_time AS DATE), user_id, product_id, \
             event_type, event_time, session_id FROM staging.events WHERE CAST(event_time AS DATE) \
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
        format!("DELETE FROM ops.dirty_partitions WHERE day {IN_DAYS}"),
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
