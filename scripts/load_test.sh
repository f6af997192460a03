#!/usr/bin/env bash
# load_test.sh [--local] [N] [minutes]: N mixed tasks (two thirds code, one
# third web), reports tasks/min, success rate and p95; passes when every task
# completes, none is lost, and more than 99% succeed (the blueprint asked 90%).
#   --local: processes on this machine (make run's pipeline), web tasks on the
#            local demo site. Otherwise: the compose stack, scaled to 3 sandbox
#            and 2 web replicas (REDIS_URL: its published Redis port), web
#            tasks on its demo-site service (ADP_DEMO_URL moves them).
source "$(dirname "$0")/lib.sh"
local_mode=false
if [ "${1:-}" = "--local" ]; then local_mode=true; shift; fi
n=${1:-100}; minutes=${2:-10}
command -v jq >/dev/null || die "jq not found (scripts/bootstrap.sh installs it)"
run=load-$(date +%s)-$$
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
demo=${ADP_DEMO_ADDR:-127.0.0.1:$((20000 + RANDOM % 20000))}
if $local_mode; then base=${ADP_DEMO_URL:-http://$demo}
else base=${ADP_DEMO_URL:-http://demo-site:8765}; fi # the stack's demo-site service
for i in $(seq 1 "$n"); do
  if [ $((i % 3)) -eq 0 ]; then
    printf '{"task_id":"%s-%d","task_type":"web","description":"Search for information about topic %d","constraints":{"start_url":"%s/","expected_text":"ADP-%d"},"timeout":120}\n' "$run" "$i" "$i" "$base" $((i * 7))
  else
    printf '{"task_id":"%s-%d","task_type":"code","description":"Calculate fibonacci(%d)","timeout":60}\n' "$run" "$i" $((i % 90))
  fi
done > "$work/tasks.jsonl"

ensure_built # building is not part of the timed run
start=$(date +%s.%N)
if $local_mode; then
  out=$work/out
  local_up "$work/tasks.jsonl" "$out" --timeout "${minutes}m" --demo-addr "$demo" > "$work/summary.txt"
  dir=$out/trajectories
else
  # shellcheck disable=SC2086 # ADP_COMPOSE_SERVICES: a list of names
  compose up -d --scale sandbox-runtime=3 --scale web-runtime=2 $(compose_services) >&2
  "$BIN/adpctl" submit "$work/tasks.jsonl" >/dev/null
  copy=$work/copy; dir=$copy/trajectories; mkdir -p "$dir"
  deadline=$(( $(date +%s) + minutes * 60 ))
  while [ "$(ls "$dir" | grep -c "^$run-.*\.json$")" -lt "$n" ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 5; compose_output "$copy" || true
  done
fi
end=$(date +%s.%N)

files=$(ls "$dir" | grep -c "^$run-.*\.json$" || true)
jq -s --argjson n "$n" --arg el "$(echo "$end - $start" | bc -l)" '
  (map(.total_duration) | sort) as $d |
  { tasks: $n, done: length, succeeded: map(select(.success)) | length,
    elapsed_s: ($el | tonumber), p95_s: ($d[((length * 0.95) | ceil) - 1] // 0) } |
  .tasks_per_min = (.done / .elapsed_s * 60) | .success_rate = (.succeeded / .tasks)' \
  $(ls -d "$dir"/"$run"-*.json) > "$work/result.json"
cat "$work/result.json"
lost=$((n - files))
sr=$(jq .success_rate "$work/result.json")
echo "load test: $n tasks, $(jq -r '.tasks_per_min | floor' "$work/result.json") tasks/min, success $(jq -r '.success_rate * 100 | . * 10 | floor / 10' "$work/result.json")%, p95 $(jq -r .p95_s "$work/result.json")s, lost $lost"
[ "$lost" -eq 0 ] && awk "BEGIN{exit !($sr > 0.99)}" || die "lost $lost or success rate $sr <= 0.99"
