//! The service files in contrib/ as they would run: the systemd unit passes
//! `systemd-analyze verify` (any warning fails) with the settings the README promises, and the
//! cron line, with this build's paths, runs a cycle under flock and logs it.

use std::path::Path;
use std::process::Command;

fn contrib(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib")
            .join(rel),
    )
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_systemd_unit_verifies_and_runs_headless_as_a_user() {
    let unit = contrib("systemd/ecomops.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| settings.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(get("Type"), Some("simple"));
    assert_eq!(get("Restart"), Some("on-failure"));
    assert_eq!(get("KillSignal"), Some("SIGTERM"));
    assert_eq!(get("ReadWritePaths"), Some("/var/lib/ecomops"));
    assert_eq!(get("ProtectSystem"), Some("strict"));
    assert!(get("User").is_some_and(|u| u != "root"), "a non-root user");
    let exec = get("ExecStart").unwrap();
    assert!(
        exec.contains("--no-ui") && exec.contains("--data-dir /var/lib/ecomops"),
        "{exec}"
    );
    assert!(!exec.contains("--once"), "a service runs until stopped");

    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: no systemd-analyze; the unit's keys were checked above");
        return;
    };
    assert!(v.status.success());
    // With this build's binary in ExecStart (verify checks that it is executable).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecomops.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ecomops", env!("CARGO_BIN_EXE_ecomops")),
    )
    .unwrap();
    // The daily prune: a oneshot service of the same user, started by a persistent timer.
    let prune = contrib("systemd/ecomops-prune.service");
    assert!(prune.contains("Type=oneshot") && prune.contains("User=ecomops"));
    assert!(prune
        .lines()
        .any(|l| l.starts_with("ExecStart=") && l.ends_with(" prune")));
    let timer = contrib("systemd/ecomops-prune.timer");
    assert!(timer.contains("Persistent=true") && timer.contains("OnCalendar="));
    std::fs::write(
        dir.path().join("ecomops-prune.service"),
        prune.replace("/usr/local/bin/ecomops", env!("CARGO_BIN_EXE_ecomops")),
    )
    .unwrap();
    std::fs::write(dir.path().join("ecomops-prune.timer"), timer).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .arg(dir.path().join("ecomops-prune.service"))
        .arg(dir.path().join("ecomops-prune.timer"))
        .output()
        .unwrap();
    let said = text(&out.stdout) + &text(&out.stderr);
    // systemd-analyze exits 0 on a bad value and only warns: any word from it is a failure.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// A cron job's line: five valid time fields, the service user, a command without `%`.
fn cron_command(line: &str) -> &str {
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    assert_eq!(fields.len(), 7, "five time fields, a user, a command");
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (f, (lo, hi)) in fields[..5].iter().zip(ranges) {
        for part in f.split(',') {
            let (base, step) = part.split_once('/').unwrap_or((part, "1"));
            assert!(step.parse::<u32>().is_ok_and(|s| s > 0), "{f}");
            if base != "*" {
                for n in base.split('-') {
                    let n: u32 = n.parse().unwrap_or_else(|_| panic!("{f}"));
                    assert!((lo..=hi).contains(&n), "{f}");
                }
            }
        }
    }
    assert_eq!(fields[5], "ecomops", "runs as the service user");
    let command = fields[6];
    assert!(!command.contains('%'), "cron turns % into a newline");
    command
}

/// Run a cron command with this build's paths in `dir`; returns the data dir and log dir.
fn run_cron(command: &str, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (data, logs, config) = (dir.join("data"), dir.join("log"), dir.join("ecomops.toml"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(&config, "").unwrap();
    let local = command
        .replace("/usr/local/bin/ecomops", env!("CARGO_BIN_EXE_ecomops"))
        .replace("/etc/ecomops/ecomops.toml", config.to_str().unwrap())
        .replace("/var/lib/ecomops", data.to_str().unwrap())
        .replace("/var/log/ecomops", logs.to_str().unwrap());
    let out = Command::new("sh")
        .arg("-c")
        .arg(&local)
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    (data, logs)
}

#[test]
fn the_cron_lines_run_a_cycle_and_a_daily_prune_under_flock_and_log_them() {
    let cron = contrib("cron/ecomops");
    let jobs: Vec<&str> = cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let cycle = cron_command(jobs[0]);
    assert!(
        cycle.contains("flock -n") && cycle.contains("--once"),
        "{cycle}"
    );
    let prune = cron_command(jobs[1]);
    assert!(
        prune.contains("flock -w") && prune.ends_with("prune.log") && prune.contains(" prune "),
        "{prune}"
    );
    assert_eq!(jobs[1].split(' ').nth(2), Some("*"), "daily");

    // The commands themselves, with this build's paths: a cycle, then retention over it.
    let dir = tempfile::tempdir().unwrap();
    let (data, logs) = run_cron(cycle, dir.path());
    let log = std::fs::read_to_string(logs.join("cycle.log")).unwrap();
    assert!(log.trim_end().ends_with("{\"exit\":0}"), "{log}");
    assert!(
        log.contains("\"cycle\":1"),
        "the cycle's JSON outcome: {log}"
    );
    assert!(data.join("warehouse.duckdb").exists());
    run_cron(prune, dir.path());
    let log = std::fs::read_to_string(logs.join("prune.log")).unwrap();
    assert!(log.trim_end().ends_with("{\"exit\":0}"), "{log}");
    assert!(
        log.contains("\"deleted\""),
        "the prune's JSON report: {log}"
    );
}
