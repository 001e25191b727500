//! One batch pull from the synthetic source: each response lands in RAW as received under a
//! key made of source, entity, window and content hash (put-if-absent, so a rerun of the same
//! pull is a duplicate file: skipped and counted), then its typed rows go to STAGING and its
//! refused records to quarantine, under keys derived from the RAW key.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::stage::{self, Quarantined};
use super::synthetic::SyntheticSource;
use crate::error::{Error, Result};
use crate::store::{sha256_hex, ObjectStore, PutOutcome};
use crate::zones;

/// What happened to one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandedFile {
    pub entity: String,
    pub raw_key: String,
    pub sha256: String,
    pub bytes: u64,
    /// The same bytes were already in RAW.
    pub duplicate: bool,
}

/// The outcome of one pull.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PullReport {
    pub source: String,
    pub files: Vec<LandedFile>,
    /// Rows written to STAGING per entity (by this pull; duplicates stage nothing new).
    pub staged: BTreeMap<String, u64>,
    /// Records refused per entity.
    pub quarantined: BTreeMap<String, u64>,
}

impl PullReport {
    pub fn duplicates(&self) -> usize {
        self.files.iter().filter(|f| f.duplicate).count()
    }

    /// One line for logs and the cycle report.
    pub fn summary(&self) -> String {
        let staged: Vec<String> = self
            .staged
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let quarantined: u64 = self.quarantined.values().sum();
        format!(
            "batch ({}): {} files, {} new, {} duplicate skipped; staged {}; quarantined {quarantined}",
            self.source,
            self.files.len(),
            self.files.len() - self.duplicates(),
            self.duplicates(),
            if staged.is_empty() { "nothing new".to_string() } else { staged.join(", ") },
        )
    }
}

/// Pull everything from the synthetic source into RAW and STAGING.
pub async fn pull_synthetic(
    store: &dyn ObjectStore,
    source: &SyntheticSource,
    now: DateTime<Utc>,
) -> Result<PullReport> {
    let mut report = PullReport {
        source: "synthetic".into(),
        ..PullReport::default()
    };
    let window = zones::window_partition(None, None);
    let products_body = source.products();
    let users_body = source.users();
    let carts_body = source.carts(None, None);

    let invalid = |what: &str, why: crate::domain::Invalid| {
        Error::Invalid(format!("{what} response unusable: {why}"))
    };
    // Carts are priced from this pull's products, whether or not that file is new.
    let products = stage::stage_products(&products_body).map_err(|e| invalid("products", e))?;
    let prices: HashMap<i64, i64> = products
        .rows
        .iter()
        .map(|p| (p.product_id, p.price_cents))
        .collect();

    let raw = land(
        store,
        &mut report,
        "products",
        &window,
        products_body.clone(),
    )
    .await?;
    if let Some(raw_key) = raw {
        write_staged(
            store,
            &mut report,
            &raw_key,
            "products",
            &products.rows,
            &products.quarantined,
        )
        .await?;
    }
    if let Some(raw_key) = land(store, &mut report, "users", &window, users_body.clone()).await? {
        let users = stage::stage_users(&users_body).map_err(|e| invalid("users", e))?;
        write_staged(
            store,
            &mut report,
            &raw_key,
            "users",
            &users.rows,
            &users.quarantined,
        )
        .await?;
    }
    if let Some(raw_key) = land(store, &mut report, "carts", &window, carts_body.clone()).await? {
        let (orders, items) =
            stage::stage_carts(&carts_body, &prices, now).map_err(|e| invalid("carts", e))?;
        write_staged(
            store,
            &mut report,
            &raw_key,
            "orders",
            &orders.rows,
            &orders.quarantined,
        )
        .await?;
        write_staged(
            store,
            &mut report,
            &raw_key,
            "order_items",
            &items.rows,
            &items.quarantined,
        )
        .await?;
    }
    tracing::info!("{}", report.summary());
    Ok(report)
}

/// Land one response in RAW. Returns the RAW key when it still needs staging: a new file, or a
/// duplicate whose STAGING object is missing (a crash between the two writes).
async fn land(
    store: &dyn ObjectStore,
    report: &mut PullReport,
    entity: &str,
    window: &str,
    body: Vec<u8>,
) -> Result<Option<String>> {
    let sha = sha256_hex(&body);
    let key = zones::raw_batch_key(&report.source, entity, window, &sha);
    let put = store.put_if_absent(&key, Bytes::from(body)).await?;
    let duplicate = put.outcome == PutOutcome::AlreadyPresent;
    report.files.push(LandedFile {
        entity: entity.to_string(),
        raw_key: key.clone(),
        sha256: sha,
        bytes: put.meta.size,
        duplicate,
    });
    if !duplicate {
        return Ok(Some(key));
    }
    tracing::info!(raw_key = %key, "duplicate file: already in RAW, skipped");
    let staged_entity = if entity == "carts" { "orders" } else { entity };
    let staging = zones::staging_key_for(&key, staged_entity)
        .ok_or_else(|| Error::Other(format!("no staging key for {key}")))?;
    Ok(match store.head(&staging).await? {
        Some(_) => None,
        None => Some(key),
    })
}

async fn write_staged<T: Serialize>(
    store: &dyn ObjectStore,
    report: &mut PullReport,
    raw_key: &str,
    entity: &str,
    rows: &[T],
    quarantined: &[Quarantined],
) -> Result<()> {
    let missing = || Error::Other(format!("no zone key derivable from {raw_key}"));
    let staging = zones::staging_key_for(raw_key, entity).ok_or_else(missing)?;
    store
        .put(&staging, Bytes::from(stage::to_ndjson(rows)))
        .await?;
    *report.staged.entry(entity.to_string()).or_default() += rows.len() as u64;
    if !quarantined.is_empty() {
        let key = zones::quarantine_key_for(raw_key, entity).ok_or_else(missing)?;
        store
            .put(&key, Bytes::from(stage::to_ndjson(quarantined)))
            .await?;
        tracing::warn!(entity, count = quarantined.len(), key = %key, "records quarantined");
    }
    *report.quarantined.entry(entity.to_string()).or_default() += quarantined.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;

    #[tokio::test]
    async fn a_rerun_lands_nothing_new_and_counts_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let src = SyntheticSource::new(42, 1);
        let now = Utc::now();
        let first = pull_synthetic(&store, &src, now).await.unwrap();
        assert_eq!(first.duplicates(), 0);
        assert_eq!(first.staged["orders"], 40);
        assert_eq!(first.staged["products"], 20);
        let before = store.list("").await.unwrap();

        let second = pull_synthetic(&store, &src, now).await.unwrap();
        assert_eq!(second.duplicates(), 3);
        assert!(second.staged.is_empty(), "{second:?}");
        assert_eq!(
            store.list("").await.unwrap(),
            before,
            "a rerun must change nothing"
        );

        // A lost STAGING object (crash between RAW and STAGING) is rebuilt, byte-identical.
        let orders_key = before
            .iter()
            .find(|m| m.key.starts_with("staging/orders/"))
            .unwrap();
        store.delete(&orders_key.key).await.unwrap();
        let third = pull_synthetic(&store, &src, now).await.unwrap();
        assert_eq!(third.staged["orders"], 40);
        let after = store.list("").await.unwrap();
        let sha = |l: &[crate::store::ObjectMeta]| {
            l.iter()
                .map(|m| (m.key.clone(), m.sha256.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(sha(&after), sha(&before));
    }
}
