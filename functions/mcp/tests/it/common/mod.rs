//! Helpers shared by the integration tests: requests, stores on real backends (and whether
//! they are there), captured logs and captured Lambda events.

#![allow(dead_code)]

use std::sync::Arc;

use mcp_function::store::{Store, cursor::CursorCodec, dynamo::DynamoStore, sql::SqlStore};
use sqlx::{Connection, PgConnection};

/// The `Accept` header of a well-behaved Streamable HTTP client.
pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// The `_meta` every 2026-07-28 request carries.
pub const META_2026: &str = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"test","version":"1"}}"#;

/// A POST to /mcp with the headers a well-behaved client sends, plus `extra`.
pub fn post(
    body: impl Into<String>,
    extra: &[(&str, &str)],
) -> axum::http::Request<axum::body::Body> {
    let mut builder = axum::http::Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH);
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder
        .body(axum::body::Body::from(body.into()))
        .expect("request")
}

/// The `_meta` of a 2026-07-28 request whose client takes tasks (SEP-2663).
pub const META_2026_TASKS: &str = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}},"io.modelcontextprotocol/clientInfo":{"name":"test","version":"1"}}"#;

/// A 2026-07-28 request for `method`: the `_meta` in `params`, and the `Mcp-Method` and
/// `Mcp-Name` (tool name, resource URI or task id) headers the wire requires.
pub fn request_2026(
    method: &str,
    params: serde_json::Value,
) -> axum::http::Request<axum::body::Body> {
    request_2026_with(META_2026, method, params)
}

/// [`request_2026`] with `meta` as its `_meta` (e.g. [`META_2026_TASKS`]).
pub fn request_2026_with(
    meta: &str,
    method: &str,
    mut params: serde_json::Value,
) -> axum::http::Request<axum::body::Body> {
    params["_meta"] = serde_json::from_str(meta).expect("meta");
    let name = params["name"]
        .as_str()
        .or(params["uri"].as_str())
        .or(params["taskId"].as_str())
        .map(str::to_owned);
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut builder = axum::http::Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        builder = builder.header("mcp-name", name);
    }
    builder
        .body(axum::body::Body::from(body.to_string()))
        .expect("request")
}

/// An HTTP answer of the service under test, body read whole.
pub struct Reply {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn error_code(&self) -> i64 {
        self.json()["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error code: {}", self.body))
    }
}

/// Sends `request` through the router with `oneshot`, no socket.
pub async fn send(
    app: &impl AsRef<axum::Router>,
    request: axum::http::Request<axum::body::Body>,
) -> Reply {
    use tower::ServiceExt;
    let response = app
        .as_ref()
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Cursor key used by test stores; the services under test also verify tokens with it.
pub const TEST_KEY: &[u8] = b"test-signing-key-of-at-least-32-bytes!!";

/// Every product scope.
pub const ALL_SCOPES: &str = "mcp:read mcp:call mcp:write";

/// `Bearer <token>` naming `sub` with `scope`, as `mcp-token` mints it with [`TEST_KEY`]
/// (issuer `mcp-dev`, audience `http://127.0.0.1:8080/mcp`: the server defaults).
pub fn bearer(sub: &str, scope: &str) -> String {
    let request = authorizer::mint::MintRequest {
        sub: sub.to_owned(),
        scope: scope.to_owned(),
        ttl: std::time::Duration::from_secs(600),
        kid: None,
        issuer: authorizer::mint::DEFAULT_ISSUER.to_owned(),
        audience: authorizer::mint::DEFAULT_AUDIENCE.to_owned(),
    };
    let token = authorizer::mint::mint(&request, TEST_KEY).expect("test token");
    format!("Bearer {token}")
}

/// What `app::build` serves over: `store` and `blobs` with the test keys.
pub fn backends(
    store: Arc<dyn Store>,
    store_backend: &'static str,
    blobs: Arc<dyn mcp_function::blob::BlobStore>,
) -> mcp_function::backends::Backends {
    mcp_function::backends::Backends {
        keys: test_keys(),
        store,
        store_backend,
        blobs,
        task_invoker: None,
        user_pool: None,
    }
}

/// The keyring of [`TEST_KEY`], as the services under test get it.
pub fn test_keys() -> mcp_function::keys::Keyring {
    mcp_function::keys::Keyring::fixed(mcp_function::keys::KeySet::single("test", TEST_KEY))
}

/// The PostgreSQL server the tests use (`MCP_TEST_POSTGRES_URL`, default: the local `test` database).
pub fn postgres_url() -> String {
    std::env::var("MCP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// [`postgres_url`] if PostgreSQL answers there, or `None` once the test is recorded as skipped
/// ([`test_support::skip`]).
pub async fn require_postgres() -> Option<String> {
    let url = postgres_url();
    let connect = PgConnection::connect(&url);
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Some(url),
        _ => {
            test_support::skip("PostgreSQL at MCP_TEST_POSTGRES_URL (default 127.0.0.1:5432/test)");
            None
        }
    }
}

/// A SQLite store in a fresh temporary folder (kept alive by the returned guard).
pub async fn sqlite_store() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("mcp.db").display());
    let store = SqlStore::connect(&url, TEST_KEY)
        .await
        .expect("sqlite store");
    (store, dir)
}

/// A PostgreSQL store in a schema of its own, dropped when the guard is dropped.
pub struct PostgresSchema {
    pub name: String,
}

impl Drop for PostgresSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside the test's runtime: use a small one of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&postgres_url()).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {name} CASCADE"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

pub async fn postgres_store() -> (SqlStore, PostgresSchema) {
    let name = format!("mcp_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&postgres_url()).await.expect(
        "PostgreSQL must be running at MCP_TEST_POSTGRES_URL (default 127.0.0.1:5432/test)",
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if postgres_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}options=-c%20search_path%3D{name}",
        postgres_url()
    );
    let store = SqlStore::connect(&url, TEST_KEY)
        .await
        .expect("postgres store");
    (store, PostgresSchema { name })
}

pub fn shared(store: SqlStore) -> Arc<dyn Store> {
    Arc::new(store)
}

// ─── Files: blob stores (local folder, S3 on an emulator) ──────────────────

/// A local file store under `dir`, as the services under test get it.
pub fn local_blobs(dir: &std::path::Path) -> Arc<dyn mcp_function::blob::BlobStore> {
    Arc::new(mcp_function::blob::local::LocalBlobs::new(
        dir.join("files"),
        mcp_function::store::cursor::CursorCodec::new(TEST_KEY),
    ))
}

/// An S3 client for the emulator at `MCP_TEST_AWS_ENDPOINT` (e.g. moto):
/// path-style addressing, region us-east-1, static test credentials.
pub fn s3_test_client() -> aws_sdk_s3::Client {
    let endpoint = test_support::moto_endpoint();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "mcp-tests",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A new bucket with a name unique to this run, created on the emulator.
pub async fn s3_test_bucket(client: &aws_sdk_s3::Client) -> String {
    let bucket = format!("mcp-test-{}", uuid::Uuid::new_v4().simple());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot create bucket {bucket} at MCP_TEST_AWS_ENDPOINT: {}",
                aws_sdk_s3::error::DisplayErrorContext(&error)
            )
        });
    bucket
}

// ─── DynamoDB store (on an emulator) ────────────────────────────────────────

/// A DynamoDB client for the test endpoint (us-east-1, static test credentials), with `interceptors`.
pub fn dynamo_client_with(
    interceptors: impl IntoIterator<Item = aws_sdk_dynamodb::config::SharedInterceptor>,
) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(test_support::moto_endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"));
    config.set_interceptors(interceptors);
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

pub fn dynamo_client() -> aws_sdk_dynamodb::Client {
    dynamo_client_with([])
}

/// Records the operation name of every DynamoDB call, once per call (not per retry).
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<std::sync::Mutex<Vec<String>>>);

impl CallLog {
    /// The calls since the last `take`, in order.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|poison| poison.into_inner()))
    }
}

impl aws_sdk_dynamodb::config::Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    // Not `read_before_execution`: a client-level interceptor runs that hook
    // before the operation's runtime plugin has put its `Metadata` (the
    // operation name) in the config bag. Serialization, like execution, happens
    // exactly once per call; retries resend the serialized request.
    fn read_before_serialization(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or_else(|| "unknown".to_owned(), |meta| meta.name().to_owned());
        self.0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(operation);
        Ok(())
    }
}

/// A DynamoDB store over `client` in a fresh, uniquely named table.
pub async fn dynamo_store_with(client: aws_sdk_dynamodb::Client) -> DynamoStore {
    let table = format!("mcp-test-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::new(client, table, CursorCodec::new(TEST_KEY));
    store.create_table().await.expect(
        "create the DynamoDB test table (is the emulator at MCP_TEST_AWS_ENDPOINT running?)",
    );
    store
}

/// A DynamoDB store in a fresh, uniquely named table on the test endpoint.
pub async fn dynamo_store() -> DynamoStore {
    dynamo_store_with(dynamo_client()).await
}

// ─── The whole service ──────────────────────────────────────────────────────

/// `mcp-server`'s whole service over a fresh SQLite store and local files, tokens on (signed
/// with [`TEST_KEY`]), plus `env`; the folder lives as long as the returned guard.
pub async fn server_app(env: &[(&str, &str)]) -> (mcp_function::app::App, tempfile::TempDir) {
    let key = std::str::from_utf8(TEST_KEY).expect("utf8 key");
    let env: std::collections::HashMap<String, String> = [("MCP_SIGNING_KEY", key)]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config =
        mcp_function::config::Config::from_sources(Default::default(), &env).expect("valid config");
    let (store, dir) = sqlite_store().await;
    let backends = backends(Arc::new(store), "sqlite", local_blobs(dir.path()));
    let app = mcp_function::app::build(&config, &backends, "server").expect("service builds");
    (app, dir)
}

/// `request` with the bearer token of `sub` holding every scope.
pub fn with_token(
    mut request: axum::http::Request<axum::body::Body>,
    sub: &str,
) -> axum::http::Request<axum::body::Body> {
    let value = bearer(sub, ALL_SCOPES).parse().expect("header value");
    request.headers_mut().insert("authorization", value);
    request
}

// ─── Captured logs ──────────────────────────────────────────────────────────

/// The product's JSON log lines, captured in memory (see [`capture_logs`]).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Every line so far, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf8 logs")
    }
}

/// Captures this thread's log events at `filter` in the product's JSON format until the guard
/// is dropped. The default (current-thread) test runtime runs rmcp's spawned tasks on this
/// thread too. Tracing caches which call sites are enabled process-wide and rebuilds that cache
/// whenever a subscriber like this one is set, so these tests run beside the others in `it`.
pub fn capture_logs(filter: &str) -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    let guard = tracing::subscriber::set_default(mcp_function::server_host::log_subscriber(
        mcp_function::config::LogFormat::Json,
        tracing_subscriber::EnvFilter::new(filter),
        move || writer.clone(),
    ));
    (captured, guard)
}

// ─── Captured Lambda events ─────────────────────────────────────────────────

/// An API Gateway REST API (payload 1.0) proxy event as API Gateway sends it: `POST /Prod/mcp`,
/// no authorizer context (see [`with_authorizer`]).
pub const APIGW_REST_EVENT: &str = include_str!("../../data/apigw-rest-event.json");

/// An HTTP API (payload 2.0) event as API Gateway sends it: `POST /mcp` on the `$default` stage.
pub const APIGW_HTTP_EVENT: &str = include_str!("../../data/apigw-http-event.json");

/// A Lambda function URL event (payload 2.0): `POST /mcp` on the URL's own domain.
pub const FUNCTION_URL_EVENT: &str = include_str!("../../data/function-url-event.json");

/// `captured` (one of the events above) carrying another request: `method`, `path`, exactly
/// `headers` (both header maps of a REST event) and `body` (`None`: none); every other field
/// stays as captured.
pub fn lambda_event<K: AsRef<str>, V: AsRef<str>>(
    captured: &str,
    method: &str,
    path: &str,
    headers: impl IntoIterator<Item = (K, V)>,
    body: Option<&str>,
) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut event: Value = serde_json::from_str(captured).expect("captured event is JSON");
    let headers: Map<String, Value> = headers
        .into_iter()
        .map(|(name, value)| (name.as_ref().to_owned(), json!(value.as_ref())))
        .collect();
    if event["version"] == "2.0" {
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
    } else {
        let stage = event["requestContext"]["stage"]
            .as_str()
            .expect("a REST event has a stage")
            .to_owned();
        event["httpMethod"] = json!(method);
        event["path"] = json!(path);
        event["pathParameters"] = json!({ "proxy": path.trim_start_matches('/') });
        event["requestContext"]["httpMethod"] = json!(method);
        event["requestContext"]["path"] = json!(format!("/{stage}{path}"));
        let multi: Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.clone(), json!([value])))
            .collect();
        event["multiValueHeaders"] = Value::Object(multi);
    }
    event["headers"] = Value::Object(headers);
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(false);
    event
}

/// `event` as the JWT authorizer passes it on: `subject` and its `scope` in the authorizer
/// context of `requestContext`.
pub fn with_authorizer(
    mut event: serde_json::Value,
    subject: &str,
    scope: &str,
) -> serde_json::Value {
    event["requestContext"]["authorizer"] =
        serde_json::json!({ "principalId": subject, "sub": subject, "scope": scope });
    event
}
