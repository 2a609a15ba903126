#!/usr/bin/env bash
# This month's AWS cost so far by service, the forecast to the month's end, and each cost
# budget (billing.yaml creates mcp-monthly-cost) with the share of it already spent.
#
# Usage:
#   cost-report.sh               a table
#   cost-report.sh --json        the same as JSON
#   cost-report.sh --dry-run     print the aws commands instead of running them
#   cost-report.sh --help
#
# Needs the aws CLI with credentials allowed ce:GetCostAndUsage, ce:GetCostForecast,
# budgets:ViewBudget and sts:GetCallerIdentity. Cost Explorer answers from us-east-1 whatever
# the default region, and each of its calls costs $0.01.
# COST_REPORT_TODAY=YYYY-MM-DD reports as if it were that day (UTC).
#
# Exit codes: 0 report printed, 1 an aws call failed, 64 usage error, 69 aws or python3 missing.
set -euo pipefail

readonly EX_USAGE=64 EX_UNAVAILABLE=69

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

json=false
dry_run=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json=true ;;
    --dry-run) dry_run=true ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'cost-report.sh: unknown argument %q (see --help)\n' "$1" >&2; exit "$EX_USAGE" ;;
  esac
  shift
done

today="${COST_REPORT_TODAY:-$(date -u +%F)}"
if ! date -u -d "$today" +%F >/dev/null 2>&1 || [[ ! "$today" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
  printf 'cost-report.sh: COST_REPORT_TODAY=%q is not a date (YYYY-MM-DD)\n' "$today" >&2
  exit "$EX_USAGE"
fi
month_start="$(date -u -d "$today" +%Y-%m-01)"
tomorrow="$(date -u -d "$today + 1 day" +%F)"
next_month="$(date -u -d "$month_start + 1 month" +%F)"

for tool in aws python3; do
  if ! $dry_run && ! command -v "$tool" >/dev/null; then
    printf 'cost-report.sh: %s is not on PATH; install it first\n' "$tool" >&2
    exit "$EX_UNAVAILABLE"
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Runs one aws command into $work/<name>.json, or prints it under --dry-run.
aws_json() {
  local name="$1"
  shift
  if $dry_run; then
    printf '+ aws %s\n' "$*"
    return
  fi
  if ! aws "$@" >"$work/$name.json" 2>"$work/$name.err"; then
    printf 'cost-report.sh: aws %s failed: %s\n' "$1 $2" "$(head -c 500 "$work/$name.err")" >&2
    exit 1
  fi
}

aws_json costs ce get-cost-and-usage --region us-east-1 \
  --time-period "Start=$month_start,End=$tomorrow" --granularity MONTHLY \
  --metrics UnblendedCost --group-by Type=DIMENSION,Key=SERVICE --output json
# On the month's last day nothing is left to forecast (Cost Explorer refuses an empty period).
if [[ "$tomorrow" != "$next_month" ]]; then
  aws_json forecast ce get-cost-forecast --region us-east-1 \
    --time-period "Start=$tomorrow,End=$next_month" --metric UNBLENDED_COST \
    --granularity MONTHLY --output json
fi
if $dry_run; then
  printf '+ aws sts get-caller-identity --query Account --output text\n'
  aws_json budgets budgets describe-budgets --account-id '<account>' --output json
  exit 0
fi
account="$(aws sts get-caller-identity --query Account --output text)"
aws_json budgets budgets describe-budgets --account-id "$account" --output json

python3 - "$work" "$json" "$month_start" "$today" <<'PY'
import json
import sys
from pathlib import Path

work, as_json, month_start, today = Path(sys.argv[1]), sys.argv[2] == "true", sys.argv[3], sys.argv[4]


def load(name):
    path = work / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


by_service = {}
for period in load("costs").get("ResultsByTime", []):
    for group in period.get("Groups", []):
        service = group["Keys"][0]
        by_service[service] = by_service.get(service, 0.0) + float(group["Metrics"]["UnblendedCost"]["Amount"])
services = sorted(by_service.items(), key=lambda item: (-item[1], item[0]))
month_to_date = sum(by_service.values())
rest_of_month = load("forecast").get("Total", {}).get("Amount")
forecast = month_to_date + (float(rest_of_month) if rest_of_month is not None else 0.0)

budgets = []
for budget in load("budgets").get("Budgets", []):
    if budget.get("BudgetType") != "COST":
        continue
    limit = float(budget["BudgetLimit"]["Amount"])
    spent = float(budget.get("CalculatedSpend", {}).get("ActualSpend", {}).get("Amount", 0))
    budgets.append(
        {
            "name": budget["BudgetName"],
            "limit_usd": round(limit, 2),
            "spent_usd": round(spent, 2),
            "used_percent": round(100 * spent / limit, 1) if limit else None,
            "forecast_percent": round(100 * forecast / limit, 1) if limit else None,
        }
    )

report = {
    "period": {"start": month_start, "through": today},
    "services": [{"service": name, "usd": round(usd, 2)} for name, usd in services],
    "month_to_date_usd": round(month_to_date, 2),
    "forecast_usd": round(forecast, 2),
    "budgets": budgets,
}
if as_json:
    print(json.dumps(report, indent=2))
    sys.exit(0)

width = max([len("forecast for the month")] + [len(name) for name, _ in services])
print(f"AWS cost {month_start} to {today} (UTC), USD")
print(f"{'SERVICE':<{width}}  {'USD':>10}")
for name, usd in services:
    print(f"{name:<{width}}  {usd:>10.2f}")
print(f"{'month to date':<{width}}  {month_to_date:>10.2f}")
print(f"{'forecast for the month':<{width}}  {forecast:>10.2f}")
for budget in budgets:
    print(
        f"budget {budget['name']}: {budget['spent_usd']:.2f} of {budget['limit_usd']:.2f} "
        f"({budget['used_percent']} % used, {budget['forecast_percent']} % forecast)"
    )
if not budgets:
    print("no cost budget (deploy cloudformation/billing.yaml)")
PY
