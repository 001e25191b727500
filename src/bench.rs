//! `ecomops bench …`: figures for the performance goals, printed, never asserted.
//!
//! `bench merge` loads an orders file into a warehouse already holding `base` orders (10% of
//! the file updates existing keys, 90% are new) through the real load path (parse the STAGING
//! NDJSON, scratch table, dedup, MERGE, dirty days, ledger row, one transaction), and runs the
//! bare two-clause MERGE of the same rows straight in DuckDB on a second, identical database, as
//! `shared/bench/peer_merge_duckdb.py` does. Absolute figures need `--release`; the ratio is
//! what the goal (<= 1.2x) is about.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Context as _;
use ecom_pipeline::store::sha256_hex;
use ecom_pipeline::warehouse::duck::DuckWarehouse;
use ecom_pipeline::warehouse::{table_rows, StagedFile, Warehouse};

fn base_sql(base: u64) -> Vec<String> {
    vec![format!(
        "INSERT INTO staging.orders (order_id, user_id, order_time, order_status, \
         order_total_cents, item_count, source_key) SELECT i, (i % 50000) + 1, \
         TIMESTAMP '2026-01-01' + to_seconds(i % 86400), 'placed', (i % 997) * 150, 1, 'base' \
         FROM range(1, {}) t(i)",
        base + 1
    )]
}

/// Source key `i`: the first 10% update existing orders, the rest are new.
fn source_id(i: u64, rows: u64, base: u64) -> u64 {
    if i <= rows / 10 {
        (i * 97) % base.max(1) + 1
    } else {
        base + i
    }
}

pub async fn merge(base: u64, rows: u64) -> anyhow::Result<()> {
    let mut ndjson = String::with_capacity(rows as usize * 140);
    for i in 1..=rows {
        let _ = writeln!(
            ndjson,
            r#"{{"order_id":{},"user_id":{},"order_time":"2026-02-01T{:02}:{:02}:{:02}Z","order_status":"placed","order_total_cents":{},"item_count":1}}"#,
            source_id(i, rows, base),
            i % 50000 + 1,
            (i % 86400) / 3600,
            (i % 3600) / 60,
            i % 60,
            (i % 991) * 200
        );
    }

    // ecomops: the whole load.
    let ours = DuckWarehouse::in_memory().context("opening DuckDB")?;
    ours.execute_tx(base_sql(base)).await?;
    let file = StagedFile {
        key: "staging/orders/bench.ndjson".into(),
        entity: "orders".into(),
        sha256: sha256_hex(ndjson.as_bytes()),
        body: bytes::Bytes::from(ndjson.clone()),
        source: "bench".into(),
        checkpoint: None,
        columns: None,
    };
    let t = Instant::now();
    let outcome = ours.load(&file).await?;
    let ours_secs = t.elapsed().as_secs_f64();
    let ours_rows = table_rows(&ours, "staging.orders").await?;

    // DuckDB directly: the same rows already in a table, the bare MERGE.
    let direct = DuckWarehouse::in_memory()?;
    direct.execute_tx(base_sql(base)).await?;
    direct
        .execute_tx(vec![format!(
            "CREATE TABLE ops.src AS SELECT * FROM (SELECT CASE WHEN i <= {tenth} THEN (i * 97) % {base} + 1 \
             ELSE {base} + i END AS order_id, i % 50000 + 1 AS user_id, TIMESTAMP '2026-02-01' + \
             to_seconds(i % 86400) AS order_time, 'placed' AS order_status, (i % 991) * 200 AS \
             order_total_cents, 1 AS item_count, 'src' AS source_key FROM range(1, {end}) t(i))",
            tenth = rows / 10,
            base = base.max(1),
            end = rows + 1
        )])
        .await?;
    let t = Instant::now();
    direct
        .execute_tx(vec![
            "MERGE INTO staging.orders AS t USING ops.src AS s ON t.order_id = s.order_id \
             WHEN MATCHED THEN UPDATE SET user_id = s.user_id, order_time = s.order_time, \
             order_status = s.order_status, order_total_cents = s.order_total_cents, \
             item_count = s.item_count, created_at = s.order_time, source_key = s.source_key \
             WHEN NOT MATCHED THEN INSERT (order_id, user_id, order_time, order_status, \
             order_total_cents, item_count, created_at, source_key) VALUES (s.order_id, \
             s.user_id, s.order_time, s.order_status, s.order_total_cents, s.item_count, \
             s.order_time, s.source_key)"
                .into(),
        ])
        .await?;
    let direct_secs = t.elapsed().as_secs_f64();
    let direct_rows = table_rows(&direct, "staging.orders").await?;

    let profile = build_profile();
    println!("merge bench ({profile}): {rows} source rows (10% updates) into {base} orders");
    println!(
        "  ecomops load (parse + scratch + dedup + MERGE + ledger): {ours_secs:.3} s = {:.0} rows/s; table {ours_rows} rows; {} merged",
        rows as f64 / ours_secs,
        outcome.rows
    );
    println!(
        "  DuckDB bare MERGE, same rows:                            {direct_secs:.3} s = {:.0} rows/s; table {direct_rows} rows",
        rows as f64 / direct_secs
    );
    println!(
        "  ratio ecomops / direct: {:.2}x (goal <= 1.2x)",
        ours_secs / direct_secs
    );
    anyhow::ensure!(
        ours_rows == direct_rows,
        "the two tables differ: {ours_rows} vs {direct_rows}"
    );
    Ok(())
}

/// `bench keys`: `rows` events inserted in one transaction into a DuckDB file table shaped like
/// `staging.events`, with its primary key and without. What no load path over that table can go
/// below: the key's index is built row by row, and the row data is written to the file. It runs
/// on DuckDB's default threads (one per core), the more generous floor: loads use one.
pub async fn keys(rows: u64) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let wh = DuckWarehouse::open(&dir.join("keys.duckdb"), false, 1).await?;
    let columns = "event_id VARCHAR NOT NULL{pk}, user_id BIGINT NOT NULL, product_id BIGINT \
                   NOT NULL, event_type VARCHAR NOT NULL, event_time TIMESTAMP NOT NULL, \
                   ingestion_time TIMESTAMP NOT NULL, session_id VARCHAR NOT NULL, \
                   producer_time TIMESTAMP, source_key VARCHAR NOT NULL";
    wh.execute_tx(vec![
        format!(
            "CREATE TABLE ops.keyed ({})",
            columns.replace("{pk}", " PRIMARY KEY")
        ),
        format!("CREATE TABLE ops.unkeyed ({})", columns.replace("{pk}", "")),
        format!(
            "CREATE TABLE ops.source AS SELECT CAST(i AS VARCHAR) AS event_id, i % 500 AS \
             user_id, i % 20 AS product_id, 'product_view' AS event_type, TIMESTAMP \
             '2026-11-20' + to_seconds(i % 86400) AS event_time, TIMESTAMP '2026-11-20' + \
             to_seconds(i % 86400) AS ingestion_time, 's' || (i % 100000) AS session_id, \
             CAST(NULL AS TIMESTAMP) AS producer_time, 'staging/events/shard=shard-0000/\
             seg-1-10000.ndjson' AS source_key FROM range({rows}) t(i)"
        ),
    ])
    .await?;
    let mut secs = Vec::new();
    for table in ["ops.keyed", "ops.unkeyed"] {
        let t = Instant::now();
        wh.execute_tx(vec![format!(
            "INSERT INTO {table} SELECT * FROM ops.source"
        )])
        .await?;
        secs.push(t.elapsed().as_secs_f64());
    }
    drop(wh);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "keys bench ({}): {rows} events, one transaction each, DuckDB file",
        build_profile()
    );
    println!(
        "  with staging.events' primary key: {:.2} s = {:.0} events/s",
        secs[0],
        rows as f64 / secs[0]
    );
    println!(
        "  without a key:                    {:.2} s = {:.0} events/s",
        secs[1],
        rows as f64 / secs[1]
    );
    Ok(())
}

/// `bench stream`: generator (or an NDJSON file) -> local log -> consumer -> dedup ->
/// watermark -> RAW -> STAGING on the embedded backends, timed per stage and end to end, and
/// the dedup window's bytes per tracked event_id.
pub async fn stream(events: u64, file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use ecom_pipeline::config::StreamConfig;
    use ecom_pipeline::store::LocalStore;
    use ecom_pipeline::stream::consumer::Processor;
    use ecom_pipeline::stream::local::LocalLog;
    use ecom_pipeline::stream::StreamLog;

    let dir = tempfile_dir()?;
    let cfg = StreamConfig::default();
    let t = Instant::now();
    let records: Vec<(String, bytes::Bytes)> = match &file {
        Some(path) => {
            let body = bytes::Bytes::from(
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            );
            body.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| (String::new(), body.slice_ref(l)))
                .collect()
        }
        None => {
            let now = chrono::Utc::now();
            let mut g = ecom_pipeline::generator::Generator::new(&cfg.generator, 500, 20);
            g.next_batch(events, now - chrono::Duration::hours(6), now)
                .0
        }
    };
    let n = records.len() as f64;
    let bytes: usize = records.iter().map(|r| r.1.len()).sum();
    let prepare = t.elapsed().as_secs_f64();

    let log = LocalLog::open(
        dir.join("log"),
        cfg.shards,
        cfg.local.segment_bytes,
        std::time::Duration::from_secs(3600),
        false,
    )?;
    let store = LocalStore::open(dir.join("store"))?;
    let t = Instant::now();
    for chunk in records.chunks(50_000) {
        log.put(chunk.to_vec()).await?;
    }
    let put = t.elapsed().as_secs_f64();
    let mut p = Processor::new(&cfg);
    let t = Instant::now();
    let c = p
        .drain(&log, &store, None, cfg.segment_records as usize)
        .await?;
    let drain = t.elapsed().as_secs_f64();
    let stats = p.dedup().stats();
    let per_id = p.dedup().heap_bytes() as f64 / stats.tracked.max(1) as f64;
    let profile = build_profile();
    println!(
        "stream bench ({profile}): {n} records, {:.1} MB, {} shards",
        bytes as f64 / 1e6,
        cfg.shards
    );
    println!(
        "  source ({}): {prepare:.3} s",
        if file.is_some() {
            "read file"
        } else {
            "generate"
        }
    );
    println!(
        "  log append:                       {put:.3} s = {:.0} events/s",
        n / put
    );
    println!(
        "  consume -> dedup -> watermark -> RAW -> STAGING: {drain:.3} s = {:.0} events/s \
         ({} staged, {} duplicates, {} late, {} quarantined)",
        n / drain,
        c.staged,
        c.duplicates,
        c.late,
        c.quarantined
    );
    println!(
        "  end to end (log + consume):       {:.0} events/s",
        n / (put + drain)
    );
    println!(
        "  dedup: {} ids tracked, {per_id:.1} bytes per id (goal <= 24)",
        stats.tracked
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Peak RSS of the largest child waited for so far, bytes (Linux reports KiB).
fn children_max_rss() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_or(0, |u| u.max_rss().max(0) as u64 * 1024)
}

/// `bench ingest`: the real `ingest events FILE` (this binary, a fresh data dir, the embedded
/// default: log, dedup, watermarks, RAW, STAGING, the DuckDB MERGE, model refresh, CURATED
/// files), timed from spawn to exit; then the peer on the same file, and the ratio.
pub fn ingest(
    file: &std::path::Path,
    peer: &std::path::Path,
    python: &std::path::Path,
) -> anyhow::Result<()> {
    let lines = std::fs::read(file)
        .with_context(|| format!("reading {}", file.display()))?
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as f64;
    let dir = tempfile_dir()?;
    let exe = std::env::current_exe().context("finding this binary")?;
    let t = Instant::now();
    let out = std::process::Command::new(&exe)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["ingest", "events"])
        .arg(file)
        .env("RUST_LOG", "warn")
        .output()
        .context("running ingest events")?;
    let ours = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "ingest events failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let our_rss = children_max_rss();
    let profile = build_profile();
    println!(
        "ingest bench ({profile}): {lines} lines of {}",
        file.display()
    );
    println!(
        "  ecomops ingest events (warehouse included): {ours:.2} s = {:.0} events/s, peak RSS {:.0} MB",
        lines / ours,
        our_rss as f64 / 1e6
    );
    print!("  {}", String::from_utf8_lossy(&out.stdout));
    let has_duckdb = std::process::Command::new(python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb || !peer.exists() {
        println!(
            "  peer: skipped ({} with duckdb and {} needed)",
            python.display(),
            peer.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let t = Instant::now();
    let out = std::process::Command::new(python)
        .arg(peer)
        .arg(file)
        .arg(dir.join("peer"))
        .output()
        .context("running the peer")?;
    let theirs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "the peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = children_max_rss();
    println!(
        "  peer, DuckDB SQL (process, wall): {theirs:.2} s = {:.0} events/s, peak RSS {}",
        lines / theirs,
        if rss > our_rss {
            format!("{:.0} MB", rss as f64 / 1e6)
        } else {
            format!("<= ours ({:.0} MB)", our_rss as f64 / 1e6)
        }
    );
    print!("  {}", String::from_utf8_lossy(&out.stdout));
    println!(
        "  ratio: ecomops at {:.2}x the peer's events/s (goal >= 2x)",
        theirs / ours
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The build a figure came from, named by the target subdirectory this binary sits in, with
/// what it means for DuckDB (whose optimisation dominates any figure that goes through it).
fn build_profile() -> &'static str {
    let exe = std::env::current_exe().ok();
    match exe
        .as_deref()
        .and_then(|e| e.parent())
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
    {
        Some("release") => "release: Rust and DuckDB -O3",
        Some("bench-fast") => "bench-fast: Rust optimised, DuckDB -O0",
        Some("debug") => "debug: Rust and DuckDB unoptimised; not a figure to quote",
        _ => "unknown profile",
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ecomops-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `bench frame`: the full frame (header, tabs, view, status line) of every view, drawn on a
/// TestBackend so the figure is the dashboard's own work, not the terminal's.
pub fn frame(shards: usize, runs: usize, w: u16, h: u16, frames: u32) -> anyhow::Result<()> {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let snap = ecom_ui::fixture::snapshot(shards, runs);
    let profile = build_profile();
    println!(
        "frame bench ({profile}): {w}x{h}, {shards} shards, {runs} runs, {frames} frames per view"
    );
    let mut worst_mean = 0.0f64;
    for tab in ecom_ui::Tab::ALL {
        let mut app = ecom_ui::App::new(false, true, false);
        app.tab = tab;
        let mut term = Terminal::new(TestBackend::new(w, h))?;
        let mut times = Vec::with_capacity(frames as usize);
        for i in 0..frames.max(1) {
            // Move the selection so the diff against the last frame is never empty.
            app.selected[tab.index()] = (i as usize) % 8;
            let t = std::time::Instant::now();
            term.draw(|f| ecom_ui::draw(f, &app, &snap))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        worst_mean = worst_mean.max(mean);
        println!(
            "  {:<11} mean {mean:.3} ms  p99 {p99:.3} ms  max {:.3} ms",
            tab.title(),
            times[times.len() - 1]
        );
    }
    println!("slowest view mean: {worst_mean:.3} ms per frame (goal <= 2 ms)");
    Ok(())
}

/// `bench batch`: one batch run of the synthetic source at `scale` (extract -> land in RAW ->
/// stage -> MERGE into DuckDB) on a temporary data dir; records/s over the whole run.
pub async fn batch(scale: u32) -> anyhow::Result<()> {
    use std::sync::Arc;
    let tmp = std::env::temp_dir().join(format!("ecomops-bench-batch-{}", std::process::id()));
    let mut config = ecom_pipeline::config::Config {
        data_dir: tmp.clone(),
        ..Default::default()
    };
    config.batch.scale = scale;
    let store: Arc<dyn ecom_pipeline::store::ObjectStore> =
        Arc::new(ecom_pipeline::store::LocalStore::open(tmp.join("store"))?);
    let wh: Arc<dyn Warehouse> = Arc::new(
        DuckWarehouse::open(
            &tmp.join("bench.duckdb"),
            false,
            config.warehouse.duckdb.threads,
        )
        .await?,
    );
    let runner = ecom_pipeline::batch::run::BatchRunner::new(&config, store, Some(wh))?;
    let start = Instant::now();
    let run = runner.run_new(None, None).await?;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&tmp);
    anyhow::ensure!(
        run.status == ecom_pipeline::batch::run::RunStatus::Succeeded,
        "the run failed: {}",
        run.summary()
    );
    let staged: u64 = run.report.staged.values().sum();
    let loaded: u64 = run.report.loaded.values().sum();
    let profile = build_profile();
    println!("batch bench ({profile}): synthetic source at scale {scale}");
    println!(
        "  {staged} records staged, {loaded} rows merged in {secs:.3} s = {:.0} records/s end to end",
        staged as f64 / secs
    );
    Ok(())
}

/// `bench store`: statistics of an S3 zone of `objects` objects, from the listing pages alone
/// against a HEAD per object, with the requests each takes (metered as S3 bills them).
pub async fn store(objects: u64, endpoint: String) -> anyhow::Result<()> {
    use ecom_pipeline::store::{ObjectStore, S3Store};
    use std::sync::Arc;
    let mut s3 = ecom_pipeline::config::S3Config {
        bucket: format!("bench-store-{}", std::process::id()),
        endpoint_url: Some(endpoint),
        region: Some("us-east-1".into()),
        force_path_style: true,
        ..Default::default()
    };
    s3.prefix = "ecomops/".into();
    ecom_pipeline::store::s3_client(&s3)
        .await
        .create_bucket()
        .bucket(&s3.bucket)
        .send()
        .await?;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::connect(&s3).await?);
    let start = Instant::now();
    let keys: Vec<String> = (0..objects)
        .map(|i| {
            format!(
                "raw/stream/events/shard=shard-{:04}/seg-{i:020}-{i:020}.ndjson",
                i % 4
            )
        })
        .collect();
    for chunk in keys.chunks(64) {
        let mut puts = tokio::task::JoinSet::new();
        for k in chunk {
            let (store, k) = (store.clone(), k.clone());
            puts.spawn(async move {
                let body = bytes::Bytes::from(format!("{{\"k\":\"{k}\"}}\n"));
                store.put(&k, body).await
            });
        }
        while let Some(r) = puts.join_next().await {
            r??;
        }
    }
    let profile = build_profile();
    println!(
        "store bench ({profile}; the S3 endpoint's own speed dominates): {objects} objects put to S3 at {} in {:.1} s",
        s3.endpoint_url.as_deref().unwrap_or(""),
        start.elapsed().as_secs_f64()
    );
    for (what, with_heads) in [
        ("listing pages only (list_stat)", false),
        ("a HEAD per object (list)", true),
    ] {
        let meter = Arc::new(ecom_pipeline::cost::Meter::default());
        let metered = ecom_pipeline::cost::MeteredStore::wrap(store.clone(), meter.clone());
        let start = Instant::now();
        let n = if with_heads {
            metered.list("raw/").await?.len()
        } else {
            metered.list_stat("raw/").await?.len()
        };
        let (list, get, _) = meter.read();
        println!(
            "  zone statistics, {what}: {n} objects in {:.3} s; {list} LIST and {get} GET/HEAD requests",
            start.elapsed().as_secs_f64()
        );
    }
    // Between listings the engine's figures come from its own writes (zone_tally): no request.
    let listing = ecom_pipeline::zones::zone_listing(store.as_ref()).await?;
    let tally = ecom_pipeline::zone_tally::ZoneTally::default();
    tally.replace(&listing);
    let start = Instant::now();
    let zones = tally.stats();
    println!(
        "  zone statistics between listings (tallied from writes): {} objects in {:.6} s; 0 requests",
        zones.iter().map(|z| z.objects).sum::<u64>(),
        start.elapsed().as_secs_f64()
    );
    // An integrity pass: every object (before: the scan re-read all data each time) against the
    // incremental scan once a first pass is done (nothing new: the rolling sample only, within
    // the default 64 MiB budget).
    let objects: Vec<ecom_pipeline::store::ObjectStat> =
        listing.into_iter().flat_map(|(_, o)| o).collect();
    let budget = ecom_pipeline::config::RuntimeConfig::default().integrity_scan_budget_bytes;
    let (_, after_first) = ecom_pipeline::integrity::ScanPlan::default().select(&objects, budget);
    let (incremental, _) = after_first.select(&objects, budget);
    for (what, keys) in [
        (
            "every object (the scan before)",
            objects.iter().map(|o| o.key.clone()).collect(),
        ),
        ("incremental, after a first pass", incremental),
    ] {
        let meter = Arc::new(ecom_pipeline::cost::Meter::default());
        let metered = ecom_pipeline::cost::MeteredStore::wrap(store.clone(), meter.clone());
        let keys: Vec<String> = keys;
        let start = Instant::now();
        let damaged = ecom_pipeline::integrity::check(metered.as_ref(), &keys).await?;
        let (_, get, _) = meter.read();
        println!(
            "  integrity pass, {what}: {} objects checked ({} damaged) in {:.3} s; {get} GET/HEAD requests",
            keys.len(),
            damaged.len(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `bench fleet`: events/s of 1, 2, 4 ... instances sharing an 8-shard stream by leases.
pub async fn fleet(
    counts: &[u32],
    events: u64,
    endpoint: &str,
    postgres: &str,
) -> anyhow::Result<()> {
    use ecom_pipeline::stream::StreamLog;
    use ecom_pipeline::warehouse::postgres::{PostgresWarehouse, Writer};
    anyhow::ensure!(
        endpoint.contains("127.0.0.1") || endpoint.contains("localhost"),
        "the benchmark only talks to a loopback endpoint"
    );
    let exe = std::env::current_exe().context("finding this binary")?;
    let dir = tempfile_dir()?;
    let pg = |dsn: &str| ecom_pipeline::config::PostgresConfig {
        connection: dsn.to_string(),
        ..Default::default()
    };
    let admin = PostgresWarehouse::connect(&pg(postgres), Writer::Reader).await?;
    println!(
        "fleet bench ({}): {events} records on 8 Kinesis shards (moto at {endpoint}), \
         PostgreSQL warehouse, leases in DynamoDB",
        build_profile()
    );
    const TYPES: [&str; 4] = ["product_view", "add_to_cart", "checkout", "purchase"];
    let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
    let lines: Vec<(String, bytes::Bytes)> = (0..events)
        .map(|i| {
            let line = serde_json::json!({
                "event_id": format!("fb{i:09}"),
                "user_id": 1 + i % 97,
                "product_id": 1 + i % 31,
                "event_type": TYPES[(i % 4) as usize],
                "event_time": (t0 + chrono::Duration::milliseconds(i as i64 * 3))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "session_id": format!("s{}", i / 7),
            });
            (format!("s{}", i / 7), bytes::Bytes::from(line.to_string()))
        })
        .collect();
    for &k in counts {
        let name = format!("bench-fleet-{}-{k}", std::process::id());
        let db = name.replace('-', "_");
        admin
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .await?;
        admin.query(&format!("CREATE DATABASE {db}")).await?;
        let dsn = format!("{postgres} dbname={db}");
        let cfg_path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg_path,
            format!(
                "[runtime]\ncycle_interval_secs = 1\n[batch]\ninterval_secs = 86400\n\
                 [store]\nbackend = \"s3\"\n[store.s3]\nbucket = \"{name}\"\n\
                 region = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nforce_path_style = true\n\
                 [stream]\nbackend = \"kinesis\"\nsegment_records = 5000\n\
                 [stream.generator]\nenabled = false\n\
                 [stream.kinesis]\nstream_name = \"{name}\"\nregion = \"us-east-1\"\n\
                 endpoint_url = \"{endpoint}\"\n\
                 [stream.kinesis.leases]\nenabled = true\ntable = \"{name}\"\n\
                 lease_secs = 9\nrenew_secs = 1\n\
                 [warehouse]\nbackend = \"postgres\"\n[warehouse.postgres]\nconnection = \"{dsn}\"\n"
            ),
        )?;
        let config = ecom_pipeline::config::Config::load(Some(&cfg_path))?;
        ecom_pipeline::store::s3_client(&config.store.s3)
            .await
            .create_bucket()
            .bucket(&name)
            .send()
            .await?;
        ecom_pipeline::stream::kinesis::client(&config.stream.kinesis)
            .await
            .create_stream()
            .stream_name(&name)
            .shard_count(8)
            .send()
            .await?;
        let log =
            ecom_pipeline::stream::kinesis::KinesisLog::connect(&config.stream.kinesis).await?;
        log.put(lines.clone()).await?;
        let t = Instant::now();
        let mut children = Instances(Vec::new());
        for i in 0..k {
            children.0.push(
                std::process::Command::new(&exe)
                    .arg("--config")
                    .arg(&cfg_path)
                    .arg("--data-dir")
                    .arg(dir.join(format!("{name}-w{i}")))
                    .arg("--no-ui")
                    .env("RUST_LOG", "warn")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::fs::File::create(dir.join(format!("{name}-w{i}.log")))?)
                    .spawn()?,
            );
        }
        let wh = PostgresWarehouse::connect(&pg(&dsn), Writer::Reader).await?;
        let done = loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let n = wh
                .query("SELECT CAST(COALESCE(SUM(records), 0) AS BIGINT) FROM ops.segments")
                .await
                .ok()
                .and_then(|r| r.first()?.first()?.as_deref()?.parse::<u64>().ok())
                .unwrap_or(0);
            if n >= events {
                break t.elapsed().as_secs_f64();
            }
            // An instance that stopped (bad config, a refused lock) fails the run now, with
            // where its log is, not after the half hour.
            for (i, c) in children.0.iter_mut().enumerate() {
                if let Some(status) = c.try_wait()? {
                    anyhow::bail!(
                        "{k} instances: instance {i} exited ({status}) with {n} of {events} \
                         records committed; its log: {}",
                        dir.join(format!("{name}-w{i}.log")).display()
                    );
                }
            }
            if t.elapsed().as_secs() > 1800 {
                anyhow::bail!("{k} instances: only {n} of {events} records after 30 minutes");
            }
        };
        for c in &children.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for c in &mut children.0 {
            let _ = c.wait();
        }
        drop(wh);
        // The run's database goes with it (its bucket and stream live as long as moto).
        if let Err(e) = admin.query(&format!("DROP DATABASE IF EXISTS {db}")).await {
            eprintln!("  (database {db} not dropped: {e})");
        }
        println!(
            "  {k} instance{}: {done:.1} s = {:.0} events/s (from start, leases and batch pull included)",
            if k == 1 { "" } else { "s" },
            events as f64 / done
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Instances a bench started: killed if the bench fails before stopping them itself.
struct Instances(Vec<std::process::Child>);

impl Drop for Instances {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
