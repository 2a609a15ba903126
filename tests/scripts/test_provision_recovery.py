"""The recovery actions of scripts/provision-aws-startup.sh (rollback, restore-drill,
backup-verify) against the fake `aws` and `sam` of test_provision.py, which answer here from
canned AWS CLI output.

    python -m pytest -q -p no:cacheprovider tests/scripts/test_provision_recovery.py
"""

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from test_provision import ME, STS, fake, plus_lines, run, usage  # noqa: F401 (fake is a fixture)

APPLICATION = "mcp-dev-ServerlessDeploymentApplication-1A2B3C"
GROUP = "mcp-dev-McpFunctionDeploymentGroup-4D5E6F"
BUCKET = "mcp-dev-files-123456789012-eu-west-1"
TABLE_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
SCRATCH = re.compile(r"^mcp-dev-drill-\d{14}$")


def stamp(moment):
    """A time as the report prints it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_resource(logical_id, stack="mcp-dev"):
    return ["aws", "cloudformation", "describe-stack-resource", "--stack-name", stack, "--logical-resource-id",
            logical_id, "--query", "StackResourceDetail.PhysicalResourceId", "--output", "text"]


IN_PROGRESS = ["--include-only-statuses", "Created", "Queued", "InProgress", "Baking", "Ready"]


def list_deployments(application=APPLICATION, group=GROUP):
    return ["aws", "deploy", "list-deployments", "--application-name", application, "--deployment-group-name",
            group, *IN_PROGRESS, "--query", "deployments", "--output", "text"]


def get_alias(name="mcp-dev"):
    return ["aws", "lambda", "get-alias", "--function-name", name, "--name", "live", "--query", "FunctionVersion",
            "--output", "text"]


def list_versions(name="mcp-dev"):
    return ["aws", "lambda", "list-versions-by-function", "--function-name", name, "--query",
            "Versions[].Version", "--output", "json"]


def update_alias(version, name="mcp-dev"):
    return ["aws", "lambda", "update-alias", "--function-name", name, "--name", "live", "--function-version",
            version, "--routing-config", "AdditionalVersionWeights={}", "--query", "FunctionVersion", "--output",
            "text"]


DEPLOYMENT_GROUP_ANSWERS = (
    (r"describe-stack-resource .*ServerlessDeploymentApplication", APPLICATION),
    (r"describe-stack-resource .*McpFunctionDeploymentGroup", GROUP),
)
NO_SUCH_RESOURCE = {"error": "An error occurred (ValidationError) when calling the DescribeStackResource "
                             "operation: Resource ServerlessDeploymentApplication does not exist for stack mcp-dev"}


# --- usage ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--action", "rollback"], {}, "--action rollback needs --env dev, staging or prod"),
        (["--action", "restore-drill"], {}, "--action restore-drill needs --env dev, staging or prod"),
        (["--action", "backup-verify"], {}, "--action backup-verify needs --env dev, staging or prod"),
        (["--action", "rollback", "--env", "dev", "--function", "lambda"], {},
         "--function must be mcp or authorizer, got 'lambda'"),
        (["--action", "rollback", "--env", "dev", "--function"], {}, "--function needs a value"),
        (["--action", "restore-drill", "--env", "dev"], {"RESTORE_POLL_SECS": "soon"},
         "RESTORE_POLL_SECS must be a whole number of seconds from 0 to 3600, got 'soon'"),
        (["--action", "restore-drill", "--env", "dev"], {"RESTORE_POLL_SECS": "-1"},
         "RESTORE_POLL_SECS must be a whole number of seconds from 0 to 3600, got '-1'"),
        (["--action", "restore-drill", "--env", "dev"], {"RESTORE_POLL_SECS": "3601"},
         "RESTORE_POLL_SECS must be a whole number of seconds from 0 to 3600, got '3601'"),
    ],
)
def test_bad_usage_of_the_recovery_actions_exits_2_and_calls_nothing(fake, args, env, message):
    result = run(fake, *args, "--yes", env=env)
    assert (result.returncode, result.stderr, result.stdout) == (2, usage(message), "")
    assert fake.recorded() == []


# --- rollback ------------------------------------------------------------------------------
def test_rollback_stops_a_deployment_in_progress(fake):
    fake.answer(
        *DEPLOYMENT_GROUP_ANSWERS,
        (r"deploy list-deployments", "d-ABC123XYZ"),
        (r"deploy stop-deployment", json.dumps({"status": "Pending", "statusMessage": "Stop requested"})),
    )
    result = run(fake, "--action", "rollback", "--env", "dev")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        STS,
        describe_resource("ServerlessDeploymentApplication"),
        describe_resource("McpFunctionDeploymentGroup"),
        list_deployments(),
        ["aws", "deploy", "stop-deployment", "--deployment-id", "d-ABC123XYZ", "--auto-rollback-enabled"],
    ]
    assert result.stdout.splitlines()[-2:] == [
        "Stopped deployment d-ABC123XYZ of mcp-dev: CodeDeploy points mcp-dev:live back at the version it served "
        "before,",
        "and CloudFormation rolls the update of mcp-dev back.",
    ]


def test_rollback_with_no_deployment_points_the_alias_at_the_version_before(fake):
    # Version 8 is newer than what the alias serves (a deploy that was rolled back): not a target.
    fake.answer(
        *DEPLOYMENT_GROUP_ANSWERS,
        (r"deploy list-deployments", ""),
        (r"lambda get-alias", "7"),
        (r"lambda list-versions-by-function", json.dumps(["$LATEST", "3", "5", "6", "7", "8"])),
        (r"lambda update-alias", "6"),
    )
    result = run(fake, "--action", "rollback", "--env", "dev", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    region = ["--region", "eu-west-1"]

    def regional(command):
        return [*command[:3], *region, *command[3:]]

    assert fake.recorded() == [
        ["aws", "sts", "get-caller-identity", *region, "--output", "json"],
        regional(describe_resource("ServerlessDeploymentApplication")),
        regional(describe_resource("McpFunctionDeploymentGroup")),
        regional(list_deployments()),
        regional(get_alias()),
        regional(list_versions()),
        regional(update_alias("6")),
    ]
    assert result.stdout.splitlines() == [
        "6",
        "mcp-dev:live now serves version 6 instead of 7.",
        "The stack still names version 7: deploying a fixed build publishes a newer version and moves",
        "the alias to it; deploying the same build again changes nothing.",
        "Task runs invoke the function itself, unqualified ($LATEST), which keeps the code of version 7",
        "until the next deploy.",
    ]


def test_rollback_of_a_stack_without_deployment_groups_goes_straight_to_the_alias(fake):
    fake.answer(
        (r"describe-stack-resource", NO_SUCH_RESOURCE),
        (r"lambda get-alias", "2"),
        (r"lambda list-versions-by-function", json.dumps(["$LATEST", "1", "2"])),
        (r"lambda update-alias", "1"),
    )
    result = run(fake, "--action", "rollback", "--env", "dev", "--function", "authorizer")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        STS,
        describe_resource("ServerlessDeploymentApplication"),
        get_alias("mcp-dev-authorizer"),
        list_versions("mcp-dev-authorizer"),
        update_alias("1", "mcp-dev-authorizer"),
    ]
    # The authorizer starts no task runs.
    assert "$LATEST" not in result.stdout
    assert "mcp-dev-authorizer:live now serves version 1 instead of 2." in result.stdout


def test_rollback_uses_the_authorizers_deployment_group(fake):
    fake.answer(
        (r"describe-stack-resource .*ServerlessDeploymentApplication", APPLICATION),
        (r"describe-stack-resource .*AuthorizerFunctionDeploymentGroup", "mcp-dev-AuthorizerGroup-1"),
        (r"deploy list-deployments", "d-ONE1\td-TWO2"),
        (r"deploy stop-deployment", "{}"),
    )
    result = run(fake, "--action", "rollback", "--env", "dev", "--function", "authorizer")
    assert result.returncode == 0, result.stderr
    assert fake.recorded()[2:] == [
        describe_resource("AuthorizerFunctionDeploymentGroup"),
        list_deployments(group="mcp-dev-AuthorizerGroup-1"),
        ["aws", "deploy", "stop-deployment", "--deployment-id", "d-ONE1", "--auto-rollback-enabled"],
        ["aws", "deploy", "stop-deployment", "--deployment-id", "d-TWO2", "--auto-rollback-enabled"],
    ]


@pytest.mark.parametrize(
    ("current", "versions", "reason"),
    [
        ("1", ["$LATEST", "1"], "the alias live serves version 1; no earlier version is published"),
        ("$LATEST", ["$LATEST", "1"], "the alias live serves '$LATEST', not a published version"),
    ],
)
def test_rollback_refuses_when_there_is_no_version_before(fake, current, versions, reason):
    fake.answer(
        (r"describe-stack-resource", NO_SUCH_RESOURCE),
        (r"lambda get-alias", current),
        (r"lambda list-versions-by-function", json.dumps(versions)),
    )
    result = run(fake, "--action", "rollback", "--env", "dev")
    assert result.returncode == 1
    assert result.stderr.endswith(f"{reason}\n{ME}: mcp-dev cannot be rolled back\n")
    assert "update-alias" not in [call[2] for call in fake.recorded() if len(call) > 2]


def test_rollback_of_a_function_without_its_alias_says_to_deploy_first(fake):
    fake.answer(
        (r"describe-stack-resource", NO_SUCH_RESOURCE),
        (r"lambda get-alias", {"error": "An error occurred (ResourceNotFoundException) when calling the GetAlias "
                                        "operation: Alias not found"}),
    )
    result = run(fake, "--action", "rollback", "--env", "dev")
    assert result.returncode == 1
    assert result.stderr.endswith(f"{ME}: mcp-dev has no alias live: deploy mcp-dev (--action deploy) before rolling "
                                  "it back\n")


def test_rollback_fails_on_an_error_other_than_a_missing_resource(fake):
    fake.answer((r"describe-stack-resource", {"error": "An error occurred (AccessDenied): not allowed"}))
    result = run(fake, "--action", "rollback", "--env", "dev")
    assert result.returncode == 1
    assert result.stderr.endswith(
        f"{ME}: failed: aws cloudformation describe-stack-resource --stack-name mcp-dev --logical-resource-id "
        "ServerlessDeploymentApplication --query StackResourceDetail.PhysicalResourceId --output text\n"
    )
    assert fake.recorded() == [STS, describe_resource("ServerlessDeploymentApplication")]


def test_rollback_in_prod_needs_a_confirmation(fake):
    refused = run(fake, "--action", "rollback", "--env", "prod", stdin="prod\n")
    assert refused.returncode == 3
    assert refused.stderr.endswith(f"{ME}: --action rollback needs confirmation: rerun with --yes, or from a terminal\n")
    assert fake.recorded() == [STS]

    fake.calls.write_text("")
    fake.answer((r"describe-stack-resource", NO_SUCH_RESOURCE), (r"lambda get-alias", "4"),
                (r"lambda list-versions-by-function", json.dumps(["3", "4"])), (r"lambda update-alias", "3"))
    confirmed = run(fake, "--action", "rollback", "--env", "prod", "--yes")
    assert confirmed.returncode == 0, confirmed.stderr
    assert fake.recorded()[-1] == update_alias("3", "mcp-prod")


def test_rollback_in_the_menu_asks_the_environment_the_function_and_for_prod_its_name(fake):
    result = run(fake, stdin="10\nprod\nmcp\nmcp-prod\n10\ndev\nlambda\nq\n")
    assert result.returncode == 0
    assert "Function (mcp or authorizer) [mcp]: " in result.stderr
    assert "This rolls mcp-prod back in production (account 123456789012)." in result.stderr
    assert f"{ME}: not confirmed; nothing done\n" in result.stderr
    assert f"{ME}: the function must be mcp or authorizer, got 'lambda'\n" in result.stderr
    assert fake.recorded() == [STS]


# --- restore drill -------------------------------------------------------------------------
EARLIEST = NOW - timedelta(days=35)
LATEST = NOW - timedelta(minutes=5)
NEWEST_FILE = NOW - timedelta(minutes=50)
COUNTS = {"STATE": (12, 12), "SESSION": (3, 3), "RATE": (5, 5)}


def backups_answer(status="ENABLED"):
    description = {"PointInTimeRecoveryStatus": status}
    if status == "ENABLED":
        description.update(EarliestRestorableDateTime=EARLIEST.isoformat(),
                           LatestRestorableDateTime=LATEST.isoformat())
    return json.dumps({"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED",
                                                        "PointInTimeRecoveryDescription": description}})


def table_answer(status, restored=False):
    table = {"TableName": "mcp-dev-drill", "TableStatus": status}
    if restored:
        table["RestoreSummary"] = {"SourceTableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/mcp-dev",
                                   "RestoreDateTime": LATEST.isoformat(), "RestoreInProgress": False}
    return json.dumps({"Table": table})


def drill_answers(counts=COUNTS, versioning=json.dumps({"Status": "Enabled"}), statuses=("CREATING", "ACTIVE"),
                  table_key=TABLE_KEY):
    answers = [
        (r"describe-continuous-backups", backups_answer()),
        (r"describe-stack-resource .*FilesBucket", BUCKET),
        (r"describe-table --table-name mcp-dev --query Table.SSEDescription.KMSMasterKeyArn", table_key),
        (r"restore-table-to-point-in-time", json.dumps({"TableDescription": {"TableStatus": "CREATING"}})),
        (r"describe-table --table-name mcp-dev-drill-", [table_answer(status, restored=status == "ACTIVE")
                                                       for status in statuses]),
    ]
    for kind, (source, restored) in counts.items():
        answers.append((rf"scan --table-name mcp-dev --.*\"{kind}#\"", str(source)))
        answers.append((rf"scan --table-name mcp-dev-drill-\d+ --.*\"{kind}#\"", str(restored)))
    answers += [
        (r"get-bucket-versioning", versioning),
        (r"list-object-versions", NEWEST_FILE.isoformat()),
        (r"dynamodb delete-table", "DELETING"),
    ]
    return answers


def count_items(table, kind):
    return ["aws", "dynamodb", "scan", "--table-name", table, "--select", "COUNT", "--filter-expression",
            "begins_with(pk, :kind)", "--expression-attribute-values", json.dumps({":kind": {"S": f"{kind}#"}},
                                                                                  separators=(",", ":")),
            "--query", "Count", "--output", "text"]


def drill_calls(scratch, keep=False, table_key=TABLE_KEY):
    encryption = [] if table_key == "None" else [
        "--sse-specification-override", f"Enabled=true,SSEType=KMS,KMSMasterKeyId={table_key}",
    ]
    calls = [
        STS,
        ["aws", "dynamodb", "describe-continuous-backups", "--table-name", "mcp-dev", "--output", "json"],
        describe_resource("FilesBucket"),
        ["aws", "dynamodb", "describe-table", "--table-name", "mcp-dev", "--query",
         "Table.SSEDescription.KMSMasterKeyArn", "--output", "text"],
        ["aws", "dynamodb", "restore-table-to-point-in-time", "--source-table-name", "mcp-dev", "--target-table-name",
         scratch, "--use-latest-restorable-time", *encryption, "--output", "json"],
        ["aws", "dynamodb", "describe-table", "--table-name", scratch, "--output", "json"],
        ["aws", "dynamodb", "describe-table", "--table-name", scratch, "--output", "json"],
    ]
    for kind in ("STATE", "SESSION", "RATE"):
        calls += [count_items("mcp-dev", kind), count_items(scratch, kind)]
    calls += [
        ["aws", "s3api", "get-bucket-versioning", "--bucket", BUCKET, "--output", "json"],
        ["aws", "s3api", "list-object-versions", "--bucket", BUCKET, "--prefix", "files/", "--query",
         "max_by(Versions || `[]`, &LastModified).LastModified", "--output", "text"],
    ]
    if not keep:
        calls.append(["aws", "dynamodb", "delete-table", "--table-name", scratch, "--query",
                      "TableDescription.TableStatus", "--output", "text"])
    return calls


def drill(fake, *args, answers=None):
    fake.answer(*(answers or drill_answers()))
    result = run(fake, "--action", "restore-drill", "--env", "dev", *args, env={"RESTORE_POLL_SECS": "0"})
    restores = [call for call in fake.recorded() if call[2:3] == ["restore-table-to-point-in-time"]]
    scratch = restores[0][restores[0].index("--target-table-name") + 1] if restores else None
    return result, scratch


def drill_report(scratch, rows, tail, result_line="result: ok"):
    width = len(scratch)
    return [
        "restore drill of mcp-dev",
        f"point-in-time recovery of mcp-dev: on, restorable from {stamp(EARLIEST)} to {stamp(LATEST)}",
        f"restored into {scratch}: restore point {stamp(LATEST)}, 5 min before the drill started; ready after 0 s",
        f"{'items':<8} {'mcp-dev':>{width}} {scratch:>{width}}",
        *[f"{kind:<8} {source:>{width}} {restored:>{width}}" for kind, (source, restored) in rows.items()],
        f"files bucket {BUCKET}: versioning Enabled, newest object version {stamp(NEWEST_FILE)} (50 min ago)",
        tail,
        result_line,
    ]


def report_lines(result):
    # The restore's wall time is whole seconds: a second boundary may fall within it.
    return [re.sub(r"ready after [01] s$", "ready after 0 s", line) for line in result.stdout.splitlines()]


def test_restore_drill_restores_compares_reports_and_deletes_the_scratch_table(fake):
    result, scratch = drill(fake)
    assert result.returncode == 0, result.stderr
    assert SCRATCH.match(scratch)
    assert fake.recorded() == drill_calls(scratch)
    assert report_lines(result) == drill_report(scratch, COUNTS, f"scratch table {scratch} deleted")
    # Should it stop halfway, the operator knows which table to delete.
    assert f"{ME}: restoring mcp-dev into {scratch}; should the drill stop before its end: aws dynamodb " \
           f"delete-table --table-name {scratch}\n" in result.stderr


def test_restore_drill_of_a_table_under_dynamodbs_own_key_restores_without_a_key(fake):
    # The lean profile (UseCustomerManagedKey=false): the table has no KMS key of the stack's.
    result, scratch = drill(fake, answers=drill_answers(table_key="None"))
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == drill_calls(scratch, table_key="None")


def test_restore_drill_names_each_count_that_differs_and_exits_1(fake):
    counts = {"STATE": (12, 12), "SESSION": (3, 2), "RATE": (5, 7)}
    result, scratch = drill(fake, answers=drill_answers(counts=counts))
    assert result.returncode == 1
    assert report_lines(result) == drill_report(
        scratch, counts, f"scratch table {scratch} deleted",
        "result: FAILED: SESSION items: 3 in mcp-dev, 2 restored; RATE items: 5 in mcp-dev, 7 restored",
    )
    # The scratch table goes whatever the outcome.
    assert fake.recorded()[-1][:3] == ["aws", "dynamodb", "delete-table"]


def test_restore_drill_keeps_the_scratch_table_with_keep(fake):
    result, scratch = drill(fake, "--keep")
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == drill_calls(scratch, keep=True)
    assert report_lines(result) == drill_report(
        scratch, COUNTS,
        f"scratch table kept: {scratch} (billed until deleted: aws dynamodb delete-table --table-name {scratch})",
    )


def test_restore_drill_fails_on_a_bucket_without_versioning(fake):
    result, _ = drill(fake, answers=drill_answers(versioning=json.dumps({"Status": "Suspended"})))
    assert result.returncode == 1
    assert f"files bucket {BUCKET}: versioning Suspended, newest object version" in result.stdout
    assert result.stdout.splitlines()[-1] == f"result: FAILED: versioning of {BUCKET} is Suspended"


def test_restore_drill_refuses_without_point_in_time_recovery_and_restores_nothing(fake):
    answers = [(r"describe-continuous-backups", backups_answer("DISABLED")), *drill_answers()]
    result, scratch = drill(fake, answers=answers)
    assert result.returncode == 1
    assert result.stderr.endswith(f"{ME}: point-in-time recovery of mcp-dev is off: there is nothing to restore "
                                  "from (run --action backup-verify)\n")
    assert scratch is None
    assert fake.recorded()[-1][:3] == ["aws", "dynamodb", "describe-continuous-backups"]


def test_restore_drill_stops_when_the_scratch_table_is_neither_creating_nor_active(fake):
    result, scratch = drill(fake, answers=drill_answers(statuses=("CREATING", "DELETING")))
    assert result.returncode == 1
    assert result.stderr.endswith(f"{ME}: the scratch table {scratch} is 'DELETING', not CREATING or ACTIVE\n")
    assert "scan" not in [call[2] for call in fake.recorded() if len(call) > 2]


def test_restore_drill_names_a_failed_count(fake):
    answers = [(r"scan --table-name mcp-dev-drill-\d+ --.*\"SESSION#\"", {"error": "An error occurred "
                                                                               "(ProvisionedThroughputExceededException)"}),
               *drill_answers()]
    result, scratch = drill(fake, answers=answers)
    assert result.returncode == 1
    assert "ProvisionedThroughputExceededException" in result.stderr
    assert result.stderr.endswith(
        f"{ME}: failed: aws dynamodb scan --table-name {scratch} --select COUNT --filter-expression "
        "begins_with\\(pk\\,\\ :kind\\) --expression-attribute-values \\{\\\":kind\\\":\\{\\\"S\\\":\\\"SESSION#\\\"\\}\\} "
        "--query Count --output text\n"
    )


# --- backup-verify -------------------------------------------------------------------------
def secret_answer(**fields):
    secret = {"Name": "mcp/dev/signing-keys", "CreatedDate": (NOW - timedelta(days=100)).isoformat(),
              "RotationEnabled": True, "RotationRules": {"AutomaticallyAfterDays": 30},
              "LastRotatedDate": (NOW - timedelta(days=3, hours=1)).isoformat()}
    secret.update(fields)
    return json.dumps({key: value for key, value in secret.items() if value is not None})


def verify(fake, backups=None, versioning=None, secret=None):
    fake.answer(
        (r"describe-continuous-backups", backups or backups_answer()),
        (r"describe-stack-resource .*FilesBucket", BUCKET),
        (r"get-bucket-versioning", versioning or json.dumps({"Status": "Enabled"})),
        (r"secretsmanager describe-secret", secret or secret_answer()),
    )
    return run(fake, "--action", "backup-verify", "--env", "dev")


def test_backup_verify_reports_recovery_versioning_and_rotation_age_reading_only(fake):
    result = verify(fake)
    assert result.returncode == 0, result.stderr
    assert fake.recorded() == [
        STS,
        ["aws", "dynamodb", "describe-continuous-backups", "--table-name", "mcp-dev", "--output", "json"],
        describe_resource("FilesBucket"),
        ["aws", "s3api", "get-bucket-versioning", "--bucket", BUCKET, "--output", "json"],
        ["aws", "secretsmanager", "describe-secret", "--secret-id", "mcp/dev/signing-keys", "--output", "json"],
    ]
    assert result.stdout.splitlines() == [
        "backups of mcp-dev",
        f"point-in-time recovery of mcp-dev: on, restorable from {stamp(EARLIEST)} to {stamp(LATEST)}",
        f"files bucket {BUCKET}: versioning Enabled",
        "signing keys mcp/dev/signing-keys: rotated every 30 days, last rotated "
        f"{stamp(NOW - timedelta(days=3, hours=1))} (3 days ago)",
        "result: ok",
    ]


def test_backup_verify_names_everything_that_is_off_and_exits_1(fake):
    result = verify(fake, backups=backups_answer("DISABLED"), versioning="{}",
                    secret=secret_answer(RotationEnabled=False))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "backups of mcp-dev",
        "point-in-time recovery of mcp-dev: DISABLED",
        f"files bucket {BUCKET}: versioning never enabled",
        "signing keys mcp/dev/signing-keys: automatic rotation off",
        "result: FAILED: point-in-time recovery of mcp-dev is off; versioning of "
        f"{BUCKET} is never enabled; automatic rotation of mcp/dev/signing-keys is off",
    ]


def test_backup_verify_finds_a_rotation_overdue_counting_from_creation_when_never_rotated(fake):
    result = verify(fake, secret=secret_answer(LastRotatedDate=None))
    assert result.returncode == 1
    created = NOW - timedelta(days=100)
    assert f"signing keys mcp/dev/signing-keys: rotated every 30 days, never rotated, created {stamp(created)} " \
           "(100 days ago)" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "result: FAILED: mcp/dev/signing-keys is overdue: 100 days since its last rotation, every 30 days"
    )


def test_backup_verify_without_the_stack_says_to_deploy_it(fake):
    fake.answer(
        (r"describe-continuous-backups", backups_answer()),
        (r"describe-stack-resource", {"error": "An error occurred (ValidationError) when calling the "
                                               "DescribeStackResource operation: Stack 'mcp-dev' does not exist"}),
    )
    result = run(fake, "--action", "backup-verify", "--env", "dev")
    assert result.returncode == 1
    assert result.stderr.endswith(f"{ME}: mcp-dev has no files bucket: deploy the stack first\n")


# --- dry run -------------------------------------------------------------------------------
DRY_STS = "+ aws sts get-caller-identity --output json"
DRY_BUCKET = "+ aws cloudformation describe-stack-resource --stack-name mcp-dev --logical-resource-id FilesBucket " \
             "--query StackResourceDetail.PhysicalResourceId --output text"
DRY_BACKUPS = "+ aws dynamodb describe-continuous-backups --table-name mcp-dev --output json"
DRY_VERSIONING = "+ aws s3api get-bucket-versioning --bucket @files-bucket@ --output json"


def dry_count(table, kind):
    return (f"+ aws dynamodb scan --table-name {table} --select COUNT --filter-expression begins_with\\(pk\\,\\ :kind\\) "
            f"--expression-attribute-values \\{{\\\":kind\\\":\\{{\\\"S\\\":\\\"{kind}#\\\"\\}}\\}} --query Count "
            "--output text")


SCRATCH_DRY = "mcp-dev-drill-@time@"
DRY_DRILL = [
    DRY_STS,
    DRY_BACKUPS,
    DRY_BUCKET,
    "+ aws dynamodb describe-table --table-name mcp-dev --query Table.SSEDescription.KMSMasterKeyArn --output text",
    f"+ aws dynamodb restore-table-to-point-in-time --source-table-name mcp-dev --target-table-name {SCRATCH_DRY} "
    "--use-latest-restorable-time --sse-specification-override "
    "Enabled=true\\,SSEType=KMS\\,KMSMasterKeyId=@table-key@ --output json",
    f"+ aws dynamodb describe-table --table-name {SCRATCH_DRY} --output json",
    *[line for kind in ("STATE", "SESSION", "RATE") for line in (dry_count("mcp-dev", kind), dry_count(SCRATCH_DRY, kind))],
    DRY_VERSIONING,
    "+ aws s3api list-object-versions --bucket @files-bucket@ --prefix files/ --query "
    "max_by\\(Versions\\ \\|\\|\\ \\`\\[\\]\\`\\,\\ \\&LastModified\\).LastModified --output text",
]


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["rollback", "--env", "prod"], [
            DRY_STS,
            "+ aws cloudformation describe-stack-resource --stack-name mcp-prod --logical-resource-id "
            "ServerlessDeploymentApplication --query StackResourceDetail.PhysicalResourceId --output text",
            "+ aws cloudformation describe-stack-resource --stack-name mcp-prod --logical-resource-id "
            "McpFunctionDeploymentGroup --query StackResourceDetail.PhysicalResourceId --output text",
            "+ aws deploy list-deployments --application-name @application@ --deployment-group-name "
            "@deployment-group@ --include-only-statuses Created Queued InProgress Baking Ready --query deployments "
            "--output text",
            "+ aws deploy stop-deployment --deployment-id @deployment-id@ --auto-rollback-enabled",
            "+ aws lambda get-alias --function-name mcp-prod --name live --query FunctionVersion --output text",
            "+ aws lambda list-versions-by-function --function-name mcp-prod --query Versions\\[\\].Version "
            "--output json",
            "+ aws lambda update-alias --function-name mcp-prod --name live --function-version @previous-version@ "
            "--routing-config AdditionalVersionWeights=\\{\\} --query FunctionVersion --output text",
        ]),
        (["restore-drill", "--env", "dev"], [
            *DRY_DRILL,
            f"+ aws dynamodb delete-table --table-name {SCRATCH_DRY} --query TableDescription.TableStatus --output text",
        ]),
        (["restore-drill", "--env", "dev", "--keep"], DRY_DRILL),
        (["backup-verify", "--env", "dev"], [
            DRY_STS,
            DRY_BACKUPS,
            DRY_BUCKET,
            DRY_VERSIONING,
            "+ aws secretsmanager describe-secret --secret-id mcp/dev/signing-keys --output json",
        ]),
    ],
)
def test_dry_run_of_the_recovery_actions_prints_each_command_and_runs_nothing(fake, args, lines):
    # No terminal and no --yes: a dry run of prod's rollback must not need a confirmation.
    result = run(fake, "--action", *args, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert plus_lines(result.stdout) == lines
    assert fake.recorded() == []


def test_dry_run_of_a_rollback_labels_both_branches(fake):
    result = run(fake, "--action", "rollback", "--env", "dev", "--dry-run")
    assert "# with a deployment in progress:" in result.stdout.splitlines()
    assert "# with none:" in result.stdout.splitlines()


def test_the_menu_offers_the_recovery_actions(fake):
    fake.answer(
        (r"describe-continuous-backups", backups_answer()),
        (r"describe-stack-resource .*FilesBucket", BUCKET),
        (r"get-bucket-versioning", json.dumps({"Status": "Enabled"})),
        (r"secretsmanager describe-secret", secret_answer()),
    )
    result = run(fake, stdin="12\nstaging\nq\n")
    assert result.returncode == 0, result.stderr
    for entry in (" 10) roll a deployment back", " 11) rehearse a restore (scratch table)", " 12) verify the backups"):
        assert entry in result.stderr
    assert fake.recorded()[1] == [
        "aws", "dynamodb", "describe-continuous-backups", "--table-name", "mcp-staging", "--output", "json",
    ]
    assert "backups of mcp-staging" in result.stdout
