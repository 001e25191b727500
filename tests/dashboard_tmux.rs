//! The dashboard driven through tmux as a user would over SSH: start at 100x30, visit every
//! view, open the help, run a backfill through its confirmation, quit, and check the terminal
//! is restored (alternate screen left, cursor shown). Also: SIGTERM restores the terminal, and
//! an attached dashboard that quits leaves the running instance alone.
//!
//! Needs tmux; `scripts/test.sh` installs it and sets ECOMOPS_REQUIRE_TMUX, without which a
//! machine lacking tmux skips these tests with a message.

#[path = "../pipeline/tests/support/fakestore_server.rs"]
mod fakestore_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    /// A private tmux server running a plain shell in a 100x30 window.
    fn start(name: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("ECOMOPS_REQUIRE_TMUX").is_none(),
                "tmux is required (ECOMOPS_REQUIRE_TMUX is set) but not installed"
            );
            eprintln!("skipping: tmux is not installed");
            return None;
        }
        let t = Tmux {
            socket: format!("ecomops-test-{name}-{}", std::process::id()),
        };
        t.cmd(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "TERM=xterm-256color",
            "HOME=/tmp",
            "PS1=$ ",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        Some(t)
    }

    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.cmd(&["send-keys", "-t", "t", k]);
        }
    }

    fn type_line(&self, line: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", line]);
        self.cmd(&["send-keys", "-t", "t", "Enter"]);
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "t"])
    }

    /// Until `text` is no longer on the screen.
    fn wait_gone(&self, text: &str, secs: u64) {
        let start = Instant::now();
        while self.screen().contains(text) {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {text:?} to go"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, text: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {text:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// (alternate screen on, cursor visible)
    fn terminal_state(&self) -> (bool, bool) {
        let s = self.cmd(&["display", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}"]);
        let mut it = s.split_whitespace();
        (it.next() == Some("1"), it.next() == Some("1"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ecomops")
}

fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("data")
}

fn launch(t: &Tmux, dir: &Path, extra: &str) {
    // cd into the temp dir so no developer ecomops.toml is read.
    t.type_line(&format!(
        "cd {} && {} --data-dir {} {extra}; echo EXITED=$?",
        dir.parent().unwrap().display(),
        bin(),
        dir.display()
    ));
}

#[test]
fn every_view_help_backfill_and_a_restored_terminal() {
    let Some(t) = Tmux::start("views") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    launch(&t, &dir, "");
    t.wait_for("cycle 1 ok", 120);
    assert_eq!(
        t.terminal_state(),
        (true, false),
        "dashboard owns the alternate screen"
    );
    for (key, marker) in [
        ("2", "Shards (4, backend local"),
        ("3", "Per shard"),
        ("4", "Failure table"),
        ("5", "Metrics registry ("),
        ("6", "Batch runs ("),
        ("7", "Operator actions (audit)"),
        ("8", "Per day from the warehouse"),
        ("1", "Zones"),
    ] {
        t.keys(&[key]);
        t.wait_for(marker, 10);
    }
    t.keys(&["?"]);
    t.wait_for("this help (any key closes it)", 10);
    t.keys(&["Escape"]);
    // ESC and a key read together are Alt+key: let the help close first.
    t.wait_gone("this help (any key closes it)", 10);
    t.keys(&["b"]);
    t.wait_for("from (YYYY-MM-DD)", 10);
    t.keys(&["Enter"]);
    let s = t.wait_for("Load the late-buffered events", 10);
    assert!(s.contains("[ Cancel ]"), "focus starts on Cancel:\n{s}");
    t.keys(&["Tab"]);
    t.wait_for("[ Confirm ]", 10);
    t.keys(&["Enter"]);
    t.wait_for("day(s) recomputed", 60);
    // The quarantine's records: the generator's malformed records, each with its reason.
    t.keys(&["Q"]);
    let s = t.wait_for("refused record(s) in", 30);
    assert!(
        s.contains("example reason") && s.contains("quarantine/stream/events/"),
        "{s}"
    );
    t.keys(&["Escape"]);
    t.wait_gone("refused record(s) in", 10);
    // Enter opens the selected run whole.
    t.keys(&["6"]);
    t.wait_for("Batch runs (", 10);
    t.keys(&["Enter"]);
    t.wait_for("carts window", 10);
    t.keys(&["Escape"]);
    t.wait_gone("carts window", 10);
    t.keys(&["1"]);
    t.wait_for("Zones", 10);
    // The owner asks before quitting: it stops ingestion.
    t.keys(&["q"]);
    let s = t.wait_for("quitting stops ingestion", 10);
    assert!(s.contains("[ Cancel ]"), "focus starts on Cancel:\n{s}");
    t.keys(&["Tab"]);
    t.wait_for("[ Confirm ]", 10);
    t.keys(&["Enter"]);
    t.wait_for("EXITED=0", 30);
    assert_eq!(
        t.terminal_state(),
        (false, true),
        "alternate screen left, cursor shown"
    );

    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(rec["action"], "backfill");
    assert_eq!(rec["via"], "dashboard");
    assert_eq!(rec["outcome"], "ok");
}

#[test]
fn sigterm_restores_the_terminal() {
    let Some(t) = Tmux::start("term") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    launch(&t, &dir, "--no-color");
    t.wait_for("cycle 1 ok", 120);
    let pid: i32 = std::fs::read_to_string(dir.join("ecomops.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    t.wait_for("EXITED=0", 30);
    assert_eq!(t.terminal_state(), (false, true));
}

#[test]
fn an_attached_dashboard_quits_and_the_instance_keeps_running() {
    let Some(t) = Tmux::start("attach") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let mut service = start_service(&dir, tmp.path());
    launch(&t, &dir, "--read-only");
    t.wait_for("ATTACHED", 60);
    t.wait_for("READ-ONLY", 10);
    // Read-only: the backfill key opens nothing.
    t.keys(&["b"]);
    t.wait_for("read-only: actions are disabled", 10);
    t.keys(&["q"]);
    t.wait_for("EXITED=0", 30);
    assert_eq!(t.terminal_state(), (false, true));
    assert!(
        service.try_wait().unwrap().is_none(),
        "the instance must keep running"
    );
    let out = Command::new(bin())
        .args(["status", "--json", "--data-dir"])
        .arg(&dir)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["instance"]["mode"], "headless");
    stop_service(service);
}

fn start_service(dir: &Path, cwd: &Path) -> std::process::Child {
    let service = Command::new(bin())
        .args(["--no-ui", "--data-dir"])
        .arg(dir)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("control.sock").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no control socket"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    service
}

fn stop_service(mut service: std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = service.wait();
}

/// Attached to a service that stops: a red DISCONNECTED header with the last state frozen;
/// the service starts again: the dashboard reconnects by itself.
#[test]
fn an_attached_dashboard_says_disconnected_and_reconnects() {
    let Some(t) = Tmux::start("reconnect") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let service = start_service(&dir, tmp.path());
    launch(&t, &dir, "");
    t.wait_for("ATTACHED", 60);
    stop_service(service);
    t.wait_for("DISCONNECTED since", 30);
    let service = start_service(&dir, tmp.path());
    t.wait_gone("DISCONNECTED since", 30);
    t.wait_for("reconnected", 10);
    t.keys(&["q"]);
    t.wait_for("EXITED=0", 30);
    stop_service(service);
}

/// Long CLI work on a terminal shows a spinner with the elapsed time and the command (it took
/// ~13 s in silence for 1M events); the outcome replaces it when done.
#[test]
fn long_cli_work_shows_progress_on_a_terminal() {
    let Some(t) = Tmux::start("progress") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    // Enough events to take a few seconds in a debug build.
    let file = tmp.path().join("events.ndjson");
    let now = chrono::Utc::now();
    let body: String = (0..60_000)
        .map(|i| {
            format!(
                "{{\"event_id\":\"e{i}\",\"user_id\":1,\"product_id\":2,\"event_type\":\"product_view\",\"event_time\":\"{}\",\"session_id\":\"s{}\"}}\n",
                (now - chrono::Duration::seconds(60)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                i % 500
            )
        })
        .collect();
    std::fs::write(&file, body).unwrap();
    launch(&t, &dir, &format!("ingest events {}", file.display()));
    t.wait_for("ingest_file:", 60);
    let s = t.wait_for("EXITED=0", 120);
    assert!(s.contains("ingested 60000 lines"), "{s}");
    assert!(!s.contains("ingest_file:"), "the spinner is cleared:\n{s}");
}

/// A failed batch run stays the Overview's next action while the stream cycles after it
/// succeed, until it is retried (R in Runs); then the Overview says there is nothing to do.
#[test]
fn a_failed_batch_run_is_the_next_action_until_retried() {
    let Some(t) = Tmux::start("failedrun") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(fakestore_server::FakeStoreServer::start(
        ecom_pipeline::batch::synthetic::SyntheticSource::new(42, 1),
    ));
    server.set_down(true);
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let config = tmp.path().join("ecomops.toml");
    std::fs::write(
        &config,
        format!(
            "[batch]\nsource = \"fakestore\"\n[batch.fakestore]\nbase_url = \"{}\"\n\
             request_timeout_ms = 300\n[batch.retry]\nbase_delay_ms = 5\nmax_delay_ms = 20\n\
             max_attempts = 2\n[stream.generator]\nlate_rate = 0.0\n",
            server.url()
        ),
    )
    .unwrap();
    launch(&t, &dir, &format!("--config {}", config.display()));
    t.wait_for("NEXT: batch run", 120);
    // The stream's next cycles succeed; the failed run is still what to do.
    t.wait_for("cycle 2 ok", 60);
    assert!(t.screen().contains("NEXT: batch run"), "{}", t.screen());
    server.set_down(false);
    t.keys(&["6"]);
    t.wait_for("Batch runs (", 10);
    t.keys(&["R"]);
    t.wait_for("[ Cancel ]", 10);
    t.keys(&["Tab"]);
    t.wait_for("[ Confirm ]", 10);
    t.keys(&["Enter"]);
    t.wait_for("succeeded", 60);
    // The run shows as succeeded from the snapshot before the retry's own answer arrives.
    t.wait_gone("retry running", 60);
    t.keys(&["1"]);
    t.wait_gone("NEXT: batch run", 30);
    t.wait_for("nothing to do", 30);
    // The retry's own answer can come after the snapshot showed the run succeeded: until it
    // does, quitting asks about the running retry instead (cancelled here, asked again).
    let asked = Instant::now();
    loop {
        t.keys(&["q"]);
        // Either Quit prompt ends with the keys it takes.
        let s = t.wait_for("Esc cancels", 10);
        if s.contains("quitting stops ingestion") {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "the retry never finished: {s}"
        );
        t.keys(&["Escape"]);
        t.wait_gone("Esc cancels", 10);
        std::thread::sleep(Duration::from_millis(500));
    }
    t.keys(&["Tab"]);
    t.wait_for("[ Confirm ]", 10);
    t.keys(&["Enter"]);
    t.wait_for("EXITED=0", 60);
}
