//! The embedded object store: a directory. Objects live at `<root>/<key>`; each object's
//! SHA-256 is kept in a sidecar `<root>/.meta/<key>.sha256` so `head` and `list` need not
//! re-read the data. Writes go to `<root>/.tmp`, are fsynced, then renamed into place and the
//! directory fsynced: a reader (or a crash) sees the old object or the new, never a part.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::same_or_conflict;
use super::{
    sha256_hex, validate_key, validate_prefix, ObjectMeta, ObjectStore, PutOutcome, PutResult,
};
use crate::atomic_file::{self, Durability};
use crate::error::{Error, IoContext, Result};

const META_DIR: &str = ".meta";
const TMP_DIR: &str = ".tmp";

/// A directory-backed object store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp_seq: AtomicU64,
}

impl LocalStore {
    /// Open (creating if needed) a store rooted at `root`. Leftover temp files of a crashed
    /// writer are removed: they were never renamed, so no reader can depend on them.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        atomic_file::owner_only_dirs(&root.join(META_DIR))?;
        let tmp = root.join(TMP_DIR);
        atomic_file::owner_only_dirs(&tmp)?;
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let path = entry.at(&tmp)?.path();
            // Best effort: a temp file another live writer still holds is harmless to keep.
            let _ = fs::remove_file(&path);
        }
        Ok(LocalStore {
            inner: Arc::new(Inner {
                root,
                tmp_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The store as a reader sees it while a writer may be writing: nothing is created, and
    /// temp files (the writer's, in flight) are left alone. Writes through it would fail on a
    /// missing directory; read-only processes make none.
    pub fn open_read_only(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore {
            inner: Arc::new(Inner {
                root: root.into(),
                tmp_seq: AtomicU64::new(0),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn object_path(&self, key: &str) -> PathBuf {
        self.inner.root.join(key)
    }

    fn sidecar_path(&self, key: &str) -> PathBuf {
        self.inner.root.join(META_DIR).join(format!("{key}.sha256"))
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.inner.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.inner
            .root
            .join(TMP_DIR)
            .join(format!("{}-{n}", std::process::id()))
    }

    /// Write bytes to a fresh, fsynced temp file.
    fn write_tmp(&self, data: &[u8]) -> Result<PathBuf> {
        let tmp = self.tmp_path();
        let mut f = atomic_file::owner_only_file(&tmp)?;
        f.write_all(data).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        Ok(tmp)
    }

    fn put_blocking(&self, key: &str, data: &[u8]) -> Result<ObjectMeta> {
        validate_key(key)?;
        let sha = sha256_hex(data);
        let dest = self.object_path(key);
        ensure_parent(&dest)?;
        let tmp = self.write_tmp(data)?;
        // Drop the old sidecar before replacing the object: after a crash at any point the
        // sidecar is either absent (recomputed on read) or describes the bytes in place.
        self.remove_sidecar(key)?;
        rename_durable(&tmp, &dest)?;
        self.write_sidecar(key, &sha)?;
        self.meta_of(key, sha)
    }

    fn put_if_absent_blocking(
        &self,
        key: &str,
        data: &[u8],
        known: Option<&str>,
    ) -> Result<PutResult> {
        validate_key(key)?;
        let sha = match known {
            Some(s) => s.to_string(),
            None => sha256_hex(data),
        };
        let dest = self.object_path(key);
        if let Some(existing) = self.head_blocking(key)? {
            return same_or_conflict(key, existing, sha);
        }
        ensure_parent(&dest)?;
        let tmp = self.write_tmp(data)?;
        // hard_link fails if `dest` exists: an atomic create-if-absent, even against a
        // concurrent writer of the same key.
        let linked = fs::hard_link(&tmp, &dest);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                atomic_file::fsync_dir(dest.parent().unwrap_or(&self.inner.root))?;
                self.write_sidecar(key, &sha)?;
                Ok(PutResult {
                    meta: self.meta_of(key, sha)?,
                    outcome: PutOutcome::Written,
                })
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let existing = self
                    .head_blocking(key)?
                    .ok_or_else(|| Error::NotFound(key.to_string()))?;
                same_or_conflict(key, existing, sha)
            }
            Err(e) => Err(Error::io(dest, e)),
        }
    }

    fn write_sidecar(&self, key: &str, sha: &str) -> Result<()> {
        let side = self.sidecar_path(key);
        ensure_parent(&side)?;
        let tmp = self.write_tmp(sha.as_bytes())?;
        rename_durable(&tmp, &side)
    }

    /// The recorded hash, or the hash recomputed from the bytes when the sidecar is missing or
    /// unreadable (e.g. a crash between the object and sidecar renames).
    fn sha_of(&self, key: &str) -> Result<String> {
        let side = self.sidecar_path(key);
        match fs::read_to_string(&side) {
            Ok(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(s),
            _ => {
                let path = self.object_path(key);
                let data = fs::read(&path).at(&path)?;
                let sha = sha256_hex(&data);
                self.write_sidecar(key, &sha)?;
                Ok(sha)
            }
        }
    }

    fn meta_of(&self, key: &str, sha: String) -> Result<ObjectMeta> {
        let path = self.object_path(key);
        let md = fs::metadata(&path).at(&path)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: md.len(),
            sha256: sha,
            last_modified: md.modified().ok().map(DateTime::<Utc>::from),
        })
    }

    fn head_blocking(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        let path = self.object_path(key);
        match fs::metadata(&path) {
            Ok(md) if md.is_file() => {
                let sha = self.sha_of(key)?;
                Ok(Some(self.meta_of(key, sha)?))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn get_blocking(&self, key: &str) -> Result<Bytes> {
        validate_key(key)?;
        let path = self.object_path(key);
        match fs::read(&path) {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::IsADirectory => {
                Err(Error::NotFound(key.to_string()))
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        // Walk only the deepest directory the prefix names fully.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if dir_part.is_empty() {
            self.inner.root.clone()
        } else {
            self.inner.root.join(dir_part)
        };
        let mut keys = Vec::new();
        walk(&start, dir_part, &mut keys)?;
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        keys.into_iter()
            .map(|k| {
                let sha = self.sha_of(&k)?;
                self.meta_of(&k, sha)
            })
            .collect()
    }

    fn delete_blocking(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let path = self.object_path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        self.remove_sidecar(key)
    }

    fn remove_sidecar(&self, key: &str) -> Result<()> {
        let side = self.sidecar_path(key);
        match fs::remove_file(&side) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(side, e)),
        }
    }

    /// Run blocking file work off the async executor.
    fn blocking<'a, T, F>(&'a self, f: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(LocalStore) -> Result<T> + Send + 'static,
    {
        let me = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(me))
                .await
                .map_err(|e| Error::Other(format!("local store task failed: {e}")))?
        })
    }
}

impl ObjectStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn put<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<ObjectMeta>> {
        let key = key.to_string();
        self.blocking(move |s| s.put_blocking(&key, &data))
    }

    fn put_if_absent<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<PutResult>> {
        let key = key.to_string();
        self.blocking(move |s| s.put_if_absent_blocking(&key, &data, None))
    }

    fn put_if_absent_hashed<'a>(
        &'a self,
        key: &'a str,
        data: Bytes,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<PutResult>> {
        debug_assert_eq!(sha256, sha256_hex(&data), "a wrong hash for {key}");
        let (key, sha) = (key.to_string(), sha256.to_string());
        self.blocking(move |s| s.put_if_absent_blocking(&key, &data, Some(&sha)))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes>> {
        let key = key.to_string();
        self.blocking(move |s| s.get_blocking(&key))
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        let key = key.to_string();
        self.blocking(move |s| s.head_blocking(&key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        let prefix = prefix.to_string();
        self.blocking(move |s| s.list_blocking(&prefix))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        let key = key.to_string();
        self.blocking(move |s| s.delete_blocking(&key))
    }
}

/// Collect the keys of regular files under `dir`, skipping our dot directories.
fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
            return Ok(())
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let key = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type().at(entry.path())?;
        if ft.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else if ft.is_file() {
            out.push(key);
        }
    }
    Ok(())
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        atomic_file::owner_only_dirs(parent)?;
    }
    Ok(())
}

fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    atomic_file::rename(from, to, Durability::PowerLoss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_sidecar_is_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let meta = store.put_blocking("a/b.txt", b"hello").unwrap();
        fs::remove_file(store.sidecar_path("a/b.txt")).unwrap();
        let again = store.head_blocking("a/b.txt").unwrap().unwrap();
        assert_eq!(again.sha256, meta.sha256);
    }

    #[test]
    fn leftover_temp_files_are_cleared_and_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        fs::write(dir.path().join(TMP_DIR).join("999-0"), b"half").unwrap();
        let store2 = LocalStore::open(dir.path()).unwrap();
        assert!(fs::read_dir(dir.path().join(TMP_DIR))
            .unwrap()
            .next()
            .is_none());
        assert!(store2.list_blocking("").unwrap().is_empty());
        drop(store);
    }
}
