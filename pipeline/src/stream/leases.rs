//! Shard leases in DynamoDB, so several instances share one Kinesis stream (the Kinesis Client
//! Library's scheme, <https://docs.aws.amazon.com/streams/latest/dev/shared-throughput-kcl-consumers.html>).
//!
//! One item per shard: `shard` (the key), `owner` (absent when free), `counter` (bumped by every
//! write), `heartbeat` (the writer's clock, ms: shown, never trusted), `finished` (a closed
//! shard read to its end). Every write is conditional on the counter read before it, so two
//! instances can never both win the same change. A lease is expired when its counter has not
//! moved for `lease_secs` *as this instance watched it* (no clock is compared across hosts).
//!
//! Each tick an instance renews what it holds (losing any whose counter another moved), takes
//! free and expired leases up to an even share of the assignable shards, and, when none is
//! free, steals from the instances holding the most while they hold more than their share.
//! A child shard is assignable once every parent with a lease is finished. The counter at which
//! a shard was taken is its fencing token: loads carry it and the warehouse refuses a token
//! older than the last one registered for the shard (`fence`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use crate::config::LeaseConfig;
use crate::error::{Error, Result};
pub use ecom_model::stream::{FleetStatus, LeaseRow, LostLease};

fn dynamo_err(operation: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Aws {
        service: "dynamodb",
        operation,
        message: e.to_string(),
    }
}

/// One lease item as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub shard: String,
    pub owner: Option<String>,
    pub counter: u64,
    /// The owner's clock at its last write, ms since the epoch.
    pub heartbeat_ms: i64,
    pub finished: bool,
}

/// A shard as the stream lists it, for assignment: its parents wait for their leases to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRef {
    pub id: String,
    pub parents: Vec<String>,
}

/// The lease table.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

/// Why a conditional write did not happen.
fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

impl LeaseTable {
    pub async fn connect(cfg: &LeaseConfig, fallback_endpoint: Option<&str>) -> LeaseTable {
        let endpoint = cfg.endpoint_url.as_deref().or(fallback_endpoint);
        let sdk = crate::aws::sdk_config(None, endpoint).await;
        LeaseTable::from_client(Client::new(&sdk), &cfg.table)
    }

    pub fn from_client(client: Client, table: &str) -> LeaseTable {
        LeaseTable {
            client,
            table: table.to_string(),
        }
    }

    /// Create the table (on demand, key `shard`) unless it exists; wait until it is active.
    pub async fn ensure(&self) -> Result<()> {
        let exists = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => {
                return Err(dynamo_err(
                    "DescribeTable",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                ))
            }
        };
        if !exists {
            let key = KeySchemaElement::builder()
                .attribute_name("shard")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| dynamo_err("CreateTable", e))?;
            let attr = AttributeDefinition::builder()
                .attribute_name("shard")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| dynamo_err("CreateTable", e))?;
            match self
                .client
                .create_table()
                .table_name(&self.table)
                .key_schema(key)
                .attribute_definitions(attr)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
            {
                Ok(_) => tracing::info!(table = %self.table, "lease table created"),
                // Another instance created it first.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => {
                    return Err(dynamo_err(
                        "CreateTable",
                        aws_sdk_dynamodb::error::DisplayErrorContext(e),
                    ))
                }
            }
        }
        for _ in 0..120 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| {
                    dynamo_err(
                        "DescribeTable",
                        aws_sdk_dynamodb::error::DisplayErrorContext(e),
                    )
                })?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(dynamo_err(
            "DescribeTable",
            "the lease table never became ACTIVE",
        ))
    }

    /// Every lease (a consistent scan: a lease just written is seen).
    pub async fn list(&self) -> Result<Vec<Lease>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| dynamo_err("Scan", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
            out.extend(page.items().iter().filter_map(parse));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.shard.cmp(&b.shard));
        Ok(out)
    }

    /// One lease, read consistently.
    pub async fn get(&self, shard: &str) -> Result<Option<Lease>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("shard", s(shard))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_err("GetItem", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        Ok(out.item().and_then(parse))
    }

    /// A free lease for a shard that has none (nothing when one exists).
    pub async fn create(&self, shard: &str) -> Result<()> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .item("shard", s(shard))
            .item("counter", n(0))
            .item("heartbeat", n(crate::clock::now_ms().max(0) as u64))
            // Every attribute goes by a placeholder: SHARD, OWNER and COUNTER are DynamoDB
            // reserved words (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ReservedWords.html).
            .expression_attribute_names("#s", "shard")
            .condition_expression("attribute_not_exists(#s)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(dynamo_err(
                "PutItem",
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )),
        }
    }

    /// Move `shard`'s lease from counter `seen` to `seen + 1`, as `owner` (None: free it),
    /// optionally marking it finished. False when the counter moved first (someone else won).
    pub async fn write(
        &self,
        shard: &str,
        seen: u64,
        owner: Option<&str>,
        finished: bool,
    ) -> Result<bool> {
        self.write_to(shard, seen, seen + 1, owner, finished).await
    }

    /// `write`, moving the counter to `next` (> `seen`).
    pub async fn write_to(
        &self,
        shard: &str,
        seen: u64,
        next: u64,
        owner: Option<&str>,
        finished: bool,
    ) -> Result<bool> {
        let now = crate::clock::now_ms().max(0) as u64;
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("shard", s(shard))
            .expression_attribute_names("#c", "counter")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#h", "heartbeat")
            .expression_attribute_names("#f", "finished")
            .expression_attribute_values(":seen", n(seen))
            .expression_attribute_values(":next", n(next.max(seen + 1)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":fin", AttributeValue::Bool(finished))
            .condition_expression("#c = :seen");
        req = match owner {
            Some(o) => req
                .expression_attribute_values(":me", s(o))
                .update_expression("SET #c = :next, #o = :me, #h = :now, #f = :fin"),
            None => req.update_expression("SET #c = :next, #h = :now, #f = :fin REMOVE #o"),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(dynamo_err(
                "UpdateItem",
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )),
        }
    }
}

fn parse(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
    let num = |k: &str| item.get(k).and_then(|v| v.as_n().ok())?.parse::<i64>().ok();
    Some(Lease {
        shard: item.get("shard")?.as_s().ok()?.clone(),
        owner: item
            .get("owner")
            .and_then(|v| v.as_s().ok())
            .filter(|o| !o.is_empty())
            .cloned(),
        counter: u64::try_from(num("counter")?).ok()?,
        heartbeat_ms: num("heartbeat").unwrap_or(0),
        finished: item
            .get("finished")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

/// A lease this instance holds: the counter of its last write, and the token (the counter at
/// which it was taken) its loads are fenced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub counter: u64,
    pub token: u64,
}

/// What one tick changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    pub gained: Vec<String>,
    /// Leases another instance took (or that could not be renewed).
    pub lost: Vec<String>,
}

/// This instance's side of the leases.
#[derive(Debug)]
pub struct Coordinator {
    table: LeaseTable,
    worker: String,
    lease: Duration,
    held: BTreeMap<String, Held>,
    /// Each lease's counter and when this instance first saw it at that value.
    seen: HashMap<String, (u64, Instant)>,
    /// The last table read, for status.
    last: Vec<Lease>,
}

impl Coordinator {
    pub fn new(table: LeaseTable, worker: String, lease: Duration) -> Coordinator {
        Coordinator {
            table,
            worker,
            lease,
            held: BTreeMap::new(),
            seen: HashMap::new(),
            last: Vec::new(),
        }
    }

    /// The worker name a config gives (or a fresh one: host, pid, start time).
    pub fn worker_id(cfg: &LeaseConfig) -> String {
        cfg.worker()
    }

    /// Held shards and the tokens their loads are fenced with.
    pub fn tokens(&self) -> BTreeMap<String, u64> {
        self.held
            .iter()
            .map(|(s, h)| (s.clone(), h.token))
            .collect()
    }

    pub fn held(&self) -> &BTreeMap<String, Held> {
        &self.held
    }

    /// Whether a lease stood still for a lease period (or has no owner).
    fn expired(&self, l: &Lease, now: Instant) -> bool {
        l.owner.is_none()
            || self
                .seen
                .get(&l.shard)
                .is_some_and(|(c, at)| *c == l.counter && now.duration_since(*at) >= self.lease)
    }

    /// The leases as this instance sees them.
    pub fn view(&self) -> Vec<LeaseRow> {
        let now = Instant::now();
        let now_ms = crate::clock::now_ms();
        self.last
            .iter()
            .map(|l| LeaseRow {
                shard: l.shard.clone(),
                owner: l.owner.clone(),
                counter: l.counter,
                age_ms: now_ms.saturating_sub(l.heartbeat_ms),
                expired: l.owner.is_some() && self.expired(l, now) && !l.finished,
                finished: l.finished,
                checkpoint: None,
            })
            .collect()
    }

    /// Renew, take and balance, for the stream's shards as listed now.
    pub async fn tick(&mut self, shards: &[ShardRef]) -> Result<Tick> {
        let mut tick = Tick::default();
        let mut leases: BTreeMap<String, Lease> = self
            .table
            .list()
            .await?
            .into_iter()
            .map(|l| (l.shard.clone(), l))
            .collect();
        for s in shards {
            if !leases.contains_key(&s.id) {
                self.table.create(&s.id).await?;
                leases.insert(
                    s.id.clone(),
                    Lease {
                        shard: s.id.clone(),
                        owner: None,
                        counter: 0,
                        heartbeat_ms: crate::clock::now_ms(),
                        finished: false,
                    },
                );
            }
        }
        let now = Instant::now();
        for l in leases.values() {
            let moved = self.seen.get(&l.shard).is_none_or(|(c, _)| *c != l.counter);
            if moved {
                self.seen.insert(l.shard.clone(), (l.counter, now));
            }
        }
        // Renew what is held; a lease whose counter another moved is lost.
        let held: Vec<(String, Held)> = self.held.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (shard, h) in held {
            let still = leases.get(&shard).is_some_and(|l| {
                l.counter == h.counter && l.owner.as_deref() == Some(&self.worker)
            });
            let finished = leases.get(&shard).is_some_and(|l| l.finished);
            if still
                && !finished
                && self
                    .table
                    .write(&shard, h.counter, Some(&self.worker), false)
                    .await?
            {
                let c = h.counter + 1;
                self.held.insert(
                    shard.clone(),
                    Held {
                        counter: c,
                        token: h.token,
                    },
                );
                if let Some(l) = leases.get_mut(&shard) {
                    l.counter = c;
                    l.heartbeat_ms = crate::clock::now_ms();
                }
                self.seen.insert(shard, (c, now));
            } else {
                self.held.remove(&shard);
                if !finished {
                    tracing::warn!(shard = %shard, worker = %self.worker, "shard lease lost");
                    tick.lost.push(shard);
                }
            }
        }
        // Assignable: listed, not finished, every parent with a lease finished.
        let assignable: Vec<&ShardRef> = shards
            .iter()
            .filter(|s| leases.get(&s.id).is_some_and(|l| !l.finished))
            .filter(|s| {
                s.parents
                    .iter()
                    .all(|p| leases.get(p).is_none_or(|l| l.finished))
            })
            .collect();
        let mut per_owner: BTreeMap<String, usize> = BTreeMap::new();
        per_owner.insert(self.worker.clone(), 0);
        for s in &assignable {
            if let Some(l) = leases.get(&s.id) {
                if let Some(o) = l.owner.as_ref().filter(|_| !self.expired(l, now)) {
                    *per_owner.entry(o.clone()).or_default() += 1;
                }
            }
        }
        let target = assignable.len().div_ceil(per_owner.len().max(1));
        let mine = |c: &Coordinator| c.held.len();
        // Free and expired first.
        for s in &assignable {
            if mine(self) >= target {
                break;
            }
            let Some(l) = leases.get(&s.id) else { continue };
            if self.held.contains_key(&s.id) || !self.expired(l, now) {
                continue;
            }
            if self.take(l).await? {
                tick.gained.push(s.id.clone());
            }
        }
        // Then from the busiest instances, one lease at a time while this one is below its
        // share and the busiest holds more than its own (a lease taken fails only the loads of
        // that shard in flight at its old owner).
        while mine(self) < target {
            let busiest = per_owner
                .iter()
                .filter(|(o, _)| **o != self.worker)
                .max_by_key(|(o, n)| (**n, std::cmp::Reverse((*o).clone())))
                .filter(|(_, n)| **n > target)
                .map(|(o, _)| o.clone());
            let Some(victim) = busiest else { break };
            let lease = assignable
                .iter()
                .filter_map(|s| leases.get(&s.id))
                .find(|l| l.owner.as_deref() == Some(&victim) && !self.held.contains_key(&l.shard))
                .cloned();
            let Some(l) = lease else { break };
            if let Some(n) = per_owner.get_mut(&victim) {
                *n = n.saturating_sub(1);
            }
            if let Some(l2) = leases.get_mut(&l.shard) {
                // Not the victim's to pick again this tick, whatever the write's outcome.
                l2.owner = None;
            }
            // The victim renews every tick: a steal that lost the race to a renewal is tried
            // once more from the lease as it is now (instances started together tick in step,
            // and would otherwise lose that race every time).
            let mut stolen = self.take(&l).await?;
            if !stolen {
                if let Some(now) = self.table.get(&l.shard).await? {
                    if now.owner.as_deref() == Some(victim.as_str()) && !now.finished {
                        stolen = self.take(&now).await?;
                    }
                }
            }
            if stolen {
                tracing::info!(shard = %l.shard, from = %victim, "shard lease stolen to balance");
                tick.gained.push(l.shard.clone());
            }
        }
        for s in &tick.gained {
            tracing::info!(shard = %s, worker = %self.worker, "shard lease taken");
        }
        self.last = self
            .table
            .list()
            .await
            .unwrap_or_else(|_| leases.into_values().collect());
        Ok(tick)
    }

    async fn take(&mut self, l: &Lease) -> Result<bool> {
        if !self
            .table
            .write(&l.shard, l.counter, Some(&self.worker), false)
            .await?
        {
            return Ok(false);
        }
        let c = l.counter + 1;
        self.held.insert(
            l.shard.clone(),
            Held {
                counter: c,
                token: c,
            },
        );
        self.seen.insert(l.shard.clone(), (c, Instant::now()));
        Ok(true)
    }

    /// `shard` was read to its end (a closed parent): its lease is finished and let go, so its
    /// children become assignable.
    pub async fn finish(&mut self, shard: &str) -> Result<()> {
        if let Some(h) = self.held.remove(shard) {
            self.table.write(shard, h.counter, None, true).await?;
            tracing::info!(shard, "shard finished: lease released for its children");
        }
        Ok(())
    }

    /// The warehouse has a newer token registered for a held shard than its lease counter (the
    /// lease table was recreated, its counters started again): move the counter past it, so
    /// this instance's take registers. False when the lease moved meanwhile (it was lost).
    pub async fn advance(&mut self, shard: &str, registered: u64) -> Result<bool> {
        let Some(h) = self.held.get(shard).copied() else {
            return Ok(false);
        };
        let next = registered.max(h.counter) + 1;
        if !self
            .table
            .write_to(shard, h.counter, next, Some(&self.worker), false)
            .await?
        {
            return Ok(false);
        }
        tracing::warn!(
            shard,
            from = h.counter,
            to = next,
            "lease counter moved past the warehouse's token"
        );
        self.held.insert(
            shard.to_string(),
            Held {
                counter: next,
                token: next,
            },
        );
        self.seen.insert(shard.to_string(), (next, Instant::now()));
        Ok(true)
    }

    /// Hand every lease back (a stopping instance): the others take them at once instead of
    /// after a lease period. A write the table took whose answer never came (a tick cut short)
    /// left the counter one ahead: the lease is read again and released from there.
    pub async fn release_all(&mut self) {
        let held = std::mem::take(&mut self.held);
        for (shard, h) in held {
            let mut counter = h.counter;
            for _ in 0..3 {
                match self.table.write(&shard, counter, None, false).await {
                    Ok(true) => {
                        tracing::info!(shard = %shard, "shard lease released");
                        break;
                    }
                    Ok(false) => {
                        let now = self
                            .table
                            .get(&shard)
                            .await
                            .ok()
                            .flatten()
                            .filter(|l| l.owner.as_deref() == Some(self.worker.as_str()));
                        match now {
                            Some(l) => counter = l.counter,
                            None => break,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(shard = %shard, error = %e, "shard lease not released");
                        break;
                    }
                }
            }
        }
    }
}

/// The lease side of a running instance: a task renews, takes and balances every
/// `renew_secs` (a long drain never lets a lease lapse), and publishes what it holds; the
/// drain reads that at its start.
pub struct LeaseHandle {
    coordinator: std::sync::Arc<tokio::sync::Mutex<Coordinator>>,
    owned: tokio::sync::watch::Receiver<BTreeMap<String, u64>>,
    publish: std::sync::Arc<tokio::sync::watch::Sender<BTreeMap<String, u64>>>,
    status: std::sync::Arc<std::sync::Mutex<FleetStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LeaseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseHandle").finish_non_exhaustive()
    }
}

/// A tick's outcome into the published state; finished shards told to the log (their
/// children may be read).
fn publish(
    c: &Coordinator,
    tick: &Tick,
    owned: &tokio::sync::watch::Sender<BTreeMap<String, u64>>,
    status: &std::sync::Mutex<FleetStatus>,
    log: &dyn super::StreamLog,
) {
    owned.send_replace(c.tokens());
    let view = c.view();
    for l in view.iter().filter(|l| l.finished) {
        log.mark_finished(&l.shard);
    }
    let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
    st.leases = view;
    for shard in &tick.lost {
        st.lost += 1;
        st.last_lost = Some(LostLease {
            shard: shard.clone(),
            at: chrono::Utc::now(),
        });
    }
}

impl LeaseHandle {
    /// Create the table if missing, take a first share (so the first drain has shards), and
    /// keep the leases from then on.
    pub async fn start(
        cfg: &LeaseConfig,
        kinesis_endpoint: Option<&str>,
        log: std::sync::Arc<dyn super::StreamLog>,
    ) -> Result<LeaseHandle> {
        let table = LeaseTable::connect(cfg, kinesis_endpoint).await;
        table.ensure().await?;
        let worker = Coordinator::worker_id(cfg);
        let mut c = Coordinator::new(table, worker.clone(), Duration::from_secs(cfg.lease_secs));
        let refs = log.shard_refs().await?;
        let first = c.tick(&refs).await?;
        tracing::info!(worker = %worker, shards = ?c.held().keys().collect::<Vec<_>>(), "leases started");
        let status = std::sync::Arc::new(std::sync::Mutex::new(FleetStatus {
            worker,
            table: cfg.table.clone(),
            ..FleetStatus::default()
        }));
        let (tx, rx) = tokio::sync::watch::channel(BTreeMap::new());
        let tx = std::sync::Arc::new(tx);
        publish(&c, &first, &tx, &status, log.as_ref());
        let coordinator = std::sync::Arc::new(tokio::sync::Mutex::new(c));
        let every = Duration::from_secs(cfg.renew_secs.max(1));
        let task = {
            let (coordinator, status, tx) = (coordinator.clone(), status.clone(), tx.clone());
            tokio::spawn(async move {
                // A random phase: instances started together do not tick (renew and steal)
                // in step.
                let phase = every.mul_f64(rand::random::<f64>());
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let refs = match log.shard_refs().await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "shards not listed for the lease tick");
                            continue;
                        }
                    };
                    let mut c = coordinator.lock().await;
                    match c.tick(&refs).await {
                        Ok(t) => publish(&c, &t, &tx, &status, log.as_ref()),
                        Err(e) => tracing::warn!(error = %e, "lease tick failed"),
                    }
                }
            })
        };
        Ok(LeaseHandle {
            coordinator,
            owned: rx,
            publish: tx,
            status,
            task,
        })
    }

    /// The shards held now, with their tokens.
    pub fn owned(&self) -> BTreeMap<String, u64> {
        self.owned.borrow().clone()
    }

    pub fn status(&self) -> FleetStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A closed shard was read to its end here.
    pub async fn finish(&self, shard: &str) -> Result<()> {
        let mut c = self.coordinator.lock().await;
        c.finish(shard).await?;
        self.publish.send_replace(c.tokens());
        Ok(())
    }

    /// A held shard's take was refused for a newer registered token: move its counter past it
    /// (`Coordinator::advance`), published at once.
    pub async fn advance(&self, shard: &str, registered: u64) -> Result<()> {
        let mut c = self.coordinator.lock().await;
        c.advance(shard, registered).await?;
        self.publish.send_replace(c.tokens());
        Ok(())
    }

    /// Stop renewing and hand every lease back.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        self.coordinator.lock().await.release_all().await;
    }
}

/// The fleet as the lease table and the shared warehouse say, from outside it (`ecomops
/// leases`, a status with no instance running): one look cannot watch counters, so a lease is
/// called expired here when its owner's own clock last wrote it more than a lease period ago.
pub async fn look(config: &crate::config::Config) -> Result<FleetStatus> {
    let k = &config.stream.kinesis;
    let table = LeaseTable::connect(&k.leases, k.endpoint_url.as_deref()).await;
    let now_ms = crate::clock::now_ms();
    let lease_ms = i64::try_from(k.leases.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let leases: Vec<LeaseRow> = table
        .list()
        .await?
        .into_iter()
        .map(|l| {
            let age_ms = now_ms.saturating_sub(l.heartbeat_ms);
            LeaseRow {
                expired: l.owner.is_some() && !l.finished && age_ms > lease_ms,
                shard: l.shard,
                owner: l.owner,
                counter: l.counter,
                age_ms,
                finished: l.finished,
                checkpoint: None,
            }
        })
        .collect();
    let mut fleet = FleetStatus {
        worker: String::new(),
        table: k.leases.table.clone(),
        leases,
        lost: 0,
        last_lost: None,
    };
    let store = crate::store::open_as(config, true).await?;
    if let Some(wh) = crate::warehouse::open(config, true, &store).await? {
        fleet.fill_checkpoints(&crate::warehouse::checkpoints(wh.as_ref()).await?);
    }
    Ok(fleet)
}
