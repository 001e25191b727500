#!/usr/bin/env bash
# Runs ecomops from source with the same build directory and ccache as scripts/test.sh, so
# the two README commands compile DuckDB's C++ once between them, in either order.
#   bash scripts/run.sh --no-ui --once
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
if ! command -v ccache >/dev/null; then
  echo "run.sh: installing ccache" >&2
  as_root apt-get update -qq >/dev/null && as_root apt-get install -y -qq ccache >/dev/null \
    || echo "run.sh: could not install ccache; building without it" >&2
fi
. scripts/env.sh
exec cargo run -q -- "$@"
