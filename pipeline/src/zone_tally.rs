//! Zone statistics kept from what this process writes and deletes, on top of a periodic
//! listing: on S3 a listing of every zone is a request per 1,000 objects, too many to repeat
//! every statistics refresh once the stream has written its ~70k objects a day. The listing
//! (every `runtime.zone_listing_interval_secs`) is the truth; between two, each write and
//! delete through `TalliedStore` moves the figures, so they stay exact for this process's own
//! work and catch up with other writers at the next listing.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::error::Result;
use crate::store::{ObjectMeta, ObjectStat, ObjectStore, PutOutcome, PutResult};
use crate::zones::{Zone, ZoneStats};

/// One zone's objects: each key's size by a 64-bit hash of the key (16 bytes an object, not
/// the key itself), their total, and the newest write.
#[derive(Debug, Default)]
struct ZoneFigures {
    sizes: HashMap<u64, u64>,
    bytes: u64,
    last_write: Option<DateTime<Utc>>,
}

impl ZoneFigures {
    fn put(&mut self, key: &str, size: u64, at: Option<DateTime<Utc>>) {
        let old = self.sizes.insert(hash(key), size).unwrap_or(0);
        self.bytes = self.bytes - old + size;
        self.last_write = self.last_write.max(at);
    }

    fn delete(&mut self, key: &str) {
        if let Some(old) = self.sizes.remove(&hash(key)) {
            self.bytes -= old;
        }
    }
}

fn hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn zone_of(key: &str) -> Option<Zone> {
    Zone::ALL.into_iter().find(|z| key.starts_with(z.prefix()))
}

/// The figures of every zone, shared by the store wrapper and the statistics refresh.
#[derive(Debug, Default)]
pub struct ZoneTally {
    zones: Mutex<HashMap<Zone, ZoneFigures>>,
    listed: Mutex<Option<std::time::Instant>>,
}

impl ZoneTally {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Zone, ZoneFigures>) -> T) -> T {
        f(&mut self.zones.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a listing is due: never listed, or `every` has passed since the last one.
    pub fn listing_due(&self, every: std::time::Duration) -> bool {
        self.listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= every)
    }

    /// Make the next refresh list (the operator's `r`: recount now).
    pub fn expire(&self) {
        *self.listed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Start again from a full listing.
    pub fn replace(&self, listing: &[(Zone, Vec<ObjectStat>)]) {
        self.with(|zones| {
            zones.clear();
            for (zone, objects) in listing {
                let z = zones.entry(*zone).or_default();
                for o in objects {
                    z.put(&o.key, o.size, o.last_modified);
                }
            }
        });
        *self.listed.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    fn put(&self, key: &str, size: u64, at: Option<DateTime<Utc>>) {
        if let Some(zone) = zone_of(key) {
            self.with(|zones| zones.entry(zone).or_default().put(key, size, at));
        }
    }

    fn delete(&self, key: &str) {
        if let Some(zone) = zone_of(key) {
            self.with(|zones| zones.entry(zone).or_default().delete(key));
        }
    }

    /// Every zone's figures, in `Zone::ALL` order.
    pub fn stats(&self) -> Vec<ZoneStats> {
        self.with(|zones| {
            Zone::ALL
                .into_iter()
                .map(|zone| {
                    let z = zones.get(&zone);
                    ZoneStats {
                        zone: Some(zone),
                        objects: z.map_or(0, |z| z.sizes.len() as u64),
                        bytes: z.map_or(0, |z| z.bytes),
                        last_write: z.and_then(|z| z.last_write),
                    }
                })
                .collect()
        })
    }
}

/// A store that moves the tally with every successful write and delete.
#[derive(Debug)]
pub struct TalliedStore {
    inner: Arc<dyn ObjectStore>,
    tally: Arc<ZoneTally>,
}

impl TalliedStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>, tally: Arc<ZoneTally>) -> Arc<dyn ObjectStore> {
        Arc::new(TalliedStore { inner, tally })
    }
}

impl TalliedStore {
    /// Count an object `put_if_absent` wrote.
    fn tallied(&self, key: &str, r: PutResult) -> Result<PutResult> {
        if r.outcome == PutOutcome::Written {
            self.tally
                .put(key, r.meta.size, r.meta.last_modified.or(Some(Utc::now())));
        }
        Ok(r)
    }
}

impl ObjectStore for TalliedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn put<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let meta = self.inner.put(key, data).await?;
            self.tally
                .put(key, meta.size, meta.last_modified.or(Some(Utc::now())));
            Ok(meta)
        })
    }
    fn put_if_absent<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<PutResult>> {
        Box::pin(async move { self.tallied(key, self.inner.put_if_absent(key, data).await?) })
    }
    fn put_if_absent_hashed<'a>(
        &'a self,
        key: &'a str,
        data: Bytes,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<PutResult>> {
        Box::pin(async move {
            let r = self.inner.put_if_absent_hashed(key, data, sha256).await?;
            self.tallied(key, r)
        })
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes>> {
        self.inner.get(key)
    }
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        self.inner.head(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        self.inner.list(prefix)
    }
    fn list_stat<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectStat>>> {
        self.inner.list_stat(prefix)
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner.delete(key).await?;
            self.tally.delete(key);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use crate::zones;

    /// Writes, rewrites, idempotent RAW writes and deletes keep the figures equal to a fresh
    /// listing's, with no listing between.
    #[tokio::test]
    async fn the_tally_matches_a_listing_after_writes_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
        inner
            .put("staging/orders/a.ndjson", Bytes::from_static(b"before"))
            .await
            .unwrap();
        let tally = Arc::new(ZoneTally::default());
        tally.replace(&zones::zone_listing(inner.as_ref()).await.unwrap());
        let store = TalliedStore::wrap(inner.clone(), tally.clone());
        store
            .put_if_absent("raw/x/orders/r.json", Bytes::from_static(b"raw"))
            .await
            .unwrap();
        store
            .put_if_absent("raw/x/orders/r.json", Bytes::from_static(b"raw"))
            .await
            .unwrap();
        store
            .put(
                "staging/orders/a.ndjson",
                Bytes::from_static(b"rewritten, longer"),
            )
            .await
            .unwrap();
        store
            .put(
                "curated/m/dt=2026-01-01/m.parquet",
                Bytes::from_static(b"p"),
            )
            .await
            .unwrap();
        store
            .put("late/events/s/x.ndjson", Bytes::from_static(b"l"))
            .await
            .unwrap();
        store.delete("late/events/s/x.ndjson").await.unwrap();
        store.delete("quarantine/absent.ndjson").await.unwrap();
        let listed = zones::zone_stats(inner.as_ref()).await.unwrap();
        let strip = |v: Vec<ZoneStats>| -> Vec<(Option<Zone>, u64, u64)> {
            v.into_iter()
                .map(|z| (z.zone, z.objects, z.bytes))
                .collect()
        };
        assert_eq!(strip(tally.stats()), strip(listed));
        assert!(tally.stats().iter().any(|z| z.last_write.is_some()));
    }
}
