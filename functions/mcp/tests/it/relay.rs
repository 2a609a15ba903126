//! A tool's question to the client, answered through another instance: the answering side
//! (the session gate puts the answer in the store's mailbox) through the whole service, and
//! the waiting side ([`RelaySessions`]) with a tool that asks. Both over one SQLite store,
//! as two Lambda instances share one table.

// Log messages are deprecated for the 2026 wire (SEP-2577); the legacy wire, tested here,
// still has them.
#![allow(deprecated)]

use crate::common;

use std::{sync::Arc, time::Duration};

use axum::{body::Body, http::StatusCode};
use common::{Reply, post, send, with_token};
use http_body_util::BodyExt;
use mcp_function::{
    app,
    config::{Config, RelaySettings},
    relay::RelaySessions,
    store::{Store, mailbox},
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult, ContentBlock,
        ElicitRequest, ElicitRequestParams, LoggingLevel, LoggingMessageNotificationParam,
        ServerCapabilities, ServerConfig, ServerRequest,
    },
    service::RequestContext,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};
use tower::ServiceExt;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"test","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn settings(wait: Duration) -> RelaySettings {
    RelaySettings {
        poll: Duration::from_millis(100),
        wait,
    }
}

// ─── The answering side: the service with answers relayed ──────────────────

/// The whole service as a streaming Lambda builds it (answers relayed), over a store the
/// test can look into.
async fn relaying_app() -> (app::App, Arc<dyn Store>, tempfile::TempDir) {
    let key = std::str::from_utf8(common::TEST_KEY).expect("utf8 key");
    let env = [("MCP_SIGNING_KEY".to_owned(), key.to_owned())].into();
    let mut config = Config::from_sources(Default::default(), &env).expect("valid config");
    config.relay = Some(settings(Duration::from_secs(5)));
    let (store, dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let backends = common::backends(store.clone(), "sqlite", common::local_blobs(dir.path()));
    let app = app::build(&config, &backends, "server").expect("service builds");
    (app, store, dir)
}

async fn open_session(app: &app::App, sub: &str) -> String {
    let reply = send(app, with_token(post(INITIALIZE, &[]), sub)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let session = reply.headers["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let ack = send(app, in_session(INITIALIZED.to_owned(), &session, sub)).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    session
}

fn in_session(body: String, session: &str, sub: &str) -> axum::http::Request<Body> {
    let headers = [
        ("mcp-session-id", session),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    with_token(post(body, &headers), sub)
}

fn answer(id: Value, name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept", "content": {"name": name}}})
        .to_string()
}

async fn post_answer(app: &app::App, session: &str, sub: &str, body: String) -> Reply {
    send(app, in_session(body, session, sub)).await
}

fn nothing_waiting(id: &str) -> Value {
    json!({"code": -32600, "message": format!("Invalid Request: no request with id {id} is waiting for an answer in this session")})
}

#[tokio::test]
async fn an_answer_fills_the_open_request_of_its_own_session_once() {
    let (app, store, _dir) = relaying_app().await;
    let session = open_session(&app, "alice").await;
    let open_until = mailbox::expires_at_millis(Duration::from_secs(60));
    store
        .open_request(&session, "7", open_until)
        .await
        .expect("open");

    let reply = post_answer(&app, &session, "alice", answer(json!(7), "Ada")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body, "");
    let stored = store.load_answer(&session, "7").await.expect("load");
    assert_eq!(stored, Some(answer(json!(7), "Ada")));

    // Answered: a second answer is refused and the first one stays.
    let again = post_answer(&app, &session, "alice", answer(json!(7), "Eve")).await;
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, nothing_waiting("7"))
    );
    let stored = store.load_answer(&session, "7").await.expect("load");
    assert_eq!(stored, Some(answer(json!(7), "Ada")));
}

#[tokio::test]
async fn answers_to_requests_never_asked_or_of_someone_else_are_refused_and_kept_nowhere() {
    let (app, store, _dir) = relaying_app().await;
    let session = open_session(&app, "alice").await;
    let open_until = mailbox::expires_at_millis(Duration::from_secs(60));
    store
        .open_request(&session, "1", open_until)
        .await
        .expect("open");

    // An id that was never asked, and the string "1" for the number 1.
    let unasked = post_answer(&app, &session, "alice", answer(json!(2), "Ada")).await;
    assert_eq!(
        (unasked.status, unasked.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, nothing_waiting("2"))
    );
    let as_text = post_answer(&app, &session, "alice", answer(json!("1"), "Ada")).await;
    assert_eq!(
        (as_text.status, as_text.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, nothing_waiting("\"1\""))
    );
    // Bob cannot answer in Alice's session: it is not found, for him.
    let bob = post_answer(&app, &session, "bob", answer(json!(1), "Mallory")).await;
    assert_eq!(
        (bob.status, bob.error_code()),
        (StatusCode::NOT_FOUND, -32001)
    );
    // An answer larger than the mailbox keeps, though within the body limit.
    let huge = json!({"jsonrpc": "2.0", "id": 1, "result": {"action": "accept",
        "content": {"name": "x".repeat(mailbox::MAX_ANSWER_BYTES)}}});
    let too_big = post_answer(&app, &session, "alice", huge.to_string()).await;
    assert_eq!(
        (too_big.status, too_big.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, -32600)
    );

    assert_eq!(store.load_answer(&session, "1").await.expect("load"), None);
    assert_eq!(store.load_answer(&session, "2").await.expect("load"), None);
    // The request is still open for its real answer.
    let real = post_answer(&app, &session, "alice", answer(json!(1), "Ada")).await;
    assert_eq!(real.status, StatusCode::ACCEPTED, "{}", real.body);
}

// ─── The waiting side: a tool that asks, over RelaySessions ─────────────────

/// `ask`: asks the client for a name and answers with what came back, or with the error.
/// `log`: sends two log messages (on the session's standalone stream, as rmcp routes them),
/// then answers.
#[derive(Clone)]
struct Asker;

impl ServerHandler for Asker {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "log" {
            for step in ["first", "second"] {
                let note = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(step));
                cx.peer
                    .notify_logging_message(note)
                    .await
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            }
            return Ok(CallToolResult::success(vec![ContentBlock::text("logged")]).into());
        }
        let question = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: "Your name?".to_owned(),
            requested_schema: serde_json::from_value(json!({
                "type": "object", "properties": {"name": {"type": "string"}}
            }))
            .expect("schema"),
        };
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(question));
        let result = match cx.peer.send_request(request).await {
            Ok(ClientResult::ElicitResult(result)) => {
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "answered: {}",
                    json!(result.content)
                ))])
            }
            Ok(_) => CallToolResult::error(vec![ContentBlock::text("unexpected answer")]),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        };
        Ok(result.into())
    }
}

type Service = StreamableHttpService<Asker, RelaySessions>;

fn asking_service(store: Arc<dyn Store>, wait: Duration) -> Service {
    let sessions = RelaySessions::new(
        Arc::new(LocalSessionManager::default()),
        store,
        Some(settings(wait)),
    )
    .with_notes_on_calls(true);
    StreamableHttpService::new(
        || Ok(Asker),
        Arc::new(sessions),
        StreamableHttpServerConfig::default(),
    )
}

async fn call(service: &Service, body: &str, session: Option<&str>) -> http::Response<Body> {
    let mut headers = vec![];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
        headers.push(("mcp-protocol-version", "2025-11-25"));
    }
    let response = service
        .clone()
        .oneshot(post(body, &headers))
        .await
        .expect("infallible");
    response.map(Body::new)
}

/// The JSON-RPC messages in SSE text, in order.
fn sse_messages(text: &str) -> impl Iterator<Item = Value> + '_ {
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
}

/// Reads SSE events from `body` until one whose JSON satisfies `wanted`.
async fn next_message(body: &mut Body, seen: &mut String, wanted: fn(&Value) -> bool) -> Value {
    loop {
        if let Some(found) = sse_messages(seen).find(wanted) {
            return found;
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap_or_else(|_| panic!("nothing new within 10 s: {seen}"))
            .unwrap_or_else(|| panic!("the stream ended: {seen}"))
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

async fn start_session(service: &Service) -> String {
    let init = call(service, INITIALIZE, None).await;
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    call(service, INITIALIZED, Some(&session)).await;
    session
}

/// The streamed answer of tool `name`, called as request `id`.
async fn call_tool(service: &Service, session: &str, id: u32, name: &str) -> Body {
    let tool = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": {}}});
    let response = call(service, &tool.to_string(), Some(session)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body()
}

async fn ask(service: &Service) -> (String, Body) {
    let session = start_session(service).await;
    let body = call_tool(service, &session, 2, "ask").await;
    (session, body)
}

/// Every message of a finished SSE body, in order.
async fn all_messages(body: Body) -> Vec<Value> {
    let bytes = body.collect().await.expect("body").to_bytes();
    sse_messages(&String::from_utf8_lossy(&bytes)).collect()
}

/// A message as `[method, data]` for a notification, `["result", id]` for an answer.
fn shape(messages: Vec<Value>) -> Vec<Value> {
    messages
        .into_iter()
        .map(|m| match m["method"].as_str() {
            Some(method) => json!([method, m["params"]["data"]]),
            None => json!(["result", m["id"]]),
        })
        .collect()
}

#[tokio::test]
async fn log_messages_ride_the_call_stream_before_its_result_and_only_once() {
    let (store, _dir) = common::sqlite_store().await;
    let service = asking_service(Arc::new(store), Duration::from_secs(10));
    let session = start_session(&service).await;
    let logged = |id: u32| {
        vec![
            json!(["notifications/message", "first"]),
            json!(["notifications/message", "second"]),
            json!(["result", id]),
        ]
    };
    let first = all_messages(call_tool(&service, &session, 2, "log").await).await;
    assert_eq!(shape(first), logged(2));
    // The next call carries its own messages, not the first call's again.
    let second = all_messages(call_tool(&service, &session, 3, "log").await).await;
    assert_eq!(shape(second), logged(3));
}

#[tokio::test]
async fn the_waiting_call_resumes_with_an_answer_posted_to_the_mailbox() {
    let (store, _dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let service = asking_service(store.clone(), Duration::from_secs(10));
    let (session, mut body) = ask(&service).await;
    let mut seen = String::new();
    let question = next_message(&mut body, &mut seen, |m| {
        m["method"] == "elicitation/create"
    })
    .await;
    // The question goes out under an id of its own, not the session's count of requests.
    let relayed_id = question["id"].as_str().unwrap_or_default();
    assert!(relayed_id.starts_with("relay-"), "{question}");
    let key = mcp_function::relay::request_key(&question["id"]);

    // The record was open before the question left: the answer can be posted at once.
    let posted = store
        .post_answer(&session, &key, &answer(question["id"].clone(), "Ada"))
        .await
        .expect("post");
    assert!(posted);
    let result = next_message(&mut body, &mut seen, |m| m.get("result").is_some()).await;
    assert_eq!(result["id"], 2);
    assert_eq!(
        result["result"]["content"][0]["text"],
        r#"answered: {"name":"Ada"}"#
    );
    // The record is closed once delivered: a second answer finds nothing open.
    let again = store
        .post_answer(&session, &key, &answer(question["id"].clone(), "Eve"))
        .await
        .expect("post");
    assert!(!again);
}

#[tokio::test]
async fn a_call_left_unanswered_ends_with_a_clear_tool_error() {
    let (store, _dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let service = asking_service(store, Duration::from_secs(1));
    let (_session, mut body) = ask(&service).await;
    let mut seen = String::new();
    next_message(&mut body, &mut seen, |m| {
        m["method"] == "elicitation/create"
    })
    .await;
    let result = next_message(&mut body, &mut seen, |m| m.get("result").is_some()).await;
    assert_eq!(result["result"]["isError"], true, "{result}");
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("the client did not answer within 1 s"),
        "{result}"
    );
}
