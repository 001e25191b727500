#!/usr/bin/env bash
# Run each cargo-fuzz target for SECONDS (default 300) on nightly. New corpus entries land in
# fuzz/corpus/<target>/; a crash is saved under fuzz/artifacts/<target>/ — copy it to
# fuzz/regressions/<target>/ once fixed, where `cargo test` replays it (pipeline/tests/
# fuzz_regressions.rs). Installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-300}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
for t in event fakestore config; do
  echo "== fuzz $t for ${secs}s"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048
done
