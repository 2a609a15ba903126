//! The caller's files through the HTTP service (`oneshot`, no socket): the
//! `file_write` tool, `resources/list|read` and `resources/templates/list` on
//! both wires, pagination, isolation and every refusal with its exact message.

use crate::common;

use common::{ACCEPT_BOTH, Reply, send};

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use mcp_function::{
    app,
    blob::{BlobStore, local::LocalBlobs},
    config::{Config, Flags},
    principal::Principal,
    store::{Store, cursor::CursorCodec},
};
use serde_json::{Value, json};
use tower::ServiceExt;

struct TestApp {
    router: Router,
    blobs: Arc<dyn BlobStore>,
    _dir: tempfile::TempDir,
}

impl AsRef<Router> for TestApp {
    fn as_ref(&self) -> &Router {
        &self.router
    }
}

/// The service over `env` with authentication off: requests either act as `anonymous` or carry
/// a principal a host would have set (tests/auth_http.rs covers tokens).
async fn test_app_with(env: &[(&str, &str)], blobs: Option<Arc<dyn BlobStore>>) -> TestApp {
    let env: HashMap<String, String> = [("MCP_AUTH", "off")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_sources(Flags::default(), &env).expect("valid config");
    let (store, dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let blobs = blobs.unwrap_or_else(|| common::local_blobs(dir.path()));
    let router = app::build(
        &config,
        &common::backends(store, "sqlite", blobs.clone()),
        "server",
    )
    .expect("service builds")
    .router;
    TestApp {
        router,
        blobs,
        _dir: dir,
    }
}

async fn test_app() -> TestApp {
    test_app_with(&[], None).await
}

impl Reply {
    fn result(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        let json = self.json();
        assert!(json.get("error").is_none(), "unexpected error: {json}");
        json["result"].clone()
    }
    fn error(&self) -> (i64, String) {
        let json = self.json();
        (
            json["error"]["code"]
                .as_i64()
                .unwrap_or_else(|| panic!("no error code: {}", self.body)),
            json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

/// A 2026-07-28 (stateless) request, acting for `principal` when given.
fn request_2026(method: &str, params: Value, principal: Option<&Principal>) -> Request<Body> {
    let mut request = common::request_2026(method, params);
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal.clone());
    }
    request
}

async fn rpc(app: &TestApp, method: &str, params: Value) -> Reply {
    send(app, request_2026(method, params, None)).await
}

async fn rpc_as(app: &TestApp, principal: &Principal, method: &str, params: Value) -> Reply {
    send(app, request_2026(method, params, Some(principal))).await
}

async fn call(app: &TestApp, tool: &str, arguments: Value) -> Value {
    rpc(
        app,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await
    .result()
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// A legacy (2025-11-25) session's request; rmcp keeps -32002 for these peers.
async fn legacy_session(app: &TestApp) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}});
    let response = app
        .router
        .clone()
        .oneshot(legacy_request(init, None))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let init: Value = serde_json::from_slice(&body).expect("JSON");
    assert!(
        init["result"]["capabilities"]["resources"].is_object(),
        "resources capability: {init}"
    );
    let ack = send(
        app,
        legacy_request(
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            Some(&id),
        ),
    )
    .await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    id
}

fn legacy_request(body: Value, session: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH);
    if let Some(session) = session {
        builder = builder
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25");
    }
    builder.body(Body::from(body.to_string())).expect("request")
}

async fn legacy_read(app: &TestApp, session: &str, uri: &str) -> Reply {
    send(
        app,
        legacy_request(
            json!({"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":uri}}),
            Some(session),
        ),
    )
    .await
}

fn bob() -> Principal {
    Principal::new("bob").expect("subject")
}

#[tokio::test]
async fn written_files_are_listed_and_read_back_exactly() {
    let app = test_app().await;
    let text = "# Hello\nwörld ✓\n";
    let written = call(
        &app,
        "file_write",
        json!({"path": "notes/today.md", "content": text}),
    )
    .await;
    assert_ne!(written["isError"], true, "{written}");
    assert_eq!(
        written["structuredContent"],
        json!({
            "uri": "files:///notes/today.md",
            "path": "notes/today.md",
            "size": text.len(),
            "contentType": "text/markdown",
        })
    );

    let pixels: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let written = call(
        &app,
        "file_write",
        json!({"path": "img/pixels.png", "content": STANDARD.encode(&pixels), "encoding": "base64", "content_type": "image/png"}),
    )
    .await;
    assert_eq!(written["structuredContent"]["size"], 512);
    assert_eq!(written["structuredContent"]["contentType"], "image/png");
    let json_file = call(
        &app,
        "file_write",
        json!({"path": "data/a b#1.json", "content": "{\"a\":1}"}),
    )
    .await;
    assert_eq!(
        json_file["structuredContent"]["uri"],
        "files:///data/a%20b%231.json"
    );
    // Text-typed bytes that are not UTF-8 come back as a blob, unchanged.
    let latin1 = [0x63, 0x61, 0x66, 0xE9];
    call(
        &app,
        "file_write",
        json!({"path": "latin1.txt", "content": STANDARD.encode(latin1), "encoding": "base64"}),
    )
    .await;

    let listed = rpc(&app, "resources/list", json!({})).await.result();
    assert_eq!(
        listed["resources"],
        json!([
            {"uri": "files:///data/a%20b%231.json", "name": "data/a b#1.json", "mimeType": "application/json", "size": 7},
            {"uri": "files:///img/pixels.png", "name": "img/pixels.png", "mimeType": "image/png", "size": 512},
            {"uri": "files:///latin1.txt", "name": "latin1.txt", "mimeType": "text/plain", "size": 4},
            {"uri": "files:///notes/today.md", "name": "notes/today.md", "mimeType": "text/markdown", "size": text.len()},
        ])
    );
    assert!(listed.get("nextCursor").is_none(), "{listed}");
    assert_eq!(listed["cacheScope"], "private");

    let read = rpc(
        &app,
        "resources/read",
        json!({"uri": "files:///notes/today.md"}),
    )
    .await
    .result();
    assert_eq!(
        read["contents"],
        json!([{"uri": "files:///notes/today.md", "mimeType": "text/markdown", "text": text}])
    );
    let read = rpc(
        &app,
        "resources/read",
        json!({"uri": "files:///img/pixels.png"}),
    )
    .await
    .result();
    let contents = &read["contents"][0];
    assert_eq!(contents["mimeType"], "image/png");
    assert!(contents.get("text").is_none());
    let blob = STANDARD
        .decode(contents["blob"].as_str().expect("blob"))
        .expect("base64");
    assert_eq!(blob, pixels);
    let read = rpc(
        &app,
        "resources/read",
        json!({"uri": "files:///data/a%20b%231.json"}),
    )
    .await
    .result();
    assert_eq!(read["contents"][0]["text"], "{\"a\":1}");
    let read = rpc(
        &app,
        "resources/read",
        json!({"uri": "files:///latin1.txt"}),
    )
    .await
    .result();
    assert_eq!(read["contents"][0]["mimeType"], "text/plain");
    assert_eq!(read["contents"][0]["blob"], STANDARD.encode(latin1));
}

#[tokio::test]
async fn the_file_template_and_capability_are_advertised() {
    let app = test_app().await;
    let templates = rpc(&app, "resources/templates/list", json!({}))
        .await
        .result();
    let list = templates["resourceTemplates"]
        .as_array()
        .expect("templates");
    assert_eq!(list.len(), 1, "{templates}");
    assert_eq!(list[0]["uriTemplate"], "files:///{+path}");
    assert_eq!(list[0]["name"], "file");
    assert!(
        list[0]["description"]
            .as_str()
            .is_some_and(|d| d.contains("file_write")),
        "{templates}"
    );
    legacy_session(&app).await;
    let tools = rpc(&app, "tools/list", json!({})).await.result();
    let file_write = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|tool| tool["name"] == "file_write")
        .expect("file_write is listed")
        .clone();
    assert_eq!(
        file_write["annotations"]["readOnlyHint"], false,
        "{file_write}"
    );
    assert_eq!(file_write["annotations"]["idempotentHint"], true);
}

#[tokio::test]
async fn resources_page_with_sealed_cursors() {
    let app = test_app().await;
    let anonymous = Principal::anonymous();
    let mut expected = Vec::new();
    for index in 0..120 {
        let key = format!("bulk/{index:03}.txt");
        app.blobs
            .put(&anonymous, &key, Bytes::from(key.clone()), "text/plain")
            .await
            .expect("put");
        expected.push(format!("files:///{key}"));
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(cursor) => json!({"cursor": cursor}),
            None => json!({}),
        };
        let page = rpc(&app, "resources/list", params).await.result();
        let resources = page["resources"].as_array().expect("resources");
        sizes.push(resources.len());
        seen.extend(
            resources
                .iter()
                .map(|r| r["uri"].as_str().expect("uri").to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(seen, expected);

    let bad = rpc(&app, "resources/list", json!({"cursor": "forged.cursor"})).await;
    assert_eq!(
        bad.error(),
        (
            -32602,
            "the cursor is not valid for this listing; start again without a cursor".to_owned()
        )
    );
    // Another principal's cursor is just as invalid.
    let first = rpc(&app, "resources/list", json!({})).await.result();
    let theirs = first["nextCursor"].as_str().expect("cursor");
    let stolen = rpc_as(&app, &bob(), "resources/list", json!({"cursor": theirs})).await;
    assert_eq!(stolen.error().0, -32602);
}

#[tokio::test]
async fn bad_writes_are_refused_with_exact_messages() {
    let app = test_app_with(&[("MCP_MAX_BODY_BYTES", "8000000")], None).await;
    let cases = [
        (
            json!({"path": "../x", "content": "x"}),
            "invalid path \"../x\": it has a `.` or `..` segment; give a relative path such as notes/today.txt",
        ),
        (
            json!({"path": "/etc/passwd", "content": "x"}),
            "invalid path \"/etc/passwd\": it starts with `/`; give a relative path such as notes/today.txt",
        ),
        (
            json!({"path": "a\\b", "content": "x"}),
            "invalid path \"a\\\\b\": it contains a backslash; separate folders with `/`",
        ),
        (
            json!({"path": "bin", "content": "not base64!", "encoding": "base64"}),
            "content is not valid base64 (Invalid symbol 32, offset 3.); send standard base64 with padding, or set encoding to \"utf8\" for text",
        ),
        (
            json!({"path": "a.txt", "content": "x", "content_type": "text"}),
            "content_type \"text\" is not a media type; use type/subtype such as text/plain or application/json (optional ;parameters, at most 128 bytes), or omit it to go by the extension",
        ),
        (
            json!({"path": "big.txt", "content": "x".repeat(5 * 1024 * 1024 + 1)}),
            "file is 5242881 bytes; at most 5242880 are allowed",
        ),
    ];
    for (arguments, message) in cases {
        let result = call(&app, "file_write", arguments.clone()).await;
        assert_eq!(result["isError"], true, "{arguments}");
        assert_eq!(text_of(&result), message, "{arguments}");
    }
    let unknown_encoding = call(
        &app,
        "file_write",
        json!({"path": "x", "content": "x", "encoding": "hex"}),
    )
    .await;
    assert_eq!(unknown_encoding["isError"], true);
    assert!(
        text_of(&unknown_encoding).contains("unknown variant `hex`"),
        "{unknown_encoding}"
    );
    // None of the refused writes left anything behind.
    let listed = rpc(&app, "resources/list", json!({})).await.result();
    assert_eq!(listed["resources"], json!([]));
}

#[tokio::test]
async fn unknown_foreign_and_malformed_uris_are_told_apart() {
    let app = test_app().await;
    app.blobs
        .put(
            &bob(),
            "diary.txt",
            Bytes::from_static(b"bob's"),
            "text/plain",
        )
        .await
        .expect("put");
    let session = legacy_session(&app).await;

    for uri in [
        "files:///nope.txt",
        "files:///diary.txt",
        "test://elsewhere",
    ] {
        let reply = legacy_read(&app, &session, uri).await;
        assert_eq!(
            reply.error(),
            (-32002, format!("Resource not found: {uri}")),
            "{uri}"
        );
        assert_eq!(reply.json()["error"]["data"]["uri"], uri);
    }
    let malformed = legacy_read(&app, &session, "files:///../x").await;
    assert_eq!(
        malformed.error(),
        (
            -32602,
            "malformed file URI files:///../x: invalid path: it has a `.` or `..` segment; give a relative path such as notes/today.txt; use files:///<path> as resources/list shows it".to_owned()
        )
    );
    let bad_escape = legacy_read(&app, &session, "files:///a%zz").await;
    assert_eq!(bad_escape.error().0, -32602);

    // The 2026-07-28 wire reports not-found as -32602 (SEP-2164), still naming the URI.
    let foreign = rpc(&app, "resources/read", json!({"uri": "files:///diary.txt"})).await;
    assert_eq!(
        foreign.error(),
        (-32602, "Resource not found: files:///diary.txt".to_owned())
    );
    // Anonymous sees none of Bob's files; Bob sees and reads his own.
    let listed = rpc(&app, "resources/list", json!({})).await.result();
    assert_eq!(listed["resources"], json!([]));
    let his = rpc_as(&app, &bob(), "resources/list", json!({}))
        .await
        .result();
    assert_eq!(his["resources"][0]["uri"], "files:///diary.txt");
    let read = rpc_as(
        &app,
        &bob(),
        "resources/read",
        json!({"uri": "files:///diary.txt"}),
    )
    .await
    .result();
    assert_eq!(read["contents"][0]["text"], "bob's");
    // The same path written by the anonymous caller is a different file.
    call(
        &app,
        "file_write",
        json!({"path": "diary.txt", "content": "mine"}),
    )
    .await;
    let mine = rpc(&app, "resources/read", json!({"uri": "files:///diary.txt"}))
        .await
        .result();
    assert_eq!(mine["contents"][0]["text"], "mine");
    let his = app
        .blobs
        .get(&bob(), "diary.txt")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(his.bytes.as_ref(), b"bob's");
}

#[tokio::test]
async fn health_check_and_writes_report_a_broken_file_store() {
    let app = test_app().await;
    let health = call(&app, "health_check", json!({})).await;
    let files = &health["structuredContent"]["files"];
    assert_eq!(files["backend"], "local", "{health}");
    assert_eq!(files["reachable"], true);
    assert!(files["latencyMs"].is_number());
    assert_eq!(health["structuredContent"]["status"], "ok");

    // A root that is a file: every call fails on the backend side.
    let dir = tempfile::tempdir().expect("dir");
    let not_a_folder = dir.path().join("file");
    std::fs::write(&not_a_folder, b"x").expect("write");
    let broken: Arc<dyn BlobStore> = Arc::new(LocalBlobs::new(
        not_a_folder,
        CursorCodec::new(common::TEST_KEY),
    ));
    let app = test_app_with(&[], Some(broken)).await;
    let health = call(&app, "health_check", json!({})).await;
    let files = &health["structuredContent"]["files"];
    assert_eq!(files["reachable"], false, "{health}");
    assert_eq!(
        files["error"],
        "file store did not answer; see the server log"
    );
    assert_eq!(health["structuredContent"]["status"], "degraded");
    assert_eq!(health["structuredContent"]["store"]["reachable"], true);

    let write = call(&app, "file_write", json!({"path": "a.txt", "content": "x"})).await;
    assert_eq!(write["isError"], true);
    assert_eq!(
        text_of(&write),
        "the file store is unavailable right now; retry shortly (details are in the server log)"
    );
    let listed = rpc(&app, "resources/list", json!({})).await;
    assert_eq!(
        listed.error(),
        (
            -32603,
            "the file store is unavailable right now; retry shortly (details are in the server log)"
                .to_owned()
        )
    );
}
