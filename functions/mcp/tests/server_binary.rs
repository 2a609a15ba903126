//! The real binaries: `mcp-server` on a loopback port (restarts keep sessions
//! and state, SIGTERM stops it cleanly, bad settings stop it at start, the
//! official Rust SDK client works against it) and `mcp-lambda`'s start-up checks.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, ClientConfig},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &Path, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-server"))
            .env("MCP_BIND", format!("127.0.0.1:{port}"))
            .env("MCP_STORE_URL", format!("sqlite://{}", db.display()))
            .env(
                "MCP_FILES_URL",
                format!("file://{}", db.with_file_name("files").display()),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mcp-server");
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if answers_200(&format!("{}/health/ready", self.base)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mcp-server did not become ready");
    }

    /// Sends SIGTERM and returns the exit code.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("mcp-server ignored SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A plain blocking GET, so readiness polling needs no async runtime.
fn answers_200(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some((authority, path)) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else {
        return false;
    };
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// A token the server accepts with its default settings, as `mcp-token --sub alice` mints it.
fn dev_token() -> String {
    let request = authorizer::mint::MintRequest {
        sub: "alice".into(),
        scope: "mcp:read mcp:call mcp:write".into(),
        ttl: std::time::Duration::from_secs(600),
        kid: None,
        issuer: authorizer::mint::DEFAULT_ISSUER.into(),
        audience: authorizer::mint::DEFAULT_AUDIENCE.into(),
    };
    authorizer::mint::mint(&request, authorizer::mint::DEV_SIGNING_KEY.as_bytes()).expect("mint")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn post(
    base: &str,
    session: Option<&str>,
    body: Value,
) -> (reqwest::StatusCode, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .bearer_auth(dev_token())
        .json(&body);
    if let Some(id) = session {
        request = request
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25");
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, session, body)
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":name,"arguments":arguments}})
}

#[tokio::test]
async fn a_restart_keeps_sessions_and_state() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("mcp.db");
    let port = free_port();
    let server = Server::start(&db, port);
    let (status, session, _) = post(
        &server.base,
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"restart-test","version":"1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    let session = session.expect("session id");
    post(
        &server.base,
        Some(&session),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    let (_, _, set) = post(
        &server.base,
        Some(&session),
        tool_call("state_set", json!({"key":"survives","value":{"n":1}})),
    )
    .await;
    assert_eq!(set["result"]["structuredContent"]["version"], 1);

    assert_eq!(server.terminate(), Some(0), "SIGTERM is a clean stop");

    let server = Server::start(&db, port);
    let (status, _, got) = post(
        &server.base,
        Some(&session),
        tool_call("state_get", json!({"key":"survives"})),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["result"]["structuredContent"]["value"], json!({"n": 1}));
    let (status, _, _) = post(
        &server.base,
        Some("11111111-2222-4333-8444-555555555555"),
        tool_call("echo", json!({"message":"x"})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_rust_sdk_client_lists_and_calls_tools() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("mcp.db"), free_port());
    let anonymous = StreamableHttpClientTransport::from_uri(format!("{}/mcp", server.base));
    let refused = ClientConfig::default()
        .serve(anonymous)
        .await
        .expect_err("no token, no session");
    // The SDK surfaces the challenge that leads it to the RFC 9728 metadata.
    let refused = format!("{refused:?}");
    assert!(refused.contains("AuthRequired"), "{refused}");
    assert!(
        refused.contains(&format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            server.base
        )),
        "{refused}"
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.base))
            .auth_header(dev_token()),
    );
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .expect("connect");
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for expected in [
        "echo",
        "get_time",
        "health_check",
        "state_delete",
        "state_get",
        "state_list",
        "state_set",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let arguments = json!({"message": "from the SDK"})
        .as_object()
        .cloned()
        .expect("object");
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await
        .expect("tools/call");
    assert_eq!(
        result.structured_content,
        Some(json!({"message": "from the SDK"}))
    );
    let prompts = client.list_all_prompts().await.expect("prompts/list");
    assert_eq!(prompts.len(), 4);
    client.cancel().await.expect("close");
}

#[test]
fn a_malformed_setting_stops_the_server_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-server"))
        .env("MCP_BIND", "not-an-address")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "mcp-server: invalid MCP_BIND=\"not-an-address\": expected IP:PORT, e.g. 127.0.0.1:8080"
    );
}

#[test]
fn the_lambda_binary_refuses_local_state_at_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-lambda"))
        .env_clear()
        .env("MCP_STORE_URL", "sqlite:///tmp/mcp.db")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "mcp-lambda: invalid MCP_STORE_URL=\"sqlite:///tmp/mcp.db\": SQLite is a local file and \
         Lambda instances share no disk: use dynamodb://TABLE or postgres://…"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_mcp-lambda"))
        .env_clear()
        .env("MCP_STORE_URL", "dynamodb://mcp-prod")
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        "mcp-lambda: invalid MCP_FILES_URL=\"\": is required on Lambda: s3://BUCKET[/PREFIX]"
    );
}
