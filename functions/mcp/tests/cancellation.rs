//! A client that goes away cancels its call: the tool stops and the log says so.
//!
//! Both hosts drop the service's response when the client is gone (hyper when the
//! connection closes, the Lambda runtime when the response stream cannot be written), so
//! dropping the `oneshot` future is exactly what a disconnect does to the service. The
//! call is a `file_write` into a file store that never finishes a write, so only the
//! cancellation can end it.
//!
//! Alone in its test binary, like `logs.rs`: it captures the process's log events.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use bytes::Bytes;
use common::{request_2026, with_token};
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

#[tokio::test]
async fn a_client_that_goes_away_stops_its_tool_call() {
    let (captured, _guard) = common::capture_logs("info");
    let key = std::str::from_utf8(common::TEST_KEY).expect("utf8 key");
    let env = [("MCP_SIGNING_KEY".to_owned(), key.to_owned())].into();
    let config = Config::from_sources(Default::default(), &env).expect("valid config");
    let (store, _dir) = common::sqlite_store().await;
    let files = Arc::new(StuckWrites::default());
    let backends = common::backends(Arc::new(store), "sqlite", files.clone());
    let app = mcp_function::app::build(&config, &backends, "server").expect("service builds");

    let call = with_token(
        request_2026(
            "tools/call",
            json!({"name": "file_write", "arguments": {"path": "big.bin", "content": "x"}}),
        ),
        "alice",
    );
    let answer = app.router.clone().oneshot(call);
    tokio::select! {
        _ = answer => panic!("the write never finishes, so neither can the call"),
        () = files.started.notified() => {}
    }
    // The answer was dropped mid-call, as a disconnect drops it.
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !files.dropped.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        stopped.is_ok(),
        "the tool kept running after its client left"
    );

    let logs = captured.text();
    let lines = captured.lines();
    let cancelled = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("tool call cancelled"))
        })
        .unwrap_or_else(|| panic!("no cancellation line in {logs}"));
    assert_eq!(
        (&cancelled["tool"], &cancelled["level"]),
        (&json!("file_write"), &json!("WARN"))
    );
    let audit = lines
        .iter()
        .find(|line| line["target"] == "audit" && line["action"] == "tool.call")
        .unwrap_or_else(|| panic!("no audit line in {logs}"));
    assert_eq!(
        (&audit["principal"], &audit["result"]),
        (&json!("alice"), &json!("cancelled"))
    );
}
