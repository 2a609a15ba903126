//! The Lambda handler in process, per invocation: API Gateway REST events (the JWT authorizer's
//! context already attached, as in production) through `LambdaHandler::stream`, the streamed
//! answer read to its end, over DynamoDB on the emulator at `MCP_TEST_AWS_ENDPOINT` (moto).
//! Three calls:
//!
//! - `stateless_echo`: a 2026-07-28 `tools/call echo`;
//! - `state_get`: a 2026-07-28 `tools/call state_get` of an existing document;
//! - `legacy_echo`: a `tools/call echo` in a 2025-11-25 session whose record is in DynamoDB;
//!
//! and `stateless_echo_buffered`, the first one answered buffered (`LambdaHandler::handle`),
//! so the cost of streaming shows side by side.
//!
//! Besides criterion's timings, it counts the DynamoDB calls of one invocation of each (an SDK
//! interceptor) and writes them to `$CARGO_TARGET_DIR/criterion/store_calls.json`, with the
//! per-caller rate limit off and with it shared in the store (the Lambda default).
//! `scripts/bench.sh --lambda` starts moto, runs this and writes bench/LAMBDA.md.

#[path = "../tests/it/common/mod.rs"]
mod common;

// As the mcp-lambda binary runs: this allocator and a current-thread runtime.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{collections::HashMap, sync::Arc};

use aws_sdk_dynamodb::config::SharedInterceptor;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use lambda_http::{Context, LambdaEvent};
use mcp_function::{
    app,
    config::{Config, Flags, Profile},
    lambda_host::LambdaHandler,
    store::Store,
};
use serde_json::{Value, json};
use tokio::runtime;

/// The handler of one Lambda instance and the log of its DynamoDB calls.
struct Instance {
    handler: LambdaHandler,
    calls: common::CallLog,
    _files: tempfile::TempDir,
}

async fn instance(
    store: Arc<dyn Store>,
    calls: common::CallLog,
    extra: &[(&str, &str)],
) -> Instance {
    let mut env: HashMap<String, String> = [
        ("MCP_STORE_URL", "dynamodb://mcp-bench"),
        ("MCP_FILES_URL", "s3://mcp-bench-files"),
        (
            "MCP_SIGNING_KEY",
            std::str::from_utf8(common::TEST_KEY).expect("utf8"),
        ),
        ("AWS_REGION", "us-east-1"),
        ("AWS_LAMBDA_FUNCTION_NAME", "mcp-test"),
        ("MCP_AUTH_ISSUER", authorizer::mint::DEFAULT_ISSUER),
        ("MCP_AUTH_AUDIENCE", authorizer::mint::DEFAULT_AUDIENCE),
        ("MCP_RATE_LIMIT_PER_SEC", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::for_profile(Profile::Lambda, Flags::default(), &env).expect("config");
    let files = tempfile::tempdir().expect("temp dir");
    let app = app::build(
        &config,
        &common::backends(store, "dynamodb", common::local_blobs(files.path())),
        "lambda",
    )
    .expect("service builds");
    Instance {
        handler: LambdaHandler::new(app.router, None),
        calls,
        _files: files,
    }
}

/// The captured API Gateway REST (payload 1.0) event, POST /Prod/mcp, with the authorizer's
/// context.
fn event(headers: &[(&str, &str)], body: &Value) -> Value {
    let mut all: HashMap<&str, &str> = HashMap::from([
        ("host", "abc123.execute-api.us-east-1.amazonaws.com"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ]);
    all.extend(headers.iter().copied());
    let body = body.to_string();
    let event = common::lambda_event(common::APIGW_REST_EVENT, "POST", "/mcp", all, Some(&body));
    common::with_authorizer(event, "bench", common::ALL_SCOPES)
}

fn call_2026(tool: &str, arguments: Value) -> Value {
    let meta: Value = serde_json::from_str(common::META_2026).expect("meta");
    event(
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ],
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":arguments,"_meta":meta}}),
    )
}

/// How a scenario is answered: streamed (production) or buffered.
#[derive(Clone, Copy)]
enum Mode {
    Streamed,
    Buffered,
}

/// One invocation, its answer read to the end; returns the status and the session id header.
async fn answer(handler: &LambdaHandler, event: Value, mode: Mode) -> (u16, Option<String>) {
    let event = LambdaEvent::new(event, Context::default());
    match mode {
        Mode::Streamed => {
            let Ok(answer) = handler.stream(event).await;
            let session = answer
                .metadata_prelude
                .headers
                .get("mcp-session-id")
                .and_then(|id| id.to_str().ok())
                .map(str::to_owned);
            let status = answer.metadata_prelude.status_code.as_u16();
            answer.stream.for_each(|_| async {}).await;
            (status, session)
        }
        Mode::Buffered => {
            let Ok(response) = handler.handle(event).await;
            let status = response["statusCode"].as_u64().unwrap_or_default() as u16;
            let session = response["multiValueHeaders"]["mcp-session-id"][0]
                .as_str()
                .map(str::to_owned);
            (status, session)
        }
    }
}

async fn invoke(handler: &LambdaHandler, event: Value) -> Option<String> {
    let (status, session) = answer(handler, event, Mode::Streamed).await;
    assert_eq!(status, 200);
    session
}

/// Opens a session on `instance` and returns the legacy echo event that uses it.
async fn legacy_echo_event(instance: &Instance) -> Value {
    let initialize = event(
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}),
    );
    let id = invoke(&instance.handler, initialize)
        .await
        .expect("session id");
    let session = [
        ("mcp-session-id", id.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    answer(
        &instance.handler,
        event(
            &session,
            &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        ),
        Mode::Streamed,
    )
    .await;
    event(
        &session,
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}),
    )
}

/// One call to measure, on the instance that serves it.
struct Scenario {
    name: &'static str,
    handler: LambdaHandler,
    calls: common::CallLog,
    event: Value,
    mode: Mode,
}

/// The scenarios, and the instances they run on (kept alive with their folders).
async fn build_scenarios(extra: &[(&str, &str)]) -> (Vec<Scenario>, Vec<Instance>) {
    let calls = common::CallLog::default();
    let client = common::dynamo_client_with([SharedInterceptor::new(calls.clone())]);
    let store: Arc<dyn Store> = Arc::new(common::dynamo_store_with(client).await);
    let stateless = instance(store.clone(), calls.clone(), extra).await;
    invoke(
        &stateless.handler,
        call_2026("state_set", json!({"key": "bench", "value": {"n": 1}})),
    )
    .await;
    let legacy = instance(store, calls.clone(), extra).await;
    let legacy_event = legacy_echo_event(&legacy).await;
    calls.take();
    let echo = call_2026("echo", json!({"message": "hello"}));
    let get = call_2026("state_get", json!({"key": "bench"}));
    let scenario = |name, instance: &Instance, event, mode| Scenario {
        name,
        handler: instance.handler.clone(),
        calls: instance.calls.clone(),
        event,
        mode,
    };
    let scenarios = vec![
        scenario("stateless_echo", &stateless, echo.clone(), Mode::Streamed),
        scenario("state_get", &stateless, get, Mode::Streamed),
        scenario("legacy_echo", &legacy, legacy_event, Mode::Streamed),
        scenario("stateless_echo_buffered", &stateless, echo, Mode::Buffered),
    ];
    (scenarios, vec![stateless, legacy])
}

/// The DynamoDB operations one more invocation of each scenario makes.
async fn store_calls(scenarios: &[Scenario]) -> Value {
    let mut counted = serde_json::Map::new();
    for scenario in scenarios {
        scenario.calls.take();
        let (status, _) = answer(&scenario.handler, scenario.event.clone(), scenario.mode).await;
        assert_eq!(status, 200, "{}", scenario.name);
        counted.insert(scenario.name.to_owned(), json!(scenario.calls.take()));
    }
    Value::Object(counted)
}

fn lambda_handler(c: &mut Criterion) {
    let runtime = runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (scenarios, _instances) = runtime.block_on(build_scenarios(&[]));
    let (shared_limit, _shared_instances) = runtime.block_on(build_scenarios(&[
        ("MCP_RATE_LIMIT_PER_SEC", "100000"),
        ("MCP_RATE_LIMIT_STORE", "store"),
    ]));
    let counts = json!({
        "rate_limit_off": runtime.block_on(store_calls(&scenarios)),
        "rate_limit_shared": runtime.block_on(store_calls(&shared_limit)),
    });
    println!("DynamoDB calls per invocation: {counts}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let folder = std::path::Path::new(&target).join("criterion");
    std::fs::create_dir_all(&folder).expect("criterion folder");
    std::fs::write(folder.join("store_calls.json"), counts.to_string()).expect("write counts");

    let mut group = c.benchmark_group("lambda_handler");
    for scenario in &scenarios {
        group.bench_function(scenario.name, |b| {
            b.to_async(&runtime)
                .iter(|| answer(&scenario.handler, scenario.event.clone(), scenario.mode));
        });
    }
    group.finish();
}

criterion_group!(benches, lambda_handler);
criterion_main!(benches);
