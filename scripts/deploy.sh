#!/usr/bin/env bash
# deploy.sh [minimal|full] [--local]: start the platform.
#   full (default): redis, dispatcher, sandbox and web runtimes, prometheus, grafana
#   minimal: redis, dispatcher, sandbox runtime
#   --local: no Docker; runs the pipeline as local processes (make run)
# ADP_COMPOSE_SERVICES limits full to those services (e.g. without grafana);
# SANDBOX_JAIL=bwrap adds docker-compose.bwrap.yml (no nsjail build).
source "$(dirname "$0")/lib.sh"
variant=full; local_mode=false
for a in "$@"; do
  case $a in
    minimal|full) variant=$a ;;
    --local) local_mode=true ;;
    *) die "usage: deploy.sh [minimal|full] [--local]" ;;
  esac
done
if [ ! -f "$ROOT/tasks.jsonl" ]; then
  log "creating a sample tasks.jsonl"
  git -C "$ROOT" show HEAD:tasks.jsonl > "$ROOT/tasks.jsonl" 2>/dev/null || \
    echo '{"task_id":"demo_fib","task_type":"code","description":"Write a Python function for the 10th Fibonacci number","constraints":{"expected_output":"55"}}' > "$ROOT/tasks.jsonl"
fi
if $local_mode; then
  ensure_built
  exec "$BIN/adpctl" up --tasks "$ROOT/tasks.jsonl" --output "$ROOT/output"
fi
file=docker-compose.yml
[ "$variant" = minimal ] && file=docker-compose.minimal.yml
files=(-f "$file")
# SANDBOX_JAIL=bwrap: the override that builds and runs the bwrap jail.
[ "${SANDBOX_JAIL:-nsjail}" = bwrap ] && files+=(-f docker-compose.bwrap.yml)
services=""
[ "$variant" = full ] && services=$(compose_services)
# shellcheck disable=SC2086 # a list of service names
compose "${files[@]}" up -d --build $services
cat <<MSG
Started ($variant). Trajectories: the 'output' volume (see docker-compose.yml to bind ./output).
  Dispatcher metrics: http://localhost:8000/metrics
MSG
if [ "$variant" = full ]; then
  echo "  Prometheus: http://localhost:9090    Grafana: http://localhost:3000 (admin/admin)"
fi
