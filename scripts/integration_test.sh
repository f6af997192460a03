#!/usr/bin/env bash
# integration_test.sh [--local]: a mixed batch through the whole pipeline,
# each task with a known outcome, plus bad input lines; then checks every
# trajectory, the rejected lines, the exports and the report.
source "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || die "jq not found (scripts/bootstrap.sh installs it)"
run=it-$(date +%s)-$$
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
tasks=$work/tasks.jsonl
local_mode=false; [ "${1:-}" = "--local" ] && local_mode=true
# The demo site: served by adpctl up on a free loopback port (--local), or
# the stack's demo-site service (compose).
if $local_mode; then demo=${ADP_DEMO_ADDR:-127.0.0.1:$((20000 + RANDOM % 20000))}
else demo=${ADP_DEMO_ADDR:-demo-site:8765}; fi
cat > "$tasks" <<JSON
{"task_id":"$run-fib","task_type":"code","description":"Write a Python function for the 10th Fibonacci number","constraints":{"expected_output":"55"}}
{"task_id":"$run-tests","task_type":"code","description":"add","constraints":{"code":"def add(a, b):\n    return a + b\n","tests":"assert add(2, 3) == 5"}}
{"task_id":"$run-wrong","task_type":"code","description":"add, wrongly","constraints":{"code":"def add(a, b):\n    return a - b\n","tests":"assert add(2, 3) == 5"}}
{"task_id":"$run-syntax","task_type":"code","description":"broken","constraints":{"code":"def f(:\n"}}
{"task_id":"$run-slow","task_type":"code","description":"sleeps past its timeout","timeout":2,"constraints":{"code":"import time\ntime.sleep(30)"}}
{"task_id":"$run-reason","task_type":"reasoning","description":"Compute the factorial of 6","constraints":{"expected_output":"720"}}
not json at all
{"task_id":"$run-bad","task_type":"video","description":"x"}
{"task_id":"$run-fib","task_type":"code","description":"a duplicate id"}
{"task_id":"$run-sampled","task_type":"code","description":"three attempts","samples":3,"constraints":{"code":"print(7)","expected_output":"7"}}
{"task_id":"$run-ws","task_type":"code","description":"fix add","constraints":{"files":{"calc.py":"def add(a, b):\n    return a - b\n"},"setup":"test -f calc.py","actions":[{"action":"edit_file","path":"calc.py","old":"a - b","new":"a + b"},{"action":"finish"}],"test_command":"python3 -c 'from calc import add; assert add(2, 3) == 5'"}}
{"task_id":"$run-ws-wrong","task_type":"code","description":"fix add, wrongly","constraints":{"files":{"calc.py":"def add(a, b):\n    return a - b\n"},"actions":[{"action":"bash","command":"sed -i 's/a - b/a * b/' calc.py"}],"test_command":"python3 -c 'from calc import add; assert add(2, 3) == 5'"}}
JSON
# A topic of this run: the search must be solved by the rules, not found in
# the template cache of a Redis that outlives the run (compose).
topic=$((1000 + RANDOM % 90000))
want_web=false
if [ "${1:-}" = "--local" ] && { [ -x /usr/bin/chromium-headless-shell ] || [ -x /usr/bin/chromium ]; } || [ "${1:-}" != "--local" ]; then
  want_web=true
  cat >> "$tasks" <<JSON
{"task_id":"$run-form","task_type":"web","description":"contact form","constraints":{"start_url":"http://$demo/form","actions":[{"action":"fill","selector":"#name","text":"Ada"},{"action":"click","selector":"button[type=submit]"},{"action":"finish","answer":"sent"}],"expected_text":"Thank you, Ada"}}
{"task_id":"$run-search","task_type":"web","description":"Search for information about topic $topic","constraints":{"start_url":"http://$demo/","expected_text":"ADP-$((topic * 7))"}}
{"task_id":"$run-file","task_type":"web","description":"read a local file","constraints":{"start_url":"file:///etc/passwd"}}
JSON
fi

ensure_built
out=$work/out
if $local_mode; then
  local_up "$tasks" "$out" --timeout 300s --demo-addr "$demo" > "$work/summary.txt"
else
  # Against a running compose stack (REDIS_URL: its published Redis port):
  # adpctl submit validates like the dispatcher and reports the bad lines
  # and the duplicate instead of writing rejected.jsonl.
  if "$BIN/adpctl" submit "$tasks" > "$work/submit.out" 2> "$work/submit.err"; then
    die "adpctl submit accepted the invalid lines: $(cat "$work/submit.err")"
  fi
  ids=$(grep -o "\"task_id\":\"$run-[a-z-]*\"" "$tasks" | cut -d'"' -f4 | grep -v -- "-bad$" | sort -u)
  deadline=$((SECONDS + 300))
  while :; do
    compose_output "$out" || true
    missing=0
    for id in $ids "$run-sampled.sample-1" "$run-sampled.sample-2"; do [ -f "$out/trajectories/$id.json" ] || missing=$((missing + 1)); done
    [ "$missing" -eq 0 ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "compose: $missing trajectories missing after 300 s"
    sleep 3
  done
  cp "$work/submit.err" "$work/summary.txt"
fi
dir=$out/trajectories

passed=0; failed=0
check() { # id jq-expression description
  local f=$dir/$1.json
  if [ -f "$f" ] && [ "$(jq -r "$2" "$f")" = true ]; then passed=$((passed + 1))
  else failed=$((failed + 1)); log "FAIL $1: $3; got $( [ -f "$f" ] && jq -c '{success,error_type,error_message}' "$f" || echo 'no file')"; fi
}
check "$run-fib"    '.success and .final_result == "55" and .metadata.verified == true' "fibonacci by rules, verified"
check "$run-tests"  '.success and .metadata.verified == true and (.steps | length) == 2' "tests pass"
check "$run-wrong"  '(.success | not) and .error_type == "wrong_answer"' "failing tests are a wrong answer"
check "$run-syntax" '(.success | not) and .error_type == "compile_error"' "syntax error"
check "$run-slow"   '(.success | not) and .error_type == "timeout"' "wall-clock limit"
check "$run-reason" '.success and .final_result == "720" and .task_type == "reasoning"' "reasoning via the sandbox runtime"
# A task of samples 3: one file per attempt, each naming its attempt.
check "$run-sampled"          '.success and .sample_index == 0 and .samples == 3 and .reward == 1' "attempt 0 of 3"
check "$run-sampled.sample-1" '.success and .sample_index == 1 and .samples == 3 and .task_id == "'"$run-sampled"'"' "attempt 1 of 3"
check "$run-sampled.sample-2" '.success and .sample_index == 2 and .exit_reason == "replayed"' "attempt 2 of 3"
check "$run-ws"     '.success and .reward == 1 and .exit_reason == "finished" and (.metadata.workspace_diff | test("[+]    return a [+] b")) and .steps[0].action_params.purpose == "setup"' "workspace: replayed edit_file passes test_command"
check "$run-ws-wrong" '(.success | not) and .reward == 0 and .error_type == "wrong_answer" and (.metadata.workspace_diff | test("a [*] b"))' "workspace: a wrong fix fails test_command"
if $want_web; then
  check "$run-form"   '.success and .metadata.verified == true' "scripted form"
  check "$run-search" '.success and .metadata.source == "rules"' "search heuristics on the demo site"
  check "$run-file"   '(.success | not) and .error_type == "blocked_url"' "file: URL blocked"
fi
if $local_mode; then
  rej=$out/rejected.jsonl
  if [ "$(jq -s 'map(select(.line == 7 or .line == 8)) | length' "$rej")" = 2 ] && \
     jq -e 'select(.line == 8) | .reason | test("video")' "$rej" >/dev/null; then passed=$((passed + 1))
  else failed=$((failed + 1)); log "FAIL rejected.jsonl: $(cat "$rej")"; fi
else
  if [ "$(grep -c '^rejected:' "$work/submit.err")" = 2 ] && grep '^rejected:' "$work/submit.err" | grep -q video && \
     grep -q "duplicate: task \"$run-fib\"" "$work/submit.err"; then passed=$((passed + 1))
  else failed=$((failed + 1)); log "FAIL adpctl submit: $(cat "$work/submit.err")"; fi
fi
for fmt in openai sharegpt; do
  n=$("$BIN/adpctl" export --dir "$dir" --format "$fmt" --only-success 2>/dev/null | jq -c . | wc -l)
  if [ "$n" -ge 3 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAIL export $fmt: $n lines"; fi
done
n=$("$BIN/adpctl" export --dir "$dir" --format groups --min-attempts 3 2>/dev/null | jq -c "select(.task_id == \"$run-sampled\") | .attempts | map(.sample_index)")
if [ "$n" = "[0,1,2]" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAIL export groups: $n"; fi
"$BIN/adpctl" report --dir "$dir" --out "$work/report.html" 2>/dev/null
if grep -q '<svg' "$work/report.html"; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAIL report"; fi
cat "$work/summary.txt" >&2
echo "integration test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
