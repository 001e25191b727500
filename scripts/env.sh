# Sourced by the scripts: one build directory and ccache for every build on this machine
# (DuckDB's bundled C++ build is ~45 minutes cold; ccache only hits when the target path is the
# same).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ecomops/target}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ecomops/ccache}"
export CCACHE_BASEDIR="$HOME" CCACHE_NOHASHDIR=true CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-10G}"
if command -v ccache >/dev/null; then export CC="ccache gcc" CXX="ccache g++"; fi
