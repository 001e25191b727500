#!/usr/bin/env bash
# Every benchmark, from one command: builds the `bench-fast` profile (release Rust, DuckDB from
# the dev build's ccache) and prints the stream, MERGE, dashboard-frame and batch figures.
# Nothing is asserted. Pass --release-duckdb to build with `--release` instead (absolute MERGE
# figures; DuckDB at -O3 is a 45+ minute first build on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
profile=bench-fast
[ "${1:-}" = "--release-duckdb" ] && profile=release
cargo build --profile "$profile" --bin ecomops
bin="$CARGO_TARGET_DIR/$profile/ecomops"
echo "== $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), profile $profile"
RUST_LOG=warn "$bin" bench stream --events 1000000
# The shared 1M-event workload through the real `ingest events`, beside the same job in DuckDB
# SQL (the peer needs Python's duckdb: scripts/test.sh installs it into .venv).
if [ -f ../shared/bench/make_events.py ]; then
  events="${TMPDIR:-/tmp}/ecomops-events-1m-42.ndjson"
  [ -s "$events" ] || python3 ../shared/bench/make_events.py 1000000 42 > "$events"
  RUST_LOG=warn "$bin" bench ingest --file "$events" --peer ../shared/bench/peer_duckdb.py --python .venv/bin/python
fi
# What the primary key of staging.events alone costs DuckDB for 1M events: the floor under the
# ingest figure above.
RUST_LOG=warn "$bin" bench keys --rows 1000000
RUST_LOG=warn "$bin" bench merge --base 1000000 --rows 100000
RUST_LOG=warn "$bin" bench frame --shards 64 --runs 1000 --size 160x48
RUST_LOG=warn "$bin" bench batch --scale 500
# Several instances sharing a stream by leases, where scripts/test.sh's services are running
# (ECOMOPS_TEST_MOTO_ENDPOINT: moto with Kinesis, DynamoDB, S3; ECOMOPS_TEST_PG: PostgreSQL).
if [ -n "${ECOMOPS_TEST_MOTO_ENDPOINT:-}" ] && [ -n "${ECOMOPS_TEST_PG:-}" ]; then
  RUST_LOG=warn "$bin" bench fleet --instances 1,2,4 --events 100000 \
    --endpoint "$ECOMOPS_TEST_MOTO_ENDPOINT" --postgres "$ECOMOPS_TEST_PG"
fi
