//! Durable tasks through the HTTP service (`oneshot`, no socket): `state_export` called as a
//! task on one instance is polled and read back through another over the same store; a task
//! id of another principal answers exactly like an unknown one, on every task method, and
//! leaves the task alone; bad input settles the task with a clear error and writes nothing;
//! without the tasks extension the same tool answers in the call.

use crate::common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{Router, body::Body, http::Request};
use mcp_function::{
    app,
    blob::BlobStore,
    config::{Config, Flags},
    principal::Principal,
    store::{Expect, Put, Store},
};
use serde_json::{Value, json};

/// How long a task of a few documents may take to settle, polled every 50 ms.
const SETTLE_BOUND: Duration = Duration::from_secs(10);

/// Two instances of `mcp-server`'s service over one store and one file folder.
struct Instances {
    a: Instance,
    b: Instance,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    _dir: tempfile::TempDir,
}

struct Instance(Router);

impl AsRef<Router> for Instance {
    fn as_ref(&self) -> &Router {
        &self.0
    }
}

async fn two_instances() -> Instances {
    let env: HashMap<String, String> = [("MCP_AUTH", "off"), ("MCP_LISTEN_POLL_MS", "100")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_sources(Flags::default(), &env).expect("valid config");
    let (store, dir) = common::sqlite_store().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let blobs: Arc<dyn BlobStore> = common::local_blobs(dir.path());
    let build = || {
        let backends = common::backends(store.clone(), "sqlite", blobs.clone());
        Instance(
            app::build(&config, &backends, "server")
                .expect("service builds")
                .router,
        )
    };
    Instances {
        a: build(),
        b: build(),
        store,
        blobs,
        _dir: dir,
    }
}

fn principal(subject: &str) -> Principal {
    Principal::new(subject).expect("subject")
}

/// A 2026-wire request of a client that takes tasks, acting as `principal`.
async fn call(on: &Instance, principal: &Principal, method: &str, params: Value) -> Value {
    let mut request: Request<Body> =
        common::request_2026_with(common::META_2026_TASKS, method, params);
    request.extensions_mut().insert(principal.clone());
    let reply = common::send(on, request).await;
    assert_eq!(reply.status, 200, "{method}: {}", reply.body);
    reply.json()
}

async fn export_as_task(on: &Instance, principal: &Principal, arguments: Value) -> String {
    let created = call(
        on,
        principal,
        "tools/call",
        json!({"name": "state_export", "arguments": arguments}),
    )
    .await;
    let task = &created["result"];
    assert_eq!(task["resultType"], "task", "{created}");
    assert_eq!(task["status"], "working", "{created}");
    assert_eq!(task["ttlMs"], 3_600_000);
    assert_eq!(task["pollIntervalMs"], 1000);
    task["taskId"].as_str().expect("taskId").to_owned()
}

/// `tasks/get` on `on` until the task is settled.
async fn settled(on: &Instance, principal: &Principal, task_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + SETTLE_BOUND;
    loop {
        let got = call(on, principal, "tasks/get", json!({"taskId": task_id})).await;
        let status = got["result"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if ["completed", "failed", "cancelled"].contains(&status.as_str()) {
            return got["result"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task_id} still {status} after {SETTLE_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put_document(store: &dyn Store, principal: &Principal, key: &str, value: Value) {
    let put = Put {
        key,
        value: &value,
        expect: Expect::Any,
        ttl: None,
    };
    store.put(principal, put).await.expect("document stored");
}

#[tokio::test]
async fn a_task_created_on_one_instance_is_polled_and_read_back_on_another() {
    let instances = two_instances().await;
    let alice = principal("alice");
    for (key, value) in [
        ("notes/a", json!(1)),
        ("notes/b", json!({"x": 2})),
        ("other", json!(3)),
    ] {
        put_document(instances.store.as_ref(), &alice, key, value).await;
    }

    let task_id = export_as_task(
        &instances.a,
        &alice,
        json!({"prefix": "notes/", "path": "backups/notes.json"}),
    )
    .await;
    let task = settled(&instances.b, &alice, &task_id).await;

    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["resultType"], "complete");
    let output = &task["result"]["structuredContent"];
    assert_eq!(output["documents"], 2, "{task}");
    assert_eq!(output["uri"], "files:///backups/notes.json");
    let file = instances
        .blobs
        .get(&alice, "backups/notes.json")
        .await
        .expect("file store answers")
        .expect("the export was written");
    let exported: Value = serde_json::from_slice(&file.bytes).expect("the export is JSON");
    let keys: Vec<&str> = exported["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .filter_map(|document| document["key"].as_str())
        .collect();
    assert_eq!(keys, ["notes/a", "notes/b"]);
    assert_eq!(exported["prefix"], "notes/");
}

#[tokio::test]
async fn another_principals_task_id_answers_like_an_unknown_one_and_leaves_the_task_alone() {
    let instances = two_instances().await;
    let alice = principal("alice");
    let bob = principal("bob");
    put_document(
        instances.store.as_ref(),
        &alice,
        "secret",
        json!("alice only"),
    )
    .await;
    let task_id = export_as_task(&instances.a, &alice, json!({"path": "mine.json"})).await;

    for (method, params) in [
        ("tasks/get", json!({"taskId": task_id})),
        ("tasks/cancel", json!({"taskId": task_id})),
        (
            "tasks/update",
            json!({"taskId": task_id, "inputResponses": {}}),
        ),
    ] {
        let theirs = call(&instances.b, &bob, method, params.clone()).await;
        let mut unknown_params = params;
        unknown_params["taskId"] = json!("no-such-task");
        let unknown = call(&instances.b, &bob, method, unknown_params).await;
        assert_eq!(theirs["error"]["code"], -32602, "{method}: {theirs}");
        assert_eq!(unknown["error"]["code"], -32602, "{method}: {unknown}");
        assert_eq!(
            theirs["error"]["message"]
                .as_str()
                .map(|m| m.replace(&task_id, "ID")),
            unknown["error"]["message"]
                .as_str()
                .map(|m| m.replace("no-such-task", "ID")),
            "{method}: another principal's task must read like an unknown one"
        );
    }

    // Bob's cancel did nothing: Alice's task completes, and Bob has no file.
    let task = settled(&instances.a, &alice, &task_id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["structuredContent"]["documents"], 1);
    let bobs = instances
        .blobs
        .get(&bob, "mine.json")
        .await
        .expect("answers");
    assert!(bobs.is_none(), "nothing of Alice's reached Bob");
}

#[tokio::test]
async fn a_bad_export_path_settles_the_task_with_a_tool_error_and_writes_nothing() {
    let instances = two_instances().await;
    let alice = principal("alice");
    let task_id = export_as_task(&instances.a, &alice, json!({"path": "../escape.json"})).await;

    let task = settled(&instances.b, &alice, &task_id).await;

    assert_eq!(
        task["status"], "completed",
        "a tool error is a completed task: {task}"
    );
    assert_eq!(task["result"]["isError"], true);
    let text = task["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.starts_with("invalid path \"../escape.json\""),
        "{text}"
    );
    let files = instances
        .blobs
        .list(&alice, None, 10)
        .await
        .expect("file store answers");
    assert!(
        files.items.is_empty(),
        "nothing was written: {:?}",
        files.items
    );
}

#[tokio::test]
async fn malformed_task_requests_get_exact_errors() {
    let instances = two_instances().await;
    let alice = principal("alice");

    // rmcp cannot read such params as tasks/update and answers as for an unknown method.
    let mut request = common::request_2026_with(
        common::META_2026_TASKS,
        "tasks/update",
        json!({"taskId": "x", "inputResponses": "yes"}),
    );
    request.extensions_mut().insert(alice.clone());
    let not_an_object = common::send(&instances.a, request).await;
    assert_eq!(not_an_object.status, 404, "{}", not_an_object.body);
    assert_eq!(not_an_object.error_code(), -32601);

    let unknown = call(&instances.a, &alice, "tasks/get", json!({"taskId": "nope"})).await;
    assert_eq!(unknown["error"]["code"], -32602);
    assert_eq!(unknown["error"]["message"], "unknown task: nope");
}

#[tokio::test]
async fn without_the_tasks_extension_state_export_answers_in_the_call() {
    let instances = two_instances().await;
    let alice = principal("alice");
    put_document(instances.store.as_ref(), &alice, "k", json!(true)).await;
    let mut request = common::request_2026(
        "tools/call",
        json!({"name": "state_export", "arguments": {"path": "now.json"}}),
    );
    request.extensions_mut().insert(alice.clone());

    let reply = common::send(&instances.a, request).await.json();

    assert_eq!(reply["result"]["resultType"], "complete", "{reply}");
    assert_eq!(reply["result"]["structuredContent"]["documents"], 1);
    assert!(reply["result"].get("taskId").is_none());
}
