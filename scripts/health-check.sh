#!/usr/bin/env bash
# Probes running MCP deployments (local mcp-server, EC2 staging, the Lambda stacks) the way a
# client sees them, and says per environment whether it is healthy, degraded or down.
#
# Usage:
#   health-check.sh all report                 every configured environment, as a table
#   health-check.sh staging                    one environment (several names may follow)
#   health-check.sh all --json                 the same as JSON, for dashboards and cron
#   health-check.sh --config ops.conf prod     environments from another file
#   health-check.sh --help
#
# Options:
#   --json            print JSON instead of the table
#   --config FILE     environments file (default: health-check.conf next to this script if
#                     it exists, else one built-in environment: local http://127.0.0.1:8080 mint)
#   --timeout SECS    limit for each request (default 5)
#   --slow-ms MS      a request slower than this makes its check "slow" (default 500, the
#                     threshold of the stacks' P95 latency alarm)
#   `report` after the names only asks for the table, which is the default anyway.
#
# Config format: one environment per line, `name base_url token_source`, fields separated by
# blanks; blank lines and text after `#` are ignored. `all` and `report` are not valid names.
#   base_url       http(s)://host[:port][/base-path]; /health/live, /health/ready and /mcp are
#                  appended (a trailing /mcp is dropped, so a stack's McpUrl can be pasted), or
#                  stack:STACK[@REGION]: the stack's McpUrl output, read with
#                  `aws cloudformation describe-stacks` (without the aws CLI the environment is
#                  reported down, saying why)
#   token_source   env:VAR    the bearer token is in $VAR
#                  mint       minted by mcp-token ($MCP_TOKEN_BIN, else mcp-token on PATH) with
#                             $MCP_SIGNING_KEY (else the development key) for base_url + /mcp
#                  mint:VAR   the same, with the signing key taken from $VAR
#                  none       no Authorization header (a server run with MCP_AUTH=off)
# Example (see health-check.conf.example):
#   local    http://127.0.0.1:8080   mint
#   staging  stack:mcp-staging       env:MCP_STAGING_TOKEN
#
# Checks per environment, each ok, slow, warn, fail or skip, with its latency in ms:
#   tls         https only: days until the certificate expires (warn under 14)
#   liveness    GET /health/live answers 200
#   readiness   GET /health/ready answers 200; the detail lists each dependency's status
#   mcp_2026    the stateless wire: server/discover, then tools/call health_check
#   mcp_2025    the session wire: initialize, notifications/initialized, tools/list, DELETE
#   resolve     stack environments only: the stack's McpUrl output was read
# A check whose slowest request exceeds --slow-ms is "slow". An environment is healthy when
# every check is ok, down when liveness (or resolving its stack) fails, degraded otherwise.
#
# Exit codes: 0 every environment healthy, 1 some degraded and none down, 2 some down,
# 64 usage error (unknown option or environment, malformed config line), 69 curl or python3
# missing, 70 internal error. Tokens are never printed.
set -euo pipefail

readonly EX_USAGE=64 EX_UNAVAILABLE=69
readonly PROTOCOL_2026=2026-07-28 PROTOCOL_2025=2025-11-25
readonly HEALTH_TOOL=health_check CERT_WARN_DAYS=14
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

usage_error() {
  printf 'health-check: %s\n' "$1" >&2
  printf "Run 'health-check.sh --help' for usage.\n" >&2
  exit "$EX_USAGE"
}

json=0
timeout=5
slow_ms=500
config=""
targets=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --json) json=1 ;;
    --config) (($# >= 2)) || usage_error "--config needs a file"; config=$2; shift ;;
    --config=*) config=${1#*=} ;;
    --timeout) (($# >= 2)) || usage_error "--timeout needs seconds"; timeout=$2; shift ;;
    --timeout=*) timeout=${1#*=} ;;
    --slow-ms) (($# >= 2)) || usage_error "--slow-ms needs milliseconds"; slow_ms=$2; shift ;;
    --slow-ms=*) slow_ms=${1#*=} ;;
    --) shift; targets+=("$@"); break ;;
    -*) usage_error "unknown option: $1" ;;
    report) ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[[ $timeout =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout must be a whole number of seconds, got '$timeout'"
[[ $slow_ms =~ ^[1-9][0-9]*$ ]] || usage_error "--slow-ms must be a whole number of milliseconds, got '$slow_ms'"
((${#targets[@]})) || usage_error "name an environment, or 'all'"

for tool in curl python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    printf 'health-check: %s is required but not on PATH\n' "$tool" >&2
    exit "$EX_UNAVAILABLE"
  fi
done

# --- configuration -------------------------------------------------------------------------
env_names=()
env_urls=()
env_tokens=()

add_env() { # name url token_source where
  local name=$1 url=$2 source=$3 where=$4 known
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || usage_error "$where: invalid environment name '$name'"
  [[ $name != all && $name != report ]] || usage_error "$where: '$name' is reserved and cannot name an environment"
  for known in "${env_names[@]}"; do
    [[ $known != "$name" ]] || usage_error "$where: environment '$name' is defined twice"
  done
  if [[ $url =~ ^https?://[^[:space:]/?#]+(/[^[:space:]?#]*)?$ ]]; then
    url=${url%/}
    url=${url%/mcp}
  elif [[ ! $url =~ ^stack:[A-Za-z][A-Za-z0-9-]*(@[a-z0-9-]+)?$ ]]; then
    usage_error "$where: base_url must be http(s)://host[:port][/path] or stack:NAME[@REGION], got '$url'"
  fi
  [[ $source =~ ^(env:[A-Za-z_][A-Za-z0-9_]*|mint(:[A-Za-z_][A-Za-z0-9_]*)?|none)$ ]] ||
    usage_error "$where: token_source must be env:VAR, mint, mint:VAR or none, got '$source'"
  env_names+=("$name")
  env_urls+=("$url")
  env_tokens+=("$source")
}

if [[ -z $config && -f "$script_dir/health-check.conf" ]]; then
  config="$script_dir/health-check.conf"
fi
if [[ -n $config ]]; then
  [[ -f $config && -r $config ]] || usage_error "config file '$config' not found or unreadable"
  lineno=0
  while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=${line%$'\r'}
    line=${line%%#*}
    read -r -a fields <<<"$line" || true
    ((${#fields[@]})) || continue
    ((${#fields[@]} == 3)) ||
      usage_error "$config line $lineno: expected 'name base_url token_source', got ${#fields[@]} field(s)"
    add_env "${fields[0]}" "${fields[1]}" "${fields[2]}" "$config line $lineno"
  done <"$config"
  ((${#env_names[@]})) || usage_error "$config defines no environment"
else
  add_env local http://127.0.0.1:8080 mint "built-in default"
fi

selected=()
if [[ " ${targets[*]} " == *" all "* ]]; then
  ((${#targets[@]} == 1)) || usage_error "'all' cannot be combined with environment names"
  selected=("${!env_names[@]}")
else
  for target in "${targets[@]}"; do
    found=""
    for i in "${!env_names[@]}"; do
      [[ ${env_names[i]} != "$target" ]] || found=$i
    done
    [[ -n $found ]] || usage_error "unknown environment '$target' (configured: ${env_names[*]})"
    selected+=("$found")
  done
fi

# --- helpers -------------------------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
# The auth header file holds a token; nobody else on the host should read it.
umask 077
results="$work/results"
: >"$results"

# JSON parsing, TLS inspection and rendering, kept in one program so each call is one process.
py_src=$(
  cat <<'PY'
import json, os, socket, ssl, sys, time

def load(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()

def parse_json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None

def rpc_messages(text):
    """A JSON body, or the data events of an SSE body."""
    doc = parse_json(text)
    if doc is not None:
        return doc if isinstance(doc, list) else [doc]
    out = []
    for line in text.splitlines():
        if line.startswith("data:"):
            doc = parse_json(line[5:].strip())
            if isinstance(doc, dict):
                out.append(doc)
    return out

def headers(path):
    found = {}
    for line in load(path).splitlines():
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found

def short(text, limit=160):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

def http_failure(code, body, hdrs):
    """What a non-2xx answer says, from the WWW-Authenticate challenge or the body."""
    challenge = hdrs.get("www-authenticate", "")
    if challenge:
        params = {}
        for part in challenge.split(","):
            key, sep, value = part.strip().partition("=")
            if sep:
                params[key.split()[-1].lower()] = value.strip().strip('"')
        err = params.get("error", "")
        desc = params.get("error_description", "")
        if err or desc:
            return short(f"HTTP {code} {err}: {desc}".rstrip(": "))
    for doc in rpc_messages(body):
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict):
            return short(f"HTTP {code} JSON-RPC {error.get('code')}: {error.get('message')}")
        if isinstance(error, str):
            return short(f"HTTP {code} {error}: {doc.get('error_description', '')}".rstrip(": "))
    return short(f"HTTP {code} {body}" if body.strip() else f"HTTP {code}")

def cmd_live(body_path):
    doc = parse_json(load(body_path))
    if isinstance(doc, dict):
        print(short(f"{doc.get('status', '?')}, version {doc.get('version', '?')}"))
    else:
        print("HTTP 200")

def cmd_ready(code, body_path):
    doc = parse_json(load(body_path))
    checks = doc.get("checks") if isinstance(doc, dict) else None
    if not isinstance(checks, dict):
        print(short(f"HTTP {code} {load(body_path)}"))
        print("")
        return
    parts, deps = [], {}
    for dep, info in sorted(checks.items()):
        info = info if isinstance(info, dict) else {}
        status = str(info.get("status", "?"))
        deps[dep] = {k: info.get(k) for k in ("status", "backend", "latencyMs", "error") if k in info}
        text = f"{dep} {status}"
        if isinstance(info.get("latencyMs"), (int, float)):
            text += f" {info['latencyMs']:.1f} ms"
        if info.get("error"):
            text += f" ({info['error']})"
        parts.append(text)
    prefix = "" if code == "200" else f"HTTP {code}: "
    print(short(prefix + ", ".join(parts), 240))
    print(json.dumps(deps, separators=(",", ":")))

def cmd_rpc(step, code, body_path, headers_path, want_id):
    """Prints `ok|fail <TAB> detail <TAB> session id` for one step of a round trip."""
    body, hdrs = load(body_path), headers(headers_path)
    session = hdrs.get("mcp-session-id", "")

    def done(ok, detail):
        print("ok" if ok else "fail", short(detail), session, sep="\t")

    if not code.startswith("2"):
        return done(False, http_failure(code, body, hdrs))
    if step == "notify":
        return done(True, f"HTTP {code}")
    if step == "delete":
        return done(True, f"HTTP {code}")
    reply = None
    for doc in rpc_messages(body):
        if isinstance(doc, dict) and str(doc.get("id")) == want_id:
            reply = doc
    if reply is None:
        return done(False, f"HTTP {code} without a JSON-RPC reply to id {want_id}")
    if "error" in reply:
        error = reply["error"] if isinstance(reply["error"], dict) else {}
        return done(False, f"JSON-RPC {error.get('code')}: {error.get('message')}")
    result = reply.get("result")
    if not isinstance(result, dict):
        return done(False, "reply without a result object")
    if step == "discover":
        versions = result.get("supportedVersions") or []
        if "2026-07-28" not in versions:
            return done(False, f"2026-07-28 not among supportedVersions {versions}")
        info = (result.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo") or {}
        return done(True, f"{info.get('name', 'server')} {info.get('version', '')}".strip())
    if step == "call":
        data = result.get("structuredContent")
        if result.get("isError"):
            text = " ".join(c.get("text", "") for c in result.get("content") or [] if isinstance(c, dict))
            return done(False, f"tool error: {text}")
        if not isinstance(data, dict):
            return done(True, "answered")
        parts = []
        for dep in ("store", "files"):
            info = data.get(dep)
            if isinstance(info, dict):
                if info.get("reachable") is False:
                    parts.append(f"{dep} unreachable")
                elif isinstance(info.get("latencyMs"), (int, float)):
                    parts.append(f"{dep} {info['latencyMs']:.1f} ms")
        status = data.get("status", "ok")
        detail = f"status {status}" + (f" ({', '.join(parts)})" if parts else "")
        return done(status == "ok", detail)
    if step == "initialize":
        if not session:
            return done(False, "initialize answered without an Mcp-Session-Id header")
        info = result.get("serverInfo") or {}
        return done(True, f"protocol {result.get('protocolVersion')}, {info.get('name', 'server')} {info.get('version', '')}".strip())
    if step == "list":
        tools = result.get("tools")
        if not isinstance(tools, list):
            return done(False, "tools/list without a tools array")
        return done(True, f"{len(tools)} tools")
    return done(False, f"unknown step {step}")

def cmd_tls(url, timeout, warn_days):
    """Prints `status <TAB> microseconds <TAB> detail` for the certificate of an https URL."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 443
    started = time.monotonic()
    try:
        ctx = ssl.create_default_context()
        with socket.create_connection((host, port), timeout=float(timeout)) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                cert = tls.getpeercert()
        elapsed = int((time.monotonic() - started) * 1e6)
        expires = ssl.cert_time_to_seconds(cert["notAfter"])
        days = (expires - time.time()) / 86400
        when = time.strftime("%Y-%m-%d", time.gmtime(expires))
        if days < 0:
            print("fail", elapsed, f"certificate expired {when}", sep="\t")
        elif days < float(warn_days):
            print("warn", elapsed, f"certificate expires in {days:.1f} days ({when})", sep="\t")
        else:
            print("ok", elapsed, f"certificate valid {int(days)} more days (until {when})", sep="\t")
    except (OSError, ssl.SSLError, ValueError, KeyError) as exc:
        elapsed = int((time.monotonic() - started) * 1e6)
        print("fail", elapsed, short(f"TLS: {exc}"), sep="\t")

def env_status(checks):
    by_name = {c["name"]: c["status"] for c in checks}
    if by_name.get("resolve") == "fail" or by_name.get("liveness") == "fail":
        return "down"
    if all(c["status"] == "ok" for c in checks):
        return "healthy"
    return "degraded"

def cmd_render(fmt, results_path):
    envs = []
    for line in load(results_path).splitlines():
        name, url, check, status, latency, detail, extra = (line.split("\t") + [""] * 7)[:7]
        if not envs or envs[-1]["name"] != name:
            envs.append({"name": name, "url": url, "status": "", "checks": []})
        envs[-1]["url"] = url
        entry = {
            "name": check,
            "ok": status == "ok",
            "status": status,
            "latency_ms": float(latency) if latency else None,
            "detail": detail,
        }
        if extra:
            entry["dependencies"] = json.loads(extra)
        envs[-1]["checks"].append(entry)
    for env in envs:
        env["status"] = env_status(env["checks"])
    statuses = [e["status"] for e in envs]
    overall = "down" if "down" in statuses else "degraded" if "degraded" in statuses else "healthy"
    if fmt == "json":
        print(json.dumps({"environments": envs, "status": overall}, indent=2))
    else:
        rows = [("ENV", "CHECK", "STATUS", "LATENCY_MS", "DETAIL")]
        for env in envs:
            for c in env["checks"]:
                latency = "-" if c["latency_ms"] is None else f"{c['latency_ms']:.1f}"
                rows.append((env["name"], c["name"], c["status"], latency, c["detail"]))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3].rjust(widths[3]), r[4]]
            print("  ".join(cells).rstrip())
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("healthy", "degraded", "down"))
        each = "; ".join(f"{e['name']} {e['status']}" for e in envs)
        print(f"summary: {overall}: {len(envs)} environment(s), {counts} ({each})")
    sys.exit({"healthy": 0, "degraded": 1, "down": 2}[overall])

commands = {"live": cmd_live, "ready": cmd_ready, "rpc": cmd_rpc, "tls": cmd_tls, "render": cmd_render}
try:
    commands[sys.argv[1]](*sys.argv[2:])
except Exception as exc:  # an odd answer fails its check instead of aborting the report
    if sys.argv[1] == "render":
        import traceback
        traceback.print_exc()
        sys.exit(70)
    why = short(exc, 120)
    fallback = {"live": f"unreadable body ({why})", "ready": f"unreadable body ({why})\n",
                "rpc": f"fail\tunreadable answer ({why})\t", "tls": f"fail\t0\tTLS: {why}"}
    print(fallback[sys.argv[1]])
PY
)

# Resolved once: python3 is often a version-manager shim that costs a process per call.
python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
[[ -x $python ]] || python=python3
py() { "$python" -c "$py_src" "$@"; }

# Microseconds as milliseconds with one decimal.
fmt_ms() { printf '%d.%d' $((($1 + 50) / 1000)) $(((($1 + 50) / 100) % 10)); }

cur_env="" cur_url="" token=""

# record CHECK STATUS MICROSECONDS|"" DETAIL [DEPENDENCIES_JSON]
record() {
  local detail=$4 latency=""
  [[ -z $3 ]] || latency=$(fmt_ms "$3")
  detail=${detail//$'\t'/ }
  detail=${detail//$'\n'/ }
  detail=${detail//$'\r'/}
  if [[ -n $token ]]; then detail=${detail//"$token"/[redacted]}; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cur_env" "$cur_url" "$1" "$2" "$latency" "$detail" "${5:-}" >>"$results"
}

# http METHOD URL DATA [curl args...]: sets code, us (request time), err; the answer is in
# $work/body and $work/headers.
http() {
  local method=$1 url=$2 data=$3 out rc=0
  shift 3
  local args=(-sS -X "$method" -o "$work/body" -D "$work/headers" --max-time "$timeout"
    --connect-timeout "$timeout" -w '%{http_code} %{time_total}')
  [[ -z $data ]] || args+=(--data-binary "$data")
  : >"$work/body"
  : >"$work/headers"
  out=$(curl "${args[@]}" "$@" "$url" 2>"$work/curl.err") || rc=$?
  code=${out%% *}
  us=0
  if [[ ${out#* } =~ ^([0-9]+)[.,]([0-9]{6})$ ]]; then
    us=$((10#${BASH_REMATCH[1]} * 1000000 + 10#${BASH_REMATCH[2]}))
  fi
  err=""
  if ((rc != 0)); then
    err=$(head -n 1 "$work/curl.err")
    err=${err#curl: }
    [[ ! $err =~ ^\([0-9]+\)\ (.*)$ ]] || err=${BASH_REMATCH[1]}
    err=${err:-curl exit $rc}
    code=000
  fi
}

# Per check: total time, slowest request, and whether the slowest crossed the line.
begin_check() { total_us=0 max_us=0; }
account() {
  total_us=$((total_us + us))
  ((us <= max_us)) || max_us=$us
}
ok_or_slow() {
  if ((max_us > slow_ms * 1000)); then
    printf 'slow'
  else
    printf 'ok'
  fi
}

# Sets token, or token_err when none could be had. Never echoes the token.
get_token() {
  local source=$1 base=$2 var bin key
  token="" token_err=""
  case $source in
    none) ;;
    env:*)
      var=${source#env:}
      token=${!var-}
      [[ -n $token ]] || token_err="token variable $var is empty or unset"
      ;;
    mint*)
      bin=${MCP_TOKEN_BIN:-$(command -v mcp-token || true)}
      if [[ -z $bin || ! -x $bin ]]; then
        token_err="mcp-token not found (put it on PATH or set MCP_TOKEN_BIN)"
        return
      fi
      key=${MCP_SIGNING_KEY-}
      if [[ $source == mint:* ]]; then
        var=${source#mint:}
        key=${!var-}
        if [[ -z $key ]]; then
          token_err="signing key variable $var is empty or unset"
          return
        fi
      fi
      # An empty MCP_SIGNING_KEY would be a different key from "unset" (the development key).
      if [[ -n $key ]]; then
        token=$(MCP_SIGNING_KEY=$key "$bin" --sub health-check --scope "mcp:read mcp:call" \
          --aud "$base/mcp" --ttl-secs 300 2>"$work/mint.err") || token=""
      else
        token=$(env -u MCP_SIGNING_KEY "$bin" --sub health-check --scope "mcp:read mcp:call" \
          --aud "$base/mcp" --ttl-secs 300 2>"$work/mint.err") || token=""
      fi
      [[ -n $token ]] || token_err="mcp-token failed: $(head -n 1 "$work/mint.err")"
      ;;
  esac
  if [[ -n $token && $token =~ [[:space:]] ]]; then
    token="" token_err="token from $source contains whitespace"
  fi
}

resolve_stack() { # stack:NAME[@REGION] -> base or resolve_err
  local spec=${1#stack:} stack region="" out started
  stack=${spec%@*}
  [[ $spec != *@* ]] || region=${spec#*@}
  base="" resolve_err=""
  if ! command -v aws >/dev/null 2>&1; then
    resolve_err="aws CLI not on PATH, cannot read stack $stack"
    return 1
  fi
  local args=(cloudformation describe-stacks --stack-name "$stack" --output text
    --query "Stacks[0].Outputs[?OutputKey=='McpUrl'].OutputValue"
    --cli-connect-timeout "$timeout" --cli-read-timeout "$timeout")
  [[ -z $region ]] || args+=(--region "$region")
  started=${EPOCHREALTIME/[.,]/}
  if ! out=$(aws "${args[@]}" 2>"$work/aws.err"); then
    resolve_us=$((${EPOCHREALTIME/[.,]/} - started))
    resolve_err="describe-stacks $stack failed: $(grep -m 1 . "$work/aws.err" || true)"
    return 1
  fi
  resolve_us=$((${EPOCHREALTIME/[.,]/} - started))
  out=${out//[[:space:]]/}
  if [[ ! $out =~ ^https?://[^/]+(/.*)?/mcp$ ]]; then
    resolve_err="stack $stack has no McpUrl output"
    return 1
  fi
  base=${out%/mcp}
}

meta_2026="\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"$PROTOCOL_2026\",\"io.modelcontextprotocol/clientCapabilities\":{},\"io.modelcontextprotocol/clientInfo\":{\"name\":\"health-check\",\"version\":\"1\"}}"

# rpc_step STEP ID -> step_status, step_detail, step_session (after http)
rpc_step() {
  local out
  out=$(py rpc "$1" "$code" "$work/body" "$work/headers" "$2")
  IFS=$'\t' read -r step_status step_detail step_session <<<"$out" || true
}

check_2026() {
  local base=$1 mcp="$1/mcp" detail
  begin_check
  local common=(-H "Content-Type: application/json" -H "Accept: application/json, text/event-stream"
    -H "MCP-Protocol-Version: $PROTOCOL_2026" "${auth[@]}")
  http POST "$mcp" "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{$meta_2026}}" \
    "${common[@]}" -H "Mcp-Method: server/discover"
  account
  if [[ -n $err ]]; then record mcp_2026 fail "$total_us" "server/discover: $err"; return; fi
  rpc_step discover 1
  if [[ $step_status != ok ]]; then record mcp_2026 fail "$total_us" "server/discover: $step_detail"; return; fi
  detail="discover: $step_detail"
  http POST "$mcp" "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"$HEALTH_TOOL\",\"arguments\":{},$meta_2026}}" \
    "${common[@]}" -H "Mcp-Method: tools/call" -H "Mcp-Name: $HEALTH_TOOL"
  account
  if [[ -n $err ]]; then record mcp_2026 fail "$total_us" "tools/call $HEALTH_TOOL: $err"; return; fi
  rpc_step call 2
  if [[ $step_status != ok ]]; then record mcp_2026 fail "$total_us" "tools/call $HEALTH_TOOL: $step_detail"; return; fi
  record mcp_2026 "$(ok_or_slow)" "$total_us" "$detail; $HEALTH_TOOL $step_detail; slowest $(fmt_ms "$max_us") ms"
}

check_2025() {
  local base=$1 mcp="$1/mcp" session failure="" detail
  begin_check
  local common=(-H "Content-Type: application/json" -H "Accept: application/json, text/event-stream" "${auth[@]}")
  http POST "$mcp" "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"$PROTOCOL_2025\",\"capabilities\":{},\"clientInfo\":{\"name\":\"health-check\",\"version\":\"1\"}}}" \
    "${common[@]}"
  account
  if [[ -n $err ]]; then record mcp_2025 fail "$total_us" "initialize: $err"; return; fi
  rpc_step initialize 1
  if [[ $step_status != ok ]]; then record mcp_2025 fail "$total_us" "initialize: $step_detail"; return; fi
  session=$step_session
  detail=$step_detail
  local in_session=(-H "Mcp-Session-Id: $session" -H "MCP-Protocol-Version: $PROTOCOL_2025")

  http POST "$mcp" '{"jsonrpc":"2.0","method":"notifications/initialized"}' "${common[@]}" "${in_session[@]}"
  account
  if [[ -n $err ]]; then failure="notifications/initialized: $err"; elif [[ $code != 2* ]]; then
    rpc_step notify ""
    failure="notifications/initialized: $step_detail"
  fi
  if [[ -z $failure ]]; then
    http POST "$mcp" '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' "${common[@]}" "${in_session[@]}"
    account
    if [[ -n $err ]]; then failure="tools/list: $err"; else
      rpc_step list 2
      if [[ $step_status == ok ]]; then detail="$detail, $step_detail"; else failure="tools/list: $step_detail"; fi
    fi
  fi
  # The session is closed even after a failed step, so probes never pile up sessions in the store.
  http DELETE "$mcp" "" "${auth[@]}" "${in_session[@]}"
  account
  if [[ -z $failure ]]; then
    if [[ -n $err ]]; then failure="DELETE: $err"; elif [[ $code != 2* ]]; then
      rpc_step delete ""
      failure="DELETE: $step_detail"
    fi
  fi
  if [[ -n $failure ]]; then
    record mcp_2025 fail "$total_us" "$failure"
  else
    record mcp_2025 "$(ok_or_slow)" "$total_us" "$detail, session closed; slowest $(fmt_ms "$max_us") ms"
  fi
}

check_env() {
  local name=$1 url=$2 source=$3 base out tls_status tls_us tls_detail ready_detail ready_deps
  cur_env=$name cur_url=$url token=""
  if [[ $url == stack:* ]]; then
    resolve_us=""
    if ! resolve_stack "$url"; then
      record resolve fail "$resolve_us" "$resolve_err"
      return
    fi
    cur_url=$base
    record resolve ok "$resolve_us" "McpUrl $base/mcp"
  else
    base=$url
  fi

  if [[ $base == https://* ]]; then
    out=$(py tls "$base" "$timeout" "$CERT_WARN_DAYS")
    IFS=$'\t' read -r tls_status tls_us tls_detail <<<"$out" || true
    record tls "$tls_status" "$tls_us" "$tls_detail"
  fi

  begin_check
  http GET "$base/health/live" ""
  account
  if [[ -n $err ]]; then
    record liveness fail "$total_us" "$err"
  elif [[ $code != 200 ]]; then
    record liveness fail "$total_us" "HTTP $code"
  else
    record liveness "$(ok_or_slow)" "$total_us" "$(py live "$work/body")"
  fi
  if [[ -n $err || $code != 200 ]]; then
    local skipped
    for skipped in readiness mcp_2026 mcp_2025; do
      record "$skipped" skip "" "not run: liveness failed"
    done
    return
  fi

  begin_check
  http GET "$base/health/ready" ""
  account
  if [[ -n $err ]]; then
    record readiness fail "$total_us" "$err"
  else
    out=$(py ready "$code" "$work/body")
    ready_detail=${out%%$'\n'*}
    ready_deps=""
    [[ $out != *$'\n'* ]] || ready_deps=${out#*$'\n'}
    if [[ $code == 200 ]]; then
      record readiness "$(ok_or_slow)" "$total_us" "$ready_detail" "$ready_deps"
    else
      record readiness fail "$total_us" "$ready_detail" "$ready_deps"
    fi
  fi

  get_token "$source" "$base"
  if [[ -n $token_err ]]; then
    record mcp_2026 fail "" "no token: $token_err"
    record mcp_2025 fail "" "no token: $token_err"
    return
  fi
  auth=()
  if [[ -n $token ]]; then
    # Passed through a file so the token shows up in no process listing.
    printf 'Authorization: Bearer %s\n' "$token" >"$work/auth"
    auth=(-H "@$work/auth")
  fi
  check_2026 "$base"
  check_2025 "$base"
  rm -f -- "$work/auth"
}

for i in "${selected[@]}"; do
  check_env "${env_names[i]}" "${env_urls[i]}" "${env_tokens[i]}"
done
token=""

format=table
((json == 0)) || format=json
rc=0
py render "$format" "$results" || rc=$?
exit "$rc"
