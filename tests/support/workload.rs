//! The deterministic workload the crash harness and the AWS end-to-end test run: a seeded
//! batch source, two NDJSON event files (resent, out-of-order, late and malformed events), a
//! cycle and a backfill, as `ecomops` commands against one data dir and config.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};

/// A tiny deterministic generator (xorshift), so the harness needs no RNG crate features.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `n` events from `first_id`, with ~5% resent ids, out-of-order event times, some a day
/// behind (late) and ~1% malformed lines.
pub fn events(rng: &mut Rng, first_id: u64, n: u64) -> String {
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

pub struct Workload {
    pub dir: PathBuf,
    config: PathBuf,
    files: [PathBuf; 2],
    from: String,
    to: String,
}

impl Workload {
    pub fn new(root: &Path, name: &str, files: &[PathBuf; 2], config: &Path) -> Workload {
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

    pub fn cmd(&self, args: &[&str]) -> Command {
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

    pub fn steps(&self) -> Vec<Vec<String>> {
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

    pub fn run_to_completion(&self, step: &[String]) -> Duration {
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

    /// The event ids in STAGING and in the late buffer of the local store (the stream's
    /// classification, object by object, not only its counts).
    pub fn stream_sets(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let ids = |prefix: &str| -> BTreeSet<String> {
            let mut out = BTreeSet::new();
            let mut dirs = vec![self.dir.join("store").join(prefix)];
            while let Some(d) = dirs.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in entries.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if path.extension().is_some_and(|x| x == "ndjson") {
                        let body = std::fs::read_to_string(&path).unwrap();
                        for line in body.lines().filter(|l| !l.is_empty()) {
                            let v: serde_json::Value = serde_json::from_str(line).unwrap();
                            out.insert(v["event_id"].as_str().unwrap().to_string());
                        }
                    }
                }
            }
            out
        };
        (ids("staging/events"), ids("late/events"))
    }

    /// Final state: verify passes; metrics and CURATED row counts.
    pub fn outcome(&self) -> (serde_json::Value, Vec<(String, i64)>) {
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
