#!/usr/bin/env bash
# Frees disk in the shared target dir without `cargo clean` (which would cost a DuckDB rebuild):
# cargo never removes what a newer build superseded, and every clone at another path, profile
# or feature change adds a set of test executables (DuckDB linked into each, ~200 MB apiece)
# and, for libduckdb-sys, a ~1.4 GB build directory and a ~750 MB rlib. This keeps the newest
# KEEP (default 2) of each test executable and of libduckdb-sys's outputs, and drops the
# incremental caches (other libraries are small and kept). Anything removed that a later build still wants is rebuilt (relinked; DuckDB's C++
# comes back out of ccache). Prints the free space before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
keep="${1:-2}"
df -h "$CARGO_TARGET_DIR" | tail -1
for profile in debug release bench-fast; do
  dir="$CARGO_TARGET_DIR/$profile"
  [ -d "$dir/deps" ] || continue
  (
    cd "$dir/deps"
    # Test and bench executables (<name>-<16 hex>, no extension): the newest $keep of each.
    for name in $(ls | sed -nE 's/^([a-z0-9_]+)-[0-9a-f]{16}$/\1/p' | sort -u); do
      ls -t | grep -E "^${name}-[0-9a-f]{16}$" | tail -n +$((keep + 1)) | xargs -r rm -f
    done
    # libduckdb-sys's rlib (~750 MB each; other crates' libraries are small and kept).
    ls -t | grep -E '^liblibduckdb_sys-[0-9a-f]{16}\.rlib$' | tail -n +$((keep + 1)) |
      sed -E 's/^lib(.*)\.rlib$/\1/' | while read -r stem; do
        rm -f "lib${stem}".* "${stem}.d"
      done
  )
  # libduckdb-sys build directories (the bundled C++ objects).
  if [ -d "$dir/build" ]; then
    ls -dt "$dir"/build/libduckdb-sys-* 2>/dev/null | tail -n +$((keep * 2 + 1)) | xargs -r rm -rf
  fi
  rm -rf "$dir/incremental"
done
df -h "$CARGO_TARGET_DIR" | tail -1
