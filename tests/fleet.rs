//! Several instances on one Kinesis stream (issue "When one machine is not enough"): on moto
//! (Kinesis with 8 shards, DynamoDB leases, S3) and the test PostgreSQL 15 as the shared
//! warehouse (written as PostgreSQL, and as Redshift through the Data API: `support::data_api`),
//! three `ecomops --no-ui` instances start, a producer writes 100,000 records (resends,
//! disorder, late and malformed ones), one instance is SIGKILLed mid-run and a fourth joins.
//! Afterwards every record is committed exactly once (segments never overlap and the counts add
//! up to what was sent), each event is in the warehouse once, resends across a shard's move are
//! still recognised (its dedup window moved with it), no checkpoint moved backwards, each shard's
//! takes are in token order, the stopped instances handed their leases back, and `verify` is
//! clean.

mod support {
    #[path = "../../pipeline/tests/support/data_api.rs"]
    pub mod data_api;
    #[path = "../../pipeline/tests/support/moto.rs"]
    pub mod moto;
    #[path = "../../pipeline/tests/support/pg.rs"]
    pub mod pg;
    pub mod workload;
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ecom_pipeline::stream::StreamLog;
use ecom_pipeline::warehouse::Warehouse;

const RECORDS: u64 = 100_000;

/// The two fleets of this file run one after the other (eight instances at once on two cores
/// would time each other out).
static ONE_FLEET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `name` keeps the bucket, stream and lease table apart; `warehouse` is the config's section.
fn config(root: &Path, endpoint: &str, warehouse: &str, name: &str, worker: &str) -> PathBuf {
    let path = root.join(format!("{worker}.toml"));
    std::fs::write(
        &path,
        format!(
            "[runtime]\ncycle_interval_secs = 1\n\n\
             [batch]\ninterval_secs = 86400\n\n\
             [store]\nbackend = \"s3\"\n\n[store.s3]\nbucket = \"{name}\"\nprefix = \"ecomops/\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nforce_path_style = true\n\n\
             [stream]\nbackend = \"kinesis\"\nsegment_records = 2000\n\n\
             [stream.generator]\nenabled = false\n\n\
             [stream.kinesis]\nstream_name = \"{name}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{endpoint}\"\nlist_shards_interval_secs = 5\n\n\
             [stream.kinesis.leases]\nenabled = true\ntable = \"{name}\"\nworker_id = \"{worker}\"\n\
             lease_secs = 6\nrenew_secs = 2\n\n{warehouse}"
        ),
    )
    .unwrap();
    path
}

fn start(root: &Path, cfg: &Path, worker: &str) -> Child {
    let log = std::fs::File::create(root.join(format!("{worker}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ecomops"))
        .arg("--config")
        .arg(cfg)
        .arg("--data-dir")
        .arg(root.join(worker))
        .arg("--no-ui")
        .env(
            "RUST_LOG",
            std::env::var("ECOMOPS_FLEET_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A one-shot `ecomops` command as `worker`.
fn ecomops(root: &Path, cfg: &Path, worker: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ecomops"))
        .arg("--config")
        .arg(cfg)
        .arg("--data-dir")
        .arg(root.join(worker))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if args[0] != "verify" {
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn tails(root: &Path) -> String {
    let mut out = String::new();
    for w in ["w1", "w2", "w3", "w4"] {
        let text = std::fs::read_to_string(root.join(format!("{w}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {w}\n"));
        for l in &lines[lines.len().saturating_sub(25)..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn n(rows: &[Vec<Option<String>>]) -> i64 {
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_one_killed_share_a_stream_exactly_once() {
    let Some(endpoint) = support::moto::moto_endpoint() else {
        return;
    };
    let Some(dsn) = support::pg::fresh_dsn("fleet").await else {
        return;
    };
    let warehouse = format!(
        "[warehouse]\nbackend = \"postgres\"\n\n[warehouse.postgres]\nconnection = \"{dsn}\"\n"
    );
    let _one = ONE_FLEET.lock().await;
    fleet(&endpoint, &dsn, &warehouse, "fleet").await;
}

/// The same fleet on Redshift: its loads through the Data API, serialised by `LOCK`, and the
/// CURATED publication under a hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_redshift_four_instances_one_killed_share_a_stream_exactly_once() {
    let Some(endpoint) = support::moto::moto_endpoint() else {
        return;
    };
    let Some(dsn) = support::pg::fresh_dsn_with("fleet_rs", false).await else {
        return;
    };
    let api = support::data_api::DataApi::start(&dsn).await;
    let warehouse = format!(
        "[warehouse]\nbackend = \"redshift\"\n\n[warehouse.redshift]\nworkgroup_name = \"wg\"\n\
         database = \"dev\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\npoll_max_ms = 100\n",
        api.endpoint
    );
    let _one = ONE_FLEET.lock().await;
    fleet(&endpoint, &dsn, &warehouse, "fleetrs").await;
    // The CURATED refreshes ran under the fleet's hold (a holder stopped or killed mid-refresh
    // leaves it to lapse).
    let (pg, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let hold = pg
        .query(
            "SELECT holder FROM ops.fleet_locks WHERE name = 'curated'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(hold.len(), 1, "no refresh took the hold");
    // No transaction failed on isolation (the fleet's LOCK comes first). Others fail by design
    // and are retried: a fence's or a lapsed hold's refusal, two first starts' CREATE racing.
    let isolation: Vec<String> = api
        .failures()
        .into_iter()
        .filter(|f| f.contains("could not serialize"))
        .collect();
    assert_eq!(isolation, Vec::<String>::new());
}

/// Three instances of the warehouse `warehouse` (on the database `dsn`), one killed, one
/// joining: the run and every check of this file's header.
async fn fleet(endpoint: &str, dsn: &str, warehouse: &str, name: &str) {
    let mut tmp = tempfile::tempdir().unwrap();
    // ECOMOPS_FLEET_KEEP=1 keeps the instances' data dirs and logs for a look afterwards.
    tmp.disable_cleanup(std::env::var_os("ECOMOPS_FLEET_KEEP").is_some());
    let root = tmp.path();
    eprintln!("fleet test files in {}", root.display());
    let name = format!("{name}-{}", std::process::id());
    let cfgs: BTreeMap<&str, PathBuf> = ["w1", "w2", "w3", "w4"]
        .into_iter()
        .map(|w| (w, config(root, endpoint, warehouse, &name, w)))
        .collect();
    let config = ecom_pipeline::config::Config::load(Some(&cfgs["w1"])).unwrap();
    ecom_pipeline::store::s3_client(&config.store.s3)
        .await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let kinesis = ecom_pipeline::stream::kinesis::client(&config.stream.kinesis).await;
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(8)
        .send()
        .await
        .unwrap();
    let producer = ecom_pipeline::stream::kinesis::KinesisLog::connect(&config.stream.kinesis)
        .await
        .unwrap();
    assert_eq!(producer.shards().len(), 8);

    // 100,000 records: ~5% resends (same session, so the same shard), out of order, some a
    // day behind (late), ~1% malformed.
    let mut rng = support::workload::Rng(0xf1ee_7000_0000_0001);
    let body = support::workload::events(&mut rng, 1, RECORDS);
    let records: Vec<(String, Bytes)> = body
        .lines()
        .map(|l| {
            let key = serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["session_id"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("bad-{}", l.len()));
            (key, Bytes::from(l.to_string()))
        })
        .collect();
    assert_eq!(records.len() as u64, RECORDS);

    let mut procs: BTreeMap<&str, Child> = BTreeMap::new();
    for w in ["w1", "w2", "w3"] {
        procs.insert(w, start(root, &cfgs[w], w));
    }
    // The three share the shards out (the first takes all, the others steal one a tick).
    let table = ecom_pipeline::stream::leases::LeaseTable::connect(
        &config.stream.kinesis.leases,
        Some(endpoint),
    )
    .await;
    let balanced = Instant::now() + Duration::from_secs(120);
    loop {
        let held: BTreeMap<String, usize> = table
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, l| {
                if let Some(o) = l.owner {
                    *m.entry(o).or_default() += 1;
                }
                m
            });
        if ["w1", "w2", "w3"]
            .iter()
            .all(|w| held.get(*w).is_some_and(|n| *n >= 2))
        {
            break;
        }
        assert!(
            Instant::now() < balanced,
            "never balanced: {held:?}\n{}",
            tails(root)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let chunks: Vec<Vec<(String, Bytes)>> = records.chunks(5_000).map(<[_]>::to_vec).collect();
    for (i, chunk) in chunks.into_iter().enumerate() {
        producer.put(chunk).await.unwrap();
        if i == 7 {
            // Mid-run: w2 dies without a word (its leases expire) ...
            let mut w2 = procs.remove("w2").unwrap();
            w2.kill().unwrap();
            w2.wait().unwrap();
        }
        if i == 11 {
            // ... and w4 joins (it steals its share).
            procs.insert("w4", start(root, &cfgs["w4"], "w4"));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    // The checks read the database itself, whichever backend wrote it.
    let reader = ecom_pipeline::config::PostgresConfig {
        connection: dsn.to_string(),
        ..Default::default()
    };
    let wh = ecom_pipeline::warehouse::postgres::PostgresWarehouse::connect(
        &reader,
        ecom_pipeline::warehouse::postgres::Writer::Reader,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        let committed = n(&wh
            .query("SELECT CAST(COALESCE(SUM(records), 0) AS BIGINT) FROM ops.segments")
            .await
            .unwrap());
        if committed as u64 == RECORDS {
            break;
        }
        assert!(
            committed as u64 <= RECORDS,
            "{committed} records committed of {RECORDS}: some twice\n{}",
            tails(root)
        );
        for (w, p) in procs.iter_mut() {
            assert!(
                p.try_wait().unwrap().is_none(),
                "{w} exited\n{}",
                tails(root)
            );
        }
        assert!(
            Instant::now() < deadline,
            "only {committed} of {RECORDS} records committed\n{}",
            tails(root)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The operator's view: `ecomops leases` reads the table and the warehouse from outside.
    let out = ecomops(root, &cfgs["w1"], "w1", &["leases", "--json"]);
    let fleet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = fleet["leases"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{fleet}");
    assert!(
        rows.iter().all(
            |l| ["w1", "w3", "w4"].contains(&l["owner"].as_str().unwrap_or("-"))
                && l["checkpoint"].is_u64()
        ),
        "{fleet}"
    );
    let text = ecomops(root, &cfgs["w1"], "w1", &["leases"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("3 instances holding leases"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // w4 stole its share from w1 or w3: that one's status shows the lost lease in its failure
    // table, and its fleet.
    let lost_row = |w: &str| {
        let out = ecomops(root, &cfgs[w], w, &["status", "--json"]);
        let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(snap["stream"]["fleet"]["worker"], w, "{snap}");
        // The fleet's watermark: every shard's, whoever owns it, and the global one over them.
        let marks = &snap["stream"]["watermarks"];
        assert_eq!(marks["shards"].as_array().map(Vec::len), Some(8), "{marks}");
        assert!(marks["global_ms"].is_i64(), "{marks}");
        snap["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["scenario"] == "lost lease")
            .map(|f| f["count"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    let seen = Instant::now() + Duration::from_secs(30);
    while lost_row("w1") + lost_row("w3") == 0 {
        assert!(Instant::now() < seen, "no lost-lease row\n{}", tails(root));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Stop the fleet: SIGTERM hands the leases back.
    for p in procs.values() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
    for (w, mut p) in procs {
        let status = p.wait().unwrap();
        assert!(status.success(), "{w}: {status}\n{}", tails(root));
    }
    let leases = table.list().await.unwrap();
    assert_eq!(leases.len(), 8);
    assert!(
        leases.iter().all(|l| l.owner.is_none()),
        "a stopped instance kept a lease: {leases:?}"
    );

    // Every record committed once: per shard, segments never overlap, and in commit order
    // they only move forward (no checkpoint moved back).
    let segs = wh
        .query(
            "SELECT shard, CAST(first_seq AS BIGINT), CAST(last_seq AS BIGINT) FROM ops.segments \
             ORDER BY shard, committed_at, first_seq",
        )
        .await
        .unwrap();
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for r in &segs {
        let (shard, first, end) = (
            r[0].clone().unwrap(),
            r[1].as_deref().unwrap().parse::<i64>().unwrap(),
            r[2].as_deref().unwrap().parse::<i64>().unwrap(),
        );
        if let Some(prev) = last.get(&shard) {
            assert!(
                first > *prev,
                "{shard}: a segment from {first} after one to {prev}"
            );
        }
        last.insert(shard, end);
    }
    assert_eq!(last.len(), 8, "every shard was read");
    let sums = wh
        .query(
            "SELECT CAST(SUM(records) AS BIGINT), CAST(SUM(staged) AS BIGINT), \
             CAST(SUM(duplicates) AS BIGINT), CAST(SUM(late) AS BIGINT), \
             CAST(SUM(quarantined) AS BIGINT) FROM ops.segments",
        )
        .await
        .unwrap();
    let s: Vec<i64> = sums[0]
        .iter()
        .map(|v| v.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(s[0], s[1] + s[2] + s[3] + s[4], "{s:?}");
    assert!(s[2] > 1000 && s[3] > 100 && s[4] > 100, "{s:?}");
    // Staged once each: a resend after its shard moved was still a duplicate.
    let events = n(&wh
        .query("SELECT COUNT(*) FROM staging.events")
        .await
        .unwrap());
    assert_eq!(events, s[1], "staged {} but {events} rows", s[1]);

    // The takes: per shard, tokens rise with time; w2's shards moved; w4 got a share.
    let history = wh
        .query(
            "SELECT shard, owner, CAST(token AS BIGINT) FROM ops.lease_history ORDER BY taken_at",
        )
        .await
        .unwrap();
    let mut tokens: BTreeMap<String, i64> = BTreeMap::new();
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &history {
        let shard = r[0].clone().unwrap();
        let token: i64 = r[2].as_deref().unwrap().parse().unwrap();
        if let Some(t) = tokens.get(&shard) {
            assert!(token > *t, "{shard}: token {token} taken after {t}");
        }
        tokens.insert(shard.clone(), token);
        owners.entry(shard).or_default().push(r[1].clone().unwrap());
    }
    let took = |w: &str| owners.values().any(|o| o.iter().any(|x| x == w));
    assert!(took("w2") && took("w4"), "{owners:?}");
    assert!(
        owners
            .values()
            .any(|o| o.contains(&"w2".to_string()) && o.last().map(String::as_str) != Some("w2")),
        "w2's shards were taken over: {owners:?}"
    );

    // `verify` reconciles the lake and the shared warehouse.
    let out = ecomops(root, &cfgs["w1"], "w1", &["verify"]);
    assert!(
        out.status.success(),
        "verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
