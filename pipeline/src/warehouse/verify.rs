//! `ecomops verify`: reconcile RAW -> STAGING -> warehouse -> CURATED and list every
//! difference. A STAGING object whose bytes no longer hash to its ledger row is the "partial
//! write" scenario: it is rebuilt from RAW by the next batch run (the stage step rewrites a
//! missing or damaged STAGING object byte-identically) and reloaded.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::schema::{self, TABLES};
use super::{dirty_days, int, parse_rows, Cell, Warehouse};
use crate::error::Result;
use crate::store::{sha256_hex, ObjectStore};
use crate::zones;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub check: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Checks run.
    pub checks: u64,
    pub differences: Vec<Difference>,
    /// STAGING objects whose bytes do not match their ledger hash (partial writes).
    pub partial_writes: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }

    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.differences.push(Difference {
                check: name.to_string(),
                detail: detail(),
            });
        }
    }
}

/// Entities a RAW batch file is staged into.
pub(crate) fn staged_entities(raw_entity: &str) -> &'static [&'static str] {
    match raw_entity {
        "events" => &["events"],
        "products" => &["products"],
        "users" => &["users"],
        "carts" => &["orders", "order_items"],
        _ => &[],
    }
}

pub async fn verify(store: &dyn ObjectStore, wh: &dyn Warehouse) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    let staging: BTreeMap<String, String> = store
        .list("staging/")
        .await?
        .into_iter()
        .map(|m| (m.key, m.sha256))
        .collect();

    // RAW -> STAGING: every batch response has its STAGING objects.
    for m in store.list("raw/").await? {
        let mut parts = m.key.split('/');
        let (_, source, entity) = (parts.next(), parts.next(), parts.next());
        if source == Some("file") {
            continue; // an ingested file reaches STAGING through its stream segments
        }
        for staged in staged_entities(entity.unwrap_or_default()) {
            let key = zones::staging_key_for(&m.key, staged).unwrap_or_default();
            r.check("raw->staging", staging.contains_key(&key), || {
                format!("{} has no STAGING object {key}", m.key)
            });
        }
    }

    // STAGING -> ledger: each object's bytes hash to a loaded ledger row.
    let ledger: BTreeMap<String, String> = wh
        .query("SELECT object_key, sha256 FROM ops.ledger")
        .await?
        .into_iter()
        .filter_map(|row| match (row.first(), row.get(1)) {
            (Some(Some(k)), Some(Some(s))) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect();
    let loaded: HashSet<&String> = ledger.values().collect();
    let mut keys: BTreeMap<&str, BTreeSet<Vec<String>>> = BTreeMap::new();
    for key in staging.keys() {
        let body = match store.get(key).await {
            Ok(b) => b,
            Err(e) => {
                r.partial_writes.push(key.clone());
                r.check("staging readable", false, || format!("{key}: {e}"));
                continue;
            }
        };
        let actual = sha256_hex(&body);
        if let Some(recorded) = ledger.get(key) {
            let intact = *recorded == actual;
            if !intact {
                r.partial_writes.push(key.clone());
            }
            r.check("staging bytes = ledger hash", intact, || {
                format!("{key}: ledger sha256 {recorded}, object now {actual} (partial write)")
            });
        } else {
            r.check("staging -> ledger", loaded.contains(&actual), || {
                format!("{key} (sha256 {actual}) was never loaded")
            });
        }
        // Natural keys per entity, to compare with the warehouse tables.
        let entity = key.split('/').nth(1).unwrap_or_default();
        if let Some(spec) = schema::spec(entity) {
            let key_idx: Vec<usize> = spec
                .key
                .iter()
                .filter_map(|k| spec.columns.iter().position(|c| c.name == *k))
                .collect();
            match parse_rows(&spec, key, &body) {
                Ok(rows) => {
                    let set = keys.entry(spec.entity).or_default();
                    for row in rows {
                        set.insert(
                            key_idx
                                .iter()
                                .map(|i| match &row[*i] {
                                    Cell::Int(v) => v.to_string(),
                                    other => format!("{other:?}"),
                                })
                                .collect(),
                        );
                    }
                }
                Err(e) => r.check("staging parses", false, || e.to_string()),
            }
        }
    }

    // STAGING objects -> warehouse STAGING tables: the same distinct natural keys.
    for spec in TABLES {
        let expected = keys.get(spec.entity).map_or(0, |s| s.len()) as i64;
        let actual = super::table_rows(wh, &spec.table()).await?;
        r.check("staging rows", expected == actual, || {
            format!(
                "{}: {expected} distinct keys in STAGING objects, {actual} rows in the warehouse",
                spec.table()
            )
        });
    }

    // Warehouse STAGING -> CURATED.
    let dirty = dirty_days(wh).await?.len();
    r.check("models fresh", dirty == 0, || {
        format!("{dirty} day(s) await a model refresh")
    });
    for (from, to) in [
        ("staging.orders", "curated.fct_orders"),
        ("staging.order_items", "curated.fct_order_items"),
        ("staging.products", "curated.dim_products"),
        ("staging.users", "curated.dim_users"),
        ("staging.events", "curated.fct_events"),
    ] {
        let a = super::table_rows(wh, from).await?;
        let b = super::table_rows(wh, to).await?;
        r.check("curated rows", a == b, || {
            format!("{from} {a} rows, {to} {b}")
        });
    }
    let scalar = |rows: super::TextRows| int(rows.first().and_then(|r| r.first()));
    let staged_revenue = scalar(
        wh.query(
            "SELECT CAST(COALESCE(SUM(order_total_cents), 0) AS BIGINT) FROM staging.orders \
             WHERE order_status = 'placed'",
        )
        .await?,
    );
    let curated_revenue = scalar(
        wh.query(
            "SELECT CAST(COALESCE(SUM(revenue_cents), 0) AS BIGINT) FROM curated.daily_metrics",
        )
        .await?,
    );
    r.check("revenue", staged_revenue == curated_revenue, || {
        format!("staging revenue {staged_revenue} cents, curated {curated_revenue}")
    });
    let category_revenue = scalar(
        wh.query(
            "SELECT CAST(COALESCE(SUM(revenue_cents), 0) AS BIGINT) FROM curated.daily_category_sales",
        )
        .await?,
    );
    r.check(
        "revenue by category",
        category_revenue == curated_revenue,
        || format!("by category {category_revenue} cents, daily {curated_revenue}"),
    );
    Ok(r)
}
