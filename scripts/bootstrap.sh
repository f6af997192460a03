#!/usr/bin/env bash
# bootstrap.sh installs what the Agent Data Platform needs on this machine,
# idempotently: nothing is installed twice, and nothing is downloaded at run time.
#
#   scripts/bootstrap.sh --test   what `make test` needs (redis, jail, chromium,
#                                 prometheus, the Playwright driver)
#   scripts/bootstrap.sh --run    what `make run` needs (redis, jail, chromium,
#                                 the Playwright driver)
#
# It prints what it installs. Where it cannot install (not root, no apt-get), it
# says exactly what to install and exits non-zero.
#
# Environment:
#   ADP_TOOLS_DIR   where the Playwright driver goes (default: .tools in the repo)
set -euo pipefail

mode=${1:---run}
root=$(cd "$(dirname "$0")/.." && pwd)
tools=${ADP_TOOLS_DIR:-$root/.tools}
playwright_core_version=1.60.0

log() { printf 'bootstrap: %s\n' "$*" >&2; }

# Debian packages needed per mode: "command package" pairs (a command may be
# an absolute path: the sandbox runs /usr/bin/python3, whatever PATH says).
need_cmds=(
  "redis-server redis-server"
  "redis-cli redis-server"
  "bwrap bubblewrap"
  "chromium-headless-shell chromium-headless-shell"
  "jq jq"
  "/usr/bin/python3 python3"
  "prlimit util-linux"
)
if [ "$mode" = "--test" ]; then
  need_cmds+=("prometheus prometheus" "promtool prometheus")
  # The SWE-style tests' image carries the host's pytest and its
  # dependencies, and their repository is iso8601 with its pytest suite
  # (internal/testsupport/pytest.go, internal/codeagent/swe_pytest_test.go).
  need_cmds+=("/usr/bin/pytest-3 python3-pytest" "/usr/lib/python3/dist-packages/iso8601/test_iso8601.py python3-iso8601")
fi

missing_pkgs=()
for pair in "${need_cmds[@]}"; do
  set -- $pair
  # A command, or a file a package installs (not executable: test -e).
  if ! command -v "$1" >/dev/null 2>&1 && ! { [[ $1 == /usr/lib/* ]] && [ -e "$1" ]; }; then
    missing_pkgs+=("$2")
  fi
done
# Deduplicate.
if [ ${#missing_pkgs[@]} -gt 0 ]; then
  mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
fi

if [ ${#missing_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    log "missing: ${missing_pkgs[*]}; install them with: apt-get install -y ${missing_pkgs[*]}"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing: ${missing_pkgs[*]}; this script installs with apt-get (Debian/Ubuntu); install the equivalents with your package manager"
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing Debian packages: ${missing_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  aptlog=$(mktemp)
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}"; } >"$aptlog" 2>&1; then
    tail -20 "$aptlog" >&2
    log "apt-get failed; install these packages by hand: ${missing_pkgs[*]}"
    exit 1
  fi
  rm -f "$aptlog"
  # The Debian packages start daemons we do not use; tests and `make run` start
  # private servers on free loopback ports.
  if command -v service >/dev/null 2>&1; then
    $sudo service redis-server stop >/dev/null 2>&1 || true
    $sudo service prometheus stop >/dev/null 2>&1 || true
  fi
fi

# The Playwright driver: playwright-core from npm, laid out the way playwright-go
# expects (PLAYWRIGHT_DRIVER_PATH/package -> node_modules/playwright-core).
driver_dir=$tools/playwright-driver
if [ ! -f "$driver_dir/package/cli.js" ] || \
   ! grep -q "\"version\": \"$playwright_core_version\"" "$driver_dir/package/package.json" 2>/dev/null; then
  if ! command -v npm >/dev/null 2>&1; then
    log "missing: npm (Node.js); install nodejs and npm, then rerun"
    exit 1
  fi
  log "installing playwright-core@$playwright_core_version into $tools/npm"
  mkdir -p "$tools/npm" "$driver_dir"
  npm install --silent --no-audit --no-fund --prefix "$tools/npm" "playwright-core@$playwright_core_version" >&2
  ln -sfn "$tools/npm/node_modules/playwright-core" "$driver_dir/package"
fi

log "ready ($mode)"
