"""The lean cost profile of template.yaml: X-Ray tracing, the dashboard and the stack's own KMS
key can each be switched off (EnableTracing, CreateDashboard, UseCustomerManagedKey), and what
each switch removes, keeps and changes.
"""

import json
import re

import pytest

import cfn

TEMPLATE = cfn.load("template.yaml")
RESOURCES = TEMPLATE["Resources"]
LEAN_SWITCHES = {"EnableTracing": "false", "CreateDashboard": "false", "UseCustomerManagedKey": "false"}
STANDARD = cfn.conditions(TEMPLATE)
LEAN = cfn.conditions(TEMPLATE, **LEAN_SWITCHES)


def deployed(decided):
    """{logical id: resource, resolved} of a deployment with the `decided` conditions."""
    return {
        name: cfn.resolve(resource, decided)
        for name, resource in RESOURCES.items()
        if "Condition" not in resource or decided[resource["Condition"]]
    }


def names_in(value):
    """Every logical id `value` refers to (Ref, GetAtt, ${...} in Sub)."""
    text = json.dumps(value)
    refs = set(re.findall(r'"Ref": "([A-Za-z0-9]+)', text))
    refs |= set(re.findall(r'"Fn::GetAtt": \["([A-Za-z0-9]+)"', text))
    refs |= set(re.findall(r"\$\{([A-Za-z0-9]+)[.}]", text))
    return refs


def test_the_switches_default_to_the_standard_profile():
    for name in LEAN_SWITCHES:
        assert TEMPLATE["Parameters"][name]["Default"] == "true"
        assert TEMPLATE["Parameters"][name]["AllowedValues"] == ["true", "false"]
    assert {"DataKey", "DataKeyAlias", "Dashboard"} <= set(deployed(STANDARD))


def test_the_lean_profile_drops_the_key_and_the_dashboard_and_keeps_the_service():
    lean = deployed(LEAN)
    assert not {"DataKey", "DataKeyAlias", "Dashboard"} & set(lean)
    kept = {"Table", "FilesBucket", "SigningKeys", "McpFunction", "AlarmTopic", "ErrorRateAlarm", "LatencyP95Alarm"}
    assert kept <= set(lean)
    # Nothing left names what was removed, outputs included.
    for name, resource in lean.items():
        assert not {"DataKey", "DataKeyAlias", "Dashboard"} & names_in(resource), name
    outputs = {
        name: cfn.resolve(output, LEAN)
        for name, output in TEMPLATE["Outputs"].items()
        if "Condition" not in output or LEAN[output["Condition"]]
    }
    assert "DashboardName" not in outputs
    assert not {"DataKey", "Dashboard"} & names_in(outputs)


@pytest.mark.parametrize(
    "switch, removed",
    [("CreateDashboard", {"Dashboard"}), ("UseCustomerManagedKey", {"DataKey", "DataKeyAlias"}), ("EnableTracing", set())],
)
def test_each_switch_removes_only_its_own_part(switch, removed):
    alone = deployed(cfn.conditions(TEMPLATE, **{switch: "false"}))
    assert set(deployed(STANDARD)) - set(alone) == removed


def test_without_the_stack_key_every_store_is_still_encrypted_by_aws():
    lean = deployed(LEAN)
    # DynamoDB's own key (SSEEnabled false is encryption at rest with an AWS-owned key).
    assert lean["Table"]["Properties"]["SSESpecification"] == {"SSEEnabled": False}
    (rule,) = lean["FilesBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    assert "KmsKeyId" not in lean["SigningKeys"]["Properties"]
    for group in ("McpLogGroup", "AuthorizerLogGroup"):
        assert "KmsKeyId" not in lean[group]["Properties"], group
    assert "KmsKeyArn" not in cfn.resolve(TEMPLATE["Globals"]["Function"], LEAN)
    # CloudWatch cannot publish under SNS's AWS-managed key, so the topic goes without one.
    assert "KmsMasterKeyId" not in lean["AlarmTopic"]["Properties"]
    for function in ("McpFunction", "AuthorizerFunction"):
        actions = {
            action
            for policy in lean[function]["Properties"]["Policies"]
            for statement in cfn.policy_statements(policy)
            for action in cfn.as_list(statement["Action"])
        }
        assert not {action for action in actions if action.startswith("kms:")}, function


def test_with_the_stack_key_everything_uses_it():
    standard = deployed(STANDARD)
    assert standard["Table"]["Properties"]["SSESpecification"]["KMSMasterKeyId"] == {"Ref": "DataKey"}
    (rule,) = standard["FilesBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "DataKey"}}
    assert cfn.resolve(TEMPLATE["Globals"]["Function"], STANDARD)["KmsKeyArn"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert standard["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "DataKey"}


def test_tracing_off_traces_nothing():
    lean = deployed(LEAN)
    assert cfn.resolve(TEMPLATE["Globals"]["Function"], LEAN)["Tracing"] == "PassThrough"
    assert lean["Api"]["Properties"]["TracingEnabled"] is False
    standard = deployed(STANDARD)
    assert standard["Api"]["Properties"]["TracingEnabled"] is True


def test_checks_skipped_for_the_lean_profile_name_the_switch_that_needs_them():
    # A checkov skip that only matters with a switch off says which switch, so it is not read
    # as a standing exception.
    lean_only = {"CKV_AWS_119": "UseCustomerManagedKey=false", "CKV_AWS_73": "EnableTracing=false"}
    found = {}
    for name, resource in RESOURCES.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            if skip["id"] in lean_only:
                found[skip["id"]] = (name, skip["comment"])
    assert set(found) == set(lean_only)
    for check, (name, comment) in found.items():
        assert lean_only[check] in comment, (check, name)
