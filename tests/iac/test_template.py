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
    assert properties("Table")["SSESpecification"] == {
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
    rules = properties("FilesBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
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
    secret = properties("SigningKeys")
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
    for logical_id, binary in (("McpFunction", "mcp-lambda"), ("AuthorizerFunction", "authorizer")):
        metadata = RESOURCES[logical_id]["Metadata"]
        assert metadata["BuildMethod"] == "rust-cargolambda"
        assert metadata["BuildProperties"] == {"Binary": binary}


def test_functions_are_traced_and_capped():
    assert TEMPLATE["Globals"]["Function"]["Tracing"] == "Active"
    for logical_id in ("McpFunction", "AuthorizerFunction"):
        assert properties(logical_id)["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}


@pytest.mark.parametrize("decided", [DEFAULTS, REGISTERING], ids=["token", "cognito-registering"])
@pytest.mark.parametrize("logical_id", ["McpFunction", "AuthorizerFunction"])
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
    assert set(groups) == {"McpLogGroup", "AuthorizerLogGroup", "AccessLogGroup"}
    for logical_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, logical_id


# ─── API ───────────────────────────────────────────────────────────────────


def test_api_is_regional_traced_and_access_logged():
    api = properties("Api")
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
    assert authorizer["authorizerUri"]["Fn::Sub"].endswith(":function:mcp-${Environment}-authorizer/invocations")
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
            assert uri.endswith(":function:mcp-${Environment}/response-streaming-invocations"), (path, method)
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
        assert variables == {"Base": BASE_URL}
    denied = cfn.resolve(properties("AccessDeniedResponse"), TOKEN_MODE)["ResponseParameters"]
    assert 'error=\"insufficient_scope\", scope=\"mcp:read mcp:call mcp:write\"' in denied[
        "gatewayresponse.header.WWW-Authenticate"
    ]["Fn::Sub"][0]


def test_the_authorizer_knows_which_tools_need_write():
    variables = properties("AuthorizerFunction")["Environment"]["Variables"]
    assert set(variables["MCP_WRITE_TOOLS"].split(",")) == {"state_set", "state_delete", "file_write", "state_export"}


def test_api_may_invoke_only_its_own_functions():
    for logical_id, function in (("ApiInvokesMcp", "McpFunction"), ("ApiInvokesAuthorizer", "AuthorizerFunction")):
        permission = properties(logical_id)
        assert permission["FunctionName"] == {"Ref": function}
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert "${Api}" in permission["SourceArn"]["Fn::Sub"]


def test_usage_plan_meters_the_stage():
    plan = properties("UsagePlan")
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "Api.Stage"}}]
    assert plan["Quota"] == {"Limit": {"Ref": "MonthlyRequestQuota"}, "Period": "MONTH"}
    assert plan["Throttle"] == {"RateLimit": {"Ref": "ThrottleRateLimit"}, "BurstLimit": {"Ref": "ThrottleBurstLimit"}}


# ─── Alarms and dashboard ───────────────────────────────────────────────────


def test_p95_latency_alarm_fires_above_500_ms():
    latency = alarm("latency-p95")
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p95")
    assert latency["Threshold"] == 500 and latency["ComparisonOperator"] == "GreaterThanThreshold"


def test_error_rate_alarm_fires_above_one_percent_of_requests():
    rate = alarm("error-rate")
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
    assert properties("AlarmTopic")["KmsMasterKeyId"] == {"Ref": "DataKey"}
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


# ─── Parameters, outputs, per-environment config ────────────────────────────


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_has_a_description_and_a_default(name):
    assert PARAMETERS[name]["Description"].strip()
    assert "Default" in PARAMETERS[name]


BASE_URL = {
    "Fn::If": [
        "HasPublicBaseUrl",
        {"Ref": "PublicBaseUrl"},
        {"Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Environment}"},
    ]
}


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
