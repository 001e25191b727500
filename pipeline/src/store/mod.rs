//! The object store behind the zones: one trait, a local-directory implementation (the
//! embedded default) and an S3 implementation. Both run the same conformance suite
//! (`pipeline/tests/store_conformance.rs`).
//!
//! Every object's SHA-256 is computed on write and returned, so callers can record it in the
//! ledger. `put_if_absent` is how RAW is written: RAW is immutable, so the same key with the
//! same bytes is a no-op and with other bytes an error.

pub(crate) mod aws_s3;
mod local;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use aws_s3::{client as s3_client, S3Store};
pub use local::LocalStore;

use crate::config::{Config, StoreBackend};
use crate::error::{Error, Result};

/// What a store knows of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the whole object.
    pub sha256: String,
    pub last_modified: Option<DateTime<Utc>>,
}

/// What a listing page says of an object: enough for statistics, costs and retention, no
/// checksum (S3 keeps ours in user metadata, which LIST does not return).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStat {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

impl From<ObjectMeta> for ObjectStat {
    fn from(m: ObjectMeta) -> ObjectStat {
        ObjectStat {
            key: m.key,
            size: m.size,
            last_modified: m.last_modified,
        }
    }
}

/// What `put_if_absent` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutOutcome {
    /// The object was created.
    Written,
    /// An identical object was already there; nothing was written.
    AlreadyPresent,
}

/// The result of `put_if_absent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub meta: ObjectMeta,
    pub outcome: PutOutcome,
}

/// One trait over local disk and S3. Methods return boxed futures so the backend can be chosen
/// from config at run time (`Arc<dyn ObjectStore>`).
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// "local" or "s3", for logs and the dashboard.
    fn backend(&self) -> &'static str;

    /// Write `data` at `key` atomically, replacing any object there. Readers see the old or the
    /// new object, never a part.
    fn put<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<ObjectMeta>>;

    /// Write `data` at `key` unless an object is there: identical bytes are a no-op
    /// (`AlreadyPresent`), different bytes are `Error::ImmutableConflict`.
    fn put_if_absent<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<PutResult>>;

    /// `put_if_absent` of bytes whose SHA-256 (`sha256_hex`) the caller has just computed: a
    /// store that records the hash of what it writes takes it instead of hashing again (for a
    /// 149 MB input file, 0.3 s on the path before the drain). The default hashes anyway.
    fn put_if_absent_hashed<'a>(
        &'a self,
        key: &'a str,
        data: Bytes,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<PutResult>> {
        let _ = sha256;
        self.put_if_absent(key, data)
    }

    /// The whole object; `Error::NotFound` if absent.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes>>;

    /// The object's metadata, or `None` if absent.
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>>;

    /// Every object whose key starts with `prefix`, sorted by key, with its checksum.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>>;

    /// The same objects from the listing alone, without checksums: what statistics need, at a
    /// request per 1,000 keys on S3 instead of a HEAD per object.
    fn list_stat<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectStat>>> {
        Box::pin(async move {
            Ok(self
                .list(prefix)
                .await?
                .into_iter()
                .map(ObjectStat::from)
                .collect())
        })
    }

    /// Remove the object; removing an absent key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// Open the store the config names.
pub async fn open(config: &Config) -> Result<Arc<dyn ObjectStore>> {
    open_as(config, false).await
}

/// Open the configured store; `read_only` opens the local store without creating or cleaning
/// anything (another process may be writing it).
pub async fn open_as(config: &Config, read_only: bool) -> Result<Arc<dyn ObjectStore>> {
    match config.store.backend {
        StoreBackend::Local if read_only => Ok(Arc::new(LocalStore::open_read_only(
            config.local_store_root(),
        ))),
        StoreBackend::Local => Ok(Arc::new(LocalStore::open(config.local_store_root())?)),
        StoreBackend::S3 => Ok(Arc::new(S3Store::connect(&config.store.s3).await?)),
    }
}

/// RAW's immutability rule, shared by every backend: an object already at the key is fine if it
/// has the same bytes (`AlreadyPresent`), and a conflict otherwise.
pub(crate) fn same_or_conflict(
    key: &str,
    existing: ObjectMeta,
    new_sha: String,
) -> Result<PutResult> {
    if existing.sha256 == new_sha {
        Ok(PutResult {
            meta: existing,
            outcome: PutOutcome::AlreadyPresent,
        })
    } else {
        Err(Error::ImmutableConflict {
            key: key.to_string(),
            existing: existing.sha256,
            new: new_sha,
        })
    }
}

/// Put immutable bytes (RAW) at `key`; an object already there whose stored bytes no longer
/// match their recorded checksum (a partial write: truncated, a flipped byte) is replaced when
/// `data` hashes to that recorded checksum, i.e. when the source gave the original bytes again.
pub async fn put_immutable_repairing(
    store: &dyn ObjectStore,
    key: &str,
    data: Bytes,
) -> Result<PutResult> {
    let r = store.put_if_absent(key, data.clone()).await?;
    if r.outcome != PutOutcome::AlreadyPresent {
        return Ok(r);
    }
    if intact(store, &r.meta).await? {
        return Ok(r);
    }
    tracing::warn!(
        key,
        "failure scenario: partial write in RAW; rewriting it from the source"
    );
    let meta = store.put(key, data).await?;
    Ok(PutResult {
        meta,
        outcome: PutOutcome::Written,
    })
}

/// Whether an object's stored bytes still hash to the SHA-256 recorded when it was written
/// (S3 checks on GET; the local store's sidecar is compared here).
pub async fn intact(store: &dyn ObjectStore, meta: &ObjectMeta) -> Result<bool> {
    match store.get(&meta.key).await {
        Ok(bytes) => Ok(meta.sha256.is_empty() || sha256_hex(&bytes) == meta.sha256),
        Err(Error::ChecksumMismatch { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Keys are relative, '/'-separated, made of `[A-Za-z0-9._=-]` segments that do not start with
/// a dot (dot names are the local store's own). The same rule on every backend keeps a layout
/// portable between local disk and S3.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.len() > 900 {
        return Err(bad("longer than 900 bytes"));
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err(bad("empty path segment (leading, trailing or double '/')"));
        }
        if segment.starts_with('.') {
            return Err(bad("a segment starts with '.'"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '=')))
        {
            return Err(bad(&format!("character {c:?} is not allowed")));
        }
    }
    Ok(())
}

/// Prefixes may be empty or end mid-segment; they follow the key rules otherwise.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.trim_end_matches('/')).map_err(|_| Error::InvalidKey {
        key: prefix.to_string(),
        reason: "not a valid key prefix".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "a",
            "raw/fakestore/products/dt=2026-01-01/x-1.json",
            "a.b_c-d=e",
        ] {
            validate_key(ok).unwrap();
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/../b", ".meta/x", "a b", "a\\b", "é",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sha() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
