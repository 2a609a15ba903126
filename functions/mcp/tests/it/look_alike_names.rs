//! Names that display alike, through the HTTP service (`oneshot`): file paths and state keys
//! holding bidirectional text controls, invisible characters or look-alike dots are refused
//! with their reason and write nothing; the composed and decomposed spellings of one name are
//! one file and one document. Another caller's file and document of the same name are never
//! touched.

use crate::common;

use common::{Reply, send};

use std::{collections::HashMap, sync::Arc};

use axum::{Router, http::StatusCode};
use mcp_function::{
    app,
    config::{Config, Flags},
    principal::Principal,
    store::Store,
};
use serde_json::{Value, json};

struct TestApp {
    router: Router,
    _dir: tempfile::TempDir,
}

impl AsRef<Router> for TestApp {
    fn as_ref(&self) -> &Router {
        &self.router
    }
}

/// The service over SQLite and local files, authentication off: each request carries the
/// principal a host would have set.
async fn test_app() -> TestApp {
    let env: HashMap<String, String> = HashMap::from([("MCP_AUTH".into(), "off".into())]);
    let config = Config::from_sources(Flags::default(), &env).expect("valid config");
    let (store, dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let router = app::build(
        &config,
        &common::backends(store, "sqlite", common::local_blobs(dir.path())),
        "server",
    )
    .expect("service builds")
    .router;
    TestApp { router, _dir: dir }
}

fn alice() -> Principal {
    Principal::new("alice").expect("subject")
}

fn bob() -> Principal {
    Principal::new("bob").expect("subject")
}

async fn rpc_as(app: &TestApp, principal: &Principal, method: &str, params: Value) -> Reply {
    let mut request = common::request_2026(method, params);
    request.extensions_mut().insert(principal.clone());
    send(app, request).await
}

/// A tool call's result (a tool error is a result with `isError`).
async fn call(app: &TestApp, principal: &Principal, tool: &str, arguments: Value) -> Value {
    let reply = rpc_as(
        app,
        principal,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["result"].clone()
}

/// The text of a refused tool call.
async fn refusal(app: &TestApp, principal: &Principal, tool: &str, arguments: Value) -> String {
    let result = call(app, principal, tool, arguments).await;
    assert_eq!(result["isError"], true, "{result}");
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn read_text(app: &TestApp, principal: &Principal, uri: &str) -> Value {
    let reply = rpc_as(app, principal, "resources/read", json!({"uri": uri})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["result"]["contents"][0]["text"].clone()
}

async fn listed_names(app: &TestApp, principal: &Principal) -> Vec<String> {
    let reply = rpc_as(app, principal, "resources/list", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()["result"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|resource| resource["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const LOOKS_LIKE_A_DOT: &str =
    "which looks like `.` but is another character; use `.` itself or a different character";

#[tokio::test]
async fn paths_with_bidi_controls_or_look_alike_dots_are_refused_and_write_nothing() {
    let app = test_app().await;
    for path in ["a.txt", "x", "etc/passwd"] {
        let written = call(
            &app,
            &bob(),
            "file_write",
            json!({"path": path, "content": "bob's", "content_type": "text/plain"}),
        )
        .await;
        assert_ne!(written["isError"], true, "{written}");
    }

    let cases = [
        (
            "a\u{202E}txt.exe",
            "invalid path \"a\\u{202e}txt.exe\": it contains U+202E, a bidirectional text \
             control that can make a name display differently from how it is stored; remove it"
                .to_owned(),
        ),
        (
            "..\u{2024}/x",
            format!("invalid path \"..\u{2024}/x\": it contains U+2024, {LOOKS_LIKE_A_DOT}"),
        ),
        (
            "\u{FF0E}\u{FF0E}/etc",
            format!(
                "invalid path \"\u{FF0E}\u{FF0E}/etc\": it contains U+FF0E, {LOOKS_LIKE_A_DOT}"
            ),
        ),
        (
            "notes/\u{200B}todo.txt",
            "invalid path \"notes/\\u{200b}todo.txt\": it contains U+200B, an invisible \
             formatting character; remove it"
                .to_owned(),
        ),
    ];
    for (path, message) in &cases {
        let refused = refusal(
            &app,
            &alice(),
            "file_write",
            json!({"path": path, "content": "alice's"}),
        )
        .await;
        assert_eq!(&refused, message, "{path:?}");
        // The export goes through the same check.
        let refused = refusal(&app, &alice(), "state_export", json!({"path": path})).await;
        assert_eq!(&refused, message, "{path:?}");
    }

    // Reading by URI follows the same rule.
    let reply = rpc_as(
        &app,
        &alice(),
        "resources/read",
        json!({"uri": "files:///..%E2%80%A4/x"}),
    )
    .await;
    assert_eq!(reply.json()["error"]["code"], -32602, "{}", reply.body);
    assert_eq!(
        reply.json()["error"]["message"],
        format!(
            "malformed file URI files:///..%E2%80%A4/x: invalid path: it contains U+2024, \
             {LOOKS_LIKE_A_DOT}; use files:///<path> as resources/list shows it"
        )
    );

    // Nothing was written for alice; bob's files are as he left them.
    assert_eq!(listed_names(&app, &alice()).await, Vec::<String>::new());
    assert_eq!(
        listed_names(&app, &bob()).await,
        ["a.txt", "etc/passwd", "x"]
    );
    for uri in ["files:///a.txt", "files:///x", "files:///etc/passwd"] {
        assert_eq!(read_text(&app, &bob(), uri).await, "bob's", "{uri}");
    }
}

#[tokio::test]
async fn composed_and_decomposed_paths_are_one_file() {
    let app = test_app().await;
    let bobs = call(
        &app,
        &bob(),
        "file_write",
        json!({"path": "caf\u{00E9}", "content": "bob's", "content_type": "text/plain"}),
    )
    .await;
    assert_ne!(bobs["isError"], true, "{bobs}");

    let first = call(
        &app,
        &alice(),
        "file_write",
        json!({"path": "caf\u{0065}\u{0301}", "content": "first", "content_type": "text/plain"}),
    )
    .await;
    assert_eq!(
        first["structuredContent"],
        json!({"uri": "files:///caf%C3%A9", "path": "caf\u{00E9}", "size": 5, "contentType": "text/plain"})
    );
    let second = call(
        &app,
        &alice(),
        "file_write",
        json!({"path": "caf\u{00E9}", "content": "second", "content_type": "text/plain"}),
    )
    .await;
    assert_eq!(second["structuredContent"]["uri"], "files:///caf%C3%A9");

    // One file, read back by either spelling.
    assert_eq!(listed_names(&app, &alice()).await, ["caf\u{00E9}"]);
    for uri in ["files:///caf%C3%A9", "files:///cafe%CC%81"] {
        assert_eq!(read_text(&app, &alice(), uri).await, "second", "{uri}");
    }
    // Bob's file of the same name is his own.
    assert_eq!(
        read_text(&app, &bob(), "files:///cafe%CC%81").await,
        "bob's"
    );
    assert_eq!(listed_names(&app, &bob()).await, ["caf\u{00E9}"]);
}

#[tokio::test]
async fn keys_are_one_spelling_and_refuse_invisible_characters() {
    let app = test_app().await;
    let bobs = call(
        &app,
        &bob(),
        "state_set",
        json!({"key": "caf\u{00E9}", "value": "bob's"}),
    )
    .await;
    assert_eq!(bobs["structuredContent"]["version"], 1, "{bobs}");

    let created = call(
        &app,
        &alice(),
        "state_set",
        json!({"key": "caf\u{0065}\u{0301}", "value": 1, "expected_version": 0}),
    )
    .await;
    assert_eq!(
        created["structuredContent"]["key"], "caf\u{00E9}",
        "{created}"
    );
    assert_eq!(created["structuredContent"]["version"], 1);
    // The composed spelling names the same document: it exists already.
    let again = refusal(
        &app,
        &alice(),
        "state_set",
        json!({"key": "caf\u{00E9}", "value": 2, "expected_version": 0}),
    )
    .await;
    assert_eq!(
        again,
        "version conflict on `caf\u{00E9}`: expected no document, current is version 1"
    );
    let read = call(&app, &alice(), "state_get", json!({"key": "caf\u{00E9}"})).await;
    assert_eq!(read["structuredContent"]["value"], 1);
    let listed = call(&app, &alice(), "state_list", json!({})).await;
    let keys: Vec<&Value> = listed["structuredContent"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| &item["key"])
        .collect();
    assert_eq!(keys, [&json!("caf\u{00E9}")]);

    let joined = "team\u{200D}lead";
    let zwj = "key contains U+200D, an invisible formatting character; remove it";
    let refused = refusal(
        &app,
        &alice(),
        "state_set",
        json!({"key": joined, "value": true}),
    )
    .await;
    assert_eq!(refused, zwj);
    let refused = refusal(&app, &alice(), "state_get", json!({"key": joined})).await;
    assert_eq!(refused, zwj);
    let refused = refusal(&app, &alice(), "state_delete", json!({"key": joined})).await;
    assert_eq!(refused, zwj);
    let refused = refusal(
        &app,
        &alice(),
        "state_set",
        json!({"key": "a\u{202E}txt.exe", "value": true}),
    )
    .await;
    assert_eq!(
        refused,
        "key contains U+202E, a bidirectional text control that can make a name display \
         differently from how it is stored; remove it"
    );
    let listed = call(&app, &alice(), "state_list", json!({})).await;
    assert_eq!(
        listed["structuredContent"]["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Bob's document of the same name was never touched.
    let his = call(
        &app,
        &bob(),
        "state_get",
        json!({"key": "caf\u{0065}\u{0301}"}),
    )
    .await;
    assert_eq!(his["structuredContent"]["value"], "bob's");
    assert_eq!(his["structuredContent"]["version"], 1);
}
