//! The failure table, live: each of the five scenarios is provoked for real and the test
//! watches its state machine go detected -> ... -> recovered (or needs operator, then
//! recovered after the named command).

mod support {
    pub mod engine;
    pub mod fakestore_server;
}

use std::path::Path;

use ecom_pipeline::batch::synthetic::SyntheticSource;
use ecom_pipeline::command::Command;
use ecom_pipeline::config::{BatchSource, Config, CostConfig, RetryConfig};
use ecom_pipeline::failures::{FailureRow, FailureState};
use ecom_pipeline::orchestrator::Pipeline;
use support::engine::{open, origin};
use support::fakestore_server::FakeStoreServer;
use FailureState::*;

fn base(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

fn row(p: &Pipeline, scenario: &str) -> FailureRow {
    p.snapshot()
        .failures
        .iter()
        .find(|f| f.scenario.label() == scenario)
        .unwrap()
        .clone()
}

fn path(r: &FailureRow) -> Vec<FailureState> {
    r.transitions.iter().map(|(_, s)| *s).collect()
}

async fn cycle(p: &mut Pipeline) -> ecom_pipeline::command::CommandOutcome {
    p.dispatch(Command::RunCycle, &origin()).await
}

#[tokio::test]
async fn api_down_is_retried_then_needs_the_rerun_and_recovers() {
    let server = FakeStoreServer::start(SyntheticSource::new(42, 1)).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(tmp.path());
    c.batch.source = BatchSource::Fakestore;
    c.batch.fakestore.base_url = server.url();
    c.batch.fakestore.request_timeout_ms = 300;
    c.batch.retry = RetryConfig {
        base_delay_ms: 5,
        multiplier: 2.0,
        max_delay_ms: 20,
        max_attempts: 4,
        jitter: true,
        api_down_after: 3,
    };
    let mut p = open(c).await;
    server.set_down(true);
    assert!(!cycle(&mut p).await.ok);
    let r = row(&p, "API down");
    assert_eq!(path(&r)[..2], [Detected, Mitigating], "{r:?}");
    server.set_down(false);
    // The API is back, but the failed run is the operator's to rerun.
    p.dispatch(Command::Refresh, &origin()).await;
    let snap = p.snapshot();
    let run_id = snap.batch.runs[0].run_id.clone();
    let r = row(&p, "API down");
    if r.state == NeedsOperator {
        assert!(r
            .operator
            .unwrap()
            .contains(&format!("ecomops retry {run_id}")));
    }
    let o = p
        .dispatch(Command::Retry { run_id, task: None }, &origin())
        .await;
    assert!(o.ok, "{o:?}");
    let r = row(&p, "API down");
    assert_eq!(r.state, Recovered, "{r:?}");
    assert_eq!(path(&r).last(), Some(&Recovered));
    assert_eq!(path(&r)[0], Detected);
    assert_eq!(r.count, 1);
}

#[tokio::test]
async fn duplicate_file_is_skipped_and_recovers_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = open(base(tmp.path())).await;
    assert!(cycle(&mut p).await.ok);
    assert_eq!(row(&p, "duplicate file").state, Ok);
    // The same synthetic pull again: the same bytes, already in RAW and the ledger.
    assert!(cycle(&mut p).await.ok);
    let r = row(&p, "duplicate file");
    assert_eq!(path(&r), vec![Detected, Mitigating, Recovered], "{r:?}");
    assert!(r.detail.unwrap().contains("3 duplicate file(s)"));
}

#[tokio::test]
async fn late_events_wait_for_the_named_backfill() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = open(base(tmp.path())).await;
    // The default generator sends some events far behind the watermark.
    assert!(cycle(&mut p).await.ok);
    let r = row(&p, "late events");
    assert_eq!(path(&r), vec![Detected, Mitigating, NeedsOperator], "{r:?}");
    let op = r.operator.unwrap();
    let args: Vec<&str> = op.split_whitespace().collect();
    assert_eq!(&args[..2], ["ecomops", "backfill"], "{op}");
    let (from, to) = (args[3].parse().unwrap(), args[5].parse().unwrap());
    // The days waiting are in the snapshot.
    assert_eq!(p.snapshot().late_pending_days.first(), Some(&from));
    let late_objects = |dir: &Path| -> usize {
        fn count(d: &Path) -> usize {
            std::fs::read_dir(d).map_or(0, |rd| {
                rd.map(|e| e.unwrap().path())
                    .map(|p| if p.is_dir() { count(&p) } else { 1 })
                    .sum()
            })
        }
        count(&dir.join("store/late/events"))
    };
    let buffered = late_objects(tmp.path());
    assert!(buffered > 0);
    // The records view lists the days waiting, with their late events.
    let o = p
        .dispatch(
            Command::Quarantine {
                reason: None,
                limit: 1,
            },
            &origin(),
        )
        .await;
    let Some(ecom_pipeline::command::Report::Quarantine(q)) = &o.report else {
        panic!("{o:?}")
    };
    assert_eq!(q.late_pending.first().map(|(d, _)| *d), Some(from), "{q:?}");
    assert!(q.late_pending.iter().all(|(_, n)| *n > 0), "{q:?}");
    // Never pruned before it is loaded.
    let o = p
        .dispatch(Command::Prune { dry_run: false }, &origin())
        .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(late_objects(tmp.path()), buffered);
    // The index is in the warehouse, written with each segment's commit; objects it lacks
    // (written before it existed) are indexed from a listing by the next process.
    let wh = p.warehouse().unwrap().clone();
    let indexed = wh
        .query("SELECT COUNT(DISTINCT object_key) FROM ops.late_objects")
        .await
        .unwrap();
    assert_eq!(
        indexed[0][0].as_deref(),
        Some(buffered.to_string().as_str())
    );
    wh.execute_tx(vec!["DELETE FROM ops.late_objects".into()])
        .await
        .unwrap();
    drop((p, wh));
    let mut p = open(base(tmp.path())).await;
    assert_eq!(p.snapshot().late_pending_days.first(), Some(&from));
    let o = p.dispatch(Command::Backfill { from, to }, &origin()).await;
    assert!(o.ok, "{o:?}");
    let r = row(&p, "late events");
    assert_eq!(path(&r).last(), Some(&Recovered), "{r:?}");
    assert!(p.snapshot().late_pending_days.is_empty());
    // Loaded: prune deletes the late buffer, and verify still accounts for every event (the
    // pruned late objects' events are in the backfill objects).
    let o = p
        .dispatch(Command::Prune { dry_run: false }, &origin())
        .await;
    let Some(ecom_pipeline::command::Report::Prune(r)) = &o.report else {
        panic!("{o:?}")
    };
    assert!(r.deleted.iter().any(|k| k.starts_with("late/")), "{r:?}");
    assert_eq!(late_objects(tmp.path()), 0);
    let v = p.dispatch(Command::Verify, &origin()).await;
    assert!(v.ok, "{v:?}");
}

#[tokio::test]
async fn truncated_and_flipped_objects_are_detected_and_rebuilt_from_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(tmp.path());
    c.runtime.integrity_scan_interval_secs = 1;
    let mut p = open(c).await;
    assert!(cycle(&mut p).await.ok);
    let seg_dir = tmp.path().join("store/raw/stream/events/shard=shard-0000");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let good = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &good[..good.len() / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = cycle(&mut p).await;
    assert!(o.ok, "{o:?}");
    let r = row(&p, "partial write");
    assert_eq!(
        path(&r),
        vec![Detected, Mitigating, Recovering, Recovered],
        "{r:?}"
    );
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        good,
        "replay rewrote the original bytes"
    );
    assert!(p.snapshot().damaged.is_empty());
}

#[tokio::test]
async fn cost_over_budget_needs_pruning_and_recovers_after_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(tmp.path());
    // Storage is all that costs here, at a price that makes these kilobytes matter.
    c.cost = CostConfig {
        s3_standard_gb_month: 1e7,
        s3_standard_ia_gb_month: 1e7,
        s3_glacier_ir_gb_month: 1e7,
        s3_put_per_1000: 0.0,
        s3_get_per_1000: 0.0,
        kinesis_shard_hour: 0.0,
        kinesis_put_units_per_million: 0.0,
        redshift_rpu_hour: 0.0,
        // The store is local: hold the budget against it as if it were S3.
        budget_covers_local: true,
        ..CostConfig::default()
    };
    let mut p = open(c.clone()).await;
    assert!(cycle(&mut p).await.ok);
    let projected = p.snapshot().cost.clone().unwrap().projected_usd;
    drop(p);
    // A budget under today's storage, over what is left once the loaded objects are pruned.
    let late_and_quarantine: u64 = {
        let mut p = open(c.clone()).await;
        p.dispatch(Command::Refresh, &origin()).await;
        p.snapshot()
            .zones
            .iter()
            .filter(|z| {
                matches!(
                    z.zone,
                    Some(ecom_pipeline::zones::Zone::Late | ecom_pipeline::zones::Zone::Curated)
                )
            })
            .map(|z| z.bytes)
            .sum()
    };
    let floor = late_and_quarantine as f64 / (1u64 << 30) as f64 * 1e7;
    c.cost.budget_usd_month = (floor + projected) / 2.0;
    assert!(floor < c.cost.budget_usd_month && c.cost.budget_usd_month < projected);
    // Everything is a year and a half old: past RAW/STAGING/quarantine retention.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(550 * 86_400);
    for zone in ["raw", "staging", "quarantine"] {
        age(&tmp.path().join("store").join(zone), old);
    }
    let mut p = open(c).await;
    p.dispatch(Command::Refresh, &origin()).await;
    let r = row(&p, "cost growth");
    assert_eq!(r.state, NeedsOperator, "{r:?}");
    assert!(r.operator.unwrap().contains("ecomops prune"));
    let o = p
        .dispatch(Command::Prune { dry_run: false }, &origin())
        .await;
    assert!(o.ok, "{o:?}");
    let r = row(&p, "cost growth");
    assert_eq!(
        path(&r),
        vec![Detected, Mitigating, NeedsOperator, Recovering, Recovered],
        "{r:?}"
    );
    // Pruned only what the warehouse has: the metrics are intact.
    let m = p.dispatch(Command::Metrics, &origin()).await;
    assert!(m.ok);
}

fn age(dir: &Path, when: std::time::SystemTime) {
    let std::result::Result::Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            age(&path, when);
        } else {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(when).unwrap();
        }
    }
}

/// Retention and verify agree: after `prune` deletes STAGING and quarantine objects past their
/// retention (RAW still kept) and CURATED days past `curated_days`, verify is clean.
#[tokio::test]
async fn verify_reconciles_what_retention_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(tmp.path());
    c.lifecycle.curated_days = 1;
    let mut p = open(c.clone()).await;
    assert!(cycle(&mut p).await.ok);
    let v = p.dispatch(Command::Verify, &origin()).await;
    assert!(v.ok, "{v:?}");
    drop(p);
    // A hundred days old: past STAGING's (90) and quarantine's (30) retention, not RAW's (365).
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(100 * 86_400);
    for zone in ["raw", "staging", "quarantine"] {
        age(&tmp.path().join("store").join(zone), old);
    }
    let mut p = open(c).await;
    let o = p
        .dispatch(Command::Prune { dry_run: false }, &origin())
        .await;
    let Some(ecom_pipeline::command::Report::Prune(r)) = &o.report else {
        panic!("{o:?}")
    };
    assert!(r.deleted.iter().any(|k| k.starts_with("staging/")), "{r:?}");
    assert!(!r.deleted.iter().any(|k| k.starts_with("raw/")), "{r:?}");
    assert!(r.curated_rows > 0, "{r:?}");
    let v = p.dispatch(Command::Verify, &origin()).await;
    assert!(v.ok, "{v:?}");
}

/// A scan reads what was written since the last one and a rolling sample of the rest, and
/// keeps its place in `<data_dir>/integrity.json`: damage to an old object that keeps its time
/// (bit rot) is found by the sample, not by re-reading everything each time.
#[tokio::test]
async fn the_integrity_scan_reads_what_is_new_and_samples_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(tmp.path());
    c.runtime.integrity_scan_interval_secs = 1;
    // One old object per scan.
    c.runtime.integrity_scan_budget_bytes = 1;
    let mut p = open(c).await;
    assert!(cycle(&mut p).await.ok);
    assert!(tmp.path().join("integrity.json").exists());
    // The oldest stream segment, cut short with its time kept: only the sample can see it.
    let seg_dir = tmp.path().join("store/raw/stream/events/shard=shard-0000");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let when = std::fs::metadata(&seg).unwrap().modified().unwrap();
    let good = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &good[..good.len() / 2]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let mut scans = 0;
    while row(&p, "partial write").count == 0 {
        assert!(scans < 10, "not found in {scans} scans");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        cycle(&mut p).await;
        scans += 1;
    }
    // Found, replayed from the log byte-identical, read back intact.
    assert_eq!(std::fs::read(&seg).unwrap(), good);
    assert!(p.snapshot().damaged.is_empty());
    let plan = std::fs::read_to_string(tmp.path().join("integrity.json")).unwrap();
    assert!(plan.contains("\"cursor\":\"raw/"), "{plan}");
}

/// Damage found and not repaired yet is kept with the scan's place: a new process (the next
/// `--once` under cron) knows of it at once, although the scan has moved past the object, and
/// repairs it; the plan then says nothing is damaged.
#[tokio::test]
async fn damage_found_by_one_process_is_known_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(tmp.path());
    c.runtime.integrity_scan_interval_secs = 1;
    let mut p = open(c.clone()).await;
    assert!(cycle(&mut p).await.ok);
    drop(p);
    let seg_dir = tmp.path().join("store/raw/stream/events/shard=shard-0000");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let good = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &good[..good.len() / 2]).unwrap();
    // What a process that found it and could not repair it left in its plan.
    let key = seg
        .strip_prefix(tmp.path().join("store"))
        .unwrap()
        .display()
        .to_string();
    let plan_path = tmp.path().join("integrity.json");
    let mut plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    plan["damaged"] = serde_json::json!([key]);
    std::fs::write(&plan_path, plan.to_string()).unwrap();

    // No scan in the next process: it knows from the plan.
    let mut quiet = c.clone();
    quiet.runtime.integrity_scan_interval_secs = 0;
    let p = open(quiet).await;
    assert_eq!(p.snapshot().damaged, vec![key.clone()]);
    drop(p);
    // A process that scans rechecks it first, repairs it, and the plan forgets it.
    let mut p = open(c).await;
    assert!(cycle(&mut p).await.ok);
    assert!(p.snapshot().damaged.is_empty());
    assert_eq!(std::fs::read(&seg).unwrap(), good);
    let plan = std::fs::read_to_string(&plan_path).unwrap();
    assert!(!plan.contains("damaged"), "{plan}");
}

/// Zone figures between two listings come from the engine's own writes and deletes (a listing
/// of every zone is a request per 1,000 objects on S3): after a cycle and a prune, with no
/// listing since the one at open, they equal a fresh listing's; another writer's object shows
/// at the next listing (or when the operator asks, `r`), not before.
#[tokio::test]
async fn zone_figures_follow_the_engines_writes_between_listings() {
    use ecom_pipeline::store::ObjectStore;
    use ecom_pipeline::zones::{zone_stats, Zone, ZoneStats};
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(tmp.path());
    c.runtime.zone_listing_interval_secs = 3_600;
    c.lifecycle.curated_days = 1;
    let mut p = open(c).await;
    assert!(p.snapshot().zones.iter().all(|z| z.objects == 0));
    assert!(cycle(&mut p).await.ok);
    let o = p
        .dispatch(Command::Prune { dry_run: false }, &origin())
        .await;
    assert!(o.ok, "{o:?}");
    let figures = |v: &[ZoneStats]| -> Vec<(Option<Zone>, u64, u64)> {
        v.iter().map(|z| (z.zone, z.objects, z.bytes)).collect()
    };
    let listed = zone_stats(p.store().as_ref()).await.unwrap();
    let shown = p.snapshot().zones.clone();
    assert_eq!(figures(&shown), figures(&listed));
    assert!(shown.iter().any(|z| z.objects > 0));
    // Another writer's object.
    let other = ecom_pipeline::store::LocalStore::open(tmp.path().join("store")).unwrap();
    other
        .put("raw/other/x/o.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(cycle(&mut p).await.ok);
    let raw = |v: &[ZoneStats]| {
        v.iter()
            .find(|z| z.zone == Some(Zone::Raw))
            .unwrap()
            .objects
    };
    let listed = zone_stats(p.store().as_ref()).await.unwrap();
    assert_eq!(raw(&p.snapshot().zones), raw(&listed) - 1, "not listed yet");
    p.dispatch(Command::Refresh, &origin()).await;
    assert_eq!(figures(&p.snapshot().zones), figures(&listed), "`r` lists");
}
