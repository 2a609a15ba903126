#!/usr/bin/env bash
# Provisions and runs the MCP server on AWS from one menu: credentials, the signing-key secret,
# the SAM stacks per environment, CloudFront, the billing guard, the EC2+RDS staging tier, the
# health check, this month's cost, teardown, rolling a deployment back, rehearsing a restore and
# checking the backups. DEPLOY.md explains each step by hand.
#
# Usage:
#   provision-aws-startup.sh                          the numbered menu, answers read from stdin
#   provision-aws-startup.sh --action ACTION [options]
#   provision-aws-startup.sh --help
#
# Actions (the menu offers the same, numbered 1 to 12):
#   check        aws --version, sam --version, the account and caller ARN
#                (aws sts get-caller-identity), and the status of mcp-dev, mcp-staging and
#                mcp-prod (a stack that does not exist is reported, not an error)
#   secrets      rotate mcp/<env>/signing-keys: a new random 64-hex-digit key with the UTC time
#                as its kid (YYYYmmddHHMMSS) goes first, the existing keys are kept behind it
#                ({"kid","secret"} or {"keys":[...]}), at most 3 in all (the oldest go). The key
#                travels only in a mode-600 temporary file (file://); it is never on a command
#                line or printed. Mint new tokens with --kid <the new kid>. The secret itself
#                comes with the mcp-<env> stack (its first deploy creates it with a random
#                key), so a missing secret is an error that says to deploy first.
#   deploy       sam build --config-env ENV, then sam deploy --config-env ENV
#   cloudfront   mcp-ENV-cloudfront from cloudformation/cloudfront.yaml, in front of the API
#                host read from the McpUrl output of mcp-ENV (--param ApiDomainName=HOST skips
#                that lookup); us-east-1 unless --param EnableWaf=false
#   billing      mcp-billing from cloudformation/billing.yaml, always in us-east-1
#   staging-ec2  mcp-staging-ec2 from cloudformation/staging.yaml (needs --release-bucket and
#                --release-key: where the mcp-server release is in S3)
#   health       scripts/health-check.sh all report, or scripts/health-check.sh ENV with --env;
#                exits with its code (0 healthy, 1 degraded, 2 down, 64 its usage error)
#   cost         scripts/cost-report.sh (with --dry-run when given); exits with its code
#   teardown     sam delete --config-env ENV --no-prompts, then prints, without running them,
#                the commands that delete the data the stack keeps (table, bucket, KMS key):
#                deleting data stays a deliberate step of its own
#   rollback     mcp-ENV's function (--function) back to the version before: a CodeDeploy
#                deployment in progress is stopped (CodeDeploy points the alias live back, and
#                CloudFormation rolls the stack update back); with none in progress the alias
#                live is pointed at the newest version older than the one it serves
#   restore-drill  rehearses a restore of mcp-ENV: restores its table to the latest restorable
#                time into a scratch table mcp-ENV-drill-YYYYmmddHHMMSS (under the table's own
#                KMS key, if it has one) and waits until it is ready; compares the number of
#                STATE, SESSION and RATE items of both tables; checks that the files bucket keeps
#                versions and names its newest object version; reports the restore point and the
#                time taken; deletes the scratch table unless --keep. Exits 1 naming each
#                difference
#   backup-verify  the read-only half of restore-drill: whether point-in-time recovery is on and
#                its earliest and latest restorable times, the files bucket's versioning, and
#                the signing keys' rotation schedule and age. Exits 1 naming what is off
#
# Options:
#   --env dev|staging|prod   required by secrets, deploy, cloudfront, teardown, rollback,
#                            restore-drill and backup-verify
#   --region REGION          passed as --region to aws and sam (billing is always us-east-1,
#                            cloudfront too while its WAF is on)
#   --param KEY=VALUE        a parameter override for deploy, cloudfront, billing, staging-ec2;
#                            repeatable, a later value replaces an earlier one of the same KEY.
#                            For deploy they are merged into samconfig.toml's
#                            parameter_overrides of that environment and passed to sam build and
#                            sam deploy, because on the command line --parameter-overrides
#                            replaces the configured list instead of adding to it
#   --email ADDR             billing: NotificationEmail; staging-ec2: AlarmEmail
#   --budget USD             billing: MonthlyBudgetUsd and AlarmThresholdUsd (default 50)
#   --domain NAME            cloudfront: AliasDomainName (needs --certificate-arn)
#   --certificate-arn ARN    cloudfront: AcmCertificateArn, an ACM certificate in us-east-1
#   --release-bucket NAME    staging-ec2: ReleaseBucket
#   --release-key KEY        staging-ec2: ReleaseKey
#   --function mcp|authorizer  rollback: the MCP function (default) or the authorizer
#   --keep                   restore-drill: leave the scratch table (billed until deleted)
#   --yes                    answer every confirmation with yes (also SAM's change-set prompt
#                            of prod, which would otherwise wait on stdin)
#   --dry-run                print each aws and sam command as "+ aws ..." / "+ sam ..." on
#                            stdout, shell-quoted, instead of running it; asks nothing, creates
#                            nothing, calls nothing (aws and sam must still be on PATH; cost
#                            runs cost-report.sh --dry-run, which prints its own). What a
#                            lookup would have returned appears as a placeholder between @ signs
#                            (@account@, @api-host@, @new-keys.json@); secrets prints both the
#                            rotation and the creation branch, each after a "#" line
#   -h, --help               this text
# Options an action does not use are ignored. HEALTH_CHECK_CONFIG=FILE is passed to
# health-check.sh as --config FILE. RESTORE_POLL_SECS (0 to 3600, default 20) is how often
# restore-drill asks whether the scratch table is ready.
#
# Every action first checks that aws, sam and python3 (3.11 or newer) are on PATH and that
# aws sts get-caller-identity answers. Outside --dry-run each command is shown as "+ ..." on
# stderr before it runs, and the first that fails stops the action.
#
# Confirmations: deploy and rollback to prod and teardown ask to type the environment name;
# secrets, cloudfront and staging-ec2 (which cost money or replace keys in use) ask [y/N];
# billing, check, health, cost, restore-drill, backup-verify, and deploy and rollback to dev or
# staging ask nothing. Answers are read from stdin: in the menu always, with --action only when
# stdin is a terminal. With --action, stdin not a
# terminal and no --yes, a confirmation is impossible: the action stops with exit code 3 after
# the credentials check, before any other command. Any answer but y/yes (or the exact name),
# and end of input, refuses: nothing is done.
#
# The menu: each choice runs one action and comes back (asking for the environment and any
# other value it needs); an unknown choice shows the menu again; q or end of input quits with 0.
#
# Exit codes: 0 done, 1 an aws or sam command failed (it is named) or answered something
# unusable, or a drill or check found a difference (named), 2 usage error or bad value,
# 3 confirmation refused or impossible, 69 aws, sam or python3 missing or no AWS credentials;
# health and cost end with their script's own code.
set -euo pipefail

readonly EX_FAILED=1 EX_USAGE=2 EX_NOT_CONFIRMED=3 EX_UNAVAILABLE=69
readonly ME=provision-aws-startup.sh
readonly MAX_KEYS=3 DEFAULT_BUDGET=50
readonly REGION_RE='^[a-z]{2}(-[a-z]+)+-[0-9]$'
readonly API_HOST_RE='^[a-z0-9]{10}\.execute-api\.[a-z]{2}(-[a-z]+)+-[0-9]\.amazonaws\.com$'
readonly ACTIONS=(check secrets deploy cloudfront billing staging-ec2 health cost teardown rollback restore-drill
  backup-verify)
# The item kinds restore-drill counts: what the partition key starts with (store/dynamo.rs).
readonly ITEM_KINDS=(STATE SESSION RATE)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

say() { printf '%s: %s\n' "$ME" "$*" >&2; }

die() {
  local code="$1"
  shift
  say "$@"
  exit "$code"
}

usage_error() {
  say "$1"
  printf "Run '%s --help' for usage.\n" "$ME" >&2
  exit "$EX_USAGE"
}

# --- arguments -----------------------------------------------------------------------------
action=""
env=""
region=""
email=""
budget="$DEFAULT_BUDGET"
domain=""
certificate_arn=""
release_bucket=""
release_key=""
function=mcp
keep=false
assume_yes=false
dry_run=false
params=()

valid_env() { [[ $1 =~ ^(dev|staging|prod)$ ]]; }

check_env() {
  valid_env "$1" || usage_error "--env must be dev, staging or prod, got '$1'"
}

check_budget() {
  local whole
  [[ $1 =~ ^([0-9]{1,7})(\.[0-9]+)?$ ]] || usage_error "--budget must be a positive number of USD, got '$1'"
  whole=$((10#${BASH_REMATCH[1]}))
  # billing.yaml accepts 1 to 1000000; CloudFormation would refuse the rest only after the upload.
  if ((whole < 1 || whole > 1000000)) || { ((whole == 1000000)) && [[ ! ${BASH_REMATCH[2]} =~ ^(\.0+)?$ ]]; }; then
    usage_error "--budget must be a positive number of USD from 1 to 1000000, got '$1'"
  fi
}

check_email() {
  [[ -z $1 || $1 =~ ^[^@[:space:]]+@[^@[:space:]]+$ ]] || usage_error "--email must be an e-mail address, got '$1'"
}

while (($#)); do
  opt=$1
  value=""
  case $opt in
    -h | --help) usage; exit 0 ;;
    --yes) assume_yes=true; shift; continue ;;
    --dry-run) dry_run=true; shift; continue ;;
    --keep) keep=true; shift; continue ;;
    --*=*) value=${opt#*=}; opt=${opt%%=*} ;;
    --action | --env | --region | --param | --email | --budget | --domain | --certificate-arn | \
      --release-bucket | --release-key | --function)
      # A following option means the value was left out, not that it is the value.
      (($# >= 2)) && [[ $2 != --* ]] || usage_error "$opt needs a value"
      value=$2
      shift
      ;;
    -*) usage_error "unknown option '$opt'" ;;
    *) usage_error "unexpected argument '$opt'" ;;
  esac
  case $opt in
    --action) action=$value ;;
    --env) env=$value ;;
    --region) region=$value ;;
    --param) params+=("$value") ;;
    --email) email=$value ;;
    --budget) budget=$value ;;
    --domain) domain=$value ;;
    --certificate-arn) certificate_arn=$value ;;
    --release-bucket) release_bucket=$value ;;
    --release-key) release_key=$value ;;
    --function) function=$value ;;
    *) usage_error "unknown option '$opt'" ;;
  esac
  shift
done

if [[ -n $action && " ${ACTIONS[*]} " != *" $action "* ]]; then
  usage_error "unknown action '$action' (one of: ${ACTIONS[*]})"
fi
[[ -z $env ]] || check_env "$env"
[[ -z $region || $region =~ $REGION_RE ]] || usage_error "--region must look like us-east-1, got '$region'"
check_budget "$budget"
check_email "$email"
for param in "${params[@]}"; do
  [[ $param =~ ^[A-Za-z0-9]+= ]] || usage_error "--param must be KEY=VALUE with an alphanumeric KEY, got '$param'"
done
[[ $function =~ ^(mcp|authorizer)$ ]] || usage_error "--function must be mcp or authorizer, got '$function'"
restore_poll="${RESTORE_POLL_SECS:-20}"
if [[ ! $restore_poll =~ ^[0-9]{1,4}$ ]] || ((10#$restore_poll > 3600)); then
  usage_error "RESTORE_POLL_SECS must be a whole number of seconds from 0 to 3600, got '$restore_poll'"
fi
if [[ -n $domain && -z $certificate_arn ]] || [[ -z $domain && -n $certificate_arn ]]; then
  usage_error "--domain and --certificate-arn go together (the certificate must cover the domain)"
fi
case $action in
  secrets | deploy | cloudfront | teardown | rollback | restore-drill | backup-verify)
    [[ -n $env ]] || usage_error "--action $action needs --env dev, staging or prod" ;;
  staging-ec2)
    [[ -n $release_bucket && -n $release_key ]] ||
      usage_error "--action staging-ec2 needs --release-bucket and --release-key" ;;
esac
# The actions run from the repository root; a relative config path meant the caller's directory.
health_config="${HEALTH_CHECK_CONFIG:-}"
if [[ -n $health_config && $health_config != /* ]]; then
  health_config="$PWD/$health_config"
fi
cd "$root"

region_opt=()
[[ -z $region ]] || region_opt=(--region "$region")
menu=false
account=""

# --- running commands ----------------------------------------------------------------------
show() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
}

# Runs a command with the operator's terminal, or only prints it under --dry-run.
run() {
  if $dry_run; then
    show "$@"
    return 0
  fi
  show "$@" >&2
  local rc=0
  "$@" || rc=$?
  ((rc == 0)) || die "$EX_FAILED" "failed (exit $rc): $(show "$@" | cut -c3-)"
}

# Runs a read-only command into FILE (stderr into FILE.err) and returns its exit code; the
# caller decides which failures are expected. Not for --dry-run.
capture() {
  local file="$1"
  shift
  show "$@" >&2
  local rc=0
  "$@" <"/dev/null" >"$file" 2>"$file.err" || rc=$?
  return "$rc"
}

capture_or_die() {
  if ! capture "$@"; then
    cat -- "$1.err" >&2
    shift
    die "$EX_FAILED" "failed: $(show "$@" | cut -c3-)"
  fi
}

# --- prerequisites and confirmations -------------------------------------------------------
tools_on_path() {
  local tool
  for tool in aws sam python3; do
    command -v "$tool" >/dev/null 2>&1 ||
      die "$EX_UNAVAILABLE" "$tool is not on PATH; install it first (DEPLOY.md, Prerequisites)"
  done
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$EX_UNAVAILABLE" "python3 is older than 3.11 (tomllib reads samconfig.toml); install a newer one"
}

credentials() {
  local sts=(aws sts get-caller-identity "${region_opt[@]}" --output json)
  if $dry_run; then
    show "${sts[@]}"
    account=@account@
    return
  fi
  if ! capture "$work/identity.json" "${sts[@]}"; then
    cat -- "$work/identity.json.err" >&2
    die "$EX_UNAVAILABLE" "no AWS credentials: run aws configure or set AWS_PROFILE"
  fi
  local identity
  identity=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["Account"], d["Arn"])' \
    "$work/identity.json" 2>/dev/null) || die "$EX_FAILED" "aws sts get-caller-identity answered something unexpected"
  account=${identity%% *}
  caller_arn=${identity#* }
}

prerequisites() {
  tools_on_path
  credentials
}

# Fails with EX_NOT_CONFIRMED unless --yes, or the operator answers PROMPT with EXPECTED
# (y or yes when EXPECTED is empty); NOTICE, if any, is shown before the prompt.
confirm() {
  local prompt="$1" expected="${2:-}" notice="${3:-}" answer=""
  if $assume_yes || $dry_run; then
    return 0
  fi
  if ! $menu && [[ ! -t 0 ]]; then
    die "$EX_NOT_CONFIRMED" "--action $action needs confirmation: rerun with --yes, or from a terminal"
  fi
  [[ -z $notice ]] || say "$notice"
  printf '%s ' "$prompt" >&2
  IFS= read -r answer || printf '\n' >&2
  answer=${answer%$'\r'}
  if [[ -n $expected ]]; then
    [[ $answer == "$expected" ]] && return 0
  else
    [[ ${answer,,} == y || ${answer,,} == yes ]] && return 0
  fi
  die "$EX_NOT_CONFIRMED" "not confirmed; nothing done"
}

confirm_env_name() {
  confirm "Type the environment name ($env) to confirm:" "$env" "$1"
}

# KEY=VALUE items of `merged`, with each --param replacing the item of its KEY or added last.
merge_params() {
  local item i replaced
  for item in "${params[@]}"; do
    replaced=false
    for i in "${!merged[@]}"; do
      if [[ ${merged[i]%%=*} == "${item%%=*}" ]]; then
        merged[i]=$item
        replaced=true
      fi
    done
    $replaced || merged+=("$item")
  done
}

param_value() { # KEY: the value of KEY in `merged`, or nothing
  local item
  for item in "${merged[@]}"; do
    [[ ${item%%=*} != "$1" ]] || printf '%s' "${item#*=}"
  done
}

# --- actions -------------------------------------------------------------------------------
action_check() {
  tools_on_path
  local stacks=() name
  for name in dev staging prod; do
    stacks+=("mcp-$name")
  done
  if $dry_run; then
    show aws --version
    show sam --version
    credentials
    for name in "${stacks[@]}"; do
      show aws cloudformation describe-stacks "${region_opt[@]}" --stack-name "$name" \
        --query 'Stacks[0].StackStatus' --output text
    done
    return
  fi
  capture_or_die "$work/aws-version" aws --version
  capture_or_die "$work/sam-version" sam --version
  # aws CLI v1 printed its version on stderr.
  printf 'aws: %s\n' "$(cat -- "$work/aws-version" "$work/aws-version.err" | head -n1)"
  printf 'sam: %s\n' "$(head -n1 -- "$work/sam-version")"
  credentials
  printf 'account: %s\ncaller: %s\nregion: %s\n' "$account" "$caller_arn" "${region:-the aws CLI default}"
  for name in "${stacks[@]}"; do
    if capture "$work/status" aws cloudformation describe-stacks "${region_opt[@]}" --stack-name "$name" \
      --query 'Stacks[0].StackStatus' --output text; then
      printf '%s: %s\n' "$name" "$(head -n1 -- "$work/status")"
    elif grep -q 'does not exist' "$work/status.err"; then
      printf '%s: not deployed\n' "$name"
    else
      cat -- "$work/status.err" >&2
      die "$EX_FAILED" "failed: aws cloudformation describe-stacks --stack-name $name"
    fi
  done
}

action_secrets() {
  prerequisites
  local id="mcp/$env/signing-keys" kid
  local describe=(aws secretsmanager describe-secret "${region_opt[@]}" --secret-id "$id")
  local get=(aws secretsmanager get-secret-value "${region_opt[@]}" --secret-id "$id" --query SecretString --output text)
  confirm "Rotate the signing key in $id (account $account)? The new key signs from now on. [y/N]"
  if $dry_run; then
    show "${describe[@]}"
    show "${get[@]}"
    show aws secretsmanager put-secret-value "${region_opt[@]}" --secret-id "$id" --secret-string file://@new-keys.json@
    return
  fi

  # Key material only ever sits in files nobody else can read, inside the action's own
  # directory that the EXIT trap removes.
  local old_umask current="" keys_file kids
  old_umask=$(umask)
  umask 077
  keys_file=$(mktemp "$work/keys.XXXXXX")
  if ! capture "$work/describe.json" "${describe[@]}"; then
    if grep -q ResourceNotFoundException "$work/describe.json.err"; then
      die "$EX_FAILED" "$id does not exist: deploy mcp-$env first (--action deploy --env $env); its first deploy creates the secret with a random key, which this action then rotates"
    fi
    cat -- "$work/describe.json.err" >&2
    die "$EX_FAILED" "failed: $(show "${describe[@]}" | cut -c3-)"
  fi
  current=$(mktemp "$work/current.XXXXXX")
  capture_or_die "$current" "${get[@]}"
  kid=$(date -u +%Y%m%d%H%M%S)
  kids=$(python3 - "$current" "$keys_file" "$kid" "$MAX_KEYS" <<'PY'
import json
import secrets
import sys

current, out, kid, max_keys = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(current, encoding="utf-8") as f:
    text = f.read().strip()
try:
    doc = json.loads(text)
except ValueError:
    doc = None
# The stack creates one key alone; the functions read either form.
if isinstance(doc, dict) and set(doc) == {"kid", "secret"}:
    doc = {"keys": [doc]}
well_formed = (
    isinstance(doc, dict)
    and set(doc) == {"keys"}
    and isinstance(doc["keys"], list)
    and all(
        isinstance(e, dict) and set(e) == {"kid", "secret"} and all(isinstance(v, str) for v in e.values())
        for e in doc["keys"]
    )
)
if not well_formed:
    sys.exit('the secret is neither {"kid":..,"secret":..} nor {"keys":[..]}; left unchanged')
entries = doc["keys"]
# Two rotations within one second must not repeat a kid: the functions refuse a repeated one.
taken = {e["kid"] for e in entries}
base, n = kid, 1
while kid in taken:
    n += 1
    kid = f"{base}-{n}"
keys = [{"kid": kid, "secret": secrets.token_hex(32)}] + entries[: max_keys - 1]
with open(out, "w", encoding="utf-8") as f:
    json.dump({"keys": keys}, f, separators=(",", ":"))
print(" ".join(e["kid"] for e in keys))
print(" ".join(e["kid"] for e in entries[max_keys - 1 :]))
PY
  ) || die "$EX_FAILED" "could not build the new key list of $id"
  umask "$old_umask"
  local kept dropped
  kept=$(head -n1 <<<"$kids")
  dropped=$(sed -n 2p <<<"$kids")
  kid=${kept%% *}
  run aws secretsmanager put-secret-value "${region_opt[@]}" --secret-id "$id" --secret-string "file://$keys_file"
  rm -f -- "$keys_file" "$current"
  printf 'new signing key %s is first in %s (keys, newest first: %s)\n' "$kid" "$id" "$kept"
  [[ -z $dropped ]] || printf 'dropped the oldest (at most %d are kept): %s; tokens signed with it no longer verify\n' "$MAX_KEYS" "$dropped"
  printf 'Mint new tokens with --kid %s (mcp-token --kid %s ...). Running functions take the key at once\n' "$kid" "$kid"
  printf 'for a token with that kid, otherwise within MCP_SECRET_REFRESH_SECS (300 s). Remove the old\n'
  printf 'keys (rotate again, or edit the secret) after the longest token lifetime has passed.\n'
}

action_deploy() {
  prerequisites
  local overrides=() merged=()
  if ((${#params[@]})); then
    # On the command line --parameter-overrides replaces samconfig's list, so start from it.
    if ! python3 - samconfig.toml "$env" >"$work/overrides" <<'PY'
import shlex
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
value = config.get(sys.argv[2], {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
items = value if isinstance(value, list) else shlex.split(value)
for item in items:
    sys.stdout.write(item + "\0")
PY
    then
      die "$EX_FAILED" "could not read parameter_overrides of [$env.deploy.parameters] in samconfig.toml"
    fi
    mapfile -d '' merged <"$work/overrides"
    merge_params
    local item value
    for item in "${merged[@]}"; do
      value=${item#*=}
      # SAM splits the list on blanks unless a value is double-quoted.
      if [[ $value =~ [[:space:]\"] ]]; then
        value=${value//\\/\\\\}
        item="${item%%=*}=\"${value//\"/\\\"}\""
      fi
      overrides+=("$item")
    done
    overrides=(--parameter-overrides "${overrides[@]}")
  fi
  local changeset=()
  if [[ $env == prod ]]; then
    confirm_env_name "This deploys to production (mcp-prod, account $account)."
    # samconfig asks SAM to confirm prod's change set; --yes already answered for the operator.
    ! $assume_yes || changeset=(--no-confirm-changeset)
  fi
  run sam build --config-env "$env" "${overrides[@]}"
  run sam deploy --config-env "$env" "${region_opt[@]}" "${overrides[@]}" "${changeset[@]}"
}

action_cloudfront() {
  prerequisites
  local merged=(Environment="$env" ApiDomainName=@api-host@)
  [[ -z $domain ]] || merged+=(AliasDomainName="$domain" AcmCertificateArn="$certificate_arn")
  local host_given=false param
  for param in "${params[@]}"; do
    [[ $param != ApiDomainName=* ]] || host_given=true
  done
  merge_params
  local cf_region=(--region us-east-1)
  # A CLOUDFRONT-scoped web ACL exists only in us-east-1; without WAF the stack may live anywhere.
  [[ $(param_value EnableWaf) != false ]] || cf_region=("${region_opt[@]}")
  confirm "Deploy mcp-$env-cloudfront (CloudFront + WAF, about \$10 a month at 1 M requests) in account $account? [y/N]"
  if ! $host_given; then
    local lookup=(aws cloudformation describe-stacks "${region_opt[@]}" --stack-name "mcp-$env"
      --query "Stacks[0].Outputs[?OutputKey=='McpUrl'].OutputValue" --output text)
    local host=@api-host@
    if $dry_run; then
      show "${lookup[@]}"
    else
      capture_or_die "$work/mcp-url" "${lookup[@]}"
      local url
      url=$(head -n1 -- "$work/mcp-url")
      host=${url#*://}
      host=${host%%/*}
      # After PublicBaseUrl is set, McpUrl names the public host, not the API's.
      [[ $host =~ $API_HOST_RE ]] ||
        die "$EX_FAILED" "the McpUrl output of mcp-$env is '$url', not an execute-api URL; pass --param ApiDomainName=<id>.execute-api.<region>.amazonaws.com"
    fi
    local i
    for i in "${!merged[@]}"; do
      [[ ${merged[i]} != ApiDomainName=@api-host@ ]] || merged[i]=ApiDomainName=$host
    done
  fi
  run aws cloudformation deploy "${cf_region[@]}" --stack-name "mcp-$env-cloudfront" \
    --template-file cloudformation/cloudfront.yaml --no-fail-on-empty-changeset \
    --parameter-overrides "${merged[@]}"
  local again=(--action deploy --env "$env" "${region_opt[@]}")
  if [[ -n $domain ]]; then
    printf 'Next: point %s (CNAME or Route 53 alias) at the DistributionDomainName output, then\n' "$domain"
    printf 'redeploy the API so that it expects tokens for the public URL:\n'
    printf '  %s %s --param PublicBaseUrl=https://%s\n' "$ME" "${again[*]}" "$domain"
  else
    printf 'Next: redeploy the API so that it expects tokens for the public URL:\n'
    printf '  %s %s --param PublicBaseUrl=https://DISTRIBUTION\n' "$ME" "${again[*]}"
    printf 'where DISTRIBUTION is what this prints:\n'
    printf '  aws cloudformation describe-stacks %s --stack-name mcp-%s-cloudfront --query %s --output text\n' \
      "${cf_region[*]}" "$env" "\"Stacks[0].Outputs[?OutputKey=='DistributionDomainName'].OutputValue\""
  fi
}

action_billing() {
  prerequisites
  local merged=(MonthlyBudgetUsd="$budget" AlarmThresholdUsd="$budget")
  [[ -z $email ]] || merged+=(NotificationEmail="$email")
  merge_params
  run aws cloudformation deploy --region us-east-1 --stack-name mcp-billing \
    --template-file cloudformation/billing.yaml --no-fail-on-empty-changeset \
    --parameter-overrides "${merged[@]}"
  printf 'The alarm only sees data once "Receive CloudWatch billing alerts" is on in the Billing preferences.\n'
  [[ -z $email ]] || printf 'Confirm the subscription e-mail SNS sends to %s.\n' "$email"
}

action_staging_ec2() {
  prerequisites
  local merged=(ReleaseBucket="$release_bucket" ReleaseKey="$release_key")
  [[ -z $email ]] || merged+=(AlarmEmail="$email")
  merge_params
  confirm "Deploy mcp-staging-ec2 (EC2, ALB, RDS: about \$9.60 a month inside the Free Tier, \$53.60 after) in account $account? [y/N]"
  run aws cloudformation deploy "${region_opt[@]}" --stack-name mcp-staging-ec2 \
    --template-file cloudformation/staging.yaml --capabilities CAPABILITY_IAM \
    --no-fail-on-empty-changeset --parameter-overrides "${merged[@]}"
}

# Runs one of the other operator scripts and exits with its code, whatever it is.
delegate() {
  if $dry_run; then
    show "$@"
    return 0
  fi
  show "$@" >&2
  local rc=0
  "$@" || rc=$?
  exit "$rc"
}

action_health() {
  prerequisites
  local args=()
  [[ -z $health_config ]] || args+=(--config "$health_config")
  if [[ -n $env ]]; then args+=("$env"); else args+=(all report); fi
  delegate scripts/health-check.sh "${args[@]}"
}

action_cost() {
  prerequisites
  local rc=0
  if $dry_run; then
    scripts/cost-report.sh --dry-run || rc=$?
  else
    show scripts/cost-report.sh >&2
    scripts/cost-report.sh || rc=$?
  fi
  exit "$rc"
}

action_teardown() {
  prerequisites
  confirm_env_name "This deletes the stack mcp-$env (account $account): its API, functions and signing-key secret."
  run sam delete --config-env "$env" --no-prompts "${region_opt[@]}"
  local r="${region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-<region>}}}" ro=""
  [[ -z $region ]] || ro=" --region $region"
  printf 'The table, the files bucket and the KMS key are kept, so deleting a stack never deletes data.\n'
  printf 'To delete them too, after checking nothing in them is needed:\n'
  [[ $env != prod ]] || printf '  aws dynamodb update-table%s --table-name mcp-prod --no-deletion-protection-enabled\n' "$ro"
  printf '  aws dynamodb delete-table%s --table-name mcp-%s\n' "$ro" "$env"
  printf '  aws s3api delete-bucket%s --bucket mcp-%s-files-%s-%s   # after emptying every object version\n' \
    "$ro" "$env" "$account" "$r"
  printf '  aws kms schedule-key-deletion%s --key-id alias/mcp-%s --pending-window-in-days 7\n' "$ro" "$env"
}

# Sets `resource_cmd` to the command that prints the physical id of LOGICAL in mcp-ENV.
describe_resource() {
  resource_cmd=(aws cloudformation describe-stack-resource "${region_opt[@]}" --stack-name "mcp-$env"
    --logical-resource-id "$1" --query StackResourceDetail.PhysicalResourceId --output text)
}

# The physical id of LOGICAL in mcp-ENV into FILE; returns 1 when the stack or that resource
# does not exist, and stops the action on any other failure.
stack_resource() {
  describe_resource "$1"
  capture "$2" "${resource_cmd[@]}" && return 0
  if grep -q 'does not exist' "$2.err"; then
    return 1
  fi
  cat -- "$2.err" >&2
  die "$EX_FAILED" "failed: $(show "${resource_cmd[@]}" | cut -c3-)"
}

# Prints the value at the dotted PATH of the JSON in FILE, empty when absent.
json_field() {
  python3 - "$1" "$2" 2>/dev/null <<'PY' || die "$EX_FAILED" "$1 is not the JSON aws answers with"
import json
import sys

value = json.load(open(sys.argv[1], encoding="utf-8"))
for part in sys.argv[2].split("."):
    value = value.get(part) if isinstance(value, dict) else None
print("" if value is None else value)
PY
}

action_rollback() {
  prerequisites
  local name="mcp-$env" group=McpFunctionDeploymentGroup
  if [[ $function == authorizer ]]; then
    name="mcp-$env-authorizer"
    group=AuthorizerFunctionDeploymentGroup
  fi
  [[ $env != prod ]] || confirm_env_name "This rolls $name back in production (account $account)."
  local statuses=(--include-only-statuses Created Queued InProgress Baking Ready)
  local get_alias=(aws lambda get-alias "${region_opt[@]}" --function-name "$name" --name live
    --query FunctionVersion --output text)
  local versions=(aws lambda list-versions-by-function "${region_opt[@]}" --function-name "$name"
    --query 'Versions[].Version' --output json)
  local update=(aws lambda update-alias "${region_opt[@]}" --function-name "$name" --name live)
  local update_tail=(--routing-config 'AdditionalVersionWeights={}' --query FunctionVersion --output text)
  if $dry_run; then
    describe_resource ServerlessDeploymentApplication
    show "${resource_cmd[@]}"
    describe_resource "$group"
    show "${resource_cmd[@]}"
    show aws deploy list-deployments "${region_opt[@]}" --application-name @application@ \
      --deployment-group-name @deployment-group@ "${statuses[@]}" --query deployments --output text
    printf '# with a deployment in progress:\n'
    show aws deploy stop-deployment "${region_opt[@]}" --deployment-id @deployment-id@ --auto-rollback-enabled
    printf '# with none:\n'
    show "${get_alias[@]}"
    show "${versions[@]}"
    show "${update[@]}" --function-version @previous-version@ "${update_tail[@]}"
    return
  fi

  # A stack deployed before it had deployment groups has nothing in progress to stop.
  if stack_resource ServerlessDeploymentApplication "$work/application" && stack_resource "$group" "$work/group"; then
    capture_or_die "$work/deployments" aws deploy list-deployments "${region_opt[@]}" \
      --application-name "$(head -n1 -- "$work/application")" \
      --deployment-group-name "$(head -n1 -- "$work/group")" "${statuses[@]}" --query deployments --output text
    local ids=() words word
    while read -r -a words; do
      for word in "${words[@]}"; do
        [[ ! $word =~ ^d-[A-Z0-9]+$ ]] || ids+=("$word")
      done
    done <"$work/deployments"
    if ((${#ids[@]})); then
      for word in "${ids[@]}"; do
        run aws deploy stop-deployment "${region_opt[@]}" --deployment-id "$word" --auto-rollback-enabled
      done
      printf 'Stopped deployment %s of %s: CodeDeploy points %s:live back at the version it served before,\n' \
        "${ids[*]}" "$name" "$name"
      printf 'and CloudFormation rolls the update of mcp-%s back.\n' "$env"
      return
    fi
  fi

  if ! capture "$work/alias" "${get_alias[@]}"; then
    cat -- "$work/alias.err" >&2
    grep -q ResourceNotFoundException "$work/alias.err" &&
      die "$EX_FAILED" "$name has no alias live: deploy mcp-$env (--action deploy) before rolling it back"
    die "$EX_FAILED" "failed: $(show "${get_alias[@]}" | cut -c3-)"
  fi
  capture_or_die "$work/versions" "${versions[@]}"
  local current previous
  current=$(head -n1 -- "$work/alias")
  previous=$(python3 - "$work/versions" "$current" <<'PY'
import json
import sys

current = sys.argv[2].strip()
if not current.isdigit():
    sys.exit(f"the alias live serves '{current}', not a published version")
with open(sys.argv[1], encoding="utf-8") as f:
    published = [int(v) for v in json.load(f) if isinstance(v, str) and v.isdigit()]
earlier = [v for v in published if v < int(current)]
if not earlier:
    sys.exit(f"the alias live serves version {current}; no earlier version is published")
print(max(earlier))
PY
  ) || die "$EX_FAILED" "$name cannot be rolled back"
  run "${update[@]}" --function-version "$previous" "${update_tail[@]}"
  printf '%s:live now serves version %s instead of %s.\n' "$name" "$previous" "$current"
  printf 'The stack still names version %s: deploying a fixed build publishes a newer version and moves\n' "$current"
  printf 'the alias to it; deploying the same build again changes nothing.\n'
  if [[ $function == mcp ]]; then
    printf "Task runs invoke the function itself, unqualified (\$LATEST), which keeps the code of version %s\n" "$current"
    printf 'until the next deploy.\n'
  fi
}

# The drill's and the check's report from the aws answers in $work; exits 1 naming each
# difference. MODE is drill or verify.
report() {
  python3 - "$@" <<'PY'
import json
import os
import sys
from datetime import datetime, timezone

mode, work, table, bucket = sys.argv[1:5]
now = datetime.now(timezone.utc)


def load(name):
    with open(os.path.join(work, name), encoding="utf-8") as f:
        return json.load(f)


def text(name):
    with open(os.path.join(work, name), encoding="utf-8") as f:
        return f.read().strip()


def when(value):
    """A timestamp as the aws CLI prints it (ISO 8601, or epoch seconds with CLI v1)."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def show(stamp):
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def span(seconds):
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


failures = []
pitr = load("backups.json")["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
    earliest, latest = when(pitr["EarliestRestorableDateTime"]), when(pitr["LatestRestorableDateTime"])
    print(f"point-in-time recovery of {table}: on, restorable from {show(earliest)} to {show(latest)}")
else:
    print(f"point-in-time recovery of {table}: {pitr.get('PointInTimeRecoveryStatus', 'off')}")
    failures.append(f"point-in-time recovery of {table} is off")

versioning = load("versioning.json").get("Status", "never enabled")
line = f"files bucket {bucket}: versioning {versioning}"
if versioning != "Enabled":
    failures.append(f"versioning of {bucket} is {versioning}")

if mode == "drill":
    scratch, started, took, keep = sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), sys.argv[8] == "true"
    kinds = sys.argv[9:]
    point = when(load("scratch.json")["Table"]["RestoreSummary"]["RestoreDateTime"])
    lag = datetime.fromtimestamp(started, timezone.utc) - point
    print(f"restored into {scratch}: restore point {show(point)}, {span(lag.total_seconds())} before the drill "
          f"started; ready after {took} s")
    width = max(len(table), len(scratch))
    print(f"{'items':<8} {table:>{width}} {scratch:>{width}}")
    for kind in kinds:
        source, restored = int(text(f"count-source-{kind}")), int(text(f"count-scratch-{kind}"))
        print(f"{kind:<8} {source:>{width}} {restored:>{width}}")
        if source != restored:
            failures.append(f"{kind} items: {source} in {table}, {restored} restored")
    newest = text("newest")
    if newest in ("", "None", "null"):
        line += ", no object version yet"
    else:
        stamp = when(newest)
        line += f", newest object version {show(stamp)} ({span((now - stamp).total_seconds())} ago)"
    print(line)
    if keep:
        print(f"scratch table kept: {scratch} (billed until deleted: aws dynamodb delete-table --table-name {scratch})")
    else:
        print(f"scratch table {scratch} deleted")
else:
    print(line)
    secret = load("secret.json")
    name = secret.get("Name", "the signing-key secret")
    if not secret.get("RotationEnabled"):
        print(f"signing keys {name}: automatic rotation off")
        failures.append(f"automatic rotation of {name} is off")
    else:
        days = int(secret.get("RotationRules", {}).get("AutomaticallyAfterDays", 0))
        rotated = secret.get("LastRotatedDate")
        since = when(rotated or secret["CreatedDate"])
        age = (now - since).total_seconds()
        what = f"last rotated {show(since)}" if rotated else f"never rotated, created {show(since)}"
        print(f"signing keys {name}: rotated every {days} days, {what} ({span(age)} ago)")
        # Secrets Manager rotates within the day it is due.
        if days and age > (days + 1) * 86400:
            failures.append(f"{name} is overdue: {span(age)} since its last rotation, every {days} days")

if failures:
    print("result: FAILED: " + "; ".join(failures))
    sys.exit(1)
print("result: ok")
PY
}

action_restore_drill() {
  prerequisites
  local table="mcp-$env" stamp=@time@
  $dry_run || stamp=$(date -u +%Y%m%d%H%M%S)
  local scratch="$table-drill-$stamp"
  local backups=(aws dynamodb describe-continuous-backups "${region_opt[@]}" --table-name "$table" --output json)
  local table_key=(aws dynamodb describe-table "${region_opt[@]}" --table-name "$table"
    --query Table.SSEDescription.KMSMasterKeyArn --output text)
  local restore=(aws dynamodb restore-table-to-point-in-time "${region_opt[@]}" --source-table-name "$table"
    --target-table-name "$scratch" --use-latest-restorable-time)
  local describe=(aws dynamodb describe-table "${region_opt[@]}" --table-name "$scratch" --output json)
  local delete=(aws dynamodb delete-table "${region_opt[@]}" --table-name "$scratch"
    --query TableDescription.TableStatus --output text)
  local count=() versioning=() newest=() kind
  if $dry_run; then
    show "${backups[@]}"
    describe_resource FilesBucket
    show "${resource_cmd[@]}"
    show "${table_key[@]}"
    show "${restore[@]}" --sse-specification-override "Enabled=true,SSEType=KMS,KMSMasterKeyId=@table-key@" --output json
    show "${describe[@]}"
    for kind in "${ITEM_KINDS[@]}"; do
      count_items "$table" "$kind"
      show "${count[@]}"
      count_items "$scratch" "$kind"
      show "${count[@]}"
    done
    bucket_checks @files-bucket@
    show "${versioning[@]}"
    show "${newest[@]}"
    $keep || show "${delete[@]}"
    return
  fi

  capture_or_die "$work/backups.json" "${backups[@]}"
  local pitr bucket
  pitr=$(json_field "$work/backups.json" ContinuousBackupsDescription.PointInTimeRecoveryDescription.PointInTimeRecoveryStatus)
  [[ $pitr == ENABLED ]] ||
    die "$EX_FAILED" "point-in-time recovery of $table is off: there is nothing to restore from (run --action backup-verify)"
  stack_resource FilesBucket "$work/bucket" || die "$EX_FAILED" "mcp-$env has no files bucket: deploy the stack first"
  bucket=$(head -n1 -- "$work/bucket")
  # Under the table's own key when it has one: the restored copy is no less protected.
  capture_or_die "$work/table-key" "${table_key[@]}"
  local key
  key=$(head -n1 -- "$work/table-key")
  [[ $key != arn:* ]] || restore+=(--sse-specification-override "Enabled=true,SSEType=KMS,KMSMasterKeyId=$key")
  local started=$SECONDS started_at
  started_at=$(date +%s)
  say "restoring $table into $scratch; should the drill stop before its end: aws dynamodb delete-table --table-name $scratch"
  capture_or_die "$work/restore.json" "${restore[@]}" --output json
  local status
  while true; do
    capture_or_die "$work/scratch.json" "${describe[@]}"
    status=$(json_field "$work/scratch.json" Table.TableStatus)
    [[ $status != ACTIVE ]] || break
    [[ $status == CREATING ]] || die "$EX_FAILED" "the scratch table $scratch is '$status', not CREATING or ACTIVE"
    sleep "$restore_poll"
  done
  local took=$((SECONDS - started))
  for kind in "${ITEM_KINDS[@]}"; do
    count_items "$table" "$kind"
    capture_or_die "$work/count-source-$kind" "${count[@]}"
    count_items "$scratch" "$kind"
    capture_or_die "$work/count-scratch-$kind" "${count[@]}"
  done
  bucket_checks "$bucket"
  capture_or_die "$work/versioning.json" "${versioning[@]}"
  capture_or_die "$work/newest" "${newest[@]}"
  $keep || capture_or_die "$work/deleted" "${delete[@]}"
  printf 'restore drill of mcp-%s\n' "$env"
  report drill "$work" "$table" "$bucket" "$scratch" "$started_at" "$took" "$keep" "${ITEM_KINDS[@]}" ||
    exit "$EX_FAILED"
}

# Sets `count` to the command that counts TABLE's items of KIND (whose key starts with KIND#).
count_items() {
  count=(aws dynamodb scan "${region_opt[@]}" --table-name "$1" --select COUNT
    --filter-expression 'begins_with(pk, :kind)' --expression-attribute-values "{\":kind\":{\"S\":\"$2#\"}}"
    --query Count --output text)
}

# Sets `versioning` and `newest` to the commands that read BUCKET's versioning and the time of
# its newest object version.
bucket_checks() {
  versioning=(aws s3api get-bucket-versioning "${region_opt[@]}" --bucket "$1" --output json)
  newest=(aws s3api list-object-versions "${region_opt[@]}" --bucket "$1" --prefix files/
    --query "max_by(Versions || \`[]\`, &LastModified).LastModified" --output text)
}

action_backup_verify() {
  prerequisites
  local backups=(aws dynamodb describe-continuous-backups "${region_opt[@]}" --table-name "mcp-$env" --output json)
  local secret=(aws secretsmanager describe-secret "${region_opt[@]}" --secret-id "mcp/$env/signing-keys" --output json)
  local versioning=() newest=()
  if $dry_run; then
    show "${backups[@]}"
    describe_resource FilesBucket
    show "${resource_cmd[@]}"
    bucket_checks @files-bucket@
    show "${versioning[@]}"
    show "${secret[@]}"
    return
  fi
  capture_or_die "$work/backups.json" "${backups[@]}"
  stack_resource FilesBucket "$work/bucket" || die "$EX_FAILED" "mcp-$env has no files bucket: deploy the stack first"
  local bucket
  bucket=$(head -n1 -- "$work/bucket")
  bucket_checks "$bucket"
  capture_or_die "$work/versioning.json" "${versioning[@]}"
  capture_or_die "$work/secret.json" "${secret[@]}"
  printf 'backups of mcp-%s\n' "$env"
  report verify "$work" "mcp-$env" "$bucket" || exit "$EX_FAILED"
}

# Runs one action (a function and its arguments) in a subshell, so that its exit (success,
# failure or refusal) ends only the action and its temporary files go with it; sets `rc`.
# Called as a plain command: in an `if` or `||` bash would ignore set -e inside, even in the
# subshell.
perform() {
  set +e
  (
    set -e
    work="$(mktemp -d)"
    trap 'rm -rf -- "$work"' EXIT
    trap 'exit 130' INT TERM HUP
    "$@"
  )
  rc=$?
  set -e
}

rc=0
if [[ -n $action ]]; then
  perform "action_${action//-/_}"
  exit "$rc"
fi

# --- the menu ------------------------------------------------------------------------------
menu=true
show_menu() {
  cat >&2 <<'MENU'

MCP server on AWS
  1) check prerequisites and credentials
  2) rotate the signing-key secret
  3) deploy an environment
  4) deploy CloudFront
  5) deploy the billing alarm and budget
  6) deploy the EC2+RDS staging tier
  7) run the health check
  8) show this month's cost
  9) tear an environment down
 10) roll a deployment back
 11) rehearse a restore (scratch table)
 12) verify the backups
  q) quit
MENU
  printf 'Choice: ' >&2
}

# Reads one answer for PROMPT into `answer` (DEFAULT when empty); end of input gives up.
ask() {
  local prompt="$1" default="${2:-}"
  printf '%s' "$prompt" >&2
  [[ -z $default ]] || printf ' [%s]' "$default" >&2
  printf ': ' >&2
  answer=""
  # A last line without a newline is still an answer.
  if ! IFS= read -r answer && [[ -z $answer ]]; then
    printf '\n' >&2
    die "$EX_USAGE" "no answer; nothing done"
  fi
  answer=${answer%$'\r'}
  answer=${answer:-$default}
}

ask_env() {
  ask "Environment (dev, staging or prod)" "$env"
  valid_env "$answer" || die "$EX_USAGE" "the environment must be dev, staging or prod, got '$answer'"
  env=$answer
}

# Asks what the action needs and the flags did not give, then runs it (inside the subshell).
menu_action() {
  action=$1
  case $action in
    secrets | deploy | cloudfront | teardown | restore-drill | backup-verify) ask_env ;;
    rollback)
      ask_env
      ask "Function (mcp or authorizer)" "$function"
      [[ $answer =~ ^(mcp|authorizer)$ ]] || die "$EX_USAGE" "the function must be mcp or authorizer, got '$answer'"
      function=$answer
      ;;
    billing)
      ask "Monthly budget in USD" "$budget"
      (check_budget "$answer") || exit "$EX_USAGE"
      budget=$answer
      if [[ -z $email ]]; then
        ask "E-mail for the alerts (empty: none)"
        (check_email "$answer") || exit "$EX_USAGE"
        email=$answer
      fi
      ;;
    staging-ec2)
      [[ -n $release_bucket ]] || { ask "S3 bucket of the mcp-server release"; release_bucket=$answer; }
      [[ -n $release_key ]] || { ask "Object key of the release"; release_key=$answer; }
      [[ -n $release_bucket && -n $release_key ]] || die "$EX_USAGE" "staging-ec2 needs the release bucket and key"
      ;;
  esac
  "action_${action//-/_}"
}

while true; do
  show_menu
  if ! IFS= read -r choice && [[ -z $choice ]]; then
    printf '\n' >&2
    exit 0
  fi
  choice=${choice%$'\r'}
  choice=${choice//[[:space:]]/}
  case $choice in
    [1-9] | 1[0-2]) picked=${ACTIONS[choice - 1]} ;;
    q | Q | quit) exit 0 ;;
    *) say "unknown choice '$choice': pick 1 to ${#ACTIONS[@]}, or q to quit"; continue ;;
  esac
  perform menu_action "$picked"
  ((rc == 0)) || say "$picked ended with exit code $rc"
done
