#!/usr/bin/env bash
# Runs ecomops from source with the same build directory and ccache as scripts/test.sh, so
# the two README commands compile DuckDB's C++ once between them, in either order.
#   bash scripts/run.sh --no-ui --once
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/build-env.sh
exec cargo run -q -- "$@"
