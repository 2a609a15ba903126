//! What operators see, driven by real requests through the whole service: the metrics
//! (Prometheus text parsed back) and readiness with each dependency down (moto at
//! `MCP_TEST_AWS_ENDPOINT`). The logs are in `logs.rs`.

use crate::common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use common::{ALL_SCOPES, TEST_KEY, post, request_2026, send};
use mcp_function::{
    app::{self, App},
    backends::Backends,
    blob::s3::S3Blobs,
    config::{Config, Flags},
    keys::{Keyring, SecretsManagerKeys},
    store::{Store, cursor::CursorCodec, dynamo::DynamoStore},
};
use serde_json::{Value, json};

struct Service {
    app: App,
    _dir: tempfile::TempDir,
}

impl AsRef<Router> for Service {
    fn as_ref(&self) -> &Router {
        &self.app.router
    }
}

/// `mcp-server`'s service over SQLite with tokens on and a rate limit of 1/s, bursts of 50.
async fn service() -> Service {
    let (app, dir) = common::server_app(&[
        ("MCP_RATE_LIMIT_PER_SEC", "1"),
        ("MCP_RATE_LIMIT_BURST", "50"),
    ])
    .await;
    Service { app, _dir: dir }
}

fn as_alice(request: Request<Body>, who: &str) -> Request<Body> {
    common::with_token(request, who)
}

fn tool(name: &str, arguments: Value) -> Request<Body> {
    request_2026("tools/call", json!({"name": name, "arguments": arguments}))
}

/// The Prometheus text as `series → value` (`name{labels}` exactly as exposed).
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            (series.to_owned(), value.parse().expect("number"))
        })
        .collect()
}

async fn metrics(service: &Service) -> HashMap<String, f64> {
    parse_prometheus(&service.app.metrics.encode().await)
}

fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn requests_move_the_metrics_they_should() {
    let service = service().await;
    let before = metrics(&service).await;

    let echo = send(
        &service,
        as_alice(tool("echo", json!({"message": "hi"})), "alice"),
    )
    .await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.body);
    let set = send(
        &service,
        as_alice(tool("state_set", json!({"key": "k", "value": 1})), "alice"),
    )
    .await;
    assert_eq!(set.json()["result"]["isError"], false, "{}", set.body);
    let conflict = send(
        &service,
        as_alice(
            tool(
                "state_set",
                json!({"key": "k", "value": 2, "expected_version": 7}),
            ),
            "alice",
        ),
    )
    .await;
    assert_eq!(
        conflict.json()["result"]["isError"],
        true,
        "{}",
        conflict.body
    );
    let unknown = send(&service, as_alice(tool("no_such_tool", json!({})), "alice")).await;
    assert_eq!(unknown.error_code(), -32602);
    let invented = send(
        &service,
        as_alice(request_2026("x/invented-by-the-caller", json!({})), "alice"),
    )
    .await;
    let invented_status = invented.status.as_u16();
    assert_eq!(invented.error_code(), -32601, "{}", invented.body);
    let no_token = send(&service, tool("echo", json!({"message": "hi"}))).await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    let mut forged = tool("echo", json!({"message": "hi"}));
    let wrong_key = authorizer::mint::mint(
        &authorizer::mint::MintRequest {
            sub: "mallory".into(),
            scope: ALL_SCOPES.into(),
            ttl: Duration::from_secs(60),
            kid: None,
            issuer: authorizer::mint::DEFAULT_ISSUER.into(),
            audience: authorizer::mint::DEFAULT_AUDIENCE.into(),
        },
        b"another-key-that-is-long-enough-000000000",
    )
    .expect("mint");
    forged.headers_mut().insert(
        "authorization",
        format!("Bearer {wrong_key}").parse().expect("header"),
    );
    assert_eq!(
        send(&service, forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut limited = 0;
    for _ in 0..52 {
        let reply = send(
            &service,
            as_alice(tool("echo", json!({"message": "again"})), "carol"),
        )
        .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited >= 2, "carol's burst of 52 passes 50 at most");

    let after = metrics(&service).await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    let echo_calls = 1.0 + 52.0 - f64::from(limited);
    assert_eq!(
        delta(r#"mcp_requests_total{method="tools/call",status="200"}"#),
        echo_calls + 3.0
    );
    // Bodies of callers not yet authenticated or admitted are never parsed.
    assert_eq!(
        delta(r#"mcp_requests_total{method="unparsed",status="401"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"mcp_requests_total{method="tools/call",status="429"}"#),
        0.0,
        "refused before the body is read"
    );
    assert_eq!(
        delta(r#"mcp_requests_total{method="unparsed",status="429"}"#),
        f64::from(limited)
    );
    assert_eq!(
        delta(&format!(
            r#"mcp_requests_total{{method="other",status="{invented_status}"}}"#
        )),
        1.0,
        "invented methods share one label"
    );
    assert_eq!(
        delta(r#"mcp_request_duration_seconds_count{method="tools/call"}"#),
        echo_calls + 3.0
    );
    assert_eq!(
        delta(r#"mcp_tool_calls_total{tool="echo",outcome="ok"}"#),
        echo_calls
    );
    assert_eq!(
        delta(r#"mcp_tool_calls_total{tool="state_set",outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"mcp_tool_calls_total{tool="state_set",outcome="tool_error"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"mcp_tool_calls_total{tool="unknown",outcome="unknown_tool"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"mcp_errors_total{method="tools/call",code="-32602"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"mcp_errors_total{method="other",code="-32601"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"mcp_errors_total{method="unparsed",code="-32029"}"#),
        f64::from(limited)
    );
    assert_eq!(
        delta(r#"mcp_auth_failures_total{reason="missing_authorization"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"mcp_auth_failures_total{reason="bad_signature"}"#),
        1.0
    );
    assert_eq!(delta("mcp_rate_limited_total"), f64::from(limited));
    assert_eq!(
        delta(r#"mcp_store_operations_total{store="sqlite",op="put"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"mcp_store_duration_seconds_count{store="sqlite",op="put"}"#),
        2.0
    );
    assert!(
        after
            .keys()
            .all(|series| !series.contains("no_such_tool") && !series.contains("invented"))
    );
}

#[tokio::test]
async fn active_sessions_follow_initialize_and_delete() {
    let service = service().await;
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let reply = send(&service, as_alice(post(initialize, &[]), "alice")).await;
    let id = reply.headers["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(value(&metrics(&service).await, "mcp_active_sessions"), 1.0);
    assert_eq!(
        value(
            &metrics(&service).await,
            r#"mcp_store_operations_total{store="sqlite",op="create_session"}"#
        ),
        1.0
    );
    let delete = Request::delete("/mcp")
        .header("host", "localhost:8080")
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Body::empty())
        .expect("request");
    let deleted = send(&service, as_alice(delete, "alice")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(value(&metrics(&service).await, "mcp_active_sessions"), 0.0);
    assert_eq!(
        value(
            &metrics(&service).await,
            r#"mcp_requests_total{method="DELETE",status="204"}"#
        ),
        1.0
    );
}

/// A service over moto: DynamoDB table, S3 bucket and a Secrets Manager secret, all fresh.
struct AwsService {
    service: Service,
    table: String,
    bucket: String,
    secret: String,
}

async fn aws_service() -> AwsService {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("mcp-ready-{suffix}");
    let store = DynamoStore::new(
        common::dynamo_client(),
        table.clone(),
        CursorCodec::new(TEST_KEY),
    );
    store.create_table().await.expect("table");
    let s3 = common::s3_test_client();
    let bucket = common::s3_test_bucket(&s3).await;
    let secrets = test_support::secrets_client();
    let secret = format!("mcp/ready/{suffix}");
    secrets
        .create_secret()
        .name(&secret)
        .secret_string(
            json!({"kid": "k1", "secret": std::str::from_utf8(TEST_KEY).expect("utf8")})
                .to_string(),
        )
        .send()
        .await
        .expect("secret");
    let keys = Keyring::load(
        Arc::new(SecretsManagerKeys {
            client: secrets,
            secret_id: secret.clone(),
        }),
        Duration::from_secs(3600),
    )
    .await
    .expect("keys");
    let backends = Backends {
        keys,
        store: Arc::new(store) as Arc<dyn Store>,
        store_backend: "dynamodb",
        blobs: Arc::new(S3Blobs::new(
            s3,
            bucket.clone(),
            String::new(),
            CursorCodec::new(TEST_KEY),
        )),
        task_invoker: None,
        user_pool: None,
    };
    let config = Config::from_sources(Flags::default(), &HashMap::new()).expect("config");
    let app = app::build(&config, &backends, "server").expect("service builds");
    AwsService {
        service: Service {
            app,
            _dir: tempfile::tempdir().expect("dir"),
        },
        table,
        bucket,
        secret,
    }
}

async fn readiness(service: &Service) -> (StatusCode, Value) {
    let reply = send(
        service,
        Request::get("/health/ready")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    (reply.status, reply.json())
}

fn statuses(body: &Value) -> [&str; 3] {
    ["store", "files", "keys"].map(|check| {
        body["checks"][check]["status"]
            .as_str()
            .unwrap_or("missing")
    })
}

#[tokio::test]
async fn readiness_names_each_dependency_that_is_down() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let up = aws_service().await;
    let (status, body) = readiness(&up.service).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(statuses(&body), ["up", "up", "up"]);
    assert_eq!(
        [
            &body["checks"]["store"]["backend"],
            &body["checks"]["files"]["backend"],
            &body["checks"]["keys"]["backend"]
        ],
        [&json!("dynamodb"), &json!("s3"), &json!("secretsmanager")]
    );
    assert!(body["checks"]["keys"]["latencyMs"].as_f64().is_some());

    let no_table = aws_service().await;
    common::dynamo_client()
        .delete_table()
        .table_name(&no_table.table)
        .send()
        .await
        .expect("delete table");
    let (status, body) = readiness(&no_table.service).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(statuses(&body), ["down", "up", "up"]);
    assert_eq!(body["checks"]["store"]["error"], "store error");

    let no_bucket = aws_service().await;
    common::s3_test_client()
        .delete_bucket()
        .bucket(&no_bucket.bucket)
        .send()
        .await
        .expect("delete bucket");
    let (status, body) = readiness(&no_bucket.service).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(statuses(&body), ["up", "down", "up"]);
    assert_eq!(body["checks"]["files"]["error"], "file store error");

    let no_secret = aws_service().await;
    test_support::secrets_client()
        .delete_secret()
        .secret_id(&no_secret.secret)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete secret");
    let (status, body) = readiness(&no_secret.service).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(statuses(&body), ["up", "up", "down"]);
    assert_eq!(body["checks"]["keys"]["error"], "secret unreadable");
}
