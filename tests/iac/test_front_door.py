"""The function URL front door of template.yaml (FrontDoor=FunctionUrl): CloudFront in front of
a streamed function URL that only CloudFront can use, and no REST API.

Each test names one promise; removing the property from the template makes it fail. The last
tests run checkov on the template as a lean, function-URL deployment would have it (the
template's own defaults take the REST API, which is all checkov sees of it otherwise).
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

import cfn

TEMPLATE = cfn.load("template.yaml")
RESOURCES = TEMPLATE["Resources"]
PUBLIC = "https://mcp.example.com"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
REST = cfn.conditions(TEMPLATE)
URL = cfn.conditions(TEMPLATE, FrontDoor="FunctionUrl", PublicBaseUrl=PUBLIC)
URL_WITH_ALIAS = cfn.conditions(TEMPLATE, FrontDoor="FunctionUrl", PublicBaseUrl=PUBLIC, FrontDoorCertificateArn=CERTIFICATE)
REST_API_ONLY = {
    "Api", "UnauthorizedResponse", "AccessDeniedResponse", "ApiInvokesMcp", "ApiInvokesAuthorizer", "UsagePlan", "AccessLogGroup",
    "AuthorizerErrorAlarm",
}
FUNCTION_URL_ONLY = {"OriginSecret", "McpFunctionUrl", "McpFunctionUrlIsPublic", "McpFunctionUrlInvokes", "FrontDoorHeaders", "FrontDoorDistribution"}
ORIGIN_SECRET_RS = (cfn.ROOT / "functions" / "mcp" / "src" / "http" / "origin_secret.rs").read_text()
CHECKOV = Path(os.environ.get("CHECKOV", Path.home() / ".cache" / "mcp-lambda" / "tools" / "checkov" / "bin" / "checkov"))


def deployed(decided):
    return {
        name: cfn.resolve(resource, decided)
        for name, resource in RESOURCES.items()
        if "Condition" not in resource or decided[resource["Condition"]]
    }


def variables(decided):
    return deployed(decided)["McpFunction"]["Properties"]["Environment"]["Variables"]


def distribution(decided=URL):
    return deployed(decided)["FrontDoorDistribution"]["Properties"]["DistributionConfig"]


def test_the_rest_api_stays_the_default_front_door():
    parameter = TEMPLATE["Parameters"]["FrontDoor"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("RestApi", ["RestApi", "FunctionUrl"])
    rest = set(deployed(REST))
    assert REST_API_ONLY <= rest and not FUNCTION_URL_ONLY & rest


def test_the_function_url_front_door_has_no_rest_api():
    url = deployed(URL)
    assert FUNCTION_URL_ONLY <= set(url) and not REST_API_ONLY & set(url)
    assert not [name for name, r in url.items() if r["Type"].startswith("AWS::ApiGateway::")]
    # No API keys without the REST API, whatever RequireApiKey says (a rule refuses the pair).
    assert not cfn.conditions(TEMPLATE, FrontDoor="FunctionUrl", RequireApiKey="true")["ApiKeyRequired"]


def test_the_url_streams_from_the_alias_codedeploy_moves():
    url = deployed(URL)["McpFunctionUrl"]["Properties"]
    assert url == {"TargetFunctionArn": {"Ref": "McpFunction.Alias"}, "AuthType": "NONE", "InvokeMode": "RESPONSE_STREAM"}
    # The function answers every invocation as a stream, as RESPONSE_STREAM expects.
    assert variables(URL)["MCP_LAMBDA_RESPONSE"] == "stream"


def test_only_cloudfront_holds_what_the_function_demands():
    env = variables(URL)
    (origin,) = distribution()["Origins"]
    (header,) = origin["OriginCustomHeaders"]
    # One header, from one secret, wired to both sides.
    assert header["HeaderName"] == env["MCP_ORIGIN_SECRET_HEADER"] == "X-Origin-Verify"
    assert header["HeaderValue"] == env["MCP_ORIGIN_SECRET"] == {"Fn::Sub": "{{resolve:secretsmanager:${OriginSecret}:SecretString}}"}
    # The function accepts that name and value shape (origin_secret.rs): letters, digits and -;
    # at least MIN_SECRET_BYTES of visible ASCII, as the generated secret is.
    assert re.fullmatch(r"[A-Za-z0-9-]+", header["HeaderName"])
    minimum = int(re.search(r"pub const MIN_SECRET_BYTES: usize = (\d+);", ORIGIN_SECRET_RS).group(1))
    generated = deployed(URL)["OriginSecret"]["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= minimum and generated["ExcludePunctuation"] is True
    assert set(generated) == {"PasswordLength", "ExcludePunctuation"}, "the whole SecretString is the value"
    # The distribution's one origin is the function's URL, over TLS.
    assert origin["DomainName"] == {"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": ["McpFunctionUrl", "FunctionUrl"]}]}]}
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    # Behind the REST API the function demands nothing: API Gateway invokes it through IAM.
    assert not {"MCP_ORIGIN_SECRET_HEADER", "MCP_ORIGIN_SECRET"} & set(variables(REST))


def test_the_url_is_public_only_as_a_function_url():
    permissions = {
        name: resource["Properties"]
        for name, resource in deployed(URL).items()
        if resource["Type"] == "AWS::Lambda::Permission" and resource["Properties"].get("Principal") == "*"
    }
    assert permissions == {
        "McpFunctionUrlIsPublic": {
            "Action": "lambda:InvokeFunctionUrl",
            "FunctionName": {"Ref": "McpFunction.Alias"},
            "Principal": "*",
            "FunctionUrlAuthType": "NONE",
        },
        "McpFunctionUrlInvokes": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "McpFunction.Alias"},
            "Principal": "*",
            "InvokedViaFunctionUrl": True,
        },
    }
    rest_public = [
        name for name, r in deployed(REST).items() if r["Type"] == "AWS::Lambda::Permission" and r["Properties"].get("Principal") == "*"
    ]
    assert rest_public == []


def test_cloudfront_forwards_every_call_uncached_and_over_https():
    config = distribution()
    behaviors = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    for behavior in behaviors:
        assert behavior["TargetOriginId"] == "function-url"
        assert behavior["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # CachingDisabled
        # Every viewer header but Host: the URL answers only its own host name.
        assert behavior["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"
        assert behavior["Compress"] is False
        assert behavior["ResponseHeadersPolicyId"] == {"Ref": "FrontDoorHeaders"}
    by_path = {behavior["PathPattern"]: behavior for behavior in config["CacheBehaviors"]}
    assert set(by_path) == {"/mcp*", "/register"}
    for behavior in by_path.values():
        assert behavior["ViewerProtocolPolicy"] == "https-only"
        assert {"POST", "GET", "DELETE"} <= set(behavior["AllowedMethods"])
    assert config["DefaultCacheBehavior"]["AllowedMethods"] == ["GET", "HEAD", "OPTIONS"]
    assert config["Origins"][0]["CustomOriginConfig"]["OriginReadTimeout"] == 60


def test_the_public_url_is_the_audience_and_the_alias_when_a_certificate_is_given():
    base = {"Fn::Sub": ["${Base}/mcp", {"Base": {"Ref": "PublicBaseUrl"}}]}
    env = variables(URL)
    assert env["MCP_AUTH_AUDIENCE"] == env["MCP_RESOURCE_URL"] == base
    assert "Aliases" not in distribution(URL) and distribution(URL)["ViewerCertificate"] == {"CloudFrontDefaultCertificate": True}
    with_alias = distribution(URL_WITH_ALIAS)
    assert with_alias["Aliases"] == [{"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "PublicBaseUrl"}]}]}]
    assert with_alias["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    rule = TEMPLATE["Rules"]["FunctionUrlNeedsPublicBaseUrl"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "FrontDoor"}, "FunctionUrl"]}
    assertions = [assertion["Assert"] for assertion in rule["Assertions"]]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "PublicBaseUrl"}, ""]}]} in assertions
    assert {"Fn::Equals": [{"Ref": "RequireApiKey"}, "false"]} in assertions


def test_alarms_watch_the_front_door_in_use():
    for decided, namespace, metrics, dimensions in (
        (REST, "AWS/ApiGateway", {"Latency", "5XXError", "Count"}, [("ApiName", "mcp-${Environment}"), ("Stage", {"Ref": "Environment"})]),
        (URL, "AWS/Lambda", {"UrlRequestLatency", "Url5xxCount", "UrlRequestCount"}, [("FunctionName", "mcp-${Environment}"), ("Resource", "mcp-${Environment}:live")]),
    ):
        resources = deployed(decided)
        latency = resources["LatencyP95Alarm"]["Properties"]
        stats = [m["MetricStat"]["Metric"] for m in resources["ErrorRateAlarm"]["Properties"]["Metrics"] if "MetricStat" in m]
        assert {latency["Namespace"], *(m["Namespace"] for m in stats)} == {namespace}
        assert {latency["MetricName"], *(m["MetricName"] for m in stats)} == metrics
        for dims in (latency["Dimensions"], *(m["Dimensions"] for m in stats)):
            assert [(d["Name"], d["Value"]) for d in dims] == [
                (name, value if isinstance(value, dict) else {"Fn::Sub": value}) for name, value in dimensions
            ]


# ─── checkov on the deployments the defaults do not show ───────────────────


def with_defaults(**defaults):
    """template.yaml's text with other parameter defaults (checkov reads the defaults only)."""
    text = (cfn.ROOT / "template.yaml").read_text()
    for name, value in defaults.items():
        pattern = re.compile(rf"(^  {name}:\n(?:    .*\n)*?    Default: ).*$", re.MULTILINE)
        text, count = pattern.subn(lambda match: match.group(1) + f'"{value}"', text, count=1)
        assert count == 1, name
    return text


LEAN = {"EnableTracing": "false", "CreateDashboard": "false", "UseCustomerManagedKey": "false"}


@pytest.mark.parametrize(
    "defaults",
    [
        {"FrontDoor": "FunctionUrl", "PublicBaseUrl": PUBLIC, **LEAN},
        {"FrontDoor": "FunctionUrl", "PublicBaseUrl": PUBLIC, "FrontDoorCertificateArn": CERTIFICATE},
        LEAN,
    ],
    ids=["lean-function-url", "function-url-with-alias", "lean-rest-api"],
)
def test_checkov_passes_the_other_deployments(tmp_path, defaults):
    assert os.access(CHECKOV, os.X_OK), f"checkov not installed at {CHECKOV}"
    variant = tmp_path / "template.yaml"
    variant.write_text(with_defaults(**defaults))
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "--quiet", "--compact", "--framework", "cloudformation", "-f", str(variant)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed checks:" in result.stdout
