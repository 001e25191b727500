#!/usr/bin/env bash
# The crash harness for longer runs: POINTS SIGKILLs (default 500) at random moments of a
# deterministic workload, each step restarted until it completes, then the final CURATED
# tables and metrics compared with an uninterrupted run (see tests/crash_harness.rs).
# Replay a failure with ECOMOPS_CRASH_SEED=<seed printed by the run>.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ECOMOPS_CRASH_POINTS="${1:-500}" cargo test --test crash_harness -- --nocapture
