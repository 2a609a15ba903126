"""Cost-guard properties of cloudformation/billing.yaml (budget, billing alarm, alert topic)."""

import re

import pytest

import cfn

TEMPLATE = cfn.load("cloudformation/billing.yaml")
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]

EXPECTED_NOTIFICATIONS = {("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)}
TOPIC = {"Ref": "Topic"}


def branches(value):
    """Every value `value` can take: both sides of each Fn::If, recursively."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        return branches(when_true) + branches(when_false)
    return [value]


def only(resource_type):
    (resource,) = cfn.resources_of_type(TEMPLATE, resource_type).values()
    return resource


def budget():
    return only("AWS::Budgets::Budget")["Properties"]


def alarm():
    return only("AWS::CloudWatch::Alarm")["Properties"]


def key_statements():
    return cfn.policy_statements(only("AWS::KMS::Key")["Properties"]["KeyPolicy"])


def topic_statements():
    return cfn.policy_statements(only("AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"])


def statements_for(statements, service):
    return [s for s in statements if s["Effect"] == "Allow" and s.get("Principal", {}).get("Service") == service]


# ─── Template shape ──────────────────────────────────────────────────────


def test_is_plain_cloudformation_without_transform():
    assert TEMPLATE["AWSTemplateFormatVersion"] == "2010-09-09"
    assert "Transform" not in TEMPLATE


def test_every_parameter_has_a_description_and_a_default():
    for parameter in PARAMETERS.values():
        assert parameter.get("Description")
        assert "Default" in parameter


def test_deployment_outside_us_east_1_is_refused():
    rule = TEMPLATE["Rules"]["DeployInUsEast1"]
    assert "RuleCondition" not in rule
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}


@pytest.mark.parametrize("address, accepted", [("", True), ("ops@example.com", True), ("not-an-address", False)])
def test_notification_email_is_optional(address, accepted):
    assert bool(re.fullmatch(PARAMETERS["NotificationEmail"]["AllowedPattern"], address)) is accepted


# ─── Billing alarm ───────────────────────────────────────────────────────


def test_alarm_threshold_defaults_to_50_usd():
    assert PARAMETERS["AlarmThresholdUsd"]["Default"] == 50
    assert alarm()["Threshold"] == {"Ref": "AlarmThresholdUsd"}


def test_alarm_watches_estimated_charges_in_usd():
    properties = alarm()
    assert properties["Namespace"] == "AWS/Billing"
    assert properties["MetricName"] == "EstimatedCharges"
    assert properties["Dimensions"] == [{"Name": "Currency", "Value": "USD"}]


def test_alarm_takes_the_6_hour_maximum():
    assert alarm()["Statistic"] == "Maximum"
    assert alarm()["Period"] == 21600


def test_alarm_fires_above_the_threshold_and_notifies_the_topic():
    assert alarm()["ComparisonOperator"] in {"GreaterThanThreshold", "GreaterThanOrEqualToThreshold"}
    assert TOPIC in alarm()["AlarmActions"]


# ─── Budget ──────────────────────────────────────────────────────────────


def test_budget_defaults_to_50_usd_a_month_of_cost():
    assert PARAMETERS["MonthlyBudgetUsd"]["Default"] == 50
    properties = budget()["Budget"]
    assert properties["BudgetType"] == "COST"
    assert properties["TimeUnit"] == "MONTHLY"
    assert properties["BudgetLimit"] == {"Amount": {"Ref": "MonthlyBudgetUsd"}, "Unit": "USD"}


def test_budget_notifies_at_50_80_100_percent_actual_and_100_percent_forecast():
    notifications = [n["Notification"] for n in budget()["NotificationsWithSubscribers"]]
    assert {(n["NotificationType"], n["Threshold"]) for n in notifications} == EXPECTED_NOTIFICATIONS
    for notification in notifications:
        assert notification["ThresholdType"] == "PERCENTAGE"
        assert notification["ComparisonOperator"] == "GREATER_THAN"


def test_every_budget_notification_reaches_the_topic():
    for entry in budget()["NotificationsWithSubscribers"]:
        for subscribers in branches(entry["Subscribers"]):
            assert {"SubscriptionType": "SNS", "Address": TOPIC} in subscribers


def test_budget_notifications_mail_the_address_only_when_one_is_given():
    for entry in budget()["NotificationsWithSubscribers"]:
        condition, with_email, without_email = entry["Subscribers"]["Fn::If"]
        assert condition == "HasEmail"
        assert {"SubscriptionType": "EMAIL", "Address": {"Ref": "NotificationEmail"}} in with_email
        assert all(s["SubscriptionType"] != "EMAIL" for s in without_email)


# ─── Topic ───────────────────────────────────────────────────────────────


def test_topic_is_encrypted_with_the_customer_managed_key():
    topic = RESOURCES["Topic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["TopicKey", "Arn"]}
    assert only("AWS::KMS::Key") is RESOURCES["TopicKey"]


def test_topic_key_rotates():
    assert RESOURCES["TopicKey"]["Properties"]["EnableKeyRotation"] is True


@pytest.mark.parametrize("service", ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"])
def test_topic_key_lets_the_publishers_encrypt(service):
    actions = {a for s in statements_for(key_statements(), service) for a in cfn.as_list(s["Action"])}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= actions


@pytest.mark.parametrize("service", ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"])
def test_topic_policy_lets_only_this_accounts_publishers_publish(service):
    statements = statements_for(topic_statements(), service)
    assert statements
    for statement in statements:
        assert cfn.as_list(statement["Action"]) == ["sns:Publish"]
        assert statement["Resource"] == TOPIC
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_topic_policy_grants_no_wildcard_principal():
    for statement in topic_statements():
        if statement["Effect"] == "Allow":
            assert statement["Principal"] != "*"
            assert statement["Principal"].get("AWS") != "*"


def test_email_subscription_exists_only_with_an_address():
    subscription = only("AWS::SNS::Subscription")
    assert subscription["Condition"] == "HasEmail"
    assert TEMPLATE["Conditions"]["HasEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "NotificationEmail"}, ""]}]}
    assert subscription["Properties"]["TopicArn"] == TOPIC
    assert subscription["Properties"]["Protocol"] == "email"


# ─── Slack through AWS Chatbot ───────────────────────────────────────────

READ_ONLY_CLOUDWATCH = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/CloudWatchReadOnlyAccess"}


@pytest.mark.parametrize(
    ("given", "posts"),
    [
        ({}, False),
        ({"SlackWorkspaceId": "T0123ABCDE"}, False),
        ({"SlackChannelId": "C0123ABCDE"}, False),
        ({"SlackWorkspaceId": "T0123ABCDE", "SlackChannelId": "C0123ABCDE"}, True),
    ],
)
def test_alerts_reach_slack_only_with_workspace_and_channel(given, posts):
    assert cfn.conditions(TEMPLATE, **given)["PostsToSlack"] is posts
    for logical_id in ("SlackChannel", "SlackChannelRole"):
        assert RESOURCES[logical_id]["Condition"] == "PostsToSlack", logical_id
    rule = TEMPLATE["Rules"]["SlackNeedsBothIds"]
    assert rule["Assertions"][0]["Assert"] == TEMPLATE["Conditions"]["PostsToSlack"]


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("SlackWorkspaceId", "T0123ABCDE", True),
        ("SlackWorkspaceId", "C0123ABCDE", False),
        ("SlackWorkspaceId", "t0123abcde", False),
        ("SlackChannelId", "C0123ABCDE", True),
        ("SlackChannelId", "G0123ABCDE", True),
        ("SlackChannelId", "#alerts", False),
    ],
)
def test_slack_ids_are_checked_before_anything_is_created(parameter, value, accepted):
    assert bool(re.fullmatch(PARAMETERS[parameter]["AllowedPattern"], value)) is accepted


def test_the_slack_channel_posts_the_alert_topic_and_can_only_read():
    channel = RESOURCES["SlackChannel"]["Properties"]
    assert only("AWS::Chatbot::SlackChannelConfiguration")["Properties"] == channel
    assert channel["SnsTopicArns"] == [TOPIC]
    assert channel["GuardrailPolicies"] == [READ_ONLY_CLOUDWATCH]
    assert channel["IamRoleArn"] == {"Fn::GetAtt": ["SlackChannelRole", "Arn"]}
    role = RESOURCES["SlackChannelRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [READ_ONLY_CLOUDWATCH]
    assert "Policies" not in role


# ─── Names and outputs ───────────────────────────────────────────────────


@pytest.mark.parametrize(
    "resource, path",
    [
        ("Topic", ["TopicName"]),
        ("TopicKeyAlias", ["AliasName"]),
        ("EstimatedChargesAlarm", ["AlarmName"]),
        ("Budget", ["Budget", "BudgetName"]),
    ],
)
def test_resource_names_carry_the_prefix(resource, path):
    value = RESOURCES[resource]["Properties"]
    for key in path:
        value = value[key]
    assert "${NamePrefix}" in value["Fn::Sub"]
    assert PARAMETERS["NamePrefix"]["Default"] == "mcp"


def test_outputs_name_the_topic_and_the_budget():
    outputs = TEMPLATE["Outputs"]
    assert outputs["TopicArn"]["Value"] == TOPIC
    assert outputs["BudgetName"]["Value"] == {"Ref": "Budget"}
