#!/usr/bin/env bash
# Benchmarks mcp-server side by side with peer MCP servers on the same load, on loopback:
#   ours-sqlite, ours-postgres   mcp-server (auth on, as shipped) on SQLite and PostgreSQL
#   rmcp-floor                   rmcp with one echo tool and nothing else (functions/mcp/examples)
#   ts-sdk, python-sdk           the official TypeScript and Python SDK servers (bench/peers),
#                                stateless JSON mode
# Load: `tools/call echo`, a fixed number of requests at concurrency 1, 16 and 64 with oha, on
# the 2026-07-28 wire for the Rust servers (the peers' SDKs answer it at 2025-11-25, stateless);
# and a fixed time at each concurrency with wrk in one legacy 2025-11-25 session of ours. Per server: requests/s, P50/P95/P99,
# the server's CPU time per answered request (user + system, /proc/PID/stat), peak RSS (VmHWM)
# and the time from process start to the first answered call.
# Two passes: per core (the server pinned to core 0 with taskset, the load generator to core 1:
# what a request costs a Lambda instance or a container's CPU share), then both sharing the two
# cores (a multi-threaded server against single-threaded peers).
# Then the Lambda handler in process (criterion, functions/mcp/benches/lambda_handler.rs) over
# DynamoDB on moto, with the DynamoDB calls per invocation.
# Writes bench/RESULTS.md and bench/results.svg (bench/report.py), then prints the tables.
#
# Usage:
#   bench.sh                 the side-by-side run (about 5 to 8 minutes once the tools are built)
#   bench.sh --quick         a tenth of the requests (a smoke run; figures are noisy)
#   bench.sh --compare REV   this build against REV's build (e.g. HEAD~1) on the same load,
#                            ours-sqlite only, per core; writes bench/COMPARE.md and exits 1 when
#                            requests/s fall or the median latency rises by more than 15 % (P99
#                            is shown, too noisy to decide)
#   bench.sh --help
#
# Installs what it needs under ~/.cache/mcp-lambda/tools (MCP_TOOLS_DIR): oha (cargo install),
# Node 22 with the TypeScript peer's packages, a venv with the Python peer's. PostgreSQL at
# MCP_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test) for ours-postgres.
#
# Exit codes: 0 done, 1 a server failed or (--compare) a regression, 64 usage.
set -euo pipefail

readonly EX_USAGE=64
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mcp-lambda"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
tools="${MCP_TOOLS_DIR:-$cache/tools}"
postgres_url="${MCP_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

scale=1
compare=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) scale=10 ;;
    --compare)
      [[ $# -ge 2 && -n "$2" ]] || { printf 'bench.sh: --compare needs a revision\n' >&2; exit "$EX_USAGE"; }
      compare="$2"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'bench.sh: unknown argument %q (see --help)\n' "$1" >&2; exit "$EX_USAGE" ;;
  esac
  shift
done
if [[ -n "$compare" ]] && ! git rev-parse --verify --quiet "$compare^{commit}" >/dev/null; then
  printf 'bench.sh: %q is not a commit\n' "$compare" >&2
  exit "$EX_USAGE"
fi
if [[ "$(nproc)" -lt 2 ]]; then
  printf 'bench.sh: the per-core pass needs 2 cores (one for the server, one for the load); %s available\n' "$(nproc)" >&2
  exit 1
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -d "$work/previous" ]]; then git worktree remove --force "$work/previous" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Requests per run at each concurrency: enough for stable percentiles, bounded in time.
declare -A requests=([1]=$((2000 / scale)) [16]=$((20000 / scale)) [64]=$((40000 / scale)))
session_seconds=$((10 / scale + 2))
concurrencies=(1 16 64)

# --- tools -------------------------------------------------------------------
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
oha="$tools/oha/bin/oha"
if ! command -v wrk >/dev/null; then
  printf '==> installing wrk (Debian package, once)\n'
  sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo -n); fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null
fi
if [[ ! -x "$oha" ]]; then
  printf '==> installing oha (once)\n'
  CARGO_TARGET_DIR="$cache/oha-build" cargo install oha --version 1.16.0 --locked --root "$tools/oha" --quiet
fi
install_node "$tools"
if [[ -z "$compare" ]]; then
  peers="$tools/bench-peers"
  mkdir -p "$peers/ts"
  if ! cmp -s bench/peers/ts/package-lock.json "$peers/ts/package-lock.json"; then
    cp bench/peers/ts/package.json bench/peers/ts/package-lock.json "$peers/ts/"
    npm ci --prefix "$peers/ts" --no-audit --no-fund --silent
  fi
  # ES modules resolve packages beside the importing file, so the server runs from there.
  cp bench/peers/ts/server.mjs "$peers/ts/server.mjs"
  moto="$tools/bench-moto"
  if [[ ! -x "$moto/bin/moto_server" ]]; then
    python3 -m venv "$moto"
    "$moto/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
  fi
  marker="$peers/python/.installed-$(sha256sum bench/peers/python/requirements.txt | cut -c1-16)"
  if [[ ! -e "$marker" ]]; then
    rm -rf "$peers/python"
    python3 -m venv "$peers/python"
    "$peers/python/bin/pip" install --quiet --disable-pip-version-check -r bench/peers/python/requirements.txt
    touch "$marker"
  fi
fi

# The Rust servers as mcp-server ships: the `dist` profile (Cargo.toml), the floor too.
printf '==> building mcp-server, mcp-token and the rmcp floor (profile dist)\n'
cargo build --profile dist --quiet -p mcp-function --bin mcp-server --example rmcp_floor
cargo build --profile dist --quiet -p mcp-authorizer --bin mcp-token
cp "$CARGO_TARGET_DIR/dist/mcp-server" "$work/mcp-server"
cp "$CARGO_TARGET_DIR/dist/examples/rmcp_floor" "$work/rmcp-floor"
cp "$CARGO_TARGET_DIR/dist/mcp-token" "$work/mcp-token"

# --- one server under load ------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

key="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
token="$(MCP_SIGNING_KEY="$key" "$work/mcp-token" --sub bench --scope 'mcp:read mcp:call mcp:write' --ttl-secs 7200)"
meta='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"}}'
echo_2026='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"},'"$meta"'}}'
echo_2025='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}'
initialize='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'

# Headers of a run, one per line, for `wire` (2026 | 2025 | session:<id>) and `auth` (yes | no).
headers_for() {
  local wire="$1" auth="$2"
  printf '%s\n' 'content-type: application/json' 'accept: application/json, text/event-stream'
  case "$wire" in
    2026) printf '%s\n' 'mcp-protocol-version: 2026-07-28' 'mcp-method: tools/call' 'mcp-name: echo' ;;
    2025) printf '%s\n' 'mcp-protocol-version: 2025-11-25' ;;
    session:*) printf '%s\n' 'mcp-protocol-version: 2025-11-25' "mcp-session-id: ${wire#session:}" ;;
  esac
  if [[ "$auth" == yes ]]; then printf 'authorization: Bearer %s\n' "$token"; fi
}

# POSTs once with curl; prints the HTTP status (000 when nothing answered).
post_once() {
  local url="$1" body="$2" wire="$3" auth="$4" args=() header
  while IFS= read -r header; do args+=(-H "$header"); done < <(headers_for "$wire" "$auth")
  curl -s -o "$work/last-body" -D "$work/last-headers" -w '%{http_code}' "${args[@]}" --data "$body" "$url" 2>/dev/null || true
}

# The pass under way: `core` pins the server under test to core 0 and the load generator (and
# the first-answer poller) to core 1; `shared` lets both use both cores. Results go to $results.
server_pin=()
load_pin=()
results=""
begin_pass() {
  pass="$1"
  results="$work/$pass"
  mkdir -p "$results"
  if [[ "$pass" == core ]]; then
    server_pin=(taskset -c 0)
    load_pin=(taskset -c 1)
  else
    server_pin=()
    load_pin=()
  fi
}

# The CPU seconds (user + system, all threads) process $1 has used so far.
clock_ticks="$(getconf CLK_TCK)"
cpu_seconds() {
  # Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing parenthesis.
  sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$clock_ticks" '{ printf "%.3f\n", ($12 + $13) / hz }'
}

# Runs the command after $1 (a result file's stem) and writes the CPU seconds the server under
# test used meanwhile to <stem>.cpu.
measured() {
  local stem="$1" before after
  shift
  before=$(cpu_seconds "$server_pid")
  "$@"
  after=$(cpu_seconds "$server_pid")
  awk -v a="$after" -v b="$before" 'BEGIN { printf "%.3f\n", a - b }' >"$stem.cpu"
}

# Starts a server (command after `--`) through bench/first_answer.py, which times process start
# to the first answered echo call; sets server_pid and writes the milliseconds to
# $results/<name>.cold.
start_server() {
  local name="$1" url="$2" wire="$3" auth="$4"
  shift 5
  local body="$echo_2026" args=() header
  [[ "$wire" == 2025 ]] && body="$echo_2025"
  while IFS= read -r header; do args+=(--header "$header"); done < <(headers_for "$wire" "$auth")
  local answer
  if ! answer=$("${load_pin[@]}" python3 bench/first_answer.py --url "$url" --body "$body" --log "$results/$name.log" \
    "${args[@]}" -- "${server_pin[@]}" "$@"); then
    printf 'bench.sh: %s did not answer an echo call; its log:\n' "$name" >&2
    tail -20 "$results/$name.log" >&2
    exit 1
  fi
  read -r server_pid cold_ms <<<"$answer"
  pids+=("$server_pid")
  echo "$cold_ms" >"$results/$name.cold"
}

# Runs the load on `url` at every concurrency; results in $results/<name>-<wire label>-c<C>.json
# and the server's CPU seconds during each run in the .cpu file beside it.
load() {
  local name="$1" url="$2" wire="$3" auth="$4" label="$5" body="$echo_2026" c args=() header
  [[ "$wire" == 2026 ]] || body="$echo_2025"
  while IFS= read -r header; do args+=(-H "$header"); done < <(headers_for "$wire" "$auth")
  # Warm-up: connection pools, JIT of the peers, caches.
  "${load_pin[@]}" "$oha" --no-tui -n 500 -c 16 -t 10s -m POST "${args[@]}" -d "$body" "$url" >/dev/null
  for c in "${concurrencies[@]}"; do
    printf '   %-6s %-13s %-8s c=%-3s %6s requests\n' "$pass" "$name" "$label" "$c" "${requests[$c]}"
    measured "$results/$name-$label-c$c" "${load_pin[@]}" "$oha" --no-tui --output-format json -n "${requests[$c]}" \
      -c "$c" -t 10s -m POST "${args[@]}" -d "$body" "$url" >"$results/$name-$label-c$c.json"
  done
}

# The legacy-session run: wrk, because each request in one session needs its own JSON-RPC id
# (bench/legacy_session.lua); a fixed duration per concurrency instead of a fixed count.
# Results in $results/<name>-session-c<C>.wrk.json (and .cpu). wrk runs one thread per core it has.
load_session() {
  local name="$1" url="$2" session="$3" authorization="$4" c threads
  threads=$(("${#load_pin[@]}" > 0 ? 1 : 2))
  for c in "${concurrencies[@]}"; do
    printf '   %-6s %-13s %-8s c=%-3s %6s seconds\n' "$pass" "$name" session "$c" "$session_seconds"
    measured "$results/$name-session-c$c" "${load_pin[@]}" wrk -t "$((c < threads ? c : threads))" -c "$c" \
      -d "${session_seconds}s" --timeout 10s --latency -s bench/legacy_session.lua "$url" -- "$session" "$authorization" \
      >"$results/$name-session-c$c.wrk.out"
    tail -n 1 "$results/$name-session-c$c.wrk.out" >"$results/$name-session-c$c.wrk.json"
  done
}

# Opens a legacy session on `url` and prints its id.
open_session() {
  local url="$1" auth="$2" status
  status=$(post_once "$url" "$initialize" 2025 "$auth")
  [[ "$status" == 200 ]] || { printf 'bench.sh: initialize answered %s\n' "$status" >&2; exit 1; }
  local id
  id=$(awk 'tolower($1) == "mcp-session-id:" { print $2 }' "$work/last-headers" | tr -d '\r')
  post_once "$url" '{"jsonrpc":"2.0","method":"notifications/initialized"}' "session:$id" "$auth" >/dev/null
  printf '%s' "$id"
}

stop_server() {
  local name="$1"
  awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status" >"$results/$name.rss" 2>/dev/null || echo 0 >"$results/$name.rss"
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# mcp-server as shipped (auth on), with the per-caller limits above what one client at c=64
# sends, so the load measures serving, not refusing: the rate limit off, and the in-flight cap
# on (its cost is measured) but at 1000.
bench_ours() {
  local name="$1" binary="$2" store_url="$3" sessions="$4"
  local port url
  port=$(free_port)
  url="http://127.0.0.1:$port/mcp"
  mkdir -p "$results/$name-files"
  printf '==> %s (%s)\n' "$name" "$pass"
  start_server "$name" "$url" 2026 yes -- env MCP_BIND="127.0.0.1:$port" MCP_STORE_URL="$store_url" \
    MCP_FILES_URL="file://$results/$name-files" MCP_SIGNING_KEY="$key" MCP_AUTH_AUDIENCE="http://127.0.0.1:8080/mcp" \
    MCP_RATE_LIMIT_PER_SEC=0 MCP_MAX_IN_FLIGHT_PER_CALLER=1000 MCP_METRICS_BIND=off RUST_LOG=warn "$binary"
  load "$name" "$url" 2026 yes 2026
  if [[ "$sessions" == sessions ]]; then
    load_session "$name" "$url" "$(open_session "$url" yes)" "Bearer $token"
  fi
  stop_server "$name"
}

if [[ -n "$compare" ]]; then
  printf '==> building %s for comparison\n' "$compare"
  git worktree add --quiet --detach "$work/previous" "$compare"
  # Both builds with this checkout's `dist` profile, so that only the code differs.
  if ! grep -q '^\[profile\.dist\]' "$work/previous/Cargo.toml"; then
    sed -n '/^\[profile\.dist\]/,/^$/p' Cargo.toml >>"$work/previous/Cargo.toml"
  fi
  (cd "$work/previous" && cargo build --profile dist --quiet -p mcp-function --bin mcp-server)
  cp "$CARGO_TARGET_DIR/dist/mcp-server" "$work/mcp-server-previous"
  begin_pass core
  bench_ours previous "$work/mcp-server-previous" "sqlite://$results/previous.db" sessions
  bench_ours current "$work/mcp-server" "sqlite://$results/current.db" sessions
  # Leave the target directory holding this checkout's build again.
  cargo build --profile dist --quiet -p mcp-function --bin mcp-server
  python3 bench/report.py --compare "$results" --threshold 15 --revision "$compare" --out bench/COMPARE.md
  exit $?
fi

# Every server under the same load, in the pass under way.
bench_pass() {
  begin_pass "$1"
  bench_ours ours-sqlite "$work/mcp-server" "sqlite://$results/ours.db" sessions
  bench_ours ours-postgres "$work/mcp-server" "$postgres_url" no-sessions

  port=$(free_port)
  printf '==> rmcp-floor (%s)\n' "$pass"
  start_server rmcp-floor "http://127.0.0.1:$port/mcp" 2026 no -- "$work/rmcp-floor" "127.0.0.1:$port"
  load rmcp-floor "http://127.0.0.1:$port/mcp" 2026 no 2026
  stop_server rmcp-floor

  port=$(free_port)
  printf '==> ts-sdk (%s)\n' "$pass"
  start_server ts-sdk "http://127.0.0.1:$port/mcp" 2025 no -- env PORT="$port" node "$peers/ts/server.mjs"
  load ts-sdk "http://127.0.0.1:$port/mcp" 2025 no 2025
  stop_server ts-sdk

  port=$(free_port)
  printf '==> python-sdk (%s)\n' "$pass"
  start_server python-sdk "http://127.0.0.1:$port/mcp" 2025 no -- env PORT="$port" \
    "$peers/python/bin/python" "$root/bench/peers/python/server.py"
  load python-sdk "http://127.0.0.1:$port/mcp" 2025 no 2025
  stop_server python-sdk
}
bench_pass core
bench_pass shared

# --- the Lambda handler in process -------------------------------------------------
printf '==> Lambda handler in process (criterion) over moto\n'
moto_port=$(free_port)
"$moto/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$moto_port/moto-api/" && break
  sleep 0.05
done
rm -rf "$CARGO_TARGET_DIR/criterion/lambda_handler"
MCP_TEST_AWS_ENDPOINT="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  cargo bench --quiet -p mcp-function --bench lambda_handler -- \
  --warm-up-time "$((3 / scale + 1))" --measurement-time "$((6 / scale + 1))" | grep -v '^$'

python3 bench/report.py --results "$work/core" --shared "$work/shared" --out bench/RESULTS.md --chart bench/results.svg \
  --requests "${requests[1]},${requests[16]},${requests[64]}" --criterion "$CARGO_TARGET_DIR/criterion"
