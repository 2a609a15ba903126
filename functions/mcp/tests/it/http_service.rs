//! The HTTP service driven in-process with `oneshot`: the MCP wire on both eras,
//! every malformed input with its exact status and error, sessions and probes.

use crate::common;

use common::{META_2026, post, send};

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use chrono::{DateTime, Utc};
use mcp_function::{
    app,
    config::{Config, Flags},
    principal::Principal,
    store::{
        Admission, Document, Expect, Gcra, Page, Put, RateBuckets, SessionRecord, SessionRecords,
        StateStore, Store, StoreError,
        feed::{FeedLog, FeedRecords},
        mailbox::MailboxRecords,
        tasks::{TaskRecord, TaskRecords},
    },
};
use serde_json::{Value, json};

struct TestApp {
    router: Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl AsRef<Router> for TestApp {
    fn as_ref(&self) -> &Router {
        &self.router
    }
}

/// A server config over `env`, authentication off: these tests are about the layers below it
/// (tests/auth_http.rs covers authentication and scopes).
fn config(env: &[(&str, &str)]) -> Config {
    let env: HashMap<String, String> = [("MCP_AUTH", "off")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_sources(Flags::default(), &env).expect("valid config")
}

async fn test_app_with(env: &[(&str, &str)]) -> TestApp {
    let (store, dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let router = app::build(
        &config(env),
        &common::backends(store.clone(), "sqlite", common::local_blobs(dir.path())),
        "server",
    )
    .expect("service builds")
    .router;
    TestApp {
        router,
        store,
        _dir: dir,
    }
}

async fn test_app() -> TestApp {
    test_app_with(&[]).await
}

/// Opens a legacy session and returns its id.
async fn initialize(app: &TestApp) -> String {
    let reply = send(
        app,
        post(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#,
            &[],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.json()["result"]["protocolVersion"], "2025-11-25");
    let id = reply.headers["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let ack = send(
        app,
        post(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &session(&id),
        ),
    )
    .await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    id
}

fn session(id: &str) -> [(&str, &str); 2] {
    [
        ("mcp-session-id", id),
        ("mcp-protocol-version", "2025-11-25"),
    ]
}

fn tool_call(id: u64, name: &str, arguments: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":arguments}}).to_string()
}

fn tool_call_2026(id: u64, name: &str, arguments: Value) -> String {
    let meta: Value = serde_json::from_str(META_2026).expect("meta");
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":arguments,"_meta":meta}}).to_string()
}

fn headers_2026<'a>(method: &'a str, name: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
        ("mcp-name", name),
    ]
}

async fn call(app: &TestApp, session_id: &str, name: &str, arguments: Value) -> Value {
    let reply = send(
        app,
        post(tool_call(7, name, arguments), &session(session_id)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["result"].clone()
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_legacy_session_lives_until_deleted() {
    let app = test_app().await;
    let id = initialize(&app).await;
    let echoed = call(&app, &id, "echo", json!({"message": "hello"})).await;
    assert_eq!(echoed["structuredContent"], json!({"message": "hello"}));

    let delete = || {
        let mut delete = Request::delete("/mcp").header("host", "localhost");
        for (name, value) in session(&id) {
            delete = delete.header(name, value);
        }
        delete.body(Body::empty()).expect("request")
    };
    // Done, not merely accepted: 204 with no body (clients such as the Python SDK
    // report a 202 as a failed termination), and the record is gone already.
    let deleted = send(&app, delete()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert!(deleted.body.is_empty(), "{}", deleted.body);
    assert!(app.store.load_session(&id).await.expect("load").is_none());

    let after = send(
        &app,
        post(tool_call(8, "echo", json!({"message": "x"})), &session(&id)),
    )
    .await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert_eq!(after.error_code(), -32001);
    let again = send(&app, delete()).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.error_code(), -32001);
}

#[tokio::test]
async fn the_2026_wire_answers_statelessly_in_json() {
    let app = test_app().await;
    let reply = send(
        &app,
        post(
            tool_call_2026(1, "echo", json!({"message": "hi"})),
            &headers_2026("tools/call", "echo"),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert!(reply.headers.get("mcp-session-id").is_none());
    assert_eq!(reply.json()["result"]["structuredContent"]["message"], "hi");
}

#[tokio::test]
async fn state_tools_do_compare_and_set_with_clear_errors() {
    let app = test_app().await;
    let id = initialize(&app).await;
    let created = call(
        &app,
        &id,
        "state_set",
        json!({"key": "cfg", "value": {"a": 1}, "expected_version": 0}),
    )
    .await;
    assert_eq!(created["structuredContent"]["version"], 1);
    let conflict = call(
        &app,
        &id,
        "state_set",
        json!({"key": "cfg", "value": {"a": 2}, "expected_version": 5}),
    )
    .await;
    assert_eq!(conflict["isError"], true);
    assert_eq!(
        text_of(&conflict),
        "version conflict on `cfg`: expected version 5, current is version 1"
    );
    let read = call(&app, &id, "state_get", json!({"key": "cfg"})).await;
    assert_eq!(read["structuredContent"]["value"], json!({"a": 1}));

    let big = call(
        &app,
        &id,
        "state_set",
        json!({"key": "big", "value": "x".repeat(70_000)}),
    )
    .await;
    assert_eq!(
        text_of(&big),
        "document is 70002 bytes when serialized; at most 65536 are allowed"
    );
    let long_key = call(
        &app,
        &id,
        "state_set",
        json!({"key": "k".repeat(300), "value": 1}),
    )
    .await;
    assert_eq!(
        text_of(&long_key),
        "key is 300 bytes; at most 256 are allowed"
    );
    let bad_ttl = call(
        &app,
        &id,
        "state_set",
        json!({"key": "t", "value": 1, "ttl_seconds": 0}),
    )
    .await;
    assert_eq!(
        text_of(&bad_ttl),
        "ttl_seconds is 0; use 1 to 31536000, or omit it to keep the document"
    );
    let bad_cursor = call(&app, &id, "state_list", json!({"cursor": "forged.cursor"})).await;
    assert_eq!(
        text_of(&bad_cursor),
        "the cursor is not valid for this listing; start again without a cursor"
    );
    let bad_limit = call(&app, &id, "state_list", json!({"limit": 0})).await;
    assert_eq!(text_of(&bad_limit), "limit is 0; use 1 to 100");
    let missing = call(&app, &id, "state_get", json!({"key": "nope"})).await;
    assert_eq!(
        text_of(&missing),
        "no document under key \"nope\"; use state_list to see your keys"
    );

    // None of the rejected writes touched the stored document.
    let doc = app
        .store
        .get(&Principal::anonymous(), "cfg")
        .await
        .expect("get")
        .expect("present");
    assert_eq!((doc.version, doc.value), (1, json!({"a": 1})));
    assert_eq!(
        app.store
            .get(&Principal::anonymous(), "big")
            .await
            .expect("get"),
        None
    );
}

#[tokio::test]
async fn get_time_explains_a_bad_zone() {
    let app = test_app().await;
    let id = initialize(&app).await;
    let ok = call(&app, &id, "get_time", json!({"timeZone": "Europe/Paris"})).await;
    assert_eq!(ok["structuredContent"]["timeZone"], "Europe/Paris");
    let bad = call(&app, &id, "get_time", json!({"timeZone": "Mars/Olympus"})).await;
    assert_eq!(bad["isError"], true);
    assert_eq!(
        text_of(&bad),
        "unknown time zone \"Mars/Olympus\"; use an IANA name such as \"UTC\", \"Europe/Paris\" or \"America/New_York\""
    );
}

#[tokio::test]
async fn malformed_bodies_get_jsonrpc_errors() {
    let app = test_app().await;
    let not_json = send(&app, post("{not json", &[])).await;
    assert_eq!(
        (not_json.status, not_json.error_code()),
        (StatusCode::BAD_REQUEST, -32700)
    );
    let batch = send(
        &app,
        post(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, &[]),
    )
    .await;
    assert_eq!(
        (batch.status, batch.error_code()),
        (StatusCode::BAD_REQUEST, -32600)
    );
    assert_eq!(
        batch.json()["error"]["message"],
        "Invalid Request: JSON-RPC batches are not supported; send one message per request"
    );
    let wrong_version = send(
        &app,
        post(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, &[]),
    )
    .await;
    assert_eq!(
        (wrong_version.status, wrong_version.error_code()),
        (StatusCode::BAD_REQUEST, -32600)
    );
    let oversize = send(
        &app,
        post(
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
                "x".repeat(1_100_000)
            ),
            &[],
        ),
    )
    .await;
    assert_eq!(oversize.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        oversize.json()["error"]["message"],
        "Request body exceeds the 1048576-byte limit"
    );
}

#[tokio::test]
async fn content_negotiation_is_enforced() {
    let app = test_app().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut wrong_type = post(body, &[]);
    wrong_type
        .headers_mut()
        .insert("content-type", "text/plain".parse().expect("header"));
    let reply = send(&app, wrong_type).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        reply.body,
        "Unsupported Media Type: Content-Type must be application/json"
    );

    let mut no_accept = post(body, &[]);
    no_accept.headers_mut().remove("accept");
    let reply = send(&app, no_accept).await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        reply.body,
        "Not Acceptable: Client must accept both application/json and text/event-stream"
    );
}

#[tokio::test]
async fn unknown_methods_tools_and_bad_arguments_are_told_apart() {
    let app = test_app().await;
    let id = initialize(&app).await;
    let unknown_method = send(
        &app,
        post(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/dance","params":{}}"#,
            &session(&id),
        ),
    )
    .await;
    assert_eq!(
        (unknown_method.status, unknown_method.error_code()),
        (StatusCode::OK, -32601)
    );

    let unknown_tool = send(&app, post(tool_call(4, "nope", json!({})), &session(&id))).await;
    assert_eq!(unknown_tool.error_code(), -32602);
    assert_eq!(
        unknown_tool.json()["error"]["message"],
        "Unknown tool: nope; call tools/list for the available tools"
    );

    let invalid_args = call(&app, &id, "state_set", json!({"value": 1})).await;
    assert_eq!(invalid_args["isError"], true);
    assert!(
        text_of(&invalid_args).contains("missing field `key`"),
        "{invalid_args}"
    );
    let wrong_type = call(&app, &id, "echo", json!({"message": 42})).await;
    assert_eq!(wrong_type["isError"], true);
    assert!(
        text_of(&wrong_type).contains("invalid type: integer `42`, expected a string"),
        "{wrong_type}"
    );

    let unknown_2026 = send(
        &app,
        post(
            format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/dance","params":{{"_meta":{META_2026}}}}}"#),
            &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/dance")],
        ),
    )
    .await;
    assert_eq!(
        (unknown_2026.status, unknown_2026.error_code()),
        (StatusCode::NOT_FOUND, -32601)
    );
}

#[tokio::test]
async fn sessions_of_others_and_unknown_ids_are_not_found_alike() {
    let app = test_app().await;
    let now = Utc::now();
    let mallorys = SessionRecord {
        id: "0b5e8f5e-0000-4000-8000-000000000001".into(),
        principal: Principal::new("mallory").expect("subject"),
        init_params: json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"m","version":"1"}}),
        created_at: now,
        last_seen_at: now,
        expires_at: now + chrono::Duration::hours(1),
    };
    app.store
        .create_session(&mallorys, 32)
        .await
        .expect("create");
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    let foreign = send(&app, post(ping, &session(&mallorys.id))).await;
    let unknown = send(
        &app,
        post(ping, &session("6f1c2d3e-0000-4000-8000-00000000dead")),
    )
    .await;
    let junk = send(&app, post(ping, &session("not a session id"))).await;
    for reply in [&foreign, &unknown, &junk] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(
            reply.body, foreign.body,
            "foreign and unknown sessions must look the same"
        );
        assert_eq!(reply.error_code(), -32001);
    }
    // Mallory's session is untouched.
    assert!(
        app.store
            .load_session(&mallorys.id)
            .await
            .expect("load")
            .is_some()
    );
}

#[tokio::test]
async fn protocol_versions_and_headers_are_validated() {
    let app = test_app().await;
    let id = initialize(&app).await;
    let unsupported = send(
        &app,
        post(
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
            &[
                ("mcp-session-id", id.as_str()),
                ("mcp-protocol-version", "1999-01-01"),
            ],
        ),
    )
    .await;
    assert_eq!(unsupported.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unsupported.body,
        "Bad Request: Unsupported MCP-Protocol-Version: 1999-01-01"
    );

    let mismatch = send(
        &app,
        post(
            tool_call_2026(3, "echo", json!({"message": "x"})),
            &headers_2026("tools/list", "echo"),
        ),
    )
    .await;
    assert_eq!(
        (mismatch.status, mismatch.error_code()),
        (StatusCode::BAD_REQUEST, -32020)
    );
}

#[tokio::test]
async fn dns_rebinding_is_refused() {
    let app = test_app().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut evil_host = post(body, &[]);
    evil_host
        .headers_mut()
        .insert("host", "evil.example".parse().expect("header"));
    let reply = send(&app, evil_host).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "Forbidden: Host header is not allowed"
        )
    );

    let reply = send(&app, post(body, &[("origin", "https://evil.example")])).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "Forbidden: Origin header is not allowed"
        )
    );

    let allowed = test_app_with(&[
        ("MCP_ALLOWED_HOSTS", "mcp.example.com"),
        ("MCP_ALLOWED_ORIGINS", "https://app.example.com"),
    ])
    .await;
    let mut public = post(
        tool_call_2026(1, "echo", json!({"message": "x"})),
        &headers_2026("tools/call", "echo"),
    );
    public
        .headers_mut()
        .insert("host", "mcp.example.com".parse().expect("header"));
    public
        .headers_mut()
        .insert("origin", "https://app.example.com".parse().expect("header"));
    assert_eq!(send(&allowed, public).await.status, StatusCode::OK);
}

/// A store whose backend is down: every call fails as a dead connection would, or, when
/// `hangs`, never answers (a stuck connection).
struct DownStore {
    hangs: bool,
}

impl DownStore {
    async fn down<T>(&self) -> Result<T, StoreError> {
        if self.hangs {
            std::future::pending::<()>().await;
        }
        Err(StoreError::from(sqlx::Error::PoolTimedOut))
    }
}

#[async_trait]
impl StateStore for DownStore {
    async fn get(&self, _: &Principal, _: &str) -> Result<Option<Document>, StoreError> {
        self.down().await
    }
    async fn put(&self, _: &Principal, _: Put<'_>) -> Result<Document, StoreError> {
        self.down().await
    }
    async fn delete(&self, _: &Principal, _: &str, _: Expect) -> Result<bool, StoreError> {
        self.down().await
    }
    async fn list(
        &self,
        _: &Principal,
        _: &str,
        _: Option<&str>,
        _: u32,
    ) -> Result<Page, StoreError> {
        self.down().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.down().await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.down().await
    }
}

#[async_trait]
impl SessionRecords for DownStore {
    async fn create_session(&self, _: &SessionRecord, _: usize) -> Result<(), StoreError> {
        self.down().await
    }
    async fn load_session(&self, _: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.down().await
    }
    async fn touch_session(
        &self,
        _: &Principal,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.down().await
    }
    async fn delete_session(&self, _: &Principal, _: &str) -> Result<(), StoreError> {
        self.down().await
    }
    async fn set_session_subscriptions(
        &self,
        _: &str,
        _: &std::collections::BTreeSet<String>,
    ) -> Result<bool, StoreError> {
        self.down().await
    }
    async fn load_session_subscriptions(
        &self,
        _: &str,
    ) -> Result<Option<std::collections::BTreeSet<String>>, StoreError> {
        self.down().await
    }
}

#[async_trait]
impl RateBuckets for DownStore {
    async fn admit(&self, _: &Principal, _: Gcra, _: i64) -> Result<Admission, StoreError> {
        self.down().await
    }
}

#[async_trait]
impl FeedRecords for DownStore {
    async fn load_feed(&self, _: &Principal) -> Result<Option<FeedLog>, StoreError> {
        self.down().await
    }
    async fn save_feed(
        &self,
        _: &Principal,
        _: &FeedLog,
        _: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.down().await
    }
}

#[async_trait]
impl MailboxRecords for DownStore {
    async fn open_request(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
        self.down().await
    }
    async fn post_answer(&self, _: &str, _: &str, _: &str) -> Result<bool, StoreError> {
        self.down().await
    }
    async fn load_answer(&self, _: &str, _: &str) -> Result<Option<String>, StoreError> {
        self.down().await
    }
    async fn close_request(&self, _: &str, _: &str) -> Result<(), StoreError> {
        self.down().await
    }
}

#[async_trait]
impl TaskRecords for DownStore {
    async fn create_task(
        &self,
        _: &Principal,
        _: &str,
        _: &str,
        _: i64,
    ) -> Result<bool, StoreError> {
        self.down().await
    }
    async fn load_task(&self, _: &Principal, _: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.down().await
    }
    async fn replace_task(
        &self,
        _: &Principal,
        _: &str,
        _: u64,
        _: &str,
        _: i64,
    ) -> Result<bool, StoreError> {
        self.down().await
    }
}

#[tokio::test]
async fn probes_report_the_store() {
    let app = test_app().await;
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    let live = send(&app, get("/health/live")).await;
    assert_eq!(
        (live.status, live.json()["status"].clone()),
        (StatusCode::OK, json!("alive"))
    );
    let ready = send(&app, get("/health/ready")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["checks"]["store"]["status"], "up");
    assert_eq!(ready.json()["checks"]["files"]["status"], "up");

    let dir = tempfile::tempdir().expect("dir");
    let router = app::build(
        &config(&[]),
        &common::backends(
            Arc::new(DownStore { hangs: false }),
            "sqlite",
            common::local_blobs(dir.path()),
        ),
        "server",
    )
    .expect("service builds")
    .router;
    let down_app = TestApp {
        router,
        store: Arc::new(DownStore { hangs: false }),
        _dir: dir,
    };
    let ready = send(&down_app, get("/health/ready")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["checks"]["store"]["status"], "down");
    // Stateless calls that touch no state still work while the store is down.
    let echo = send(
        &down_app,
        post(
            tool_call_2026(1, "echo", json!({"message": "up"})),
            &headers_2026("tools/call", "echo"),
        ),
    )
    .await;
    assert_eq!(echo.status, StatusCode::OK);
    let state = send(
        &down_app,
        post(
            tool_call_2026(2, "state_get", json!({"key": "k"})),
            &headers_2026("tools/call", "state_get"),
        ),
    )
    .await;
    assert_eq!(state.json()["result"]["isError"], true);
    assert_eq!(
        state.json()["result"]["content"][0]["text"],
        "the state store is unavailable right now; retry shortly (details are in the server log)"
    );
}

#[tokio::test]
async fn protected_resource_metadata_names_the_resource_and_its_scopes() {
    let get = |path: &str, host: &str| {
        Request::get(path)
            .header("host", host)
            .body(Body::empty())
            .expect("request")
    };
    let app = test_app().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let reply = send(&app, get(path, "localhost:8080")).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let document = reply.json();
        assert_eq!(document["resource"], "http://localhost:8080/mcp");
        assert_eq!(
            document["scopes_supported"],
            json!(["mcp:read", "mcp:call", "mcp:write"])
        );
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    }
    let spoofed = send(
        &app,
        get("/.well-known/oauth-protected-resource", "evil.example/<x>"),
    )
    .await;
    assert_eq!(spoofed.status, StatusCode::BAD_REQUEST);

    let configured = test_app_with(&[
        ("MCP_RESOURCE_URL", "https://mcp.example.com/mcp"),
        (
            "MCP_AUTHORIZATION_SERVERS",
            "https://auth.example.com, https://login.example.org/tenant",
        ),
    ])
    .await;
    let document = send(
        &configured,
        get("/.well-known/oauth-protected-resource/mcp", "anything"),
    )
    .await
    .json();
    assert_eq!(document["resource"], "https://mcp.example.com/mcp");
    assert_eq!(
        document["authorization_servers"],
        json!([
            "https://auth.example.com",
            "https://login.example.org/tenant"
        ])
    );
}

#[tokio::test]
async fn a_tool_call_that_outlives_its_timeout_is_cancelled_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let router = app::build(
        &config(&[("MCP_TOOL_TIMEOUT_SECS", "1")]),
        &common::backends(
            Arc::new(DownStore { hangs: true }),
            "sqlite",
            common::local_blobs(dir.path()),
        ),
        "server",
    )
    .expect("service builds")
    .router;
    let app = TestApp {
        router,
        store: Arc::new(DownStore { hangs: true }),
        _dir: dir,
    };
    let started = std::time::Instant::now();
    let reply = send(
        &app,
        post(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
                "name":"state_get","arguments":{"key":"k"},
                "_meta": serde_json::from_str::<Value>(META_2026).expect("meta")}})
            .to_string(),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "state_get"),
            ],
        ),
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let result = &reply.json()["result"];
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        result["content"][0]["text"],
        "the tool `state_get` did not finish within 1 s and was cancelled; \
         nothing more will happen for this call, retry it later"
    );
}

/// The params of a well-behaved client's `initialize`.
fn client_params() -> Value {
    json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}})
}

/// An `initialize` with `params`, acting for `subject` when given (else `anonymous`).
fn initialize_request(params: Value, subject: Option<&str>) -> Request<Body> {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":params});
    let mut request = post(body.to_string(), &[]);
    if let Some(subject) = subject {
        request
            .extensions_mut()
            .insert(Principal::new(subject).expect("subject"));
    }
    request
}

fn delete_session(id: &str) -> Request<Body> {
    let mut delete = Request::delete("/mcp").header("host", "localhost");
    for (name, value) in session(id) {
        delete = delete.header(name, value);
    }
    delete.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn an_initialize_beyond_the_session_cap_is_refused_and_stores_nothing() {
    let app = test_app_with(&[("MCP_MAX_SESSIONS_PER_CALLER", "2")]).await;
    let first = initialize(&app).await;
    let second = initialize(&app).await;

    let refused = send(&app, initialize_request(client_params(), None)).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(refused.headers.get("mcp-session-id").is_none());
    assert!(refused.headers.get("retry-after").is_none());
    assert_eq!(
        refused.json(),
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":
            "Session not created: this caller already has 2 open sessions, the most allowed; \
             end one it no longer needs (HTTP DELETE with its Mcp-Session-Id) or wait for one \
             to expire"}})
    );

    // Another caller's sessions are counted apart.
    let bobs = send(&app, initialize_request(client_params(), Some("bob"))).await;
    assert_eq!(bobs.status, StatusCode::OK, "{}", bobs.body);
    assert!(bobs.headers.get("mcp-session-id").is_some());

    // The sessions that were created are untouched, and ending one frees its place.
    let echoed = call(&app, &second, "echo", json!({"message": "still here"})).await;
    assert_eq!(echoed["structuredContent"]["message"], "still here");
    let deleted = send(&app, delete_session(&first)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let third = initialize(&app).await;
    let echoed = call(&app, &third, "echo", json!({"message": "in"})).await;
    assert_eq!(echoed["structuredContent"]["message"], "in");
}

#[tokio::test]
async fn oversized_initialize_params_are_refused_and_store_nothing() {
    let app = test_app_with(&[("MCP_MAX_SESSIONS_PER_CALLER", "1")]).await;
    let mut params = client_params();
    params["capabilities"]["experimental"] = json!({"pad": {"text": "x".repeat(70_000)}});
    // The params as the session would keep them.
    let kept: rmcp::model::InitializeRequestParams =
        serde_json::from_value(params.clone()).expect("params");
    let size = serde_json::to_string(&kept).expect("json").len();
    assert!(size > 65_536 && size < 71_000, "{size}");

    let refused = send(&app, initialize_request(params, None)).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.body
    );
    assert!(refused.headers.get("mcp-session-id").is_none());
    assert_eq!(
        refused.json(),
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message": format!(
            "Session not created: initialize params are {size} bytes when serialized; a \
             session keeps at most 65536"
        )}})
    );
    // Nothing was stored and no place taken: the one session allowed opens, then no other.
    initialize(&app).await;
    let second = send(&app, initialize_request(client_params(), None)).await;
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second.body
    );
}

#[tokio::test]
async fn an_initialize_whose_session_cannot_be_stored_fails_instead_of_answering_a_dead_id() {
    use sqlx::Connection;

    let app = test_app().await;
    // Another process holds the SQLite database's write lock past the store's busy timeout.
    let db = app._dir.path().join("mcp.db");
    let mut holder = sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("lock");

    let refused = send(&app, initialize_request(client_params(), None)).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert!(refused.headers.get("mcp-session-id").is_none());
    assert_eq!(
        refused.json(),
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":
            "Session not created: the session store is unavailable; retry shortly"}})
    );

    // Once the lock is gone the retry opens a session that answers.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("unlock");
    let id = initialize(&app).await;
    let echoed = call(&app, &id, "echo", json!({"message": "stored"})).await;
    assert_eq!(echoed["structuredContent"]["message"], "stored");
}

#[tokio::test]
async fn an_initialize_against_a_down_store_answers_503_without_a_session() {
    let dir = tempfile::tempdir().expect("dir");
    let router = app::build(
        &config(&[]),
        &common::backends(
            Arc::new(DownStore { hangs: false }),
            "sqlite",
            common::local_blobs(dir.path()),
        ),
        "server",
    )
    .expect("service builds")
    .router;
    let app = TestApp {
        router,
        store: Arc::new(DownStore { hangs: false }),
        _dir: dir,
    };
    let refused = send(&app, initialize_request(client_params(), None)).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers.get("mcp-session-id").is_none());
    assert_eq!(refused.error_code(), -32603);
}
