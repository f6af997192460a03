#!/usr/bin/env bash
# bench.sh: the benchmarks of the README's Figures section, on this machine,
# each comparison measured in one run. Prints a summary at the end.
#   ADP_BENCH_TASKS   ingest size (default 1000000)
#   ADP_BENCH_ONLY    run only these: ingest,jail,sandbox-e2e,humaneval,web,load
#   ADP_BENCH_ROUNDS  alternating rounds of the end-to-end and web comparisons
#                     (default 3 and 5)
#   ADP_BENCH_WEB_TASKS  form tasks on each side of the web comparison (200)
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/bootstrap.sh" --test
ensure_built
only=${ADP_BENCH_ONLY:-ingest,jail,sandbox-e2e,humaneval,web,load}
want() { [[ ",$only," == *",$1,"* ]]; }
results=$(mktemp)
work=$(mktemp -d); trap 'rm -rf "$work" "$results"' EXIT
say() { echo "$*" | tee -a "$results"; }

if want ingest; then
  log "ingest: ${ADP_BENCH_TASKS:-1000000} tasks vs redis-benchmark -P 64 vs a naive loop"
  (cd "$ROOT" && go test -run '^$' -bench Ingest -benchtime 1x -timeout 30m ./internal/dispatch) | tee "$work/ingest.txt" >&2
  say "ingest: $(grep -o 'ingest of .*' "$work/ingest.txt")"
fi

if want jail; then
  log "jail: print(\"hello\") through the jail vs bare python3"
  (cd "$ROOT" && go test -run '^$' -bench 'Hello' -benchtime 200x -count 1 ./internal/sandbox) | tee "$work/jail.txt" >&2
  say "jail: $(grep -E 'Benchmark' "$work/jail.txt" | awk '{print $1, $3, $4}' | tr '\n' ';')"
fi

# compare NAME N JSONL PROGS WANT_OK: alternates bare runs of the programs in
# PROGS (xargs -P nproc, python3 -I -S) with pipeline runs of JSONL (adpctl up,
# a new output directory each round: deleting the last round's files just
# before a run makes ext4 skip over their recently freed inodes), checks that
# WANT_OK tasks succeeded each time, and reports the medians and their ratio.
compare() {
  local name=$1 n=$2 jsonl=$3 progs=$4 want_ok=$5 par rounds r start ok bare el
  par=$(nproc)
  rounds=${ADP_BENCH_ROUNDS:-3}
  : > "$work/$name-bare.txt"; : > "$work/$name-pipe.txt"
  for r in $(seq 1 "$rounds"); do
    start=$(date +%s.%N)
    ls "$progs"/*.py | xargs -P "$par" -n 1 /usr/bin/python3 -I -S > /dev/null 2>&1 || true
    echo "$(date +%s.%N) - $start" | bc -l >> "$work/$name-bare.txt"
    "$BIN/adpctl" up --tasks "$jsonl" --output "$work/$name-out-$r" --demo-addr "" --json 2>/dev/null > "$work/$name.json"
    ok=$(jq .stats.succeeded "$work/$name.json")
    [ "$ok" = "$want_ok" ] || die "$name: $ok of $n tasks succeeded, want $want_ok"
    jq .elapsed_seconds "$work/$name.json" >> "$work/$name-pipe.txt"
    log "$name round $r: bare $(tail -1 "$work/$name-bare.txt")s, pipeline $(tail -1 "$work/$name-pipe.txt")s"
  done
  median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
  bare=$(median "$work/$name-bare.txt"); el=$(median "$work/$name-pipe.txt")
  say "$name: $n tasks in ${el}s through the pipeline (median of $rounds, $want_ok succeeded as they must) vs ${bare}s bare with xargs -P $par: ratio $(echo "$bare / $el" | bc -l | cut -c1-4) of bare throughput"
}

if want sandbox-e2e; then
  n=500
  log "sandbox end to end: $n scripted code tasks (dispatcher -> Redis -> runtime -> files) vs the same programs bare"
  mkdir -p "$work/progs"
  for i in $(seq 1 $n); do
    prog="import math\nprint(sum(math.isqrt(k) for k in range($((i * 100)))))"
    printf '%b\n' "$prog" > "$work/progs/p$i.py"
    jq -cn --arg id "e2e-$i" --arg code "$(printf '%b' "$prog")" '{task_id:$id, task_type:"code", description:"bench", constraints:{code:$code}}'
  done > "$work/e2e.jsonl"
  compare "sandbox e2e" "$n" "$work/e2e.jsonl" "$work/progs" "$n"
fi

if want humaneval; then
  # HumanEval-like: 164 problems, each a function and a check(candidate)
  # of asserts in constraints.tests, once with the right function and once
  # with a broken one; bare runs the program with its tests appended.
  log "humaneval-like: 328 program + tests tasks (164 right, 164 broken) vs the same files bare"
  mkdir -p "$work/he"
  python3 "$ROOT/scripts/humaneval_like.py" "$work/he" > "$work/he.jsonl"
  compare "humaneval-like" 328 "$work/he.jsonl" "$work/he" 164
fi

if want web; then
  wn=${ADP_BENCH_WEB_TASKS:-200}
  log "web: $wn form tasks through the pool (MAX_CONCURRENT=4) vs a browser launched per task, in ${ADP_BENCH_ROUNDS:-5} alternating rounds; then the pool one at a time and launches 4 at once; RSS with 200 and 2,000 queued tasks"
  (cd "$ROOT" && go test -run '^$' -bench 'PoolVsLaunch$|PoolTask$|LaunchPerTaskParallel$' -benchtime "${wn}x" -count 1 -timeout 60m ./internal/browser) | tee "$work/web.txt" >&2
  metric() { awk -v b="$1" -v m="$2" '$1 ~ "^Benchmark"b"(-[0-9]+)?$" {for (i = 1; i < NF; i++) if ($(i+1) == m) print $i}' "$work/web.txt"; }
  pool=$(metric PoolVsLaunch pool-tasks/s); l1=$(metric PoolVsLaunch launch-tasks/s); ratio=$(metric PoolVsLaunch ratio)
  rmin=$(metric PoolVsLaunch ratio-min); rmax=$(metric PoolVsLaunch ratio-max)
  seq=$(metric PoolTask tasks/s); l4=$(metric LaunchPerTaskParallel tasks/s)
  say "web: pool at MAX_CONCURRENT=4 $pool tasks/s vs a browser launched per task $l1 tasks/s one at a time: ratio ${ratio}x over alternating rounds (single rounds ${rmin}x to ${rmax}x); the pool one at a time $seq tasks/s; launches 4 at once $l4 tasks/s, $(echo "$pool / $l4" | bc -l | cut -c1-4)x"
  if [ -x "$ROOT/scripts/web_rss.sh" ]; then
    for q in 200 2000; do say "web rss: $("$ROOT/scripts/web_rss.sh" "$q")"; done
  fi
fi

if want load; then
  log "load: 1,000 mixed tasks through the local pipeline"
  "$ROOT/scripts/load_test.sh" --local 1000 10 | tee "$work/load.txt" >&2
  say "$(tail -1 "$work/load.txt")"
fi

echo; echo "== figures =="; cat "$results"
