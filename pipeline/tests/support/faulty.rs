//! A store and a warehouse that fail while the pipeline runs: a refused directory (as
//! `chattr +i` gives), random failed writes, refused statements, and loads whose reply is lost
//! after the warehouse committed. Seeded, so a failing run replays. Shared by several test
//! binaries, each using part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ecom_pipeline::store::{LocalStore, ObjectMeta, ObjectStore, PutResult};
use ecom_pipeline::warehouse::{LoadOutcome, StagedFile, TextRows, Warehouse};
use ecom_pipeline::{Error, Result};
use futures::future::BoxFuture;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Shared dials: the failure rate (0 = none) and the count of faults injected.
#[derive(Debug)]
pub struct Faults {
    rng: Mutex<ChaCha8Rng>,
    rate: Mutex<f64>,
    /// The store fails only while this is set (the warehouse alone may fail).
    store_too: std::sync::atomic::AtomicBool,
    refused_prefix: Mutex<Option<String>>,
    /// Every write fails with ENOSPC while set: a full disk.
    full: std::sync::atomic::AtomicBool,
    /// Writes that still succeed before every further one fails with EIO (None: no limit).
    writes_left: Mutex<Option<u64>>,
    pub injected: AtomicU64,
}

impl Faults {
    pub fn new(seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            rate: Mutex::new(0.0),
            store_too: std::sync::atomic::AtomicBool::new(true),
            refused_prefix: Mutex::new(None),
            full: std::sync::atomic::AtomicBool::new(false),
            writes_left: Mutex::new(None),
            injected: AtomicU64::new(0),
        })
    }

    pub fn set_rate(&self, rate: f64) {
        *self.rate.lock().unwrap() = rate;
        self.store_too.store(true, Ordering::SeqCst);
    }

    /// Only the warehouse fails, at `rate`.
    pub fn set_warehouse_rate(&self, rate: f64) {
        *self.rate.lock().unwrap() = rate;
        self.store_too.store(false, Ordering::SeqCst);
    }

    /// Writes under `prefix` fail with EPERM (None: writable again).
    pub fn refuse(&self, prefix: Option<&str>) {
        *self.refused_prefix.lock().unwrap() = prefix.map(str::to_string);
    }

    /// The disk is full (every write fails with ENOSPC), or not.
    pub fn fill_disk(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// Let `n` more writes through, then fail every write (None: no limit again).
    pub fn fail_after_writes(&self, n: Option<u64>) {
        *self.writes_left.lock().unwrap() = n;
    }

    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn roll(&self) -> Option<u32> {
        let rate = *self.rate.lock().unwrap();
        let mut rng = self.rng.lock().unwrap();
        if rate > 0.0 && rng.random_bool(rate.min(1.0)) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Some(rng.random_range(0..2))
        } else {
            None
        }
    }

    fn write(&self, key: &str) -> Result<()> {
        let refused = self
            .refused_prefix
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|p| key.starts_with(p));
        let spent = {
            let mut left = self.writes_left.lock().unwrap();
            match left.as_mut() {
                Some(0) => true,
                Some(n) => {
                    *n -= 1;
                    false
                }
                None => false,
            }
        };
        let errno = if self.full.load(Ordering::SeqCst) {
            Some(28)
        } else if spent {
            Some(5)
        } else if refused {
            Some(1)
        } else {
            None
        };
        if let Some(errno) = errno {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(Error::io(
                format!("/data/store/{key}"),
                std::io::Error::from_raw_os_error(errno),
            ));
        }
        if !self.store_too.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.roll() {
            // ENOSPC or EIO, as a filling or failing disk gives.
            Some(k) => Err(Error::io(
                format!("/data/store/{key}"),
                std::io::Error::from_raw_os_error(if k == 0 { 28 } else { 5 }),
            )),
            None => Ok(()),
        }
    }
}

#[derive(Debug)]
pub struct FaultyStore {
    pub inner: LocalStore,
    pub faults: Arc<Faults>,
}

impl ObjectStore for FaultyStore {
    fn backend(&self) -> &'static str {
        "local"
    }
    fn put<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            self.faults.write(key)?;
            self.inner.put(key, data).await
        })
    }
    fn put_if_absent<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<PutResult>> {
        Box::pin(async move {
            self.faults.write(key)?;
            self.inner.put_if_absent(key, data).await
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
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        self.inner.delete(key)
    }
}

/// A warehouse whose loads and transactions fail at the faults' rate: half refused before
/// anything runs, half after the warehouse committed (the reply lost).
pub struct FaultyWarehouse {
    pub inner: Arc<dyn Warehouse>,
    pub faults: Arc<Faults>,
}

impl FaultyWarehouse {
    fn refused(what: &str) -> Error {
        Error::Warehouse(format!("injected: {what} refused"))
    }
}

impl Warehouse for FaultyWarehouse {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn dialect(&self) -> ecom_pipeline::warehouse::schema::Dialect {
        self.inner.dialect()
    }
    fn load<'a>(&'a self, file: &'a StagedFile) -> BoxFuture<'a, Result<LoadOutcome>> {
        Box::pin(async move {
            match self.faults.roll() {
                Some(0) => Err(Self::refused("statement")),
                Some(_) => {
                    self.inner.load(file).await?;
                    Err(Self::refused("reply (after commit)"))
                }
                None => self.inner.load(file).await,
            }
        })
    }
    fn files_per_load(&self) -> usize {
        self.inner.files_per_load()
    }
    fn load_group(&self, files: Vec<StagedFile>) -> BoxFuture<'_, Result<Vec<LoadOutcome>>> {
        Box::pin(async move {
            match self.faults.roll() {
                Some(0) => Err(Self::refused("group load")),
                Some(_) => {
                    self.inner.load_group(files).await?;
                    Err(Self::refused("reply (after commit)"))
                }
                None => self.inner.load_group(files).await,
            }
        })
    }
    fn execute_tx(&self, statements: Vec<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match self.faults.roll() {
                Some(0) => Err(Self::refused("transaction")),
                Some(_) => {
                    self.inner.execute_tx(statements).await?;
                    Err(Self::refused("reply (after commit)"))
                }
                None => self.inner.execute_tx(statements).await,
            }
        })
    }
    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<TextRows>> {
        self.inner.query(sql)
    }
    fn hold_shared(&self, hold: bool) -> BoxFuture<'_, Result<bool>> {
        self.inner.hold_shared(hold)
    }
    fn keep_shared(&self) -> BoxFuture<'_, Result<std::time::Duration>> {
        self.inner.keep_shared()
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
}
