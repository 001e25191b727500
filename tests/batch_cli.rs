//! `ecomops batch run`, `retry` and `status --json` end to end: against the synthetic default
//! and against a fault-injecting FakeStore server on loopback.

#[path = "../pipeline/tests/support/fakestore_server.rs"]
mod fakestore_server;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ecom_pipeline::batch::synthetic::SyntheticSource;
use fakestore_server::FakeStoreServer;

fn ecomops(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ecomops"));
    c.arg("--data-dir").arg(data_dir);
    c.current_dir(data_dir.parent().unwrap_or(data_dir));
    c.env_remove("ECOMOPS_CONFIG").env_remove("RUST_LOG");
    c.stdin(Stdio::null());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit 0 and `needle` on stdout.
fn succeeds_saying(out: &Output, needle: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(needle), "{stdout}");
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run ecomops"))
        .await
        .unwrap()
}

/// `ecomops [--config CONFIG] ARGS` on `data`.
async fn exec(data: &Path, config: Option<&Path>, args: &[&str]) -> Output {
    let mut c = ecomops(data);
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    c.args(args);
    run(c).await
}

async fn status(data: &Path, config: Option<&Path>) -> serde_json::Value {
    let out = exec(data, config, &["status", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn batch_run_on_the_synthetic_default_reports_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = exec(&data, None, &["batch", "run"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert!(stdout.contains("extract_carts"), "{stdout}");
    assert!(stdout.contains("staged order_items"), "{stdout}");

    let s = status(&data, None).await;
    let runs = s["batch"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["report"]["staged"]["orders"], 40);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    assert!(
        s["warehouse"]["ledger_files"].as_i64().unwrap() == 4,
        "{}",
        s["warehouse"]
    );

    let out = exec(&data, None, &["metrics", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(m["revenue_cents"].as_i64().unwrap() > 0, "{m}");
    assert!(m["avg_order_value_cents"].as_f64().unwrap() > 0.0, "{m}");
    let out = exec(&data, None, &["metrics"]).await;
    assert!(
        text(&out.stdout).contains("revenue          $"),
        "{}",
        text(&out.stdout)
    );

    // Per category over every day the data has: the categories' revenue adds up to the
    // total (a placed order's lines sum to its total).
    let out = exec(
        &data,
        None,
        &[
            "metrics",
            "--from",
            "2000-01-01",
            "--to",
            "2000-12-31",
            "--by",
            "category",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let none: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        none,
        serde_json::json!([]),
        "the rows alone, as --by day prints them"
    );
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Days::new(365)).to_string();
    let out = exec(
        &data,
        None,
        &[
            "metrics",
            "--from",
            &from,
            "--to",
            &today.to_string(),
            "--by",
            "category",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = c.as_array().expect("categories");
    assert!(rows.len() > 1, "{c}");
    let sum: i64 = rows
        .iter()
        .map(|r| r["revenue_cents"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, m["revenue_cents"].as_i64().unwrap(), "{c}");
    let out = exec(
        &data,
        None,
        &[
            "metrics",
            "--from",
            &from,
            "--to",
            &today.to_string(),
            "--by",
            "category",
        ],
    )
    .await;
    assert!(
        text(&out.stdout).starts_with("category"),
        "{}",
        text(&out.stdout)
    );

    let out = exec(&data, None, &["verify"]).await;
    succeeds_saying(&out, "no difference");

    let out = exec(
        &data,
        None,
        &["backfill", "--from", "2026-01-01", "--to", "2026-01-31"],
    )
    .await;
    succeeds_saying(&out, "31 day(s) recomputed");
    let again: serde_json::Value =
        serde_json::from_slice(&exec(&data, None, &["metrics", "--json"]).await.stdout).unwrap();
    assert_eq!(again, m, "a backfill changes no figure");

    // Retrying a run that succeeded changes nothing and says so.
    let out = exec(&data, None, &["retry", &run_id, "--task", "land"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("already succeeded"),
        "{}",
        text(&out.stdout)
    );
    let out = exec(&data, None, &["retry", "no-such-run"]).await;
    assert!(
        text(&out.stdout).contains("no batch run no-such-run"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn batch_run_against_a_down_api_fails_then_retry_completes() {
    let server = FakeStoreServer::start(SyntheticSource::new(42, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ecomops.toml");
    std::fs::write(
        &config,
        format!(
            "[batch]\nsource = \"fakestore\"\n\n[batch.fakestore]\nbase_url = \"{}\"\n\
             request_timeout_ms = 500\n\n[batch.retry]\nbase_delay_ms = 5\nmax_delay_ms = 20\n\
             max_attempts = 3\n",
            server.url()
        ),
    )
    .unwrap();
    server.set_down(true);
    let out = exec(&data, Some(&config), &["batch", "run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("failed"), "{stdout}");
    assert!(
        stdout.contains("HTTP 503 Service Unavailable (gave up after 3 attempts)"),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("failure scenario detected: API down"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw-"), "no payload in logs");

    let s = status(&data, Some(&config)).await;
    let run_id = s["batch"]["runs"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s["batch"]["runs"][0]["status"], "failed");

    server.set_down(false);
    let out = exec(&data, Some(&config), &["retry", &run_id]).await;
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("run {run_id} succeeded")));

    let s = status(&data, Some(&config)).await;
    let r = &s["batch"]["runs"][0];
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["report"]["staged"]["products"], 20);
    assert_eq!(r["report"]["files"].as_array().unwrap().len(), 3);
    let raw = s["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "raw")
        .unwrap();
    assert_eq!(raw["objects"], 3);
}

#[tokio::test]
async fn the_stream_path_ingests_a_file_once_and_backfills_late_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = exec(&data, None, &["--no-ui", "--once"]).await;
    succeeds_saying(&out, "stream: ");
    let m: serde_json::Value =
        serde_json::from_slice(&exec(&data, None, &["metrics", "--json"]).await.stdout).unwrap();
    assert!(m["conversion_rate"].as_f64().unwrap() > 0.0, "{m}");
    assert_eq!(m["funnel_dropoff"].as_array().unwrap().len(), 3, "{m}");

    // A file with a duplicate, a late event (days behind the watermark the `--once` run's
    // clickstream left, which the file is judged against) and a malformed line.
    let events = dir.path().join("events.ndjson");
    let now = chrono::Utc::now();
    let at = |mins: i64| {
        (now - chrono::Duration::minutes(mins)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    // Three days back: a day the `--once` run's own late events (two hours back) never reach.
    let late_day = (now - chrono::Duration::days(3)).date_naive().to_string();
    let line = |id: &str, t: &str, kind: &str| {
        format!(
            r#"{{"event_id":"{id}","user_id":3,"product_id":4,"event_type":"{kind}","event_time":"{t}","session_id":"f-1"}}"#
        )
    };
    let body = [
        line("f1", &at(4), "product_view"),
        line("f2", &at(3), "add_to_cart"),
        line("f2", &at(3), "add_to_cart"),
        line("f3", &at(2), "checkout"),
        line("f4", &at(1), "purchase"),
        line("f5", &at(3 * 24 * 60), "product_view"),
        "{\"event_id\": 9,".to_string(),
    ]
    .join("\n");
    std::fs::write(&events, body).unwrap();
    let path = events.to_str().unwrap();
    let out = exec(&data, None, &["ingest", "events", path]).await;
    succeeds_saying(
        &out,
        "7 records read, 4 staged, 1 duplicates, 1 late, 1 quarantined",
    );
    let out = exec(&data, None, &["ingest", "events", path]).await;
    succeeds_saying(&out, "duplicate file");

    let s = status(&data, None).await;
    let late = s["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "late")
        .unwrap();
    assert!(late["objects"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["stream"]["shards"].as_array().unwrap().len() == 4,
        "{}",
        s["stream"]
    );

    let out = exec(
        &data,
        None,
        &["backfill", "--from", &late_day, "--to", &late_day],
    )
    .await;
    succeeds_saying(&out, "1 late event(s) loaded");
    let out = exec(
        &data,
        None,
        &["backfill", "--from", &late_day, "--to", &late_day],
    )
    .await;
    succeeds_saying(&out, "0 late event(s) loaded");
    let out = exec(&data, None, &["verify"]).await;
    succeeds_saying(&out, "no difference");

    // A replay of committed ranges writes byte-identical RAW files and changes no figure.
    let before = exec(&data, None, &["metrics", "--json"]).await.stdout;
    for shard in ["shard-0000", "shard-0001", "shard-0002", "shard-0003"] {
        let out = exec(
            &data,
            None,
            &["replay", "--shard", shard, "--from-seq", "1"],
        )
        .await;
        succeeds_saying(&out, "0 rewritten, 0 restaged");
    }
    assert_eq!(
        exec(&data, None, &["metrics", "--json"]).await.stdout,
        before
    );
    let out = exec(
        &data,
        None,
        &["replay", "--shard", "nope", "--from-seq", "1"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("no shard"),
        "{}",
        text(&out.stdout)
    );
}

/// The config of a data dir pulling from `server`, with a short retry budget.
fn fakestore_config(dir: &Path, server: &FakeStoreServer) -> std::path::PathBuf {
    let config = dir.join("ecomops.toml");
    std::fs::write(
        &config,
        format!(
            "[batch]\nsource = \"fakestore\"\n\n[batch.fakestore]\nbase_url = \"{}\"\n\
             request_timeout_ms = 500\n\n[batch.retry]\nbase_delay_ms = 5\nmax_delay_ms = 20\n\
             max_attempts = 2\n",
            server.url()
        ),
    )
    .unwrap();
    config
}

async fn only(data: &Path, config: &Path, task: &str, run_id: &str) -> Output {
    exec(
        data,
        Some(config),
        &[
            "batch",
            "run",
            "--only",
            task,
            "--run-id",
            run_id,
            "--data-interval-start",
            "2026-11-19",
            "--data-interval-end",
            "2026-11-20",
        ],
    )
    .await
}

/// Airflow's way: one task per call under one run id, the extracts at once; a task whose
/// upstream is not done exits 75; a failed task exits 1 and the same call again is the retry
/// (what succeeded is not fetched again); a finished task called again is a no-op (0).
#[tokio::test]
async fn one_task_per_call_under_one_run_id() {
    let server = FakeStoreServer::start(SyntheticSource::new(42, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = fakestore_config(dir.path(), &server);
    let id = "airflow-20261119";

    let out = only(&data, &config, "land", id).await;
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("land of run airflow-20261119 waits for its upstream"),
        "{}",
        text(&out.stdout)
    );

    // carts down past ecomops' own retries: its task fails (1), the others succeed, at once.
    server.set_down(false);
    server.script(
        "carts",
        (0..2).map(|_| fakestore_server::Fault::Status(503)),
    );
    let calls =
        ["extract_products", "extract_users", "extract_carts"].map(|t| only(&data, &config, t, id));
    let [p, u, c] = futures::future::join_all(calls).await.try_into().unwrap();
    for (name, out) in [("products", &p), ("users", &u)] {
        assert!(
            out.status.success(),
            "{name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    assert_eq!(
        c.status.code(),
        Some(1),
        "{}{}",
        text(&c.stdout),
        text(&c.stderr)
    );
    assert!(
        text(&c.stdout).contains("extract_carts failed"),
        "{}",
        text(&c.stdout)
    );

    // The orchestrator's retry: the same call again.
    let fetched = server.requests("products").len();
    let c = only(&data, &config, "extract_carts", id).await;
    assert!(
        c.status.success(),
        "{}{}{:?}",
        text(&c.stdout),
        text(&c.stderr),
        server.requests_with_query("carts")
    );
    for t in ["land", "stage", "load"] {
        let out = only(&data, &config, t, id).await;
        assert!(
            out.status.success(),
            "{t}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // Done already: exit 0, nothing fetched again.
    let again = only(&data, &config, "extract_products", id).await;
    assert!(again.status.success(), "{}", text(&again.stdout));
    assert_eq!(
        server.requests("products").len(),
        fetched,
        "no second fetch"
    );

    let s = status(&data, Some(&config)).await;
    let runs = s["batch"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    assert_eq!(runs[0]["run_id"], id);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(
        runs[0]["window"],
        serde_json::json!(["2026-11-19", "2026-11-19"])
    );
    // The carts pull asked for the interval's one day.
    let q = server.requests_with_query("carts");
    assert!(
        q.iter()
            .any(|q| q.contains("startdate=2026-11-19") && q.contains("enddate=2026-11-19")),
        "{q:?}"
    );
    let out = exec(&data, Some(&config), &["verify"]).await;
    succeeds_saying(&out, "no difference");

    // A run id names one interval.
    let out = exec(
        &data,
        Some(&config),
        &[
            "batch",
            "run",
            "--only",
            "load",
            "--run-id",
            id,
            "--data-interval-start",
            "2026-11-20",
            "--data-interval-end",
            "2026-11-21",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("a run id names one data interval"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn batch_run_flags_are_checked_at_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, needle) in [
        (
            &["batch", "run", "--only", "publish"][..],
            "no task \"publish\"",
        ),
        (
            &["batch", "run", "--only", "land", "--task", "stage"][..],
            "cannot be used with",
        ),
        (
            &[
                "batch",
                "run",
                "--data-interval-start",
                "2026-11-20",
                "--data-interval-end",
                "2026-11-20",
            ][..],
            "is empty",
        ),
        (&["batch", "run", "--run-id", "../x"][..], "is not a run id"),
    ] {
        let out = exec(&data, None, args).await;
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_ne!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(all.contains(needle), "{args:?}: {all}");
    }
}

/// `metrics --from --to`: the figures per day from the CURATED daily models, every day of the
/// range (zeros where nothing happened), totals that match the overall metrics.
#[tokio::test]
async fn metrics_per_day_over_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(exec(&data, None, &["batch", "run"]).await.status.success());
    let all: serde_json::Value =
        serde_json::from_slice(&exec(&data, None, &["metrics", "--json"]).await.stdout).unwrap();
    // The synthetic carts span 330 days from 2026-01-01.
    let out = exec(
        &data,
        None,
        &[
            "metrics",
            "--json",
            "--from",
            "2025-12-31",
            "--to",
            "2026-12-30",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let days: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(days.len(), 365, "every day of the range");
    assert_eq!(days[0]["orders"], 0, "a day with no orders has zeros");
    let sum = |k: &str| days.iter().map(|d| d[k].as_i64().unwrap()).sum::<i64>();
    assert_eq!(sum("revenue_cents"), all["revenue_cents"].as_i64().unwrap());
    assert_eq!(sum("orders"), all["orders"].as_i64().unwrap());
    let out = exec(
        &data,
        None,
        &["metrics", "--from", "2026-01-01", "--to", "2026-01-07"],
    )
    .await;
    succeeds_saying(&out, "2026-01-07");
    assert!(text(&out.stdout).contains("total"), "{}", text(&out.stdout));
    let out = exec(
        &data,
        None,
        &["metrics", "--from", "2020-01-01", "--to", "2026-01-01"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("366 days"),
        "{}",
        text(&out.stdout)
    );
}
