//! Authentication, scopes and tenant isolation through the HTTP service, with real tokens.
//!
//! The server verifies bearer tokens itself (auth is on by default); these tests send the
//! shared bad-token corpus, check the RFC 6750 / RFC 9728 challenge, the scope each JSON-RPC
//! method needs, and that one user's token never reaches another user's session, state or files.

use crate::common;
#[path = "../../../../authorizer/tests/it/common/mod.rs"]
mod tokens;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use common::{ACCEPT_BOTH, ALL_SCOPES, Reply, bearer, send};
use mcp_function::{
    app,
    backends::Backends,
    config::{Config, Flags},
    keys::{KeyError, KeySet, KeySource, Keyring},
};
use serde_json::{Value, json};
use tokens::corpus::{Expect, cases};

struct TestApp {
    router: Router,
    _dir: tempfile::TempDir,
}

impl AsRef<Router> for TestApp {
    fn as_ref(&self) -> &Router {
        &self.router
    }
}

fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn app_with(flags: Flags, vars: &[(&str, &str)], keys: Keyring) -> TestApp {
    let config = Config::from_sources(flags, &env(vars)).expect("valid config");
    let (store, dir) = common::sqlite_store().await;
    let backends = Backends {
        keys,
        ..common::backends(Arc::new(store), "sqlite", common::local_blobs(dir.path()))
    };
    let router = app::build(&config, &backends, "server")
        .expect("service builds")
        .router;
    TestApp { router, _dir: dir }
}

/// The server as it starts with no settings: auth on, tokens from `mcp-token`'s defaults.
async fn default_app() -> TestApp {
    app_with(Flags::default(), &[], common::test_keys()).await
}

/// A 2026-07-28 request for `method` with `authorization` (none when `None`).
fn request(authorization: Option<&str>, method: &str, params: Value) -> Request<Body> {
    let mut request = common::request_2026(method, params);
    if let Some(authorization) = authorization {
        let value = authorization.parse().expect("header value");
        request.headers_mut().insert("authorization", value);
    }
    request
}

async fn rpc(app: &TestApp, authorization: &str, method: &str, params: Value) -> Reply {
    send(app, request(Some(authorization), method, params)).await
}

async fn call(app: &TestApp, authorization: &str, tool: &str, arguments: Value) -> Value {
    let reply = rpc(
        app,
        authorization,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{tool}: {}", reply.body);
    reply.json()["result"].clone()
}

fn header(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// ─── The bad-token corpus, in server mode ───────────────────────────────────

#[tokio::test]
async fn the_token_corpus_is_refused_or_accepted_exactly_as_by_the_authorizer() {
    let jwks = tokens::JwksServer::start(tokens::JWKS).await;
    let secret = json!({"keys": [
        {"kid": "k2", "secret": tokens::K2},
        {"kid": "k1", "secret": tokens::K1},
    ]});
    let keys = Keyring::fixed(KeySet::from_secret_json(&secret.to_string()).expect("keys"));
    let app = app_with(
        Flags::default(),
        &[
            ("MCP_AUTH_ISSUER", tokens::ISSUER),
            ("MCP_AUTH_AUDIENCE", tokens::AUDIENCE),
            ("MCP_AUTH_JWKS_URL", &jwks.url),
        ],
        keys,
    )
    .await;
    let cases = cases();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let authorization = case.header.as_deref();
        let reply = match &case.expect {
            Expect::Forbidden(scope) if *scope == authorizer::SCOPE_WRITE => {
                let params = json!({"name": "state_set", "arguments": {"key": "k", "value": 1}});
                send(&app, request(authorization, "tools/call", params)).await
            }
            Expect::Forbidden(scope) if *scope == authorizer::SCOPE_CALL => {
                let params = json!({"name": "echo", "arguments": {"message": "hi"}});
                send(&app, request(authorization, "tools/call", params)).await
            }
            _ => send(&app, request(authorization, "tools/list", json!({}))).await,
        };
        let challenge = header(&reply, "www-authenticate");
        let ok = match &case.expect {
            Expect::Err(error, status) => {
                let body = reply.json();
                reply.status.as_u16() == *status
                    && challenge.starts_with("Bearer ")
                    && challenge.contains("resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\"")
                    && error
                        .error_code()
                        .is_none_or(|code| challenge.contains(&format!("error=\"{code}\"")))
                    && body["error_description"] == error.error_description()
            }
            Expect::Ok(..) => reply.status == StatusCode::OK && challenge.is_empty(),
            Expect::Forbidden(scope) => {
                reply.status == StatusCode::FORBIDDEN
                    && challenge.contains("error=\"insufficient_scope\"")
                    && challenge.contains("scope=\"")
                    && challenge.contains(scope)
                    && reply.json()["error"] == "insufficient_scope"
            }
        };
        if !ok {
            failures.push(format!(
                "{}: {} {} [{challenge}]",
                case.name, reply.status, reply.body
            ));
        }
        // Nothing of the token comes back.
        if let Some(token) = authorization.and_then(|h| h.split(' ').nth(1))
            && token.len() > 8
        {
            assert!(!reply.body.contains(token), "{}", case.name);
            assert!(!challenge.contains(token), "{}", case.name);
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

// ─── The challenge and what stays open ──────────────────────────────────────

#[tokio::test]
async fn a_request_without_a_token_gets_401_with_the_metadata_url() {
    let app = default_app().await;
    let reply = send(&app, request(None, "tools/list", json!({}))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(
        header(&reply, "www-authenticate"),
        "Bearer resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(
        reply.json(),
        json!({"error": "unauthorized", "error_description": "no Authorization header"})
    );

    // The metadata, health and liveness need no token.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/health/live",
        "/health/ready",
    ] {
        let get = Request::get(path)
            .header("host", "localhost:8080")
            .body(Body::empty())
            .expect("request");
        let reply = send(&app, get).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }

    // DELETE and GET on /mcp are guarded too.
    for method in ["DELETE", "GET"] {
        let unauthenticated = Request::builder()
            .method(method)
            .uri("/mcp")
            .header("host", "localhost:8080")
            .header("accept", "text/event-stream")
            .header("mcp-session-id", "whatever")
            .body(Body::empty())
            .expect("request");
        let reply = send(&app, unauthenticated).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method}");
    }
}

#[tokio::test]
async fn the_challenge_points_below_a_configured_resource_url() {
    let app = app_with(
        Flags::default(),
        &[("MCP_RESOURCE_URL", "https://api.example.com/Prod/mcp")],
        common::test_keys(),
    )
    .await;
    let expired = send(&app, request(Some("Bearer a.b.c"), "tools/list", json!({}))).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&expired, "www-authenticate"),
        "Bearer resource_metadata=\"https://api.example.com/Prod/.well-known/oauth-protected-resource/mcp\", \
         error=\"invalid_token\", error_description=\"a token segment is not valid base64url or JSON\""
    );
    // The resource URL is also the audience: a token for the local default is refused.
    let wrong_audience = rpc(&app, &bearer("alice", ALL_SCOPES), "tools/list", json!({})).await;
    assert_eq!(wrong_audience.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_audience.json()["error_description"],
        "the token is meant for another audience"
    );
}

#[tokio::test]
async fn a_forged_host_is_reflected_neither_in_the_challenge_nor_in_the_metadata() {
    let metadata = |host: &str| {
        Request::get("/.well-known/oauth-protected-resource/mcp")
            .header("host", host)
            .body(Body::empty())
            .expect("request")
    };
    let unauthenticated = |host: &str| {
        let mut request = request(None, "tools/list", json!({}));
        request
            .headers_mut()
            .insert("host", host.parse().expect("host"));
        request
    };
    // The server's default allow-list is loopback names only.
    let app = default_app().await;
    for forged in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
    ] {
        let refused = send(&app, unauthenticated(forged)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{forged}");
        assert_eq!(header(&refused, "www-authenticate"), "Bearer", "{forged}");
        let document = send(&app, metadata(forged)).await;
        assert_eq!(
            (document.status, document.body.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "a valid Host header this server accepts is required (or set MCP_RESOURCE_URL)"
            ),
            "{forged}"
        );
        assert!(!document.body.contains("evil"));
        assert_eq!(header(&document, "cache-control"), "", "{forged}");
    }
    // An allowed Host names the resource; the cacheable document varies on it.
    let local = send(&app, metadata("127.0.0.1:8080")).await;
    assert_eq!(local.status, StatusCode::OK);
    assert_eq!(local.json()["resource"], "http://127.0.0.1:8080/mcp");
    assert_eq!(header(&local, "cache-control"), "public, max-age=300");
    assert_eq!(header(&local, "vary"), "Host");

    // Any Host is accepted only when the operator says so, and then each Host gets its own.
    let any = app_with(
        Flags::default(),
        &[("MCP_ALLOWED_HOSTS", "*")],
        common::test_keys(),
    )
    .await;
    let reflected = send(&any, metadata("mcp.example.org")).await;
    assert_eq!(reflected.json()["resource"], "http://mcp.example.org/mcp");
    assert_eq!(header(&reflected, "vary"), "Host");

    // A configured resource URL ignores Host altogether: one document for every cache key.
    let configured = app_with(
        Flags::default(),
        &[("MCP_RESOURCE_URL", "https://api.example.com/mcp")],
        common::test_keys(),
    )
    .await;
    let challenge = send(&configured, unauthenticated("evil.example")).await;
    assert_eq!(
        header(&challenge, "www-authenticate"),
        "Bearer resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/mcp\""
    );
    let fixed = send(&configured, metadata("evil.example")).await;
    assert_eq!(fixed.json()["resource"], "https://api.example.com/mcp");
    assert_eq!(header(&fixed, "cache-control"), "public, max-age=300");
    assert_eq!(header(&fixed, "vary"), "");
}

#[tokio::test]
async fn a_token_in_the_query_string_is_refused_even_beside_a_valid_header() {
    let app = default_app().await;
    let token = bearer("alice", ALL_SCOPES);
    let mut with_query = request(Some(&token), "tools/list", json!({}));
    *with_query.uri_mut() = format!("/mcp?access_token={}", &token[7..])
        .parse()
        .expect("uri");
    let reply = send(&app, with_query).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_request");
    assert_eq!(
        reply.json()["error_description"],
        "tokens in the query string are not accepted; send the Authorization header"
    );
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let app = default_app().await;
    let token = bearer("alice", ALL_SCOPES);
    let mut twice = request(Some(&token), "tools/list", json!({}));
    twice.headers_mut().append(
        "authorization",
        bearer("bob", ALL_SCOPES).parse().expect("value"),
    );
    let reply = send(&app, twice).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_request");
}

// ─── Scopes ─────────────────────────────────────────────────────────────────

#[tokio::test]
async fn each_method_needs_its_scope_and_the_challenge_names_them_all() {
    let app = default_app().await;
    let read = bearer("alice", "mcp:read");
    let call_only = bearer("alice", "mcp:call");
    let read_call = bearer("alice", "mcp:read mcp:call");
    let everything = bearer("alice", ALL_SCOPES);

    for method in [
        "tools/list",
        "resources/list",
        "prompts/list",
        "server/discover",
    ] {
        let reply = rpc(&app, &read, method, json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{method}: {}", reply.body);
    }
    let echo = json!({"name": "echo", "arguments": {"message": "hi"}});
    let set = json!({"name": "state_set", "arguments": {"key": "plan", "value": 1}});
    let cases = [
        (&read, &echo, Some("mcp:read mcp:call")),
        (&call_only, &echo, Some("mcp:read mcp:call")),
        (&read_call, &echo, None),
        (&read_call, &set, Some("mcp:read mcp:call mcp:write")),
        (&everything, &set, None),
    ];
    for (token, params, refused) in cases {
        let reply = rpc(&app, token, "tools/call", params.clone()).await;
        match refused {
            None => assert_eq!(reply.status, StatusCode::OK, "{params}: {}", reply.body),
            Some(scope) => {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{params}");
                let challenge = header(&reply, "www-authenticate");
                assert!(
                    challenge.contains(&format!("scope=\"{scope}\"")),
                    "{challenge}"
                );
                assert_eq!(reply.json()["error"], "insufficient_scope");
            }
        }
    }
    // The refused write stored nothing.
    let get = call(&app, &everything, "state_get", json!({"key": "plan"})).await;
    assert_eq!(get["structuredContent"]["value"], 1, "{get}");
    let no_scope = rpc(&app, &bearer("alice", ""), "tools/list", json!({})).await;
    assert_eq!(no_scope.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_refused_write_changes_nothing() {
    let app = default_app().await;
    let everything = bearer("alice", ALL_SCOPES);
    call(
        &app,
        &everything,
        "state_set",
        json!({"key": "plan", "value": "gold"}),
    )
    .await;
    let read_call = bearer("alice", "mcp:read mcp:call");
    for (tool, arguments) in [
        ("state_set", json!({"key": "plan", "value": "free"})),
        ("state_delete", json!({"key": "plan"})),
        ("file_write", json!({"path": "a.txt", "content": "x"})),
    ] {
        let reply = rpc(
            &app,
            &read_call,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{tool}");
    }
    let get = call(&app, &everything, "state_get", json!({"key": "plan"})).await;
    assert_eq!(get["structuredContent"]["value"], "gold");
    assert_eq!(get["structuredContent"]["version"], 1);
    let files = rpc(&app, &everything, "resources/list", json!({})).await;
    assert_eq!(files.json()["result"]["resources"], json!([]));
}

// ─── Tenant isolation with real tokens ──────────────────────────────────────

/// Opens a 2025-11-25 session with `authorization`; returns its id.
async fn legacy_session(app: &TestApp, authorization: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}});
    let reply = send(app, legacy(authorization, None, init)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let id = header(&reply, "mcp-session-id");
    let ack = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let acked = send(app, legacy(authorization, Some(&id), ack)).await;
    assert_eq!(acked.status, StatusCode::ACCEPTED);
    id
}

fn legacy(authorization: &str, session: Option<&str>, body: Value) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("authorization", authorization);
    if let Some(session) = session {
        builder = builder
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25");
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

#[tokio::test]
async fn one_user_never_reaches_another_users_session_state_or_files() {
    let app = default_app().await;
    let alice = bearer("alice", ALL_SCOPES);
    let bob = bearer("bob", ALL_SCOPES);

    call(
        &app,
        &alice,
        "state_set",
        json!({"key": "secret/plan", "value": {"tier": "gold"}}),
    )
    .await;
    call(
        &app,
        &alice,
        "file_write",
        json!({"path": "diary.txt", "content": "alice's"}),
    )
    .await;

    // State: get, list, delete and a conditional write by bob all see an empty namespace.
    let get = call(&app, &bob, "state_get", json!({"key": "secret/plan"})).await;
    assert_eq!(get["isError"], true, "{get}");
    assert_eq!(
        get["content"][0]["text"],
        "no document under key \"secret/plan\"; use state_list to see your keys"
    );
    let list = call(&app, &bob, "state_list", json!({})).await;
    assert_eq!(list["structuredContent"]["items"], json!([]), "{list}");
    let listed_by_prefix = call(&app, &bob, "state_list", json!({"prefix": "secret/"})).await;
    assert_eq!(listed_by_prefix["structuredContent"]["items"], json!([]));
    let delete = call(&app, &bob, "state_delete", json!({"key": "secret/plan"})).await;
    assert_eq!(delete["structuredContent"]["deleted"], false, "{delete}");
    let overwrite = call(
        &app,
        &bob,
        "state_set",
        json!({"key": "secret/plan", "value": "bob's", "expected_version": 1}),
    )
    .await;
    assert_eq!(overwrite["isError"], true, "{overwrite}");

    // Files: list, read and a write to the same path stay in bob's own space.
    let files = rpc(&app, &bob, "resources/list", json!({})).await;
    assert_eq!(files.json()["result"]["resources"], json!([]));
    let read = rpc(
        &app,
        &bob,
        "resources/read",
        json!({"uri": "files:///diary.txt"}),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(
        read.json()["error"]["message"],
        "Resource not found: files:///diary.txt",
        "exactly as for a file that does not exist"
    );
    assert!(!read.body.contains("alice's"));
    call(
        &app,
        &bob,
        "file_write",
        json!({"path": "diary.txt", "content": "bob's"}),
    )
    .await;

    // Sessions: bob cannot use, probe or end alice's.
    let session = legacy_session(&app, &alice).await;
    let list_tools = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"});
    let hijack = send(&app, legacy(&bob, Some(&session), list_tools.clone())).await;
    assert_eq!(hijack.status, StatusCode::NOT_FOUND, "{}", hijack.body);
    assert_eq!(hijack.error_code(), -32001);
    let unknown = send(
        &app,
        legacy(&bob, Some("no-such-session"), list_tools.clone()),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (hijack.status, hijack.body.clone()),
        "a foreign session looks exactly like a missing one"
    );
    let end = Request::delete("/mcp")
        .header("host", "localhost:8080")
        .header("authorization", &bob)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&app, end).await.status, StatusCode::NOT_FOUND);

    // Alice still has everything, unchanged.
    let still = send(&app, legacy(&alice, Some(&session), list_tools)).await;
    assert_eq!(still.status, StatusCode::OK, "{}", still.body);
    let get = call(&app, &alice, "state_get", json!({"key": "secret/plan"})).await;
    assert_eq!(get["structuredContent"]["value"]["tier"], "gold");
    assert_eq!(get["structuredContent"]["version"], 1);
    let mine = rpc(
        &app,
        &alice,
        "resources/read",
        json!({"uri": "files:///diary.txt"}),
    )
    .await;
    assert_eq!(
        mine.json()["result"]["contents"][0]["text"],
        "alice's",
        "{}",
        mine.body
    );
    let listed = rpc(&app, &alice, "resources/list", json!({})).await;
    assert_eq!(
        listed.json()["result"]["resources"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

// ─── Keys and modes ─────────────────────────────────────────────────────────

/// A secret whose key list the test changes, as an operator rotating keys would.
struct RotatingSecret(std::sync::Mutex<String>);

#[async_trait::async_trait]
impl KeySource for RotatingSecret {
    async fn load(&self) -> Result<KeySet, KeyError> {
        let text = self.0.lock().map(|t| t.clone()).unwrap_or_default();
        KeySet::from_secret_json(&text)
    }
}

fn token_for(kid: &str, secret: &str) -> String {
    let request = authorizer::mint::MintRequest {
        sub: "alice".into(),
        scope: ALL_SCOPES.into(),
        ttl: std::time::Duration::from_secs(600),
        kid: Some(kid.into()),
        issuer: authorizer::mint::DEFAULT_ISSUER.into(),
        audience: authorizer::mint::DEFAULT_AUDIENCE.into(),
    };
    format!(
        "Bearer {}",
        authorizer::mint::mint(&request, secret.as_bytes()).expect("mint")
    )
}

#[tokio::test]
async fn keys_rotated_in_the_secret_start_and_stop_verifying() {
    let old = "old-key-0123456789abcdef0123456789abcdef";
    let new = "new-key-0123456789abcdef0123456789abcdef";
    let secret = Arc::new(RotatingSecret(std::sync::Mutex::new(
        json!({"keys": [{"kid": "old", "secret": old}]}).to_string(),
    )));
    let keyring = Keyring::load(secret.clone(), std::time::Duration::from_secs(3600))
        .await
        .expect("keys");
    let app = app_with(Flags::default(), &[], keyring.clone()).await;
    let list = |token: String| {
        let app = &app;
        async move { rpc(app, &token, "tools/list", json!({})).await.status }
    };
    // One token throughout, as a client sends it: verified once, then remembered.
    let old_token = token_for("old", old);
    assert_eq!(list(old_token.clone()).await, StatusCode::OK);
    assert_eq!(list(old_token.clone()).await, StatusCode::OK);

    // The new key goes first; a token signed with it makes the server re-read the secret.
    *secret.0.lock().expect("lock") = json!({"keys": [
        {"kid": "new", "secret": new}, {"kid": "old", "secret": old}
    ]})
    .to_string();
    assert_eq!(list(token_for("new", new)).await, StatusCode::OK);
    assert_eq!(list(old_token.clone()).await, StatusCode::OK);
    // A key nobody listed stays refused (and re-reads the secret at most once a minute).
    let forged = "forged-0123456789abcdef0123456789abcdef";
    assert_eq!(
        list(token_for("forged", forged)).await,
        StatusCode::UNAUTHORIZED
    );

    // The old key is dropped: after the next refresh its tokens are refused, the remembered
    // one included.
    *secret.0.lock().expect("lock") = json!({"keys": [{"kid": "new", "secret": new}]}).to_string();
    keyring.refresh().await.expect("refresh");
    assert_eq!(list(old_token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(list(token_for("old", old)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(list(token_for("new", new)).await, StatusCode::OK);
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let app = app_with(
        Flags::default(),
        &[("MCP_AUTH_LEEWAY_SECS", "0")],
        common::test_keys(),
    )
    .await;
    let request = authorizer::mint::MintRequest {
        sub: "alice".into(),
        scope: ALL_SCOPES.into(),
        ttl: std::time::Duration::from_secs(1),
        kid: None,
        issuer: authorizer::mint::DEFAULT_ISSUER.into(),
        audience: authorizer::mint::DEFAULT_AUDIENCE.into(),
    };
    let token = format!(
        "Bearer {}",
        authorizer::mint::mint(&request, common::TEST_KEY).expect("mint")
    );
    assert_eq!(
        rpc(&app, &token, "tools/list", json!({})).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = rpc(&app, &token, "tools/list", json!({})).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(
        header(&expired, "www-authenticate").contains("the token has expired"),
        "{}",
        header(&expired, "www-authenticate")
    );
}

#[tokio::test]
async fn no_auth_is_explicit_and_serves_everyone_as_anonymous() {
    let flags = Flags {
        no_auth: true,
        ..Flags::default()
    };
    let app = app_with(flags, &[], common::test_keys()).await;
    let reply = send(
        &app,
        request(
            None,
            "tools/call",
            json!({"name": "state_set", "arguments": {"key": "k", "value": 1}}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let off = app_with(
        Flags::default(),
        &[("MCP_AUTH", "off")],
        common::test_keys(),
    )
    .await;
    let reply = send(&off, request(None, "tools/list", json!({}))).await;
    assert_eq!(reply.status, StatusCode::OK);

    let error = Config::from_sources(Flags::default(), &env(&[("MCP_AUTH", "none")]))
        .expect_err("unknown mode");
    assert_eq!(
        (error.var, error.reason.as_str()),
        ("MCP_AUTH", "expected jwt, cognito or off")
    );
}

// ─── Rate limits ────────────────────────────────────────────────────────────

#[tokio::test]
async fn a_caller_over_the_rate_gets_429_with_retry_after_and_others_do_not() {
    let app = app_with(
        Flags::default(),
        &[
            ("MCP_RATE_LIMIT_PER_SEC", "1"),
            ("MCP_RATE_LIMIT_BURST", "2"),
        ],
        common::test_keys(),
    )
    .await;
    let alice = bearer("alice", ALL_SCOPES);
    let bob = bearer("bob", ALL_SCOPES);
    call(&app, &alice, "state_set", json!({"key": "n", "value": 1})).await;
    call(&app, &alice, "state_get", json!({"key": "n"})).await;
    let limited = rpc(
        &app,
        &alice,
        "tools/call",
        json!({"name": "state_set", "arguments": {"key": "n", "value": 2}}),
    )
    .await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert_eq!(header(&limited, "retry-after"), "1");
    assert_eq!(limited.error_code(), -32029);
    assert_eq!(
        limited.json()["error"]["message"],
        "Rate limit exceeded: at most 1 requests per second (bursts of 2) per caller; retry after 1 s"
    );
    // Bob has his own bucket, and alice's refused write did not happen.
    let get = call(&app, &bob, "state_get", json!({"key": "n"})).await;
    assert_eq!(get["isError"], true, "bob sees nothing of alice: {get}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let after = call(&app, &alice, "state_get", json!({"key": "n"})).await;
    assert_eq!(after["structuredContent"]["value"], 1, "{after}");

    // Unauthenticated requests are refused before they cost anyone's budget.
    for _ in 0..3 {
        let refused = send(&app, request(None, "tools/list", json!({}))).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }
}

// ─── Sign-in with a Cognito pool ───────────────────────────────────────────

const POOL_ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool1";
const COGNITO_RESOURCE: &str = "https://api.example.com/prod/mcp";

/// A server in Cognito mode whose pool keys are served by `jwks`.
async fn cognito_app(jwks: &tokens::JwksServer) -> TestApp {
    app_with(
        Flags::default(),
        &[
            ("MCP_AUTH", "cognito"),
            ("MCP_AUTH_COGNITO_USER_POOL_ID", "us-east-1_Pool1"),
            ("MCP_AUTH_COGNITO_CLIENT_IDS", "stackclient1"),
            ("MCP_AUTH_COGNITO_DOMAIN", "https://auth.example.com"),
            ("MCP_RESOURCE_URL", COGNITO_RESOURCE),
            ("MCP_AUTH_JWKS_URL", &jwks.url),
        ],
        common::test_keys(),
    )
    .await
}

/// A pool access token for the stack's client with `scope`, `overrides` on top.
fn pool_token(scope: &str, overrides: Value) -> String {
    let mut claims = tokens::claims(json!({
        "iss": POOL_ISSUER,
        "aud": null,
        "token_use": "access",
        "client_id": "stackclient1",
        "scope": scope,
    }));
    if let (Some(claims), Some(overrides)) = (claims.as_object_mut(), overrides.as_object()) {
        claims.extend(overrides.clone());
    }
    format!("Bearer {}", tokens::rs256(Some("rsa-1"), &claims))
}

async fn get_json(app: &TestApp, path: &str) -> Reply {
    let get = Request::get(path)
        .header("host", "api.example.com")
        .body(Body::empty())
        .expect("request");
    send(app, get).await
}

#[tokio::test]
async fn a_cognito_deployment_serves_metadata_clients_accept_at_every_discovery_path() {
    let jwks = tokens::JwksServer::start(&tokens::jwks_with(&["rsa-1"])).await;
    let app = cognito_app(&jwks).await;
    let scopes: Vec<String> = ["mcp:read", "mcp:call", "mcp:write"]
        .iter()
        .map(|scope| format!("{COGNITO_RESOURCE}/{scope}"))
        .collect();
    let resource = get_json(&app, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(
        resource.json()["authorization_servers"],
        json!(["https://api.example.com/prod"])
    );
    assert_eq!(resource.json()["scopes_supported"], json!(scopes));
    let expected = json!({
        "issuer": "https://api.example.com/prod",
        "authorization_endpoint": "https://auth.example.com/oauth2/authorize",
        "token_endpoint": "https://auth.example.com/oauth2/token",
        "revocation_endpoint": "https://auth.example.com/oauth2/revoke",
        "userinfo_endpoint": "https://auth.example.com/oauth2/userInfo",
        "jwks_uri": format!("{POOL_ISSUER}/.well-known/jwks.json"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/mcp",
    ] {
        let reply = get_json(&app, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.json(), expected, "{path}");
    }
    // Registration is off unless asked for; token mode serves no authorization server.
    let register = Request::post("/register")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"redirect_uris":["https://a.example/cb"]}"#))
        .expect("request");
    assert_eq!(send(&app, register).await.status, StatusCode::NOT_FOUND);
    let token_mode = default_app().await;
    let reply = get_json(&token_mode, "/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pool_access_tokens_are_mapped_and_other_pool_tokens_refused_exactly() {
    let jwks = tokens::JwksServer::start(&tokens::jwks_with(&["rsa-1"])).await;
    let app = cognito_app(&jwks).await;
    let everything = ["mcp:read", "mcp:call", "mcp:write"]
        .map(|scope| format!("{COGNITO_RESOURCE}/{scope}"))
        .join(" ");
    let alice = pool_token(&everything, json!({}));
    let echo = call(&app, &alice, "echo", json!({"message": "hi"})).await;
    assert_eq!(echo["structuredContent"]["message"], "hi", "{echo}");

    // What a direct sign-in gives: a valid token that grants nothing here.
    let scopeless = pool_token("aws.cognito.signin.user.admin", json!({}));
    let reply = rpc(&app, &scopeless, "tools/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        header(&reply, "www-authenticate"),
        format!(
            "Bearer resource_metadata=\"https://api.example.com/prod/.well-known/oauth-protected-resource/mcp\", \
             error=\"insufficient_scope\", error_description=\"the token lacks the `{COGNITO_RESOURCE}/mcp:read` scope\", \
             scope=\"{COGNITO_RESOURCE}/mcp:read\""
        )
    );
    let refused = [
        (
            pool_token(
                &everything,
                json!({"token_use": "id", "aud": "stackclient1"}),
            ),
            "the token is not an access token (token_use)",
        ),
        (
            pool_token(&everything, json!({"client_id": "otherclient"})),
            "the token's client is not one this server accepts",
        ),
        (
            pool_token(
                &everything,
                json!({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"}),
            ),
            "the token was issued by another issuer",
        ),
        (
            bearer("alice", ALL_SCOPES),
            "the token was issued by another issuer",
        ),
    ];
    for (token, description) in refused {
        let reply = rpc(
            &app,
            &token,
            "tools/call",
            json!({"name": "state_set", "arguments": {"key": "k", "value": 1}}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{description}");
        assert_eq!(
            reply.json(),
            json!({"error": "invalid_token", "error_description": description})
        );
    }
    // None of the refused calls wrote anything.
    let get = call(&app, &alice, "state_get", json!({"key": "k"})).await;
    assert_eq!(get["isError"], true, "{get}");
}

#[tokio::test]
async fn a_caller_with_its_most_answers_unread_gets_429_until_one_is_done() {
    use tower::ServiceExt;
    let app = app_with(
        Flags::default(),
        &[("MCP_MAX_IN_FLIGHT_PER_CALLER", "2")],
        common::test_keys(),
    )
    .await;
    let alice = bearer("alice", ALL_SCOPES);
    let list = || request(Some(&alice), "tools/list", json!({}));
    // Two answers whose bodies are not read yet hold alice's two places.
    let first = app
        .router
        .clone()
        .oneshot(list())
        .await
        .expect("infallible");
    let second = app
        .router
        .clone()
        .oneshot(list())
        .await
        .expect("infallible");
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let refused = send(&app, list()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(
        refused.json()["error"]["message"],
        "Too many requests in flight: at most 2 at once per caller (open streams included); \
         retry once one has finished"
    );
    // Bob is not affected; once alice's answer is read, her next call is served.
    let bob = send(
        &app,
        request(Some(&bearer("bob", ALL_SCOPES)), "tools/list", json!({})),
    )
    .await;
    assert_eq!(bob.status, StatusCode::OK);
    let body = axum::body::to_bytes(first.into_body(), usize::MAX)
        .await
        .expect("body");
    assert!(!body.is_empty());
    assert_eq!(send(&app, list()).await.status, StatusCode::OK);
    drop(second);
}
