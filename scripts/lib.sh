# Shared helpers of the scripts; sourced, not run.
# shellcheck shell=bash
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# compose runs docker compose (v2 plugin) or docker-compose (v1) in the
# repository root, whatever the current directory. COMPOSE_PROJECT_NAME and
# COMPOSE_FILE apply as usual.
compose() {
  if docker compose version >/dev/null 2>&1; then (cd "$ROOT" && docker compose "$@")
  elif command -v docker-compose >/dev/null 2>&1; then (cd "$ROOT" && docker-compose "$@")
  else die "docker compose not found; use --local to run without Docker"; fi
}

# compose_output copies the stack's output volume (trajectories, logs) into
# a directory, from the dispatcher: it mounts the volume in both compose
# files and is never scaled.
compose_output() { # dir
  mkdir -p "$1"
  compose cp dispatcher:/data/output/. "$1" >/dev/null 2>&1
}

# compose_services: the services to start, ADP_COMPOSE_SERVICES (default:
# every service of the file). For an engine without some image, e.g.
# ADP_COMPOSE_SERVICES="redis dispatcher sandbox-runtime web-runtime demo-site prometheus".
compose_services() { echo "${ADP_COMPOSE_SERVICES:-}"; }

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
