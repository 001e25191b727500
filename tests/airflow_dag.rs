//! The Airflow DAG in contrib/airflow/dags, run for real: `airflow dags test` (Airflow 3,
//! SQLite metadata DB, no scheduler) drives the ecomops binary on a scratch data dir against
//! the fault-injecting FakeStore server on loopback. The carts endpoint fails past ecomops'
//! own retries once, so the run succeeds only through Airflow's retry of that task, which
//! resumes the same ecomops run; the next data interval then runs as a second ecomops run;
//! `verify` is clean after both.
//!
//! Needs a venv with apache-airflow (scripts/test.sh installs it pinned and sets
//! ECOMOPS_TEST_AIRFLOW to it); skipped otherwise, unless ECOMOPS_REQUIRE_AIRFLOW is set.

#[path = "../pipeline/tests/support/fakestore_server.rs"]
mod fakestore_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ecom_pipeline::batch::synthetic::SyntheticSource;
use fakestore_server::{FakeStoreServer, Fault};

fn airflow_venv() -> Option<PathBuf> {
    match std::env::var_os("ECOMOPS_TEST_AIRFLOW") {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => {
            assert!(
                std::env::var_os("ECOMOPS_REQUIRE_AIRFLOW").is_none(),
                "ECOMOPS_REQUIRE_AIRFLOW is set but ECOMOPS_TEST_AIRFLOW is not"
            );
            eprintln!("SKIPPED: no Airflow venv; run scripts/test.sh to include the DAG test");
            None
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Rig {
    venv: PathBuf,
    home: PathBuf,
    data: PathBuf,
    config: PathBuf,
}

impl Rig {
    /// A scratch Airflow home (metadata DB migrated) and data dir under `dir`, with `config`.
    async fn new(venv: PathBuf, dir: &Path, config: &str) -> Rig {
        let rig = Rig {
            venv,
            home: dir.join("airflow"),
            data: dir.join("data"),
            config: dir.join("ecomops.toml"),
        };
        std::fs::write(&rig.config, config).unwrap();
        std::fs::create_dir_all(&rig.home).unwrap();
        ok(&rig.run(&["db", "migrate"]).await, "airflow db migrate");
        rig
    }

    fn airflow(&self, args: &[&str]) -> Command {
        let dags = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/airflow/dags");
        let mut c = Command::new(self.venv.join("bin/airflow"));
        c.args(args)
            .env("AIRFLOW_HOME", &self.home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", dags)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("ECOMOPS_BIN", env!("CARGO_BIN_EXE_ecomops"))
            .env("ECOMOPS_DATA_DIR", &self.data)
            .env("ECOMOPS_CONFIG", &self.config)
            .env("ECOMOPS_AIRFLOW_RETRIES", "3")
            .env("ECOMOPS_AIRFLOW_RETRY_DELAY_S", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.airflow(args);
        tokio::task::spawn_blocking(move || c.output().expect("run airflow"))
            .await
            .unwrap()
    }

    async fn ecomops(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ecomops"));
        c.arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || c.output().expect("run ecomops"))
            .await
            .unwrap()
    }
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_runs_two_intervals_retrying_through_a_fault() {
    let Some(venv) = airflow_venv() else {
        return;
    };
    let server = FakeStoreServer::start(SyntheticSource::new(42, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[batch]\nsource = \"fakestore\"\n\n[batch.fakestore]\nbase_url = \"{}\"\n\
         request_timeout_ms = 2000\n\n[batch.retry]\nbase_delay_ms = 5\nmax_delay_ms = 20\n\
         max_attempts = 2\n",
        server.url()
    );
    let rig = Rig::new(venv, dir.path(), &config).await;
    // -l parses the DAG folder here: exit 1 on any import error.
    ok(
        &rig.run(&["dags", "list-import-errors", "-l"]).await,
        "the DAG imports",
    );

    // Past ecomops' two attempts: the first extract_carts fails, Airflow retries it.
    server.script("carts", [Fault::Status(503), Fault::Status(503)]);
    let first = rig
        .run(&["dags", "test", "ecomops_batch", "2026-11-20"])
        .await;
    ok(&first, "dags test 2026-11-20");
    let log = text(&first.stdout) + &text(&first.stderr);
    assert!(
        log.contains("up_for_retry"),
        "Airflow retried a task:\n{log}"
    );

    let second = rig
        .run(&["dags", "test", "ecomops_batch", "2026-11-21"])
        .await;
    ok(&second, "dags test 2026-11-21");

    let out = rig.ecomops(&["status", "--json"]).await;
    ok(&out, "status");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = s["batch"]["runs"].as_array().unwrap();
    let run = |id: &str| {
        runs.iter()
            .find(|r| r["run_id"] == id)
            .unwrap_or_else(|| panic!("no run {id} in {runs:?}"))
    };
    // `dags test D` covers [D-1, D): one ecomops run per interval, named after its start.
    assert_eq!(runs.len(), 2, "{runs:?}");
    let a = run("airflow-20261119");
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(a["window"], serde_json::json!(["2026-11-19", "2026-11-19"]));
    let carts = a["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "extract_carts")
        .unwrap();
    assert_eq!(
        carts["attempts"], 2,
        "the retry resumed the same run: {carts}"
    );
    let b = run("airflow-20261120");
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["window"], serde_json::json!(["2026-11-20", "2026-11-20"]));
    // Products were fetched once per interval: an Airflow retry never refetches what succeeded.
    assert_eq!(server.requests("products").len(), 2);

    let out = rig.ecomops(&["verify"]).await;
    ok(&out, "verify");
    assert!(
        text(&out.stdout).contains("no difference"),
        "{}",
        text(&out.stdout)
    );
}

/// A paused instance short-circuits the run: every task skipped, the DAG run not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_skips_the_run() {
    let Some(venv) = airflow_venv() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new(venv, dir.path(), "").await;
    // A running, paused instance: `--no-ui` holds the data dir and serves its socket.
    let mut service = Command::new(env!("CARGO_BIN_EXE_ecomops"))
        .arg("--data-dir")
        .arg(&rig.data)
        .arg("--config")
        .arg(&rig.config)
        .arg("--no-ui")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = rig.data.join("control.sock");
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ok(&rig.ecomops(&["pause"]).await, "pause");
    let out = rig
        .run(&["dags", "test", "ecomops_batch", "2026-11-20"])
        .await;
    // The instance's own record: no run of the DAG's run id (airflow-<interval start>) exists.
    let status = rig.ecomops(&["status", "--json"]).await;
    let _ = service.kill();
    let _ = service.wait();
    ok(&status, "status --json");
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let runs = s["batch"]["runs"].as_array().cloned().unwrap_or_default();
    assert!(
        runs.iter()
            .all(|r| !r["run_id"].as_str().unwrap_or("").starts_with("airflow-")),
        "a paused instance ran the DAG's batch: {runs:?}"
    );
    ok(&out, "dags test of a paused instance");
    let log = text(&out.stdout) + &text(&out.stderr);
    assert!(log.contains("skipped"), "{log}");
    assert!(
        !log.contains("batch run started"),
        "no batch task ran:\n{log}"
    );
}
