//! The request and audit logs, captured in the product's JSON format from real requests,
//! and scanned for the token and the signing key.
//!
//! Alone in its test binary: tracing caches which call sites are enabled process-wide, so a
//! subscriber set for one test thread misses events while other tests run beside it.

use crate::common;

use axum::http::StatusCode;
use common::{ALL_SCOPES, TEST_KEY, bearer, request_2026, send};
use serde_json::{Value, json};

/// The service and the folder its files live in (removed when dropped).
struct Service {
    app: mcp_function::app::App,
    _dir: tempfile::TempDir,
}

impl AsRef<axum::Router> for Service {
    fn as_ref(&self) -> &axum::Router {
        &self.app.router
    }
}

fn tool(name: &str, arguments: Value) -> axum::http::Request<axum::body::Body> {
    request_2026("tools/call", json!({"name": name, "arguments": arguments}))
}

// The default (current-thread) test runtime runs every task on this thread, so the
// thread's default subscriber sees rmcp's spawned tasks too.
#[tokio::test]
async fn logs_name_the_request_and_the_caller_and_never_a_secret() {
    let (captured, _guard) = common::capture_logs("debug");
    let (app, dir) = common::server_app(&[]).await;
    let service = Service { app, _dir: dir };
    let token = bearer("alice", ALL_SCOPES);
    let mut call = tool(
        "state_set",
        json!({"key": "notes/today", "value": {"n": 1}}),
    );
    call.headers_mut()
        .insert("authorization", token.parse().expect("header"));
    call.headers_mut()
        .insert("x-request-id", "client-chosen-42".parse().expect("header"));
    call.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("header"),
    );
    let reply = send(&service, call).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["x-request-id"], "client-chosen-42");
    let mut file = tool("file_write", json!({"path": "a.txt", "content": "hello"}));
    file.headers_mut()
        .insert("authorization", token.parse().expect("header"));
    assert_eq!(send(&service, file).await.status, StatusCode::OK);
    let mut bad = tool("echo", json!({"message": "x"}));
    let tampered = format!("{token}x");
    bad.headers_mut()
        .insert("authorization", tampered.parse().expect("header"));
    let refused = send(&service, bad).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let generated = refused.headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(
        uuid::Uuid::parse_str(generated).map(|_| ()),
        Ok(()),
        "a fresh UUID"
    );

    let lines = captured.lines();
    let request_line = lines
        .iter()
        .find(|line| line["target"] == "mcp::request" && line["tool"] == "state_set")
        .unwrap_or_else(|| panic!("no request line in {lines:#?}"));
    assert_eq!(request_line["principal"], "alice");
    assert_eq!(request_line["method"], "tools/call");
    assert_eq!(request_line["protocol_version"], "2026-07-28");
    assert_eq!(request_line["status"], 200);
    assert_eq!(request_line["outcome"], "ok");
    assert!(request_line["latency_ms"].as_f64().is_some());
    assert_eq!(request_line["span"]["request_id"], "client-chosen-42");
    assert_eq!(
        request_line["span"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let refused_line = lines
        .iter()
        .find(|line| line["target"] == "mcp::request" && line["status"] == 401)
        .expect("the refusal is logged");
    assert_eq!(refused_line["outcome"], "unauthorized");
    assert_eq!(refused_line["principal"], "");

    let audit: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "audit")
        .collect();
    let action = |name: &str| {
        audit
            .iter()
            .find(|line| line["action"] == name)
            .unwrap_or_else(|| panic!("no audit line {name}: {audit:?}"))
    };
    let put = action("state.put");
    assert_eq!(
        (
            &put["principal"],
            &put["key"],
            &put["result"],
            &put["version"]
        ),
        (
            &json!("alice"),
            &json!("notes/today"),
            &json!("ok"),
            &json!(1)
        )
    );
    assert_eq!(
        put["span"]["request_id"], "client-chosen-42",
        "audit lines carry the request id"
    );
    let file_put = action("file.put");
    assert_eq!(
        (&file_put["key"], &file_put["size"]),
        (&json!("a.txt"), &json!(5))
    );
    let tool_calls: Vec<_> = audit
        .iter()
        .filter(|line| line["action"] == "tool.call")
        .collect();
    assert_eq!(
        tool_calls.len(),
        2,
        "one per tool call, none for the refused one"
    );

    let text = captured.text();
    let raw_token = token.trim_start_matches("Bearer ");
    let signature = raw_token.rsplit('.').next().expect("signature");
    for secret in [
        raw_token,
        signature,
        std::str::from_utf8(TEST_KEY).expect("utf8"),
    ] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
}
