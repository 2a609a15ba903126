//! A client that goes away cancels its call, on both wires: the tool stops and the log says so.
//!
//! Both hosts drop the service's response when the client is gone (hyper when the
//! connection closes, the Lambda runtime when the response stream cannot be written), so
//! dropping the `oneshot` future is exactly what a disconnect does to the service. The
//! call is a `file_write` into a file store that never finishes a write, so only the
//! cancellation can end it. rmcp cancels a 2026-07-28 request whose stream goes away; a
//! legacy session request is cancelled by the session gate.
//!
//! Alone in its test binary, like `logs.rs`: it captures the process's log events.

use crate::common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use bytes::Bytes;
use common::{post, request_2026, with_token};
use mcp_function::{
    blob::{Blob, BlobError, BlobMeta, BlobPage, BlobStore},
    config::Config,
    principal::Principal,
};
use serde_json::json;
use tokio::sync::Notify;
use tower::ServiceExt;

/// A file store whose writes start and then never finish; it notes when a write is dropped.
#[derive(Default)]
struct StuckWrites {
    started: Notify,
    dropped: AtomicBool,
}

/// Sets the flag when the write holding it is dropped.
struct DroppedFlag<'a>(&'a AtomicBool);

impl Drop for DroppedFlag<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl BlobStore for StuckWrites {
    async fn put(
        &self,
        _principal: &Principal,
        _key: &str,
        _bytes: Bytes,
        _content_type: &str,
    ) -> Result<BlobMeta, BlobError> {
        let _flag = DroppedFlag(&self.dropped);
        self.started.notify_one();
        std::future::pending().await
    }

    async fn get(&self, _principal: &Principal, _key: &str) -> Result<Option<Blob>, BlobError> {
        Ok(None)
    }

    async fn list(
        &self,
        _principal: &Principal,
        _cursor: Option<&str>,
        _limit: u32,
    ) -> Result<BlobPage, BlobError> {
        Ok(BlobPage {
            items: Vec::new(),
            next_cursor: None,
        })
    }

    async fn ping(&self) -> Result<(), BlobError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "stuck"
    }
}

/// Sends `call` and drops its answer as soon as the file store has started the write, then
/// waits (at most 5 s) for the write to be dropped: true when the tool was stopped.
async fn leave_mid_call(router: &axum::Router, files: &StuckWrites, call: Request) -> bool {
    files.dropped.store(false, Ordering::SeqCst);
    let answer = router.clone().oneshot(call);
    tokio::select! {
        _ = answer => panic!("the write never finishes, so neither can the call"),
        () = files.started.notified() => {}
    }
    // The answer was dropped mid-call, as a disconnect drops it.
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !files.dropped.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .is_ok()
}

type Request = axum::http::Request<axum::body::Body>;

/// Opens a 2025-11-25 session for alice; returns its id.
async fn open_session(router: &axum::Router) -> String {
    let initialize = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}});
    let opened = router
        .clone()
        .oneshot(with_token(post(initialize.to_string(), &[]), "alice"))
        .await
        .expect("infallible");
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let initialized = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let acked = router
        .clone()
        .oneshot(with_token(post(initialized.to_string(), &headers), "alice"))
        .await
        .expect("infallible");
    assert_eq!(acked.status(), 202);
    session
}

#[tokio::test]
async fn a_client_that_goes_away_stops_its_tool_call_on_either_wire() {
    let (captured, _guard) = common::capture_logs("info");
    let key = std::str::from_utf8(common::TEST_KEY).expect("utf8 key");
    let env = [("MCP_SIGNING_KEY".to_owned(), key.to_owned())].into();
    let config = Config::from_sources(Default::default(), &env).expect("valid config");
    let (store, _dir) = common::sqlite_store().await;
    let files = Arc::new(StuckWrites::default());
    let backends = common::backends(Arc::new(store), "sqlite", files.clone());
    let app = mcp_function::app::build(&config, &backends, "server").expect("service builds");
    let arguments = json!({"path": "big.bin", "content": "x"});

    let stateless = with_token(
        request_2026(
            "tools/call",
            json!({"name": "file_write", "arguments": arguments}),
        ),
        "alice",
    );
    assert!(
        leave_mid_call(&app.router, &files, stateless).await,
        "the 2026 call kept running after its client left"
    );

    let session = open_session(&app.router).await;
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"file_write","arguments":arguments}});
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let in_session = with_token(post(call.to_string(), &headers), "alice");
    assert!(
        leave_mid_call(&app.router, &files, in_session).await,
        "the session call kept running after its client left"
    );

    let logs = captured.text();
    let lines = captured.lines();
    let cancelled: Vec<_> = lines
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("tool call cancelled"))
        })
        .collect();
    assert_eq!(cancelled.len(), 2, "one line per call: {logs}");
    for line in cancelled {
        assert_eq!(
            (&line["tool"], &line["level"]),
            (&json!("file_write"), &json!("WARN"))
        );
    }
    let audits: Vec<_> = lines
        .iter()
        .filter(|line| line["target"] == "audit" && line["action"] == "tool.call")
        .map(|line| (line["principal"].clone(), line["result"].clone()))
        .collect();
    assert_eq!(
        audits,
        [
            (json!("alice"), json!("cancelled")),
            (json!("alice"), json!("cancelled"))
        ],
        "{logs}"
    );
}
