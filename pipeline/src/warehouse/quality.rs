//! Data-quality checks over the warehouse: referential integrity (orphans per relation, counted,
//! never dropped), freshness of each STAGING table against its SLA, the event volume of the last
//! 24 hours against the week before (an alert rule input: `events_volume_drop`), and the
//! ingestion delay per event day. The same SQL on every backend.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};

use super::schema::literal;
use super::{int, Cell, Warehouse};
use crate::config::FreshnessSla;
use crate::error::Result;

pub use ecom_model::warehouse::{DelayDay, Freshness, Quality};

/// (relation, child table, child column, parent table, parent column).
pub const RELATIONS: [(&str, &str, &str, &str, &str); 5] = [
    (
        "orders.user_id -> users",
        "staging.orders",
        "user_id",
        "staging.users",
        "user_id",
    ),
    (
        "order_items.order_id -> orders",
        "staging.order_items",
        "order_id",
        "staging.orders",
        "order_id",
    ),
    (
        "order_items.product_id -> products",
        "staging.order_items",
        "product_id",
        "staging.products",
        "product_id",
    ),
    (
        "events.user_id -> users",
        "staging.events",
        "user_id",
        "staging.users",
        "user_id",
    ),
    (
        "events.product_id -> products",
        "staging.events",
        "product_id",
        "staging.products",
        "product_id",
    ),
];

/// One query counting the orphans of every relation.
pub fn orphans_sql() -> String {
    let counts: Vec<String> = RELATIONS
        .iter()
        .map(|(_, child, col, parent, pcol)| {
            format!(
                "(SELECT CAST(COUNT(*) AS BIGINT) FROM {child} AS c WHERE NOT EXISTS \
                 (SELECT 1 FROM {parent} AS p WHERE p.{pcol} = c.{col}))"
            )
        })
        .collect();
    format!("SELECT {}", counts.join(", "))
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc())
}

fn float(cell: Option<&Option<String>>) -> Option<f64> {
    cell.and_then(|c| c.as_deref()).and_then(|s| s.parse().ok())
}

pub async fn quality(
    wh: &dyn Warehouse,
    sla: &FreshnessSla,
    now: DateTime<Utc>,
) -> Result<Quality> {
    let counts = wh.query(&orphans_sql()).await?;
    let orphans = RELATIONS
        .iter()
        .enumerate()
        .map(|(i, (name, ..))| (name.to_string(), int(counts.first().and_then(|r| r.get(i)))))
        .collect();

    let pulls = wh
        .query(
            "SELECT task, CAST(MAX(ended_at) AS VARCHAR) FROM ops.tasks WHERE status = \
             'succeeded' AND task IN ('extract_products', 'extract_users', 'extract_carts') \
             GROUP BY task",
        )
        .await?;
    let pulled = |task: &str| {
        pulls
            .iter()
            .find(|r| r.first().and_then(|c| c.as_deref()) == Some(task))
            .and_then(|r| r.get(1).cloned().flatten())
            .and_then(|s| time(&s))
    };
    let committed = wh
        .query("SELECT CAST(MAX(committed_at) AS VARCHAR) FROM ops.segments")
        .await?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|s| time(&s));
    let freshness = sla
        .entries()
        .into_iter()
        .map(|(entity, secs)| {
            let last_at = match entity {
                "products" => pulled("extract_products"),
                "users" => pulled("extract_users"),
                "orders" | "order_items" => pulled("extract_carts"),
                _ => committed,
            };
            Freshness {
                table: format!("staging.{entity}"),
                last_at,
                sla_secs: secs,
                stale: last_at.is_none_or(|t| (now - t).num_seconds() > secs as i64),
            }
        })
        .collect();

    let at = |d: Duration| literal(&Cell::Time(now - d));
    let volume = wh
        .query(&format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN ingestion_time >= {day} THEN 1 ELSE 0 END), 0) \
             AS BIGINT), CAST(COALESCE(SUM(CASE WHEN ingestion_time < {day} THEN 1 ELSE 0 END), \
             0) AS BIGINT), CAST(MIN(ingestion_time) AS VARCHAR) FROM staging.events WHERE \
             ingestion_time >= {week} AND ingestion_time <= {now}",
            day = at(Duration::hours(24)),
            week = at(Duration::days(8)),
            now = at(Duration::zero()),
        ))
        .await?;
    let last = int(volume.first().and_then(|r| r.first()));
    let prior = int(volume.first().and_then(|r| r.get(1)));
    // Per day of the prior week the data covers (whole days, 1 to 7): a pipeline younger than
    // a week is not held against days it did not run.
    let covered = volume
        .first()
        .and_then(|r| r.get(2).cloned().flatten())
        .and_then(|s| time(&s))
        .map_or(7.0, |first| {
            let span = (now - Duration::hours(24) - first).num_seconds() as f64 / 86_400.0;
            span.ceil().clamp(1.0, 7.0)
        });
    let avg = prior as f64 / covered;
    let drop = (prior > 0).then(|| (1.0 - last as f64 / avg).max(0.0));

    let ingestion_delay = wh
        .query(
            "SELECT CAST(day AS VARCHAR), CAST(events AS BIGINT), p50_secs, p95_secs, max_secs \
             FROM curated.daily_ingestion_delay ORDER BY day DESC LIMIT 7",
        )
        .await?
        .iter()
        .filter_map(|r| {
            let day = r.first().cloned().flatten()?;
            Some(DelayDay {
                day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok()?,
                events: int(r.get(1)),
                p50_secs: float(r.get(2)),
                p95_secs: float(r.get(3)),
                max_secs: float(r.get(4)),
            })
        })
        .collect();

    Ok(Quality {
        orphans,
        freshness,
        events_last_24h: last,
        events_prior_daily_avg: avg,
        events_volume_drop: drop,
        ingestion_delay,
    })
}
