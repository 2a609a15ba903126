"""Security and cost properties of the EC2 staging tier (cloudformation/staging.yaml).

Each test names one promise of the deployed stack; removing the property from the template
makes the test fail.
"""

import re

import cfn

TEMPLATE = cfn.load("cloudformation/staging.yaml")
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]


def properties(logical_id):
    return RESOURCES[logical_id]["Properties"]


def group_id(logical_id):
    return {"Fn::GetAtt": [logical_id, "GroupId"]}


def security_group_rules(security_group, direction):
    """Inline and stand-alone rules of one security group; `direction` is Ingress or Egress."""
    inline = properties(security_group).get(f"SecurityGroup{direction}", [])
    separate = [
        resource["Properties"]
        for resource in cfn.resources_of_type(TEMPLATE, f"AWS::EC2::SecurityGroup{direction}").values()
        if resource["Properties"]["GroupId"] == group_id(security_group)
    ]
    return inline + separate


def ingress_rules(security_group):
    return security_group_rules(security_group, "Ingress")


def egress_rules(security_group):
    return security_group_rules(security_group, "Egress")


def launch_template_data():
    return properties("LaunchTemplate")["LaunchTemplateData"]


def user_data():
    """The user-data script text (before CloudFormation substitutes ${...})."""
    substitution = launch_template_data()["UserData"]["Fn::Base64"]["Fn::Sub"]
    return substitution[0] if isinstance(substitution, list) else substitution


def heredoc(target):
    """The body the user data writes to `target` with `cat > target <<'MARK'`."""
    match = re.search(
        rf"^cat > {re.escape(target)} <<'?(\w+)'?\n(.*?)^\1$", user_data(), re.MULTILINE | re.DOTALL
    )
    assert match, f"the user data writes no {target}"
    return match.group(2)


def systemd_section(unit_text, section):
    match = re.search(rf"^\[{section}\]\n(.*?)(?=^\[|\Z)", unit_text, re.MULTILINE | re.DOTALL)
    assert match, f"no [{section}] section"
    return [line.strip() for line in match.group(1).splitlines() if line.strip() and not line.startswith("#")]


def identity_policy_statements():
    """(where, statement) for every statement of the stack's IAM roles and policies."""
    for name, resource in RESOURCES.items():
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in resource["Properties"].get("Policies", [])]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [resource["Properties"]["PolicyDocument"]]
        else:
            continue
        for document in documents:
            for statement in cfn.policy_statements(document):
                yield name, statement


def instance_statement(sid):
    for name, statement in identity_policy_statements():
        if name == "InstanceRole" and statement.get("Sid") == sid:
            return statement
    raise AssertionError(f"InstanceRole has no statement {sid}")


def subnet_az_index(subnet):
    """The index the subnet's AZ takes from Fn::GetAZs (the AZ is never hard-coded)."""
    zone = properties(subnet)["AvailabilityZone"]
    index, zones = zone["Fn::Select"]
    assert "Fn::GetAZs" in zones, f"{subnet} does not take its AZ from Fn::GetAZs"
    return index


def route_tables_of(subnet):
    return [
        resource["Properties"]["RouteTableId"]["Ref"]
        for resource in cfn.resources_of_type(TEMPLATE, "AWS::EC2::SubnetRouteTableAssociation").values()
        if resource["Properties"]["SubnetId"] == {"Ref": subnet}
    ]


def routes_of(route_table):
    return [
        resource["Properties"]
        for resource in cfn.resources_of_type(TEMPLATE, "AWS::EC2::Route").values()
        if resource["Properties"]["RouteTableId"] == {"Ref": route_table}
    ]


# ─── Instances ───────────────────────────────────────────────────────────────


def test_instances_require_imdsv2_tokens_without_forwarding_hops():
    metadata = launch_template_data()["MetadataOptions"]
    assert metadata["HttpTokens"] == "required"
    assert metadata["HttpPutResponseHopLimit"] == 1


def test_root_volume_is_encrypted():
    mappings = launch_template_data()["BlockDeviceMappings"]
    assert [mapping["DeviceName"] for mapping in mappings] == ["/dev/xvda"]
    assert all(mapping["Ebs"].get("Encrypted") is True for mapping in mappings)


def test_instance_type_defaults_to_the_free_tier_t3_micro():
    assert launch_template_data()["InstanceType"] == {"Ref": "InstanceType"}
    assert PARAMETERS["InstanceType"]["Default"] == "t3.micro"


def test_instances_use_only_the_instance_security_group():
    interfaces = launch_template_data()["NetworkInterfaces"]
    assert [interface["Groups"] for interface in interfaces] == [[group_id("InstanceSecurityGroup")]]


def assert_admits_only(group, source_group, port):
    """Every ingress rule of `group` admits `source_group` on TCP `port`, and no address range."""
    rules = ingress_rules(group)
    assert rules, f"{group} must admit {source_group}"
    for rule in rules:
        assert rule["SourceSecurityGroupId"] == group_id(source_group)
        assert "CidrIp" not in rule and "CidrIpv6" not in rule
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", port, port)


def test_instances_admit_traffic_only_from_the_load_balancer():
    assert_admits_only("InstanceSecurityGroup", "AlbSecurityGroup", 8080)


def test_auto_scaling_group_keeps_one_to_two_instances_across_two_azs():
    group = properties("AppGroup")
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == ("1", "2", "1")
    subnets = [subnet["Ref"] for subnet in group["VPCZoneIdentifier"]]
    assert sorted(subnet_az_index(subnet) for subnet in subnets) == [0, 1]


# ─── User data and the systemd unit ─────────────────────────────────────────


def test_user_data_stops_at_the_first_failing_command():
    script = user_data()
    assert script.startswith("#!/bin/bash\n")
    flags = re.search(r"^set -(\w+) pipefail$", script, re.MULTILINE)
    assert flags and {"e", "u", "o"} <= set(flags.group(1))


def test_server_runs_as_the_unprivileged_system_user_mcp():
    assert re.search(r"useradd --system\b.*\bmcp$", user_data().replace("\\\n", " "), re.MULTILINE)
    service = systemd_section(heredoc("/etc/systemd/system/mcp-server.service"), "Service")
    assert "User=mcp" in service
    assert "ExecStart=/opt/mcp/bin/mcp-server" in service


def test_server_unit_is_sandboxed_and_restarts_on_failure():
    service = systemd_section(heredoc("/etc/systemd/system/mcp-server.service"), "Service")
    for directive in (
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "EnvironmentFile=/etc/mcp/mcp.env",
    ):
        assert directive in service, directive


def test_environment_file_is_readable_only_by_mcp():
    render = heredoc("/usr/local/sbin/mcp-render-env")
    assert 'chown mcp:mcp "$next"' in render
    assert 'chmod 0600 "$next"' in render
    assert "mv -f \"$next\" /etc/mcp/mcp.env" in render


def test_store_url_uses_the_rds_managed_password_over_verified_tls():
    render = heredoc("/usr/local/sbin/mcp-render-env")
    assert "${Database.MasterUserSecret.SecretArn}" in render
    assert "urllib.parse.quote" in render
    store_url = re.search(r"^MCP_STORE_URL=(.*)$", render, re.MULTILINE).group(1)
    assert store_url.startswith("postgres://mcp:$password@${Database.Endpoint.Address}:")
    assert "sslmode=verify-full" in store_url


# ─── Database ────────────────────────────────────────────────────────────────


def test_database_is_not_publicly_accessible():
    assert properties("Database")["PubliclyAccessible"] is False


def test_database_storage_is_encrypted_with_the_stack_key():
    database = properties("Database")
    assert database["StorageEncrypted"] is True
    assert database["KmsKeyId"] == {"Ref": "StackKey"}


def test_database_password_is_generated_and_kept_by_rds():
    database = properties("Database")
    assert database["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in database


def test_database_keeps_backups_for_at_least_seven_days():
    assert properties("Database")["BackupRetentionPeriod"] >= 7


def test_database_is_protected_from_deletion_and_snapshotted_on_replacement():
    database = RESOURCES["Database"]
    assert database["Properties"]["DeletionProtection"] is True
    assert database["DeletionPolicy"] == "Snapshot"
    assert database["UpdateReplacePolicy"] == "Snapshot"


def test_database_class_defaults_to_the_free_tier_db_t3_micro_single_az():
    database = properties("Database")
    assert database["DBInstanceClass"] == {"Ref": "DbInstanceClass"}
    assert PARAMETERS["DbInstanceClass"]["Default"] == "db.t3.micro"
    assert database["MultiAZ"] is False


def test_database_lives_in_private_subnets_of_two_azs():
    group = properties(properties("Database")["DBSubnetGroupName"]["Ref"])
    subnets = [subnet["Ref"] for subnet in group["SubnetIds"]]
    assert sorted(subnet_az_index(subnet) for subnet in subnets) == [0, 1]
    for subnet in subnets:
        assert properties(subnet)["MapPublicIpOnLaunch"] is False
        tables = route_tables_of(subnet)
        assert tables, f"{subnet} has no route table of its own"
        assert all(routes_of(table) == [] for table in tables), f"{subnet} routes out of the VPC"


def test_database_uses_only_the_database_security_group():
    assert properties("Database")["VPCSecurityGroups"] == [group_id("DbSecurityGroup")]


def test_database_admits_postgres_only_from_the_instance_security_group():
    assert_admits_only("DbSecurityGroup", "InstanceSecurityGroup", 5432)


def test_database_security_group_allows_no_outbound_traffic():
    assert egress_rules("DbSecurityGroup") == [
        {"Description": "No outbound traffic", "IpProtocol": "-1", "CidrIp": "127.0.0.1/32"}
    ]


# ─── Load balancer and network ──────────────────────────────────────────────


def test_target_group_health_checks_readiness_on_the_server_port():
    group = properties("TargetGroup")
    assert group["HealthCheckPath"] == "/health/ready"
    assert group["Port"] == 8080


def test_every_security_group_rule_has_a_description():
    for security_group in cfn.resources_of_type(TEMPLATE, "AWS::EC2::SecurityGroup"):
        for rule in ingress_rules(security_group) + egress_rules(security_group):
            assert rule.get("Description"), f"{security_group}: {rule}"


def test_every_security_group_replaces_the_default_allow_all_egress():
    # Only an inline SecurityGroupEgress list makes CloudFormation remove the default rule.
    for name, group in cfn.resources_of_type(TEMPLATE, "AWS::EC2::SecurityGroup").items():
        assert group["Properties"].get("SecurityGroupEgress"), name


def test_load_balancer_sends_traffic_only_to_the_instances():
    assert egress_rules("AlbSecurityGroup") == [
        {
            "Description": "Requests and health checks to the MCP server",
            "IpProtocol": "tcp",
            "FromPort": 8080,
            "ToPort": 8080,
            "DestinationSecurityGroupId": group_id("InstanceSecurityGroup"),
        }
    ]


def test_load_balancer_drops_invalid_header_fields():
    attributes = {item["Key"]: item["Value"] for item in properties("LoadBalancer")["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_https_uses_tls_1_2_or_1_3_and_plain_http_forwards_only_without_a_certificate():
    assert properties("HttpsListener")["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert RESOURCES["HttpsListener"]["Condition"] == "HasCertificate"
    assert RESOURCES["HttpRedirectListener"]["Condition"] == "HasCertificate"
    assert properties("HttpRedirectListener")["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    assert RESOURCES["HttpForwardListener"]["Condition"] == "NoCertificate"


def test_public_and_private_subnets_span_two_azs():
    subnets = cfn.resources_of_type(TEMPLATE, "AWS::EC2::Subnet")
    public = [name for name in subnets if name.startswith("Public")]
    private = [name for name in subnets if name.startswith("Private")]
    assert sorted(subnet_az_index(name) for name in public) == [0, 1]
    assert sorted(subnet_az_index(name) for name in private) == [0, 1]


def test_no_nat_gateway_is_paid_for():
    assert not cfn.resources_of_type(TEMPLATE, "AWS::EC2::NatGateway")


def test_vpc_traffic_is_logged():
    flow_log = properties("FlowLog")
    assert flow_log["ResourceId"] == {"Ref": "Vpc"}
    assert flow_log["TrafficType"] == "ALL"


# ─── IAM ─────────────────────────────────────────────────────────────────────


def test_no_iam_statement_allows_every_action_of_a_service():
    # Identity policies only: the key policy's account-root kms:* and the buckets' TLS-only
    # s3:* denials are resource policies.
    statements = list(identity_policy_statements())
    assert statements
    for name, statement in statements:
        assert "NotAction" not in statement, name
        for action in cfn.as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), f"{name}: {action}"


def test_only_put_metric_data_needs_every_resource_and_it_is_scoped_by_namespace():
    for name, statement in identity_policy_statements():
        if "*" in cfn.as_list(statement["Resource"]):
            assert (name, cfn.as_list(statement["Action"])) == ("InstanceRole", ["cloudwatch:PutMetricData"])
            assert "cloudwatch:namespace" in statement["Condition"]["StringEquals"]


def test_instances_read_only_the_release_object():
    statement = instance_statement("ReadRelease")
    assert statement["Action"] == "s3:GetObject"
    assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ReleaseBucket}/${ReleaseKey}"}


def test_instances_read_only_the_signing_keys_and_the_database_password():
    statement = instance_statement("ReadSigningKeysAndDbPassword")
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == [
        {"Ref": "SigningKeys"},
        {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]},
    ]


def test_instances_touch_only_the_files_prefix_of_the_files_bucket():
    objects = instance_statement("OwnFiles")
    assert objects["Resource"] == {"Fn::Sub": "${FilesBucket.Arn}/files/*"}
    listing = instance_statement("ListOwnFiles")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["files/", "files/*"]
