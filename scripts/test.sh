#!/usr/bin/env bash
# Runs every test of ecomops on a fresh machine: installs what the tests need (ccache for the
# DuckDB C++ build, tmux for the dashboard test, moto in ./.venv, Apache Airflow in
# ./.venv-airflow, Debian's PostgreSQL 15), starts a moto server (S3, Kinesis)
# and a throwaway PostgreSQL 15 (the Redshift SQL tests) on free loopback ports, runs clippy
# (warnings are errors) and `cargo test` for the whole workspace, and stops both again.
set -euo pipefail
cd "$(dirname "$0")/.."

# ccache, then one target dir and ccache for every build.
. scripts/build-env.sh
# tmux drives the real dashboard in tests/dashboard_tmux.rs.
if ! command -v tmux >/dev/null; then
  echo "test.sh: installing tmux" >&2
  as_root apt-get update -qq >/dev/null && as_root apt-get install -y -qq tmux >/dev/null
fi
export ECOMOPS_REQUIRE_TMUX=1

# moto, pinned, in a project-local venv; beside it DuckDB's Python package, whose
# read_parquet reads the CURATED files back (pipeline/tests/data_model.rs).
MOTO_VERSION="5.1.22"
DUCKDB_PY_VERSION="2.0.1"
if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c "import moto, duckdb, sys; sys.exit(moto.__version__ != '$MOTO_VERSION' or duckdb.__version__ != '$DUCKDB_PY_VERSION')" 2>/dev/null; then
  echo "test.sh: installing moto[server]==$MOTO_VERSION and duckdb==$DUCKDB_PY_VERSION into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" "duckdb==$DUCKDB_PY_VERSION"
fi
export ECOMOPS_TEST_PYTHON="$PWD/.venv/bin/python" ECOMOPS_REQUIRE_PYTHON=1
# Apache Airflow, pinned (with its constraints), in its own venv: tests/airflow_dag.rs runs the
# DAG in contrib/airflow with `airflow dags test`.
AIRFLOW_VERSION="3.3.2"
if ! .venv-airflow/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('apache-airflow') != '$AIRFLOW_VERSION')" 2>/dev/null; then
  echo "test.sh: installing apache-airflow==$AIRFLOW_VERSION into .venv-airflow" >&2
  python3 -m venv .venv-airflow
  .venv-airflow/bin/pip install -q --disable-pip-version-check "apache-airflow==$AIRFLOW_VERSION" \
    -c "contrib/airflow/constraints-airflow-$AIRFLOW_VERSION-py3.11.txt"
fi
export ECOMOPS_TEST_AIRFLOW="$PWD/.venv-airflow" ECOMOPS_REQUIRE_AIRFLOW=1

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/ecomops-moto-$port.log" 2>&1 &
moto_pid=$!
pg_dir=""
cleanup() {
  kill "$moto_pid" 2>/dev/null || true
  if [ -n "$pg_dir" ]; then as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pg_dir"; fi
}
trap cleanup EXIT

# PostgreSQL 15 (Debian's package): the Redshift SQL we generate runs on it in the tests.
PG_BIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PG_BIN/postgres" ]; then
  echo "test.sh: installing postgresql-15" >&2
  as_root apt-get update -qq >/dev/null && as_root apt-get install -y -qq postgresql-15 >/dev/null
fi
# PostgreSQL refuses to run as root: run it as the package's postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/ecomops-pg.XXXXXX")
[ "$(id -u)" = 0 ] && chown postgres: "$pg_dir"
pg_port=$(free_port)
as_pg "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
export ECOMOPS_TEST_PG="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"
export ECOMOPS_REQUIRE_PG=1
for _ in $(seq 1 100); do
  if .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then break; fi
  kill -0 "$moto_pid" 2>/dev/null || { echo "test.sh: moto failed to start" >&2; cat "${TMPDIR:-/tmp}/ecomops-moto-$port.log" >&2; exit 1; }
  sleep 0.2
done
export ECOMOPS_TEST_MOTO_ENDPOINT="http://127.0.0.1:$port"
export ECOMOPS_REQUIRE_MOTO=1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
# Tests must never reach a real AWS account or the network.
unset AWS_PROFILE AWS_SESSION_TOKEN

# Lints first: clippy's build of DuckDB comes out of the same ccache.
cargo clippy --workspace --all-targets -- -D warnings

# --all-targets: unit, integration and bin tests (no doctests: the crates have none, and an
# empty doctest run would be the runner's closing line). Then one total for the whole run.
log="${TMPDIR:-/tmp}/ecomops-test-$$.log"
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed\n", p, f}' "$log"
rm -f "$log"
