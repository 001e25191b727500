//! Integrity scans: every RAW and STAGING object is read back and checked against the SHA-256
//! recorded when it was written. A mismatch (a truncated object, a flipped byte) is the
//! "partial write" failure scenario; `repair_plan` says how each damaged object is rebuilt.

use crate::error::{Error, Result};
use crate::store::{ObjectMeta, ObjectStore};
use crate::zones::Zone;

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

/// Damaged keys among the RAW and STAGING objects of a listing.
pub async fn scan(
    store: &dyn ObjectStore,
    listing: &[(Zone, Vec<ObjectMeta>)],
) -> Result<Vec<String>> {
    let mut damaged = Vec::new();
    for (zone, objects) in listing {
        if !matches!(zone, Zone::Raw | Zone::Staging) {
            continue;
        }
        for o in objects {
            match crate::store::intact(store, o).await {
                Ok(true) => {}
                Ok(false) => damaged.push(o.key.clone()),
                // Deleted between the LIST and the GET (pruning): not damage.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
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
