//! Lifecycle and pruning. Locally, `prune` deletes RAW/STAGING objects past their zone's
//! retention only when the ledger shows them loaded to the warehouse (never unloaded data),
//! quarantined records past theirs, CURATED rows of days past `curated_days`, and late-buffer
//! objects once a backfill has loaded every day of them (`warehouse::late_index`). On S3 the
//! same rules become the bucket's lifecycle configuration (`ecomops lifecycle [--apply]`),
//! with storage-class transitions; the dry run prints the difference first.

use std::collections::BTreeSet;

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleRule, LifecycleRuleFilter, Transition,
    TransitionStorageClass,
};
use chrono::{DateTime, Utc};

use crate::config::{Config, LifecycleConfig, S3Config};
use crate::cost::zone_rules;
use crate::error::{Error, Result};
use crate::store::ObjectStore;
use crate::warehouse::{late_index, schema, verify::staged_entities, Warehouse};
use crate::zones::{self, Zone};

pub use ecom_model::report::{LifecyclePlan, PruneReport};

/// Whether the warehouse has loaded what `key` holds.
fn loaded(key: &str, ledger: &BTreeSet<String>) -> bool {
    if key.starts_with("staging/") {
        return ledger.contains(key);
    }
    // raw/<source>/<entity>/...: every STAGING object derived from it must be in the ledger.
    let entity = key.split('/').nth(2).unwrap_or_default();
    let targets = staged_entities(entity);
    !targets.is_empty()
        && targets
            .iter()
            .all(|e| zones::staging_key_for(key, e).is_some_and(|k| ledger.contains(&k)))
}

/// The models partitioned by day, and their day column.
fn curated_days() -> impl Iterator<Item = (String, &'static str)> {
    crate::warehouse::models::MODEL_SPECS
        .into_iter()
        .filter_map(|m| m.day.map(|d| (m.table(), d)))
}

fn zone_name(zone: Zone) -> &'static str {
    match zone {
        Zone::Raw => "raw",
        Zone::Staging => "staging",
        Zone::Curated => "curated",
        Zone::Quarantine => "quarantine",
        Zone::Late => "late",
    }
}

pub async fn prune(
    store: &dyn ObjectStore,
    wh: Option<&dyn Warehouse>,
    lifecycle: &LifecycleConfig,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport> {
    let mut r = PruneReport {
        dry_run,
        ..PruneReport::default()
    };
    let ledger: BTreeSet<String> = match wh {
        Some(w) => w
            .query("SELECT object_key FROM ops.ledger")
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect(),
        None => BTreeSet::new(),
    };
    let mut curated = Vec::new();
    for (zone, objects) in zones::zone_listing(store).await? {
        if zone == Zone::Curated {
            // Pruned by day with the models' rows (below), not by age.
            curated = objects;
            continue;
        }
        if zone == Zone::Late {
            // A late object goes once a backfill has loaded every day of it (its events are
            // then in STAGING, and RAW keeps the segment as received); never before.
            let Some(w) = wh else { continue };
            let done = late_index::fully_backfilled(w).await?;
            // The rest wait for their backfill: not past any retention, so not "kept".
            let doomed: Vec<_> = objects
                .into_iter()
                .filter(|o| done.contains(&o.key))
                .collect();
            r.deleted_bytes += doomed.iter().map(|o| o.size).sum::<u64>();
            let doomed: Vec<String> = doomed.into_iter().map(|o| o.key).collect();
            if !dry_run && !doomed.is_empty() {
                let mut sql = schema::pruned_sql(zone_name(zone), &doomed, now);
                sql.extend(late_index::forget_sql(&doomed));
                w.execute_tx(sql).await?;
                for key in &doomed {
                    store.delete(key).await?;
                }
            }
            r.deleted.extend(doomed);
            continue;
        }
        let Some(rules) = zone_rules(lifecycle, zone) else {
            continue;
        };
        if rules.retention_days == 0 {
            continue;
        }
        let mut doomed = Vec::new();
        for o in objects {
            let age = o.last_modified.map_or(0, |t| (now - t).num_days());
            if age < rules.retention_days as i64 {
                continue;
            }
            // Quarantined records are never loaded: their retention is their whole life.
            if zone != Zone::Quarantine && !loaded(&o.key, &ledger) {
                r.kept_unloaded.push(o.key);
                continue;
            }
            r.deleted_bytes += o.size;
            doomed.push(o.key);
        }
        // The zone's deletions recorded in one transaction, then carried out.
        if !dry_run && !doomed.is_empty() {
            if let Some(w) = wh {
                w.execute_tx(schema::pruned_sql(zone_name(zone), &doomed, now))
                    .await?;
            }
            for key in &doomed {
                store.delete(key).await?;
            }
        }
        r.deleted.extend(doomed);
    }
    if let (Some(w), days) = (wh, lifecycle.curated_days) {
        if days > 0 {
            let cutoff = (now - chrono::Duration::days(days as i64)).date_naive();
            for (table, col) in curated_days() {
                let rows = w
                    .query(&format!(
                        "SELECT COUNT(*) FROM {table} WHERE {col} < DATE '{cutoff}'"
                    ))
                    .await?;
                r.curated_rows += rows
                    .first()
                    .and_then(|row| row.first().cloned().flatten())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0);
            }
            // The CURATED files of those days go with their rows.
            let (files, bytes): (Vec<String>, Vec<u64>) = curated
                .into_iter()
                .filter(|o| zones::curated_day(&o.key).is_some_and(|d| d < cutoff))
                .map(|o| (o.key, o.size))
                .unzip();
            r.deleted_bytes += bytes.iter().sum::<u64>();
            if !dry_run {
                let mut stmts: Vec<String> = curated_days()
                    .map(|(t, c)| format!("DELETE FROM {t} WHERE {c} < DATE '{cutoff}'"))
                    .collect();
                // The first day CURATED keeps, for `verify`, in the same transaction; the
                // files recorded pruned (and out of the ledger) before they are deleted.
                stmts.extend(schema::pruned_sql("curated", &[cutoff.to_string()], now));
                stmts.extend(schema::pruned_sql("curated_file", &files, now));
                for chunk in files.chunks(200) {
                    let keys: Vec<String> = chunk
                        .iter()
                        .map(|k| schema::literal(&crate::warehouse::Cell::Text(k.clone())))
                        .collect();
                    stmts.push(format!(
                        "DELETE FROM ops.ledger WHERE zone = 'curated' AND object_key IN ({})",
                        keys.join(", ")
                    ));
                }
                w.execute_tx(stmts).await?;
                for key in &files {
                    store.delete(key).await?;
                }
            }
            r.deleted.extend(files);
        }
    }
    if !r.kept_unloaded.is_empty() {
        tracing::warn!(
            count = r.kept_unloaded.len(),
            "objects past retention kept: the ledger does not show them loaded"
        );
    }
    Ok(r)
}

/// The bucket lifecycle rules for the config (one per zone with any rule), ids `ecomops-<zone>`.
pub fn s3_rules(lifecycle: &LifecycleConfig, prefix: &str) -> Result<Vec<LifecycleRule>> {
    let mut out = Vec::new();
    for zone in [Zone::Raw, Zone::Staging, Zone::Quarantine] {
        let Some(z) = zone_rules(lifecycle, zone) else {
            continue;
        };
        let mut transitions = Vec::new();
        if z.transition_ia_days > 0 {
            transitions.push(
                Transition::builder()
                    .days(z.transition_ia_days as i32)
                    .storage_class(TransitionStorageClass::StandardIa)
                    .build(),
            );
        }
        if z.transition_glacier_days > 0 {
            transitions.push(
                Transition::builder()
                    .days(z.transition_glacier_days as i32)
                    .storage_class(TransitionStorageClass::GlacierIr)
                    .build(),
            );
        }
        if transitions.is_empty() && z.retention_days == 0 {
            continue;
        }
        if transitions.is_empty() {
            // A rule must have an action; retention alone is prune's (see below).
            continue;
        }
        let rule = LifecycleRule::builder()
            .id(format!("ecomops-{}", zone.name().to_lowercase()))
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(format!("{prefix}{}", zone.prefix()))
                    .build(),
            )
            .status(ExpirationStatus::Enabled)
            .set_transitions(Some(transitions));
        // No Expiration: the bucket would delete objects the ledger does not show loaded, and
        // without the record `verify` needs. `ecomops prune` applies retention (ledger-aware,
        // recorded in ops.pruned); the bucket only moves objects to cheaper classes.
        out.push(rule.build().map_err(|e| Error::Other(e.to_string()))?);
    }
    Ok(out)
}

/// One line per rule, for the dry run's difference.
pub fn describe(rule: &LifecycleRule) -> String {
    let prefix = rule
        .filter()
        .and_then(|f| f.prefix())
        .unwrap_or_default()
        .to_string();
    let transitions: Vec<String> = rule
        .transitions()
        .iter()
        .map(|t| {
            format!(
                "{} after {}d",
                t.storage_class().map_or("?", |c| c.as_str()),
                t.days().unwrap_or(0)
            )
        })
        .collect();
    let expire = rule
        .expiration()
        .and_then(|e| e.days())
        .map_or("never".to_string(), |d| format!("{d}d"));
    format!(
        "{}: prefix {prefix:?}, transitions [{}], expire {expire}, {}",
        rule.id().unwrap_or("-"),
        transitions.join(", "),
        rule.status().as_str()
    )
}

/// Compare the bucket's lifecycle configuration with the config's rules; apply when asked.
pub async fn s3_lifecycle(config: &Config, apply: bool) -> Result<LifecyclePlan> {
    let s3: &S3Config = &config.store.s3;
    if s3.bucket.is_empty() {
        return Err(Error::Config {
            path: "store.s3.bucket".into(),
            message: "`lifecycle` manages an S3 bucket's rules: set store.backend = \"s3\" and store.s3.bucket (locally, `ecomops prune` applies retention)".into(),
        });
    }
    let client = crate::store::aws_s3::client(s3).await;
    let aws = |op: &'static str, e: String| Error::Aws {
        service: "s3",
        operation: op,
        message: e,
    };
    let current: Vec<LifecycleRule> = match client
        .get_bucket_lifecycle_configuration()
        .bucket(&s3.bucket)
        .send()
        .await
    {
        Ok(out) => out.rules().to_vec(),
        Err(e) => {
            let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            if text.contains("NoSuchLifecycleConfiguration") {
                Vec::new()
            } else {
                return Err(aws("GetBucketLifecycleConfiguration", text));
            }
        }
    };
    let desired = s3_rules(&config.lifecycle, &s3.prefix)?;
    let cur: Vec<String> = current.iter().map(describe).collect();
    let want: Vec<String> = desired.iter().map(describe).collect();
    let mut diff: Vec<String> = cur
        .iter()
        .filter(|l| !want.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    diff.extend(
        want.iter()
            .filter(|l| !cur.contains(l))
            .map(|l| format!("+ {l}")),
    );
    let mut applied = false;
    if apply && !diff.is_empty() {
        let conf = BucketLifecycleConfiguration::builder()
            .set_rules(Some(desired))
            .build()
            .map_err(|e| Error::Other(e.to_string()))?;
        client
            .put_bucket_lifecycle_configuration()
            .bucket(&s3.bucket)
            .lifecycle_configuration(conf)
            .send()
            .await
            .map_err(|e| {
                aws(
                    "PutBucketLifecycleConfiguration",
                    aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
        applied = true;
    }
    Ok(LifecyclePlan {
        bucket: s3.bucket.clone(),
        current: cur,
        desired: want,
        diff,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_follows_the_ledger() {
        let ledger: BTreeSet<String> = [
            "staging/orders/window=all_all/carts-ab.ndjson".to_string(),
            "staging/order_items/window=all_all/carts-ab.ndjson".to_string(),
            "staging/users/window=all_all/users-cd.ndjson".to_string(),
        ]
        .into();
        assert!(loaded(
            "raw/synthetic/carts/window=all_all/carts-ab.json",
            &ledger
        ));
        assert!(!loaded(
            "raw/synthetic/products/window=all_all/products-ef.json",
            &ledger
        ));
        assert!(loaded(
            "staging/users/window=all_all/users-cd.ndjson",
            &ledger
        ));
        assert!(!loaded(
            "staging/users/window=all_all/users-xx.ndjson",
            &ledger
        ));
    }

    #[test]
    fn rules_per_zone() {
        let rules = s3_rules(&LifecycleConfig::default(), "ecomops/").unwrap();
        let lines: Vec<String> = rules.iter().map(describe).collect();
        assert_eq!(
            lines,
            vec![
                "ecomops-raw: prefix \"ecomops/raw/\", transitions [STANDARD_IA after 30d, GLACIER_IR after 90d], expire never, Enabled",
                "ecomops-staging: prefix \"ecomops/staging/\", transitions [STANDARD_IA after 30d], expire never, Enabled",
            ]
        );
    }
}
