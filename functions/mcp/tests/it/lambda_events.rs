//! The Lambda host, in process: real API Gateway / function URL event JSON in, response out.
//!
//! Each test hands an event to `LambdaHandler::stream` (the default, streamed mode) or
//! `LambdaHandler::handle` (buffered) exactly as the Lambda runtime would, so the event
//! parsing, stage stripping, authorizer principal, response shaping and the stream's
//! timing are all exercised without a runtime or a socket.

use crate::common;

use common::META_2026;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, http::header, response::Response, routing::post};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use lambda_http::{Context, LambdaEvent};
use mcp_function::{
    app,
    config::{Config, Flags, LambdaResponse, Profile},
    lambda_host::{LambdaHandler, StreamedAnswer},
    store::Store,
    tasks::LambdaInvoker,
};
use serde_json::{Value, json};

struct Lambda {
    handler: LambdaHandler,
    mode: LambdaResponse,
    _dir: tempfile::TempDir,
}

fn lambda_config(extra: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = [
        ("MCP_STORE_URL", "dynamodb://mcp-test"),
        ("MCP_FILES_URL", "s3://mcp-test-files"),
        (
            "MCP_SIGNING_KEY",
            "lambda-test-signing-key-0123456789abcdef",
        ),
        ("AWS_REGION", "us-east-1"),
        ("AWS_LAMBDA_FUNCTION_NAME", "mcp-test"),
        ("MCP_AUTH_ISSUER", authorizer::mint::DEFAULT_ISSUER),
        ("MCP_AUTH_AUDIENCE", authorizer::mint::DEFAULT_AUDIENCE),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::for_profile(Profile::Lambda, Flags::default(), &env).expect("valid Lambda config")
}

async fn lambda_with(extra: &[(&str, &str)]) -> Lambda {
    let (store, dir) = common::sqlite_store().await;
    lambda_over(Arc::new(store), "sqlite", extra, dir)
}

fn lambda_over(
    store: Arc<dyn Store>,
    backend: &'static str,
    extra: &[(&str, &str)],
    dir: tempfile::TempDir,
) -> Lambda {
    let config = lambda_config(extra);
    let app = app::build(
        &config,
        &common::backends(store, backend, common::local_blobs(dir.path())),
        "lambda",
    )
    .expect("service builds");
    Lambda {
        handler: LambdaHandler::new(app.router, config.base_path.clone())
            .with_standalone_streams(config.listen.is_some()),
        mode: config.lambda_response,
        _dir: dir,
    }
}

async fn lambda() -> Lambda {
    lambda_with(&[]).await
}

impl Lambda {
    /// `GET /mcp` through the function URL, accepting SSE, without a session.
    async fn get_mcp(&self) -> Value {
        let headers = mcp_headers(&[("accept", "text/event-stream")]);
        self.invoke(function_url_event("GET", "/mcp", &headers, None))
            .await
    }

    /// The answer as the client gets it: `statusCode`, `headers` and `body` (streamed), or
    /// the buffered answer in the event source's shape.
    async fn invoke(&self, event: Value) -> Value {
        let event = LambdaEvent::new(event, Context::default());
        match self.mode {
            LambdaResponse::Stream => {
                let Ok(answer) = self.handler.stream(event).await;
                collect(answer).await.0
            }
            LambdaResponse::Buffered => {
                let Ok(response) = self.handler.handle(event).await;
                response
            }
        }
    }
}

/// A streamed answer read to its end: prelude and body as one value, and each body chunk
/// with the time it arrived.
async fn collect(answer: StreamedAnswer) -> (Value, Vec<(Duration, Bytes)>) {
    let started = Instant::now();
    let prelude = answer.metadata_prelude;
    let chunks: Vec<(Duration, Bytes)> = answer
        .stream
        .map(|chunk| (started.elapsed(), chunk.expect("a body chunk")))
        .collect()
        .await;
    let headers: serde_json::Map<String, Value> = prelude
        .headers
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().expect("ASCII header");
            (name.to_string(), json!(value))
        })
        .collect();
    let body: Vec<u8> = chunks
        .iter()
        .flat_map(|(_, chunk)| chunk.to_vec())
        .collect();
    let value = json!({
        "statusCode": prelude.status_code.as_u16(),
        "headers": headers,
        "cookies": prelude.cookies,
        "body": String::from_utf8(body).expect("UTF-8 body"),
    });
    (value, chunks)
}

/// A well-behaved client's headers with alice's token (every scope), plus `extra`; without an
/// authorizer context the function verifies that token itself.
fn mcp_headers(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut headers: HashMap<String, String> = [
        ("host", "abc123.execute-api.us-east-1.amazonaws.com"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    headers.insert(
        "authorization".into(),
        common::bearer("alice", common::ALL_SCOPES),
    );
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    headers
}

/// The captured API Gateway REST API (payload 1.0) proxy event, stage `Prod`, carrying this request.
fn rest_event(
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: Option<&str>,
) -> Value {
    let mut event = common::lambda_event(common::APIGW_REST_EVENT, method, path, headers, body);
    event["requestContext"]["requestId"] = json!("rest-request-1");
    event
}

/// The captured HTTP API (payload 2.0) event carrying this request.
fn v2_event(
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: Option<&str>,
) -> Value {
    let mut event = common::lambda_event(common::APIGW_HTTP_EVENT, method, path, headers, body);
    event["requestContext"]["requestId"] = json!("v2-request-1");
    event
}

/// The captured function URL event carrying this request.
fn function_url_event(
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: Option<&str>,
) -> Value {
    let mut event = common::lambda_event(common::FUNCTION_URL_EVENT, method, path, headers, body);
    event["requestContext"]["requestId"] = json!("v2-request-1");
    event
}

fn echo_2026(text: &str) -> String {
    let meta: Value = serde_json::from_str(META_2026).expect("meta");
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":text},"_meta":meta}}).to_string()
}

fn headers_2026(name: &str) -> HashMap<String, String> {
    mcp_headers(&[
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", name),
    ])
}

fn status(response: &Value) -> i64 {
    response["statusCode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no statusCode: {response}"))
}

fn body_json(response: &Value) -> Value {
    let body = response["body"].as_str().unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {response}"))
}

#[tokio::test]
async fn a_rest_api_event_with_a_stage_reaches_mcp() {
    let lambda = lambda().await;
    let response = lambda
        .invoke(rest_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("hi")),
        ))
        .await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(
        body_json(&response)["result"]["structuredContent"]["message"],
        "hi"
    );
    assert_eq!(response["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn buffered_answers_take_the_event_sources_shape() {
    let lambda = lambda_with(&[("MCP_LAMBDA_RESPONSE", "buffered")]).await;
    let rest = lambda
        .invoke(rest_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("rest")),
        ))
        .await;
    assert_eq!(status(&rest), 200, "{rest}");
    assert_eq!(
        body_json(&rest)["result"]["structuredContent"]["message"],
        "rest"
    );
    // REST API responses carry multi-value headers only (API Gateway merges both fields).
    assert_eq!(
        rest["multiValueHeaders"]["content-type"][0],
        "application/json"
    );
    let url = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("url")),
        ))
        .await;
    assert_eq!(url["headers"]["content-type"], "application/json", "{url}");
    let bad = lambda.invoke(json!([1])).await;
    assert_eq!(status(&bad), 400, "{bad}");
    assert_eq!(
        body_json(&bad)["error"]["message"],
        "Bad request: the event is not a JSON object"
    );
}

#[tokio::test]
async fn http_api_and_function_url_events_reach_mcp() {
    let lambda = lambda().await;
    for event in [
        v2_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("v2")),
        ),
        function_url_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("v2")),
        ),
    ] {
        let response = lambda.invoke(event).await;
        assert_eq!(status(&response), 200, "{response}");
        assert_eq!(response["headers"]["content-type"], "application/json");
        assert_eq!(
            body_json(&response)["result"]["structuredContent"]["message"],
            "v2"
        );
    }
}

#[tokio::test]
async fn a_custom_domain_base_path_is_stripped() {
    let lambda = lambda_with(&[("MCP_BASE_PATH", "/v1")]).await;
    let response = lambda
        .invoke(function_url_event(
            "GET",
            "/v1/health/live",
            &mcp_headers(&[]),
            None,
        ))
        .await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(body_json(&response)["status"], "alive");
}

#[tokio::test]
async fn a_legacy_session_is_served_and_ended_through_events() {
    let lambda = lambda().await;
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let response = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &mcp_headers(&[]),
            Some(initialize),
        ))
        .await;
    assert_eq!(status(&response), 200, "{response}");
    let session = response["headers"]["mcp-session-id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session id: {response}"))
        .to_owned();
    let session_headers = mcp_headers(&[
        ("mcp-session-id", &session),
        ("mcp-protocol-version", "2025-11-25"),
    ]);
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let ack = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &session_headers,
            Some(initialized),
        ))
        .await;
    assert_eq!(status(&ack), 202, "{ack}");

    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"legacy"}}}"#;
    let reply = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &session_headers,
            Some(call),
        ))
        .await;
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(
        body_json(&reply)["result"]["structuredContent"]["message"],
        "legacy"
    );

    let deleted = lambda
        .invoke(function_url_event("DELETE", "/mcp", &session_headers, None))
        .await;
    assert_eq!(status(&deleted), 204, "{deleted}");
    let after = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &session_headers,
            Some(call),
        ))
        .await;
    assert_eq!(status(&after), 404, "{after}");
    assert_eq!(body_json(&after)["error"]["code"], -32001);
}

#[tokio::test]
async fn get_mcp_is_405_on_lambda() {
    let response = lambda().await.get_mcp().await;
    assert_eq!(status(&response), 405, "{response}");
    assert_eq!(response["headers"]["allow"], "POST, DELETE");
}

#[tokio::test]
async fn get_mcp_reaches_the_service_with_long_lived_streams_on() {
    let lambda = lambda_with(&[("MCP_LONG_STREAMS", "on")]).await;
    // Without a session there is no stream to hold: the service's own answer, not 405.
    let response = lambda.get_mcp().await;
    assert_eq!(
        (status(&response), response["body"].clone()),
        (400, json!("Bad Request: Session ID is required")),
        "{response}"
    );
}

#[tokio::test]
async fn a_base64_body_is_decoded() {
    let lambda = lambda().await;
    let mut event = function_url_event("POST", "/mcp", &headers_2026("echo"), None);
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(echo_2026("encoded")));
    event["isBase64Encoded"] = json!(true);
    let response = lambda.invoke(event).await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(
        body_json(&response)["result"]["structuredContent"]["message"],
        "encoded"
    );
}

#[tokio::test]
async fn malformed_events_get_400_not_a_crash() {
    let lambda = lambda().await;
    let mut bad_base64 = function_url_event(
        "POST",
        "/mcp",
        &headers_2026("echo"),
        Some("%%% not base64"),
    );
    bad_base64["isBase64Encoded"] = json!(true);
    let cases = [
        (
            json!("just a string"),
            "Bad request: the event is not a JSON object",
        ),
        (json!([1, 2]), "Bad request: the event is not a JSON object"),
        (
            bad_base64,
            "Bad request: isBase64Encoded is true but the body is not valid base64",
        ),
        (
            json!({"version": "2.0", "rawPath": 42}),
            "Bad request: not an API Gateway (REST or HTTP API) or function URL event",
        ),
    ];
    for (event, message) in cases {
        let response = lambda.invoke(event.clone()).await;
        assert_eq!(status(&response), 400, "{event}: {response}");
        assert_eq!(body_json(&response)["error"]["message"], message, "{event}");
        assert_eq!(body_json(&response)["error"]["code"], -32600);
    }
    // The instance still serves after all of them.
    let response = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("still here")),
        ))
        .await;
    assert_eq!(status(&response), 200, "{response}");
}

#[tokio::test]
async fn a_missing_or_huge_body_gets_a_clear_4xx() {
    let lambda = lambda_with(&[("MCP_MAX_BODY_BYTES", "4096")]).await;
    let missing = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            None,
        ))
        .await;
    assert_eq!(status(&missing), 400, "{missing}");
    assert_eq!(body_json(&missing)["error"]["code"], -32700);

    let huge = echo_2026(&"x".repeat(10_000));
    let response = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&huge),
        ))
        .await;
    assert_eq!(status(&response), 413, "{response}");
}

/// A REST event as the JWT authorizer leaves it: the verified subject and scopes in the
/// authorizer context, and the token gone (so the context alone must carry the identity).
fn as_subject_with(event: Value, subject: &str, scope: &str) -> Value {
    let mut event = common::with_authorizer(event, subject, scope);
    if let Some(headers) = event["headers"].as_object_mut() {
        headers.remove("authorization");
    }
    if let Some(headers) = event["multiValueHeaders"].as_object_mut() {
        headers.remove("authorization");
    }
    event
}

fn as_subject(event: Value, subject: &str) -> Value {
    as_subject_with(event, subject, common::ALL_SCOPES)
}

fn state_call_2026(tool: &str, arguments: Value) -> (HashMap<String, String>, String) {
    let meta: Value = serde_json::from_str(META_2026).expect("meta");
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":arguments,"_meta":meta}});
    (headers_2026(tool), body.to_string())
}

#[tokio::test]
async fn the_authorizer_subject_is_the_principal() {
    let lambda = lambda().await;
    let (headers, body) = state_call_2026(
        "state_set",
        json!({"key": "plan", "value": {"tier": "gold"}}),
    );
    let set = lambda
        .invoke(as_subject(
            rest_event("POST", "/mcp", &headers, Some(&body)),
            "alice",
        ))
        .await;
    assert_eq!(status(&set), 200, "{set}");
    assert_ne!(body_json(&set)["result"]["isError"], true, "{set}");

    let (headers, body) = state_call_2026("state_get", json!({"key": "plan"}));
    let alice = lambda
        .invoke(as_subject(
            rest_event("POST", "/mcp", &headers, Some(&body)),
            "alice",
        ))
        .await;
    assert_eq!(
        body_json(&alice)["result"]["structuredContent"]["value"]["tier"],
        "gold",
        "{alice}"
    );
    let bob = lambda
        .invoke(as_subject(
            rest_event("POST", "/mcp", &headers, Some(&body)),
            "bob",
        ))
        .await;
    assert_eq!(status(&bob), 200, "{bob}");
    assert_eq!(body_json(&bob)["result"]["isError"], true, "{bob}");
    assert_eq!(
        body_json(&bob)["result"]["content"][0]["text"],
        "no document under key \"plan\"; use state_list to see your keys"
    );
    let mut unauthenticated = headers.clone();
    unauthenticated.remove("authorization");
    let anonymous = lambda
        .invoke(rest_event("POST", "/mcp", &unauthenticated, Some(&body)))
        .await;
    assert_eq!(status(&anonymous), 401, "{anonymous}");

    let unusable = lambda
        .invoke(as_subject(
            rest_event("POST", "/mcp", &headers, Some(&body)),
            "bad\nsubject",
        ))
        .await;
    assert_eq!(status(&unusable), 403, "{unusable}");
    assert_eq!(
        body_json(&unusable)["error"]["message"],
        "The authorizer's subject is not usable as a principal"
    );
}

/// A DynamoDB endpoint where nothing listens: the store is down, as in an outage or a wrong endpoint.
fn unreachable_dynamo() -> Arc<dyn Store> {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    Arc::new(mcp_function::store::dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        "mcp-down",
        mcp_function::store::cursor::CursorCodec::new(common::TEST_KEY),
    ))
}

#[tokio::test]
async fn a_store_outage_is_a_retryable_tool_error_and_a_503_readiness() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lambda = lambda_over(unreachable_dynamo(), "dynamodb", &[], dir);

    let (headers, body) = state_call_2026("state_set", json!({"key": "k", "value": 1}));
    let set = lambda
        .invoke(function_url_event("POST", "/mcp", &headers, Some(&body)))
        .await;
    assert_eq!(status(&set), 200, "{set}");
    assert_eq!(body_json(&set)["result"]["isError"], true, "{set}");
    assert_eq!(
        body_json(&set)["result"]["content"][0]["text"],
        "the state store is unavailable right now; retry shortly (details are in the server log)"
    );

    let ready = lambda
        .invoke(function_url_event(
            "GET",
            "/health/ready",
            &mcp_headers(&[]),
            None,
        ))
        .await;
    assert_eq!(status(&ready), 503, "{ready}");
    assert_eq!(body_json(&ready)["checks"]["store"]["status"], "down");

    // A stateless call that touches no state does not need the store at all.
    let echo = lambda
        .invoke(function_url_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("up")),
        ))
        .await;
    assert_eq!(
        body_json(&echo)["result"]["structuredContent"]["message"],
        "up"
    );
}

/// Checks one line against the EMF specification: `_aws` with a millisecond `Timestamp` and
/// `CloudWatchMetrics` directives (`Namespace`, `Dimensions` naming top-level string
/// members, `Metrics` naming top-level numbers or arrays of at most 100 numbers).
fn assert_emf(doc: &Value, namespace: &str) {
    let meta = &doc["_aws"];
    assert!(
        meta["Timestamp"]
            .as_i64()
            .is_some_and(|ms| ms > 1_600_000_000_000),
        "{doc}"
    );
    let directives = meta["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    for directive in directives {
        assert_eq!(directive["Namespace"], namespace);
        for set in directive["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set");
            assert!(set.len() <= 30);
            for key in set {
                let key = key.as_str().expect("dimension key");
                assert!(
                    doc[key].is_string(),
                    "dimension {key} has no string value: {doc}"
                );
            }
        }
        for metric in directive["Metrics"].as_array().expect("Metrics") {
            let name = metric["Name"].as_str().expect("Name");
            assert!(["Count", "Seconds"].contains(&metric["Unit"].as_str().expect("Unit")));
            let value = &doc[name];
            let numbers = value.is_number()
                || value.as_array().is_some_and(|values| {
                    values.len() <= 100 && values.iter().all(Value::is_number)
                });
            assert!(numbers, "metric {name} has no numeric value: {doc}");
        }
    }
}

#[tokio::test]
async fn every_invocation_writes_its_metrics_as_emf_lines() {
    let (handler, lines, dir) = counted_handler(&[("MCP_METRICS_NAMESPACE", "MCP/test")]).await;
    let lambda = Lambda {
        handler,
        mode: LambdaResponse::Stream,
        _dir: dir,
    };
    let take = || -> Vec<Value> {
        std::mem::take(&mut *lines.lock().expect("lock"))
            .iter()
            .map(|line| serde_json::from_str(line).expect("an EMF line is JSON"))
            .collect()
    };

    let response = lambda
        .invoke(rest_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026("hi")),
        ))
        .await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(
        response["headers"]["x-request-id"], "rest-request-1",
        "the API Gateway request id is the request id"
    );
    let docs = take();
    assert_eq!(docs.len(), 1, "a stateless call is one document: {docs:?}");
    let echo = &docs[0];
    assert_emf(echo, "MCP/test");
    assert_eq!(
        (
            &echo["method"],
            &echo["status"],
            &echo["tool"],
            &echo["outcome"]
        ),
        (
            &json!("tools/call"),
            &json!("200"),
            &json!("echo"),
            &json!("ok")
        )
    );
    assert_eq!(echo["mcp_requests_total"], 1.0);
    assert_eq!(echo["mcp_tool_calls_total"], 1.0);
    assert_eq!(echo["mcp_active_sessions"], 0.0);
    assert!(
        echo["mcp_request_duration_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
    );
    // The echo itself touches no store; the shared rate limit is the one store call.
    assert_eq!(
        (
            &echo["store"],
            &echo["op"],
            &echo["mcp_store_operations_total"]
        ),
        (&json!("sqlite"), &json!("rate_admit"), &json!(1.0)),
        "{echo}"
    );

    let set = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"state_set","arguments":{"key":"k","value":1},"_meta":serde_json::from_str::<Value>(META_2026).expect("meta")}}).to_string();
    let response = lambda
        .invoke(rest_event(
            "POST",
            "/mcp",
            &headers_2026("state_set"),
            Some(&set),
        ))
        .await;
    assert_eq!(status(&response), 200, "{response}");
    let docs = take();
    for doc in &docs {
        assert_emf(doc, "MCP/test");
    }
    let put = docs
        .iter()
        .find(|doc| doc["op"] == "put")
        .unwrap_or_else(|| panic!("no store put in {docs:?}"));
    assert_eq!(
        (&put["store"], &put["mcp_store_operations_total"]),
        (&json!("sqlite"), &json!(1.0))
    );
    assert_eq!(
        docs.iter()
            .filter(|doc| doc.get("mcp_requests_total").is_some())
            .count(),
        1
    );

    let mut no_token = headers_2026("echo");
    no_token.remove("authorization");
    let response = lambda
        .invoke(rest_event(
            "POST",
            "/mcp",
            &no_token,
            Some(&echo_2026("hi")),
        ))
        .await;
    assert_eq!(status(&response), 401);
    let docs = take();
    let refused = docs
        .iter()
        .find(|doc| doc.get("mcp_auth_failures_total").is_some())
        .unwrap_or_else(|| panic!("no auth failure in {docs:?}"));
    assert_eq!(refused["reason"], "missing_authorization");
}

/// A handler over a bare router whose `POST /mcp` answers an SSE body fed by the returned
/// sender: each `Bytes` sent is one write by the service.
fn sse_feed() -> (LambdaHandler, tokio::sync::mpsc::Sender<Bytes>) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
    let receiver = Arc::new(std::sync::Mutex::new(Some(receiver)));
    let answer = move || {
        let receiver = receiver.lock().expect("lock").take();
        async move {
            let writes = futures::stream::unfold(receiver, |receiver| async move {
                let mut receiver = receiver?;
                let write = receiver.recv().await?;
                Some((Ok::<_, std::convert::Infallible>(write), Some(receiver)))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(writes))
                .expect("response")
        }
    };
    let router = Router::new().route("/mcp", post(answer));
    (LambdaHandler::new(router, None), sender)
}

fn sse_event(id: u32) -> Bytes {
    Bytes::from(format!(
        "id: {id}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\n"
    ))
}

#[tokio::test]
async fn each_sse_event_leaves_the_function_as_it_is_written() {
    let (handler, writes) = sse_feed();
    let Ok(answer) = handler
        .stream(LambdaEvent::new(
            function_url_event("POST", "/mcp", &mcp_headers(&[]), Some("{}")),
            Context::default(),
        ))
        .await;
    assert_eq!(answer.metadata_prelude.status_code, 200);
    assert_eq!(
        answer.metadata_prelude.headers[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = answer.stream;
    // The prelude is out while the service has written nothing; each write then arrives
    // on its own, before the next one exists.
    for id in 0..3 {
        writes.send(sse_event(id)).await.expect("the body is open");
        let chunk = body.next().await.expect("a chunk").expect("no error");
        assert_eq!(chunk, sse_event(id));
    }
    drop(writes);
    assert!(
        body.next().await.is_none(),
        "the body ends with the service's"
    );
}

#[tokio::test]
async fn a_stream_still_open_at_its_bound_is_ended_cleanly() {
    let (handler, writes) = sse_feed();
    let handler = handler.with_stream_max(Duration::from_millis(200));
    writes.send(sse_event(0)).await.expect("the body is open");
    let Ok(answer) = handler
        .stream(LambdaEvent::new(
            function_url_event("POST", "/mcp", &mcp_headers(&[]), Some("{}")),
            Context::default(),
        ))
        .await;
    // The service never ends this body; the bound does, after the event already written.
    let (answer, chunks) = collect(answer).await;
    assert_eq!(status(&answer), 200);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].1, sse_event(0));
    // Ending the stream let go of the service's body: rmcp cancels a call whose stream is
    // dropped, so nothing keeps running for a client that is no longer served.
    assert!(writes.is_closed());
}

#[tokio::test]
async fn a_malformed_event_gets_a_streamed_400() {
    let lambda = lambda().await;
    let Ok(answer) = lambda
        .handler
        .stream(LambdaEvent::new(json!("not an event"), Context::default()))
        .await;
    let (answer, chunks) = collect(answer).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert_eq!(answer["headers"]["content-type"], "application/json");
    assert_eq!(chunks.len(), 1, "one write: {chunks:?}");
    assert_eq!(
        body_json(&answer)["error"],
        json!({"code": -32600, "message": "Bad request: the event is not a JSON object"})
    );
}

/// A handler over the product service (Lambda config plus `extra`) whose EMF lines, in the
/// configured namespace, land in the returned list.
async fn counted_handler(
    extra: &[(&str, &str)],
) -> (
    LambdaHandler,
    Arc<std::sync::Mutex<Vec<String>>>,
    tempfile::TempDir,
) {
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink_lines = lines.clone();
    let (store, dir) = common::sqlite_store().await;
    let config = lambda_config(extra);
    let app = app::build(
        &config,
        &common::backends(Arc::new(store), "sqlite", common::local_blobs(dir.path())),
        "lambda",
    )
    .expect("service builds");
    let handler = LambdaHandler::new(app.router, None).with_metric_sink(
        app.metrics,
        &config.metrics_namespace,
        Arc::new(move |line: &str| sink_lines.lock().expect("lock").push(line.to_owned())),
    );
    (handler, lines, dir)
}

fn echo_event(text: &str) -> LambdaEvent<Value> {
    LambdaEvent::new(
        function_url_event(
            "POST",
            "/mcp",
            &headers_2026("echo"),
            Some(&echo_2026(text)),
        ),
        Context::default(),
    )
}

#[tokio::test]
async fn an_answer_dropped_before_its_end_still_writes_its_metrics() {
    let (handler, lines, _dir) = counted_handler(&[]).await;
    let Ok(answer) = handler.stream(echo_event("abandoned")).await;
    // The runtime drops the answer when the client has left.
    drop(answer);
    for _ in 0..100 {
        if !lines.lock().expect("lock").is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let written = lines.lock().expect("lock").join("\n");
    assert!(
        written.contains("\"mcp_requests_total\""),
        "this invocation's metrics were left for the next one: {written:?}"
    );
}

#[tokio::test]
async fn streamed_metrics_are_written_once_the_answer_is_complete() {
    let (handler, lines, _dir) = counted_handler(&[]).await;
    let Ok(answer) = handler.stream(echo_event("counted")).await;
    assert!(
        lines.lock().expect("lock").is_empty(),
        "nothing is written while the body is still to be sent"
    );
    let (answer, _) = collect(answer).await;
    assert_eq!(
        body_json(&answer)["result"]["structuredContent"]["message"],
        "counted"
    );
    let docs: Vec<Value> = lines
        .lock()
        .expect("lock")
        .iter()
        .map(|line| serde_json::from_str(line).expect("EMF JSON"))
        .collect();
    let request = docs
        .iter()
        .find(|doc| doc.get("mcp_requests_total").is_some())
        .unwrap_or_else(|| panic!("no request metric in {docs:?}"));
    assert_eq!(
        (&request["method"], &request["tool"], &request["outcome"]),
        (&json!("tools/call"), &json!("echo"), &json!("ok"))
    );
}

/// A stand-in for Lambda's Invoke API on loopback: it keeps each invocation (function name,
/// invocation type, payload) instead of running it, and answers 202 as Lambda does for
/// `InvocationType=Event`.
async fn invoke_api() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String, Value)>,
) {
    let (sent, received) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        post(
            move |axum::extract::Path(name): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: Bytes| {
                let invocation_type = headers
                    .get("x-amz-invocation-type")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let _ = sent.send((name, invocation_type, payload));
                async { axum::http::StatusCode::ACCEPTED }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// A streaming Lambda whose task runs go to the Invoke API at `invoke_url` (function
/// `mcp-test`), and runs the task events it is handed.
async fn lambda_invoking(invoke_url: &str) -> Lambda {
    let config = lambda_config(&[]);
    let (store, dir) = common::sqlite_store().await;
    let lambda_client = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(invoke_url)
            .build(),
    );
    let backends = mcp_function::backends::Backends {
        task_invoker: Some(Arc::new(LambdaInvoker::new(
            lambda_client,
            "mcp-test".into(),
        ))),
        ..common::backends(Arc::new(store), "sqlite", common::local_blobs(dir.path()))
    };
    let app = app::build(&config, &backends, "lambda").expect("service builds");
    Lambda {
        handler: LambdaHandler::new(app.router, None).with_task_runs(app.context),
        mode: LambdaResponse::Stream,
        _dir: dir,
    }
}

/// A 2026-07-28 REST event of Alice's client, which takes tasks.
fn task_event(method: &str, name: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = serde_json::from_str(common::META_2026_TASKS).expect("meta");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut headers = headers_2026(name);
    headers.insert("mcp-method".into(), method.into());
    as_subject(
        rest_event("POST", "/mcp", &headers, Some(&body.to_string())),
        "alice",
    )
}

fn export_event() -> Value {
    task_event(
        "tools/call",
        "state_export",
        json!({"name": "state_export", "arguments": {"path": "export.json"}}),
    )
}

#[tokio::test]
async fn a_task_runs_in_the_asynchronous_invocation_the_function_sends_itself() {
    let (invoke_url, mut invocations) = invoke_api().await;
    let lambda = lambda_invoking(&invoke_url).await;
    let created = lambda.invoke(export_event()).await;
    let task_id = body_json(&created)["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {created}"))
        .to_owned();

    // The call answered without running the export: it sent one asynchronous invocation.
    let (function, invocation_type, payload) = invocations.try_recv().expect("one invocation");
    assert_eq!(function, "mcp-test");
    assert_eq!(invocation_type, "Event");
    assert_eq!(
        payload,
        json!({"mcpTaskRun": {"principal": "alice", "taskId": task_id}})
    );
    let get = task_event("tasks/get", &task_id, json!({"taskId": task_id}));
    let working = lambda.invoke(get.clone()).await;
    assert_eq!(
        body_json(&working)["result"]["status"],
        "working",
        "{working}"
    );

    // That invocation runs it; a second delivery of the same event runs nothing again.
    let ran = lambda.invoke(payload.clone()).await;
    assert_eq!(body_json(&ran), json!({"taskRun": "finished"}), "{ran}");
    let done = body_json(&lambda.invoke(get.clone()).await);
    assert_eq!(done["result"]["status"], "completed", "{done}");
    assert_eq!(
        done["result"]["result"]["structuredContent"]["path"],
        "export.json"
    );
    let again = lambda.invoke(payload).await;
    assert_eq!(body_json(&again), json!({"taskRun": "finished"}));
    let still = body_json(&lambda.invoke(get).await);
    assert_eq!(
        still["result"]["lastUpdatedAt"],
        done["result"]["lastUpdatedAt"]
    );
    assert!(invocations.try_recv().is_err(), "no other invocation");

    // A task event with a malformed run is no task event: the usual 400 for a foreign event.
    let malformed = lambda
        .invoke(json!({"mcpTaskRun": {"principal": 7, "taskId": task_id}}))
        .await;
    assert_eq!(status(&malformed), 400, "{malformed}");
}

#[tokio::test]
async fn a_task_whose_run_cannot_be_started_is_refused_with_a_retryable_error() {
    // Nothing listens on port 1: the asynchronous invocation cannot be sent.
    let lambda = lambda_invoking("http://127.0.0.1:1").await;

    let refused = body_json(&lambda.invoke(export_event()).await);

    assert_eq!(
        refused["error"],
        json!({"code": -32603, "message": "the task could not be started; call again shortly"}),
        "{refused}"
    );
}

// ─── Behind CloudFront: a function URL only the distribution reaches ─────────

/// The value CloudFront's origin header carries (from the stack's secret) and the public URL
/// clients use; the function URL's own host is what CloudFront sends as `Host`.
const ORIGIN_VALUE: &str = "origin-header-value-from-the-secret-0123456789";
const PUBLIC_MCP_URL: &str = "https://mcp.example.com/mcp";
const FUNCTION_URL_HOST: &str = "abcdefgh.lambda-url.us-east-1.on.aws";

/// The function as `FrontDoor=FunctionUrl` deploys it: the origin header demanded, and the
/// public URL (`PublicBaseUrl`) as the resource and the tokens' audience.
async fn behind_cloudfront() -> Lambda {
    lambda_with(&[
        ("MCP_ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
        ("MCP_ORIGIN_SECRET", ORIGIN_VALUE),
        ("MCP_RESOURCE_URL", PUBLIC_MCP_URL),
        ("MCP_AUTH_AUDIENCE", PUBLIC_MCP_URL),
    ])
    .await
}

/// `Bearer <token>` for alice with every scope, for `audience`.
fn bearer_for(audience: &str) -> String {
    let request = authorizer::mint::MintRequest {
        sub: "alice".to_owned(),
        scope: common::ALL_SCOPES.to_owned(),
        ttl: Duration::from_secs(600),
        kid: None,
        issuer: authorizer::mint::DEFAULT_ISSUER.to_owned(),
        audience: audience.to_owned(),
    };
    let token = authorizer::mint::mint(&request, common::TEST_KEY).expect("test token");
    format!("Bearer {token}")
}

/// A function URL event as CloudFront forwards a viewer's request (origin request policy
/// AllViewerExceptHostHeader): the URL's own host, the viewer's headers, CloudFront's, and
/// `origin` as the origin header's value when there is one.
fn via_cloudfront(
    method: &str,
    path: &str,
    origin: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let mut headers = mcp_headers(&[
        ("host", FUNCTION_URL_HOST),
        ("x-forwarded-host", "mcp.example.com"),
        ("x-forwarded-for", "198.51.100.23"),
        ("via", "2.0 0123456789abcdef.cloudfront.net (CloudFront)"),
        ("x-amz-cf-id", "Zk2s9lq0cf-id=="),
        ("cloudfront-viewer-address", "198.51.100.23:51234"),
    ]);
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if let Some(value) = origin {
        headers.insert("x-origin-verify".into(), value.into());
    }
    function_url_event(method, path, &headers, body)
}

/// The headers of a 2026-wire echo call with `authorization`.
fn echo_call(authorization: &str) -> [(&str, &str); 4] {
    [
        ("authorization", authorization),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ]
}

#[tokio::test]
async fn cloudfront_reaches_mcp_through_the_function_url_under_the_public_url() {
    let lambda = behind_cloudfront().await;
    let public_token = bearer_for(PUBLIC_MCP_URL);
    let answer = lambda
        .invoke(via_cloudfront(
            "POST",
            "/mcp",
            Some(ORIGIN_VALUE),
            &echo_call(&public_token),
            Some(&echo_2026("through the front door")),
        ))
        .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(
        body_json(&answer)["result"]["structuredContent"]["message"],
        "through the front door"
    );

    // The resource is the public URL, never the function URL's host CloudFront sends.
    let metadata = lambda
        .invoke(via_cloudfront(
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            Some(ORIGIN_VALUE),
            &[],
            None,
        ))
        .await;
    assert_eq!(status(&metadata), 200, "{metadata}");
    assert_eq!(body_json(&metadata)["resource"], PUBLIC_MCP_URL);

    // A token for the function URL itself is for another audience: 401, and the challenge
    // sends the client to the public URL's metadata.
    let url_token = bearer_for(&format!("https://{FUNCTION_URL_HOST}/mcp"));
    let refused = lambda
        .invoke(via_cloudfront(
            "POST",
            "/mcp",
            Some(ORIGIN_VALUE),
            &echo_call(&url_token),
            Some(&echo_2026("wrong audience")),
        ))
        .await;
    assert_eq!(status(&refused), 401, "{refused}");
    let challenge = refused["headers"]["www-authenticate"]
        .as_str()
        .unwrap_or_default();
    assert!(
        challenge.starts_with(
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
        ),
        "{challenge}"
    );

    for probe in ["/health/live", "/health/ready"] {
        let answer = lambda
            .invoke(via_cloudfront("GET", probe, Some(ORIGIN_VALUE), &[], None))
            .await;
        assert_eq!(status(&answer), 200, "{probe}: {answer}");
    }
}

#[tokio::test]
async fn a_call_that_skips_cloudfront_is_refused_before_any_route() {
    let lambda = behind_cloudfront().await;
    let token = bearer_for(PUBLIC_MCP_URL);
    let near_miss = format!("{}X", &ORIGIN_VALUE[..ORIGIN_VALUE.len() - 1]);
    for origin in [None, Some(""), Some(near_miss.as_str()), Some("guess")] {
        for (method, path, body) in [
            ("POST", "/mcp", Some(echo_2026("direct"))),
            ("GET", "/health/live", None),
            ("GET", "/health/ready", None),
            ("GET", "/.well-known/oauth-protected-resource/mcp", None),
            ("POST", "/register", Some("{}".to_owned())),
        ] {
            // A valid token for the public URL does not help without the origin header.
            let answer = lambda
                .invoke(via_cloudfront(
                    method,
                    path,
                    origin,
                    &echo_call(&token),
                    body.as_deref(),
                ))
                .await;
            assert_eq!(status(&answer), 403, "{origin:?} {method} {path}: {answer}");
            assert_eq!(
                body_json(&answer),
                json!({
                    "error": "forbidden",
                    "error_description": "this endpoint is served only through its front door"
                }),
                "{origin:?} {method} {path}"
            );
        }
    }
}
