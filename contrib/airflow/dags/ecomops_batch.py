"""Airflow 3 DAG driving the batch side of ecomops, one DAG run per day.

Scope: batch only. The stream side of ecomops is not a DAG: it is a long-running
service (a systemd unit running the ecomops stream consumer). It is a continuous
consumer that keeps its own checkpoints (offsets, watermarks, dedup state) and must
run all the time; Airflow schedules discrete batch *intervals* and runs tasks that
start, finish and exit. Wrapping an endless consumer in a task would mean a task that
never succeeds, retries that fight the consumer's own checkpointing, and a scheduler
that cannot say anything useful about "which interval". So systemd supervises the
stream; Airflow drives the daily batch.

Graph (every task is a BashOperator calling the ecomops CLI):

    ecomops_not_paused >> [extract_products, extract_users, extract_carts] >> land >> stage >> load

* ``ecomops_not_paused`` reads ``ecomops status --json`` and exits 99 when the
  instance is paused; 99 is BashOperator's ``skip_on_exit_code``, so the task is
  *skipped* and, with the default ``all_success`` trigger rule, every downstream task
  is skipped too: a paused instance short-circuits the run without failing it.
* Each batch task runs ``ecomops batch run --only <task_id>`` for one ecomops run id.
  The run id is derived from the data interval (``airflow-YYYYMMDD`` of the interval
  start), never from Airflow's ``run_id`` (which is ``manual__<wall clock>`` for manual
  runs and ``airflow dags test``): every Airflow retry of any task, and a re-run of the
  same interval, resumes the same ecomops run.
* CLI exit codes: 0 success; 1 failure; 75 "this task's upstream in the ecomops run is
  not done". Both 1 and 75 are ordinary failures to Airflow, hence retried
  (``retries``, exponential backoff); only 99 means skip.

Schedule: ``CronDataIntervalTimetable("@daily")``, not the string "@daily". In Airflow 3 a
cron string gives a CronTriggerTimetable (``[scheduler] create_cron_data_intervals`` is
False by default) whose data interval is a single point: data_interval_start ==
data_interval_end == logical_date, which would hand ecomops an empty interval. With
CronDataIntervalTimetable a scheduled run for the day D has logical_date = D and the
interval [D, D+1). A manual run / ``airflow dags test ecomops_batch D`` gets the interval
that *ends* at D, i.e. [D-1, D), and so the ecomops run id ``airflow-<D-1>``: the id
always names the interval it covers, whichever way the run was started.

Environment (read when the DAG file is parsed, passed to every task with
``append_env=True`` so PATH etc. still reach the command):
  ECOMOPS_BIN                     ecomops binary (default: ``ecomops`` on PATH)
  ECOMOPS_DATA_DIR                the instance's data dir (default: /var/lib/ecomops)
  ECOMOPS_CONFIG                  config file; passed through only when set (the CLI
                                  reads this variable itself)
  ECOMOPS_AIRFLOW_RETRIES         retries per task (default 3)
  ECOMOPS_AIRFLOW_RETRY_DELAY_S   base retry delay in seconds (default 1)
  ECOMOPS_AIRFLOW_MAX_RETRY_DELAY_S  cap on the backed-off delay (default 300)
"""

from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, CronDataIntervalTimetable

DAG_ID = "ecomops_batch"
BATCH_TASKS = ("extract_products", "extract_users", "extract_carts", "land", "stage", "load")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


ECOMOPS_ENV = {
    "ECOMOPS_BIN": os.environ.get("ECOMOPS_BIN") or "ecomops",
    "ECOMOPS_DATA_DIR": os.environ.get("ECOMOPS_DATA_DIR") or "/var/lib/ecomops",
}
if os.environ.get("ECOMOPS_CONFIG"):
    ECOMOPS_ENV["ECOMOPS_CONFIG"] = os.environ["ECOMOPS_CONFIG"]

# One ecomops run per data interval, named after the interval's start day.
RUN_ID = "airflow-{{ data_interval_start | ds_nodash }}"
INTERVAL_ARGS = (
    '--data-interval-start "{{ data_interval_start | ds }}" '
    '--data-interval-end "{{ data_interval_end | ds }}"'
)

# Exit 99 (BashOperator's default skip_on_exit_code) when the instance is paused.
# pipefail: a failing `status` must fail the task, not feed empty input to python.
NOT_PAUSED_CMD = (
    "set -o pipefail; "
    '"$ECOMOPS_BIN" --data-dir "$ECOMOPS_DATA_DIR" status --json | python3 -c '
    "'import json, sys\n"
    "paused = json.load(sys.stdin)[\"paused\"]\n"
    "if not isinstance(paused, bool): sys.exit(\"status --json: paused is not a boolean\")\n"
    "print(\"ecomops instance paused: skipping this run\" if paused else \"ecomops instance not paused\")\n"
    "sys.exit(99 if paused else 0)'"
)


def batch_cmd(task: str) -> str:
    return (
        f'"$ECOMOPS_BIN" --data-dir "$ECOMOPS_DATA_DIR" batch run --only {task} '
        f'--run-id "{RUN_ID}" {INTERVAL_ARGS}'
    )


default_args = {
    "retries": int(_env_float("ECOMOPS_AIRFLOW_RETRIES", 3)),
    "retry_delay": dt.timedelta(seconds=_env_float("ECOMOPS_AIRFLOW_RETRY_DELAY_S", 1)),
    # In Airflow >= 3.3 this is a float multiplier; True is kept for compatibility and
    # means 2.0 (the delay doubles each retry, with a deterministic jitter).
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(seconds=_env_float("ECOMOPS_AIRFLOW_MAX_RETRY_DELAY_S", 300)),
}

with DAG(
    dag_id=DAG_ID,
    description="ecomops daily batch: extract -> land -> stage -> load",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,  # one ecomops batch run at a time against one data dir
    default_args=default_args,
    tags=["ecomops"],
) as dag:
    not_paused = BashOperator(
        task_id="ecomops_not_paused",
        bash_command=NOT_PAUSED_CMD,
        env=ECOMOPS_ENV,
        append_env=True,
    )
    tasks = {
        name: BashOperator(
            task_id=name,
            bash_command=batch_cmd(name),
            env=ECOMOPS_ENV,
            append_env=True,
        )
        for name in BATCH_TASKS
    }
    extracts = [tasks["extract_products"], tasks["extract_users"], tasks["extract_carts"]]
    not_paused >> extracts
    extracts >> tasks["land"] >> tasks["stage"] >> tasks["load"]
