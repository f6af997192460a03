#!/usr/bin/env bash
# smoke_test.sh [--local]: two code tasks must produce two valid, successful
# trajectory files, and tasks_completed_total must be exported by the
# sandbox runtime.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || die "jq not found (scripts/bootstrap.sh installs it)"
run=smoke-$(date +%s)-$$
tasks=$(mktemp); trap 'rm -f "$tasks"' EXIT
cat > "$tasks" <<JSON
{"task_id":"$run-1","task_type":"code","description":"Calculate fibonacci(10)","constraints":{"expected_output":"55"}}
{"task_id":"$run-2","task_type":"code","description":"print a greeting","constraints":{"code":"print('hello from the sandbox')","expected_output":"hello from the sandbox"}}
JSON

if [ "${1:-}" = "--local" ]; then
  ensure_built
  out=$(mktemp -d); trap 'rm -rf "$out" "$tasks"' EXIT
  local_up "$tasks" "$out" --timeout 120s --demo-addr "" >/dev/null
  dir=$out/trajectories
  grep -q '^tasks_completed_total{runtime="sandbox",status="success"} 2$' "$out/logs/sandbox-runtime.metrics.prom" \
    || die "sandbox runtime did not export tasks_completed_total = 2"
else
  # Against a running compose stack: inject by hand, as the runbook does.
  while read -r line; do
    compose exec -T redis redis-cli xadd tasks:code '*' task "$line" >/dev/null </dev/null
  done < "$tasks"
  copy=$(mktemp -d); trap 'rm -rf "$copy" "$tasks"' EXIT
  dir=$copy/trajectories
  for _ in $(seq 60); do
    compose_output "$copy" || true
    [ -f "$dir/$run-1.json" ] && [ -f "$dir/$run-2.json" ] && break
    sleep 2
  done
  # The counter through Prometheus when it runs (the full stack), else from
  # the replicas' /metrics (docker-compose.minimal.yml has no Prometheus).
  found=false
  for _ in $(seq 30); do
    if [ -n "$(compose ps -q --status running prometheus 2>/dev/null)" ]; then
      curl -fsS "http://127.0.0.1:${PROMETHEUS_PORT:-9090}/api/v1/query?query=tasks_completed_total" 2>/dev/null | grep -q tasks_completed_total && found=true
    else
      for i in $(seq "$(compose ps -q --status running sandbox-runtime | wc -l)"); do
        compose exec -T --index "$i" sandbox-runtime python3 -c \
          "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8001/metrics').read().decode())" 2>/dev/null \
          | grep -q '^tasks_completed_total{runtime="sandbox",status="success"}' && found=true
      done
    fi
    $found && break
    sleep 2
  done
  $found || die "tasks_completed_total not exported (Prometheus, or the sandbox replicas' /metrics)"
fi
for i in 1 2; do
  f=$dir/$run-$i.json
  [ -f "$f" ] || die "no trajectory $f"
  [ "$(jq -r .success "$f")" = true ] || die "$f: success is not true: $(jq -c '{error_type,error_message}' "$f")"
done
echo "smoke test: 2 passed, 0 failed"
