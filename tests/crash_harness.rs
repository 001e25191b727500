//! Crash harness: a deterministic workload (a seeded batch source; two NDJSON event files with
//! duplicates, out-of-order, late and malformed events; a cycle; a backfill) run once without
//! interruption, and once with SIGKILL at random moments of every step (each step restarted
//! until it completes). The final CURATED tables and metrics must be equal and `verify` clean:
//! nothing lost, nothing doubled. `ECOMOPS_CRASH_POINTS` sets the number of kills (50 here;
//! `scripts/crash.sh` runs 500); `ECOMOPS_CRASH_SEED` replays a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A tiny deterministic generator (xorshift), so the harness needs no RNG crate features.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `n` events from `first_id`, with ~5% resent ids, out-of-order event times, some a day
/// behind (late) and ~1% malformed lines.
fn events(rng: &mut Rng, first_id: u64, n: u64) -> String {
    let base = (Utc::now() - Days::days(2)).date_naive();
    let types = ["product_view", "add_to_cart", "checkout", "purchase"];
    let mut out = String::new();
    let mut sent = Vec::new();
    for i in 0..n {
        if rng.below(100) == 0 {
            out.push_str("{\"event_id\": \"broken\n");
            continue;
        }
        let id = if rng.below(20) == 0 && !sent.is_empty() {
            sent[rng.below(sent.len() as u64) as usize]
        } else {
            first_id + i
        };
        sent.push(id);
        // Everything about an event follows from its id: a resent event is the same event.
        // Times scatter with the id (out of order); every 30th is a day behind (late).
        let day = if id % 30 == 0 {
            base - Days::days(1)
        } else {
            base
        };
        let secs = 36_000 + (id * 7_919) % 3_600;
        let t = day.and_hms_opt(0, 0, 0).unwrap().and_utc() + Days::seconds(secs as i64);
        out.push_str(&format!(
            "{{\"event_id\":\"ev-{id}\",\"user_id\":{},\"product_id\":{},\"event_type\":\"{}\",\"event_time\":\"{}\",\"session_id\":\"s-{}\"}}\n",
            1 + id % 10,
            1 + id % 20,
            types[(id % 4) as usize],
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            id / 5
        ));
    }
    out
}

struct Workload {
    dir: PathBuf,
    config: PathBuf,
    files: [PathBuf; 2],
    from: String,
    to: String,
}

impl Workload {
    fn new(root: &Path, name: &str, files: &[PathBuf; 2], config: &Path) -> Workload {
        let from = (Utc::now() - Days::days(4)).date_naive().to_string();
        let to = Utc::now().date_naive().to_string();
        Workload {
            dir: root.join(name),
            config: config.to_path_buf(),
            files: files.clone(),
            from,
            to,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ecomops"));
        c.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn steps(&self) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f0 = self.files[0].to_string_lossy().into_owned();
        let f1 = self.files[1].to_string_lossy().into_owned();
        vec![
            s(&["batch", "run"]),
            s(&["ingest", "events", &f0]),
            s(&["ingest", "events", &f1]),
            s(&["--no-ui", "--once"]),
            s(&["backfill", "--from", &self.from, "--to", &self.to]),
        ]
    }

    fn run_to_completion(&self, step: &[String]) -> Duration {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let start = Instant::now();
        // A step killed mid-way may leave a failed run behind; the rerun must succeed.
        let status = self.cmd(&args).status().unwrap();
        assert!(
            status.success(),
            "{step:?} failed after restarts in {}",
            self.dir.display()
        );
        start.elapsed()
    }

    /// Final state: verify passes; metrics and CURATED row counts.
    fn outcome(&self) -> (serde_json::Value, Vec<(String, i64)>) {
        let v = self.cmd(&["verify"]).status().unwrap();
        assert!(v.success(), "verify failed in {}", self.dir.display());
        let m = self
            .cmd(&["metrics", "--json"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(m.status.success());
        let metrics: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
        let s = self
            .cmd(&["status", "--json"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        let snap: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
        let tables = snap["warehouse"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t[0].as_str().unwrap().to_string(), t[1].as_i64().unwrap()))
            .filter(|(t, _)| t.starts_with("curated.") || t.starts_with("staging."))
            .collect();
        (metrics, tables)
    }
}

#[test]
fn sigkill_anywhere_loses_nothing_and_doubles_nothing() {
    let points: u64 = std::env::var("ECOMOPS_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("ECOMOPS_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1);
    eprintln!("crash harness: seed {seed} (ECOMOPS_CRASH_SEED replays it), {points} crash points");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = root.join("ecomops.toml");
    std::fs::write(
        &config,
        "[stream.generator]\nenabled = false\n\n[runtime]\nintegrity_scan_interval_secs = 0\n",
    )
    .unwrap();
    let mut data = Rng(0x9e37_79b9_7f4a_7c15);
    let files = [root.join("events-1.ndjson"), root.join("events-2.ndjson")];
    std::fs::write(&files[0], events(&mut data, 1, 3000)).unwrap();
    // The second file resends part of the first.
    std::fs::write(&files[1], events(&mut data, 2500, 3000)).unwrap();

    let clean = Workload::new(root, "clean", &files, &config);
    let mut took = Vec::new();
    for step in clean.steps() {
        took.push(clean.run_to_completion(&step));
    }
    let expected = clean.outcome();

    let crashed = Workload::new(root, "crashed", &files, &config);
    let mut rng = Rng(seed);
    let steps = crashed.steps();
    let mut survived = 0u64;
    for (i, step) in steps.iter().enumerate() {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        // Kill somewhere in the step's clean duration: start-up, RAW and STAGING writes, the
        // MERGE and its checkpoint, the model refresh all fall in it.
        let window_ms = (took[i].as_millis() as u64).max(50);
        let quota = (points - survived).div_ceil((steps.len() - i) as u64);
        let mut killed = 0;
        let mut attempts = 0;
        while killed < quota && attempts < quota * 4 {
            attempts += 1;
            let mut child = crashed.cmd(&args).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(window_ms * 9 / 10)));
            if child.try_wait().unwrap().is_none() {
                kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
                killed += 1;
            }
            let _ = child.wait();
        }
        survived += killed;
        crashed.run_to_completion(step);
    }
    let got = crashed.outcome();
    eprintln!("crash harness: survived {survived} crash points");
    assert!(
        survived >= points,
        "only {survived} of {points} kills landed mid-step"
    );
    assert_eq!(
        got.1, expected.1,
        "CURATED/STAGING row counts differ (seed {seed})"
    );
    assert_eq!(got.0, expected.0, "metrics differ (seed {seed})");
}
