#!/usr/bin/env bash
# web_rss.sh N [DONE]: queue N web tasks (goto + fill + submit + expected_text
# on the local demo site), run one web runtime (MAX_CONCURRENT=4) until DONE of
# them (default all) have trajectories, and report its peak memory together
# with its Chromium processes, and tasks/s. Run `web_rss.sh 200` and
# `web_rss.sh 2000 200` to see that memory does not grow with queue length.
source "$(dirname "$0")/lib.sh"
n=${1:-200}
until=${2:-$n}
ensure_built
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(port); dport=$(port); mport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null & pids+=($!)
"$BIN/adpctl" demo --addr "127.0.0.1:$dport" 2>/dev/null & pids+=($!)
export REDIS_URL=redis://127.0.0.1:$rport
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
for i in $(seq 1 "$n"); do
  printf '{"task_id":"rss-%d","task_type":"web","description":"contact %d","constraints":{"start_url":"http://127.0.0.1:%d/form","actions":[{"action":"fill","selector":"#name","text":"User %d"},{"action":"press","selector":"#name","key":"Enter"}],"expected_text":"Thank you, User %d."}}\n' "$i" "$i" "$dport" "$i" "$i"
done | "$BIN/adpctl" submit - >/dev/null 2>&1
OUTPUT_DIR=$work/out METRICS_ADDR=127.0.0.1:$mport MAX_CONCURRENT=4 WEB_ALLOW_HOSTS=127.0.0.1:$dport LOG_LEVEL=warn \
  "$BIN/web-runtime" 2>"$work/web.log" & rt=$!; pids+=($rt)

# rss_tree PID: memory in KiB of PID and all its descendants, as PSS (shared
# pages divided among the processes sharing them: Chromium's processes share
# most of their pages, and summing their RSS would count those many times).
rss_tree() {
  local all=$1 frontier=$1 next
  while [ -n "$frontier" ]; do
    next=$(for p in $frontier; do cat /proc/$p/task/*/children 2>/dev/null; done | tr ' ' '\n' | grep -v '^$' || true)
    all="$all $next"; frontier=$next
  done
  for p in $all; do awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null || true; done | awk '{s+=$1} END{print s+0}'
}
peak=0; start=$(date +%s.%N)
while :; do
  kill -0 "$rt" 2>/dev/null || die "web-runtime exited: $(tail -5 "$work/web.log")"
  r=$(rss_tree "$rt"); if [ "$r" -gt "$peak" ]; then peak=$r; fi
  done_n=$(ls "$work/out/trajectories" 2>/dev/null | grep -c '\.json$' || true)
  [ "$done_n" -ge "$until" ] && break
  sleep 0.5
done
el=$(echo "$(date +%s.%N) - $start" | bc -l)
ok=$(cat "$work"/out/trajectories/*.json | jq -s 'map(select(.success)) | length')
done_n=$(ls "$work/out/trajectories" | grep -c '\.json$')
printf '%d queued: peak memory %d MiB PSS (runtime + Chromium) over the first %d tasks, %.1f tasks/s, %d/%d succeeded\n' \
  "$n" $((peak / 1024)) "$done_n" "$(echo "$done_n / $el" | bc -l)" "$ok" "$done_n"
