"""Sign-in through Amazon Cognito (MCP_AUTH=cognito) against a Cognito emulator (moto).

The pool, its resource server, domain and app client are created from the SAM template's own
resource properties (cognito_fixture.py). Tokens come from the emulator where it can issue
them: an ID token and a direct sign-in's access token (scope `aws.cognito.signin.user.admin`,
as Cognito gives one). A token with the product's scopes is what Cognito issues after its
hosted sign-in page and the authorization-code exchange, which the emulator does not have: the
tests sign such a token, shaped as Cognito shapes it, with the emulator's own pool key.

Checked against a real mcp-server (MCP_SERVER_BIN, else $CARGO_TARGET_DIR/release/mcp-server)
and, when scripts/test.sh started one, the Lambda function in an emulator:
- every kind of token: accepted, or the exact status, JSON body and WWW-Authenticate challenge,
  and a refused caller writes nothing;
- the RFC 9728 and RFC 8414 documents at every path a client tries;
- RFC 7591 registration: the client created in the pool, a token of that client accepted,
  every refusal exact and creating nothing, the hourly budget and the cap on clients;
- the official TypeScript SDK's OAuth helpers (ts_oauth.mjs) discover, register and build an
  authorization URL with PKCE against the server.

Environment: MCP_TEST_AWS_ENDPOINT (moto), MCP_TEST_COGNITO_KEY (moto's private pool key, its
jwks-private.json[.gz]); optionally MCP_TEST_COGNITO_LAMBDA (the emulated function's URL
prefix) with MCP_TEST_COGNITO_LAMBDA_BED (the fixture JSON its pool was created with), and
MCP_TEST_NODE_MODULES (an npm prefix holding @modelcontextprotocol/sdk) for the SDK test.

    python -m pytest -q -p no:cacheprovider tests/oauth
"""

import base64
import gzip
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cognito_fixture  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "mcp-lambda" / "target"))
SERVER_BIN = Path(os.environ.get("MCP_SERVER_BIN", TARGET / "release" / "mcp-server"))
MOTO = os.environ.get("MCP_TEST_AWS_ENDPOINT", "")
KEY_FILE = os.environ.get("MCP_TEST_COGNITO_KEY", "")
LAMBDA_URL = os.environ.get("MCP_TEST_COGNITO_LAMBDA", "")
LAMBDA_BED = os.environ.get("MCP_TEST_COGNITO_LAMBDA_BED", "")
NODE_MODULES = os.environ.get("MCP_TEST_NODE_MODULES", "")
PROTOCOL = "2026-07-28"
SCOPES = ("mcp:read", "mcp:call", "mcp:write")

pytestmark = pytest.mark.skipif(
    not (MOTO and KEY_FILE and os.access(SERVER_BIN, os.X_OK)),
    reason=f"needs MCP_TEST_AWS_ENDPOINT, MCP_TEST_COGNITO_KEY and {SERVER_BIN}",
)


# --- helpers -----------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def idp():
    return cognito_fixture.client(MOTO)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token):
    return json.loads(unb64url(token.split(".")[1]))


def pool_key():
    """The emulator's private pool key (one RSA key for every pool), from its JWK."""
    raw = Path(KEY_FILE).read_bytes()
    if KEY_FILE.endswith(".gz"):
        raw = gzip.decompress(raw)
    jwk = json.loads(raw)
    n, e, d = (int.from_bytes(unb64url(jwk[name]), "big") for name in ("n", "e", "d"))
    p, q = rsa.rsa_recover_prime_factors(n, e, d)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, n),
    )
    return jwk["kid"], numbers.private_key()


def sign(claims):
    """A JWS signed RS256 with the emulator's pool key, headed as Cognito heads its tokens."""
    kid, key = pool_key()
    header = {"alg": "RS256", "kid": kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def cognito_access_token(bed, *, client_id=None, sub=None, scope=None, issuer=None, **extra):
    """An access token as Cognito issues it after the hosted sign-in (authorization code):
    the resource server's prefixed scopes in `scope`, no `aud`."""
    now = int(time.time())
    if scope is None:
        scope = " ".join(f"{bed['resource']}/{name}" for name in SCOPES)
    claims = {
        "sub": sub or bed["user_sub"],
        "iss": issuer or bed["issuer"],
        "client_id": client_id or bed["client_id"],
        "origin_jti": str(uuid.uuid4()),
        "token_use": "access",
        "scope": scope,
        "auth_time": now,
        "exp": now + 600,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "username": sub or bed["user_sub"],
        "version": 2,
    }
    claims.update(extra)
    return sign(claims)


def sign_in(pool_id, client_id, user, password):
    """The emulator's tokens for a direct sign-in: (access token, ID token)."""
    result = idp().admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user, "PASSWORD": password},
    )["AuthenticationResult"]
    return result["AccessToken"], result["IdToken"]


def with_tokens(bed):
    """The bed with the emulator's tokens and the user's `sub`."""
    access, id_token = sign_in(bed["pool_id"], bed["client_id"], bed["user"], bed["password"])
    other_access, _ = sign_in(bed["pool_id"], bed["other_client_id"], bed["user"], bed["password"])
    second_access, _ = sign_in(
        bed["second_pool_id"], bed["second_client_id"], bed["second_user"], bed["second_password"]
    )
    return {
        **bed,
        "user_sub": claims_of(access)["sub"],
        "moto_access": access,
        "moto_id": id_token,
        "other_client_access": other_access,
        "second_pool_access": second_access,
    }


def http(method, url, body=None, headers=None, timeout=30):
    """(status, headers, body bytes); HTTP errors are answers too."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def get_json(url):
    status, headers, body = http("GET", url)
    assert status == 200, (url, status, body)
    assert headers["content-type"].startswith("application/json"), headers["content-type"]
    return json.loads(body)


def rpc_messages(body):
    """A JSON body, or the data events of an SSE body."""
    text = body.decode()
    try:
        return [json.loads(text)]
    except ValueError:
        return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def rpc(mcp_url, token, method, params=None, name=None):
    """One 2026-07-28 request: (status, headers, the JSON-RPC response or the error body)."""
    params = dict(params or {})
    params["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "pytest-cognito", "version": "1"},
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": PROTOCOL,
        "mcp-method": method,
    }
    if name:
        headers["mcp-name"] = name
    if token:
        headers["authorization"] = f"Bearer {token}"
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    status, answer_headers, body = http("POST", mcp_url, message, headers)
    if status != 200:
        return status, answer_headers, json.loads(body) if body else None
    answers = [m for m in rpc_messages(body) if m.get("id") == 1]
    assert len(answers) == 1, body
    return status, answer_headers, answers[0]


def call_tool(mcp_url, token, tool, arguments):
    return rpc(mcp_url, token, "tools/call", {"name": tool, "arguments": arguments}, name=tool)


def client_names(pool_id):
    clients = idp().list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    return sorted(c["ClientName"] for c in clients)


def describe_client(pool_id, client_id):
    return idp().describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]


def add_client(pool_id, name):
    """A client created in the pool directly (not through /register); returns its id."""
    created = idp().create_user_pool_client(UserPoolId=pool_id, ClientName=name)
    return created["UserPoolClient"]["ClientId"]


def registered(pool_id):
    return [name for name in client_names(pool_id) if name.startswith("mcp-registered-")]


def register(base, metadata, content_type="application/json"):
    body = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    status, headers, answer = http(
        "POST", f"{base}/register", body, {"content-type": content_type}
    )
    return status, headers, json.loads(answer) if answer else None


# --- the hosts under test ------------------------------------------------------


class Host:
    """Where a test reaches the function: `url` prefixes its paths, `base` is the public base
    URL it names (the issuer, the resource's base)."""

    def __init__(self, label, url, bed):
        self.label, self.url, self.bed = label, url.rstrip("/"), bed
        self.base = bed["base_url"]
        self.resource = bed["resource"]
        self.mcp = f"{self.url}/mcp"

    def scope(self, *names):
        return " ".join(f"{self.resource}/{name}" for name in names)


class Servers:
    """mcp-server processes in Cognito mode over moto; each stopped at teardown."""

    def __init__(self, tmp):
        self.tmp, self.started = tmp, []

    def start(self, name, **overrides):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        bed = with_tokens(cognito_fixture.create(MOTO, base, f"{name}-{secrets.token_hex(4)}"))
        data = self.tmp / f"server-{name}-{port}"
        (data / "files").mkdir(parents=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(data),
            "MCP_BIND": f"127.0.0.1:{port}",
            "MCP_STORE_URL": f"sqlite://{data}/mcp.db",
            "MCP_FILES_URL": f"file://{data}/files",
            "MCP_SIGNING_KEY": secrets.token_urlsafe(48),
            "MCP_RATE_LIMIT_PER_SEC": "0",
            "MCP_METRICS_BIND": "off",
            "MCP_LOG_FORMAT": "text",
            "RUST_LOG": "info",
            "AWS_ENDPOINT_URL": MOTO,
            "AWS_REGION": cognito_fixture.REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            **bed["env"],
        }
        env.update(overrides)
        log = data / "server.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([str(SERVER_BIN)], env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        deadline = time.monotonic() + 20
        while http_ready(f"{base}/health/ready") is not True:
            if proc.poll() is not None:
                raise AssertionError(f"mcp-server exited {proc.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"mcp-server did not get ready: {log.read_text()}")
            time.sleep(0.05)
        host = Host(f"mcp-server {name}", base, bed)
        host.log = log
        return host

    def stop(self):
        for proc in self.started:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def http_ready(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started = Servers(tmp_path_factory.mktemp("cognito"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def server(servers):
    """The main server: registration on, a budget no test here exhausts."""
    return servers.start("main", MCP_OAUTH_REGISTRATION_PER_HOUR="1000")


@pytest.fixture(scope="module")
def function():
    """The emulated Lambda function scripts/test.sh started over its own pool."""
    if not (LAMBDA_URL and LAMBDA_BED):
        pytest.skip("no emulated function (MCP_TEST_COGNITO_LAMBDA, MCP_TEST_COGNITO_LAMBDA_BED)")
    bed = with_tokens(json.loads(Path(LAMBDA_BED).read_text()))
    return Host("Lambda function", LAMBDA_URL, bed)


@pytest.fixture(params=["server", "function"])
def host(request):
    return request.getfixturevalue(request.param)


def challenge(host, error, description, scope=None):
    value = (
        f'Bearer resource_metadata="{host.base}/.well-known/oauth-protected-resource/mcp", '
        f'error="{error}", error_description="{description}"'
    )
    return value + (f', scope="{scope}"' if scope else "")


# --- tokens ------------------------------------------------------------------------


def test_a_token_with_the_product_scopes_lists_and_calls_tools(host):
    token = cognito_access_token(host.bed)
    status, _, answer = rpc(host.mcp, token, "tools/list")
    assert status == 200, answer
    names = {tool["name"] for tool in answer["result"]["tools"]}
    assert {"echo", "state_set", "state_get"} <= names
    status, _, answer = call_tool(host.mcp, token, "echo", {"message": "signed in"})
    assert status == 200, answer
    assert answer["result"]["structuredContent"] == {"message": "signed in"}
    assert not answer["result"].get("isError")


def test_the_caller_is_the_tokens_sub(host):
    """Documents are the user's: the same `sub` through another accepted token reads them."""
    key = f"cognito/{uuid.uuid4().hex[:8]}"
    token = cognito_access_token(host.bed)
    written = {"key": key, "value": {"n": 1}, "expected_version": 0}
    status, _, answer = call_tool(host.mcp, token, "state_set", written)
    assert status == 200 and answer["result"]["structuredContent"]["version"] == 1, answer
    again = cognito_access_token(host.bed, jti=str(uuid.uuid4()))
    status, _, answer = call_tool(host.mcp, again, "state_get", {"key": key})
    assert answer["result"]["structuredContent"]["value"] == {"n": 1}, answer
    stranger = cognito_access_token(host.bed, sub=str(uuid.uuid4()))
    status, _, answer = call_tool(host.mcp, stranger, "state_get", {"key": key})
    assert status == 200 and answer["result"]["isError"] is True, answer


def legacy(mcp_url, token, message, session=None):
    """One 2025-11-25 message on a session: (status, headers, the response with id 1, if any)."""
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "authorization": f"Bearer {token}",
    }
    if session:
        headers.update({"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
    status, answer_headers, body = http("POST", mcp_url, {"jsonrpc": "2.0", **message}, headers)
    answers = [m for m in rpc_messages(body) if m.get("id") == 1] if status == 200 and body else []
    return status, answer_headers, answers[0] if answers else None


def test_a_session_belongs_to_the_user_who_started_it(host):
    """The 2025-11-25 wire: a session started with a Cognito token serves that user only."""
    token = cognito_access_token(host.bed)
    initialize = {
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "pytest-cognito", "version": "1"},
        },
    }
    status, headers, answer = legacy(host.mcp, token, initialize)
    assert status == 200 and answer["result"]["protocolVersion"] == "2025-11-25", answer
    session = headers["mcp-session-id"]
    status, _, _ = legacy(host.mcp, token, {"method": "notifications/initialized"}, session)
    assert status == 202
    call = {"id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "s"}}}
    status, _, answer = legacy(host.mcp, token, call, session)
    assert status == 200 and answer["result"]["structuredContent"] == {"message": "s"}, answer
    stranger = cognito_access_token(host.bed, sub=str(uuid.uuid4()))
    status, _, _ = legacy(host.mcp, stranger, call, session)
    assert status == 404


# The token kinds the function refuses, with the description each refusal names.
REFUSED = {
    "id_token": "the token is not an access token (token_use)",
    "second_pool": "the token was issued by another issuer",
    "unknown_client": "the token's client is not one this server accepts",
    "other_audience": "the token is meant for another audience",
    "expired": "the token has expired",
}


def refused_token(host, kind, sub=None):
    bed = host.bed
    if kind == "id_token":
        return bed["moto_id"]
    if kind == "second_pool":
        if sub is None:
            return bed["second_pool_access"]
        # The same user id under another pool's issuer, signed with the same emulator key.
        issuer = bed["issuer"].replace(bed["pool_id"], bed["second_pool_id"])
        return cognito_access_token(bed, sub=sub, issuer=issuer, client_id=bed["second_client_id"])
    if kind == "unknown_client":
        if sub is None:
            return bed["other_client_access"]
        return cognito_access_token(bed, sub=sub, client_id=bed["other_client_id"])
    if kind == "other_audience":
        return cognito_access_token(bed, sub=sub, aud="https://elsewhere.example/mcp")
    if kind == "expired":
        return cognito_access_token(bed, sub=sub, exp=int(time.time()) - 3600)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_refused_token_gets_401_with_the_exact_challenge(host, kind):
    for method, params, name in (
        ("tools/list", {}, None),
        ("tools/call", {"name": "echo", "arguments": {"message": "x"}}, "echo"),
    ):
        status, headers, body = rpc(host.mcp, refused_token(host, kind), method, params, name)
        assert status == 401, (kind, method, body)
        assert body == {"error": "invalid_token", "error_description": REFUSED[kind]}
        assert headers["www-authenticate"] == challenge(host, "invalid_token", REFUSED[kind])


def test_an_unknown_client_of_the_issuing_pool_is_checked_with_the_pool(host):
    """The emulator's own token for the pool's second client: the right pool and user, a client
    that is neither listed nor registered here."""
    claims = claims_of(host.bed["other_client_access"])
    assert claims["iss"] == host.bed["issuer"] and claims["token_use"] == "access"
    status, _, body = rpc(host.mcp, host.bed["other_client_access"], "tools/list")
    assert (status, body["error_description"]) == (401, REFUSED["unknown_client"])


def test_an_audience_naming_this_resource_is_accepted(host):
    token = cognito_access_token(host.bed, aud=host.resource)
    status, _, answer = call_tool(host.mcp, token, "echo", {"message": "aud"})
    assert status == 200 and answer["result"]["structuredContent"] == {"message": "aud"}, answer


def test_a_direct_sign_in_token_has_no_product_scope(host):
    """The emulator's access token (scope aws.cognito.signin.user.admin) grants nothing here:
    403 naming the prefixed scopes the request needs."""
    token = host.bed["moto_access"]
    assert claims_of(token)["scope"] == "aws.cognito.signin.user.admin"
    needed = host.scope("mcp:read")
    status, headers, body = rpc(host.mcp, token, "tools/list")
    description = f"the token lacks the `{needed}` scope"
    assert (status, body) == (403, {"error": "insufficient_scope", "error_description": description})
    assert headers["www-authenticate"] == challenge(host, "insufficient_scope", description, needed)

    needed = host.scope("mcp:read", "mcp:call")
    status, headers, body = call_tool(host.mcp, token, "echo", {"message": "x"})
    description = f"the token lacks the `{needed}` scope"
    assert (status, body) == (403, {"error": "insufficient_scope", "error_description": description})
    assert headers["www-authenticate"] == challenge(host, "insufficient_scope", description, needed)


def test_unprefixed_or_foreign_scopes_grant_nothing(host):
    for scope in ("mcp:read mcp:call", "https://elsewhere.example/mcp/mcp:read openid email"):
        token = cognito_access_token(host.bed, scope=scope)
        status, _, body = rpc(host.mcp, token, "tools/list")
        assert (status, body["error"]) == (403, "insufficient_scope"), (scope, body)


def test_a_token_without_write_scope_cannot_write(host):
    token = cognito_access_token(host.bed, scope=host.scope("mcp:read", "mcp:call"))
    status, _, answer = call_tool(host.mcp, token, "echo", {"message": "read and call"})
    assert status == 200, answer
    needed = host.scope("mcp:read", "mcp:call", "mcp:write")
    write = {"key": "k", "value": 1, "expected_version": 0}
    status, headers, body = call_tool(host.mcp, token, "state_set", write)
    description = f"the token lacks the `{needed}` scope"
    assert (status, body) == (403, {"error": "insufficient_scope", "error_description": description})
    assert headers["www-authenticate"] == challenge(host, "insufficient_scope", description, needed)


@pytest.mark.parametrize("kind", ["id_token", "second_pool", "unknown_client", "scope_less"])
def test_a_refused_caller_writes_nothing(host, kind):
    """A write by each refused token of the same user leaves nothing for the user to read."""
    key = f"refused/{kind}/{uuid.uuid4().hex[:8]}"
    sub = host.bed["user_sub"]
    token = host.bed["moto_access"] if kind == "scope_less" else refused_token(host, kind, sub)
    assert claims_of(token)["sub"] == sub
    write = {"key": key, "value": {"x": 1}, "expected_version": 0}
    status, _, _ = call_tool(host.mcp, token, "state_set", write)
    assert status in (401, 403)
    status, _, answer = call_tool(host.mcp, cognito_access_token(host.bed), "state_get", {"key": key})
    assert status == 200 and answer["result"]["isError"] is True, answer
    assert "no document under key" in answer["result"]["content"][0]["text"]


def test_no_token_gets_the_metadata_challenge(host):
    status, headers, _ = rpc(host.mcp, None, "tools/list")
    assert status == 401
    assert headers["www-authenticate"] == (
        f'Bearer resource_metadata="{host.base}/.well-known/oauth-protected-resource/mcp"'
    )


# --- metadata ------------------------------------------------------------------------


def expected_scopes(host):
    return [f"{host.resource}/{name}" for name in SCOPES]


def test_protected_resource_metadata_names_this_api_as_the_authorization_server(host):
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        document = get_json(f"{host.url}{path}")
        assert document["resource"] == host.resource, path
        assert document["authorization_servers"] == [host.base], path
        assert document["scopes_supported"] == expected_scopes(host), path
        assert document["bearer_methods_supported"] == ["header"], path


AS_PATHS = (
    "/.well-known/oauth-authorization-server",
    "/.well-known/oauth-authorization-server/mcp",
    "/.well-known/openid-configuration",
    "/.well-known/openid-configuration/mcp",
)


def test_authorization_server_metadata_points_at_the_pools_domain(host):
    domain = host.bed["domain"]
    documents = [get_json(f"{host.url}{path}") for path in AS_PATHS]
    assert all(document == documents[0] for document in documents)
    document = documents[0]
    assert document["issuer"] == host.base
    assert document["authorization_endpoint"] == f"{domain}/oauth2/authorize"
    assert document["token_endpoint"] == f"{domain}/oauth2/token"
    assert document["revocation_endpoint"] == f"{domain}/oauth2/revoke"
    assert document["jwks_uri"] == f"{host.bed['issuer']}/.well-known/jwks.json"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["registration_endpoint"] == f"{host.base}/register"
    assert document["scopes_supported"] == expected_scopes(host)
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "none",
        "client_secret_basic",
        "client_secret_post",
    }


def test_the_domain_and_issuer_are_the_pools(server):
    """The template's pool, domain and resource server, as the emulator holds them, are what the
    server sends clients to."""
    bed = server.bed
    pool = idp().describe_user_pool(UserPoolId=bed["pool_id"])["UserPool"]
    assert pool["Name"] == bed["template"]["UserPool"]["PoolName"]
    domain = idp().describe_user_pool_domain(Domain=bed["template"]["UserPoolDomain"]["Domain"])
    assert domain["DomainDescription"]["UserPoolId"] == bed["pool_id"]
    prefix = bed["template"]["UserPoolDomain"]["Domain"]
    assert bed["domain"] == f"https://{prefix}.auth.us-east-1.amazoncognito.com"
    resource_server = idp().describe_resource_server(
        UserPoolId=bed["pool_id"], Identifier=server.resource
    )
    assert {s["ScopeName"] for s in resource_server["ResourceServer"]["Scopes"]} == set(SCOPES)
    assert bed["issuer"] == f"https://cognito-idp.us-east-1.amazonaws.com/{bed['pool_id']}"


# --- registration ----------------------------------------------------------------------


def test_a_public_client_registers_and_its_token_is_accepted(server):
    before = registered(server.bed["pool_id"])
    metadata = {
        "redirect_uris": ["http://localhost:33418/callback", "https://app.example.com/oauth/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp:read mcp:call",
        "client_name": "pytest public",
    }
    status, headers, answer = register(server.base, metadata)
    assert status == 201, answer
    assert headers["cache-control"] == "no-store"
    client_id = answer.pop("client_id")
    issued = answer.pop("client_id_issued_at")
    assert abs(issued - time.time()) < 120
    assert answer == {
        "redirect_uris": metadata["redirect_uris"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": server.scope("mcp:read", "mcp:call"),
        "client_name": "pytest public",
    }
    assert registered(server.bed["pool_id"]) == sorted([*before, "mcp-registered-pytest public"])

    pool_client = describe_client(server.bed["pool_id"], client_id)
    assert pool_client["ClientName"] == "mcp-registered-pytest public"
    assert pool_client["AllowedOAuthFlows"] == ["code"]
    assert pool_client["AllowedOAuthFlowsUserPoolClient"] is True
    assert pool_client["AllowedOAuthScopes"] == expected_scopes(server)[:2]
    assert pool_client["CallbackURLs"] == metadata["redirect_uris"]
    assert pool_client["SupportedIdentityProviders"] == ["COGNITO"]
    assert pool_client["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]
    assert "ClientSecret" not in pool_client

    # What Cognito would issue this client after sign-in: the scopes it was given.
    token = cognito_access_token(server.bed, client_id=client_id, scope=answer["scope"])
    status, _, reply = call_tool(server.mcp, token, "echo", {"message": "registered"})
    assert status == 200 and reply["result"]["structuredContent"] == {"message": "registered"}, reply


def test_a_confidential_client_gets_its_secret(server):
    status, _, answer = register(server.base, {"redirect_uris": ["https://app.example.com/cb"]})
    assert status == 201, answer
    assert answer["token_endpoint_auth_method"] == "client_secret_basic"
    assert answer["grant_types"] == ["authorization_code"]
    assert answer["scope"] == server.scope(*SCOPES)
    assert answer["client_secret_expires_at"] == 0
    pool_client = describe_client(server.bed["pool_id"], answer["client_id"])
    assert pool_client["ClientSecret"] == answer["client_secret"]
    assert pool_client["ClientName"] == "mcp-registered-mcp-client"
    assert pool_client["AllowedOAuthScopes"] == expected_scopes(server)


def test_a_pool_client_not_registered_here_is_refused(server):
    """A client of the pool created otherwise (an operator's, not named as registered ones
    are) is unknown to the token check, which asks the pool (DescribeUserPoolClient)."""
    client_id = add_client(server.bed["pool_id"], "operator-tool")
    token = cognito_access_token(server.bed, client_id=client_id)
    status, _, body = rpc(server.mcp, token, "tools/list")
    assert (status, body["error_description"]) == (401, REFUSED["unknown_client"])


OVERSIZE = json.dumps(
    {"redirect_uris": ["https://app.example.com/cb"], "software_statement": "a" * 17000}
)
LOOPBACK_RULE = "is neither https nor loopback http (127.0.0.1 or localhost)"
BAD_REGISTRATIONS = {
    "http_redirect": (
        {"redirect_uris": ["http://evil.example/cb"]},
        "application/json",
        "invalid_redirect_uri",
        f'redirect URI "http://evil.example/cb" {LOOPBACK_RULE}',
    ),
    "fragment": (
        {"redirect_uris": ["https://app.example.com/cb#frag"]},
        "application/json",
        "invalid_redirect_uri",
        'redirect URI "https://app.example.com/cb#frag" has a fragment',
    ),
    "no_redirect": (
        {},
        "application/json",
        "invalid_redirect_uri",
        "redirect_uris must list 1 to 10 URIs",
    ),
    "unknown_grant": (
        {
            "redirect_uris": ["https://app.example.com/cb"],
            "grant_types": ["authorization_code", "client_credentials"],
        },
        "application/json",
        "invalid_client_metadata",
        'grant type "client_credentials" is not offered; only authorization_code (with refresh_token)',
    ),
    "implicit": (
        {"redirect_uris": ["https://app.example.com/cb"], "response_types": ["token"]},
        "application/json",
        "invalid_client_metadata",
        'response_types may only be ["code"]',
    ),
    "foreign_scope": (
        {
            "redirect_uris": ["https://app.example.com/cb"],
            "scope": "mcp:read https://elsewhere.example/mcp/mcp:write",
        },
        "application/json",
        "invalid_client_metadata",
        'scope "https://elsewhere.example/mcp/mcp:write" is not offered here; ask for {scopes}',
    ),
    "oversize": (
        OVERSIZE.encode(),
        "application/json",
        "invalid_client_metadata",
        "the registration request is larger than 16384 bytes",
    ),
    "form_encoded": (
        b"redirect_uris=https%3A%2F%2Fapp.example.com%2Fcb",
        "application/x-www-form-urlencoded",
        "invalid_client_metadata",
        "the registration request must be application/json",
    ),
    "not_an_object": (
        b'["https://app.example.com/cb"]',
        "application/json",
        "invalid_client_metadata",
        "the registration request is not a JSON object",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRATIONS))
def test_a_bad_registration_gets_the_exact_rfc_7591_error_and_creates_nothing(server, case):
    metadata, content_type, error, description = BAD_REGISTRATIONS[case]
    before = client_names(server.bed["pool_id"])
    status, headers, answer = register(server.base, metadata, content_type)
    expected = description.format(scopes=" ".join(expected_scopes(server)))
    assert (status, answer) == (400, {"error": error, "error_description": expected})
    assert headers["cache-control"] == "no-store"
    assert client_names(server.bed["pool_id"]) == before


def test_registration_spends_the_hourly_budget_of_the_source(servers):
    """Three an hour: two bad requests and one good one spend it; the fourth is slowed down."""
    host = servers.start("budget", MCP_OAUTH_REGISTRATION_PER_HOUR="3")
    good = {"redirect_uris": ["http://127.0.0.1:8765/cb"], "token_endpoint_auth_method": "none"}
    assert register(host.base, {"redirect_uris": ["ftp://x"]})[0] == 400
    assert register(host.base, b"x", "text/plain")[0] == 400
    assert register(host.base, good)[0] == 201
    before = client_names(host.bed["pool_id"])
    status, headers, answer = register(host.base, good)
    assert status == 429, answer
    assert answer["error"] == "slow_down"
    limit = "at most 3 registrations an hour from one address; retry in "
    assert answer["error_description"].startswith(limit)
    retry_after = int(headers["retry-after"])
    assert 1 <= retry_after <= 3600
    assert answer["error_description"].endswith(f"retry in {retry_after} s")
    assert client_names(host.bed["pool_id"]) == before
    assert len(registered(host.bed["pool_id"])) == 1


def test_registration_stops_at_the_cap_on_clients(servers):
    """Two at most: the pool's own clients do not count, registered ones (however they came)
    do; the third registration is refused and creates nothing."""
    host = servers.start("cap", MCP_OAUTH_REGISTRATION_MAX_CLIENTS="2")
    good = {"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "none"}
    assert register(host.base, good)[0] == 201
    add_client(host.bed["pool_id"], "mcp-registered-by-hand")
    before = client_names(host.bed["pool_id"])
    status, headers, answer = register(host.base, good)
    description = "this server has registered its limit of 2 clients; ask its operator"
    assert (status, answer) == (403, {"error": "access_denied", "error_description": description})
    assert client_names(host.bed["pool_id"]) == before


def test_without_registration_there_is_no_endpoint_and_no_registered_client(servers):
    host = servers.start("closed", MCP_OAUTH_REGISTRATION="off")
    token = cognito_access_token(host.bed)
    # Not served: 404, with or without a token, so a client's discovery moves on.
    metadata = json.dumps({"redirect_uris": ["https://app.example.com/cb"]}).encode()
    for authorization in ({}, {"authorization": f"Bearer {token}"}):
        headers = {"content-type": "application/json", **authorization}
        answer = http("POST", f"{host.base}/register", metadata, headers)
        assert (answer[0], json.loads(answer[2])) == (
            404,
            {"error": "not_found", "error_description": "client registration is off"},
        ), answer
    assert registered(host.bed["pool_id"]) == []
    document = get_json(f"{host.base}/.well-known/oauth-authorization-server")
    assert "registration_endpoint" not in document
    assert document["code_challenge_methods_supported"] == ["S256"]
    # A client named as registered ones are is not accepted while registration is off.
    client_id = add_client(host.bed["pool_id"], "mcp-registered-old")
    old_client = cognito_access_token(host.bed, client_id=client_id)
    status, _, body = rpc(host.mcp, old_client, "tools/list")
    assert (status, body["error_description"]) == (401, REFUSED["unknown_client"])
    # The listed client still is.
    status, _, answer = call_tool(host.mcp, token, "echo", {"message": "listed"})
    assert status == 200, answer


# --- the official TypeScript SDK's OAuth helpers ----------------------------------------


def test_the_typescript_sdk_discovers_registers_and_starts_authorization(server):
    node = shutil.which("node")
    if not (node and NODE_MODULES):
        pytest.skip("no node or MCP_TEST_NODE_MODULES")
    run = subprocess.run(
        [node, str(HERE / "ts_oauth.mjs"), server.mcp, "--modules", NODE_MODULES],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["issuer"] == server.base
    assert result["authorization_endpoint"] == f"{server.bed['domain']}/oauth2/authorize"
    assert result["code_challenge_methods_supported"] == ["S256"]
    client_id = result["client_id"]
    pool_client = describe_client(server.bed["pool_id"], client_id)
    assert pool_client["ClientName"] == "mcp-registered-ts-sdk-test"
    assert pool_client["CallbackURLs"] == ["http://localhost:33418/callback"]
    assert pool_client["AllowedOAuthScopes"] == expected_scopes(server)
    assert "ClientSecret" not in pool_client
    params = result["authorization_params"]
    assert params["client_id"] == client_id
    assert params["scope"] == " ".join(expected_scopes(server))
    assert params["resource"] == server.resource
    verifier = result["code_verifier"]
    assert params["code_challenge"] == b64url(hashlib.sha256(verifier.encode()).digest())
