//! End-to-end tests of the `ecomops` binary: exit codes, config errors, one writer per data
//! dir, the control socket, and taking over a stale lock after SIGKILL.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn ecomops(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ecomops"));
    c.arg("--data-dir").arg(data_dir);
    // Run from the data dir so no ./ecomops.toml of the developer's is picked up.
    c.current_dir(data_dir.parent().unwrap_or(data_dir));
    c.env_remove("ECOMOPS_CONFIG").env_remove("RUST_LOG");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run ecomops")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_headless(data_dir: &Path) -> Running {
    let child = ecomops(data_dir)
        .arg("--no-ui")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ecomops --no-ui");
    let sock = data_dir.join("control.sock");
    wait_for("the control socket", Duration::from_secs(30), || {
        sock.exists()
    });
    Running(child)
}

fn status_json(data_dir: &Path) -> serde_json::Value {
    let out = run(ecomops(data_dir).args(["status", "--json"]));
    assert!(out.status.success(), "status failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

#[test]
fn unknown_config_key_exits_2_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "data_dir = \"./d\"\n[batch]\nintervall_secs = 5\n").unwrap();
    let out = run(ecomops(&dir.path().join("d"))
        .arg("--config")
        .arg(&cfg)
        .arg("status"));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("intervall_secs"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wrong_type_and_unreadable_config_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[stream]\nshards = \"many\"\n").unwrap();
    let out = run(ecomops(dir.path()).arg("--config").arg(&cfg).arg("status"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );

    let out = run(ecomops(dir.path())
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .arg("status"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.toml"));
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["status", "--help"],
        vec!["batch", "run", "--help"],
        vec!["stream", "run", "--help"],
        vec!["ingest", "events", "--help"],
        vec!["replay", "--help"],
        vec!["backfill", "--help"],
        vec!["retry", "--help"],
        vec!["verify", "--help"],
        vec!["metrics", "--help"],
        vec!["cost", "--help"],
        vec!["bench", "merge", "--help"],
        vec!["bench", "stream", "--help"],
    ] {
        let out = run(ecomops(dir.path()).args(&args));
        assert!(out.status.success(), "{args:?}");
        assert!(
            text(&out.stdout).contains("Example"),
            "{args:?} has no example"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(ecomops(dir.path()).arg("--once"));
    assert_eq!(out.status.code(), Some(2));
    let out = run(ecomops(dir.path()).args(["replay", "--shard", "s"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn once_runs_a_cycle_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Batch only: the generator's stream segments would add to the zone counts.
    std::fs::write(
        dir.path().join("ecomops.toml"),
        "[stream.generator]\nenabled = false\n",
    )
    .unwrap();
    let out = run(ecomops(&data).args(["--no-ui", "--once", "--output", "json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // The lock is released and the socket removed on exit.
    assert!(!data.join("control.sock").exists());
    let s = status_json(&data);
    assert_eq!(s["instance"]["mode"], "oneshot");
    let zone = |s: &serde_json::Value, z: &str| {
        s["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["zone"] == z)
            .unwrap()["objects"]
            .as_u64()
            .unwrap()
    };
    // The synthetic pull: products, users, carts in RAW; products, users, orders, order_items
    // in STAGING.
    assert_eq!(zone(&s, "raw"), 3, "{s}");
    assert_eq!(zone(&s, "staging"), 4, "{s}");

    // The same pull again lands nothing new.
    let out = run(ecomops(&data).args(["--no-ui", "--once", "--output", "json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = v["detail"]["steps"].to_string();
    assert!(steps.contains("3 duplicate skipped"), "{steps}");
    let out = run(ecomops(&data).args(["--no-ui", "--once"]));
    assert!(
        text(&out.stdout).contains("batch (synthetic): 3 files, 0 new"),
        "{}",
        text(&out.stdout)
    );
    let again = status_json(&data);
    assert_eq!(zone(&again, "raw"), 3);
    assert_eq!(zone(&again, "staging"), 4);
}

/// Rows of a warehouse table, from `status --json`.
fn table_rows(s: &serde_json::Value, table: &str) -> i64 {
    s["warehouse"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == table)
        .unwrap_or_else(|| panic!("no {table} in {s}"))[1]
        .as_i64()
        .unwrap()
}

/// Two `--once` runs used to mint the same event ids, so the second replaced the first's
/// clickstream (483 rows, then 483). Now each run adds its own, and verify reconciles them.
#[test]
fn each_once_run_adds_its_own_clickstream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(ecomops(&data).args(["--no-ui", "--once"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = table_rows(&status_json(&data), "staging.events");
    assert!(first > 100, "{first}");
    let out = run(ecomops(&data).args(["--no-ui", "--once"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second = table_rows(&status_json(&data), "staging.events");
    assert!(second > first + 100, "{first} then {second}");
    let out = run(ecomops(&data).arg("verify"));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn status_goes_through_the_socket_and_a_killed_instance_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = start_headless(&data);
    let first_pid = first.0.id();

    let s = status_json(&data);
    assert_eq!(s["instance"]["pid"], first_pid, "{s}");
    assert_eq!(s["instance"]["mode"], "headless");

    // The socket is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second writer is refused, naming the running pid.
    let out = run(ecomops(&data).arg("--no-ui"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&first_pid.to_string()),
        "{}",
        text(&out.stderr)
    );

    // `--once` beside a running instance asks it to run the cycle.
    let out = run(ecomops(&data).args(["--no-ui", "--once"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = status_json(&data);
    assert!(s["cycles"].as_u64().unwrap() >= 1, "{s}");

    // SIGKILL leaves the lock file (with its pid) and the socket file behind.
    kill(Pid::from_raw(first_pid as i32), Signal::SIGKILL).unwrap();
    let mut first = first;
    first.0.wait().unwrap();
    assert!(data.join("control.sock").exists());

    let second = start_headless(&data);
    wait_for(
        "the new instance to answer",
        // Generous: under a loaded CI machine the new instance opens DuckDB after a WAL replay.
        Duration::from_secs(90),
        || {
            let out = run(ecomops(&data).args(["status", "--json"]));
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    .map(|v| v["instance"]["pid"] == second.0.id())
                    .unwrap_or(false)
        },
    );

    // SIGTERM stops it cleanly: exit 0, socket removed.
    kill(Pid::from_raw(second.0.id() as i32), Signal::SIGTERM).unwrap();
    let mut second = second;
    let status = second.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!data.join("control.sock").exists());
}

#[test]
fn cost_json_on_a_known_run_matches_a_hand_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = run(ecomops(&dir).args(["--no-ui", "--once"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(ecomops(&dir).args(["cost", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let u = &c["usage"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let month = f(&c["hours_in_month"]);
    let tracked = f(&c["hours_tracked"]);
    let scale = month / tracked.max(1.0);
    let line = |item: &str| {
        c["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["item"] == item)
            .unwrap_or_else(|| panic!("no line {item}"))
            .clone()
    };
    let close = |a: f64, b: f64| assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} != {b}");
    // The default prices (config.toml.example), applied by hand to the measured volumes.
    let puts = f(&u["s3_put_requests"]);
    assert!(puts > 0.0, "the run made requests");
    close(
        f(&line("PUT/LIST requests")["month_to_date_usd"]),
        puts / 1000.0 * 0.005,
    );
    close(
        f(&line("PUT/LIST requests")["projected_usd"]),
        puts / 1000.0 * 0.005 * scale,
    );
    let gets = f(&u["s3_get_requests"]);
    close(
        f(&line("GET/HEAD requests")["month_to_date_usd"]),
        gets / 1000.0 * 0.0004,
    );
    let units = f(&u["stream_put_units"]);
    assert_eq!(units, 500.0, "the default run generates 500 events");
    close(
        f(&line("PUT payload units (25 KB)")["month_to_date_usd"]),
        units / 1e6 * 0.014,
    );
    close(
        f(&line("shard hours")["projected_usd"]),
        4.0 * month * 0.015,
    );
    let secs = f(&u["warehouse_secs"]);
    close(
        f(&line("serverless compute")["month_to_date_usd"]),
        secs / 3600.0 * 8.0 * 0.375,
    );
    let raw = f(&c["zone_bytes"]["RAW"]);
    close(
        f(&line("storage RAW (Standard)")["projected_usd"]),
        raw / (1u64 << 30) as f64 * 0.023,
    );
    let total: f64 = c["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| f(&l["projected_usd"]))
        .sum();
    close(f(&c["projected_usd"]), total);
    assert_eq!(c["budget_usd"], 100.0);
}

#[test]
fn a_firing_critical_alert_fails_once_for_cron() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let cfg = tmp.path().join("ecomops.toml");
    std::fs::write(
        &cfg,
        "[[alerts]]\nname = \"any event\"\nmetric = \"stream_records_in\"\nop = \">\"\n\
         threshold = 0.0\nseverity = \"critical\"\n",
    )
    .unwrap();
    let out = run(ecomops(&dir)
        .arg("--config")
        .arg(&cfg)
        .args(["--no-ui", "--once"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("critical alert(s) fire: any event"), "{all}");

    std::fs::write(
        &cfg,
        "[[alerts]]\nname = \"typo\"\nmetric = \"stream_recods_in\"\nop = \">\"\n\
         threshold = 0.0\nseverity = \"critical\"\n",
    )
    .unwrap();
    let out = run(ecomops(&dir)
        .arg("--config")
        .arg(&cfg)
        .args(["--no-ui", "--once"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown metric is a config error"
    );
    assert!(text(&out.stderr).contains("stream_recods_in"));
}

#[test]
fn status_shows_the_health_the_dashboard_shows() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(ecomops(dir.path()).arg("status"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("health: HEALTHY"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(status_json(dir.path())["health"], "healthy");
}

/// The default pipeline is healthy after a cycle: the generator's injected late events are
/// expected (shown, not counted), and costs priced for AWS on an all-local instance are not
/// billed, so no budget alert.
#[test]
fn the_default_pipeline_is_healthy_after_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(ecomops(dir.path()).args(["--no-ui", "--once"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = status_json(dir.path());
    assert_eq!(s["health"], "healthy", "{}", s["failures"]);
    let late = s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["scenario"] == "late events")
        .unwrap();
    assert_eq!(late["expected"], true, "{late}");
    assert_eq!(s["cost"]["projected_on_aws_usd"], 0.0);
    // The Trends view's figures come from the warehouse: 14 days up to today, the cycle's
    // sessions in them.
    let trends = s["trends"].as_array().unwrap();
    assert_eq!(trends.len(), 14, "{trends:?}");
    assert_eq!(
        trends.last().unwrap()["day"],
        chrono::Utc::now().date_naive().to_string()
    );
    let sessions: i64 = trends.iter().map(|d| d["sessions"].as_i64().unwrap()).sum();
    assert!(sessions > 0, "{trends:?}");
    assert!(
        s["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["firing"] == false),
        "{}",
        s["alerts"]
    );
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// `--read-only` observes: it takes no lock, runs no cycle, writes nothing, and a service
/// started meanwhile works; the observer then follows the service.
#[test]
fn a_read_only_process_writes_nothing_and_never_blocks_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A data dir with data in it, and no writer.
    assert!(run(ecomops(&data).args(["--no-ui", "--once"]))
        .status
        .success());
    let before = files_under(&data);
    let stamp = |f: &String| std::fs::metadata(f).and_then(|m| m.modified()).ok();
    let stamps: Vec<_> = before.iter().map(stamp).collect();

    let out_path = dir.path().join("observer.out");
    let observer = Running(
        ecomops(&data)
            .args(["--no-ui", "--read-only"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(files_under(&data), before, "the observer wrote files");
    assert_eq!(
        before.iter().map(stamp).collect::<Vec<_>>(),
        stamps,
        "or changed one"
    );
    // A read-only command, and a refused one, also take no lock and write nothing.
    let m = run(ecomops(&data).args(["--read-only", "metrics"]));
    assert!(m.status.success(), "{}", text(&m.stderr));
    let b = run(ecomops(&data).args(["--read-only", "batch", "run"]));
    assert_eq!(b.status.code(), Some(1), "{}", text(&b.stdout));
    assert!(text(&b.stdout).contains("read-only"), "{}", text(&b.stdout));
    // The same files; the refusal is audited (audit.jsonl records every refused command).
    assert_eq!(files_under(&data), before);
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().last().unwrap().contains("\"refused\""),
        "{audit}"
    );

    // The service starts while the observer runs, and works.
    let service = start_headless(&data);
    wait_for("a cycle of the service", Duration::from_secs(60), || {
        let s = status_json(&data);
        s["cycles"].as_u64().unwrap_or(0) >= 1 && s["instance"]["mode"] == "headless"
    });
    let pid = service.0.id();
    wait_for(
        "the observer following the service",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&out_path)
                .unwrap_or_default()
                .contains(&format!("writer pid {pid}"))
        },
    );
    let said = std::fs::read_to_string(&out_path).unwrap();
    assert!(said.contains("no writer running"), "{said}");
    drop(observer);
}

/// With no writer, an observer looks at the data dir every statistics interval and prints a
/// look that found something new (here an object gone from STAGING), not only a writer's cycle.
#[test]
fn an_observer_with_no_writer_prints_what_a_later_look_finds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("fast-stats.toml");
    std::fs::write(&config, "[runtime]\nstats_interval_secs = 1\n").unwrap();
    let with_config = || {
        let mut c = ecomops(&data);
        c.arg("--config").arg(&config);
        c
    };
    assert!(run(with_config().args(["--no-ui", "--once"]))
        .status
        .success());
    let out_path = dir.path().join("observer.out");
    let _observer = Running(
        with_config()
            .args(["--no-ui", "--read-only", "--output", "json"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let looks = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let objects = |s: &serde_json::Value| -> u64 {
        s["zones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z["objects"].as_u64().unwrap_or(0))
            .sum()
    };
    wait_for("the first look", Duration::from_secs(30), || {
        !looks().is_empty()
    });
    let before = objects(&looks()[0]);
    let victim = files_under(&data.join("store/staging"))
        .into_iter()
        .next()
        .expect("a STAGING object");
    std::fs::remove_file(&victim).unwrap();
    wait_for(
        "a look that finds the object gone",
        Duration::from_secs(30),
        || looks().last().is_some_and(|s| objects(s) == before - 1),
    );
}

/// The next batch run is the batch schedule's (hourly by default), not the cycle's countdown.
#[test]
fn the_next_batch_run_follows_the_batch_interval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _service = start_headless(&data);
    wait_for("a first cycle", Duration::from_secs(60), || {
        status_json(&data)["cycles"].as_u64().unwrap_or(0) >= 1
    });
    let s = status_json(&data);
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(s[k].as_str().unwrap_or_else(|| panic!("{k}: {s}")))
            .unwrap()
    };
    let ahead = (at("next_batch_at") - at("generated_at")).num_seconds();
    assert!((3000..=3600).contains(&ahead), "next batch in {ahead} s");
    assert!(at("next_cycle_at") < at("next_batch_at"));
}

/// A question prints its answer and no INFO lines on stderr (the one-shot instance that
/// answers it starting and stopping); a change still logs what it does.
#[test]
fn queries_are_quiet_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(ecomops(dir.path()).args(["--no-ui", "--once"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("INFO"),
        "a cycle logs what it does"
    );
    for args in [
        vec!["metrics"],
        vec!["status"],
        vec!["cost"],
        vec!["quarantine"],
        vec!["prune", "--dry-run"],
    ] {
        let out = run(ecomops(dir.path()).args(&args));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(!text(&out.stdout).is_empty(), "{args:?}");
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}
