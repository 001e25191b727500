# Sourced by the scripts that build (test.sh, run.sh): installs ccache when missing, then sets
# the one build directory and ccache of scripts/env.sh (after the install, so it is used).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
if ! command -v ccache >/dev/null; then
  echo "$(basename "$0"): installing ccache" >&2
  as_root apt-get update -qq >/dev/null && as_root apt-get install -y -qq ccache >/dev/null \
    || echo "$(basename "$0"): could not install ccache; building without it" >&2
fi
. scripts/env.sh
