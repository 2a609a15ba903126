"""Security and cost properties of cloudformation/cloudfront.yaml (the edge in front of the API)."""

import re
from fnmatch import fnmatchcase

import pytest

import cfn

TEMPLATE = cfn.load("cloudformation/cloudfront.yaml")
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
MCP_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"}
MANAGED_RULE_GROUPS = {
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
}


def branches(value):
    """Every value `value` can take: both sides of each Fn::If, recursively."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        return branches(when_true) + branches(when_false)
    return [value]


def distribution_config():
    (distribution,) = cfn.resources_of_type(TEMPLATE, "AWS::CloudFront::Distribution").values()
    return distribution["Properties"]["DistributionConfig"]


def behaviors():
    config = distribution_config()
    return [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]


def mcp_behavior():
    matching = [b for b in distribution_config().get("CacheBehaviors", []) if fnmatchcase("/mcp", b["PathPattern"])]
    assert matching, "no cache behavior matches /mcp"
    return matching[0]


def web_acl():
    (acl,) = cfn.resources_of_type(TEMPLATE, "AWS::WAFv2::WebACL").values()
    return acl


def waf_rules():
    return web_acl()["Properties"]["Rules"]


# ─── Template shape ──────────────────────────────────────────────────────


def test_is_plain_cloudformation_without_transform():
    assert TEMPLATE["AWSTemplateFormatVersion"] == "2010-09-09"
    assert "Transform" not in TEMPLATE


def test_every_parameter_has_a_description():
    assert all(p.get("Description") for p in PARAMETERS.values())


def test_every_parameter_but_the_api_host_has_a_default():
    without_default = {name for name, p in PARAMETERS.items() if "Default" not in p}
    assert without_default == {"ApiDomainName"}


@pytest.mark.parametrize(
    "host, accepted",
    [
        ("abc123defg.execute-api.eu-central-1.amazonaws.com", True),
        ("abc123defg.execute-api.us-gov-west-1.amazonaws.com", True),
        ("evil.example.com", False),
        ("abc123defg.execute-api.eu-central-1.amazonaws.com.evil.example", False),
        ("", False),
    ],
)
def test_api_host_parameter_accepts_only_an_execute_api_host(host, accepted):
    assert bool(re.fullmatch(PARAMETERS["ApiDomainName"]["AllowedPattern"], host)) is accepted


def test_waf_is_on_by_default():
    assert PARAMETERS["EnableWaf"]["Default"] == "true"


def test_cheapest_price_class_by_default():
    assert PARAMETERS["PriceClass"]["Default"] == "PriceClass_100"


# ─── Viewer side ─────────────────────────────────────────────────────────


def test_every_behavior_refuses_or_redirects_plain_http():
    for behavior in behaviors():
        assert behavior["ViewerProtocolPolicy"] in {"https-only", "redirect-to-https"}


def test_mcp_behavior_refuses_plain_http():
    assert mcp_behavior()["ViewerProtocolPolicy"] == "https-only"


def test_custom_certificate_enforces_tls12_2021_with_sni():
    config = distribution_config()
    condition, with_certificate, _ = config["ViewerCertificate"]["Fn::If"]
    assert TEMPLATE["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AcmCertificateArn"}, ""]}]}
    assert with_certificate["AcmCertificateArn"] == {"Ref": "AcmCertificateArn"}
    assert with_certificate["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert with_certificate["SslSupportMethod"] == "sni-only"


def test_alias_and_certificate_come_together():
    rules = TEMPLATE["Rules"]
    assert rules["AliasNeedsCertificate"]["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AcmCertificateArn"}, ""]}]
    }
    assert rules["CertificateNeedsAlias"]["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AliasDomainName"}, ""]}]
    }


def test_http2_and_http3_are_enabled():
    assert distribution_config()["HttpVersion"] == "http2and3"


def test_every_behavior_sends_the_security_headers_policy():
    for behavior in behaviors():
        assert behavior["ResponseHeadersPolicyId"] == {"Ref": "SecurityHeadersPolicy"}


def test_security_headers_policy_sets_hsts_nosniff_and_no_framing():
    headers = RESOURCES["SecurityHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["StrictTransportSecurity"]["Override"] is True
    assert headers["ContentTypeOptions"]["Override"] is True
    assert headers["FrameOptions"]["FrameOption"] == "DENY"


# ─── Origin side ─────────────────────────────────────────────────────────


def test_origin_is_the_api_over_https_only_with_tls12():
    (origin,) = distribution_config()["Origins"]
    assert origin["DomainName"] == {"Ref": "ApiDomainName"}
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]


def test_origin_path_is_the_api_stage():
    (origin,) = distribution_config()["Origins"]
    assert branches(origin["OriginPath"]) == [
        {"Fn::Sub": "/${ApiStageName}"},
        {"Fn::Sub": "/${Environment}"},
    ]


def test_no_behavior_caches():
    for behavior in behaviors():
        assert behavior["CachePolicyId"] == CACHING_DISABLED
        assert "ForwardedValues" not in behavior  # legacy settings carry their own TTLs
    assert not cfn.resources_of_type(TEMPLATE, "AWS::CloudFront::CachePolicy")


def test_mcp_behavior_forwards_authorization_and_mcp_headers_but_not_host():
    # With caching disabled, Managed-AllViewerExceptHostHeader forwards every viewer header
    # (Authorization, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID, Accept, Content-Type)
    # and every query string; API Gateway refuses a Host that is not its own.
    assert mcp_behavior()["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER


def test_every_behavior_forwards_viewer_headers_except_host():
    for behavior in behaviors():
        assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER


def test_mcp_behavior_allows_every_method_including_post_and_delete():
    assert set(mcp_behavior()["AllowedMethods"]) == MCP_METHODS


def test_mcp_behavior_does_not_compress_event_streams():
    assert mcp_behavior()["Compress"] is False


def test_default_behavior_is_read_only():
    assert set(distribution_config()["DefaultCacheBehavior"]["AllowedMethods"]) <= {"GET", "HEAD", "OPTIONS"}


# ─── Access logs ─────────────────────────────────────────────────────────


def test_access_logs_go_to_the_log_bucket():
    logging = distribution_config()["Logging"]
    assert logging["Bucket"] == {"Fn::GetAtt": ["LogBucket", "DomainName"]}
    assert logging.get("IncludeCookies", False) is False


def test_log_bucket_is_private():
    block = RESOURCES["LogBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_log_bucket_is_encrypted_with_the_rotating_log_key():
    (rule,) = RESOURCES["LogBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": ["LogKey", "Arn"]}
    assert RESOURCES["LogKey"]["Properties"]["EnableKeyRotation"] is True


def test_log_bucket_accepts_the_acl_based_cloudfront_log_delivery():
    rules = RESOURCES["LogBucket"]["Properties"]["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerPreferred"}]


def test_log_bucket_expires_logs_after_the_retention():
    rules = RESOURCES["LogBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if r["Status"] == "Enabled" and "ExpirationInDays" in r]
    assert [r["ExpirationInDays"] for r in expiring] == [{"Ref": "LogRetentionDays"}]
    assert all("Prefix" not in r and "Filter" not in r for r in expiring)


def test_log_bucket_refuses_plain_http():
    (policy,) = cfn.resources_of_type(TEMPLATE, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "LogBucket"}
    denials = [
        s
        for s in cfn.policy_statements(policy["Properties"]["PolicyDocument"])
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert denials
    resources = [r for s in denials for r in cfn.as_list(s["Resource"])]
    assert {"Fn::GetAtt": ["LogBucket", "Arn"]} in resources
    assert {"Fn::Sub": "${LogBucket.Arn}/*"} in resources


# ─── WAF ─────────────────────────────────────────────────────────────────


def test_web_acl_is_attached_when_enabled():
    assert distribution_config()["WebACLId"] == {
        "Fn::If": ["UseWaf", {"Fn::GetAtt": ["WebAcl", "Arn"]}, {"Ref": "AWS::NoValue"}]
    }
    assert web_acl()["Condition"] == "UseWaf"
    assert web_acl()["Properties"]["Scope"] == "CLOUDFRONT"


def test_waf_stack_must_be_in_us_east_1():
    rule = TEMPLATE["Rules"]["WafNeedsUsEast1"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}


def test_waf_blocks_each_ip_above_the_rate_limit():
    rate_rules = [r for r in waf_rules() if "RateBasedStatement" in r["Statement"]]
    assert rate_rules
    rule = rate_rules[0]
    assert rule["Action"] == {"Block": {}}
    assert rule["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert rule["Statement"]["RateBasedStatement"]["Limit"] == {"Ref": "WafRateLimit"}
    assert PARAMETERS["WafRateLimit"]["Default"] == 2000


def test_waf_uses_the_three_managed_rule_groups_in_blocking_mode():
    groups = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]: r
        for r in waf_rules()
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    assert set(groups) >= MANAGED_RULE_GROUPS
    for name in MANAGED_RULE_GROUPS:
        assert groups[name]["Statement"]["ManagedRuleGroupStatement"]["VendorName"] == "AWS"
        assert groups[name]["OverrideAction"] == {"None": {}}


def test_waf_only_relaxes_the_body_size_rule():
    overridden = [
        override["Name"]
        for r in waf_rules()
        for override in r["Statement"].get("ManagedRuleGroupStatement", {}).get("RuleActionOverrides", [])
    ]
    assert overridden == ["SizeRestrictions_BODY"]


def test_waf_rule_priorities_are_unique():
    priorities = [r["Priority"] for r in waf_rules()]
    assert len(priorities) == len(set(priorities))


def test_waf_logs_to_an_encrypted_aws_waf_logs_group_with_retention():
    group = RESOURCES["WafLogGroup"]["Properties"]
    assert group["LogGroupName"]["Fn::Sub"].startswith("aws-waf-logs-")
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["KmsKeyId"] == {"Fn::GetAtt": ["LogKey", "Arn"]}
    (logging,) = cfn.resources_of_type(TEMPLATE, "AWS::WAFv2::LoggingConfiguration").values()
    assert logging["Properties"]["ResourceArn"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}
    assert "${WafLogGroup}" in logging["Properties"]["LogDestinationConfigs"][0]["Fn::Sub"]


def test_waf_logs_never_contain_the_bearer_token():
    (logging,) = cfn.resources_of_type(TEMPLATE, "AWS::WAFv2::LoggingConfiguration").values()
    redacted = [f["SingleHeader"]["Name"].lower() for f in logging["Properties"]["RedactedFields"] if "SingleHeader" in f]
    assert "authorization" in redacted


# ─── Names and outputs ───────────────────────────────────────────────────


@pytest.mark.parametrize(
    "resource, path",
    [
        ("LogBucket", ["BucketName"]),
        ("LogKeyAlias", ["AliasName"]),
        ("SecurityHeadersPolicy", ["ResponseHeadersPolicyConfig", "Name"]),
        ("WebAcl", ["Name"]),
        ("WafLogGroup", ["LogGroupName"]),
    ],
)
def test_resource_names_carry_the_environment(resource, path):
    value = RESOURCES[resource]["Properties"]
    for key in path:
        value = value[key]
    assert "mcp-${Environment}" in value["Fn::Sub"]


def test_mcp_url_output_ends_in_mcp_over_https():
    for url in branches(TEMPLATE["Outputs"]["McpUrl"]["Value"]):
        assert url["Fn::Sub"].startswith("https://")
        assert url["Fn::Sub"].endswith("/mcp")


def test_outputs_name_the_distribution_and_the_conditional_web_acl():
    outputs = TEMPLATE["Outputs"]
    assert {"DistributionDomainName", "DistributionId", "McpUrl", "WebAclArn"} <= set(outputs)
    assert outputs["WebAclArn"]["Condition"] == "UseWaf"
