//! Integrity scans: RAW and STAGING objects are read back and checked against the SHA-256
//! recorded when they were written. A mismatch (a truncated object, a flipped byte) is the
//! "partial write" failure scenario; `repair_plan` says how each damaged object is rebuilt.
//!
//! A scan does not re-read all data (O(all data) per cron run, and retrieval fees once objects
//! sit in Standard-IA or Glacier IR): it checks every object written or rewritten since the
//! last scan, plus a rolling sample of older ones within a byte budget, from where the last
//! sample stopped. `ScanPlan` (a timestamp and a key, kept in `<data_dir>/integrity.json`)
//! carries that across processes, so `--once` under cron is incremental too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{ObjectStat, ObjectStore};

/// Older objects sampled per scan at most, whatever their bytes: each costs a HEAD and a GET,
/// and small objects would otherwise fit the byte budget by the hundred thousand.
pub const MAX_SAMPLE_OBJECTS: usize = 1_000;

/// Where the last scan left off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPlan {
    /// Objects modified at or after this (ms since the epoch) have not been checked yet.
    pub checked_until_ms: Option<i64>,
    /// The rolling sample goes on after this key.
    pub cursor: Option<String>,
    /// Objects found damaged and not repaired yet: the scan has moved past them, so without
    /// this a new process (the next `--once`) would not know of them until the sample came
    /// round again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
}

impl ScanPlan {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("integrity.json")
    }

    /// The saved plan, or a fresh one (a full scan) when there is none or it is unreadable.
    pub fn load(data_dir: &Path) -> ScanPlan {
        std::fs::read(ScanPlan::path(data_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let body = serde_json::to_vec(self)?;
        crate::atomic_file::write(
            &ScanPlan::path(data_dir),
            &body,
            crate::atomic_file::Durability::Process,
        )
    }

    /// The objects to check now, and the plan after them: every object modified at or after
    /// `checked_until_ms` (or with no time), then older ones after the cursor, in key order and
    /// wrapping around, while `budget_bytes` lasts (at least one) and at most
    /// `MAX_SAMPLE_OBJECTS` of them.
    pub fn select(&self, objects: &[ObjectStat], budget_bytes: u64) -> (Vec<String>, ScanPlan) {
        let mut sorted: Vec<&ObjectStat> = objects.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let since = self.checked_until_ms;
        let is_new = |o: &ObjectStat| match (since, o.last_modified) {
            (Some(t), Some(m)) => m.timestamp_millis() >= t,
            _ => true,
        };
        let mut picked: Vec<String> = sorted
            .iter()
            .filter(|o| is_new(o))
            .map(|o| o.key.clone())
            .collect();
        let old: Vec<&&ObjectStat> = sorted.iter().filter(|o| !is_new(o)).collect();
        let start = self
            .cursor
            .as_ref()
            .map_or(0, |c| old.partition_point(|o| o.key.as_str() <= c.as_str()));
        let mut spent = 0u64;
        let mut cursor = self.cursor.clone();
        for o in old
            .iter()
            .cycle()
            .skip(start)
            .take(old.len().min(MAX_SAMPLE_OBJECTS))
        {
            if spent > 0 && spent + o.size > budget_bytes {
                break;
            }
            spent += o.size;
            picked.push(o.key.clone());
            cursor = Some(o.key.clone());
        }
        let checked_until_ms = objects
            .iter()
            .filter_map(|o| o.last_modified.map(|t| t.timestamp_millis()))
            .max()
            .or(since);
        (
            picked,
            ScanPlan {
                checked_until_ms,
                cursor,
                damaged: self.damaged.clone(),
            },
        )
    }
}

/// How a damaged object is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// A stream segment (RAW or its STAGING twin): replay the shard from the segment's first
    /// sequence number.
    Replay { shard: String, from_seq: u64 },
    /// A batch file: the next batch run pulls it from the source again (RAW) or stages it
    /// from RAW again (STAGING).
    BatchRun,
}

/// Damaged keys among `keys`: each one's recorded checksum (a HEAD) against its bytes.
pub async fn check(store: &dyn ObjectStore, keys: &[String]) -> Result<Vec<String>> {
    let mut damaged = Vec::new();
    for key in keys {
        // Deleted since the listing (pruning): not damage.
        let Some(meta) = store.head(key).await? else {
            continue;
        };
        match crate::store::intact(store, &meta).await {
            Ok(true) => {}
            Ok(false) => damaged.push(key.clone()),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(damaged)
}

/// The repair for a damaged key.
pub fn repair_for(key: &str) -> Repair {
    // raw/stream/events/shard=S/seg-FIRST-LAST.ndjson, staging/events/shard=S/seg-...
    let shard = key
        .split('/')
        .find_map(|p| p.strip_prefix("shard="))
        .map(str::to_string);
    let first = key
        .rsplit('/')
        .next()
        .and_then(|n| n.strip_prefix("seg-"))
        .and_then(|n| n.split('-').next())
        .and_then(|n| n.parse::<u64>().ok());
    match (shard, first) {
        (Some(shard), Some(from_seq)) => Repair::Replay { shard, from_seq },
        _ => Repair::BatchRun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_by_key() {
        assert_eq!(
            repair_for("raw/stream/events/shard=shard-0002/seg-00000000000000000122-00000000000000000220.ndjson"),
            Repair::Replay {
                shard: "shard-0002".into(),
                from_seq: 122
            }
        );
        assert_eq!(
            repair_for("staging/events/shard=shard-0000/seg-00000000000000000001-00000000000000000157.ndjson"),
            Repair::Replay {
                shard: "shard-0000".into(),
                from_seq: 1
            }
        );
        assert_eq!(
            repair_for("raw/synthetic/users/window=all_all/users-30652b4f1bff4b65.json"),
            Repair::BatchRun
        );
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn obj(key: &str, size: u64, ms: i64) -> ObjectStat {
        ObjectStat {
            key: key.into(),
            size,
            last_modified: Utc.timestamp_millis_opt(ms).single(),
        }
    }

    /// Tiny objects fit any byte budget by the thousand: the sample is also capped in objects
    /// (each is a HEAD and a GET).
    #[test]
    fn the_sample_is_capped_in_objects_too() {
        let objects: Vec<ObjectStat> = (0..5_000)
            .map(|i| obj(&format!("k{i:05}"), 1, 1))
            .chain([obj("z", 1, 9)])
            .collect();
        let (all, plan) = ScanPlan::default().select(&objects, 64 << 20);
        assert_eq!(all.len(), 5_001, "the first scan reads everything");
        let (picked, _) = plan.select(&objects, 64 << 20);
        assert_eq!(
            picked.len(),
            1 + MAX_SAMPLE_OBJECTS,
            "z, then the capped sample"
        );
    }

    #[test]
    fn new_objects_always_then_a_rolling_sample_within_the_budget() {
        let objects = vec![
            obj("a", 10, 1),
            obj("b", 10, 2),
            obj("c", 10, 3),
            obj("d", 10, 4),
        ];
        // First scan: nothing checked yet, so everything.
        let (all, plan) = ScanPlan::default().select(&objects, 15);
        assert_eq!(all, ["a", "b", "c", "d"]);
        assert_eq!(plan.checked_until_ms, Some(4));
        // Nothing new but the newest (its millisecond may hold more): a sample of 15 bytes.
        let (picked, plan) = plan.select(&objects, 15);
        assert_eq!(picked, ["d", "a"]);
        let (picked, plan) = plan.select(&objects, 15);
        assert_eq!(picked, ["d", "b"], "the sample goes on where it stopped");
        // A rewritten object is new again.
        let mut later = objects.clone();
        later[0] = obj("a", 10, 9);
        let (picked, _) = plan.select(&later, 15);
        assert_eq!(picked, ["a", "d", "c"]);
    }
}
