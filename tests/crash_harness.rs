//! Crash harness: a deterministic workload (a seeded batch source; two NDJSON event files with
//! duplicates, out-of-order, late and malformed events; a cycle; a backfill) run once without
//! interruption, and once with SIGKILL at random moments of every step (each step restarted
//! until it completes). The final CURATED tables, metrics and the staged and late event ids must
//! be equal and `verify` clean: nothing lost, nothing doubled. `ECOMOPS_CRASH_POINTS` sets the
//! number of kills (50 here; `scripts/crash.sh` runs 500); `ECOMOPS_CRASH_SEED` replays a run.

mod support {
    pub mod workload;
}

use std::time::Duration;

use chrono::Utc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::workload::{events, Rng, Workload};

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
    // Record by record: the same events staged and buffered late as the clean run.
    assert_eq!(
        crashed.stream_sets(),
        clean.stream_sets(),
        "staged or late event ids differ (seed {seed})"
    );
}
