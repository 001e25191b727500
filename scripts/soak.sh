#!/usr/bin/env bash
# The transient-fault soak with N injected faults (default 2000): a running stream over a store
# and warehouse that fail at random, fed by event files and the generator; verify must be clean
# and the staged, late and quarantined sets equal a fault-free run's. CI runs it with 200.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ECOMOPS_SOAK_FAULTS="${1:-2000}" cargo test -p ecom-pipeline --test exactly_once \
  transient_fault_soak -- --nocapture
