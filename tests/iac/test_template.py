"""Security and cost properties of the SAM template (template.yaml) and samconfig.toml.

Each test names one promise of the deployed stack; removing the property from the template
makes the test fail.
"""

import json
import re
import tomllib

import pytest

import cfn

TEMPLATE = cfn.load("template.yaml")
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
MCP_METHODS = ("post", "get", "delete")
# Every route without the authorizer, and its one method: probes, metadata (RFC 9728 always,
# RFC 8414 and OpenID discovery for AuthMode=cognito) and RFC 7591 registration.
PUBLIC_PATHS = {
    "/health/live": "get",
    "/health/ready": "get",
    "/.well-known/oauth-protected-resource": "get",
    "/.well-known/oauth-protected-resource/mcp": "get",
    "/.well-known/oauth-authorization-server": "get",
    "/.well-known/oauth-authorization-server/mcp": "get",
    "/.well-known/openid-configuration": "get",
    "/.well-known/openid-configuration/mcp": "get",
    "/register": "post",
}
# The conditions of a deployment with every parameter at its default (AuthMode=token), and of
# one with the Cognito sign-in and client registration on.
DEFAULTS = cfn.conditions(TEMPLATE)
REGISTERING = cfn.conditions(TEMPLATE, AuthMode="cognito", OAuthRegistration="true")
TOKEN_MODE = {"UsesCognito": False}


def properties(logical_id):
    return RESOURCES[logical_id]["Properties"]


def api_definition():
    return properties("Api")["DefinitionBody"]


def function_statements(logical_id, decided=DEFAULTS):
    """The statements of the function's policies in a deployment with the `decided` conditions."""
    return [
        statement
        for policy in cfn.resolve(properties(logical_id)["Policies"], decided)
        for statement in cfn.policy_statements(policy)
    ]


def alarm(name_suffix):
    for resource in cfn.resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm").values():
        if resource["Properties"]["AlarmName"] == {"Fn::Sub": f"mcp-${{Environment}}-{name_suffix}"}:
            return resource["Properties"]
    raise AssertionError(f"no alarm mcp-<env>-{name_suffix}")


# ─── State ─────────────────────────────────────────────────────────────────


def test_table_has_point_in_time_recovery():
    assert properties("Table")["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_table_is_encrypted_with_the_stack_key():
    assert cfn.resolve(properties("Table"), DEFAULTS)["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "DataKey"},
    }


def test_table_is_on_demand_and_expires_items_by_ttl():
    table = properties("Table")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}


def test_data_and_its_key_survive_stack_deletion():
    for logical_id in ("Table", "FilesBucket", "DataKey"):
        assert RESOURCES[logical_id]["DeletionPolicy"] == "Retain", logical_id
        assert RESOURCES[logical_id]["UpdateReplacePolicy"] == "Retain", logical_id


def test_bucket_is_encrypted_with_kms():
    rules = cfn.resolve(properties("FilesBucket"), DEFAULTS)["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules] == ["aws:kms"]


def test_bucket_blocks_all_public_access():
    block = properties("FilesBucket")["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_bucket_refuses_requests_without_tls():
    policy = properties("FilesBucketPolicy")
    assert policy["Bucket"] == {"Ref": "FilesBucket"}
    denials = [
        statement
        for statement in cfn.policy_statements(policy["PolicyDocument"])
        if statement["Effect"] == "Deny"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denials and denials[0]["Action"] == "s3:*"


def test_bucket_has_lifecycle_rules_for_versions_and_uploads():
    rules = properties("FilesBucket")["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in rule for rule in rules)
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules)
    assert all(rule["Status"] == "Enabled" for rule in rules)


def test_secret_is_encrypted_with_the_stack_key_and_generated():
    secret = cfn.resolve(properties("SigningKeys"), DEFAULTS)
    assert secret["KmsKeyId"] == {"Ref": "DataKey"}
    generated = secret["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {"kid": "initial"}
    assert generated["GenerateStringKey"] == "secret"
    assert generated["PasswordLength"] >= 32


def test_stack_key_rotates():
    assert properties("DataKey")["EnableKeyRotation"] is True


# ─── Functions and IAM ───────────────────────────────────────────────────────


def test_functions_are_rust_on_al2023_arm64_by_default():
    assert TEMPLATE["Globals"]["Function"]["Runtime"] == "provided.al2023"
    assert TEMPLATE["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]
    assert PARAMETERS["Architecture"]["Default"] == "arm64"
    for logical_id, binary in (
        ("McpFunction", "mcp-lambda"), ("AuthorizerFunction", "authorizer"), ("RotationFunction", "rotation"),
    ):
        metadata = RESOURCES[logical_id]["Metadata"]
        assert metadata["BuildMethod"] == "rust-cargolambda"
        assert metadata["BuildProperties"] == {"Binary": binary}


def test_functions_are_traced_and_capped():
    assert cfn.resolve(TEMPLATE["Globals"]["Function"], DEFAULTS)["Tracing"] == "Active"
    for logical_id in ("McpFunction", "AuthorizerFunction"):
        assert properties(logical_id)["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}


@pytest.mark.parametrize("decided", [DEFAULTS, REGISTERING], ids=["token", "cognito-registering"])
@pytest.mark.parametrize("logical_id", ["McpFunction", "AuthorizerFunction", "RotationFunction"])
def test_function_policies_name_no_wildcard_action_or_resource(logical_id, decided):
    for statement in function_statements(logical_id, decided):
        for action in cfn.as_list(statement["Action"]):
            assert "*" not in action, (logical_id, action)
        for resource in cfn.as_list(statement["Resource"]):
            assert resource != "*", (logical_id, statement)


def test_mcp_function_touches_only_its_table_file_prefix_secret_and_key():
    resources = {
        json.dumps(resource, sort_keys=True)
        for statement in function_statements("McpFunction")
        for resource in cfn.as_list(statement["Resource"])
    }
    assert resources == {
        json.dumps(value, sort_keys=True)
        for value in (
            {"Fn::GetAtt": ["Table", "Arn"]},
            {"Fn::Sub": "${FilesBucket.Arn}/files/*"},
            {"Fn::GetAtt": ["FilesBucket", "Arn"]},
            {"Ref": "SigningKeys"},
            {"Fn::GetAtt": ["DataKey", "Arn"]},
            OWN_FUNCTION_ARN,
        )
    }
    listing = next(s for s in function_statements("McpFunction") if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["files/*", "files/"]}}


# The function's own ARN, from its fixed name (GetAtt on itself in its role would be a cycle).
OWN_FUNCTION_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:mcp-${Environment}"
}


def test_mcp_function_may_invoke_only_itself_once_per_task_run():
    # A task's run is an asynchronous invocation of the function by itself: that is the only
    # Lambda action it holds, on its own unqualified ARN, and a failed run is never retried.
    assert properties("McpFunction")["FunctionName"] == {"Fn::Sub": "mcp-${Environment}"}
    lambda_statements = [
        statement
        for statement in function_statements("McpFunction")
        if any(action.startswith("lambda:") for action in cfn.as_list(statement["Action"]))
    ]
    assert [(s["Effect"], cfn.as_list(s["Action"]), cfn.as_list(s["Resource"])) for s in lambda_statements] == [
        ("Allow", ["lambda:InvokeFunction"], [OWN_FUNCTION_ARN])
    ]
    assert "Condition" not in lambda_statements[0]
    invoke_config = properties("McpFunction")["EventInvokeConfig"]
    assert invoke_config["MaximumRetryAttempts"] == 0
    # A run Lambda could not start within 15 minutes (throttled) is dropped, not started late.
    assert 60 <= invoke_config["MaximumEventAgeInSeconds"] <= 900


def test_authorizer_reads_only_the_secret_and_its_key():
    actions = sorted(
        action for statement in function_statements("AuthorizerFunction") for action in cfn.as_list(statement["Action"])
    )
    assert actions == ["kms:Decrypt", "secretsmanager:GetSecretValue"]


def test_mcp_function_configuration_points_at_this_stack():
    variables = properties("McpFunction")["Environment"]["Variables"]
    assert variables["MCP_STORE_URL"] == {"Fn::Sub": "dynamodb://${Table}"}
    assert variables["MCP_FILES_URL"] == {"Fn::Sub": "s3://${FilesBucket}/files"}
    assert variables["MCP_SECRET_ID"] == {"Ref": "SigningKeys"}
    assert variables["MCP_RATE_LIMIT_STORE"] == "store"
    # Auth is never switched off in the deployed function: the default verifier, or Cognito's.
    assert variables["MCP_AUTH"] == {"Fn::If": ["UsesCognito", "cognito", cfn.NO_VALUE]}


def test_log_groups_are_encrypted_and_expire():
    groups = cfn.resources_of_type(TEMPLATE, "AWS::Logs::LogGroup")
    assert set(groups) == {"McpLogGroup", "AuthorizerLogGroup", "AccessLogGroup", "RotationLogGroup"}
    for logical_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id
        assert cfn.resolve(group["Properties"], DEFAULTS)["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, logical_id


# ─── API ───────────────────────────────────────────────────────────────────


def test_api_is_regional_traced_and_access_logged():
    api = cfn.resolve(properties("Api"), DEFAULTS)
    assert api["EndpointConfiguration"] == {"Type": "REGIONAL"}
    assert api["TracingEnabled"] is True
    assert api["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    assert "$context.requestId" in api["AccessLogSetting"]["Format"]


def test_stage_throttling_comes_from_parameters():
    (setting,) = properties("Api")["MethodSettings"]
    assert setting["ResourcePath"] == "/*" and setting["HttpMethod"] == "*"
    assert setting["ThrottlingRateLimit"] == {"Ref": "ThrottleRateLimit"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ThrottleBurstLimit"}


@pytest.mark.parametrize("method", MCP_METHODS)
def test_every_mcp_method_requires_the_authorizer(method):
    operation = api_definition()["paths"]["/mcp"][method]
    assert any("bearer" in requirement for requirement in operation["security"])


def test_mcp_route_has_only_the_guarded_methods():
    assert set(api_definition()["paths"]["/mcp"]) == set(MCP_METHODS)


def test_bearer_is_the_request_authorizer_function_without_caching():
    bearer = api_definition()["securityDefinitions"]["bearer"]
    authorizer = bearer["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "request"
    assert authorizer["identitySource"] == "method.request.header.Authorization"
    assert authorizer["authorizerResultTtlInSeconds"] == 0
    # The alias: CodeDeploy moves it between versions, and the API follows without a redeploy.
    assert authorizer["authorizerUri"]["Fn::Sub"].endswith(":function:mcp-${Environment}-authorizer:live/invocations")
    assert properties("AuthorizerFunction")["FunctionName"] == {"Fn::Sub": "mcp-${Environment}-authorizer"}


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_probes_metadata_and_registration_are_public_routes_to_the_function(path):
    operations = api_definition()["paths"][path]
    assert set(operations) == {PUBLIC_PATHS[path]}
    operation = operations[PUBLIC_PATHS[path]]
    assert "security" not in operation
    mcp_integration = api_definition()["paths"]["/mcp"]["post"]["x-amazon-apigateway-integration"]
    assert operation["x-amazon-apigateway-integration"] == mcp_integration


def test_every_route_but_the_public_ones_is_mcp_behind_the_authorizer():
    assert set(api_definition()["paths"]) == {"/mcp", *PUBLIC_PATHS}


def test_every_route_streams_the_mcp_function():
    # The function answers every invocation as a stream, so no route may use the buffered
    # Invoke API: it would hand API Gateway the prelude bytes as a malformed proxy answer.
    for path, operations in api_definition()["paths"].items():
        for method, operation in operations.items():
            integration = operation["x-amazon-apigateway-integration"]
            assert integration["type"] == "aws_proxy", (path, method)
            assert integration["responseTransferMode"] == "STREAM", (path, method)
            assert integration["timeoutInMillis"] == 900000, (path, method)
            uri = integration["uri"]["Fn::Sub"]
            assert uri.startswith("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/")
            assert uri.endswith(":function:mcp-${Environment}:live/response-streaming-invocations"), (path, method)
    assert properties("McpFunction")["FunctionName"] == {"Fn::Sub": "mcp-${Environment}"}


def test_the_function_streams_within_lambdas_fifteen_minutes():
    function = properties("McpFunction")
    variables = function["Environment"]["Variables"]
    assert variables["MCP_LAMBDA_RESPONSE"] == "stream"
    stream_max = int(variables["MCP_STREAM_MAX_SECS"])
    # The stream ends (and the metrics are written) before Lambda stops the function.
    assert stream_max < function["Timeout"] <= 900
    assert int(variables.get("MCP_TOOL_TIMEOUT_SECS", 30)) < stream_max


def test_long_lived_streams_are_a_costed_choice_off_by_default():
    parameter = PARAMETERS["LongLivedStreams"]
    assert parameter["Default"] == "false"
    assert "$0.012 an hour" in parameter["Description"]
    variables = properties("McpFunction")["Environment"]["Variables"]
    assert variables["MCP_LONG_STREAMS"] == {"Fn::If": ["HoldsLongStreams", "on", "off"]}
    assert TEMPLATE["Conditions"]["HoldsLongStreams"] == {"Fn::Equals": [{"Ref": "LongLivedStreams"}, "true"]}
    # The change feed is one item per caller: read and conditionally written, nothing more.
    table_actions = next(
        statement["Action"] for statement in function_statements("McpFunction") if statement.get("Sid") == "OwnTable"
    )
    assert {"dynamodb:GetItem", "dynamodb:PutItem"} <= set(table_actions)


def test_refusals_carry_the_rfc9728_challenge():
    # Only gateway responses set a real WWW-Authenticate behind the REST API (the function's
    # own is renamed x-amzn-Remapped-WWW-Authenticate), so both refusals come from the gateway.
    for logical_id, status in (("UnauthorizedResponse", "401"), ("AccessDeniedResponse", "403")):
        response = cfn.resolve(properties(logical_id), TOKEN_MODE)
        assert response["StatusCode"] == status
        challenge, variables = response["ResponseParameters"]["gatewayresponse.header.WWW-Authenticate"]["Fn::Sub"]
        assert challenge.startswith("'Bearer resource_metadata=\"${Base}/.well-known/oauth-protected-resource/mcp\"")
        assert variables == {"Base": API_BASE_URL}
    denied = cfn.resolve(properties("AccessDeniedResponse"), TOKEN_MODE)["ResponseParameters"]
    assert 'error=\"insufficient_scope\", scope=\"mcp:read mcp:call mcp:write\"' in denied[
        "gatewayresponse.header.WWW-Authenticate"
    ]["Fn::Sub"][0]


def test_the_authorizer_knows_which_tools_need_write():
    variables = properties("AuthorizerFunction")["Environment"]["Variables"]
    assert set(variables["MCP_WRITE_TOOLS"].split(",")) == {"state_set", "state_delete", "file_write", "state_export"}


def test_api_may_invoke_only_its_own_functions_aliases():
    for logical_id, function in (("ApiInvokesMcp", "McpFunction"), ("ApiInvokesAuthorizer", "AuthorizerFunction")):
        permission = properties(logical_id)
        # The alias SAM publishes (AutoPublishAlias), the one the API's integrations call.
        assert permission["FunctionName"] == {"Ref": f"{function}.Alias"}
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert "${Api}" in permission["SourceArn"]["Fn::Sub"]


def test_usage_plan_meters_the_stage():
    plan = properties("UsagePlan")
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "Api.Stage"}}]
    assert plan["Quota"] == {"Limit": {"Ref": "MonthlyRequestQuota"}, "Period": "MONTH"}
    assert plan["Throttle"] == {"RateLimit": {"Ref": "ThrottleRateLimit"}, "BurstLimit": {"Ref": "ThrottleBurstLimit"}}


# ─── Alarms and dashboard ───────────────────────────────────────────────────


def test_p95_latency_alarm_fires_above_500_ms():
    latency = cfn.resolve(alarm("latency-p95"), DEFAULTS)
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p95")
    assert latency["Threshold"] == 500 and latency["ComparisonOperator"] == "GreaterThanThreshold"


def test_error_rate_alarm_fires_above_one_percent_of_requests():
    rate = cfn.resolve(alarm("error-rate"), DEFAULTS)
    metrics = {metric["Id"]: metric for metric in rate["Metrics"]}
    assert metrics["errors"]["MetricStat"]["Metric"]["MetricName"] == "5XXError"
    assert metrics["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    assert "100 * errors / requests" in metrics["rate"]["Expression"]
    assert rate["Threshold"] == 1


@pytest.mark.parametrize("name_suffix", ["throttles", "authorizer-errors", "dynamodb-throttles"])
def test_failure_alarms_fire_on_the_first_event(name_suffix):
    assert alarm(name_suffix)["Threshold"] == 0


def test_every_alarm_notifies_the_encrypted_topic():
    for logical_id, resource in cfn.resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm").items():
        assert resource["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
    assert cfn.resolve(properties("AlarmTopic"), DEFAULTS)["KmsMasterKeyId"] == {"Ref": "DataKey"}
    assert RESOURCES["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def dashboard_widgets():
    body, _ = properties("Dashboard")["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]


def test_dashboard_body_is_json_with_the_service_panels():
    titles = {widget["properties"].get("title") for widget in dashboard_widgets()}
    assert {"API requests and errors", "API latency (ms)", "MCP function", "Authorizer", "DynamoDB"} <= titles


def test_dashboard_shows_the_functions_own_metrics_as_grafana_does():
    titles = {widget["properties"].get("title") for widget in dashboard_widgets()}
    assert {
        "MCP request rate by method",
        "MCP error rate (%)",
        "MCP request latency (s)",
        "Tool calls by tool and outcome",
        "Store latency P95 by operation (s)",
        "Rate-limited requests and auth failures",
    } <= titles
    body, _ = properties("Dashboard")["DashboardBody"]["Fn::Sub"]
    # Every metric the dashboard names is one the function writes, in the namespace it writes to.
    assert set(re.findall(r"mcp_[a-z_]+", body)) <= cfn.product_metric_names()
    variables = properties("McpFunction")["Environment"]["Variables"]
    assert variables["MCP_METRICS_NAMESPACE"] == {"Fn::Sub": "MCP/${Environment}"}
    namespaces = set(re.findall(r'\["(MCP/[^"]+)"', body)) | set(re.findall(r"SEARCH\('\{(MCP/[^,]+),", body))
    assert namespaces == {"MCP/${Environment}"}
    # SEARCH dimension sets are exactly the labels of each metric (metrics.rs), sorted.
    assert "{MCP/${Environment},method,status} MetricName=\\\"mcp_requests_total" in body
    assert "{MCP/${Environment},outcome,tool} MetricName=\\\"mcp_tool_calls_total" in body
    assert "{MCP/${Environment},op,store} MetricName=\\\"mcp_store_duration_seconds" in body
    latency = next(w for w in dashboard_widgets() if w["properties"].get("title") == "MCP request latency (s)")
    assert latency["properties"]["annotations"]["horizontal"][0]["value"] == 0.5


# ─── Deployments: versions, canary, rollback ────────────────────────────────


def new_version_dimensions(function):
    """The dimensions of `function`'s newest version invoked through its alias live."""
    return [
        {"Name": "FunctionName", "Value": {"Ref": function}},
        {"Name": "Resource", "Value": {"Fn::Sub": f"${{{function}}}:live"}},
        {"Name": "ExecutedVersion", "Value": {"Fn::GetAtt": [function, "Version.Version"]}},
    ]


def alarm_dimensions(logical_id):
    """Every metric dimension an alarm names, in its plain metric or in its math."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            found.extend(value.get("Dimensions", []))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(properties(logical_id))
    return found


def samconfig_overrides(environment):
    with open(cfn.ROOT / "samconfig.toml", "rb") as handle:
        config = tomllib.load(handle)
    return dict(item.split("=", 1) for item in config[environment]["deploy"]["parameters"]["parameter_overrides"].split())


@pytest.mark.parametrize("logical_id", ["McpFunction", "AuthorizerFunction"])
def test_each_deploy_publishes_a_version_behind_the_alias_live(logical_id):
    function = properties(logical_id)
    assert function["AutoPublishAlias"] == "live"
    assert function["DeploymentPreference"]["Type"] == {"Ref": "DeploymentType"}


def test_dev_deploys_at_once_and_staging_and_prod_as_a_canary():
    parameter = PARAMETERS["DeploymentType"]
    assert parameter["Default"] == "AllAtOnce"
    assert {"AllAtOnce", "Canary10Percent5Minutes"} <= set(parameter["AllowedValues"])
    assert "DeploymentType" not in samconfig_overrides("dev")
    for environment in ("staging", "prod"):
        assert samconfig_overrides(environment)["DeploymentType"] == "Canary10Percent5Minutes", environment


def test_a_new_mcp_version_rolls_back_on_its_own_error_rate_and_p95_latency():
    preference = properties("McpFunction")["DeploymentPreference"]
    assert preference["Alarms"] == [{"Ref": "NewVersionErrorAlarm"}, {"Ref": "NewVersionLatencyAlarm"}]
    dimensions = new_version_dimensions("McpFunction")

    errors = properties("NewVersionErrorAlarm")
    metrics = {metric["Id"]: metric for metric in errors["Metrics"]}
    for metric_id, name in (("errors", "Errors"), ("invocations", "Invocations")):
        metric = metrics[metric_id]["MetricStat"]["Metric"]
        assert (metric["Namespace"], metric["MetricName"], metric["Dimensions"]) == ("AWS/Lambda", name, dimensions)
        assert metrics[metric_id]["MetricStat"]["Period"] == 60
    assert "100 * errors / invocations" in metrics["rate"]["Expression"]
    # The same 1 % as the stage's 5xx alarm, judged per minute so a canary of 5 minutes sees it.
    assert (errors["Threshold"], errors["EvaluationPeriods"]) == (alarm("error-rate")["Threshold"], 1)

    latency = properties("NewVersionLatencyAlarm")
    assert (latency["Namespace"], latency["MetricName"], latency["Dimensions"]) == ("AWS/Lambda", "Duration", dimensions)
    assert latency["ExtendedStatistic"] == "p95"
    assert latency["Threshold"] == alarm("latency-p95")["Threshold"] == 500
    # Breaching for 3 minutes in a row fits inside the 5-minute canary.
    assert latency["Period"] * latency["DatapointsToAlarm"] <= 300


def test_a_new_authorizer_version_rolls_back_when_it_fails_more_than_the_alias():
    preference = properties("AuthorizerFunction")["DeploymentPreference"]
    assert preference["Alarms"] == [{"Ref": "AuthorizerNewVersionErrorAlarm"}]
    metrics = {metric["Id"]: metric for metric in properties("AuthorizerNewVersionErrorAlarm")["Metrics"]}
    newest = new_version_dimensions("AuthorizerFunction")
    assert metrics["newerrors"]["MetricStat"]["Metric"]["Dimensions"] == newest
    assert metrics["newcalls"]["MetricStat"]["Metric"]["Dimensions"] == newest
    # Refused tokens are Lambda errors of every version alike: only the difference counts.
    assert metrics["allerrors"]["MetricStat"]["Metric"]["Dimensions"] == newest[:2]
    assert "100 * newerrors / newcalls - 100 * allerrors / allcalls" in metrics["excess"]["Expression"]


def test_stage_wide_alarms_page_but_never_decide_a_deployment():
    # An alarm already firing before a deploy would roll back the fix deployed for it.
    deciding = {
        alarm_ref["Ref"]
        for logical_id in ("McpFunction", "AuthorizerFunction")
        for alarm_ref in properties(logical_id)["DeploymentPreference"]["Alarms"]
    }
    for logical_id in deciding:
        assert any(dimension["Name"] == "ExecutedVersion" for dimension in alarm_dimensions(logical_id)), logical_id
    assert not deciding & {"ErrorRateAlarm", "LatencyP95Alarm", "ThrottleAlarm", "AuthorizerErrorAlarm"}


def test_provisioned_concurrency_is_on_the_alias_and_off_by_default():
    parameter = PARAMETERS["ProvisionedConcurrency"]
    assert (parameter["Default"], parameter["MinValue"]) == (0, 0)
    assert "$2.19 a month" in parameter["Description"]
    config = properties("McpFunction")["ProvisionedConcurrencyConfig"]
    assert cfn.resolve(config, DEFAULTS) == cfn.NO_VALUE
    warm = cfn.conditions(TEMPLATE, ProvisionedConcurrency=2)
    assert cfn.resolve(config, warm) == {"ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}}


# ─── Signing-key rotation ───────────────────────────────────────────────────


def test_the_signing_keys_rotate_on_a_schedule_set_by_a_parameter():
    schedule = RESOURCES["KeyRotationSchedule"]
    assert schedule["Properties"] == {
        "SecretId": {"Ref": "SigningKeys"},
        "RotationLambdaARN": {"Fn::GetAtt": ["RotationFunction", "Arn"]},
        # The first rotation one interval after the first deploy, not in the middle of it.
        "RotateImmediatelyOnUpdate": False,
        "RotationRules": {"AutomaticallyAfterDays": {"Ref": "KeyRotationDays"}},
    }
    assert schedule["DependsOn"] == "SecretsManagerInvokesRotation"
    parameter = PARAMETERS["KeyRotationDays"]
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (30, 1, 1000)
    # Secrets Manager may invoke the function for this secret only.
    assert properties("SecretsManagerInvokesRotation") == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": ["RotationFunction", "Arn"]},
        "Principal": "secretsmanager.amazonaws.com",
        "SourceAccount": {"Ref": "AWS::AccountId"},
        "SourceArn": {"Ref": "SigningKeys"},
    }
    assert "Metadata" not in RESOURCES["SigningKeys"], "no checkov skip for rotation is left"


ROTATION_ACTIONS = [
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
]


@pytest.mark.parametrize("key", ["true", "false"], ids=["stack-key", "service-keys"])
def test_the_rotation_function_may_touch_only_the_signing_keys(key):
    decided = cfn.conditions(TEMPLATE, UseCustomerManagedKey=key)
    statements = function_statements("RotationFunction", decided)
    secrets = [s for s in statements if s["Resource"] == {"Ref": "SigningKeys"}]
    assert [(s["Effect"], sorted(cfn.as_list(s["Action"]))) for s in secrets] == [("Allow", ROTATION_ACTIONS)]
    keys = [s for s in statements if s not in secrets]
    if key == "false":
        assert keys == []
    else:
        (data_key,) = keys
        assert sorted(data_key["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert data_key["Resource"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
        assert data_key["Condition"] == {"StringEquals": {"kms:EncryptionContext:SecretARN": {"Ref": "SigningKeys"}}}
    function = properties("RotationFunction")
    assert function["CodeUri"] == "rotation"
    assert function["ReservedConcurrentExecutions"] == 1
    assert "Events" not in function


# ─── Slack through AWS Chatbot ──────────────────────────────────────────────

SLACK_IDS = {"SlackWorkspaceId": "T0123ABCDE", "SlackChannelId": "C0123ABCDE"}
READ_ONLY_CLOUDWATCH = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/CloudWatchReadOnlyAccess"}


@pytest.mark.parametrize(
    ("given", "posts"),
    [({}, False), ({"SlackWorkspaceId": "T0123ABCDE"}, False), ({"SlackChannelId": "C0123ABCDE"}, False), (SLACK_IDS, True)],
)
def test_the_alarm_topic_reaches_slack_only_with_workspace_and_channel(given, posts):
    assert cfn.conditions(TEMPLATE, **given)["PostsToSlack"] is posts
    chatbot = cfn.resources_of_type(TEMPLATE, "AWS::Chatbot::SlackChannelConfiguration")
    assert set(chatbot) == {"AlarmSlackChannel"}
    for logical_id in ("AlarmSlackChannel", "SlackChannelRole"):
        assert RESOURCES[logical_id]["Condition"] == "PostsToSlack", logical_id
    # One id without the other is refused at deploy instead of silently posting nowhere.
    rule = TEMPLATE["Rules"]["SlackNeedsBothIds"]
    assert rule["Assertions"][0]["Assert"] == TEMPLATE["Conditions"]["PostsToSlack"]


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("SlackWorkspaceId", "T0123ABCDE", True),
        ("SlackWorkspaceId", "C0123ABCDE", False),
        ("SlackWorkspaceId", "T0123", False),
        ("SlackChannelId", "C0123ABCDE", True),
        ("SlackChannelId", "G0123ABCDE", True),
        ("SlackChannelId", "#alarms", False),
    ],
)
def test_slack_ids_are_checked_before_anything_is_created(parameter, value, accepted):
    assert bool(re.fullmatch(PARAMETERS[parameter]["AllowedPattern"], value)) is accepted
    assert re.fullmatch(PARAMETERS[parameter]["AllowedPattern"], "")


def test_the_slack_channel_posts_the_alarm_topic_and_can_only_read():
    channel = properties("AlarmSlackChannel")
    assert channel["SnsTopicArns"] == [{"Ref": "AlarmTopic"}]
    assert (channel["SlackWorkspaceId"], channel["SlackChannelId"]) == (
        {"Ref": "SlackWorkspaceId"}, {"Ref": "SlackChannelId"},
    )
    assert channel["GuardrailPolicies"] == [READ_ONLY_CLOUDWATCH]
    assert channel["IamRoleArn"] == {"Fn::GetAtt": ["SlackChannelRole", "Arn"]}
    role = properties("SlackChannelRole")
    assert role["ManagedPolicyArns"] == [READ_ONLY_CLOUDWATCH]
    assert "Policies" not in role
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "chatbot.amazonaws.com"}


# ─── Parameters, outputs, per-environment config ────────────────────────────


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_has_a_description_and_a_default(name):
    assert PARAMETERS[name]["Description"].strip()
    assert "Default" in PARAMETERS[name]


# Behind the REST API: the public base URL, else the API's own.
API_BASE_URL = {
    "Fn::If": [
        "HasPublicBaseUrl",
        {"Ref": "PublicBaseUrl"},
        {"Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Environment}"},
    ]
}
# Behind the function URL's distribution, the public base URL is required (a template rule).
BASE_URL = {"Fn::If": ["BehindRestApi", API_BASE_URL, {"Ref": "PublicBaseUrl"}]}


def base_url_sub(value, path):
    """Asserts `value` is `${Base}<path>` with Base the public base URL, else the API's own."""
    template, variables = value["Fn::Sub"]
    assert template == f"${{Base}}{path}"
    assert variables == {"Base": BASE_URL}


def test_outputs_give_the_mcp_health_and_metadata_urls():
    outputs = TEMPLATE["Outputs"]
    base_url_sub(outputs["McpUrl"]["Value"], "/mcp")
    base_url_sub(outputs["HealthUrl"]["Value"], "/health/ready")
    base_url_sub(outputs["MetadataUrl"]["Value"], "/.well-known/oauth-protected-resource/mcp")


def test_token_audience_is_the_url_clients_use():
    for logical_id in ("McpFunction", "AuthorizerFunction"):
        base_url_sub(properties(logical_id)["Environment"]["Variables"]["MCP_AUTH_AUDIENCE"], "/mcp")
    base_url_sub(properties("McpFunction")["Environment"]["Variables"]["MCP_RESOURCE_URL"], "/mcp")


def test_prod_keeps_its_table_from_deletion():
    assert properties("Table")["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}


def test_samconfig_deploys_each_environment_as_its_own_stack():
    with open(cfn.ROOT / "samconfig.toml", "rb") as handle:
        config = tomllib.load(handle)
    for environment in ("dev", "staging", "prod"):
        section = config[environment]
        assert section["global"]["parameters"]["stack_name"] == f"mcp-{environment}"
        deploy = section["deploy"]["parameters"]
        assert f"Environment={environment}" in deploy["parameter_overrides"].split()
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert section["build"]["parameters"]["beta_features"] is True
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
