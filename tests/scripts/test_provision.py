"""scripts/provision-aws-startup.sh against fake `aws` and `sam` first on PATH that record their
arguments, through --action, through the menu on a pipe and on a pseudo-terminal.

    python -m pytest -q -p no:cacheprovider tests/scripts/test_provision.py
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "provision-aws-startup.sh"
BASH = shutil.which("bash") or "/bin/bash"
ME = "provision-aws-startup.sh"

ACCOUNT = "123456789012"
CALLER = f"arn:aws:iam::{ACCOUNT}:user/ops"
API_HOST = "abc123defg.execute-api.eu-west-1.amazonaws.com"
MCP_URL = f"https://{API_HOST}/dev/mcp"
OLD_KEY_A = "a" * 64
OLD_KEY_B = "b" * 64
OLD_KEY_C = "c" * 64

# samconfig.toml's parameter_overrides per environment, as the script must start from them.
SAMCONFIG = {
    "dev": ["Environment=dev", "LogRetentionDays=7", "ReservedConcurrency=10", "ThrottleRateLimit=20", "ThrottleBurstLimit=40"],
    "staging": [
        "Environment=staging", "LogRetentionDays=14", "ReservedConcurrency=20", "ThrottleRateLimit=50",
        "ThrottleBurstLimit=100", "DeploymentType=Canary10Percent5Minutes",
    ],
    "prod": [
        "Environment=prod", "LogRetentionDays=90", "ReservedConcurrency=50", "ThrottleRateLimit=100",
        "ThrottleBurstLimit=200", "DeploymentType=Canary10Percent5Minutes",
    ],
}

STS = ["aws", "sts", "get-caller-identity", "--output", "json"]

# One program for both names: records [program, *argv] as a JSON line, snapshots the content and
# mode of every file:// argument, and answers like the real CLIs from the FAKE_* variables.
FAKE = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import json, os, stat, sys
    prog = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write(json.dumps([prog, *args]) + "\\n")
    for arg in args:
        if arg.startswith("file://"):
            path = arg[len("file://"):]
            with open(path) as f, open(os.environ["FAKE_FILES"], "a") as files:
                mode = stat.S_IMODE(os.stat(path).st_mode)
                files.write(json.dumps({"path": path, "content": f.read(), "mode": mode}) + "\\n")

    def error(message):
        sys.stderr.write(message + "\\n")
        sys.exit(254)

    line = " ".join([prog, *args])
    if os.environ.get("FAKE_FAIL") and line.startswith(os.environ["FAKE_FAIL"]):
        error("An error occurred (AccessDenied): not allowed")
    # FAKE_ANSWERS: a JSON list of [regex, answer] tried in order against the command line; an
    # answer is what to print, {"error": message} to fail with, or a list of those given one per
    # call (the last one again once they run out).
    if os.environ.get("FAKE_ANSWERS"):
        import re
        with open(os.environ["FAKE_ANSWERS"]) as f:
            answers = json.load(f)
        used_path = os.environ["FAKE_ANSWERS"] + ".used"
        used = json.load(open(used_path)) if os.path.exists(used_path) else {}
        for pattern, answer in answers:
            if re.search(pattern, line):
                if isinstance(answer, list):
                    calls_so_far = used.get(pattern, 0)
                    used[pattern] = calls_so_far + 1
                    with open(used_path, "w") as f:
                        json.dump(used, f)
                    answer = answer[min(calls_so_far, len(answer) - 1)]
                if isinstance(answer, dict):
                    error(answer["error"])
                print(answer)
                sys.exit(0)
    if prog == "sam":
        print("SAM CLI, version 1.170.0" if args == ["--version"] else "fake sam: done")
        sys.exit(0)
    if args == ["--version"]:
        print("aws-cli/2.31.0 Python/3.13.7 Linux/6.8 exe/x86_64")
        sys.exit(0)
    op = args[:2]
    stacks = dict(item.split("=") for item in os.environ.get("FAKE_STACKS", "").split(",") if item)
    if op == ["sts", "get-caller-identity"]:
        if os.environ.get("FAKE_NO_CREDENTIALS"):
            error("Unable to locate credentials. You can configure credentials by running \\"aws configure\\".")
        print(json.dumps({"UserId": "AIDAFAKE", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/ops"}))
    elif op == ["cloudformation", "describe-stacks"]:
        stack = args[args.index("--stack-name") + 1]
        if stack not in stacks:
            error("An error occurred (ValidationError) when calling the DescribeStacks operation: "
                  f"Stack with id {stack} does not exist")
        query = args[args.index("--query") + 1]
        print(stacks[stack] if "StackStatus" in query else os.environ["FAKE_MCP_URL"])
    elif op == ["secretsmanager", "describe-secret"]:
        if "FAKE_SECRET" not in os.environ:
            error("An error occurred (ResourceNotFoundException) when calling the DescribeSecret operation: "
                  "Secrets Manager can't find the specified secret.")
        print(json.dumps({"Name": args[args.index("--secret-id") + 1]}))
    elif op == ["secretsmanager", "get-secret-value"]:
        print(os.environ["FAKE_SECRET"])
    elif op == ["secretsmanager", "put-secret-value"]:
        print(json.dumps({"ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x", "VersionId": "v2"}))
    elif op == ["cloudformation", "deploy"]:
        print("Successfully created/updated stack")
    else:
        error("fake aws: no answer for " + line)
    """
)


class Fake:
    def __init__(self, tmp_path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        # The interpreter running the tests, first on PATH: starting it is the bulk of each call.
        python = os.path.realpath(sys.executable)
        (self.bin / "python3").symlink_to(python)
        for name in ("aws", "sam"):
            (self.bin / name).write_text(FAKE.replace("#!/usr/bin/env python3", f"#!{python}", 1))
            (self.bin / name).chmod(0o755)
        self.calls = tmp_path / "calls.jsonl"
        self.files = tmp_path / "files.jsonl"
        self.calls.touch()
        self.files.touch()
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "FAKE_")) and key not in ("HEALTH_CHECK_CONFIG", "RESTORE_POLL_SECS")
        }
        self.env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            FAKE_CALLS=str(self.calls),
            FAKE_FILES=str(self.files),
            FAKE_STACKS="mcp-dev=CREATE_COMPLETE,mcp-prod=UPDATE_COMPLETE",
            FAKE_MCP_URL=MCP_URL,
            TMPDIR=str(self.tmp),
        )

    def recorded(self):
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    def answer(self, *answers):
        """Canned aws answers (FAKE_ANSWERS): (regex, answer) pairs, tried in order."""
        path = self.calls.parent / "answers.json"
        path.write_text(json.dumps([list(pair) for pair in answers]))
        self.env["FAKE_ANSWERS"] = str(path)

    def snapshots(self):
        return [json.loads(line) for line in self.files.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path):
    return Fake(tmp_path)


def run(fake, *args, stdin="", env=None, cwd=None):
    return subprocess.run(
        [BASH, str(SCRIPT), *args],
        env={**fake.env, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd or fake.tmp,
    )


def plus_lines(text):
    return [line for line in text.splitlines() if line.startswith("+ ")]


# --- help, prerequisites, usage ------------------------------------------------------------
def test_help_is_the_header_and_needs_neither_aws_nor_sam(fake, tmp_path):
    result = run(fake, "--help", env={"PATH": hermetic_path(fake, tmp_path)})
    assert result.returncode == 0
    assert result.stdout.startswith("Provisions and runs the MCP server on AWS")
    assert "Exit codes: 0 done, 1 an aws or sam command failed" in result.stdout
    assert "set -euo" not in result.stdout
    assert fake.recorded() == []


def hermetic_path(fake, tmp_path, *fakes):
    """A PATH with only the named fakes and the plain tools the script uses (no real aws or sam)."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "python3").symlink_to(os.path.realpath(sys.executable))
    for tool in ("mktemp", "rm", "date", "sed", "head", "cat", "cut", "grep", "dirname"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    for name in fakes:
        (tools / name).symlink_to(fake.bin / name)
    return str(tools)


@pytest.mark.parametrize(
    ("present", "message"),
    [
        (("sam",), f"{ME}: aws is not on PATH; install it first (DEPLOY.md, Prerequisites)\n"),
        (("aws",), f"{ME}: sam is not on PATH; install it first (DEPLOY.md, Prerequisites)\n"),
    ],
)
@pytest.mark.parametrize("action", [["--action", "check"], ["--action", "deploy", "--env", "dev"]])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_missing_tool_is_unavailable_and_calls_nothing(fake, tmp_path, present, message, action, dry_run):
    result = run(fake, *action, *dry_run, env={"PATH": hermetic_path(fake, tmp_path, *present)})
    assert (result.returncode, result.stderr, result.stdout) == (69, message, "")
    assert fake.recorded() == []


@pytest.mark.parametrize("action", [["--action", "check"], ["--action", "billing"], ["--action", "cost"]])
def test_no_credentials_is_unavailable(fake, action):
    result = run(fake, *action, env={"FAKE_NO_CREDENTIALS": "1"})
    assert result.returncode == 69
    assert result.stderr.endswith(f"{ME}: no AWS credentials: run aws configure or set AWS_PROFILE\n")
    assert "Unable to locate credentials" in result.stderr
    assert fake.recorded()[-1] == STS
    assert ["aws", "cloudformation"] not in [call[:2] for call in fake.recorded()]


def usage(message):
    return f"{ME}: {message}\nRun '{ME} --help' for usage.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option '--bogus'"),
        (["--action", "check", "extra"], "unexpected argument 'extra'"),
        (["--action", "launch"], "unknown action 'launch' (one of: check secrets deploy cloudfront billing "
                                 "staging-ec2 health cost teardown rollback restore-drill backup-verify)"),
        (["--action"], "--action needs a value"),
        (["--action", "deploy"], "--action deploy needs --env dev, staging or prod"),
        (["--action", "secrets"], "--action secrets needs --env dev, staging or prod"),
        (["--action", "cloudfront"], "--action cloudfront needs --env dev, staging or prod"),
        (["--action", "teardown"], "--action teardown needs --env dev, staging or prod"),
        (["--action", "deploy", "--env", "qa"], "--env must be dev, staging or prod, got 'qa'"),
        (["--action", "deploy", "--env=Prod"], "--env must be dev, staging or prod, got 'Prod'"),
        (["--action", "check", "--region", "US-EAST-1"], "--region must look like us-east-1, got 'US-EAST-1'"),
        (["--action", "check", "--region", "us-east"], "--region must look like us-east-1, got 'us-east'"),
        (["--action", "check", "--region", "us-east-1;ls"], "--region must look like us-east-1, got 'us-east-1;ls'"),
        (["--action", "billing", "--budget", "-5"], "--budget must be a positive number of USD, got '-5'"),
        (["--action", "billing", "--budget", "abc"], "--budget must be a positive number of USD, got 'abc'"),
        (["--action", "billing", "--budget", "1e3"], "--budget must be a positive number of USD, got '1e3'"),
        (["--action", "billing", "--budget", "0"],
         "--budget must be a positive number of USD from 1 to 1000000, got '0'"),
        (["--action", "billing", "--budget", "0.50"],
         "--budget must be a positive number of USD from 1 to 1000000, got '0.50'"),
        (["--action", "billing", "--budget", "1000000.5"],
         "--budget must be a positive number of USD from 1 to 1000000, got '1000000.5'"),
        (["--action", "billing", "--email", "ops"], "--email must be an e-mail address, got 'ops'"),
        (["--action", "deploy", "--env", "dev", "--param", "Architecture"],
         "--param must be KEY=VALUE with an alphanumeric KEY, got 'Architecture'"),
        (["--action", "deploy", "--env", "dev", "--param", "Arch-itecture=x86_64"],
         "--param must be KEY=VALUE with an alphanumeric KEY, got 'Arch-itecture=x86_64'"),
        (["--action", "deploy", "--env", "dev", "--param", "=x86_64"],
         "--param must be KEY=VALUE with an alphanumeric KEY, got '=x86_64'"),
        (["--action", "staging-ec2"], "--action staging-ec2 needs --release-bucket and --release-key"),
        (["--action", "staging-ec2", "--release-bucket", "rel"],
         "--action staging-ec2 needs --release-bucket and --release-key"),
        (["--action", "cloudfront", "--env", "dev", "--domain", "mcp.example.com"],
         "--domain and --certificate-arn go together (the certificate must cover the domain)"),
    ],
)
def test_bad_usage_or_value_exits_2_with_its_message_and_calls_nothing(fake, args, message):
    result = run(fake, *args, "--yes")
    assert (result.returncode, result.stderr, result.stdout) == (2, usage(message), "")
    assert fake.recorded() == []


# --- check ---------------------------------------------------------------------------------
def describe_status(name, region=()):
    return ["aws", "cloudformation", "describe-stacks", *region, "--stack-name", name,
            "--query", "Stacks[0].StackStatus", "--output", "text"]


def test_check_reports_tools_account_and_each_environments_stack(fake):
    result = run(fake, "--action", "check")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        ["aws", "--version"],
        ["sam", "--version"],
        STS,
        describe_status("mcp-dev"),
        describe_status("mcp-staging"),
        describe_status("mcp-prod"),
    ]
    assert result.stdout.splitlines() == [
        "aws: aws-cli/2.31.0 Python/3.13.7 Linux/6.8 exe/x86_64",
        "sam: SAM CLI, version 1.170.0",
        f"account: {ACCOUNT}",
        f"caller: {CALLER}",
        "region: the aws CLI default",
        "mcp-dev: CREATE_COMPLETE",
        "mcp-staging: not deployed",
        "mcp-prod: UPDATE_COMPLETE",
    ]


def test_check_asks_in_the_given_region(fake):
    result = run(fake, "--action", "check", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    region = ["--region", "eu-west-1"]
    assert fake.recorded()[2:] == [
        ["aws", "sts", "get-caller-identity", *region, "--output", "json"],
        describe_status("mcp-dev", region),
        describe_status("mcp-staging", region),
        describe_status("mcp-prod", region),
    ]
    assert "region: eu-west-1" in result.stdout.splitlines()


def test_check_fails_on_an_error_other_than_a_missing_stack(fake):
    result = run(fake, "--action", "check", env={"FAKE_FAIL": "aws cloudformation describe-stacks --stack-name mcp-staging"})
    assert result.returncode == 1
    assert "AccessDenied" in result.stderr
    assert result.stderr.endswith(f"{ME}: failed: aws cloudformation describe-stacks --stack-name mcp-staging\n")


# --- deploy --------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "staging"])
def test_deploy_builds_and_deploys_with_the_config_env_and_no_overrides(fake, env):
    result = run(fake, "--action", "deploy", "--env", env)
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        STS,
        ["sam", "build", "--config-env", env],
        ["sam", "deploy", "--config-env", env],
    ]
    # Outside --dry-run each command is shown on stderr before it runs.
    assert f"+ sam deploy --config-env {env}\n" in result.stderr


def test_deploy_to_prod_with_yes_also_answers_sams_change_set_prompt(fake):
    result = run(fake, "--action", "deploy", "--env", "prod", "--yes")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        STS,
        ["sam", "build", "--config-env", "prod"],
        ["sam", "deploy", "--config-env", "prod", "--no-confirm-changeset"],
    ]


def test_deploy_passes_the_region_to_sts_and_sam_deploy(fake):
    result = run(fake, "--action", "deploy", "--env", "staging", "--region", "eu-central-1")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        ["aws", "sts", "get-caller-identity", "--region", "eu-central-1", "--output", "json"],
        ["sam", "build", "--config-env", "staging"],
        ["sam", "deploy", "--config-env", "staging", "--region", "eu-central-1"],
    ]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_deploy_params_are_merged_into_samconfigs_overrides(fake, env):
    result = run(
        fake, "--action", "deploy", "--env", env, "--yes",
        "--param", "Architecture=x86_64",
        "--param", "LogRetentionDays=30",
        "--param", "AlarmEmail=ops@example.com",
        "--param", "Architecture=arm64",
    )
    assert result.returncode == 0, result.stderr
    expected = [
        "LogRetentionDays=30" if item.startswith("LogRetentionDays=") else item for item in SAMCONFIG[env]
    ] + ["Architecture=arm64", "AlarmEmail=ops@example.com"]
    changeset = ["--no-confirm-changeset"] if env == "prod" else []
    assert fake.recorded() == [
        STS,
        ["sam", "build", "--config-env", env, "--parameter-overrides", *expected],
        ["sam", "deploy", "--config-env", env, "--parameter-overrides", *expected, *changeset],
    ]


def test_deploy_quotes_a_value_with_blanks_for_sam(fake):
    result = run(fake, "--action", "deploy", "--env", "dev", "--region", "us-west-2",
                 "--param", "AllowedOrigins=https://a.example https://b.example")
    assert result.returncode == 0, result.stderr
    assert fake.recorded()[-1] == [
        "sam", "deploy", "--config-env", "dev", "--region", "us-west-2", "--parameter-overrides",
        *SAMCONFIG["dev"], 'AllowedOrigins="https://a.example https://b.example"',
    ]


def test_a_failing_command_stops_the_action_and_is_named(fake):
    result = run(fake, "--action", "deploy", "--env", "dev", env={"FAKE_FAIL": "sam build"})
    assert result.returncode == 1
    assert fake.recorded() == [STS, ["sam", "build", "--config-env", "dev"]]
    assert result.stderr.endswith(f"{ME}: failed (exit 254): sam build --config-env dev\n")


# --- cloudfront ----------------------------------------------------------------------------
MCP_URL_QUERY = "Stacks[0].Outputs[?OutputKey=='McpUrl'].OutputValue"


def cloudfront_deploy(env, *overrides, region=("--region", "us-east-1")):
    return ["aws", "cloudformation", "deploy", *region, "--stack-name", f"mcp-{env}-cloudfront",
            "--template-file", "cloudformation/cloudfront.yaml", "--no-fail-on-empty-changeset",
            "--parameter-overrides", f"Environment={env}", *overrides]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_cloudfront_fronts_the_host_of_the_stacks_mcp_url_in_us_east_1(fake, env):
    result = run(fake, "--action", "cloudfront", "--env", env, "--yes", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        ["aws", "sts", "get-caller-identity", "--region", "eu-west-1", "--output", "json"],
        ["aws", "cloudformation", "describe-stacks", "--region", "eu-west-1", "--stack-name", f"mcp-{env}",
         "--query", MCP_URL_QUERY, "--output", "text"],
        cloudfront_deploy(env, f"ApiDomainName={API_HOST}"),
    ]
    assert f"{ME} --action deploy --env {env} --region eu-west-1 --param PublicBaseUrl=https://DISTRIBUTION" \
        in result.stdout


def test_cloudfront_with_an_alias_and_params(fake):
    arn = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
    result = run(fake, "--action", "cloudfront", "--env", "dev", "--yes", "--domain", "mcp.example.com",
                 "--certificate-arn", arn, "--param", "WafRateLimit=500", "--param", "PriceClass=PriceClass_All")
    assert result.returncode == 0, result.stderr
    assert fake.recorded()[-1] == cloudfront_deploy(
        "dev", f"ApiDomainName={API_HOST}", "AliasDomainName=mcp.example.com", f"AcmCertificateArn={arn}",
        "WafRateLimit=500", "PriceClass=PriceClass_All",
    )
    assert f"{ME} --action deploy --env dev --param PublicBaseUrl=https://mcp.example.com" in result.stdout


def test_cloudfront_without_waf_stays_in_the_given_region_and_a_given_host_skips_the_lookup(fake):
    host = "zyx987wvut.execute-api.eu-west-1.amazonaws.com"
    result = run(fake, "--action", "cloudfront", "--env", "dev", "--yes", "--region", "eu-west-1",
                 "--param", "EnableWaf=false", "--param", f"ApiDomainName={host}")
    assert result.returncode == 0, result.stderr
    assert fake.recorded()[1:] == [
        cloudfront_deploy("dev", f"ApiDomainName={host}", "EnableWaf=false", region=("--region", "eu-west-1")),
    ]


def test_cloudfront_refuses_a_public_mcp_url(fake):
    result = run(fake, "--action", "cloudfront", "--env", "dev", "--yes",
                 env={"FAKE_MCP_URL": "https://mcp.example.com/mcp"})
    assert result.returncode == 1
    assert "the McpUrl output of mcp-dev is 'https://mcp.example.com/mcp', not an execute-api URL" in result.stderr
    assert [call[:3] for call in fake.recorded()] == [STS[:3], ["aws", "cloudformation", "describe-stacks"]]


def test_cloudfront_of_an_environment_not_deployed_fails(fake):
    result = run(fake, "--action", "cloudfront", "--env", "staging", "--yes")
    assert result.returncode == 1
    assert "Stack with id mcp-staging does not exist" in result.stderr
    assert f"{ME}: failed: aws cloudformation describe-stacks --stack-name mcp-staging" in result.stderr


# --- billing, staging-ec2 ------------------------------------------------------------------
def billing_deploy(*overrides):
    return ["aws", "cloudformation", "deploy", "--region", "us-east-1", "--stack-name", "mcp-billing",
            "--template-file", "cloudformation/billing.yaml", "--no-fail-on-empty-changeset",
            "--parameter-overrides", *overrides]


def test_billing_defaults_to_50_usd_in_us_east_1_without_confirmation(fake):
    result = run(fake, "--action", "billing", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        ["aws", "sts", "get-caller-identity", "--region", "eu-west-1", "--output", "json"],
        billing_deploy("MonthlyBudgetUsd=50", "AlarmThresholdUsd=50"),
    ]


def test_billing_with_budget_email_and_params(fake):
    result = run(fake, "--action", "billing", "--budget", "120.5", "--email", "ops@example.com",
                 "--param", "NamePrefix=acme", "--param", "AlarmThresholdUsd=100")
    assert result.returncode == 0, result.stderr
    assert fake.recorded()[-1] == billing_deploy(
        "MonthlyBudgetUsd=120.5", "AlarmThresholdUsd=100", "NotificationEmail=ops@example.com", "NamePrefix=acme"
    )
    assert "Confirm the subscription e-mail SNS sends to ops@example.com." in result.stdout


def test_a_failing_deploy_is_named(fake):
    result = run(fake, "--action", "billing", env={"FAKE_FAIL": "aws cloudformation deploy"})
    assert result.returncode == 1
    assert "An error occurred (AccessDenied): not allowed" in result.stderr
    assert result.stderr.endswith(
        f"{ME}: failed (exit 254): aws cloudformation deploy --region us-east-1 --stack-name mcp-billing "
        "--template-file cloudformation/billing.yaml --no-fail-on-empty-changeset --parameter-overrides "
        "MonthlyBudgetUsd=50 AlarmThresholdUsd=50\n"
    )


def test_staging_ec2_deploys_the_release(fake):
    result = run(fake, "--action", "staging-ec2", "--yes", "--region", "eu-west-1",
                 "--release-bucket", "acme-releases", "--release-key", "mcp-server/1.2.0/mcp-server",
                 "--email", "ops@example.com", "--param", "InstanceType=t3.small")
    assert result.returncode == 0, result.stderr
    assert fake.recorded()[1:] == [
        ["aws", "cloudformation", "deploy", "--region", "eu-west-1", "--stack-name", "mcp-staging-ec2",
         "--template-file", "cloudformation/staging.yaml", "--capabilities", "CAPABILITY_IAM",
         "--no-fail-on-empty-changeset", "--parameter-overrides", "ReleaseBucket=acme-releases",
         "ReleaseKey=mcp-server/1.2.0/mcp-server", "AlarmEmail=ops@example.com", "InstanceType=t3.small"],
    ]


def test_staging_ec2_parameter_names_exist_in_the_template():
    template = (ROOT / "cloudformation" / "staging.yaml").read_text()
    for name in ("ReleaseBucket", "ReleaseKey", "AlarmEmail"):
        assert re.search(rf"^  {name}:\n    Type: String$", template, re.M), name
    template = (ROOT / "cloudformation" / "cloudfront.yaml").read_text()
    for name in ("Environment", "ApiDomainName", "AliasDomainName", "AcmCertificateArn", "EnableWaf"):
        assert re.search(rf"^  {name}:\n    Type: String$", template, re.M), name
    template = (ROOT / "cloudformation" / "billing.yaml").read_text()
    for name in ("MonthlyBudgetUsd", "AlarmThresholdUsd", "NotificationEmail"):
        assert re.search(rf"^  {name}:\n    Type: (String|Number)$", template, re.M), name


# --- teardown ------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_teardown_deletes_the_stack_and_only_prints_the_data_deletion(fake, env):
    result = run(fake, "--action", "teardown", "--env", env, "--yes", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        ["aws", "sts", "get-caller-identity", "--region", "eu-west-1", "--output", "json"],
        ["sam", "delete", "--config-env", env, "--no-prompts", "--region", "eu-west-1"],
    ]
    printed = [line.strip() for line in result.stdout.splitlines() if line.startswith("  aws ")]
    expected = [
        f"aws dynamodb delete-table --region eu-west-1 --table-name mcp-{env}",
        f"aws s3api delete-bucket --region eu-west-1 --bucket mcp-{env}-files-{ACCOUNT}-eu-west-1   "
        "# after emptying every object version",
        f"aws kms schedule-key-deletion --region eu-west-1 --key-id alias/mcp-{env} --pending-window-in-days 7",
    ]
    if env == "prod":
        expected.insert(0, "aws dynamodb update-table --region eu-west-1 --table-name mcp-prod "
                           "--no-deletion-protection-enabled")
    assert printed == expected


# --- secrets -------------------------------------------------------------------------------
def secret_calls(env="dev"):
    sid = f"mcp/{env}/signing-keys"
    return (
        ["aws", "secretsmanager", "describe-secret", "--secret-id", sid],
        ["aws", "secretsmanager", "get-secret-value", "--secret-id", sid, "--query", "SecretString", "--output", "text"],
    )


def new_keys(fake, result, call):
    """The secret JSON the script handed over, after checking how it was handed over."""
    assert call[-2] == "--secret-string" and call[-1].startswith("file://")
    (snapshot,) = fake.snapshots()
    assert snapshot["path"] == call[-1][len("file://"):]
    assert snapshot["mode"] == 0o600
    # The file is gone, and so is every other temporary file.
    assert not Path(snapshot["path"]).exists()
    assert list(fake.tmp.iterdir()) == []
    keys = json.loads(snapshot["content"])["keys"]
    new = keys[0]
    assert re.fullmatch(r"[0-9]{14}", new["kid"])
    assert re.fullmatch(r"[0-9a-f]{64}", new["secret"])
    for stream in (result.stdout, result.stderr):
        assert new["secret"] not in stream
        for old in (OLD_KEY_A, OLD_KEY_B, OLD_KEY_C):
            assert old not in stream
    assert f"new signing key {new['kid']} is first in" in result.stdout
    assert f"Mint new tokens with --kid {new['kid']}" in result.stdout
    return keys


def test_secrets_refuses_a_missing_secret_and_says_to_deploy_first(fake):
    result = run(fake, "--action", "secrets", "--env", "staging", "--yes")
    assert result.returncode == 1
    describe, _ = secret_calls("staging")
    assert fake.recorded() == [STS, describe], "nothing is created"
    assert (
        "mcp/staging/signing-keys does not exist: deploy mcp-staging first (--action deploy --env staging); "
        "its first deploy creates the secret with a random key, which this action then rotates"
    ) in result.stderr


def test_secrets_rotation_puts_the_new_key_before_the_stacks_initial_one(fake):
    initial = json.dumps({"kid": "initial", "secret": OLD_KEY_A})
    result = run(fake, "--action", "secrets", "--env", "dev", "--yes", env={"FAKE_SECRET": initial})
    assert result.returncode == 0, result.stderr
    describe, get = secret_calls()
    calls = fake.recorded()
    assert calls[:3] == [STS, describe, get]
    assert calls[3][:5] == ["aws", "secretsmanager", "put-secret-value", "--secret-id", "mcp/dev/signing-keys"]
    assert len(calls) == 4
    keys = new_keys(fake, result, calls[3])
    assert keys[1:] == [{"kid": "initial", "secret": OLD_KEY_A}]
    assert f"(keys, newest first: {keys[0]['kid']} initial)" in result.stdout


def test_secrets_rotation_keeps_at_most_three_keys_dropping_the_oldest(fake):
    listed = json.dumps({"keys": [
        {"kid": "2026-11", "secret": OLD_KEY_A},
        {"kid": "2026-08", "secret": OLD_KEY_B},
        {"kid": "initial", "secret": OLD_KEY_C},
    ]})
    result = run(fake, "--action", "secrets", "--env", "prod", "--yes", "--region", "eu-west-1",
                 env={"FAKE_SECRET": listed})
    assert result.returncode == 0, result.stderr
    calls = fake.recorded()
    assert calls[1] == ["aws", "secretsmanager", "describe-secret", "--region", "eu-west-1",
                        "--secret-id", "mcp/prod/signing-keys"]
    keys = new_keys(fake, result, calls[3])
    assert keys[1:] == [{"kid": "2026-11", "secret": OLD_KEY_A}, {"kid": "2026-08", "secret": OLD_KEY_B}]
    assert "dropped the oldest (at most 3 are kept): initial" in result.stdout


def test_secrets_leaves_a_malformed_secret_alone(fake):
    result = run(fake, "--action", "secrets", "--env", "dev", "--yes",
                 env={"FAKE_SECRET": json.dumps({"keys": [{"kid": "a", "key": OLD_KEY_A}]})})
    assert result.returncode == 1
    assert "left unchanged" in result.stderr
    assert OLD_KEY_A not in result.stderr + result.stdout
    assert [call[2] for call in fake.recorded()[1:]] == ["describe-secret", "get-secret-value"]
    assert list(fake.tmp.iterdir()) == []


# --- dry run -------------------------------------------------------------------------------
DRY_STS = "+ aws sts get-caller-identity --output json"


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["check"], [
            "+ aws --version",
            "+ sam --version",
            DRY_STS,
            "+ aws cloudformation describe-stacks --stack-name mcp-dev --query Stacks\\[0\\].StackStatus --output text",
            "+ aws cloudformation describe-stacks --stack-name mcp-staging --query Stacks\\[0\\].StackStatus --output text",
            "+ aws cloudformation describe-stacks --stack-name mcp-prod --query Stacks\\[0\\].StackStatus --output text",
        ]),
        (["deploy", "--env", "prod", "--param", "AlarmEmail=ops@example.com"], [
            DRY_STS,
            "+ sam build --config-env prod --parameter-overrides " + " ".join(SAMCONFIG["prod"])
            + " AlarmEmail=ops@example.com",
            "+ sam deploy --config-env prod --parameter-overrides " + " ".join(SAMCONFIG["prod"])
            + " AlarmEmail=ops@example.com",
        ]),
        (["secrets", "--env", "dev"], [
            DRY_STS,
            "+ aws secretsmanager describe-secret --secret-id mcp/dev/signing-keys",
            "+ aws secretsmanager get-secret-value --secret-id mcp/dev/signing-keys --query SecretString --output text",
            "+ aws secretsmanager put-secret-value --secret-id mcp/dev/signing-keys "
            "--secret-string file://@new-keys.json@",
        ]),
        (["cloudfront", "--env", "staging"], [
            DRY_STS,
            "+ aws cloudformation describe-stacks --stack-name mcp-staging --query "
            "Stacks\\[0\\].Outputs\\[\\?OutputKey==\\'McpUrl\\'\\].OutputValue --output text",
            "+ aws cloudformation deploy --region us-east-1 --stack-name mcp-staging-cloudfront --template-file "
            "cloudformation/cloudfront.yaml --no-fail-on-empty-changeset --parameter-overrides "
            "Environment=staging ApiDomainName=@api-host@",
        ]),
        (["billing", "--email", "ops@example.com"], [
            DRY_STS,
            "+ aws cloudformation deploy --region us-east-1 --stack-name mcp-billing --template-file "
            "cloudformation/billing.yaml --no-fail-on-empty-changeset --parameter-overrides "
            "MonthlyBudgetUsd=50 AlarmThresholdUsd=50 NotificationEmail=ops@example.com",
        ]),
        (["staging-ec2", "--release-bucket", "rel", "--release-key", "a b"], [
            DRY_STS,
            "+ aws cloudformation deploy --stack-name mcp-staging-ec2 --template-file cloudformation/staging.yaml "
            "--capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides ReleaseBucket=rel "
            "ReleaseKey=a\\ b",
        ]),
        (["health"], [DRY_STS, "+ scripts/health-check.sh all report"]),
        (["health", "--env", "staging"], [DRY_STS, "+ scripts/health-check.sh staging"]),
        (["teardown", "--env", "prod"], [DRY_STS, "+ sam delete --config-env prod --no-prompts"]),
    ],
)
def test_dry_run_prints_each_command_asks_nothing_and_runs_nothing(fake, args, lines):
    # stdin is not a terminal and there is no --yes: a dry run must not need a confirmation.
    result = run(fake, "--action", *args, "--dry-run", cwd="/")
    assert result.returncode == 0, result.stderr
    assert plus_lines(result.stdout) == lines
    assert fake.recorded() == []
    assert fake.snapshots() == []


def test_cost_delegates_to_cost_report_passing_dry_run(fake):
    result = run(fake, "--action", "cost", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert [line.split()[:4] for line in plus_lines(result.stdout)] == [
        ["+", "aws", "sts", "get-caller-identity"],
        ["+", "aws", "ce", "get-cost-and-usage"],
        *([["+", "aws", "ce", "get-cost-forecast"]] if "get-cost-forecast" in result.stdout else []),
        ["+", "aws", "sts", "get-caller-identity"],
        ["+", "aws", "budgets", "describe-budgets"],
    ]
    assert fake.recorded() == []


def test_cost_passes_the_reports_exit_code_through(fake):
    result = run(fake, "--action", "cost", env={"FAKE_FAIL": "aws ce get-cost-and-usage"})
    assert result.returncode == 1
    assert "cost-report.sh: aws ce get-cost-and-usage failed" in result.stderr
    assert fake.recorded()[0] == STS
    assert fake.recorded()[1][:3] == ["aws", "ce", "get-cost-and-usage"]


# --- health --------------------------------------------------------------------------------
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="health-check.sh needs curl")
def test_health_runs_the_health_check_and_passes_its_exit_code_through(fake, tmp_path):
    config = tmp_path / "health.conf"
    config.write_text(f"dev http://127.0.0.1:{closed_port()} none\n")
    result = run(fake, "--action", "health", "--env", "dev", env={"HEALTH_CHECK_CONFIG": str(config)})
    assert result.returncode == 2, result.stderr  # health-check.sh: some environment down
    assert result.stdout.splitlines()[-1] == "summary: down: 1 environment(s), 0 healthy, 0 degraded, 1 down (dev down)"
    assert f"+ scripts/health-check.sh --config {config} dev\n" in result.stderr
    assert fake.recorded() == [STS]

    unknown = run(fake, "--action", "health", "--env", "prod", env={"HEALTH_CHECK_CONFIG": str(config)})
    assert unknown.returncode == 64
    assert "health-check: unknown environment 'prod' (configured: dev)" in unknown.stderr


# --- confirmations -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "--env", "prod"],
        ["secrets", "--env", "dev"],
        ["cloudfront", "--env", "dev"],
        ["staging-ec2", "--release-bucket", "rel", "--release-key", "k"],
        ["teardown", "--env", "dev"],
    ],
)
def test_a_needed_confirmation_without_yes_or_terminal_exits_3_after_the_credentials_check(fake, args):
    result = run(fake, "--action", *args, stdin="y\nprod\ndev\n")
    assert result.returncode == 3
    assert result.stderr == (
        f"+ {' '.join(STS)}\n{ME}: --action {args[0]} needs confirmation: rerun with --yes, or from a terminal\n"
    )
    assert fake.recorded() == [STS]


@pytest.mark.parametrize(
    ("choice", "answers", "prompt"),
    [
        ("9", ["dev", "DEV"], "Type the environment name (dev) to confirm:"),
        ("9", ["prod", ""], "Type the environment name (prod) to confirm:"),
        ("3", ["prod", "dev"], "Type the environment name (prod) to confirm:"),
        ("2", ["dev", "n"], "[y/N]"),
        ("4", ["dev", "no"], "[y/N]"),
        ("6", ["rel", "mcp-server/1/mcp-server", "N"], "[y/N]"),
        ("6", ["rel", "key"], "[y/N]"),  # end of input refuses
    ],
)
def test_a_refused_confirmation_in_the_menu_does_nothing(fake, choice, answers, prompt):
    result = run(fake, stdin="\n".join([choice, *answers]) + "\n")
    assert result.returncode == 0
    assert prompt in result.stderr
    assert f"{ME}: not confirmed; nothing done\n" in result.stderr
    assert "ended with exit code 3" in result.stderr
    assert fake.recorded() == [STS]


def test_the_menu_accepts_a_confirmation(fake):
    result = run(fake, stdin="9\nstaging\nstaging\n6\nrel\nkey\ny\nq\n")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        STS,
        ["sam", "delete", "--config-env", "staging", "--no-prompts"],
        STS,
        ["aws", "cloudformation", "deploy", "--stack-name", "mcp-staging-ec2", "--template-file",
         "cloudformation/staging.yaml", "--capabilities", "CAPABILITY_IAM", "--no-fail-on-empty-changeset",
         "--parameter-overrides", "ReleaseBucket=rel", "ReleaseKey=key"],
    ]


# --- the menu on a pipe --------------------------------------------------------------------
MENU_HEADER = "MCP server on AWS"


def test_menu_check_then_quit(fake):
    result = run(fake, stdin="1\nq\n")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        ["aws", "--version"], ["sam", "--version"], STS,
        describe_status("mcp-dev"), describe_status("mcp-staging"), describe_status("mcp-prod"),
    ]
    assert "mcp-staging: not deployed" in result.stdout
    assert result.stderr.count(MENU_HEADER) == 2
    assert "9) tear an environment down" in result.stderr


def test_menu_deploys_the_environment_it_asks_for(fake):
    result = run(fake, "--param", "Architecture=x86_64", stdin="3\ndev\nq\n")
    assert result.returncode == 0, result.stderr
    overrides = [*SAMCONFIG["dev"], "Architecture=x86_64"]
    assert fake.recorded() == [
        STS,
        ["sam", "build", "--config-env", "dev", "--parameter-overrides", *overrides],
        ["sam", "deploy", "--config-env", "dev", "--parameter-overrides", *overrides],
    ]
    assert "Environment (dev, staging or prod): " in result.stderr


def test_menu_rejects_an_unknown_choice_or_environment_and_shows_itself_again(fake):
    result = run(fake, stdin="7x\n3\nqa\n")
    assert result.returncode == 0
    assert f"{ME}: unknown choice '7x': pick 1 to 12, or q to quit\n" in result.stderr
    assert f"{ME}: the environment must be dev, staging or prod, got 'qa'\n" in result.stderr
    assert result.stderr.count(MENU_HEADER) == 3
    assert fake.recorded() == []


def test_menu_asks_the_billing_values(fake):
    result = run(fake, stdin="5\n75\nops@example.com\n5\n\n\n")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        STS, billing_deploy("MonthlyBudgetUsd=75", "AlarmThresholdUsd=75", "NotificationEmail=ops@example.com"),
        STS, billing_deploy("MonthlyBudgetUsd=50", "AlarmThresholdUsd=50"),
    ]


def test_menu_reports_a_failed_action_and_goes_on(fake):
    result = run(fake, stdin="5\n\n\n1\n", env={"FAKE_FAIL": "aws cloudformation deploy"})
    assert result.returncode == 0
    assert f"{ME}: billing ended with exit code 1\n" in result.stderr
    assert fake.recorded()[-1] == describe_status("mcp-prod")


@pytest.mark.parametrize(("stdin", "checked"), [("", False), ("\n\n", False), ("1", True), ("3\nde", False)])
def test_menu_quits_with_0_at_end_of_input(fake, stdin, checked):
    result = run(fake, stdin=stdin)
    assert result.returncode == 0
    assert MENU_HEADER in result.stderr
    # A last line without a newline still counts.
    assert ("mcp-dev: CREATE_COMPLETE" in result.stdout) == checked
    assert ["sam", "deploy"] not in [call[:2] for call in fake.recorded()]


# --- on a pseudo-terminal ------------------------------------------------------------------
class Terminal:
    """The script on a pseudo-terminal: stdin, stdout and stderr all on one pty."""

    def __init__(self, fake, *args, env=None, timeout=20):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [BASH, str(SCRIPT), *args],
            stdin=slave, stdout=slave, stderr=slave,
            env={**fake.env, **(env or {})}, cwd=fake.tmp, start_new_session=True,
        )
        os.close(slave)
        self.output = b""
        self.seen = 0
        self.deadline = time.monotonic() + timeout

    def _read(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.close()
            pytest.fail(f"timed out; the terminal showed:\n{self.output.decode(errors='replace')}")
        ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the script closed its end
            return False
        self.output += chunk
        return bool(chunk)

    def expect(self, text):
        marker = text.encode()
        while marker not in self.output[self.seen:]:
            if not self._read():
                pytest.fail(f"{text!r} never appeared; the terminal showed:\n{self.output.decode(errors='replace')}")
        self.seen = self.output.index(marker, self.seen) + len(marker)

    def send(self, line):
        os.write(self.master, line.encode() + b"\n")

    def wait(self):
        while self._read():
            pass
        try:
            return self.proc.wait(timeout=max(self.deadline - time.monotonic(), 1))
        finally:
            self.close()

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass

    def text(self):
        return self.output.decode(errors="replace").replace("\r\n", "\n")


def test_menu_on_a_terminal(fake):
    term = Terminal(fake)
    term.expect("Choice: ")
    term.send("1")
    term.expect("mcp-prod: UPDATE_COMPLETE")
    term.expect("Choice: ")
    term.send("9")
    term.expect("Environment (dev, staging or prod): ")
    term.send("dev")
    term.expect("Type the environment name (dev) to confirm: ")
    term.send("dev")
    term.expect("Choice: ")
    term.send("q")
    assert term.wait() == 0
    assert "aws: aws-cli/2.31.0" in term.text()
    assert fake.recorded()[-2:] == [STS, ["sam", "delete", "--config-env", "dev", "--no-prompts"]]


def test_an_action_on_a_terminal_asks_and_honours_the_answer(fake):
    term = Terminal(fake, "--action", "deploy", "--env", "prod")
    term.expect("This deploys to production (mcp-prod, account 123456789012).")
    term.expect("Type the environment name (prod) to confirm: ")
    term.send("prod")
    assert term.wait() == 0
    # Without --yes, SAM's own change-set prompt stays for the operator at the terminal.
    assert fake.recorded() == [
        STS, ["sam", "build", "--config-env", "prod"], ["sam", "deploy", "--config-env", "prod"],
    ]

    fake.calls.write_text("")
    term = Terminal(fake, "--action", "staging-ec2", "--release-bucket", "rel", "--release-key", "k")
    term.expect("[y/N] ")
    term.send("n")
    assert term.wait() == 3
    assert f"{ME}: not confirmed; nothing done" in term.text()
    assert fake.recorded() == [STS]
