//! The authorizer's event → response function, in process, with real API Gateway event JSON.

use crate::common;

use authorizer::{
    AuthError, ConfigError, Verifier,
    lambda::{AuthorizerError, EnvConfig, KeySource, handle_event},
};
use common::*;
use serde_json::{Value, json};

const METHOD_ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:abcdef1234/prod/POST/mcp";

/// No tool needs `mcp:write`: the events below carry no 2026 tool-call headers anyway.
const NO_WRITE_TOOLS: &[String] = &[];

fn verifier() -> Verifier {
    Verifier::new(config(None)).expect("verifier")
}

fn token(scope: &str) -> String {
    hs256(Some("k1"), K1.as_bytes(), &claims(json!({"scope": scope})))
}

/// Authorizer events as API Gateway sends them (`../data/`), for `POST /mcp` without a token.
const REST_EVENT: &str = include_str!("../data/apigw-rest-authorizer-event.json");
const HTTP_V2_EVENT: &str = include_str!("../data/apigw-http-authorizer-event.json");
const TOKEN_EVENT: &str = include_str!("../data/apigw-token-authorizer-event.json");

fn captured(event: &str) -> Value {
    serde_json::from_str(event).expect("captured event is JSON")
}

/// The captured REST API REQUEST-authorizer event, with `authorization` as its header.
fn rest_event(authorization: Option<&str>) -> Value {
    let mut event = captured(REST_EVENT);
    if let Some(value) = authorization {
        event["headers"]["Authorization"] = json!(value);
        event["multiValueHeaders"]["Authorization"] = json!([value]);
    }
    event
}

/// The captured HTTP API (payload 2.0) REQUEST-authorizer event, with `authorization` as its
/// header (header names arrive lowercased) and identity source.
fn http_v2_event(authorization: Option<&str>) -> Value {
    let mut event = captured(HTTP_V2_EVENT);
    if let Some(value) = authorization {
        event["headers"]["authorization"] = json!(value);
    }
    event["identitySource"] = json!([authorization.unwrap_or_default()]);
    event
}

#[tokio::test]
async fn rest_allows_a_token_with_read() {
    let header = format!("Bearer {}", token("mcp:read mcp:call"));
    let response = handle_event(&verifier(), NO_WRITE_TOOLS, &rest_event(Some(&header)))
        .await
        .expect("policy");
    assert_eq!(
        response,
        json!({
            "principalId": "alice",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}],
            },
            "context": {"sub": "alice", "scope": "mcp:call mcp:read"},
        })
    );
}

#[tokio::test]
async fn rest_header_name_is_case_insensitive() {
    let mut event = rest_event(None);
    event["headers"]["aUtHoRiZaTiOn"] = json!(format!("bearer {}", token("mcp:read")));
    let response = handle_event(&verifier(), NO_WRITE_TOOLS, &event)
        .await
        .expect("policy");
    assert_eq!(
        response["policyDocument"]["Statement"][0]["Effect"],
        "Allow"
    );
}

#[tokio::test]
async fn rest_denies_a_valid_token_without_read() {
    let header = format!("Bearer {}", token("mcp:call"));
    let response = handle_event(&verifier(), NO_WRITE_TOOLS, &rest_event(Some(&header)))
        .await
        .expect("policy");
    assert_eq!(response["principalId"], "alice");
    assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Deny");
    assert_eq!(
        response["policyDocument"]["Statement"][0]["Resource"],
        METHOD_ARN
    );
    assert_eq!(
        response["context"],
        json!({"sub": "alice", "scope": "mcp:call"})
    );
}

#[tokio::test]
async fn rest_refuses_missing_and_invalid_tokens_with_unauthorized() {
    let expired = hs256(
        Some("k1"),
        K1.as_bytes(),
        &claims(json!({"exp": now() - 3600})),
    );
    for header in [
        None,
        Some("Basic abc".to_owned()),
        Some(format!("Bearer {expired}")),
    ] {
        let error = handle_event(&verifier(), NO_WRITE_TOOLS, &rest_event(header.as_deref()))
            .await
            .expect_err("refused");
        assert!(matches!(error, AuthorizerError::Unauthorized(_)));
        // This exact message makes API Gateway answer 401.
        assert_eq!(error.to_string(), "Unauthorized");
        let diagnostic: lambda_http::lambda_runtime::Diagnostic = error.into();
        assert_eq!(diagnostic.error_message, "Unauthorized");
    }
}

#[tokio::test]
async fn rest_token_authorizer_event() {
    let mut event = captured(TOKEN_EVENT);
    event["authorizationToken"] = json!(format!("Bearer {}", token("mcp:read")));
    let response = handle_event(&verifier(), NO_WRITE_TOOLS, &event)
        .await
        .expect("policy");
    assert_eq!(
        response["policyDocument"]["Statement"][0]["Effect"],
        "Allow"
    );
}

#[tokio::test]
async fn http_v2_simple_responses() {
    let v = verifier();
    let header = format!("Bearer {}", token("mcp:read mcp:write"));
    assert_eq!(
        handle_event(&v, NO_WRITE_TOOLS, &http_v2_event(Some(&header)))
            .await
            .expect("response"),
        json!({"isAuthorized": true, "context": {"sub": "alice", "scope": "mcp:read mcp:write"}})
    );
    let header = format!("Bearer {}", token("mcp:call"));
    assert_eq!(
        handle_event(&v, NO_WRITE_TOOLS, &http_v2_event(Some(&header)))
            .await
            .expect("response"),
        json!({"isAuthorized": false, "context": {"sub": "alice", "scope": "mcp:call"}})
    );
    for header in [None, Some("Bearer garbage")] {
        assert_eq!(
            handle_event(&v, NO_WRITE_TOOLS, &http_v2_event(header))
                .await
                .expect("response"),
            json!({"isAuthorized": false, "context": {}})
        );
    }
}

#[tokio::test]
async fn malformed_events_are_errors_but_not_unauthorized() {
    let v = verifier();
    for event in [
        json!("not an object"),
        json!({"type": "REQUEST"}),
        json!({"type": "OTHER", "methodArn": METHOD_ARN}),
        json!({"version": "2.0", "type": "TOKEN"}),
    ] {
        let error = handle_event(&v, NO_WRITE_TOOLS, &event)
            .await
            .expect_err("bad event");
        assert!(matches!(error, AuthorizerError::BadEvent(_)), "{event}");
        assert_ne!(error.to_string(), "Unauthorized");
    }
}

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[tokio::test]
async fn config_from_environment() {
    let config = EnvConfig::from_lookup(env(&[
        ("MCP_AUTH_ISSUER", ISSUER),
        ("MCP_AUTH_AUDIENCE", AUDIENCE),
        ("MCP_SIGNING_KEY", K1),
    ]))
    .expect("config");
    assert_eq!(config.keys, KeySource::SigningKey(K1.as_bytes().to_vec()));
    let verifier = config.verifier().await.expect("verifier");
    // MCP_SIGNING_KEY has kid `env`; a token without kid uses it as the first key.
    let header = format!("Bearer {}", hs256(None, K1.as_bytes(), &claims(json!({}))));
    let response = handle_event(&verifier, NO_WRITE_TOOLS, &rest_event(Some(&header)))
        .await
        .expect("policy");
    assert_eq!(
        response["policyDocument"]["Statement"][0]["Effect"],
        "Allow"
    );

    let secret = EnvConfig::from_lookup(env(&[
        ("MCP_AUTH_ISSUER", ISSUER),
        ("MCP_AUTH_AUDIENCE", AUDIENCE),
        ("MCP_SECRET_ID", "mcp/signing-keys"),
        (
            "MCP_AUTH_JWKS_URL",
            "https://issuer.example.com/.well-known/jwks.json",
        ),
    ]))
    .expect("config");
    assert_eq!(secret.keys, KeySource::SecretId("mcp/signing-keys".into()));

    let named = |pairs: &[(&str, &str)]| match EnvConfig::from_lookup(env(pairs)) {
        Err(ConfigError::Missing { name } | ConfigError::Invalid { name, .. }) => name,
        other => panic!("expected a named error, got {other:?}"),
    };
    assert_eq!(
        named(&[("MCP_AUTH_AUDIENCE", AUDIENCE), ("MCP_SIGNING_KEY", K1)]),
        "MCP_AUTH_ISSUER"
    );
    assert_eq!(
        named(&[("MCP_AUTH_ISSUER", ISSUER), ("MCP_SIGNING_KEY", K1)]),
        "MCP_AUTH_AUDIENCE"
    );
    assert_eq!(
        named(&[
            ("MCP_AUTH_ISSUER", ISSUER),
            ("MCP_AUTH_AUDIENCE", "not a url"),
            ("MCP_SIGNING_KEY", K1)
        ]),
        "MCP_AUTH_AUDIENCE"
    );
    assert_eq!(
        named(&[
            ("MCP_AUTH_ISSUER", ISSUER),
            ("MCP_AUTH_AUDIENCE", AUDIENCE),
            ("MCP_SIGNING_KEY", "short")
        ]),
        "MCP_SIGNING_KEY"
    );
    assert_eq!(
        named(&[
            ("MCP_AUTH_ISSUER", ISSUER),
            ("MCP_AUTH_AUDIENCE", AUDIENCE),
            ("MCP_SIGNING_KEY", K1),
            ("MCP_AUTH_JWKS_URL", "jwks.json")
        ]),
        "MCP_AUTH_JWKS_URL"
    );
    assert_eq!(
        named(&[
            ("MCP_AUTH_ISSUER", ISSUER),
            ("MCP_AUTH_AUDIENCE", AUDIENCE),
            ("MCP_SIGNING_KEY", K1),
            ("MCP_SECRET_ID", "x")
        ]),
        "MCP_SIGNING_KEY"
    );
    assert_eq!(
        named(&[("MCP_AUTH_ISSUER", ISSUER), ("MCP_AUTH_AUDIENCE", AUDIENCE)]),
        "MCP_SECRET_ID or MCP_SIGNING_KEY (or MCP_AUTH_JWKS_URL)"
    );
    assert_eq!(
        named(&[
            ("MCP_AUTH_ISSUER", ISSUER),
            ("MCP_AUTH_AUDIENCE", AUDIENCE),
            ("MCP_SIGNING_KEY", K1),
            ("MCP_AUTH_LEEWAY_SECS", "lots")
        ]),
        "MCP_AUTH_LEEWAY_SECS"
    );
}

#[tokio::test]
async fn a_token_in_the_query_string_is_refused_even_with_a_valid_header() {
    let header = format!("Bearer {}", token("mcp:read"));
    let mut rest = rest_event(Some(&header));
    rest["queryStringParameters"] = json!({"access_token": token("mcp:read")});
    let refused = handle_event(&verifier(), NO_WRITE_TOOLS, &rest).await;
    assert!(
        matches!(
            &refused,
            Err(AuthorizerError::Unauthorized(
                authorizer::AuthError::TokenInQuery
            ))
        ),
        "{refused:?}"
    );

    let mut v2 = http_v2_event(Some(&header));
    v2["rawQueryString"] = json!(format!("x=1&access_token={}", token("mcp:read")));
    let response = handle_event(&verifier(), NO_WRITE_TOOLS, &v2)
        .await
        .expect("simple response");
    assert_eq!(response, json!({"isAuthorized": false, "context": {}}));

    // Other parameters are fine.
    let mut rest = rest_event(Some(&header));
    rest["queryStringParameters"] = json!({"token_hint": "x"});
    let allowed = handle_event(&verifier(), NO_WRITE_TOOLS, &rest)
        .await
        .expect("policy");
    assert_eq!(allowed["policyDocument"]["Statement"][0]["Effect"], "Allow");
}

/// The product's writing tools, as the template passes them in `MCP_WRITE_TOOLS`.
fn write_tools() -> Vec<String> {
    ["state_set", "state_delete", "file_write"]
        .map(str::to_owned)
        .to_vec()
}

/// A REST event for a 2026-07-28 request whose `Mcp-Method` (and `Mcp-Name`) headers are given.
fn rest_2026(scope: &str, method: &str, name: Option<&str>) -> Value {
    let mut event = rest_event(Some(&format!("Bearer {}", token(scope))));
    event["headers"]["Mcp-Method"] = json!(method);
    if let Some(name) = name {
        event["headers"]["Mcp-Name"] = json!(name);
    }
    event
}

async fn effect(event: &Value) -> String {
    let response = handle_event(&verifier(), &write_tools(), event)
        .await
        .expect("policy");
    response["policyDocument"]["Statement"][0]["Effect"]
        .as_str()
        .expect("effect")
        .to_owned()
}

#[tokio::test]
async fn rest_denies_a_2026_tool_call_without_call_or_write_at_the_gateway() {
    let cases = [
        ("mcp:read", "tools/list", None, "Allow"),
        ("mcp:read", "tools/call", Some("echo"), "Deny"),
        ("mcp:read mcp:call", "tools/call", Some("echo"), "Allow"),
        ("mcp:read mcp:call", "tools/call", Some("state_set"), "Deny"),
        (
            "mcp:read mcp:call",
            "tools/call",
            Some("file_write"),
            "Deny",
        ),
        (
            "mcp:read mcp:call mcp:write",
            "tools/call",
            Some("state_set"),
            "Allow",
        ),
        // A tool the authorizer does not know of is the function's to judge.
        (
            "mcp:read mcp:call",
            "tools/call",
            Some("no_such_tool"),
            "Allow",
        ),
        // mcp:call without mcp:read is still refused.
        (
            "mcp:call mcp:write",
            "tools/call",
            Some("state_set"),
            "Deny",
        ),
    ];
    for (scope, method, name, expected) in cases {
        assert_eq!(
            effect(&rest_2026(scope, method, name)).await,
            expected,
            "{scope} {method} {name:?}"
        );
    }
    // Header names are case-insensitive, as HTTP's are.
    let mut event = rest_event(Some(&format!("Bearer {}", token("mcp:read"))));
    event["headers"]["mcp-method"] = json!("tools/call");
    assert_eq!(effect(&event).await, "Deny");
}

#[tokio::test]
async fn the_http_api_refuses_a_tool_call_without_call() {
    let v = verifier();
    let mut event = http_v2_event(Some(&format!("Bearer {}", token("mcp:read"))));
    event["headers"]["mcp-method"] = json!("tools/call");
    let response = handle_event(&v, &write_tools(), &event)
        .await
        .expect("response");
    assert_eq!(response["isAuthorized"], false);
}

#[test]
fn write_tools_come_from_the_environment_and_are_checked() {
    let with_tools = |tools| {
        EnvConfig::from_lookup(env(&[
            ("MCP_AUTH_ISSUER", ISSUER),
            ("MCP_AUTH_AUDIENCE", AUDIENCE),
            ("MCP_SIGNING_KEY", K1),
            ("MCP_WRITE_TOOLS", tools),
        ]))
    };
    let config = with_tools("state_set, file_write").expect("valid");
    assert_eq!(config.write_tools, ["state_set", "file_write"]);
    for bad in ["state_set,,file_write", "state set", "tool;rm"] {
        let error = with_tools(bad).expect_err(bad);
        assert!(
            matches!(
                &error,
                ConfigError::Invalid {
                    name: "MCP_WRITE_TOOLS",
                    ..
                }
            ),
            "{bad}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_cognito_authorizer_allows_scoped_access_tokens_and_refuses_the_rest() {
    let jwks = JwksServer::start(&jwks_with(&["rsa-1"])).await;
    let pool_issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool1";
    let config = EnvConfig::from_lookup(env(&[
        ("MCP_AUTH", "cognito"),
        ("MCP_AUTH_COGNITO_USER_POOL_ID", "eu-west-1_Pool1"),
        ("MCP_AUTH_COGNITO_CLIENT_IDS", "stackclient1"),
        ("MCP_AUTH_AUDIENCE", AUDIENCE),
        ("MCP_AUTH_JWKS_URL", &jwks.url),
        ("MCP_SIGNING_KEY", K1),
    ]))
    .expect("config");
    assert_eq!(config.issuer, pool_issuer);
    let verifier = config.verifier().await.expect("verifier");
    let token = |scope: &str, overrides: Value| {
        let mut claims = claims(json!({
            "iss": pool_issuer, "aud": null, "token_use": "access",
            "client_id": "stackclient1", "scope": scope,
        }));
        if let (Some(claims), Some(overrides)) = (claims.as_object_mut(), overrides.as_object()) {
            claims.extend(overrides.clone());
        }
        format!("Bearer {}", rs256(Some("rsa-1"), &claims))
    };
    let scoped = token(
        &format!("{AUDIENCE}/mcp:read {AUDIENCE}/mcp:call"),
        json!({}),
    );
    let allowed = handle_event(&verifier, NO_WRITE_TOOLS, &rest_event(Some(&scoped)))
        .await
        .expect("policy");
    assert_eq!(allowed["policyDocument"]["Statement"][0]["Effect"], "Allow");
    // The function gets the product's names, as for any other token.
    assert_eq!(allowed["context"]["scope"], "mcp:call mcp:read");

    let scopeless = token("aws.cognito.signin.user.admin", json!({}));
    let denied = handle_event(&verifier, NO_WRITE_TOOLS, &rest_event(Some(&scopeless)))
        .await
        .expect("policy");
    assert_eq!(denied["policyDocument"]["Statement"][0]["Effect"], "Deny");

    for (refused, error) in [
        (
            token(&format!("{AUDIENCE}/mcp:read"), json!({"token_use": "id"})),
            AuthError::NotAnAccessToken,
        ),
        (
            token(
                &format!("{AUDIENCE}/mcp:read"),
                json!({"client_id": "other1"}),
            ),
            AuthError::UnknownClient,
        ),
    ] {
        match handle_event(&verifier, NO_WRITE_TOOLS, &rest_event(Some(&refused))).await {
            Err(AuthorizerError::Unauthorized(got)) => assert_eq!(got, error),
            other => panic!("expected Unauthorized({error}), got {other:?}"),
        }
    }
}
