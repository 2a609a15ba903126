//! What a request costs in DynamoDB calls, counted by an SDK interceptor under
//! the whole HTTP service: a 2026 stateless call costs none, a warm legacy call
//! exactly one `GetItem` (the session gate's read, handed down to rmcp), a legacy
//! `initialize` two writes (the caller's session ledger, then the session) and one
//! refused at the session cap a single failed conditional update.
//!
//! Runs on the emulator at `MCP_TEST_AWS_ENDPOINT`; the counts are printed so
//! they can be quoted (`cargo test --test it store_round_trips:: -- --nocapture`).

use crate::common;

use common::post;

use std::{collections::HashMap, sync::Arc};

use aws_sdk_dynamodb::config::SharedInterceptor;
use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use common::CallLog;
use mcp_function::{
    app,
    config::{Config, Flags},
    store::Store,
};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Counted {
    router: Router,
    calls: CallLog,
    store: Arc<dyn Store>,
    /// The file store's folder (files are not what is counted here).
    files: tempfile::TempDir,
}

/// The full service over a DynamoDB store whose every call is logged.
async fn counted_app() -> Counted {
    let calls = CallLog::default();
    let client = common::dynamo_client_with([SharedInterceptor::new(calls.clone())]);
    let store: Arc<dyn Store> = Arc::new(common::dynamo_store_with(client).await);
    calls.take(); // table creation is not a request's cost
    let files = tempfile::tempdir().expect("temp dir");
    Counted {
        router: router_over(store.clone(), files.path()),
        calls,
        store,
        files,
    }
}

/// A fresh service (another instance, with no sessions in memory) over `store`.
fn router_over(store: Arc<dyn Store>, files: &std::path::Path) -> Router {
    router_with(store, files, &[])
}

fn router_with(store: Arc<dyn Store>, files: &std::path::Path, env: &[(&str, &str)]) -> Router {
    router_for("server", store, files, env)
}

/// The service as `host` ("server" or "lambda") builds it.
fn router_for(
    host: &'static str,
    store: Arc<dyn Store>,
    files: &std::path::Path,
    env: &[(&str, &str)],
) -> Router {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_sources(Flags::default(), &env).expect("config");
    app::build(
        &config,
        &common::backends(store, "dynamodb", common::local_blobs(files)),
        host,
    )
    .expect("service builds")
    .router
}

struct Reply {
    status: StatusCode,
    session_id: Option<String>,
    body: Value,
}

/// Sends `request` as alice, authenticated: verifying her token costs no store call either.
async fn send(router: &Router, mut request: Request<Body>) -> Reply {
    let token = common::bearer("alice", common::ALL_SCOPES);
    request.headers_mut().insert(
        axum::http::header::AUTHORIZATION,
        token.parse().expect("header value"),
    );
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let session_id = response
        .headers()
        .get("mcp-session-id")
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned);
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        session_id,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn session(id: &str) -> [(&str, &str); 2] {
    [
        ("mcp-session-id", id),
        ("mcp-protocol-version", "2025-11-25"),
    ]
}

fn echo(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
           "params":{"name":"echo","arguments":{"message":"hi"}}})
    .to_string()
}

fn echo_2026(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
    "name":"echo","arguments":{"message":"hi"},
    "_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientCapabilities":{},
        "io.modelcontextprotocol/clientInfo":{"name":"test","version":"1"}
    }}})
    .to_string()
}

fn assert_echoed(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["result"]["structuredContent"],
        json!({"message": "hi"}),
        "{}",
        reply.body
    );
}

const ECHO_2026_HEADERS: [(&str, &str); 3] = [
    ("mcp-protocol-version", "2026-07-28"),
    ("mcp-method", "tools/call"),
    ("mcp-name", "echo"),
];

/// The DynamoDB calls of four 2026 echo calls through a service with shared rate limiting.
async fn calls_under_shared_limit(per_second: &str, burst: &str) -> Vec<Vec<String>> {
    let app = counted_app().await;
    let router = router_with(
        app.store.clone(),
        app.files.path(),
        &[
            ("MCP_RATE_LIMIT_STORE", "store"),
            ("MCP_RATE_LIMIT_PER_SEC", per_second),
            ("MCP_RATE_LIMIT_BURST", burst),
        ],
    );
    let mut per_request = Vec::new();
    for id in 1..=4 {
        let reply = send(&router, post(echo_2026(id), &ECHO_2026_HEADERS)).await;
        let calls = app.calls.take();
        eprintln!(
            "2026-07-28 tools/call echo #{id}, shared limit {per_second}/s burst {burst}: {} -> {calls:?}",
            reply.status
        );
        per_request.push(calls);
    }
    per_request
}

#[tokio::test]
async fn shared_rate_limiting_costs_one_conditional_update_per_request() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    // Requests further apart than 1/rate (10 µs here): one restart each.
    for calls in calls_under_shared_limit("100000", "10").await {
        assert_eq!(calls, ["UpdateItem"]);
    }
    // Inside a burst (1/s): the restart fails and the advance follows; over the burst of 3
    // the failed restart alone answers.
    let burst = calls_under_shared_limit("1", "3").await;
    assert_eq!(burst[0], ["UpdateItem"]);
    assert_eq!(burst[1], ["UpdateItem", "UpdateItem"]);
    assert_eq!(burst[2], ["UpdateItem", "UpdateItem"]);
    assert_eq!(burst[3], ["UpdateItem"], "the refused fourth");
}

#[tokio::test]
async fn a_stateless_2026_call_costs_no_dynamodb_call() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let app = counted_app().await;
    for id in 1..=3 {
        let reply = send(
            &app.router,
            post(
                echo_2026(id),
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "echo"),
                ],
            ),
        )
        .await;
        assert_echoed(&reply);
        let calls = app.calls.take();
        eprintln!(
            "2026-07-28 stateless tools/call echo #{id}: {} DynamoDB calls {calls:?}",
            calls.len()
        );
        assert!(calls.is_empty(), "{calls:?}");
    }
}

#[tokio::test]
async fn a_warm_legacy_call_costs_one_get_item() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let app = counted_app().await;
    let initialize = send(
        &app.router,
        post(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#,
            &[],
        ),
    )
    .await;
    assert_eq!(initialize.status, StatusCode::OK, "{}", initialize.body);
    let id = initialize.session_id.expect("session id");
    let calls = app.calls.take();
    eprintln!("2025-11-25 initialize: {calls:?}");
    assert_eq!(calls, ["UpdateItem", "PutItem"]);
    let ack = send(
        &app.router,
        post(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &session(&id),
        ),
    )
    .await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    eprintln!(
        "2025-11-25 notifications/initialized: {:?}",
        app.calls.take()
    );

    for call in 1..=3 {
        let reply = send(&app.router, post(echo(10 + call), &session(&id))).await;
        assert_echoed(&reply);
        let calls = app.calls.take();
        eprintln!(
            "2025-11-25 warm tools/call echo #{call}: {} DynamoDB call(s) {calls:?}",
            calls.len()
        );
        assert_eq!(calls, ["GetItem"]);
    }

    // Another instance, without the session in memory, restores it from the
    // record the gate read: still one read.
    let other = router_over(app.store.clone(), app.files.path());
    let reply = send(&other, post(echo(20), &session(&id))).await;
    assert_echoed(&reply);
    let calls = app.calls.take();
    eprintln!(
        "2025-11-25 tools/call echo on a second instance (restore): {} DynamoDB call(s) {calls:?}",
        calls.len()
    );
    assert_eq!(calls, ["GetItem"]);

    let mut delete = Request::delete("/mcp").header("host", "localhost");
    for (name, value) in session(&id) {
        delete = delete.header(name, value);
    }
    let deleted = send(&app.router, delete.body(Body::empty()).expect("request")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let calls = app.calls.take();
    eprintln!("2025-11-25 DELETE /mcp: {calls:?}");
    assert_eq!(calls, ["GetItem", "DeleteItem", "UpdateItem"]);
    assert_eq!(app.store.load_session(&id).await.expect("load"), None);
    app.calls.take();

    // Gone for every instance: the record is what the gate reads.
    for router in [&app.router, &other] {
        let after = send(router, post(echo(30), &session(&id))).await;
        assert_eq!(after.status, StatusCode::NOT_FOUND, "{}", after.body);
        assert_eq!(after.body["error"]["code"], -32001);
        let calls = app.calls.take();
        eprintln!(
            "2025-11-25 tools/call after DELETE: {} -> {:?}",
            after.status, calls
        );
        assert_eq!(calls, ["GetItem"]);
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;

#[tokio::test]
async fn an_initialize_at_the_session_cap_costs_one_failed_update_and_writes_nothing() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let app = counted_app().await;
    let router = router_with(
        app.store.clone(),
        app.files.path(),
        &[("MCP_MAX_SESSIONS_PER_CALLER", "1")],
    );
    let opened = send(&router, post(INITIALIZE, &[])).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    assert_eq!(app.calls.take(), ["UpdateItem", "PutItem"]);

    for attempt in 1..=2 {
        let refused = send(&router, post(INITIALIZE, &[])).await;
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.body
        );
        assert_eq!(refused.session_id, None);
        let calls = app.calls.take();
        eprintln!("2025-11-25 initialize at the cap #{attempt}: {calls:?}");
        assert_eq!(calls, ["UpdateItem"]);
    }
}

#[tokio::test]
async fn an_idle_listen_stream_costs_one_read_per_poll_and_a_write_one_append() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let app = counted_app().await;
    let router = router_with(
        app.store.clone(),
        app.files.path(),
        &[("MCP_LISTEN_POLL_MS", "200")],
    );
    let listen = json!({"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{
        "notifications": {"resourcesListChanged": true},
        "_meta": serde_json::from_str::<Value>(common::META_2026).expect("meta")}});
    let request = post(
        listen.to_string(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "subscriptions/listen"),
        ],
    );
    let calls = idle_stream_calls(&app, &router, request, "idle listen stream").await;
    // The head read at the start, then one read per tick (the first tick is immediate).
    assert!(calls.iter().all(|call| call == "GetItem"), "{calls:?}");
    assert!((5..=7).contains(&calls.len()), "{calls:?}");

    // A file write records its change: one read of the feed and one conditional write.
    let write = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"file_write","arguments":{"path":"a.txt","content":"hi"},
        "_meta": serde_json::from_str::<Value>(common::META_2026).expect("meta")}});
    let reply = send(
        &router,
        post(
            write.to_string(),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "file_write"),
            ],
        ),
    )
    .await;
    assert_eq!(
        reply.body["result"]["isError"],
        json!(false),
        "{}",
        reply.body
    );
    let calls = app.calls.take();
    eprintln!(
        "2026-07-28 file_write: {} DynamoDB call(s) {calls:?}",
        calls.len()
    );
    assert_eq!(calls, ["GetItem", "PutItem"]);
}

#[tokio::test]
async fn an_idle_lambda_get_stream_costs_one_read_per_poll() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let app = counted_app().await;
    let router = router_for(
        "lambda",
        app.store.clone(),
        app.files.path(),
        &[("MCP_LISTEN_POLL_MS", "200")],
    );
    let initialize = send(
        &router,
        post(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#,
            &[],
        ),
    )
    .await;
    let id = initialize.session_id.expect("session id");
    let ack = send(
        &router,
        post(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &session(&id),
        ),
    )
    .await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    app.calls.take();

    let get = Request::get("/mcp")
        .header("host", "localhost:8080")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Body::empty())
        .expect("request");
    let calls = idle_stream_calls(&app, &router, get, "idle Lambda GET stream").await;
    // The session check, the head read at the start, then one read per tick.
    assert!(calls.iter().all(|call| call == "GetItem"), "{calls:?}");
    assert!((6..=8).contains(&calls.len()), "{calls:?}");
}

/// The DynamoDB calls of the stream `request` opens (as alice), held idle for one second at
/// a 200 ms poll; once it is dropped, checks that the reads stop.
async fn idle_stream_calls(
    app: &Counted,
    router: &Router,
    mut request: Request<Body>,
    what: &str,
) -> Vec<String> {
    request.headers_mut().insert(
        axum::http::header::AUTHORIZATION,
        common::bearer("alice", common::ALL_SCOPES)
            .parse()
            .expect("header value"),
    );
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let held = response.into_body();
    let idle = std::time::Duration::from_millis(1_000);
    tokio::time::sleep(idle).await;
    let calls = app.calls.take();
    eprintln!(
        "{what}, {} ms at a 200 ms poll: {} DynamoDB call(s) {calls:?}",
        idle.as_millis(),
        calls.len()
    );
    drop(held);

    // The client left: no more reads.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    app.calls.take();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.calls.take(), Vec::<String>::new());
    calls
}
