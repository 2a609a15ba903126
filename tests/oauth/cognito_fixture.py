"""Creates the SAM template's Cognito sign-in resources (AuthMode=cognito) in an emulator (moto).

The user pool, its resource server, its domain and the pre-registered app client are created
from the template's own resource properties, resolved for a deployment with AuthMode=cognito
and OAuthRegistration=true whose public base URL is the test server's, so the pool has exactly
the shape a deployed stack's pool has. The function's Cognito environment comes from the
template the same way (McpFunction's variables); only MCP_AUTH_JWKS_URL points at the
emulator's key set, and managed-login styling is off (the emulator has no
CreateManagedLoginBranding).

What the emulator does not take, and is therefore left out:
- UserPool `EnabledMfas` (a CloudFormation-only property; the API sets it with
  SetUserPoolMfaConfig, which the fixture calls instead);
- ManagedLoginBranding (McpClientLoginStyle): CreateManagedLoginBranding is not implemented.
CloudFormation's `UserPoolName` is the API's `PoolName`.

Besides the template's resources, a test bed needs: a user with a permanent password, a
second app client of the same pool that the function does not accept (not listed, not
registered), and a second pool with its own client and user (another issuer).

Used as a module by tests/oauth/test_cognito.py and as a script by scripts/test.sh, which
creates the pool of the Lambda emulator that serves Cognito tokens before starting it:

    python cognito_fixture.py --endpoint http://127.0.0.1:5000 \
        --base-url http://localhost:9000 --name e2e --out cognito.json

The JSON names the pools, clients, users and passwords, and `env`: the function's Cognito
environment (KEY=VALUE pairs for the emulator).
"""

import argparse
import json
import re
import secrets
import sys
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "iac"))
import cfn  # noqa: E402

REGION = "us-east-1"
# moto's account.
ACCOUNT_ID = "123456789012"
URL_SUFFIX = "amazonaws.com"
TEMPLATE = cfn.load("template.yaml")
# The function's variables that describe the sign-in (the rest are the store, files, limits).
COGNITO_VARIABLES = (
    "MCP_AUTH",
    "MCP_AUTH_COGNITO_USER_POOL_ID",
    "MCP_AUTH_COGNITO_CLIENT_IDS",
    "MCP_AUTH_COGNITO_DOMAIN",
    "MCP_AUTH_ISSUER",
    "MCP_AUTH_AUDIENCE",
    "MCP_RESOURCE_URL",
    "MCP_AUTH_JWKS_URL",
    "MCP_OAUTH_REGISTRATION",
    "MCP_OAUTH_REGISTRATION_MAX_CLIENTS",
    "MCP_OAUTH_REGISTRATION_PER_HOUR",
)
# CloudFormation property names that the API spells differently.
RENAMED = {"UserPool": {"UserPoolName": "PoolName"}}
# Properties the API (and so the emulator) does not take at creation.
DROPPED = {"UserPool": {"EnabledMfas"}}


def client(endpoint, service="cognito-idp"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


class Deployment:
    """The template resolved for AuthMode=cognito with registration on, at `base_url`."""

    def __init__(self, base_url, environment):
        self.parameters = {
            name: spec.get("Default", "") for name, spec in TEMPLATE["Parameters"].items()
        }
        self.parameters.update(
            AuthMode="cognito",
            OAuthRegistration="true",
            PublicBaseUrl=base_url,
            # Names the pool (mcp-<environment>) and its domain; unique per test bed, as the
            # emulator is shared.
            Environment=environment,
        )
        self.decided = cfn.conditions(TEMPLATE, **self.parameters)
        self.refs = {
            **self.parameters,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::Partition": "aws",
        }

    def created(self, logical_id):
        """True when the deployment creates `logical_id` (its Condition holds)."""
        condition = TEMPLATE["Resources"][logical_id].get("Condition")
        return condition is None or self.decided[condition]

    def properties(self, logical_id):
        """The resource's properties, conditions resolved and intrinsics evaluated."""
        resolved = cfn.resolve(TEMPLATE["Resources"][logical_id]["Properties"], self.decided)
        return self.evaluate(resolved)

    def api_arguments(self, logical_id):
        """The properties as the Create* call's arguments: renamed, and without what it lacks."""
        properties = self.properties(logical_id)
        renamed = RENAMED.get(logical_id, {})
        dropped = DROPPED.get(logical_id, set())
        return {renamed.get(k, k): v for k, v in properties.items() if k not in dropped}

    def evaluate(self, value):
        if isinstance(value, list):
            return [self.evaluate(item) for item in value]
        if isinstance(value, dict):
            if set(value) == {"Ref"}:
                return self.ref(value["Ref"])
            if set(value) == {"Fn::Sub"}:
                return self.sub(value["Fn::Sub"])
            if len(value) == 1 and next(iter(value)).startswith("Fn::"):
                raise ValueError(f"cannot evaluate {value}")
            return {key: self.evaluate(item) for key, item in value.items()}
        return value

    def ref(self, name):
        value = self.refs[name]
        spec = TEMPLATE["Parameters"].get(name, {})
        if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            return [item.strip() for item in value.split(",")]
        return value

    def sub(self, argument):
        if isinstance(argument, str):
            text, names = argument, {}
        else:
            text, names = argument[0], {k: self.evaluate(v) for k, v in argument[1].items()}

        def replace(match):
            name = match.group(1)
            return str(names[name] if name in names else self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def function_environment(self, logical_id="McpFunction"):
        """The Cognito variables the template gives the function."""
        variables = cfn.resolve(
            TEMPLATE["Resources"][logical_id]["Properties"]["Environment"]["Variables"],
            self.decided,
        )
        return {name: str(self.evaluate(variables[name])) for name in COGNITO_VARIABLES}


def create_user(idp, pool_id, username):
    """A confirmed user with a permanent password; returns the password."""
    password = "Aa1!" + secrets.token_hex(8)
    idp.admin_create_user(
        UserPoolId=pool_id,
        Username=username,
        UserAttributes=[
            {"Name": "email", "Value": username},
            {"Name": "email_verified", "Value": "true"},
        ],
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(
        UserPoolId=pool_id, Username=username, Password=password, Permanent=True
    )
    return password


def create(endpoint, base_url, name):
    """Creates the test bed for an MCP server reached at `base_url`; returns its description."""
    idp = client(endpoint)
    deployment = Deployment(base_url, f"test-{name}")
    for logical_id in ("UserPool", "UserPoolDomain", "ResourceServer", "McpClient"):
        if not deployment.created(logical_id):
            raise AssertionError(f"AuthMode=cognito does not create {logical_id}")

    pool_arguments = deployment.api_arguments("UserPool")
    pool_id = idp.create_user_pool(**pool_arguments)["UserPool"]["Id"]
    deployment.refs["UserPool"] = pool_id
    mfas = deployment.properties("UserPool").get("EnabledMfas", [])
    if "SOFTWARE_TOKEN_MFA" in mfas:
        idp.set_user_pool_mfa_config(
            UserPoolId=pool_id,
            SoftwareTokenMfaConfiguration={"Enabled": True},
            MfaConfiguration=pool_arguments["MfaConfiguration"],
        )
    domain = deployment.api_arguments("UserPoolDomain")
    idp.create_user_pool_domain(**domain)
    resource_server = deployment.api_arguments("ResourceServer")
    idp.create_resource_server(**resource_server)
    mcp_client = deployment.api_arguments("McpClient")
    client_id = idp.create_user_pool_client(**mcp_client)["UserPoolClient"]["ClientId"]
    deployment.refs["McpClient"] = client_id

    env = deployment.function_environment()
    env["MCP_AUTH_JWKS_URL"] = f"{endpoint}/{pool_id}/.well-known/jwks.json"
    env["MCP_AUTH_COGNITO_MANAGED_LOGIN"] = "off"

    user = f"user-{name}@example.com"
    password = create_user(idp, pool_id, user)
    # Same pool, a client the function neither lists nor registered.
    other_client = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=f"other-{name}",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    # Another pool: another issuer, its own client and user.
    second_pool = idp.create_user_pool(PoolName=f"mcp-test-{name}-other")["UserPool"]["Id"]
    second_client = idp.create_user_pool_client(
        UserPoolId=second_pool,
        ClientName=f"second-{name}",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    second_user = f"second-{name}@example.com"
    second_password = create_user(idp, second_pool, second_user)

    return {
        "endpoint": endpoint,
        "base_url": base_url,
        "resource": env["MCP_RESOURCE_URL"],
        "pool_id": pool_id,
        "issuer": env["MCP_AUTH_ISSUER"],
        "client_id": client_id,
        "domain": env["MCP_AUTH_COGNITO_DOMAIN"],
        "user": user,
        "password": password,
        "other_client_id": other_client,
        "second_pool_id": second_pool,
        "second_client_id": second_client,
        "second_user": second_user,
        "second_password": second_password,
        "template": {
            "UserPool": pool_arguments,
            "UserPoolDomain": domain,
            "ResourceServer": resource_server,
            "McpClient": mcp_client,
        },
        "env": env,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--base-url", required=True, help="where the MCP server is reached")
    parser.add_argument("--name", required=True, help="unique per test bed (names the pools)")
    parser.add_argument("--out", required=True, help="the JSON written")
    args = parser.parse_args()
    bed = create(args.endpoint, args.base_url, args.name)
    Path(args.out).write_text(json.dumps(bed, indent=2))


if __name__ == "__main__":
    main()
