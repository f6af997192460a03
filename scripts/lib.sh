# Shared helpers of the scripts; sourced, not run.
# shellcheck shell=bash
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# compose runs docker compose (v2 plugin) or docker-compose (v1).
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"
  elif command -v docker-compose >/dev/null 2>&1; then docker-compose "$@"
  else die "docker compose not found; use --local to run without Docker"; fi
}

# ensure_built builds the binaries when missing or older than the sources.
ensure_built() {
  if [ ! -x "$BIN/adpctl" ] || [ -n "$(find "$ROOT/cmd" "$ROOT/internal" -name '*.go' -newer "$BIN/adpctl" -print -quit)" ]; then
    make -C "$ROOT" build >&2
  fi
}

# local_up runs the pipeline locally on a task file into an output directory.
local_up() { # tasks_file output_dir [extra adpctl up flags]
  local tasks=$1 out=$2; shift 2
  "$BIN/adpctl" up --tasks "$tasks" --output "$out" "$@"
}
