//! Change notifications through the HTTP service (`oneshot`, no socket): a
//! `subscriptions/listen` stream held by one instance hears of a `file_write` made through
//! another instance over the same store, gets only its own caller's changes and only what
//! its acknowledgment accepted; legacy `resources/subscribe` delivers on the session's GET
//! stream; and a host with long-lived streams off declines both with the exact error.

use crate::common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use mcp_function::{
    app,
    blob::BlobStore,
    config::{Config, Flags, ListenSettings},
    principal::Principal,
    store::Store,
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// How long a notification may take to cross from the writing instance to the stream:
/// a few poll intervals of the 100 ms the tests set.
const DELIVERY_BOUND: Duration = Duration::from_secs(3);

/// Two instances of the service over one store and one file folder, as two Lambda
/// instances share DynamoDB and S3.
struct Instances {
    a: Instance,
    b: Instance,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

/// One instance's service, as `common::send` takes it.
struct Instance(Router);

impl AsRef<Router> for Instance {
    fn as_ref(&self) -> &Router {
        &self.0
    }
}

async fn two_instances(env: &[(&str, &str)]) -> Instances {
    let env: HashMap<String, String> = [("MCP_AUTH", "off"), ("MCP_LISTEN_POLL_MS", "100")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_sources(Flags::default(), &env).expect("valid config");
    instances_over(config, "server").await
}

/// Two instances of `host` ("server" or "lambda") built over `config`.
async fn instances_over(config: Config, host: &'static str) -> Instances {
    let (store, dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let blobs: Arc<dyn BlobStore> = common::local_blobs(dir.path());
    let build = || {
        app::build(
            &config,
            &common::backends(store.clone(), "sqlite", blobs.clone()),
            host,
        )
        .expect("service builds")
        .router
    };
    Instances {
        a: Instance(build()),
        b: Instance(build()),
        store,
        _dir: dir,
    }
}

fn alice() -> Principal {
    Principal::new("alice").expect("subject")
}

fn bob() -> Principal {
    Principal::new("bob").expect("subject")
}

fn as_principal(mut request: Request<Body>, principal: &Principal) -> Request<Body> {
    request.extensions_mut().insert(principal.clone());
    request
}

/// A `file_write` of `path` by `principal` through `router`.
async fn write_file(router: &Instance, principal: &Principal, path: &str) {
    let request = common::request_2026(
        "tools/call",
        json!({"name": "file_write", "arguments": {"path": path, "content": "hello"}}),
    );
    let reply = common::send(router, as_principal(request, principal)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.json()["result"]["isError"],
        json!(false),
        "{}",
        reply.body
    );
}

/// The JSON-RPC messages of an SSE body, read as they arrive.
struct SseMessages {
    body: Body,
    pending: String,
}

impl SseMessages {
    fn new(body: Body) -> Self {
        Self {
            body,
            pending: String::new(),
        }
    }

    /// The next message within `within`, or `None` when none came (or the stream ended).
    async fn next(&mut self, within: Duration) -> Option<Value> {
        self.next_event(within).await.map(|(_, message)| message)
    }

    /// The next message and its SSE event id, within `within`.
    async fn next_event(&mut self, within: Duration) -> Option<(Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let field = |name: &str| -> String {
                    event
                        .lines()
                        .filter_map(|line| line.strip_prefix(name))
                        .map(str::trim_start)
                        .collect()
                };
                let data = field("data:");
                if data.is_empty() {
                    continue;
                }
                let id = Some(field("id:")).filter(|id| !id.is_empty());
                return Some((id, serde_json::from_str(&data).expect("JSON-RPC message")));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            match frame {
                Ok(Some(Ok(frame))) => {
                    if let Ok(bytes) = frame.into_data() {
                        self.pending.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                _ => return None,
            }
        }
    }

    /// Whether the stream ends within `within` without another message.
    async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Ok(None) => return self.pending.trim().is_empty(),
                Ok(Some(Ok(frame))) => {
                    if let Ok(bytes) = frame.into_data() {
                        self.pending.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    }

    /// The last event id seen within `within`, as an SSE client keeps it (on an idle stream:
    /// the opening events' ids).
    async fn last_event_id(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = None;
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let id: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("id:"))
                    .collect();
                if !id.trim().is_empty() {
                    last = Some(id.trim().to_owned());
                }
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(bytes) = frame.into_data() {
                        self.pending.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                _ => return last,
            }
        }
    }

    /// The methods of every message that arrives within `within`.
    async fn methods_within(&mut self, within: Duration) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        while let Some(message) = self.next(within).await {
            seen.push((
                message["method"]
                    .as_str()
                    .unwrap_or("(response)")
                    .to_owned(),
                message["params"].clone(),
            ));
        }
        seen
    }
}

/// Opens a listen stream for `principal` on `router` and returns its acknowledged filter
/// and the stream.
async fn listen(
    router: &Instance,
    principal: &Principal,
    notifications: Value,
) -> (Value, SseMessages) {
    let request = common::request_2026(
        "subscriptions/listen",
        json!({ "notifications": notifications }),
    );
    let response = router
        .0
        .clone()
        .oneshot(as_principal(request, principal))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut messages = SseMessages::new(response.into_body());
    let ack = messages.next(DELIVERY_BOUND).await.expect("acknowledgment");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    (ack["params"]["notifications"].clone(), messages)
}

#[tokio::test]
async fn a_stream_on_one_instance_hears_of_a_write_through_another() {
    let instances = two_instances(&[]).await;
    let (accepted, mut stream) = listen(
        &instances.a,
        &alice(),
        json!({
            "resourcesListChanged": true,
            "toolsListChanged": true,
            "promptsListChanged": false,
            "rootsListChanged": true,
            "resourceSubscriptions": ["files:///notes/a.md", "https://example.com/x", "files:///../x"]
        }),
    )
    .await;
    // Only what the product can ever send is acknowledged: its files' list and its files.
    // Kinds it never sends (tools, prompts), kinds the protocol does not know, and URIs that
    // name no file of the caller's are left out, not refused.
    assert_eq!(
        accepted,
        json!({"resourcesListChanged": true, "resourceSubscriptions": ["files:///notes/a.md"]})
    );

    // Bob's write of the same path is his own: nothing reaches Alice's stream.
    write_file(&instances.b, &bob(), "notes/a.md").await;
    assert_eq!(stream.next(Duration::from_millis(500)).await, None);

    write_file(&instances.b, &alice(), "notes/a.md").await;
    write_file(&instances.b, &alice(), "notes/other.md").await;
    let seen = stream.methods_within(DELIVERY_BOUND).await;
    let methods: Vec<&str> = seen.iter().map(|(method, _)| method.as_str()).collect();
    // notes/other.md changes the list but was not subscribed to.
    assert_eq!(
        methods,
        [
            "notifications/resources/list_changed",
            "notifications/resources/updated",
            "notifications/resources/list_changed",
        ],
        "{seen:?}"
    );
    assert_eq!(seen[1].1["uri"], "files:///notes/a.md");
    let subscription = &seen[0].1["_meta"]["io.modelcontextprotocol/subscriptionId"];
    assert_eq!(subscription, &json!(1), "{seen:?}");
}

#[tokio::test]
async fn a_bounded_stream_ends_with_its_result_so_the_client_listens_again() {
    // As on Lambda, where the bound sits a little inside MCP_STREAM_MAX_SECS.
    let mut config = Config::from_sources(
        Flags::default(),
        &HashMap::from([("MCP_AUTH".to_owned(), "off".to_owned())]),
    )
    .expect("valid config");
    config.listen = Some(ListenSettings {
        poll: Duration::from_millis(100),
        limit: Some(Duration::from_millis(400)),
    });
    let instances = instances_over(config, "server").await;
    let (_, mut stream) = listen(
        &instances.a,
        &alice(),
        json!({"resourcesListChanged": true}),
    )
    .await;
    let last = stream.next(DELIVERY_BOUND).await.expect("final result");
    assert_eq!(last["id"], json!(1), "{last}");
    assert_eq!(last["result"]["resultType"], "complete", "{last}");
    assert_eq!(stream.next(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn legacy_subscriptions_deliver_on_the_sessions_get_stream() {
    let instances = two_instances(&[]).await;
    let router = &instances.a;
    let session = open_legacy_session(router).await;
    let subscribe = legacy_post(
        json!({"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"files:///notes/a.md"}}),
        &session,
    );
    let reply = common::send(router, subscribe).await;
    assert_eq!(reply.json()["result"], json!({}), "{}", reply.body);

    let get = Request::get("/mcp")
        .header("host", "localhost:8080")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Body::empty())
        .expect("request");
    let response = router.0.clone().oneshot(get).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseMessages::new(response.into_body());

    // Written through the other instance, by the same (anonymous) caller.
    write_file(&instances.b, &Principal::anonymous(), "notes/a.md").await;
    let seen = stream.methods_within(DELIVERY_BOUND).await;
    let methods: Vec<&str> = seen.iter().map(|(method, _)| method.as_str()).collect();
    assert!(
        methods.contains(&"notifications/resources/updated"),
        "{seen:?}"
    );
    let updated = seen
        .iter()
        .find(|(method, _)| method == "notifications/resources/updated")
        .map(|(_, params)| params["uri"].clone());
    assert_eq!(updated, Some(json!("files:///notes/a.md")));
}

#[tokio::test]
async fn long_streams_off_declines_listen_and_subscribe_with_exact_errors() {
    let instances = two_instances(&[("MCP_LONG_STREAMS", "off")]).await;
    let request = common::request_2026(
        "subscriptions/listen",
        json!({"notifications": {"resourcesListChanged": true}}),
    );
    let reply = common::send(&instances.a, request).await;
    assert_eq!(reply.error_code(), -32601, "{}", reply.body);

    let session = open_legacy_session(&instances.a).await;
    let subscribe = legacy_post(
        json!({"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"files:///a"}}),
        &session,
    );
    let reply = common::send(&instances.a, subscribe).await;
    assert_eq!(reply.error_code(), -32600, "{}", reply.body);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("resources/subscribe is not available here"),
        "{}",
        reply.body
    );
    // Writes still work and record nothing for listeners that cannot exist.
    write_file(&instances.b, &alice(), "notes/a.md").await;
    let feed = mcp_function::store::feed::head(instances.store.as_ref(), &alice()).await;
    assert_eq!(feed.expect("head"), 0);
}

#[tokio::test]
async fn a_malformed_subscription_uri_is_refused_and_starts_nothing() {
    let instances = two_instances(&[]).await;
    let session = open_legacy_session(&instances.a).await;
    let subscribe = legacy_post(
        json!({"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"files:///../etc/passwd"}}),
        &session,
    );
    let reply = common::send(&instances.a, subscribe).await;
    assert_eq!(reply.error_code(), -32602, "{}", reply.body);
}

async fn open_legacy_session(router: &Instance) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}});
    let request = Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("content-type", "application/json")
        .header("accept", common::ACCEPT_BOTH)
        .body(Body::from(init.to_string()))
        .expect("request");
    let reply = common::send(router, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let capabilities = &reply.json()["result"]["capabilities"]["resources"];
    assert_eq!(
        capabilities,
        &json!({"subscribe": true, "listChanged": true})
    );
    let session = reply.headers["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let initialized = legacy_post(
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        &session,
    );
    assert_eq!(
        common::send(router, initialized).await.status,
        StatusCode::ACCEPTED
    );
    session
}

fn legacy_post(body: Value, session: &str) -> Request<Body> {
    Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("content-type", "application/json")
        .header("accept", common::ACCEPT_BOTH)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// A legacy `GET /mcp` for `session`, resuming after `last_event_id` when given.
fn legacy_get(session: &str, last_event_id: Option<&str>) -> Request<Body> {
    let mut get = Request::get("/mcp")
        .header("host", "localhost:8080")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(id) = last_event_id {
        get = get.header("last-event-id", id);
    }
    get.body(Body::empty()).expect("request")
}

/// Two instances as on Lambda with long-lived streams on: no instance keeps a session's
/// worker between requests.
async fn lambda_instances() -> Instances {
    let env = HashMap::from([
        ("MCP_AUTH".to_owned(), "off".to_owned()),
        ("MCP_LISTEN_POLL_MS".to_owned(), "100".to_owned()),
    ]);
    let config = Config::from_sources(Flags::default(), &env).expect("valid config");
    instances_over(config, "lambda").await
}

async fn open_get_stream(router: &Instance, request: Request<Body>) -> SseMessages {
    let response = router.0.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseMessages::new(response.into_body())
}

#[tokio::test]
async fn on_lambda_the_get_stream_follows_the_feed_and_resumes_after_its_last_event_id() {
    // As on Lambda with long-lived streams on: no instance keeps the session's worker
    // between requests, so the GET stream is fed from the caller's change feed.
    let instances = lambda_instances().await;
    let session = open_legacy_session(&instances.a).await;

    // A client that leaves before any change reconnects from the opening event's id and
    // still hears of what happened while it was away.
    let mut quiet = open_get_stream(&instances.a, legacy_get(&session, None)).await;
    let opening = quiet
        .last_event_id(Duration::from_millis(300))
        .await
        .expect("an opening event with an id");
    drop(quiet);
    write_file(&instances.b, &Principal::anonymous(), "get/zero.md").await;
    let mut back = open_get_stream(&instances.b, legacy_get(&session, Some(&opening))).await;
    let missed = back
        .next(DELIVERY_BOUND)
        .await
        .expect("the change made while away");
    assert_eq!(
        missed["method"], "notifications/resources/list_changed",
        "{missed}"
    );
    drop(back);

    let mut stream = open_get_stream(&instances.a, legacy_get(&session, None)).await;
    write_file(&instances.b, &Principal::anonymous(), "get/one.md").await;
    let (first_id, first) = stream
        .next_event(DELIVERY_BOUND)
        .await
        .expect("a notification");
    assert_eq!(
        first["method"], "notifications/resources/list_changed",
        "{first}"
    );
    let first_id = first_id.expect("an event id");

    // The client leaves; a file is written meanwhile; it comes back with its Last-Event-ID.
    drop(stream);
    write_file(&instances.b, &Principal::anonymous(), "get/two.md").await;
    let mut resumed = open_get_stream(&instances.b, legacy_get(&session, Some(&first_id))).await;
    let (second_id, second) = resumed
        .next_event(DELIVERY_BOUND)
        .await
        .expect("the missed one");
    assert_eq!(
        second["method"], "notifications/resources/list_changed",
        "{second}"
    );
    assert_ne!(second_id.as_deref(), Some(first_id.as_str()));
    assert_eq!(
        resumed.next(Duration::from_millis(300)).await,
        None,
        "nothing twice"
    );

    // An id issued on another session's stream resumes nothing: the stream ends at once.
    let other = open_legacy_session(&instances.a).await;
    let mut foreign = open_get_stream(&instances.a, legacy_get(&other, Some(&first_id))).await;
    assert!(foreign.ends_within(Duration::from_secs(1)).await);
    let mut malformed = open_get_stream(&instances.a, legacy_get(&other, Some("not-an-id"))).await;
    assert!(malformed.ends_within(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn on_lambda_legacy_subscriptions_live_in_the_store_and_reach_the_get_stream() {
    let instances = lambda_instances().await;
    let session = open_legacy_session(&instances.a).await;
    let subscribe = |id: u32, method: &str, uri: &str| {
        legacy_post(
            json!({"jsonrpc":"2.0","id":id,"method":method,"params":{"uri":uri}}),
            &session,
        )
    };

    // Subscribed through A; the stream is held by B; the files are written through A.
    let reply = common::send(
        &instances.a,
        subscribe(2, "resources/subscribe", "files:///watched.md"),
    )
    .await;
    assert_eq!(reply.json()["result"], json!({}), "{}", reply.body);
    let mut stream = open_get_stream(&instances.b, legacy_get(&session, None)).await;
    write_file(&instances.a, &Principal::anonymous(), "other.md").await;
    write_file(&instances.a, &Principal::anonymous(), "watched.md").await;
    let methods = stream.methods_within(DELIVERY_BOUND).await;
    let updated: Vec<&Value> = methods
        .iter()
        .filter(|(method, _)| method == "notifications/resources/updated")
        .map(|(_, params)| &params["uri"])
        .collect();
    assert_eq!(updated, [&json!("files:///watched.md")], "{methods:?}");

    // Unsubscribed through B: a later write updates nothing.
    let reply = common::send(
        &instances.b,
        subscribe(3, "resources/unsubscribe", "files:///watched.md"),
    )
    .await;
    assert_eq!(reply.json()["result"], json!({}), "{}", reply.body);
    write_file(&instances.a, &Principal::anonymous(), "watched.md").await;
    let methods = stream.methods_within(DELIVERY_BOUND).await;
    assert!(
        methods
            .iter()
            .all(|(method, _)| method != "notifications/resources/updated"),
        "{methods:?}"
    );
    assert_eq!(
        instances
            .store
            .load_session_subscriptions(&session)
            .await
            .expect("store"),
        Some(Default::default())
    );
}
