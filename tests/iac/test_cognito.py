"""The Cognito sign-in mode of the SAM template (AuthMode=cognito) and its parameters.

Each test names one promise of the deployed stack; removing the property from the template
makes the test fail. Deployments are compared by their condition values (cfn.conditions), so a
test reads the template as CloudFormation would resolve it for that set of parameters.
"""

import json
import tomllib
from urllib.parse import urlsplit

import pytest

import cfn

TEMPLATE = cfn.load("template.yaml")
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
FUNCTIONS = ("McpFunction", "AuthorizerFunction")
PRODUCT_SCOPES = {"mcp:read", "mcp:call", "mcp:write"}
EXISTING_POOL = {"CognitoUserPoolId": "us-east-1_AbC123xyz", "CognitoDomainUrl": "https://auth.example.com"}

AUTH_CONDITIONS = ("UsesCognito", "NamesUserPool", "CreatesUserPool", "RegistersClients")


def deployment(**parameters):
    """The sign-in conditions of a deployment with `parameters`; the others stay Fn::If."""
    decided = cfn.conditions(TEMPLATE, **parameters)
    return {name: decided[name] for name in AUTH_CONDITIONS}


TOKEN = deployment()
COGNITO = deployment(AuthMode="cognito")
REGISTERING = deployment(AuthMode="cognito", OAuthRegistration="true")
EXISTING = deployment(AuthMode="cognito", OAuthRegistration="true", **EXISTING_POOL)

# Variables the Cognito mode adds to both functions, and those only the MCP function reads.
SHARED_COGNITO_VARIABLES = {
    "MCP_AUTH",
    "MCP_AUTH_COGNITO_USER_POOL_ID",
    "MCP_AUTH_COGNITO_CLIENT_IDS",
    "MCP_OAUTH_REGISTRATION",
}
MCP_ONLY_COGNITO_VARIABLES = {
    "MCP_AUTH_COGNITO_DOMAIN",
    "MCP_OAUTH_REGISTRATION_MAX_CLIENTS",
    "MCP_OAUTH_REGISTRATION_PER_HOUR",
}
CREATED_POOL_ARN = {
    "Fn::Sub": [
        "arn:${AWS::Partition}:cognito-idp:${AWS::Region}:${AWS::AccountId}:userpool/${PoolId}",
        {"PoolId": {"Ref": "UserPool"}},
    ]
}


def properties(logical_id):
    return RESOURCES[logical_id]["Properties"]


def variables(logical_id, decided):
    return cfn.resolve(properties(logical_id)["Environment"]["Variables"], decided)


def statements(logical_id, decided):
    return [
        statement
        for policy in cfn.resolve(properties(logical_id)["Policies"], decided)
        for statement in cfn.policy_statements(policy)
    ]


def cognito_actions(logical_id, decided):
    return {
        action
        for statement in statements(logical_id, decided)
        for action in cfn.as_list(statement["Action"])
        if action.startswith("cognito-idp:")
    }


# The public base URL as the functions build it (test_template pins its shape).
BASE_URL = properties("McpFunction")["Environment"]["Variables"]["MCP_AUTH_AUDIENCE"]["Fn::Sub"][1]["Base"]


def prefixed_scope_templates(decided):
    """The client's resource-server scopes as `Fn::Sub` templates, each checked to use BASE_URL."""
    templates = set()
    for scope in cfn.resolve(properties("McpClient"), decided)["AllowedOAuthScopes"]:
        if isinstance(scope, dict):
            template, substitutions = scope["Fn::Sub"]
            assert substitutions == {"Base": BASE_URL}
            templates.add(template)
    return templates


# ─── The default stays token mode ────────────────────────────────────────────


def test_token_mode_is_the_default():
    assert PARAMETERS["AuthMode"]["Default"] == "token"
    assert set(PARAMETERS["AuthMode"]["AllowedValues"]) == {"token", "cognito"}
    assert PARAMETERS["OAuthRegistration"]["Default"] == "false"
    assert PARAMETERS["CognitoUserPoolId"]["Default"] == ""
    assert (TOKEN["UsesCognito"], TOKEN["CreatesUserPool"], TOKEN["RegistersClients"]) == (False, False, False)


def test_token_mode_creates_no_cognito_resource():
    cognito = {name for name, resource in RESOURCES.items() if resource["Type"].startswith("AWS::Cognito::")}
    assert cognito == {"UserPool", "UserPoolDomain", "ResourceServer", "McpClient", "McpClientLoginStyle"}
    for name in cognito:
        assert TOKEN[RESOURCES[name]["Condition"]] is False, name
    for name, output in TEMPLATE["Outputs"].items():
        if name in {"UserPoolId", "McpClientId", "AuthorizationServerMetadataUrl", "CognitoDomain"}:
            assert TOKEN[output["Condition"]] is False, name


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_token_mode_leaves_the_functions_environment_as_it_was(logical_id):
    environment = variables(logical_id, TOKEN)
    assert not (SHARED_COGNITO_VARIABLES | MCP_ONLY_COGNITO_VARIABLES) & set(environment)
    assert environment["MCP_AUTH_ISSUER"] == {"Ref": "AuthIssuer"}
    assert environment["MCP_AUTH_JWKS_URL"] == {"Fn::If": ["HasJwks", {"Ref": "JwksUrl"}, cfn.NO_VALUE]}


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_token_mode_gives_the_functions_no_cognito_permission(logical_id):
    assert cognito_actions(logical_id, TOKEN) == set()
    assert cognito_actions(logical_id, deployment(OAuthRegistration="true")) == set()


# ─── The user pool and its domain ────────────────────────────────────────────


def test_cognito_mode_creates_a_pool_unless_one_is_named():
    assert (COGNITO["UsesCognito"], COGNITO["CreatesUserPool"]) == (True, True)
    assert (EXISTING["UsesCognito"], EXISTING["CreatesUserPool"]) == (True, False)
    for name in ("UserPool", "UserPoolDomain", "McpClientLoginStyle"):
        assert RESOURCES[name]["Condition"] == "CreatesUserPool", name
    for name in ("ResourceServer", "McpClient"):
        assert RESOURCES[name]["Condition"] == "UsesCognito", name


def test_created_pool_signs_in_by_email_and_invitation_only():
    pool = properties("UserPool")
    assert pool["UsernameAttributes"] == ["email"]
    assert pool["UsernameConfiguration"] == {"CaseSensitive": False}
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12
    assert pool["MfaConfiguration"] == "OPTIONAL"
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]


def test_created_pool_is_on_the_plan_with_managed_login_and_the_original_issuer():
    pool = properties("UserPool")
    # Managed login (the only sign-in pages that honour RFC 8707 resource) needs Essentials or Plus.
    assert pool["UserPoolTier"] == "ESSENTIALS"
    assert properties("UserPoolDomain")["ManagedLoginVersion"] == 2
    # The issuer the functions are given is the original form.
    assert pool["IssuerConfiguration"] == {"Type": "ORIGINAL"}


def test_prod_pool_is_protected_from_deletion():
    assert properties("UserPool")["DeletionProtection"] == {"Fn::If": ["IsProd", "ACTIVE", "INACTIVE"]}


def test_function_names_the_domain_the_stack_creates():
    prefix = properties("UserPoolDomain")["Domain"]
    assert prefix == {"Fn::Sub": "mcp-${Environment}-${AWS::AccountId}"}
    assert properties("UserPoolDomain")["UserPoolId"] == {"Ref": "UserPool"}
    domain = variables("McpFunction", COGNITO)["MCP_AUTH_COGNITO_DOMAIN"]
    assert domain == {"Fn::Sub": f"https://{prefix['Fn::Sub']}.auth.${{AWS::Region}}.amazoncognito.com"}
    assert variables("McpFunction", EXISTING)["MCP_AUTH_COGNITO_DOMAIN"] == {"Ref": "CognitoDomainUrl"}


def test_the_created_client_gets_the_cognito_sign_in_style():
    style = properties("McpClientLoginStyle")
    assert RESOURCES["McpClientLoginStyle"]["Type"] == "AWS::Cognito::ManagedLoginBranding"
    assert style == {
        "UserPoolId": {"Ref": "UserPool"},
        "ClientId": {"Ref": "McpClient"},
        "UseCognitoProvidedValues": True,
    }


def test_an_existing_pool_must_come_with_its_domain_url():
    rules = TEMPLATE["Rules"]
    named = rules["ExistingPoolNamesItsDomain"]
    assert named["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CognitoUserPoolId"}, ""]}]}
    assert [a["Assert"] for a in named["Assertions"]] == [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "CognitoDomainUrl"}, ""]}]}
    ]
    created = rules["CreatedPoolHasItsOwnDomain"]
    assert created["RuleCondition"] == {"Fn::Equals": [{"Ref": "CognitoUserPoolId"}, ""]}
    assert [a["Assert"] for a in created["Assertions"]] == [{"Fn::Equals": [{"Ref": "CognitoDomainUrl"}, ""]}]
    registration = rules["RegistrationNeedsCognito"]
    assert [a["Assert"] for a in registration["Assertions"]] == [{"Fn::Equals": [{"Ref": "AuthMode"}, "cognito"]}]


# ─── Resource server and app client ──────────────────────────────────────────


def test_resource_server_is_the_mcp_url_with_exactly_the_product_scopes():
    server = cfn.resolve(properties("ResourceServer"), COGNITO)
    assert server["Identifier"] == {"Fn::Sub": ["${Base}/mcp", {"Base": BASE_URL}]}
    assert {scope["ScopeName"] for scope in server["Scopes"]} == PRODUCT_SCOPES
    assert len(server["Scopes"]) == len(PRODUCT_SCOPES)
    assert all(scope["ScopeDescription"].strip() for scope in server["Scopes"])
    assert server["UserPoolId"] == {"Ref": "UserPool"}
    assert cfn.resolve(properties("ResourceServer"), EXISTING)["UserPoolId"] == {"Ref": "CognitoUserPoolId"}


def test_app_client_is_public_and_uses_only_the_authorization_code_grant():
    client = cfn.resolve(properties("McpClient"), COGNITO)
    assert client["UserPoolId"] == {"Ref": "UserPool"}
    assert client["GenerateSecret"] is False
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    # No implicit grant (tokens in the URL) and no client_credentials (no user, and no secret).
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    # Sign-in is on the hosted pages: the client may refresh, never send a password itself.
    assert client["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]
    assert client["PreventUserExistenceErrors"] == "ENABLED"
    assert client["EnableTokenRevocation"] is True
    assert (client["AccessTokenValidity"], client["TokenValidityUnits"]["AccessToken"]) == (60, "minutes")
    assert (client["RefreshTokenValidity"], client["TokenValidityUnits"]["RefreshToken"]) == (30, "days")
    assert RESOURCES["McpClient"]["DependsOn"] == "ResourceServer"


def test_app_client_scopes_are_the_resource_servers_prefixed_scopes():
    identifier, _ = properties("ResourceServer")["Identifier"]["Fn::Sub"]
    names = {scope["ScopeName"] for scope in properties("ResourceServer")["Scopes"]}
    assert prefixed_scope_templates(COGNITO) == {f"{identifier}/{name}" for name in names}
    plain = {scope for scope in properties("McpClient")["AllowedOAuthScopes"] if isinstance(scope, str)}
    assert plain <= {"openid", "email", "profile"}
    assert "aws.cognito.signin.user.admin" not in plain


def test_callbacks_come_from_the_parameter_whose_default_covers_known_clients():
    assert properties("McpClient")["CallbackURLs"] == {"Ref": "OAuthCallbackUrls"}
    parameter = PARAMETERS["OAuthCallbackUrls"]
    assert parameter["Type"] == "CommaDelimitedList"
    defaults = parameter["Default"].split(",")
    assert {
        "https://claude.ai/api/mcp/auth_callback",
        "http://localhost:6274/oauth/callback",
        "https://vscode.dev/redirect",
        "http://localhost:3000/callback",
    } <= set(defaults)
    assert len(defaults) == len(set(defaults)) <= 100


def test_default_callbacks_are_ones_cognito_accepts():
    # https anywhere, plain http only on localhost, or an app's own scheme; never a fragment.
    for url in PARAMETERS["OAuthCallbackUrls"]["Default"].split(","):
        parts = urlsplit(url)
        assert not parts.fragment, url
        assert parts.scheme and parts.scheme not in {"javascript", "data", "file"}, url
        if parts.scheme == "http":
            assert parts.hostname == "localhost", url


# ─── Function and authorizer in Cognito mode ─────────────────────────────────


@pytest.mark.parametrize("logical_id", FUNCTIONS)
@pytest.mark.parametrize("decided, pool", [(COGNITO, {"Ref": "UserPool"}), (EXISTING, {"Ref": "CognitoUserPoolId"})])
def test_cognito_mode_points_both_functions_at_the_pool_and_its_client(logical_id, decided, pool):
    environment = variables(logical_id, decided)
    assert environment["MCP_AUTH"] == "cognito"
    assert environment["MCP_AUTH_COGNITO_USER_POOL_ID"] == pool
    assert environment["MCP_AUTH_COGNITO_CLIENT_IDS"] == {"Ref": "McpClient"}
    issuer = "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${PoolId}"
    assert environment["MCP_AUTH_ISSUER"] == {"Fn::Sub": [issuer, {"PoolId": pool}]}
    assert environment["MCP_AUTH_JWKS_URL"] == {"Fn::Sub": [f"{issuer}/.well-known/jwks.json", {"PoolId": pool}]}
    assert environment["MCP_AUTH_AUDIENCE"] == {"Fn::Sub": ["${Base}/mcp", {"Base": BASE_URL}]}


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_cognito_variables_are_conditional_on_the_mode(logical_id):
    # Each variable the mode adds is an Fn::If on UsesCognito whose other branch is AWS::NoValue,
    # and the issuer and JWKS fall back to the token-mode parameters.
    written = properties(logical_id)["Environment"]["Variables"]
    added = SHARED_COGNITO_VARIABLES | (MCP_ONLY_COGNITO_VARIABLES if logical_id == "McpFunction" else set())
    for name in added:
        condition, _, otherwise = written[name]["Fn::If"]
        assert (condition, otherwise) == ("UsesCognito", cfn.NO_VALUE), name
    assert written["MCP_AUTH_ISSUER"]["Fn::If"][0] == "UsesCognito"
    assert written["MCP_AUTH_ISSUER"]["Fn::If"][2] == {"Ref": "AuthIssuer"}
    assert written["MCP_AUTH_JWKS_URL"]["Fn::If"][0] == "UsesCognito"
    assert written["MCP_AUTH_JWKS_URL"]["Fn::If"][2] == {"Fn::If": ["HasJwks", {"Ref": "JwksUrl"}, cfn.NO_VALUE]}


def test_only_the_function_knows_the_domain_and_the_registration_limits():
    assert not MCP_ONLY_COGNITO_VARIABLES & set(variables("AuthorizerFunction", REGISTERING))
    assert MCP_ONLY_COGNITO_VARIABLES <= set(variables("McpFunction", REGISTERING))


def test_registration_is_off_unless_its_parameter_turns_it_on():
    # Both read it: the function to serve /register, the authorizer to accept registered clients.
    for logical_id in FUNCTIONS:
        assert variables(logical_id, COGNITO)["MCP_OAUTH_REGISTRATION"] == "off", logical_id
        assert variables(logical_id, REGISTERING)["MCP_OAUTH_REGISTRATION"] == "on", logical_id
    environment = variables("McpFunction", REGISTERING)
    assert environment["MCP_OAUTH_REGISTRATION_MAX_CLIENTS"] == {"Ref": "OAuthMaxRegisteredClients"}
    assert environment["MCP_OAUTH_REGISTRATION_PER_HOUR"] == {"Ref": "OAuthRegistrationsPerHour"}
    assert TEMPLATE["Conditions"]["RegistersClients"] == {
        "Fn::And": [{"Condition": "UsesCognito"}, {"Fn::Equals": [{"Ref": "OAuthRegistration"}, "true"]}]
    }


@pytest.mark.parametrize(
    "name, default, most", [("OAuthMaxRegisteredClients", 50, 1000), ("OAuthRegistrationsPerHour", 10, 1000)]
)
def test_registration_limits_are_bounded_numbers(name, default, most):
    parameter = PARAMETERS[name]
    assert parameter["Type"] == "Number"
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (default, 1, most)


# ─── IAM for registration ───────────────────────────────────────────────────


def test_the_function_may_create_clients_only_when_registering():
    assert cognito_actions("McpFunction", COGNITO) == set()
    assert cognito_actions("McpFunction", REGISTERING) == {
        "cognito-idp:CreateUserPoolClient",
        "cognito-idp:ListUserPoolClients",
        "cognito-idp:DescribeUserPoolClient",
        "cognito-idp:CreateManagedLoginBranding",
    }


def test_the_authorizer_may_only_describe_clients_and_only_when_registering():
    assert cognito_actions("AuthorizerFunction", COGNITO) == set()
    assert cognito_actions("AuthorizerFunction", REGISTERING) == {"cognito-idp:DescribeUserPoolClient"}


@pytest.mark.parametrize("logical_id", FUNCTIONS)
@pytest.mark.parametrize(
    "decided, pool_arn",
    [
        (REGISTERING, CREATED_POOL_ARN),
        (EXISTING, {"Fn::Sub": [CREATED_POOL_ARN["Fn::Sub"][0], {"PoolId": {"Ref": "CognitoUserPoolId"}}]}),
    ],
)
def test_registration_permissions_are_scoped_to_the_pool(logical_id, decided, pool_arn):
    granted = [
        statement
        for statement in statements(logical_id, decided)
        if any(action.startswith("cognito-idp:") for action in cfn.as_list(statement["Action"]))
    ]
    assert granted
    for statement in granted:
        assert statement["Effect"] == "Allow"
        assert cfn.as_list(statement["Resource"]) == [pool_arn]
        assert all(action.startswith("cognito-idp:") for action in cfn.as_list(statement["Action"]))


# ─── Gateway challenge and outputs ──────────────────────────────────────────


def test_access_denied_names_the_scopes_cognito_issues_in_cognito_mode():
    header = "gatewayresponse.header.WWW-Authenticate"
    written = properties("AccessDeniedResponse")["ResponseParameters"][header]
    assert written["Fn::If"][0] == "UsesCognito"
    challenge, substitutions = cfn.resolve(written, COGNITO)["Fn::Sub"]
    # The gateway's responses exist only behind the REST API: its branch of the base URL.
    assert substitutions == {"Base": BASE_URL["Fn::If"][1]}
    scopes = challenge.split('scope="')[1].split('"')[0].split(" ")
    assert set(scopes) == prefixed_scope_templates(COGNITO)
    assert len(scopes) == len(PRODUCT_SCOPES)
    token_challenge, _ = cfn.resolve(written, TOKEN)["Fn::Sub"]
    assert 'scope="mcp:read mcp:call mcp:write"' in token_challenge


def test_the_401_challenge_is_the_same_in_both_modes():
    written = properties("UnauthorizedResponse")["ResponseParameters"]["gatewayresponse.header.WWW-Authenticate"]
    assert "UsesCognito" not in json.dumps(written)


def test_cognito_outputs_name_the_pool_client_metadata_and_domain():
    outputs = TEMPLATE["Outputs"]
    for name in ("UserPoolId", "McpClientId", "AuthorizationServerMetadataUrl", "CognitoDomain"):
        assert outputs[name]["Condition"] == "UsesCognito", name
        assert outputs[name]["Description"].strip(), name
    assert cfn.resolve(outputs["UserPoolId"]["Value"], COGNITO) == {"Ref": "UserPool"}
    assert cfn.resolve(outputs["UserPoolId"]["Value"], EXISTING) == {"Ref": "CognitoUserPoolId"}
    assert outputs["McpClientId"]["Value"] == {"Ref": "McpClient"}
    assert outputs["AuthorizationServerMetadataUrl"]["Value"] == {
        "Fn::Sub": ["${Base}/.well-known/oauth-authorization-server", {"Base": BASE_URL}]
    }
    assert outputs["CognitoDomain"]["Value"] == properties("McpFunction")["Environment"]["Variables"][
        "MCP_AUTH_COGNITO_DOMAIN"
    ]["Fn::If"][1]


def test_samconfig_environments_stay_in_token_mode():
    with open(cfn.ROOT / "samconfig.toml", "rb") as handle:
        config = tomllib.load(handle)
    for environment, section in config.items():
        if isinstance(section, dict) and "deploy" in section:
            overrides = section["deploy"]["parameters"]["parameter_overrides"].split()
            assert not any(item.startswith("AuthMode=") for item in overrides), environment
    assert "AuthMode=cognito" in (cfn.ROOT / "samconfig.toml").read_text(), "the file shows how to turn Cognito on"
