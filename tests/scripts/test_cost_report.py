"""scripts/cost-report.sh against a fake `aws` first on PATH that records its arguments.

    python -m pytest -q -p no:cacheprovider tests/scripts/test_cost_report.py
"""

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cost-report.sh"
BASH = shutil.which("bash") or "/bin/bash"

COSTS = {
    "ResultsByTime": [
        {
            "Groups": [
                {"Keys": ["AWS Key Management Service"], "Metrics": {"UnblendedCost": {"Amount": "0.7333", "Unit": "USD"}}},
                {"Keys": ["Amazon API Gateway"], "Metrics": {"UnblendedCost": {"Amount": "2.5012", "Unit": "USD"}}},
                {"Keys": ["AWS Lambda"], "Metrics": {"UnblendedCost": {"Amount": "0.0411", "Unit": "USD"}}},
            ]
        }
    ]
}
FORECAST = {"Total": {"Amount": "1.25", "Unit": "USD"}}
BUDGETS = {
    "Budgets": [
        {
            "BudgetName": "mcp-monthly-cost",
            "BudgetType": "COST",
            "BudgetLimit": {"Amount": "50.0", "Unit": "USD"},
            "CalculatedSpend": {"ActualSpend": {"Amount": "3.2756", "Unit": "USD"}},
        },
        {"BudgetName": "usage", "BudgetType": "USAGE", "BudgetLimit": {"Amount": "9", "Unit": "GB"}},
    ]
}

# Records argv as one JSON line, answers from the canned files by the service and operation.
FAKE_AWS = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import json, os, sys
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write(json.dumps(sys.argv[1:]) + "\\n")
    answer = os.path.join(os.environ["FAKE_ANSWERS"], "-".join(sys.argv[1:3]))
    if os.environ.get("FAKE_FAIL") == "-".join(sys.argv[1:3]):
        sys.stderr.write("An error occurred (AccessDeniedException): not allowed\\n")
        sys.exit(254)
    if sys.argv[1:3] == ["sts", "get-caller-identity"]:
        print("123456789012")
    elif os.path.exists(answer):
        print(open(answer).read())
    else:
        sys.exit("fake aws: no answer for " + " ".join(sys.argv[1:]))
    """
)


@pytest.fixture
def fake_aws(tmp_path):
    bin_dir = tmp_path / "bin"
    answers = tmp_path / "answers"
    bin_dir.mkdir()
    answers.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    for name, body in (
        ("ce-get-cost-and-usage", COSTS),
        ("ce-get-cost-forecast", FORECAST),
        ("budgets-describe-budgets", BUDGETS),
    ):
        (answers / name).write_text(json.dumps(body))
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_CALLS": str(calls),
        "FAKE_ANSWERS": str(answers),
        "COST_REPORT_TODAY": "2026-11-23",
    }
    return env, calls


def run(env, *args):
    return subprocess.run([BASH, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def recorded(calls):
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_asks_cost_explorer_for_the_month_so_far_the_forecast_and_the_budgets(fake_aws):
    env, calls = fake_aws
    assert run(env).returncode == 0
    assert recorded(calls) == [
        ["ce", "get-cost-and-usage", "--region", "us-east-1", "--time-period", "Start=2026-11-01,End=2026-11-24",
         "--granularity", "MONTHLY", "--metrics", "UnblendedCost", "--group-by", "Type=DIMENSION,Key=SERVICE",
         "--output", "json"],
        ["ce", "get-cost-forecast", "--region", "us-east-1", "--time-period", "Start=2026-11-24,End=2026-12-01",
         "--metric", "UNBLENDED_COST", "--granularity", "MONTHLY", "--output", "json"],
        ["sts", "get-caller-identity", "--query", "Account", "--output", "text"],
        ["budgets", "describe-budgets", "--account-id", "123456789012", "--output", "json"],
    ]


def test_table_lists_services_by_cost_with_total_forecast_and_budget(fake_aws):
    env, _ = fake_aws
    lines = run(env).stdout.splitlines()
    assert lines[0] == "AWS cost 2026-11-01 to 2026-11-23 (UTC), USD"
    rows = [line.rsplit(None, 1) for line in lines[2:5]]
    assert [(name.strip(), usd) for name, usd in rows] == [
        ("Amazon API Gateway", "2.50"),
        ("AWS Key Management Service", "0.73"),
        ("AWS Lambda", "0.04"),
    ]
    assert lines[5].split()[-1] == "3.28"  # month to date
    assert lines[6].split()[-1] == "4.53"  # forecast: 3.2756 so far + 1.25 to come
    assert lines[7] == "budget mcp-monthly-cost: 3.28 of 50.00 (6.6 % used, 9.1 % forecast)"


def test_json_carries_the_same_figures(fake_aws):
    env, _ = fake_aws
    report = json.loads(run(env, "--json").stdout)
    assert report["period"] == {"start": "2026-11-01", "through": "2026-11-23"}
    assert report["services"][0] == {"service": "Amazon API Gateway", "usd": 2.5}
    assert (report["month_to_date_usd"], report["forecast_usd"]) == (3.28, 4.53)
    assert report["budgets"] == [
        {"name": "mcp-monthly-cost", "limit_usd": 50.0, "spent_usd": 3.28, "used_percent": 6.6, "forecast_percent": 9.1}
    ]


def test_last_day_of_the_month_asks_for_no_forecast(fake_aws):
    env, calls = fake_aws
    result = run({**env, "COST_REPORT_TODAY": "2026-11-30"}, "--json")
    assert result.returncode == 0
    assert [call[:2] for call in recorded(calls)] == [
        ["ce", "get-cost-and-usage"],
        ["sts", "get-caller-identity"],
        ["budgets", "describe-budgets"],
    ]
    assert recorded(calls)[0][5] == "Start=2026-11-01,End=2026-12-01"
    assert json.loads(result.stdout)["forecast_usd"] == 3.28


def test_dry_run_prints_the_commands_and_runs_none(fake_aws):
    env, calls = fake_aws
    result = run(env, "--dry-run")
    assert result.returncode == 0
    assert recorded(calls) == []
    assert [line.split()[:4] for line in result.stdout.splitlines()] == [
        ["+", "aws", "ce", "get-cost-and-usage"],
        ["+", "aws", "ce", "get-cost-forecast"],
        ["+", "aws", "sts", "get-caller-identity"],
        ["+", "aws", "budgets", "describe-budgets"],
    ]


def test_a_refused_call_fails_with_its_error(fake_aws):
    env, _ = fake_aws
    result = run({**env, "FAKE_FAIL": "ce-get-cost-forecast"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert "aws ce get-cost-forecast failed: An error occurred (AccessDeniedException): not allowed" in result.stderr


def test_missing_aws_fails_early(fake_aws, tmp_path):
    env, _ = fake_aws
    python_dir = tmp_path / "python-only"
    python_dir.mkdir()
    for tool in ("python3", "date", "mktemp", "rm", "sed", "head"):
        found = shutil.which(tool)
        if found:
            (python_dir / tool).symlink_to(found)
    result = run({**env, "PATH": str(python_dir)})
    assert result.returncode == 69
    assert result.stderr == "cost-report.sh: aws is not on PATH; install it first\n"


@pytest.mark.parametrize(
    ("args", "today", "message"),
    [
        (["--bogus"], "2026-11-23", "cost-report.sh: unknown argument --bogus (see --help)\n"),
        ([], "23/11/2026", "cost-report.sh: COST_REPORT_TODAY=23/11/2026 is not a date (YYYY-MM-DD)\n"),
    ],
)
def test_bad_input_is_a_usage_error_and_calls_nothing(fake_aws, args, today, message):
    env, calls = fake_aws
    result = run({**env, "COST_REPORT_TODAY": today}, *args)
    assert (result.returncode, result.stderr) == (64, message)
    assert recorded(calls) == []
