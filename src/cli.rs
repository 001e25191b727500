//! The command line. Every command has `--help` with an example.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ecom_model::batch::Task;

#[derive(Debug, Parser)]
#[command(
    name = "ecomops",
    version,
    about = "Operate an e-commerce analytics pipeline: batch and stream ingestion into RAW, \
             STAGING and CURATED zones, warehouse loads, and an on-call dashboard.",
    after_help = "Examples:\n  ecomops                       open the dashboard (runs the pipeline)\n  \
                  ecomops --no-ui               run headless until SIGTERM\n  \
                  ecomops --no-ui --once        one full cycle, then exit (for cron)\n  \
                  ecomops status --json         the running instance's snapshot"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    /// Run headless: no terminal UI, progress as lines (or JSON with --output json).
    #[arg(long)]
    pub no_ui: bool,

    /// With --no-ui: run one full cycle, then exit (0 ok, 1 failed).
    #[arg(long, requires = "no_ui")]
    pub once: bool,

    /// `text` lines, or JSON (one object per state change with --no-ui; the outcome otherwise).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Config file (default: ./ecomops.toml if present, else built-in offline defaults).
    #[arg(long, global = true, env = "ECOMOPS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Data directory (overrides `data_dir` in the config).
    #[arg(long, global = true, env = "ECOMOPS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Refuse every action that changes data or pipeline state.
    #[arg(long, global = true)]
    pub read_only: bool,

    /// No colours (also when NO_COLOR is set).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Log lines on stderr as human text or JSON.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Show the pipeline's state: from the running instance, or read from the data dir.
    #[command(after_help = "Example:\n  ecomops status --json | jq .zones")]
    Status {
        /// Print the whole snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Batch ingestion from the FakeStore API (or the synthetic source).
    #[command(subcommand)]
    Batch(BatchCmd),
    /// Streaming ingestion.
    #[command(subcommand)]
    Stream(StreamCmd),
    /// Feed data through the pipeline.
    #[command(subcommand)]
    Ingest(IngestCmd),
    /// Re-read a range of a stream shard; RAW files come out byte-identical, loads idempotent.
    #[command(
        after_help = "Examples:\n  ecomops replay --shard shard-0001 --from-seq 1200\n  \
                            ecomops replay --shard shard-0001 --from-time 2026-11-24T08:00:00Z"
    )]
    Replay {
        /// Shard id.
        #[arg(long)]
        shard: String,
        /// First sequence number to re-read.
        #[arg(
            long,
            required_unless_present = "from_time",
            conflicts_with = "from_time"
        )]
        from_seq: Option<u64>,
        /// Re-read from this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        from_time: Option<DateTime<Utc>>,
    },
    /// Recompute CURATED partitions of a date range and load late events in it.
    #[command(after_help = "Example:\n  ecomops backfill --from 2026-11-01 --to 2026-11-07")]
    Backfill {
        /// First day (YYYY-MM-DD).
        #[arg(long, value_parser = parse_day)]
        from: NaiveDate,
        /// Last day, inclusive (YYYY-MM-DD).
        #[arg(long, value_parser = parse_day)]
        to: NaiveDate,
        /// Check this model name; the days are recomputed for every model, because the daily
        /// aggregates are built from the facts.
        #[arg(long)]
        model: Option<String>,
    },
    /// Rerun the failed tasks of a batch run.
    #[command(after_help = "Example:\n  ecomops retry 20261124T080000Z-1 --task extract_carts")]
    Retry {
        /// The run id (see `ecomops status`).
        run_id: String,
        /// Only this task.
        #[arg(long, value_parser = parse_task)]
        task: Option<Task>,
    },
    /// Reconcile RAW -> STAGING -> CURATED; exit 1 on any difference.
    #[command(after_help = "Example:\n  ecomops verify")]
    Verify,
    /// Stop the running instance (dashboard or --no-ui) from starting cycles; an orchestrator
    /// sees `"paused": true` in `status --json` (the Airflow DAG then skips its run).
    #[command(after_help = "Example:\n  ecomops pause && ecomops status --json | jq .paused")]
    Pause,
    /// Let the running instance start cycles again.
    #[command(after_help = "Example:\n  ecomops resume")]
    Resume,
    /// Print revenue, conversion rate, average order value and funnel drop-off; with
    /// --from/--to, the same per day from the CURATED daily models.
    #[command(
        after_help = "Examples:\n  ecomops metrics --json\n  ecomops metrics --from 2026-11-10 --to 2026-11-23\n  ecomops metrics --from 2026-11-01 --to 2026-11-30 --by category"
    )]
    Metrics {
        #[arg(long)]
        json: bool,
        /// First day of a per-day trend (YYYY-MM-DD).
        #[arg(long, requires = "to", value_parser = parse_day)]
        from: Option<NaiveDate>,
        /// Last day, inclusive (at most 366 days).
        #[arg(long, requires = "from", value_parser = parse_day)]
        to: Option<NaiveDate>,
        /// With --from/--to: a row per day (the default) or per category.
        #[arg(long, value_enum, requires = "from", default_value_t = TrendBy::Day)]
        by: TrendBy,
    },
    /// Print performance figures (nothing is asserted; build with --release for real numbers).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Print cost estimates per service, month to date and projected.
    #[command(after_help = "Example:\n  ecomops cost --json")]
    Cost {
        #[arg(long)]
        json: bool,
    },
    /// Delete RAW/STAGING objects past their zone's retention that the ledger shows loaded,
    /// quarantined records past theirs, and CURATED rows of days past `lifecycle.curated_days`.
    #[command(after_help = "Examples:\n  ecomops prune --dry-run\n  ecomops prune")]
    Prune {
        /// List what would go; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what the quarantine holds: records refused per entity and field, and the newest
    /// records with their reasons.
    #[command(
        after_help = "Examples:\n  ecomops quarantine\n  ecomops quarantine --reason event_time --limit 5\n  ecomops quarantine --json | jq '.detail.by_reason'"
    )]
    Quarantine {
        /// Only records whose field or reason contains this (case-insensitive).
        #[arg(long)]
        reason: Option<String>,
        /// How many of the newest records to show whole.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a failure scenario on the running instance: shown, marked snoozed, but not
    /// counted in health or the next action for --minutes (0 lifts it). Audited.
    #[command(
        after_help = "Examples:\n  ecomops snooze \"late events\" --minutes 120\n  ecomops snooze \"late events\" --minutes 0"
    )]
    Snooze {
        /// The scenario as the failure table names it: "API down", "duplicate file",
        /// "late events", "partial write", "cost growth".
        scenario: ecom_model::failures::Scenario,
        #[arg(long, default_value_t = 60)]
        minutes: u32,
    },
    /// Judge the quarantined events again by the current rules (after a fix or a config
    /// change): those that pass are staged and loaded; a second run loads nothing new.
    #[command(after_help = "Example:\n  ecomops reprocess")]
    Reprocess,
    /// Show the stream's shard leases (several instances on one Kinesis stream): each
    /// instance and its shards, each lease's owner, counter, age and committed checkpoint, and
    /// who holds an expired one.
    #[command(
        after_help = "Examples:\n  ecomops leases\n  ecomops leases --json | jq '.leases[] | select(.expired)'"
    )]
    Leases {
        /// Print the fleet as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the difference between the S3 bucket's lifecycle rules and [lifecycle]; --apply sets them.
    #[command(after_help = "Examples:\n  ecomops lifecycle\n  ecomops lifecycle --apply")]
    Lifecycle {
        #[arg(long)]
        apply: bool,
    },
}

impl Cmd {
    /// A question about the pipeline that changes nothing: its answer is on stdout, and the
    /// pipeline's INFO lines (a one-shot instance starting and stopping) would only be noise
    /// on stderr, so these log warnings and errors only unless `RUST_LOG` says otherwise.
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Cmd::Status { .. }
                | Cmd::Leases { .. }
                | Cmd::Metrics { .. }
                | Cmd::Cost { .. }
                | Cmd::Quarantine { .. }
                | Cmd::Prune { dry_run: true }
                | Cmd::Lifecycle { apply: false }
        )
    }
}

/// How `metrics --from/--to` groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrendBy {
    Day,
    Category,
}

#[derive(Debug, Subcommand)]
pub enum BatchCmd {
    /// Run the batch DAG now: extract products, users, carts -> RAW -> STAGING.
    ///
    /// Exit status: 0 every task asked for succeeded; 1 one failed (or bad input: 2); 75 a task
    /// asked for waits for its upstream (not succeeded in this run yet): try again later.
    #[command(
        after_help = "Examples:\n  ecomops batch run\n  ecomops batch run --task extract_products\n  \
                      ecomops batch run --carts-from 2026-11-01 --carts-to 2026-11-07\n  \
                      ecomops batch run --run-id airflow-20261120 --only extract_carts \\\n      \
                      --data-interval-start 2026-11-20 --data-interval-end 2026-11-21"
    )]
    Run {
        /// This task and what follows it.
        #[arg(long, value_parser = parse_task, conflicts_with = "only")]
        task: Option<Task>,
        /// Exactly this task (one Airflow task = one ecomops task); its upstream must have
        /// succeeded in the run, else exit 75.
        #[arg(long, value_parser = parse_task)]
        only: Option<Task>,
        /// Create the run with this id, or resume it when it exists: a second call with the
        /// same id is the retry path (nothing that succeeded is fetched or done again).
        #[arg(long)]
        run_id: Option<String>,
        /// The orchestrator's data interval start (YYYY-MM-DD or RFC 3339): carts from this day.
        #[arg(
            long,
            requires = "data_interval_end",
            conflicts_with = "carts_from",
            value_parser = parse_instant
        )]
        data_interval_start: Option<DateTime<Utc>>,
        /// The data interval's end, exclusive (Airflow's): carts up to the day before, or of
        /// the start day when the interval is shorter than a day.
        #[arg(long, requires = "data_interval_start", value_parser = parse_instant)]
        data_interval_end: Option<DateTime<Utc>>,
        /// Pull only carts dated from this day (YYYY-MM-DD, inclusive): an incremental pull.
        #[arg(long, requires = "carts_to", value_parser = parse_day)]
        carts_from: Option<NaiveDate>,
        /// ... to this day (YYYY-MM-DD, inclusive).
        #[arg(long, requires = "carts_from", value_parser = parse_day)]
        carts_to: Option<NaiveDate>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// MERGE throughput: ecomops' load path next to the bare MERGE in DuckDB, same rows.
    #[command(
        after_help = "Example:\n  cargo run --release -- bench merge --base 10000000 --rows 1000000"
    )]
    Merge {
        /// Orders already in the table.
        #[arg(long, default_value_t = 1_000_000)]
        base: u64,
        /// Orders in the loaded file (10% update existing keys).
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
    },
    /// Stream throughput end to end on the embedded backends, and dedup bytes per event_id.
    #[command(
        after_help = "Examples:\n  cargo run --release -- bench stream --events 1000000\n  \
                            cargo run --release -- bench stream --file events.ndjson"
    )]
    Stream {
        /// Events to generate.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Use this NDJSON file's lines instead of the generator (e.g. shared/bench/make_events.py).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// `ingest events FILE` end to end, warehouse included: the real command in a fresh data
    /// dir, timed as a whole; then, where Python has duckdb, the same job in DuckDB SQL
    /// (`peer_duckdb.py`) on the same file, and the ratio of the two.
    #[command(after_help = "Example:
  python3 ../shared/bench/make_events.py 1000000 42 > /tmp/events.ndjson
                        cargo run --profile bench-fast -- bench ingest --file /tmp/events.ndjson \
                          --peer ../shared/bench/peer_duckdb.py --python .venv/bin/python")]
    Ingest {
        /// The NDJSON events file.
        #[arg(long)]
        file: PathBuf,
        /// The peer script (the same job in DuckDB SQL).
        #[arg(long, default_value = "../shared/bench/peer_duckdb.py")]
        peer: PathBuf,
        /// A Python with the duckdb package.
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
    },
    /// The floor a primary key sets under `ingest events`: ROWS events inserted in one
    /// transaction into a DuckDB file table shaped like `staging.events`, with its primary key
    /// and without; DuckDB alone, no ecomops code in the timed part.
    #[command(after_help = "Example:\n  cargo run --release -- bench keys --rows 1000000")]
    Keys {
        /// Events to insert.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
    },
    /// Batch throughput: one synthetic run at a scale, extract -> RAW -> STAGING -> MERGE.
    #[command(
        after_help = "Example:\n  cargo run --profile bench-fast -- bench batch --scale 500"
    )]
    Batch {
        /// Synthetic source size (1 = 20 products, 10 users, 40 carts).
        #[arg(long, default_value_t = 500)]
        scale: u32,
    },
    /// S3 zone statistics at scale: puts OBJECTS small objects into RAW of a bucket on an S3
    /// endpoint (moto on loopback), then times a listing from the pages alone (what statistics
    /// use) against one with a HEAD per object (what they used).
    #[command(
        after_help = "Example:\n  .venv/bin/moto_server -H 127.0.0.1 -p 5123 &\n  \
                      AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\\n  \
                      cargo run --profile bench-fast -- bench store --objects 10000 --endpoint http://127.0.0.1:5123"
    )]
    Store {
        #[arg(long, default_value_t = 10_000)]
        objects: u64,
        /// The S3 endpoint (a loopback moto server).
        #[arg(long)]
        endpoint: String,
    },
    /// Dashboard frame render time: every view of a fixture with many shards and runs.
    #[command(
        after_help = "Example:\n  cargo run --release -- bench frame --shards 64 --runs 1000"
    )]
    Frame {
        #[arg(long, default_value_t = 64)]
        shards: usize,
        #[arg(long, default_value_t = 1000)]
        runs: usize,
        /// Terminal size, COLSxROWS.
        #[arg(long, default_value = "160x48")]
        size: String,
        /// Frames drawn per view.
        #[arg(long, default_value_t = 200)]
        frames: u32,
    },
    /// Several instances on one Kinesis stream (leases): for each count, a fresh 8-shard
    /// stream holding EVENTS records, that many `--no-ui` instances started together, timed
    /// until the shared PostgreSQL warehouse has committed every record.
    #[command(
        after_help = "Example:\n  ecomops bench fleet --endpoint http://127.0.0.1:5123 --postgres \"host=127.0.0.1 port=5432 user=postgres dbname=postgres\""
    )]
    Fleet {
        /// Instance counts to run, one after another.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        instances: Vec<u32>,
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// The AWS endpoint (a loopback moto server: Kinesis, DynamoDB, S3).
        #[arg(long)]
        endpoint: String,
        /// A PostgreSQL connection allowed to create databases (one per run).
        #[arg(long)]
        postgres: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StreamCmd {
    /// Run the event generator and the consumers until interrupted.
    #[command(after_help = "Example:\n  ecomops stream run")]
    Run,
}

#[derive(Debug, Subcommand)]
pub enum IngestCmd {
    /// Feed NDJSON events from a file (or - for stdin) through the stream path.
    #[command(after_help = "Example:\n  ecomops ingest events events.ndjson")]
    Events {
        /// NDJSON file, or - for standard input.
        file: String,
    },
}

/// A day as the CLI takes it: YYYY-MM-DD.
fn parse_day(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("{s:?} is not a day (YYYY-MM-DD)"))
}

/// A time as the CLI takes it: RFC 3339.
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// A day (its midnight UTC) or an RFC 3339 time: what an orchestrator's templates give.
fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_time(s).map_err(|_| format!("{s:?} is neither a day (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// The carts window (inclusive days) of a data interval `[start, end)`.
pub fn interval_days(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(NaiveDate, NaiveDate), String> {
    if end <= start {
        return Err(format!("the data interval {start}..{end} is empty"));
    }
    // The last instant inside the interval is just before `end`.
    let last = end - chrono::Duration::microseconds(1);
    Ok((start.date_naive(), last.date_naive()))
}

fn parse_task(s: &str) -> Result<Task, String> {
    Task::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn once_requires_no_ui() {
        assert!(Cli::try_parse_from(["ecomops", "--once"]).is_err());
        assert!(Cli::try_parse_from(["ecomops", "--no-ui", "--once"]).is_ok());
    }

    #[test]
    fn replay_needs_exactly_one_start() {
        assert!(Cli::try_parse_from(["ecomops", "replay", "--shard", "s"]).is_err());
        assert!(Cli::try_parse_from([
            "ecomops",
            "replay",
            "--shard",
            "s",
            "--from-seq",
            "1",
            "--from-time",
            "x"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["ecomops", "replay", "--shard", "s", "--from-seq", "1"]).is_ok()
        );
    }
}
