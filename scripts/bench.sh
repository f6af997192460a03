#!/usr/bin/env bash
# bench.sh: the benchmarks of docs/benchmarks.md, on this machine,
# each comparison measured in one run. Prints a summary at the end.
#   ADP_BENCH_TASKS   ingest size (default 1000000)
#   ADP_BENCH_ONLY    run only these: ingest,jail,sandbox-e2e,humaneval,workspace,
#                     workspace-image,workspace-e2e,web,load,images
#   ADP_BENCH_ROUNDS  alternating rounds of the end-to-end and web comparisons
#                     (default 3 and 5)
#   ADP_BENCH_WEB_TASKS  form tasks on each side of the web comparison (200)
#   ADP_BENCH_E2E_TASKS  scripted code tasks of the end-to-end comparison (500)
#   ADP_BENCH_WS_TASKS   workspace tasks of the workspace end-to-end comparison (200)
#   ADP_BENCH_BACKENDS   jails of the end-to-end comparisons (default: those
#                     installed of "nsjail bwrap")
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/bootstrap.sh" --test
ensure_built
only=${ADP_BENCH_ONLY:-ingest,jail,sandbox-e2e,humaneval,workspace,workspace-image,workspace-e2e,web,load,images}
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

# The jails of the end-to-end comparisons: every backend installed, each
# through the whole pipeline (SANDBOX_BACKEND), unless ADP_BENCH_BACKENDS
# names some.
backends=${ADP_BENCH_BACKENDS:-}
if [ -z "$backends" ]; then
  for b in nsjail bwrap; do command -v "$b" >/dev/null && backends="$backends $b"; done
fi

# cpu_run FILE CMD...: runs CMD in a cgroup of its own where this root
# process may make one (cgroup v1 cpuacct or v2), and appends the CPU
# seconds of all its processes (jails included; not the kernel's worker
# threads) to FILE. On a shared machine the ratio of CPU seconds is the
# steadier figure: what the two cores could do if the comparison had them
# to itself.
cpu_run() {
  local file=$1; shift
  local v1=/sys/fs/cgroup/cpuacct v2=/sys/fs/cgroup cg
  if [ -w "$v1" ] && [ -f "$v1/cpuacct.usage" ]; then cg=$v1/adp-bench-$$-$RANDOM
  elif [ -f "$v2/cgroup.controllers" ] && [ -w "$v2" ]; then cg=$v2/adp-bench-$$-$RANDOM
  else "$@"; return; fi
  mkdir "$cg" || { "$@"; return; }
  local rc=0
  (echo "$BASHPID" > "$cg/cgroup.procs" && exec "$@") || rc=$?
  if [ -f "$cg/cpuacct.usage" ]; then echo "$(cat "$cg/cpuacct.usage") / 1000000000" | bc -l >> "$file"
  else awk '$1 == "usage_usec" {print $2 / 1000000}' "$cg/cpu.stat" >> "$file"; fi
  rmdir "$cg" 2>/dev/null || true
  return $rc
}

median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# compare NAME N JSONL PROGS WANT_OK BARE [GLOB]: alternates bare runs of the
# programs in PROGS matching GLOB (default *.py; xargs -P nproc, the command
# BARE) with a pipeline run of JSONL per
# backend (adpctl up, a new output directory each run: deleting the last
# run's files just before a run makes ext4 skip over their recently freed
# inodes), checks that WANT_OK tasks succeeded each time, and reports the
# medians of wall and CPU time and their ratios.
compare() {
  local name=$1 n=$2 jsonl=$3 progs=$4 want_ok=$5 bare_cmd=$6 glob=${7:-*.py} par rounds r b start ok line bare el cpu bc_ pc
  [ -n "$backends" ] || die "$name: neither nsjail nor bwrap is installed"
  par=$(nproc)
  rounds=${ADP_BENCH_ROUNDS:-3}
  : > "$work/$name-bare.txt"; : > "$work/$name-bare.cpu"
  for b in $backends; do : > "$work/$name-pipe-$b.txt"; : > "$work/$name-pipe-$b.cpu"; done
  for r in $(seq 1 "$rounds"); do
    start=$(date +%s.%N)
    cpu_run "$work/$name-bare.cpu" sh -c "ls $progs/$glob | xargs -P $par -n 1 $bare_cmd > /dev/null 2>&1; true"
    echo "$(date +%s.%N) - $start" | bc -l >> "$work/$name-bare.txt"
    line="$name round $r: bare $(tail -1 "$work/$name-bare.txt")s"
    for b in $backends; do
      SANDBOX_BACKEND=$b NSJAIL_CONFIG=${NSJAIL_CONFIG:-$ROOT/configs/nsjail/python.cfg} \
        cpu_run "$work/$name-pipe-$b.cpu" "$BIN/adpctl" up --tasks "$jsonl" --output "$work/$name-out-$b-$r" --demo-addr "" --json 2>/dev/null > "$work/$name.json"
      ok=$(jq .stats.succeeded "$work/$name.json")
      [ "$ok" = "$want_ok" ] || die "$name ($b): $ok of $n tasks succeeded, want $want_ok"
      jq .elapsed_seconds "$work/$name.json" >> "$work/$name-pipe-$b.txt"
      line="$line, $b $(tail -1 "$work/$name-pipe-$b.txt")s"
    done
    log "$line"
  done
  bare=$(median "$work/$name-bare.txt")
  for b in $backends; do
    el=$(median "$work/$name-pipe-$b.txt")
    cpu=""
    if [ -s "$work/$name-bare.cpu" ] && [ -s "$work/$name-pipe-$b.cpu" ]; then
      bc_=$(median "$work/$name-bare.cpu"); pc=$(median "$work/$name-pipe-$b.cpu")
      cpu="; CPU $(printf %.2f "$pc") s vs $(printf %.2f "$bc_") s bare: ratio $(echo "$bc_ / $pc" | bc -l | cut -c1-4)"
    fi
    say "$name ($b): $n tasks in ${el}s through the pipeline (median of $rounds, $want_ok succeeded as they must) vs ${bare}s bare ($bare_cmd, xargs -P $par): ratio $(echo "$bare / $el" | bc -l | cut -c1-4) of bare throughput$cpu"
  done
}

if want sandbox-e2e; then
  n=${ADP_BENCH_E2E_TASKS:-500}
  log "sandbox end to end: $n scripted code tasks (dispatcher -> Redis -> runtime -> files) vs the same programs bare, jails:$backends"
  mkdir -p "$work/progs"
  for i in $(seq 1 $n); do
    prog="import math\nprint(sum(math.isqrt(k) for k in range($((i * 100)))))"
    printf '%b\n' "$prog" > "$work/progs/p$i.py"
    jq -cn --arg id "e2e-$i" --arg code "$(printf '%b' "$prog")" '{task_id:$id, task_type:"code", description:"bench", constraints:{code:$code}}'
  done > "$work/e2e.jsonl"
  compare "sandbox e2e" "$n" "$work/e2e.jsonl" "$work/progs" "$n" /usr/bin/python3
fi

if want humaneval; then
  # HumanEval-like: 164 problems, each a function and a check(candidate)
  # of asserts in constraints.tests, once with the right function and once
  # with a broken one; bare runs the program with its tests appended.
  log "humaneval-like: 328 program + tests tasks (164 right, 164 broken) vs the same files bare, jails:$backends"
  mkdir -p "$work/he"
  python3 "$ROOT/scripts/humaneval_like.py" "$work/he" > "$work/he.jsonl"
  compare "humaneval-like" 328 "$work/he.jsonl" "$work/he" 164 "/usr/bin/python3 -I -S"
fi

if want workspace; then
  # One bash step in a live workspace (a jail run that restores and saves
  # the shell's state) against a bare `bash -c` of the same command,
  # alternating, per backend: wall medians and CPU per step.
  log "workspace: one bash step in a live workspace vs a bare bash -c, per backend"
  (cd "$ROOT" && go test -run '^$' -bench 'BashStep' -benchtime 200x -count 1 ./internal/workspace) | tee "$work/ws.txt" >&2
  wsm() { awk -v b="$1" -v m="$2" '$1 ~ "^BenchmarkBashStep/"b"(-[0-9]+)?$" {for (i = 1; i < NF; i++) if ($(i+1) == m) print $i}' "$work/ws.txt"; }
  for b in nsjail bwrap; do
    [ -n "$(wsm $b step-median-ns)" ] || continue
    say "workspace step ($b): $(echo "$(wsm $b step-median-ns) / 1000000" | bc -l | cut -c1-5) ms median vs $(echo "$(wsm $b bare-median-ns) / 1000000" | bc -l | cut -c1-5) ms for a bare bash -c (ratio $(wsm $b step/bare)); CPU $(echo "$(wsm $b step-cpu-ns) / 1000000" | bc -l | cut -c1-5) ms vs $(echo "$(wsm $b bare-cpu-ns) / 1000000" | bc -l | cut -c1-5) ms per step (ratio $(wsm $b step/bare-cpu))"
  done
fi

if want workspace-image; then
  # Workspaces in an image environment (issue 27): k = 8 attempts of a task
  # whose setup takes seconds, with the setup once and the attempts
  # overlays over its snapshot vs the setup in every attempt; and the start
  # of a workspace attempt (open, a first step, close) on each root.
  log "workspace-image: k=8 attempts, setup once (snapshot) vs per attempt; a workspace attempt's start per root"
  (cd "$ROOT" && go test -run '^$' -bench 'PreparedAttempts' -benchtime 2x -count 1 ./internal/workspace &&
    go test -run '^$' -bench 'WorkspaceStart' -benchtime 30x -count 1 ./internal/workspace) | tee "$work/wsi.txt" >&2
  wsi() { awk -v b="$1" -v m="$2" '$1 ~ "^Benchmark"b"(-[0-9]+)?$" {for (i = 1; i < NF; i++) if ($(i+1) == m) print $i}' "$work/wsi.txt"; }
  for b in nsjail bwrap; do
    [ -n "$(wsi PreparedAttempts/$b snapshot-wall-s)" ] || continue
    say "k=8 attempts ($b): $(wsi PreparedAttempts/$b snapshot-wall-s) s with the setup once ($(wsi PreparedAttempts/$b setup-wall-s) s of it the setup) vs $(wsi PreparedAttempts/$b per-attempt-wall-s) s with the setup per attempt (ratio $(wsi PreparedAttempts/$b per-attempt/snapshot)); CPU $(wsi PreparedAttempts/$b snapshot-cpu-s) s vs $(wsi PreparedAttempts/$b per-attempt-cpu-s) s"
    say "workspace attempt start ($b, median): host root $(wsi WorkspaceStart/$b host-root-ms) ms, image root $(wsi WorkspaceStart/$b image-root-ms) ms, writable image root $(wsi WorkspaceStart/$b image-writable-root-ms) ms, from a snapshot $(wsi WorkspaceStart/$b from-snapshot-ms) ms"
  done
fi

if want workspace-e2e; then
  # Workspace tasks through the whole pipeline: each seeds a script as a
  # file, runs it with one replayed bash action and checks the output with
  # test_command (a workspace opened and closed, two steps and the diff per
  # task), against running the same scripts with bash bare.
  n=${ADP_BENCH_WS_TASKS:-200}
  log "workspace end to end: $n workspace tasks (files, a bash action, test_command) vs the same scripts bare, jails:$backends"
  mkdir -p "$work/wsprogs"
  for i in $(seq 1 $n); do
    prog="s=0; for k in \$(seq 1 $((i * 10))); do s=\$((s + k)); done; echo \$s"
    printf '%b\n' "$prog" > "$work/wsprogs/p$i.sh"
    jq -cn --arg id "ws-$i" --rawfile prog "$work/wsprogs/p$i.sh" '{task_id:$id, task_type:"code", description:"bench",
      constraints:{files:{"prog.sh":$prog}, actions:[{action:"bash", command:"bash prog.sh > out.txt"}, {action:"finish"}], test_command:"test -s out.txt"}}'
  done > "$work/ws.jsonl"
  compare "workspace e2e" "$n" "$work/ws.jsonl" "$work/wsprogs" "$n" /bin/bash '*.sh'
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

if want images; then
  # Task images (docs/environments.md): a Harbor task image built by the
  # host's engine (podman or docker; skipped without one): first use,
  # attempt start vs `ENGINE run --rm IMAGE /bin/true`, 100 task images on
  # one base vs separate images.
  log "images: a Harbor task image (debian:bookworm-slim + COPY) through the store vs the engine"
  (cd "$ROOT" && go test -run '^$' -bench 'HarborImages' -benchtime 30x -count 1 -timeout 60m ./internal/harbor) | tee "$work/images.txt" >&2
  im() { awk -v b="$1" -v m="$2" '$1 ~ "^BenchmarkHarborImages/"b"(-[0-9]+)?$" {for (i = 1; i < NF; i++) if ($(i+1) == m) print $i}' "$work/images.txt"; }
  if [ -n "$(im start/engine median-ms)" ]; then
    say "images start: jail on the image root running /bin/true: nsjail $(im start/nsjail median-ms) ms, bwrap $(im start/bwrap median-ms) ms (medians) vs the engine's run --rm $(im start/engine median-ms) ms: $(im start/engine x-nsjail)x (nsjail), $(im start/engine x-bwrap)x (bwrap) faster"
    say "images first use: import and unpack $(im first-use s) s; $(im first-use MB-on-disk) MB on disk (its save archive $(im first-use MB-archive) MB)"
    say "images 100 on one base: store $(im task-images MB-store) MB vs $(im task-images MB-separate-saves) MB as separate save archives ($(im task-images x-smaller-than-saves)x smaller), $(im task-images MB-separate-unpacked) MB unpacked separately; $(im task-images s/image) s per image to import"
  else
    say "images: skipped (no container engine or no local debian:bookworm-slim)"
  fi
fi

echo; echo "== figures =="; cat "$results"
