#!/usr/bin/env bash
# compose_test.sh: the stack built and run on a Docker-compatible engine, end
# to end (`make test-compose`). Any engine the docker CLI reaches works
# (DOCKER_HOST is honoured; BuildKit is not needed: DOCKER_BUILDKIT=0 is
# fine). Grafana and vLLM are not started. Each step has a bounded time and
# says what it waited for when it fails; on exit (pass, fail or interrupt)
# the test's project is taken down with its volumes.
#
# Steps (see docs/deployment.md for the figures of a run):
#   build      the images (docker compose build), their sizes (docker image
#              inspect); an nsjail variant too when an nsjail binary is at
#              hand (ADP_NSJAIL_BINARY, default /usr/local/bin/nsjail)
#   jails      the sandbox package's conformance cases inside the sandbox
#              image, under the privileges the compose file grants, for each
#              jail built; the nsjail variant also as a live replica
#   up         scripts/deploy.sh full: every service healthy; the shipped
#              tasks.jsonl: every shipped task succeeds (web tasks on demo-site)
#   adpctl     adpctl status and adpctl stats from the host, against the
#              compose Redis and the output volume
#   scale      --scale sandbox-runtime=3 --scale web-runtime=2: Prometheus
#              lists every replica up; a batch of mixed tasks appended to the
#              mounted task file is spread over every replica
#   kill       one sandbox replica killed (SIGKILL) mid-batch: every task
#              still ends with exactly one trajectory or one dead letter
#   runbook    scripts/smoke_test.sh, scripts/integration_test.sh and
#              scripts/load_test.sh in compose mode, at the scale above
#   resume     docker compose down (volumes kept), up again: nothing redone,
#              new lines picked up; then down -v leaves nothing behind
#   minimal    scripts/deploy.sh minimal (docker-compose.minimal.yml) on its
#              own, the smoke test against it, down -v, nothing left
#   harbor     docs/deployment.md's Harbor example: examples/harbor-images
#              built by the host's engine (adpctl import harbor --images),
#              the minimal stack given the dataset directory: the oracle
#              succeeds on every task, a no-op agent on none
#
# Environment:
#   SANDBOX_JAIL         jail of the stack's sandbox image (default bwrap: it
#                        builds from Debian packages alone; the stack then runs
#                        with docker-compose.bwrap.yml; SANDBOX_PROC_OPT as there)
#   ADP_NSJAIL_BINARY    a prebuilt nsjail for the nsjail variant (default
#                        /usr/local/bin/nsjail when present; "none" skips it)
#   ADP_CT_BATCH         tasks in the scale step's batch (default 300)
#   ADP_CT_LOAD_N        tasks of the load test (default 60)
#   ADP_CT_BUILD_TIMEOUT seconds for building the images (default 2400)
# The whole script is one compound command: bash reads it entirely before
# running it, so that editing the file cannot derail a run in progress.
{
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

: "${SANDBOX_JAIL:=bwrap}"
export SANDBOX_JAIL
batch_n=${ADP_CT_BATCH:-300}
load_n=${ADP_CT_LOAD_N:-60}
build_timeout=${ADP_CT_BUILD_TIMEOUT:-2400}
nsjail_src=${ADP_NSJAIL_BINARY:-/usr/local/bin/nsjail}

# The stack's compose files: with bwrap, the override that builds and runs it
# (and grants it a writable /proc/sys, spelled for the engine: podman takes
# unmask=, Docker systempaths=).
if [ "$SANDBOX_JAIL" = bwrap ]; then
  export COMPOSE_FILE=docker-compose.yml:docker-compose.bwrap.yml
  if [ -z "${SANDBOX_PROC_OPT:-}" ] && docker version --format '{{range .Server.Components}}{{.Name}} {{end}}' 2>/dev/null | grep -qi podman; then
    export SANDBOX_PROC_OPT=unmask=/proc/sys
  fi
else
  export COMPOSE_FILE=docker-compose.yml
fi
# A project of its own: its containers, network and volumes are this run's
# alone, and nothing of a user's `adp` project is touched.
export COMPOSE_PROJECT_NAME=adpct$$
project=$COMPOSE_PROJECT_NAME
# Free host ports for what the stack publishes.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port); DISPATCHER_PORT=$(free_port); PROMETHEUS_PORT=$(free_port); GRAFANA_PORT=$(free_port)
export REDIS_PORT DISPATCHER_PORT PROMETHEUS_PORT GRAFANA_PORT
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
# The full stack but Grafana (no image here, and not what is tested) and vLLM.
services="redis dispatcher sandbox-runtime web-runtime demo-site prometheus"
export ADP_COMPOSE_SERVICES=$services
# Reclaims of a killed replica's entries come after LEASE_TTL.
export LEASE_TTL=${LEASE_TTL:-15s}
# Two jails per sandbox replica whatever the machine's size: the kill step
# needs its batch to last (150 one-second tasks on 3 replicas: ~25 s).
export SANDBOX_CONCURRENCY=${SANDBOX_CONCURRENCY:-2}

work=$(mktemp -d /tmp/adp-compose-test.XXXXXX)
chmod 755 "$work"
# The mounted task file: a copy of the shipped one, appended to by the test.
export ADP_TASKS=$work/tasks.jsonl
cp "$ROOT/tasks.jsonl" "$ADP_TASKS"
chmod 644 "$ADP_TASKS"
created_prebuilt=false
nsjail_ctr=

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  log "cleanup: taking project $project down with its volumes"
  [ -n "$nsjail_ctr" ] && timeout 60 docker rm -f "$nsjail_ctr" >/dev/null 2>&1
  for f in docker-compose.yml docker-compose.minimal.yml; do
    timeout 180 docker compose -f "$f" down -v --remove-orphans --timeout 5 >/dev/null 2>&1
  done
  # Whatever down missed (a container created by `compose run`, a volume).
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project" 2>/dev/null)
  [ -n "$ids" ] && timeout 60 docker rm -f $ids >/dev/null 2>&1
  ids=$(docker volume ls -q --filter "label=com.docker.compose.project=$project" 2>/dev/null)
  [ -n "$ids" ] && timeout 60 docker volume rm -f $ids >/dev/null 2>&1
  ids=$(docker network ls -q --filter "label=com.docker.compose.project=$project" 2>/dev/null)
  [ -n "$ids" ] && timeout 60 docker network rm $ids >/dev/null 2>&1
  $created_prebuilt && rm -rf "$ROOT/prebuilt"
  rm -rf "$work"
  summary
  if [ "$rc" -eq 0 ]; then echo "compose test: passed"; else echo "compose test: FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Steps and their durations, printed at the end.
steps=(); step_name=; step_start=0; t0=$SECONDS
step() { # name: ends the current step, starts the next
  step_end
  step_name=$1; step_start=$SECONDS
  log "== step $step_name"
}
step_end() {
  [ -n "$step_name" ] && steps+=("$(printf '%-9s %4ds' "$step_name" $((SECONDS - step_start)))")
  step_name=
}
sizes=()
summary() {
  step_end
  [ ${#steps[@]} -gt 0 ] || return 0
  echo "compose test steps (seconds):"
  printf '  %s\n' "${steps[@]}"
  printf '  %-9s %4ds\n' total $((SECONDS - t0))
  if [ ${#sizes[@]} -gt 0 ]; then
    echo "image sizes (docker image inspect .Size):"
    printf '  %s\n' "${sizes[@]}"
  fi
}

# fail prints what the stack looked like, then exits non-zero.
fail() {
  log "FAIL [$step_name]: $*"
  {
    echo "--- docker compose ps"
    timeout 30 docker compose ps -a 2>&1
    for s in dispatcher sandbox-runtime web-runtime demo-site; do
      echo "--- logs $s (last 15 lines)"
      timeout 30 docker compose logs --no-color --tail 15 "$s" 2>&1
    done
  } | sed 's/^/    /' >&2
  exit 1
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 2 s until it
# succeeds; fails with WHAT after SECONDS.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || fail "$what: not within ${secs}s"
    sleep 2
  done
}

# ---------------------------------------------------------------------------
step preflight
for c in docker jq curl python3 timeout; do command -v "$c" >/dev/null || die "$c not found"; done
timeout 30 docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || \
  die "no container engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); on these machines: ../shared/container-env/setup.sh, then export DOCKER_HOST=unix:///run/podman/podman.sock DOCKER_BUILDKIT=0"
timeout 30 docker compose version >/dev/null 2>&1 || die "the docker compose v2 plugin is missing"
ensure_built
log "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(docker compose version --short 2>/dev/null); project $project; jail $SANDBOX_JAIL; redis 127.0.0.1:$REDIS_PORT"

# ---------------------------------------------------------------------------
step build
# One image at a time: on a small machine parallel builds only compete for
# the CPU, and the later ones reuse the Go build cache of the first.
build_end=$((SECONDS + build_timeout))
for svc in dispatcher demo-site sandbox-runtime web-runtime; do
  left=$((build_end - SECONDS)); [ "$left" -gt 0 ] || fail "building the images took over ${build_timeout}s"
  timeout "$left" docker compose build "$svc" >> "$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; fail "docker compose build $svc failed or ran out of time (log above)"; }
done
nsjail_image=
if [ "$nsjail_src" != none ] && [ -x "$nsjail_src" ]; then
  # The nsjail variant from a prebuilt binary (no GitHub here), through the
  # same compose build arguments a user sets.
  if [ ! -e "$ROOT/prebuilt/nsjail" ]; then
    mkdir -p "$ROOT/prebuilt"; created_prebuilt=true
    cp "$nsjail_src" "$ROOT/prebuilt/nsjail"
  fi
  COMPOSE_FILE=docker-compose.yml SANDBOX_JAIL=nsjail NSJAIL_BINARY=prebuilt/nsjail ADP_VERSION=ct-nsjail \
    timeout "$build_timeout" docker compose build sandbox-runtime >> "$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; fail "building the nsjail sandbox image failed"; }
  nsjail_image=adp/sandbox-runtime:ct-nsjail
else
  log "no nsjail binary at $nsjail_src: the nsjail image is not built (set ADP_NSJAIL_BINARY)"
fi
mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f", $1 / 1e6}'; }
# The images' own layers, above debian:bookworm-slim (the sandbox and web
# images' base): what the Dockerfiles add whatever that base weighs. A local
# stand-in base (debootstrap) is bigger than Docker Hub's.
base_mb=$(mb debian:bookworm-slim)
hub_base_mb=74.8 # docker.io/library/debian:bookworm-slim, linux/amd64, uncompressed
above() { awk -v t="$(mb "$1")" -v b="$base_mb" 'BEGIN{printf "%.1f", t - b}'; }
sizes+=("$(printf '%-44s %7s MB' "debian:bookworm-slim (the base here)" "$base_mb")")
for img in adp/dispatcher:dev adp/demo-site:dev adp/sandbox-runtime:dev $nsjail_image adp/web-runtime:dev; do
  label=$img
  [ "$img" = adp/sandbox-runtime:dev ] && label="$img ($SANDBOX_JAIL)"
  [ "$img" = "$nsjail_image" ] && label="$img (nsjail)"
  case $img in
    adp/dispatcher:*|adp/demo-site:*) sizes+=("$(printf '%-44s %7s MB' "$label" "$(mb "$img")")") ;;
    *) sizes+=("$(printf '%-44s %7s MB  (%s MB above the base; %s MB on Docker Hub'"'"'s %s MB base)' "$label" "$(mb "$img")" "$(above "$img")" \
         "$(awk -v a="$(above "$img")" -v h=$hub_base_mb 'BEGIN{printf "%.1f", a + h}')" "$hub_base_mb")") ;;
  esac
done
printf '  %s\n' "${sizes[@]}" >&2
# The size targets (docs/deployment.md), on Docker Hub's base: the web image within
# 600 MB, the sandbox image with nsjail within 225 MB: 150 MB for the
# single-program sandbox, plus the workspace tools its jails must provide
# (git with the perl it depends on, patch: about 75 MB).
within() { awk -v a="$(above "$1")" -v h=$hub_base_mb -v max="$2" 'BEGIN{exit !(a + h <= max)}'; }
within adp/web-runtime:dev 600 || fail "adp/web-runtime: $(above adp/web-runtime:dev) MB above its base, over the 600 MB target on a $hub_base_mb MB base"
if [ -n "$nsjail_image" ]; then
  within "$nsjail_image" 225 || fail "the nsjail sandbox image: $(above "$nsjail_image") MB above its base, over the 225 MB target on a $hub_base_mb MB base"
fi

# ---------------------------------------------------------------------------
step jails
# The conformance cases of internal/sandbox, compiled here and run inside
# the image by `docker compose run`, which applies the service's cap_add,
# security_opt and pids_limit: what the jail gets in the stack.
CGO_ENABLED=0 go test -c -o "$work/sandbox.test" ./internal/sandbox/ || fail "go test -c ./internal/sandbox"
conformance_run() { # jail image-tag compose-files output: 0 when every case passed
  COMPOSE_FILE=$3 SANDBOX_JAIL=$1 ADP_VERSION=$2 timeout 600 docker compose run --rm --no-deps -T \
      -v "$work/sandbox.test:/usr/local/bin/sandbox.test:ro" --entrypoint /usr/local/bin/sandbox.test \
      sandbox-runtime -test.count=1 -test.v \
      -test.run '^(TestConformance|TestConformanceConcurrent|TestProcessLimitPerJail|TestContextCancel|TestCheck)$' \
      > "$4" 2>&1 </dev/null || return 1
  # The exit status of `compose run` is not enough on every engine: the
  # verdict is read from the output too.
  grep -q -- "--- PASS: TestConformance/host-root/$1 " "$4" && ! grep -q -- '--- FAIL' "$4" && ! grep -qx FAIL "$4"
}
conformance() { # jail image-tag compose-files
  local out=$work/conformance-$1.txt
  if ! conformance_run "$@" "$out"; then
    # One more attempt, loudly: the suite saturates the machine on purpose
    # (fork bombs, floods) and a shared CI machine may be loaded already.
    log "conformance under $1 failed in the container; its failures, then a second attempt:"
    # (no match is no error here: the run may have failed before any case)
    { grep -B3 -A25 -- '--- FAIL' "$out" || true; } | head -80 >&2; tail -5 "$out" >&2 || true
    if ! conformance_run "$@" "$out"; then
      { grep -B3 -A25 -- '--- FAIL' "$out" || true; } | head -80 >&2; tail -5 "$out" >&2 || true
      fail "conformance cases under $1 failed (twice) or did not run inside the container"
    fi
  fi
  log "conformance under $1 in the container: $(grep -c -- '--- PASS: TestConformance/host-root/'"$1"'/' "$out") cases passed on the host's root, $(grep -c -- '--- PASS: TestConformance/image-root/'"$1"'/' "$out") on an image's"
}
conformance "$SANDBOX_JAIL" dev "$COMPOSE_FILE"
[ -n "$nsjail_image" ] && conformance nsjail ct-nsjail docker-compose.yml

# ---------------------------------------------------------------------------
# Helpers on the running stack.
containers() { docker compose ps -q "$@" 2>/dev/null; }
running() { docker compose ps -q --status running "$@" 2>/dev/null | wc -l; }
# all_healthy N: N containers of the project's running services, each healthy
# (or running, where the image has no healthcheck).
all_healthy() {
  local want=$1 ids n=0 bad=0
  ids=$(containers) || return 1
  [ -n "$ids" ] || return 1
  while read -r state health; do
    n=$((n + 1))
    if [ "$state" != running ] || { [ "$health" != healthy ] && [ "$health" != none ]; }; then bad=$((bad + 1)); fi
  done < <(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids 2>/dev/null)
  [ "$n" -eq "$want" ] && [ "$bad" -eq 0 ]
}
# fetch_output copies the output volume to $work/out (from the dispatcher,
# which mounts it and is never scaled or killed).
fetch_output() {
  rm -rf "$work/out"; mkdir -p "$work/out"
  timeout 120 docker compose cp dispatcher:/data/output/. "$work/out" >/dev/null 2>&1
}
# have_all FILE: every task id of FILE (one per line) has a trajectory.
have_all() {
  fetch_output || return 1
  local missing
  missing=$(while read -r id; do [ -f "$work/out/trajectories/$id.json" ] || echo "$id"; done < "$1" | wc -l)
  log "  waiting: $missing of $(wc -l < "$1") without a trajectory"
  [ "$missing" -eq 0 ]
}
# count_done FILE: how many task ids of FILE have a trajectory in $work/out.
count_done() { while read -r id; do if [ -f "$work/out/trajectories/$id.json" ]; then echo; fi; done < "$1" | wc -l; }
prom() { curl -fsS --max-time 10 "http://127.0.0.1:$PROMETHEUS_PORT$1"; }
targets_up() { # job count
  local n
  n=$(prom /api/v1/targets?state=active | jq --arg j "$1" '[.data.activeTargets[] | select(.labels.job == $j and .health == "up")] | length') || return 1
  [ "$n" -eq "$2" ]
}

# ---------------------------------------------------------------------------
step up
timeout "$build_timeout" scripts/deploy.sh full > "$work/deploy.log" 2>&1 || { tail -30 "$work/deploy.log" >&2; fail "scripts/deploy.sh full"; }
# 2 sandbox replicas (deploy.replicas) + 1 web + redis, dispatcher, demo-site, prometheus.
wait_for 300 "every service of the stack healthy (7 containers)" all_healthy 7
jq -r .task_id "$ROOT/tasks.jsonl" > "$work/shipped.ids"
shipped=$(wc -l < "$work/shipped.ids")
wait_for 300 "a trajectory for each of the $shipped shipped tasks" have_all "$work/shipped.ids"
ok=$(while read -r id; do jq -r .success "$work/out/trajectories/$id.json"; done < "$work/shipped.ids" | grep -c '^true$' || true)
[ "$ok" -eq "$shipped" ] || {
  while read -r id; do jq -c '{task_id, success, error_type, error_message}' "$work/out/trajectories/$id.json"; done < "$work/shipped.ids" >&2
  fail "shipped tasks.jsonl: $ok of $shipped succeeded under compose, want $shipped (as under make run)"
}
log "shipped tasks.jsonl: $ok of $shipped succeeded"
if [ -n "$nsjail_image" ]; then
  # The nsjail image as one more live replica: it must pass its healthcheck
  # (Redis reachable, the jail able to run Python) under the same privileges.
  nsjail_ctr=$(COMPOSE_FILE=docker-compose.yml SANDBOX_JAIL=nsjail ADP_VERSION=ct-nsjail timeout 120 docker compose run -d --no-deps sandbox-runtime) \
    || fail "starting the nsjail image as a replica"
  nsjail_healthy() { [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$nsjail_ctr" 2>/dev/null)" = healthy ]; }
  wait_for 120 "the nsjail sandbox replica healthy" nsjail_healthy
  log "nsjail replica healthy"
  timeout 60 docker rm -f "$nsjail_ctr" >/dev/null; nsjail_ctr=
fi

# ---------------------------------------------------------------------------
step adpctl
# The documented way (docs/deployment.md): adpctl on the host against the published Redis port
# (REDIS_URL), and on a copy of the output volume (docker compose cp).
"$BIN/adpctl" status > "$work/status.txt" 2>&1 || { cat "$work/status.txt" >&2; fail "adpctl status against the compose Redis"; }
"$BIN/adpctl" status --json > "$work/status.json" 2>&1 || fail "adpctl status --json"
jq -e . "$work/status.json" >/dev/null || fail "adpctl status --json is not JSON: $(head -c 300 "$work/status.json")"
jq -e '(.streams | map(.stream) | index("tasks:code")) != null and (.runtimes | length) >= 3' "$work/status.json" >/dev/null \
  || { cat "$work/status.txt" >&2; fail "adpctl status: want the tasks:code stream and the 3 runtime replicas"; }
timeout 120 docker compose cp sandbox-runtime:/data/output "$work/host-output" >/dev/null 2>&1 || fail "docker compose cp sandbox-runtime:/data/output"
(cd "$work/host-output/.." && "$BIN/adpctl" stats --dir host-output/trajectories --json) > "$work/stats.json" 2>&1 \
  || { cat "$work/stats.json" >&2; fail "adpctl stats on the copied volume"; }
"$BIN/adpctl" stats --dir "$work/host-output/trajectories" > "$work/stats.txt" 2>&1 || fail "adpctl stats"
jq -e --argjson n "$shipped" '.total == $n and .succeeded == $n' "$work/stats.json" >/dev/null || { cat "$work/stats.txt" >&2; fail "adpctl stats: want $shipped trajectories, $shipped succeeded"; }
log "adpctl status and stats work from the host"

# ---------------------------------------------------------------------------
step scale
timeout 600 docker compose up -d --scale sandbox-runtime=3 --scale web-runtime=2 $services > "$work/scale.log" 2>&1 \
  || { cat "$work/scale.log" >&2; fail "docker compose up --scale sandbox-runtime=3 --scale web-runtime=2"; }
wait_for 300 "3 sandbox and 2 web replicas healthy (9 containers)" all_healthy 9
wait_for 120 "Prometheus listing 3 sandbox-runtime targets up" targets_up sandbox-runtime 3
wait_for 60 "Prometheus listing 2 web-runtime targets up" targets_up web-runtime 2
# The scale may recreate the dispatcher too: its new address reaches
# Prometheus at the next DNS refresh (10 s), as the replicas' do.
wait_for 60 "Prometheus listing the dispatcher target up" targets_up dispatcher 1
log "Prometheus: every replica up (3 sandbox, 2 web, 1 dispatcher)"
run=ct$$
for i in $(seq 1 "$batch_n"); do
  case $((i % 3)) in
    # Every 30th web task also takes a screenshot per step: Chromium renders.
    0) shot=false; [ $((i % 30)) -eq 0 ] && shot=true
       printf '{"task_id":"%s-s-%d","task_type":"web","description":"Search for information about topic %d","constraints":{"start_url":"http://demo-site:8765/","expected_text":"ADP-%d","screenshot":%s},"timeout":180}\n' "$run" "$i" "$i" $((i * 7)) "$shot" ;;
    1) printf '{"task_id":"%s-s-%d","task_type":"code","description":"Calculate fibonacci(%d)","timeout":120}\n' "$run" "$i" $((i % 90)) ;;
    2) printf '{"task_id":"%s-s-%d","task_type":"code","description":"square","constraints":{"code":"print(%d * %d)","expected_output":"%d"},"timeout":120}\n' "$run" "$i" "$i" "$i" $((i * i)) ;;
  esac
done > "$work/batch.jsonl"
jq -r .task_id "$work/batch.jsonl" > "$work/batch.ids"
cat "$work/batch.jsonl" >> "$ADP_TASKS"
wait_for 1200 "a trajectory for each of the $batch_n tasks of the batch" have_all "$work/batch.ids"
while read -r id; do cat "$work/out/trajectories/$id.json"; echo; done < "$work/batch.ids" | jq -s '
  { failed: map(select(.success | not) | {task_id, error_type, error_message}),
    sandbox: map(select(.task_type != "web") | .runtime_id) | unique,
    web: map(select(.task_type == "web") | .runtime_id) | unique }' > "$work/spread.json"
[ "$(jq '.failed | length' "$work/spread.json")" -eq 0 ] || { jq -c '.failed[:10][]' "$work/spread.json" >&2; fail "$(jq '.failed | length' "$work/spread.json") tasks of the batch failed"; }
[ "$(jq '.sandbox | length' "$work/spread.json")" -eq 3 ] || fail "code tasks ran on $(jq -c .sandbox "$work/spread.json"), want 3 distinct sandbox runtime_ids"
[ "$(jq '.web | length' "$work/spread.json")" -eq 2 ] || fail "web tasks ran on $(jq -c .web "$work/spread.json"), want 2 distinct web runtime_ids"
shots=$(ls "$work/out/trajectories" | grep -c "^$run-s-.*\.png$" || true)
[ "$shots" -gt 0 ] || fail "no screenshot of the batch's screenshot tasks (Chromium did not render?)"
log "batch of $batch_n: all succeeded ($shots screenshots), spread over $(jq -c .sandbox "$work/spread.json") and $(jq -c .web "$work/spread.json")"

# ---------------------------------------------------------------------------
step kill
# Tasks that take a second each, so that many are in flight when a replica
# dies.
for i in $(seq 1 150); do
  printf '{"task_id":"%s-k-%d","task_type":"code","description":"slow square","constraints":{"code":"import time\\ntime.sleep(1)\\nprint(%d * %d)","expected_output":"%d"},"timeout":120}\n' "$run" "$i" "$i" "$i" $((i * i))
done > "$work/kill.jsonl"
jq -r .task_id "$work/kill.jsonl" > "$work/kill.ids"
cat "$work/kill.jsonl" >> "$ADP_TASKS"
some_done() {
  fetch_output || return 1
  local n
  n=$(count_done "$work/kill.ids")
  [ "$n" -ge 10 ] && [ "$n" -lt 100 ]
}
wait_for 300 "10 tasks of the kill batch done (and most still to do)" some_done
victim=$(containers sandbox-runtime | sed -n 2p)
[ -n "$victim" ] || fail "no second sandbox replica to kill"
victim_name=$(docker inspect -f '{{.Name}}' "$victim" | sed 's#^/##')
# docker compose kill has no --index: kill that one replica's container.
timeout 60 docker kill -s KILL "$victim" >/dev/null || fail "docker kill $victim_name"
log "killed $victim_name (SIGKILL) with $(running sandbox-runtime) sandbox replicas left running"
# Ended: a trajectory or a dead letter for every task.
dead_ids() { "$BIN/adpctl" dlq list --json --count 0 2>/dev/null | jq -r '.Task | fromjson? | .task_id // empty'; }
all_ended() {
  fetch_output || return 1
  dead_ids | sort -u > "$work/dead.ids"
  local missing
  missing=$(while read -r id; do [ -f "$work/out/trajectories/$id.json" ] || grep -qxF "$id" "$work/dead.ids" || echo "$id"; done < "$work/kill.ids" | wc -l)
  log "  waiting: $missing of 150 neither done nor dead-lettered"
  [ "$missing" -eq 0 ]
}
wait_for 600 "every task of the kill batch ended (trajectory or dead letter)" all_ended
both=$(while read -r id; do if [ -f "$work/out/trajectories/$id.json" ] && grep -qxF "$id" "$work/dead.ids"; then echo "$id"; fi; done < "$work/kill.ids" | wc -l)
[ "$both" -eq 0 ] || fail "$both tasks have both a trajectory and a dead letter"
done_n=$(count_done "$work/kill.ids")
log "kill batch: $done_n trajectories, $((150 - done_n)) dead letters, none both"
# Back to 3 running replicas (the killed one may or may not have been
# restarted by the engine).
timeout 600 docker compose up -d --scale sandbox-runtime=3 --scale web-runtime=2 $services > "$work/scale.log" 2>&1 \
  || { cat "$work/scale.log" >&2; fail "scaling back to 3 sandbox replicas"; }
wait_for 300 "9 containers healthy again after the kill" all_healthy 9

# ---------------------------------------------------------------------------
step runbook
timeout 300 scripts/smoke_test.sh > "$work/smoke.log" 2>&1 || { cat "$work/smoke.log" >&2; fail "scripts/smoke_test.sh (compose)"; }
tail -1 "$work/smoke.log" >&2
timeout 600 scripts/integration_test.sh > "$work/it.log" 2>&1 || { cat "$work/it.log" >&2; fail "scripts/integration_test.sh (compose)"; }
tail -1 "$work/it.log" >&2
timeout 900 scripts/load_test.sh "$load_n" 10 > "$work/load.log" 2>&1 || { cat "$work/load.log" >&2; fail "scripts/load_test.sh $load_n (compose, 3 sandbox and 2 web replicas)"; }
grep '^load test:' "$work/load.log" >&2

# ---------------------------------------------------------------------------
step resume
fetch_output || fail "copying the output volume"
(cd "$work/out/trajectories" && ls *.json | sort | xargs sha256sum) > "$work/before.sha"
before_n=$(wc -l < "$work/before.sha")
timeout 300 docker compose down > "$work/down.log" 2>&1 || { cat "$work/down.log" >&2; fail "docker compose down"; }
[ -z "$(containers)" ] || fail "containers left after docker compose down"
docker volume inspect "${project}_output" "${project}_redis-data" >/dev/null 2>&1 || fail "docker compose down removed the volumes"
timeout 600 docker compose up -d $services > "$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "docker compose up after down"; }
wait_for 300 "the stack healthy again after down and up (7 containers)" all_healthy 7
for i in 1 2 3; do
  printf '{"task_id":"%s-r-%d","task_type":"code","description":"Calculate the factorial of %d"}\n' "$run" "$i" $((i + 3))
done > "$work/resume.jsonl"
jq -r .task_id "$work/resume.jsonl" > "$work/resume.ids"
cat "$work/resume.jsonl" >> "$ADP_TASKS"
wait_for 180 "the 3 lines appended after the restart done" have_all "$work/resume.ids"
(cd "$work/out/trajectories" && sort "$work/before.sha" | awk '{print $2}' | xargs sha256sum) > "$work/after.sha"
cmp -s <(sort "$work/before.sha") <(sort "$work/after.sha") || { diff <(sort "$work/before.sha") <(sort "$work/after.sha") | head >&2; fail "trajectories written before the restart changed: tasks were redone"; }
after_n=$(ls "$work/out/trajectories" | grep -c '\.json$')
[ "$after_n" -eq $((before_n + 3)) ] || fail "$after_n trajectories after the restart, want $before_n + 3"
pending=$("$BIN/adpctl" status --json | jq '[.streams[].pending] | add // 0')
log "resume: $before_n trajectories untouched, 3 new lines done, $pending entries pending"
timeout 300 docker compose down -v > "$work/down.log" 2>&1 || { cat "$work/down.log" >&2; fail "docker compose down -v"; }
leftovers() {
  local c n v
  c=$(docker ps -aq --filter "label=com.docker.compose.project=$project" | wc -l)
  n=$(docker network ls -q --filter "label=com.docker.compose.project=$project" | wc -l)
  v=$(docker volume ls -q --filter "label=com.docker.compose.project=$project" | wc -l)
  [ "$c$n$v" = 000 ] || fail "left after down -v: $c containers, $n networks, $v volumes of $project"
}
leftovers
log "down -v: no container, network or volume of $project left"

# ---------------------------------------------------------------------------
step minimal
# A fresh task file (a new inode: the dispatcher is gone, and its volume too).
cp "$ROOT/tasks.jsonl" "$ADP_TASKS.new" && mv "$ADP_TASKS.new" "$ADP_TASKS"
jq -r 'select(.task_type != "web") | .task_id' "$ROOT/tasks.jsonl" > "$work/shipped-code.ids"
timeout 900 scripts/deploy.sh minimal > "$work/deploy-min.log" 2>&1 || { tail -30 "$work/deploy-min.log" >&2; fail "scripts/deploy.sh minimal"; }
# redis, dispatcher, 2 sandbox replicas.
wait_for 300 "the minimal stack healthy (4 containers)" all_healthy 4
[ "$(running web-runtime prometheus demo-site 2>/dev/null || echo 0)" -eq 0 ] || fail "the minimal stack runs more than redis, dispatcher and sandbox-runtime"
wait_for 180 "the shipped code tasks done on the minimal stack" have_all "$work/shipped-code.ids"
timeout 300 scripts/smoke_test.sh > "$work/smoke-min.log" 2>&1 || { cat "$work/smoke-min.log" >&2; fail "scripts/smoke_test.sh against docker-compose.minimal.yml"; }
tail -1 "$work/smoke-min.log" >&2
timeout 300 docker compose -f docker-compose.minimal.yml down -v > "$work/down.log" 2>&1 || { cat "$work/down.log" >&2; fail "docker compose -f docker-compose.minimal.yml down -v"; }
leftovers

# ---------------------------------------------------------------------------
step harbor
# docs/deployment.md, "A Harbor dataset with docker compose": the task
# images built on the host by the engine the docker CLI reaches, into a
# directory the stack mounts; then the minimal stack with the dataset
# directory as its task input, once with the oracle, once with a no-op agent.
harbor_ds=$ROOT/examples/harbor-images
mkdir -p "$work/images"
if ! timeout 900 "$BIN/adpctl" import harbor --images "$work/images" --out "$work/harbor.jsonl" "$harbor_ds" > "$work/harbor-import.log" 2>&1; then
  # Workspace tasks run in images only with issue 27's workspace work.
  grep -q 'is not yet supported for workspace tasks' "$work/harbor-import.log" \
    || { cat "$work/harbor-import.log" >&2; fail "adpctl import harbor --images: building examples/harbor-images"; }
  log "harbor: skipped: this build does not run workspace tasks in images yet"
else
  jq -r .task_id "$work/harbor.jsonl" > "$work/harbor.ids"
  harbor_n=$(wc -l < "$work/harbor.ids")
  log "harbor: $harbor_n task images built into $(ls "$work/images/harbor" | wc -l) archives ($(du -sh "$work/images" | cut -f1))"
  for agent in oracle noop; do
    ADP_TASKS=$harbor_ds ADP_IMAGE_ARCHIVES=$work/images HARBOR_AGENT=$agent timeout 900 scripts/deploy.sh minimal > "$work/deploy-harbor.log" 2>&1 \
      || { tail -30 "$work/deploy-harbor.log" >&2; fail "scripts/deploy.sh minimal with the Harbor dataset ($agent)"; }
    wait_for 300 "the minimal stack healthy with the Harbor dataset (4 containers)" all_healthy 4
    wait_for 600 "every Harbor task done ($agent)" have_all "$work/harbor.ids"
    want=1; [ "$agent" = noop ] && want=0
    while read -r id; do
      jq -e --argjson w "$want" '.success == ($w == 1) and .reward == $w' "$work/out/trajectories/$id.json" >/dev/null \
        || fail "harbor ($agent): $id: $(jq -c '{success, reward, error_type, error_message}' "$work/out/trajectories/$id.json")"
    done < "$work/harbor.ids"
    log "harbor ($agent): $harbor_n tasks, every reward $want"
    timeout 300 docker compose -f docker-compose.minimal.yml down -v > "$work/down.log" 2>&1 || { cat "$work/down.log" >&2; fail "docker compose -f docker-compose.minimal.yml down -v"; }
    leftovers
  done
fi
step_end
exit 0
}
