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
RUST_LOG=warn "$bin" bench merge --base 1000000 --rows 100000
RUST_LOG=warn "$bin" bench frame --shards 64 --runs 1000 --size 160x48
RUST_LOG=warn "$bin" bench batch --scale 500
