#!/usr/bin/env bash
# build.sh: check the tools, create the output directories, build.
#   scripts/build.sh           build the three images (docker compose build)
#   scripts/build.sh --local   install what a local run needs and build bin/
source "$(dirname "$0")/lib.sh"
mode=${1:-compose}
mkdir -p "$ROOT/output/trajectories" "$ROOT/output/logs"
if [ "$mode" = "--local" ]; then
  "$ROOT/scripts/bootstrap.sh" --run
  make -C "$ROOT" build
  log "built: $(ls "$BIN" | tr '\n' ' ')"
else
  command -v docker >/dev/null || die "docker not found; install Docker or use --local"
  [ -f "$ROOT/tasks.jsonl" ] || die "tasks.jsonl missing"
  (cd "$ROOT" && compose build)
  log "images built"
fi
