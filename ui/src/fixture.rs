//! A deterministic snapshot for snapshot tests and the frame benchmark: fixed times, `shards`
//! shards and `runs` batch runs (one failed by an API outage), metrics with history.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ecom_pipeline::audit;
use ecom_pipeline::batch::land::{LandedFile, PullReport};
use ecom_pipeline::batch::retry::ApiState;
use ecom_pipeline::batch::run::{BatchRun, RunStatus, TaskState, TaskStatus, TASKS};
use ecom_pipeline::dedup::DedupStats;
use ecom_pipeline::failures::Signals;
use ecom_pipeline::history::History;
use ecom_pipeline::snapshot::{
    Backends, BatchStatus, CycleReport, InstanceInfo, LogLine, RunMode, Snapshot,
};
use ecom_pipeline::stream::consumer::{SegmentCounts, StreamStatus};
use ecom_pipeline::stream::ShardStatus;
use ecom_pipeline::warehouse::{CategoryRevenue, FunnelStep, Metrics, WarehouseStatus};
use ecom_pipeline::watermark::WatermarkStatus;
use ecom_pipeline::zones::{Zone, ZoneStats};

/// 2026-11-24 12:00:00 UTC.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn run(i: usize, failed: bool) -> BatchRun {
    let start = now() - Duration::minutes(5 * (i as i64 + 1));
    let tasks = TASKS
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (status, error) = match (failed, k) {
                (true, 0..=2) => (
                    TaskStatus::Failed,
                    Some("GET /products: HTTP 503 after 5 attempts".to_string()),
                ),
                (true, _) => (TaskStatus::UpstreamFailed, None),
                (false, _) => (TaskStatus::Succeeded, None),
            };
            TaskState {
                name: name.to_string(),
                status,
                attempts: if failed { 1 } else { 1 + (k == 2) as u32 },
                started_at: Some(start + Duration::milliseconds(100 * k as i64)),
                ended_at: Some(start + Duration::milliseconds(100 * k as i64 + 90)),
                error,
                detail: (!failed).then(|| format!("{name}: done")),
            }
        })
        .collect();
    let files = if failed {
        Vec::new()
    } else {
        ["products", "users", "carts"]
            .iter()
            .map(|e| LandedFile {
                entity: e.to_string(),
                raw_key: format!("raw/fakestore/{e}/dt=2026-11-24/{e}.json"),
                sha256: format!("{i:064x}"),
                bytes: 4096,
                duplicate: i > 0,
            })
            .collect()
    };
    BatchRun {
        run_id: format!("20261124T{:06}-{i:04}", 115500 - i),
        source: "synthetic".into(),
        window: None,
        created_at: start,
        started_at: Some(start),
        ended_at: Some(start + Duration::milliseconds(600)),
        status: if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        },
        tasks,
        extracted: BTreeMap::new(),
        report: PullReport {
            source: "synthetic".into(),
            files,
            ..Default::default()
        },
    }
}

/// The fixture.
pub fn snapshot(shards: usize, runs: usize) -> Snapshot {
    let now = now();
    let names: Vec<String> = (0..shards).map(|i| format!("shard-{i:04}")).collect();
    let shard_status: Vec<ShardStatus> = names
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let latest = 1000 + 37 * i as u64;
            let lag = if i % 4 == 1 { 12 + i as u64 } else { 0 };
            ShardStatus {
                shard: s.clone(),
                latest_seq: Some(latest),
                checkpoint: Some(latest - lag),
                lag_records: lag,
                lag_ms: lag * 150,
            }
        })
        .collect();
    let base = now.timestamp_millis();
    let history = History {
        shard_rates: names
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let series = (0..60)
                    .map(|k| ((k * 7 + i * 13) % 50) as u64 * 4)
                    .collect();
                (s.clone(), series)
            })
            .collect(),
        revenue_cents: (0..30).map(|k| 1_000_000 + k * 12_345).collect(),
        avg_order_value_cents: (0..30).map(|k| 8_000 + (k % 7) * 100).collect(),
        conversion_bp: (0..30).map(|k| 1_200 + (k % 5) * 10).collect(),
        orders: (0..30).map(|k| 120 + k * 3).collect(),
    };
    let zone = |z: Zone, objects: u64, bytes: u64, mins: i64| ZoneStats {
        zone: Some(z),
        objects,
        bytes,
        last_write: (objects > 0).then(|| now - Duration::minutes(mins)),
    };
    let mut s = Snapshot {
        cost: None,
        damaged: Vec::new(),
        metrics: Vec::new(),
        alerts: Vec::new(),
        seq: 42,
        generated_at: now,
        instance: InstanceInfo {
            pid: 4242,
            started_at: now - Duration::hours(3),
            data_dir: "/var/lib/ecomops".into(),
            mode: RunMode::Dashboard,
            read_only: false,
            version: "0.1.0".into(),
        },
        backends: Backends {
            store: "local".into(),
            stream: "local".into(),
            warehouse: "duckdb".into(),
        },
        paused: false,
        zones: vec![
            zone(Zone::Raw, 1_234, 98_765_432, 1),
            zone(Zone::Staging, 1_100, 45_678_901, 1),
            zone(Zone::Curated, 0, 0, 0),
            zone(Zone::Quarantine, 17, 20_480, 30),
            zone(Zone::Late, 4, 8_192, 90),
        ],
        cycles: 37,
        last_cycle: Some(CycleReport {
            cycle: 37,
            started_at: now - Duration::seconds(12),
            finished_at: now - Duration::seconds(10),
            ok: true,
            steps: vec!["batch: run succeeded".into(), "stream: 500 records".into()],
            error: None,
        }),
        batch: BatchStatus {
            source: "synthetic".into(),
            api: ApiState {
                down: false,
                consecutive_failures: 0,
                attempts: 310,
                failures: 15,
                last_error: Some("HTTP 503".into()),
                detections: 1,
                recoveries: 1,
            },
            runs: (0..runs).map(|i| run(i, i == 2)).collect(),
        },
        warehouse: Some(WarehouseStatus {
            backend: "duckdb".into(),
            tables: vec![
                ("staging.events".into(), 250_000),
                ("staging.orders".into(), 4_000),
                ("curated.daily_metrics".into(), 30),
            ],
            ledger_files: 812,
            dirty_days: 2,
            metrics: Some(Metrics {
                revenue_cents: 1_358_005,
                orders: 207,
                avg_order_value_cents: Some(6_560.4),
                conversion_rate: Some(0.1234),
                funnel_dropoff: Some(vec![
                    FunnelStep {
                        from: "product_view".into(),
                        to: "add_to_cart".into(),
                        dropoff: 0.62,
                    },
                    FunnelStep {
                        from: "add_to_cart".into(),
                        to: "checkout".into(),
                        dropoff: 0.41,
                    },
                    FunnelStep {
                        from: "checkout".into(),
                        to: "purchase".into(),
                        dropoff: 0.18,
                    },
                ]),
                by_category: vec![CategoryRevenue {
                    category: "electronics".into(),
                    revenue_cents: 900_000,
                    orders: 80,
                }],
            }),
        }),
        stream: Some(StreamStatus {
            backend: "local".into(),
            totals: SegmentCounts {
                records: 250_500,
                staged: 249_000,
                duplicates: 1_000,
                late: 300,
                quarantined: 200,
            },
            segments: 512,
            dedup: DedupStats {
                seen: 250_300,
                duplicates: 1_000,
                tracked: 180_000,
                evicted_early: 0,
            },
            watermarks: WatermarkStatus {
                shards: names
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.clone(), base - 5_000 - 1_000 * i as i64, i % 8 == 7))
                    .collect(),
                global_ms: Some(base - 5_000 - 1_000 * shards.saturating_sub(2) as i64),
                late_events: 300,
                out_of_orderness_ms: 5_000,
                allowed_lateness_ms: 60_000,
            },
            shards: shard_status,
        }),
        recent_log: (0..40)
            .map(|i| LogLine {
                time: now - Duration::seconds(40 - i),
                level: ["INFO", "INFO", "WARN", "INFO", "ERROR"][i as usize % 5].into(),
                target: "ecom_pipeline::orchestrator".into(),
                message: format!("cycle step {i}: {} records", i * 10),
            })
            .collect(),
        next_cycle_at: Some(now + Duration::seconds(8)),
        history,
        failures: Vec::new(),
        recent_actions: vec![audit::Record {
            at: now - Duration::minutes(20),
            user: "oncall".into(),
            ssh_connection: Some("10.0.0.5 51000 10.0.0.9 22".into()),
            via: "dashboard".into(),
            action: "backfill".into(),
            arguments: r#"{"command":"backfill","from":"2026-11-22","to":"2026-11-23"}"#.into(),
            outcome: "ok".into(),
            message: "backfill 2026-11-22..2026-11-23: 4 late event(s) loaded, 2 day(s) recomputed"
                .into(),
        }],
    };
    // The failure table as the tracker makes it: an API outage retried, duplicates skipped,
    // late events waiting for a backfill, a partial write repaired, cost within budget.
    let mut tracker = ecom_pipeline::failures::Tracker::new();
    let day = now.date_naive() - Duration::days(1);
    let t0 = now - Duration::minutes(20);
    tracker.observe(
        &Signals {
            api_down: true,
            api_last_error: Some("HTTP 503".into()),
            damaged: vec!["raw/stream/events/shard=shard-0001/seg-00000000000000000001-00000000000000000100.ndjson".into()],
            repairing: true,
            ..Signals::default()
        },
        t0,
    );
    tracker.observe(
        &Signals {
            duplicate_files: 18,
            late_events: 300,
            late_pending_days: vec![day],
            budget_usd: 50.0,
            projected_usd: 12.5,
            ..Signals::default()
        },
        now - Duration::minutes(9),
    );
    s.failures = tracker.rows();
    let mut usage = ecom_pipeline::cost::Usage::new(now - Duration::days(23));
    usage.observe(now - Duration::days(23), (0, 0, 0), &[], 4, 0, 0);
    let zone_bytes: Vec<(Zone, u64)> = s
        .zones
        .iter()
        .filter_map(|z| z.zone.map(|zone| (zone, z.bytes)))
        .collect();
    usage.observe(
        now,
        (120_000, 400_000, 7_200_000_000),
        &zone_bytes,
        4,
        250_500,
        36_000_000,
    );
    let setup = ecom_pipeline::cost::Setup {
        shards: 4,
        cloudwatch_metrics: 0,
        cloudwatch_alarms: 0,
        on_aws: [("s3".to_string(), false), ("kinesis".to_string(), false)].into(),
    };
    s.cost = Some(ecom_pipeline::cost::estimate(
        &ecom_pipeline::config::CostConfig::default(),
        &usage,
        &zone_bytes,
        &setup,
        ecom_pipeline::cost::Saving {
            expirable_bytes: 0,
            ia_bytes: 40_000_000,
            glacier_bytes: 0,
            usd_month: 0.0004,
        },
        now,
    ));
    s.metrics = ecom_pipeline::metrics::points(&s);
    let mut alerts =
        ecom_pipeline::alerts::Alerts::new(ecom_pipeline::config::AlertRule::defaults());
    alerts.evaluate(&s.metrics, now);
    s.alerts = alerts.states();
    s
}
