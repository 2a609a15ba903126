//! The real binaries: `mcp-server` on a loopback port (restarts keep sessions
//! and state, SIGTERM stops it cleanly, bad settings stop it at start, the
//! official Rust SDK client works against it, slow and silent clients are cut off
//! and the probes answer through a flood of them, a flood of forged tokens gets 429) and `mcp-lambda`'s start-up checks.

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
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

use crate::common;

use common::ACCEPT_BOTH;

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &Path, port: u16) -> Self {
        Self::start_with(db, port, &[])
    }

    /// Starts with `settings` on top of a loopback bind and a store in `db`'s folder.
    fn start_with(db: &Path, port: u16, settings: &[(&str, &str)]) -> Self {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_mcp-server")),
            db,
            port,
            settings,
        )
    }

    /// [`Server::start_with`] in a process allowed `open_files` open files (`ulimit -n`).
    fn start_with_open_files(
        db: &Path,
        port: u16,
        settings: &[(&str, &str)],
        open_files: u32,
    ) -> Self {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("ulimit -n {open_files} && exec \"$0\""),
            env!("CARGO_BIN_EXE_mcp-server"),
        ]);
        Self::spawn(command, db, port, settings)
    }

    fn spawn(mut command: Command, db: &Path, port: u16, settings: &[(&str, &str)]) -> Self {
        let child = command
            .env("MCP_BIND", format!("127.0.0.1:{port}"))
            .env("MCP_STORE_URL", format!("sqlite://{}", db.display()))
            .env(
                "MCP_FILES_URL",
                format!("file://{}", db.with_file_name("files").display()),
            )
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
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

    /// How many files (sockets included) the server process holds open.
    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("the server's descriptors")
            .count()
    }

    /// A memory figure of the server process from `/proc/<pid>/status`, in KiB: `VmRSS` now,
    /// `VmHWM` its peak.
    fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
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
    token_for("alice", authorizer::mint::DEV_SIGNING_KEY.as_bytes())
}

/// A token for `sub` signed with `key`, otherwise as `mcp-token` mints it.
fn token_for(sub: &str, key: &[u8]) -> String {
    let request = authorizer::mint::MintRequest {
        sub: sub.into(),
        scope: "mcp:read mcp:call mcp:write".into(),
        ttl: std::time::Duration::from_secs(600),
        kid: None,
        issuer: authorizer::mint::DEFAULT_ISSUER.into(),
        audience: authorizer::mint::DEFAULT_AUDIENCE.into(),
    };
    authorizer::mint::mint(&request, key).expect("mint")
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
    assert_eq!(prompts.len(), 5);
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

// ─── Slow, silent and stalled clients ───────────────────────────────────────

/// Settings every test below adds: the metrics listener (and its probes) on a port of its own.
fn with_metrics(
    metrics_port: u16,
    settings: &[(&'static str, &'static str)],
) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([(
            "MCP_METRICS_BIND".to_owned(),
            format!("127.0.0.1:{metrics_port}"),
        )])
        .collect()
}

fn start_with_metrics(
    db: &Path,
    port: u16,
    metrics_port: u16,
    settings: &[(&'static str, &'static str)],
) -> Server {
    let settings = with_metrics(metrics_port, settings);
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Server::start_with(db, port, &settings)
}

/// `GET path` on a fresh connection: the status (0 when the connection closed without an
/// answer) and how long the answer took.
fn timed_get(port: u16, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, started.elapsed());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes());
    let answer = read_until_closed(&mut stream).0;
    (status_of(&answer), started.elapsed())
}

fn status_of(answer: &[u8]) -> u16 {
    answer
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Reads until the peer closes (or resets) the connection; `false` when it was still open
/// when the read timeout passed.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut answer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (answer, true),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (answer, false);
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (answer, true),
        }
    }
}

/// Reads one response with a `content-length` body: its status and body.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut byte = [0_u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("a response header");
        assert_eq!(n, 1, "closed within a header: {received:?}");
        received.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&received).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|value| value.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0_u8; length];
    stream.read_exact(&mut body).expect("body");
    (
        status_of(&received),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// What a flood of half-open sockets did to a server.
struct Flood {
    /// How long opening the sockets took.
    opened: Duration,
    /// Files the server held beyond its own once they were open.
    held: usize,
    /// `/health/live` and `/health/ready` on the metrics listener during the flood.
    probes: (u16, u16),
    probe_latency: Duration,
    /// `/health/live` on the MCP listener during the flood (0: closed without an answer).
    newcomer: u16,
    newcomer_latency: Duration,
    /// When the probes were done, from the first socket.
    during: Duration,
    /// Sockets answered 503 before they were closed.
    answered_503: usize,
    /// When the last socket was closed by the server, from the first.
    all_closed: Duration,
    /// `/health/live` on the MCP listener once the flood was cut.
    after: u16,
    /// Files the server held beyond its own at the end.
    leftover: usize,
}

/// Opens `sockets` connections that each send the start of a header and then nothing, probes
/// the server while they are open, and waits (at most 10 s a socket) for the server to close
/// every one of them. Opening takes milliseconds, or a second more where a SYN is dropped and
/// sent again, so the tests give the header timeout seconds of room.
fn flood(server: &Server, port: u16, metrics_port: u16, sockets: usize) -> Flood {
    let baseline = server.open_files();
    let started = Instant::now();
    let mut open: Vec<TcpStream> = (0..sockets)
        .map(|_| {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let _ = socket.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ");
            socket
        })
        .collect();
    let opened = started.elapsed();
    let held = server.open_files().saturating_sub(baseline);
    let (live, probe_latency) = timed_get(metrics_port, "/health/live");
    let (ready, _) = timed_get(metrics_port, "/health/ready");
    let (newcomer, newcomer_latency) = timed_get(port, "/health/live");
    let during = started.elapsed();
    let mut answered_503 = 0;
    for socket in &mut open {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (answer, closed) = read_until_closed(socket);
        assert!(
            closed,
            "a half-open socket was still open after {:?}",
            started.elapsed()
        );
        answered_503 += usize::from(status_of(&answer) == 503);
    }
    let all_closed = started.elapsed();
    let (after, _) = timed_get(port, "/health/live");
    let flood = Flood {
        opened,
        held,
        probes: (live, ready),
        probe_latency,
        newcomer,
        newcomer_latency,
        during,
        answered_503,
        all_closed,
        after,
        leftover: server.open_files().saturating_sub(baseline),
    };
    eprintln!(
        "{sockets} half-open sockets opened in {:?}; server held {} more files; 503 for {}; \
         probes on the metrics listener {:?} (/health/live in {:?}); a newcomer on the MCP \
         listener got {} in {:?} (at {:?}); all sockets closed by {:?}; {} files left over",
        flood.opened,
        flood.held,
        flood.answered_503,
        flood.probes,
        flood.probe_latency,
        flood.newcomer,
        flood.newcomer_latency,
        flood.during,
        flood.all_closed,
        flood.leftover
    );
    flood
}

impl Flood {
    /// What every flood must show: the probes answered at once on the metrics listener, a
    /// newcomer to the full MCP listener was turned away at once, never left waiting, every
    /// socket was cut within the header timeout of its accept (the held ones were opened
    /// first), and the server recovered without a file left over.
    fn assert_defended(&self, header_timeout: Duration, limit: usize) {
        assert!(self.held <= limit + 8, "{} files held", self.held);
        assert_eq!(self.probes, (200, 200));
        assert!(self.probe_latency < Duration::from_millis(500));
        assert!(
            self.during < header_timeout,
            "the probes ran after the flood was cut"
        );
        assert!(matches!(self.newcomer, 503 | 0), "{}", self.newcomer);
        assert!(self.newcomer_latency < Duration::from_millis(500));
        assert!(
            self.answered_503 >= 1,
            "the refused sockets were not told why"
        );
        assert!(
            self.all_closed < self.opened + header_timeout + Duration::from_millis(1500),
            "half-open sockets outlived the header timeout: {:?}",
            self.all_closed
        );
        assert_eq!(
            self.after, 200,
            "the MCP listener answers once the flood is cut"
        );
        assert!(self.leftover <= 8, "{} files left over", self.leftover);
    }
}

#[test]
fn half_open_sockets_are_cut_at_the_header_timeout_while_the_probes_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let (port, metrics_port) = (free_port(), free_port());
    let server = start_with_metrics(
        &dir.path().join("mcp.db"),
        port,
        metrics_port,
        &[
            ("MCP_HEADER_TIMEOUT_SECS", "5"),
            ("MCP_MAX_CONNECTIONS", "100"),
        ],
    );
    flood(&server, port, metrics_port, 300).assert_defended(Duration::from_secs(5), 100);
}

#[test]
fn more_half_open_sockets_than_open_files_leave_the_probes_answering() {
    // The server is allowed 256 open files and keeps its default connection limit, which it
    // lowers to fit them (256 less the room for the metrics listener, store and files).
    let dir = tempfile::tempdir().expect("dir");
    let (port, metrics_port) = (free_port(), free_port());
    let settings = with_metrics(metrics_port, &[("MCP_HEADER_TIMEOUT_SECS", "5")]);
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let server = Server::start_with_open_files(&dir.path().join("mcp.db"), port, &settings, 256);
    flood(&server, port, metrics_port, 300).assert_defended(Duration::from_secs(5), 64);
}

#[test]
fn a_body_trickled_in_gets_408_and_its_connection_is_closed() {
    let dir = tempfile::tempdir().expect("dir");
    let (port, metrics_port) = (free_port(), free_port());
    let _server = start_with_metrics(
        &dir.path().join("mcp.db"),
        port,
        metrics_port,
        &[("MCP_BODY_TIMEOUT_SECS", "1")],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // An authenticated caller announces 200 bytes and sends one every 100 ms (20 s in all).
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\nContent-Length: 200\r\n\r\n",
        dev_token()
    );
    stream.write_all(head.as_bytes()).expect("head");
    let sent = Instant::now();
    let mut trickle = stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        for _ in 0..200 {
            if trickle.write_all(b" ").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let (answer, closed) = read_until_closed(&mut stream);
    let cut_after = sent.elapsed();
    let writer_stopped = writer.join().expect("writer");
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("trickled body cut after {cut_after:?}: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
        .expect("a JSON-RPC error");
    assert_eq!(
        body["error"],
        json!({"code": -32600, "message": "the request body did not arrive within 1 s"})
    );
    assert!(closed, "the connection stayed open");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&cut_after),
        "{cut_after:?}"
    );
    assert!(writer_stopped, "the trickle kept being accepted");
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("dir");
    let (port, metrics_port) = (free_port(), free_port());
    let _server = start_with_metrics(
        &dir.path().join("mcp.db"),
        port,
        metrics_port,
        &[
            ("MCP_HEADER_TIMEOUT_SECS", "1"),
            ("MCP_IDLE_TIMEOUT_SECS", "3"),
        ],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(request).expect("first request");
    assert_eq!(read_response(&mut stream).0, 200);

    // Idle past the header timeout but within the idle timeout: still open and reusable.
    std::thread::sleep(Duration::from_secs(2));
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0_u8; 1];
    let still_open =
        matches!(stream.read(&mut byte), Err(error) if error.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).expect("blocking");
    assert!(still_open, "closed before the idle timeout");
    stream.write_all(request).expect("second request");
    assert_eq!(read_response(&mut stream).0, 200);
    let answered = Instant::now();

    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (rest, closed) = read_until_closed(&mut stream);
    let idle_for = answered.elapsed();
    eprintln!("idle connection closed after {idle_for:?}");
    assert!(closed && rest.is_empty(), "{rest:?}");
    assert!(
        (Duration::from_millis(2800)..Duration::from_secs(5)).contains(&idle_for),
        "{idle_for:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    const REQUESTS: usize = 200_000;
    const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("dir");
    let (port, metrics_port) = (free_port(), free_port());
    let server = start_with_metrics(
        &dir.path().join("mcp.db"),
        port,
        metrics_port,
        &[("MCP_WRITE_TIMEOUT_SECS", "2")],
    );
    let baseline = server.open_files();
    // A small receive window, so the server's answers pile up quickly.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = socket.connect(address).await.expect("connect");
    let mut stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");

    // Pipelined requests, never reading an answer.
    let mut writer_stream = stream.try_clone().expect("clone");
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        let batch = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(100);
        for _ in 0..REQUESTS / 100 {
            if writer_stream.write_all(&batch).is_err() {
                return;
            }
        }
    });
    // The server holds one more socket from its accept until it drops the connection.
    while server.open_files() <= baseline && started.elapsed() < WRITE_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut dropped_after = None;
    while started.elapsed() < Duration::from_secs(15) {
        if server.open_files() <= baseline {
            dropped_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .expect("join");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (answers, closed) = read_until_closed(&mut stream);
    let answered = answers
        .windows(12)
        .filter(|window| window == b"HTTP/1.1 200")
        .count();
    eprintln!(
        "stalled reader dropped after {dropped_after:?}; {answered} of {REQUESTS} answers were readable"
    );
    let dropped_after = dropped_after.expect("the server kept the stalled connection");
    assert!(
        (WRITE_TIMEOUT..WRITE_TIMEOUT * 4).contains(&dropped_after),
        "{dropped_after:?}"
    );
    assert!(closed, "the connection was still open");
    assert!(answered < REQUESTS, "{answered}");
}

/// A stateless (2026-07-28) `tools/call` of `tool`: its JSON-RPC body.
fn stateless_call(tool: &str, arguments: Value) -> Value {
    let mut call = tool_call(tool, arguments);
    call["params"]["_meta"] = serde_json::from_str(common::META_2026).expect("meta");
    call
}

/// [`stateless_call`] of `echo` with `token` over `client`: the status, `Retry-After` and
/// the body.
async fn echo_with(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> (u16, Option<String>, Value) {
    let response = client
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .bearer_auth(token)
        .json(&stateless_call("echo", json!({"message": "hi"})))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

#[tokio::test]
async fn a_flood_of_forged_tokens_gets_429_and_spends_no_callers_budget() {
    const FORGED: usize = 300;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start_with(
        &dir.path().join("mcp.db"),
        free_port(),
        &[
            ("MCP_UNAUTHENTICATED_PER_SEC", "5"),
            ("MCP_UNAUTHENTICATED_BURST", "10"),
            ("MCP_RATE_LIMIT_PER_SEC", "1"),
            ("MCP_RATE_LIMIT_BURST", "5"),
        ],
    );
    let client = reqwest::Client::new();
    let alice = dev_token();
    assert_eq!(echo_with(&client, &server.base, &alice).await.0, 200);

    // Tokens naming alice, signed with a key the server does not hold.
    let forged = token_for("alice", b"a key nobody gave this server, 32+ bytes");
    let started = Instant::now();
    let mut statuses = Vec::with_capacity(FORGED);
    let mut refusal = None;
    for _ in 0..FORGED {
        let (status, retry_after, body) = echo_with(&client, &server.base, &forged).await;
        if status == 429 && refusal.is_none() {
            refusal = Some((retry_after, body));
        }
        statuses.push(status);
    }
    let took = started.elapsed();
    let unauthorized = statuses.iter().filter(|status| **status == 401).count();
    let limited = statuses.iter().filter(|status| **status == 429).count();
    eprintln!("{FORGED} forged tokens in {took:?}: {unauthorized} × 401, {limited} × 429");
    assert_eq!(unauthorized + limited, FORGED, "{statuses:?}");
    // The burst, plus what the bucket refilled at 5 a second while the flood went on.
    let refilled = (took.as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (10..=10 + refilled).contains(&unauthorized),
        "{unauthorized} × 401 in {took:?}"
    );
    assert_eq!(statuses[..10], [401; 10]);
    let (retry_after, body) = refusal.expect("a 429");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], -32029);
    assert_eq!(
        body["error"]["message"],
        "Too many requests without a valid token from this address: at most 5 per second \
         (bursts of 10); retry after 1 s"
    );

    // Alice's token, verified before the flood, still passes from the same address, and her
    // own bucket (a burst of 5, one spent before the flood) is as she left it: the forged
    // tokens spent none of it.
    for call in 0..4 {
        let (status, _, body) = echo_with(&client, &server.base, &alice).await;
        assert_eq!(status, 200, "call {call}: {body}");
    }
    assert_eq!(echo_with(&client, &server.base, &alice).await.0, 429);
    // A token this instance has not seen waits until the address's budget refills.
    let bob = token_for("bob", authorizer::mint::DEV_SIGNING_KEY.as_bytes());
    assert_eq!(echo_with(&client, &server.base, &bob).await.0, 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(echo_with(&client, &server.base, &bob).await.0, 200);
}

#[tokio::test]
async fn unread_pages_of_large_documents_pin_a_bounded_amount_of_memory() {
    const DOCUMENTS: usize = 100;
    const READERS: usize = 40;
    /// What 40 unread `state_list` pages may add to the server's peak resident memory. Before
    /// pages were bounded in bytes, answers stopped repeating documents as text and a caller's
    /// requests in flight were capped, the same attack grew a server by 850 MB.
    const PEAK_GROWTH_BOUND_MIB: u64 = 96;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let server = Server::start_with(
        &dir.path().join("mcp.db"),
        port,
        &[
            ("MCP_RATE_LIMIT_PER_SEC", "0"),
            ("MCP_WRITE_TIMEOUT_SECS", "5"),
        ],
    );
    let client = reqwest::Client::new();
    let token = dev_token();
    let value = "x".repeat(64 * 1024 - 64);
    for index in 0..DOCUMENTS {
        let arguments = json!({"key": format!("doc-{index:03}"), "value": value});
        let response = client
            .post(format!("{}/mcp", server.base))
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "state_set")
            .bearer_auth(&token)
            .json(&stateless_call("state_set", arguments))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["result"]["isError"], json!(false), "{body}");
    }
    let before_kib = server.memory_kib("VmRSS");

    // One ~300-byte request per connection for a page of 100 documents, never read.
    let body = stateless_call("state_list", json!({"limit": 100})).to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: {ACCEPT_BOTH}\r\n\
         Mcp-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: state_list\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer");
        let stream = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("connect");
        let mut stream = stream.into_std().expect("std stream");
        stream.set_nonblocking(false).expect("blocking");
        stream.write_all(request.as_bytes()).expect("request");
        readers.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak_kib = server.memory_kib("VmHWM");
    let (live, _) = timed_get(port, "/health/live");

    // Each socket's first bytes: the in-flight cap holds 32 pages, the rest are refused.
    let mut statuses = Vec::with_capacity(READERS);
    for stream in &mut readers {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).expect("a status line");
        statuses.push(status_of(&head));
    }
    let growth_mib = peak_kib.saturating_sub(before_kib) / 1024;
    eprintln!(
        "{READERS} unread pages: resident {} MiB before, peak {} MiB (+{growth_mib} MiB)",
        before_kib / 1024,
        peak_kib / 1024
    );
    assert_eq!(live, 200);
    // A page the kernel's socket buffers took whole gives its slot back, so a few more than 32
    // may be answered; the rest are refused, none is lost.
    let answered = statuses.iter().filter(|status| **status == 200).count();
    let refused = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!(answered + refused, READERS, "{statuses:?}");
    assert!((32..READERS).contains(&answered), "{statuses:?}");
    assert!(
        growth_mib < PEAK_GROWTH_BOUND_MIB,
        "peak grew {growth_mib} MiB"
    );
}

#[test]
fn a_public_bind_needs_a_signing_key_of_its_own() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let bind = format!("0.0.0.0:{port}");
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-server"));
        command
            .env_remove("MCP_SIGNING_KEY")
            .env_remove("MCP_SECRET_ID")
            .env_remove("MCP_AUTH")
            .env("MCP_BIND", &bind)
            .env("MCP_METRICS_BIND", "off")
            .env(
                "MCP_STORE_URL",
                format!("sqlite://{}", dir.path().join("mcp.db").display()),
            )
            .env(
                "MCP_FILES_URL",
                format!("file://{}", dir.path().join("files").display()),
            )
            .env("RUST_LOG", "warn");
        command
    };
    let refused = command().output().expect("run");
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        format!(
            "mcp-server: invalid MCP_SIGNING_KEY=\"\": is required when MCP_BIND ({bind}) is not a \
             loopback address: the built-in development key is public. Set MCP_SIGNING_KEY (at \
             least 32 bytes) or MCP_SECRET_ID"
        )
    );
    assert!(!answers_200(&format!(
        "http://127.0.0.1:{port}/health/live"
    )));

    let child = command()
        .env(
            "MCP_SIGNING_KEY",
            "a-key-of-this-deployment-at-least-32-bytes",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    server.wait_ready();
    assert_eq!(server.terminate(), Some(0));
}
