//! Two Lambda instances, one DynamoDB: sessions and state follow the client, not the instance.
//!
//! Needs two `cargo lambda watch` emulators of `conformance-lambda` sharing one moto
//! server; `scripts/test.sh` starts them and runs this file with `--ignored`,
//! passing their addresses in `MCP_TEST_LAMBDA_A` and `MCP_TEST_LAMBDA_B`
//! (e.g. `http://127.0.0.1:9001`), and a bearer token the functions accept in
//! `MCP_TEST_LAMBDA_AUTHORIZATION`. Requests go through each emulator's
//! function URL path with that token (the function verifies it itself: no
//! authorizer in front), and, to act as a given principal, through its Invoke
//! API with an API Gateway event whose authorizer context names the subject.
//! A streams its answers (`MCP_LAMBDA_RESPONSE=stream`, the default), B buffers them
//! (`buffered`, as behind an HTTP API); both are built with the conformance fixtures, whose
//! `test_tool_with_progress` paces its notifications. The emulator's Invoke API hands back a
//! streamed answer's body alone, so only B's invocations show their status and headers.

use std::time::{Duration, Instant};

use crate::common;

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const FUNCTION: &str = "conformance-lambda";

struct Instance {
    base: String,
    /// `Bearer …` of the function-URL caller.
    authorization: String,
    http: Client,
}

fn instance(var: &str) -> Instance {
    let base = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run scripts/test.sh, which starts two `cargo lambda watch` emulators"
        )
    });
    let authorization = std::env::var("MCP_TEST_LAMBDA_AUTHORIZATION")
        .expect("MCP_TEST_LAMBDA_AUTHORIZATION is not set: run scripts/test.sh, which mints it");
    Instance {
        base,
        authorization,
        http: Client::new(),
    }
}

struct Reply {
    status: u16,
    session: Option<String>,
    body: Value,
}

/// What the Invoke API returns: the buffered answer's event (status, headers, body), or a
/// streamed answer's body alone.
struct Invoked {
    status: Option<u16>,
    session: Option<String>,
    body: Value,
}

impl Instance {
    /// A POST or DELETE to /mcp through the function URL path, with the test token.
    async fn url(&self, method: &str, session: Option<&str>, body: Option<Value>) -> Reply {
        self.url_with(Some(&self.authorization), method, session, body)
            .await
    }

    async fn url_with(
        &self,
        authorization: Option<&str>,
        method: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let response = self.send_legacy(authorization, method, session, body).await;
        let status = response.status().as_u16();
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("body");
        Reply {
            status,
            session,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// A 2025-wire request to /mcp through the function URL path; the answer is left unread.
    async fn send_legacy(
        &self,
        authorization: Option<&str>,
        method: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let url = format!("{}/lambda-url/{FUNCTION}/mcp", self.base);
        let mut request = match method {
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url),
        };
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let mut request = request
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        request.send().await.expect("emulator answers")
    }

    /// A 2026-07-28 POST to /mcp through the function URL path, with the test token and the
    /// `Mcp-Method` (and `Mcp-Name`) headers; the answer is left unread, to be streamed.
    async fn post_2026(&self, method: &str, name: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/lambda-url/{FUNCTION}/mcp", self.base))
            .header("authorization", &self.authorization)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = name {
            request = request.header("mcp-name", name);
        }
        request
            .body(body.to_string())
            .send()
            .await
            .expect("emulator answers")
    }

    /// A POST to /mcp as `subject`, sent as an API Gateway REST event to the Invoke API.
    async fn invoke_as(&self, subject: &str, session: Option<&str>, body: Value) -> Invoked {
        let mut headers = vec![
            ("host", "localhost"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(session) = session {
            headers.push(("mcp-session-id", session));
            headers.push(("mcp-protocol-version", "2025-11-25"));
        }
        let body = body.to_string();
        let event = common::lambda_event(
            common::APIGW_REST_EVENT,
            "POST",
            "/mcp",
            headers,
            Some(&body),
        );
        let mut event = common::with_authorizer(event, subject, "mcp:read mcp:call mcp:write");
        event["requestContext"]["requestId"] = json!(format!("invoke-{subject}"));
        let url = format!("{}/2015-03-31/functions/{FUNCTION}/invocations", self.base);
        let answer = self
            .http
            .post(url)
            .json(&event)
            .send()
            .await
            .expect("emulator answers")
            .bytes()
            .await
            .expect("Lambda answer");
        let parsed: Value = serde_json::from_slice(&answer)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer).into_owned()));
        let Some(status) = parsed["statusCode"].as_u64() else {
            return Invoked {
                status: None,
                session: None,
                body: parsed,
            };
        };
        let body = parsed["body"].as_str().unwrap_or_default();
        Invoked {
            status: u16::try_from(status).ok(),
            session: parsed["multiValueHeaders"]["mcp-session-id"][0]
                .as_str()
                .map(str::to_owned),
            body: serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
        }
    }
}

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cross-instance","version":"1"}}})
}

fn initialized() -> Value {
    json!({"jsonrpc":"2.0","method":"notifications/initialized"})
}

fn tool(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":name,"arguments":arguments}})
}

async fn open_session(on: &Instance) -> String {
    let reply = on.url("POST", None, Some(initialize())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = reply.session.expect("initialize returns a session id");
    let ack = on.url("POST", Some(&session), Some(initialized())).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED.as_u16());
    session
}

#[tokio::test]
#[ignore = "needs two cargo lambda watch emulators; scripts/test.sh runs it"]
async fn a_session_opened_on_one_instance_works_on_the_other_until_deleted() {
    let (a, b) = (instance("MCP_TEST_LAMBDA_A"), instance("MCP_TEST_LAMBDA_B"));
    let session = open_session(&a).await;

    let echoed = b
        .url(
            "POST",
            Some(&session),
            Some(tool("echo", json!({"message": "via B"}))),
        )
        .await;
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    assert_eq!(
        echoed.body["result"]["structuredContent"]["message"],
        "via B"
    );

    let deleted = b.url("DELETE", Some(&session), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT.as_u16());
    for instance in [&a, &b] {
        let after = instance
            .url(
                "POST",
                Some(&session),
                Some(tool("echo", json!({"message": "gone"}))),
            )
            .await;
        assert_eq!(after.status, 404, "{}", after.body);
        assert_eq!(after.body["error"]["code"], -32001);
    }
}

#[tokio::test]
#[ignore = "needs two cargo lambda watch emulators; scripts/test.sh runs it"]
async fn state_written_through_one_instance_is_read_through_the_other() {
    let (a, b) = (instance("MCP_TEST_LAMBDA_A"), instance("MCP_TEST_LAMBDA_B"));
    let key = format!("cross-{}", uuid::Uuid::new_v4().simple());
    let session_a = open_session(&a).await;
    let set = a
        .url(
            "POST",
            Some(&session_a),
            Some(tool(
                "state_set",
                json!({"key": key, "value": {"from": "A"}}),
            )),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_ne!(set.body["result"]["isError"], true, "{}", set.body);

    let session_b = open_session(&b).await;
    let got = b
        .url(
            "POST",
            Some(&session_b),
            Some(tool("state_get", json!({"key": key}))),
        )
        .await;
    assert_eq!(
        got.body["result"]["structuredContent"]["value"]["from"], "A",
        "{}",
        got.body
    );
    assert_eq!(got.body["result"]["structuredContent"]["version"], 1);
}

#[tokio::test]
#[ignore = "needs two cargo lambda watch emulators; scripts/test.sh runs it"]
async fn a_session_is_404_for_another_principal_on_any_instance() {
    let (a, b) = (instance("MCP_TEST_LAMBDA_A"), instance("MCP_TEST_LAMBDA_B"));
    // Opened through B: its buffered answers show the session header through the Invoke API.
    let opened = b.invoke_as("xavier", None, initialize()).await;
    assert_eq!(opened.status, Some(200), "{}", opened.body);
    let session = opened.session.expect("session id in the response event");
    let ack = b.invoke_as("xavier", Some(&session), initialized()).await;
    assert_eq!(ack.status, Some(202), "{}", ack.body);

    let call = tool("echo", json!({"message": "mine"}));
    for instance in [&a, &b] {
        let foreign = instance
            .invoke_as("yolanda", Some(&session), call.clone())
            .await;
        assert_eq!(foreign.body["error"]["code"], -32001, "{}", foreign.body);
        if let Some(status) = foreign.status {
            assert_eq!(status, 404, "{}", foreign.body);
        }
        // The function-URL caller's token names someone else: the same 404.
        let other_token = instance
            .url("POST", Some(&session), Some(call.clone()))
            .await;
        assert_eq!(other_token.status, 404, "{}", other_token.body);
        let no_token = instance
            .url_with(None, "POST", Some(&session), Some(call.clone()))
            .await;
        assert_eq!(no_token.status, 401, "{}", no_token.body);
    }
    // The owner, through the streaming instance.
    let owner = a.invoke_as("xavier", Some(&session), call).await;
    assert_eq!(
        owner.body["result"]["structuredContent"]["message"], "mine",
        "{}",
        owner.body
    );
}

#[tokio::test]
#[ignore = "needs two cargo lambda watch emulators; scripts/test.sh runs it"]
async fn progress_reaches_the_client_while_the_call_still_runs() {
    let a = instance("MCP_TEST_LAMBDA_A");
    let meta = json!({
        "progressToken": "streamed",
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "cross-instance", "version": "1"}
    });
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":meta}});
    let sent = Instant::now();
    let response = a
        .post_2026("tools/call", Some("test_tool_with_progress"), &call)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // Each chunk with the time it arrived: the tool sleeps 50 ms after each of its three
    // notifications, so a streamed answer spreads over about 150 ms while a buffered one
    // would arrive at once.
    let mut arrivals: Vec<(Duration, String)> = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("a body chunk");
        arrivals.push((sent.elapsed(), String::from_utf8_lossy(&chunk).into_owned()));
    }
    let arrived = |text: &str| {
        arrivals
            .iter()
            .find(|(_, chunk)| chunk.contains(text))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("{text} never arrived: {arrivals:?}"))
    };
    let first_progress = arrived("Starting");
    let result = arrived("Progress test completed");
    assert!(
        result >= first_progress + Duration::from_millis(75),
        "the first notification came with the result, not before it: {arrivals:?}"
    );
}

/// How long a change may take from one instance to a listen stream on another: A polls the
/// feed every 250 ms (`MCP_LISTEN_POLL_MS` in scripts/test.sh), and the emulator adds its
/// own latency on a loaded machine.
const LISTEN_DELIVERY_BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
#[ignore = "needs two cargo lambda watch emulators; scripts/test.sh runs it"]
async fn a_listen_stream_on_one_instance_hears_of_a_file_write_through_another() {
    // A has three instances: the listen stream holds one, so the write lands on another.
    let a = instance("MCP_TEST_LAMBDA_A");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "cross-instance", "version": "1"}
    });
    let listen = json!({"jsonrpc":"2.0","id":"watch","method":"subscriptions/listen","params":{
        "notifications": {"resourcesListChanged": true, "resourceSubscriptions": ["files:///cross/listened.txt"]},
        "_meta": meta}});
    let response = a.post_2026("subscriptions/listen", None, &listen).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let mut read_until = async |text: &str, within: Duration| {
        let deadline = Instant::now() + within;
        while !seen.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, body.next()).await {
                Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => panic!("{text} did not arrive within {within:?}: {seen}"),
            }
        }
    };
    read_until(
        "notifications/subscriptions/acknowledged",
        LISTEN_DELIVERY_BOUND,
    )
    .await;

    let write = json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{
        "name":"file_write","arguments":{"path":"cross/listened.txt","content":"hello"},"_meta":meta}});
    let written = Instant::now();
    let reply = a.post_2026("tools/call", Some("file_write"), &write).await;
    assert_eq!(reply.status(), 200);
    read_until("notifications/resources/updated", LISTEN_DELIVERY_BOUND).await;
    eprintln!(
        "file_write on one instance reached a listen stream on another after {:?}",
        written.elapsed()
    );
    assert!(
        seen.contains("notifications/resources/list_changed"),
        "{seen}"
    );
    assert!(seen.contains("notifications/resources/updated"), "{seen}");
}

/// How long a client's answer may take from the instance it was posted to to the call
/// waiting on another: A reads the mailbox every 250 ms.
const ANSWER_DELIVERY_BOUND: Duration = Duration::from_secs(5);

/// The `data:` payloads of an SSE text, as JSON.
fn sse_messages(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect()
}

#[tokio::test]
#[ignore = "needs two cargo lambda watch emulators; scripts/test.sh runs it"]
async fn an_elicitation_raised_on_one_instance_is_answered_through_another() {
    // A has three instances: the call holds one, so every answer lands on another.
    let a = instance("MCP_TEST_LAMBDA_A");
    let session = open_session(&a).await;
    let call = tool("test_elicitation", json!({"message": "Who is calling?"}));
    let response = a
        .send_legacy(Some(&a.authorization), "POST", Some(&session), Some(call))
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let mut read_until = async |wanted: fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + ANSWER_DELIVERY_BOUND;
        loop {
            if let Some(found) = sse_messages(&seen).into_iter().find(wanted) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, body.next()).await {
                Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => panic!("the awaited message did not arrive: {seen}"),
            }
        }
    };
    let question = read_until(|message| message["method"] == "elicitation/create").await;
    let id = question["id"].clone();
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
        "action": "accept", "content": {"name": "Ada", "email": "ada@example.com"}}});

    // Another principal cannot answer it: the session is not theirs.
    let stranger = a
        .invoke_as("someone-else", Some(&session), answer.clone())
        .await;
    assert_eq!(stranger.body["error"]["code"], -32001, "{}", stranger.body);
    // Nor is an answer to a request that was never asked taken.
    let unasked = json!({"jsonrpc": "2.0", "id": 4242, "result": {"action": "decline"}});
    let refused = a.url("POST", Some(&session), Some(unasked)).await;
    assert_eq!(
        (refused.status, &refused.body["error"]),
        (
            400,
            &json!({"code": -32600, "message": "Invalid Request: no request with id 4242 is waiting for an answer in this session"})
        )
    );

    let posted_at = Instant::now();
    let posted = a.url("POST", Some(&session), Some(answer.clone())).await;
    assert_eq!(
        posted.status,
        StatusCode::ACCEPTED.as_u16(),
        "{}",
        posted.body
    );
    let result = read_until(|message| message.get("result").is_some()).await;
    eprintln!(
        "an answer posted to one instance reached the call on another after {:?}",
        posted_at.elapsed()
    );
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.starts_with("User response: action=accept"), "{result}");
    assert!(text.contains("Ada"), "{result}");
    assert_ne!(result["result"]["isError"], true, "{result}");

    // Answered once: the same answer again finds nothing waiting.
    let again = a.url("POST", Some(&session), Some(answer)).await;
    assert_eq!(
        (again.status, again.body["error"]["code"].clone()),
        (400, json!(-32600))
    );
}

/// How long an exported task may take from its creation to `completed`: the asynchronous
/// invocation's start, one run, and the polls.
const TASK_SETTLE_BOUND: Duration = Duration::from_secs(20);

/// A 2026-07-28 request of a client that takes tasks, through `on`'s function URL path; its
/// JSON answer (or the last message of an SSE one).
async fn task_request(on: &Instance, method: &str, name: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "cross-instance", "version": "1"}
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let text = on
        .post_2026(method, Some(name), &body)
        .await
        .text()
        .await
        .expect("answer");
    serde_json::from_str(&text)
        .ok()
        .or_else(|| sse_messages(&text).pop())
        .unwrap_or_else(|| panic!("{method}: no JSON-RPC answer in {text}"))
}

#[tokio::test]
#[ignore = "needs two cargo lambda watch emulators; scripts/test.sh runs it"]
async fn a_task_created_on_one_instance_is_polled_on_another_and_run_by_an_asynchronous_invocation()
{
    // A streams, B buffers; each runs its tasks in asynchronous invocations of itself.
    let a = instance("MCP_TEST_LAMBDA_A");
    let b = instance("MCP_TEST_LAMBDA_B");
    let set = json!({"name": "state_set", "arguments": {"key": "tasks/cross", "value": {"n": 1}}});
    let stored = task_request(&a, "tools/call", "state_set", set).await;
    assert_ne!(stored["result"]["isError"], true, "{stored}");

    let export = json!({"name": "state_export",
        "arguments": {"prefix": "tasks/", "path": "exports/cross-instance.json"}});
    let created_at = Instant::now();
    let created = task_request(&a, "tools/call", "state_export", export).await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task_id = created["result"]["taskId"]
        .as_str()
        .expect("taskId")
        .to_owned();

    let task = loop {
        let got = task_request(&b, "tasks/get", &task_id, json!({"taskId": task_id})).await;
        let status = got["result"]["status"].as_str().unwrap_or_default();
        if ["completed", "failed", "cancelled"].contains(&status) {
            break got["result"].clone();
        }
        assert!(
            created_at.elapsed() < TASK_SETTLE_BOUND,
            "task still {status} after {TASK_SETTLE_BOUND:?}: {got}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "a task created on one instance completed by an asynchronous invocation, seen on another, after {:?}",
        created_at.elapsed()
    );
    assert_eq!(task["status"], "completed", "{task}");
    let output = &task["result"]["structuredContent"];
    assert_eq!(output["documents"], 1, "{task}");
    let read = task_request(
        &b,
        "resources/read",
        "files:///exports/cross-instance.json",
        json!({"uri": "files:///exports/cross-instance.json"}),
    )
    .await;
    let text = read["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("tasks/cross"), "{read}");
}
