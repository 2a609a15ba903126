//! The Lambda host: API Gateway (REST and HTTP API) and function URL events into the one service.
//!
//! `bin/mcp-lambda.rs` opens the backends once per instance and hands the
//! [`crate::app::build`] router to [`run`]. Per event, [`LambdaHandler`]:
//!
//! 1. checks the raw event (a JSON object, a decodable base64 body) and answers
//!    400 itself when it is malformed, instead of letting the runtime fail the
//!    invocation (API Gateway would turn that into an opaque 502);
//! 2. converts it with lambda_http (REST v1, HTTP API v2 and function URL
//!    payloads);
//! 3. strips the stage (`/Prod/mcp` → `/mcp`) and `MCP_BASE_PATH` so routes
//!    are the same as on `mcp-server`;
//! 4. answers `GET /mcp` with 405 unless long-lived streams are on (a standalone stream
//!    holds the instance; when on, it is fed from the caller's change feed, see
//!    [`crate::listen::session_stream`]);
//! 5. takes the principal and its scopes from the API Gateway authorizer's context
//!    (`sub` and `scope`, set by the JWT authorizer after it verified the token);
//!    without an authorizer (a function URL) the service verifies the token itself;
//! 6. logs inside a span carrying the Lambda request id, and hands the API Gateway request
//!    id and the X-Ray trace id to the request log (`http::observe`);
//! 7. answers in the configured [`LambdaResponse`] mode. Streamed (the default, for API
//!    Gateway REST in STREAM mode and function URLs with RESPONSE_STREAM), every answer
//!    (JSON, SSE, errors, probes) is a metadata prelude and then its body chunk by chunk, so
//!    SSE events reach the client while the call runs; a stream still open at
//!    `MCP_STREAM_MAX_SECS` is ended cleanly. Buffered, the answer is one document in the
//!    event source's shape;
//! 8. runs a task instead when the event is one of the asynchronous invocations the
//!    function sends itself to do a task's work (`{"mcpTaskRun": …}`, see [`crate::tasks`]);
//! 9. writes the invocation's metrics as CloudWatch EMF lines once the answer is complete
//!    (Lambda runs one invocation per instance at a time, so what was recorded since the
//!    last flush is this invocation's).

use std::{convert::Infallible, pin::Pin, sync::Arc, time::Duration};

use axum::{
    Router,
    http::{HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use lambda_http::{
    LambdaEvent, RequestExt, Service,
    lambda_runtime::{self, Context, MetadataPrelude, StreamResponse, service_fn},
    request::{LambdaRequest, RequestContext},
};
use serde_json::{Value, json};
use tower::ServiceExt;
use tracing::Instrument;

use crate::{
    codes::INVALID_REQUEST,
    config::LambdaResponse,
    context::ServerContext,
    http::{
        auth::Grant,
        jsonrpc_error,
        observe::{self, RequestId, TraceId},
    },
    principal::Principal,
    tasks::TaskRun,
    telemetry::{emf, metrics::Metrics},
};

/// Serves Lambda events until the runtime stops the instance, answering in `mode`.
///
/// A streamed answer whose client went away fails the runtime's request that carries it
/// (the Runtime API closes it: "broken pipe"), and lambda_runtime then stops its loop. That
/// ends one invocation, not the instance: the loop starts again and asks for the next event,
/// keeping the warm instance and its sessions. Only a runtime that fails again at once, three
/// times in a row, stops the process.
pub async fn run(
    handler: LambdaHandler,
    mode: LambdaResponse,
) -> Result<(), lambda_runtime::Error> {
    let mut quick_failures = 0;
    loop {
        let started = std::time::Instant::now();
        let Err(error) = serve_events(handler.clone(), mode).await else {
            return Ok(());
        };
        quick_failures = if started.elapsed() < RUNTIME_RESTART_WINDOW {
            quick_failures + 1
        } else {
            1
        };
        if quick_failures >= 3 {
            return Err(error);
        }
        tracing::warn!(%error, "a Runtime API request failed (a client left its stream?); serving the next event");
    }
}

/// A runtime that fails within this long of starting counts as failing at once.
const RUNTIME_RESTART_WINDOW: Duration = Duration::from_secs(1);

/// One run of lambda_runtime's event loop.
async fn serve_events(
    handler: LambdaHandler,
    mode: LambdaResponse,
) -> Result<(), lambda_runtime::Error> {
    match mode {
        LambdaResponse::Stream => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
                let handler = handler.clone();
                async move { handler.stream(event).await }
            }))
            .await
        }
        LambdaResponse::Buffered => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
                let handler = handler.clone();
                async move { handler.handle(event).await }
            }))
            .await
        }
    }
}

/// The body of a streamed answer, as the runtime sends it on.
pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<Bytes, lambda_runtime::Error>> + Send>>;

/// A streamed answer: the metadata prelude (status, headers, cookies), then the body.
pub type StreamedAnswer = StreamResponse<AnswerStream>;

/// Where EMF lines go: stdout (CloudWatch Logs) in production, a collector in tests.
pub type MetricSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Writes an invocation's metrics as EMF lines.
#[derive(Clone)]
struct EmfWriter {
    metrics: Arc<Metrics>,
    namespace: Arc<str>,
    sink: MetricSink,
}

/// Turns one Lambda event into one HTTP response event.
#[derive(Clone)]
pub struct LambdaHandler {
    router: Router,
    /// Whether `GET /mcp` is served (long-lived streams on) or answered 405.
    standalone_streams: bool,
    base_path: Option<String>,
    emf: Option<EmfWriter>,
    stream_max: Duration,
    /// Runs the task invocations this function sends itself (see [`crate::tasks`]).
    tasks: Option<Arc<ServerContext>>,
}

impl LambdaHandler {
    /// Serves `router` (from [`crate::app::build`]) after the Lambda-only steps ([`steps`]).
    pub fn new(router: Router, base_path: Option<String>) -> Self {
        Self {
            router,
            standalone_streams: false,
            base_path,
            emf: None,
            stream_max: Duration::from_secs(crate::config::DEFAULT_STREAM_MAX_SECS),
            tasks: None,
        }
    }

    /// Serves `GET /mcp` instead of answering 405: with long-lived streams on.
    pub fn with_standalone_streams(mut self, on: bool) -> Self {
        self.standalone_streams = on;
        self
    }

    /// Ends every streamed answer still open after `limit` (`MCP_STREAM_MAX_SECS`).
    pub fn with_stream_max(mut self, limit: Duration) -> Self {
        self.stream_max = limit;
        self
    }

    /// Runs task invocations (`{"mcpTaskRun": …}` events) over `context`, the service's.
    pub fn with_task_runs(mut self, context: Arc<ServerContext>) -> Self {
        self.tasks = Some(context);
        self
    }

    /// Runs the task an asynchronous invocation asks for, if `payload` is one; its answer
    /// goes nowhere (Lambda drops an `Event` invocation's response).
    async fn run_task(&self, payload: &Value) -> Option<Value> {
        let run = TaskRun::from_event(payload)?;
        let Some(context) = &self.tasks else {
            tracing::error!(task = %run.task_id, "task invocation on a handler without tasks");
            return Some(json!({ "taskRun": "refused" }));
        };
        let answer = match Principal::new(&run.principal) {
            Ok(principal) => {
                crate::tasks::run(context.clone(), principal, run.task_id).await;
                json!({ "taskRun": "finished" })
            }
            Err(error) => {
                tracing::error!(task = %run.task_id, %error, "task invocation names no valid principal");
                json!({ "taskRun": "refused" })
            }
        };
        self.flush_metrics().await;
        Some(answer)
    }

    /// Writes `metrics` as EMF lines in `namespace` to stdout after every invocation.
    pub fn with_metrics(self, metrics: Arc<Metrics>, namespace: &str) -> Self {
        let stdout: MetricSink = Arc::new(|line: &str| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        });
        self.with_metric_sink(metrics, namespace, stdout)
    }

    /// Writes `metrics` as EMF lines to `sink` after every invocation.
    pub fn with_metric_sink(
        mut self,
        metrics: Arc<Metrics>,
        namespace: &str,
        sink: MetricSink,
    ) -> Self {
        self.emf = Some(EmfWriter {
            metrics,
            namespace: namespace.into(),
            sink,
        });
        self
    }

    /// Handles one event with a buffered answer in the event source's shape; never fails
    /// the invocation, so every caller gets an HTTP answer.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Infallible> {
        let LambdaEvent { payload, context } = event;
        if let Some(answer) = self.run_task(&payload).await {
            return Ok(answer);
        }
        let request = match parse_event(payload, &context) {
            Ok(request) => request,
            Err(reason) => return Ok(bad_event(reason)),
        };
        // lambda_http's adapter builds the request and shapes the response for the event's origin.
        let mut adapter = lambda_http::Adapter::from(self.service());
        let Ok(response) = adapter.call(LambdaEvent::new(request, context)).await;
        let response = serde_json::to_value(response).unwrap_or_else(|error| {
            tracing::error!(%error, "response could not be serialized");
            bad_gateway()
        });
        self.flush_metrics().await;
        Ok(response)
    }

    /// Handles one event with a streamed answer: the prelude as soon as the service has
    /// answered, then each body chunk as it is written, until the body ends or the stream
    /// bound passes. Never fails the invocation.
    pub async fn stream(&self, event: LambdaEvent<Value>) -> Result<StreamedAnswer, Infallible> {
        let LambdaEvent { payload, context } = event;
        if let Some(answer) = self.run_task(&payload).await {
            return Ok(json_stream(StatusCode::OK, Bytes::from(answer.to_string())));
        }
        let request = match parse_event(payload, &context) {
            Ok(request) => request,
            Err(reason) => return Ok(bad_event_stream(reason)),
        };
        let deadline = tokio::time::Instant::now() + self.stream_max;
        let mut adapter = lambda_http::StreamAdapter::from(self.service());
        let Ok(StreamResponse {
            metadata_prelude,
            stream,
        }) = adapter.call(LambdaEvent::new(request, context)).await;
        Ok(StreamResponse {
            metadata_prelude,
            stream: self.clone().bounded(stream, deadline),
        })
    }

    /// The router after the Lambda-only [`steps`].
    fn service(
        &self,
    ) -> impl Service<lambda_http::Request, Response = Response, Error = Infallible, Future: Send> + use<>
    {
        let router = self.router.clone();
        let base_path = self.base_path.clone();
        let standalone_streams = self.standalone_streams;
        tower::service_fn(move |request: lambda_http::Request| {
            let router = router.clone();
            let base_path = base_path.clone();
            async move { Ok(steps(request, base_path.as_deref(), standalone_streams, router).await) }
        })
    }

    /// `body` until it ends or `deadline` passes, then the invocation's metrics (also written
    /// when the answer is dropped first because its client left).
    fn bounded<S, E>(self, body: S, deadline: tokio::time::Instant) -> AnswerStream
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: Into<lambda_runtime::Error> + Send,
    {
        let stream_max = self.stream_max;
        let open = Some((
            body,
            Box::pin(tokio::time::sleep_until(deadline)),
            MetricsOnDrop(Some(self)),
        ));
        Box::pin(futures::stream::unfold(open, move |open| async move {
            let (mut body, mut bound, mut metrics) = open?;
            let next = tokio::select! {
                chunk = body.next() => chunk,
                () = &mut bound => {
                    tracing::info!(
                        limit_secs = stream_max.as_secs(),
                        "stream ended at MCP_STREAM_MAX_SECS; the client reconnects or retries"
                    );
                    None
                }
            };
            match next {
                Some(chunk) => Some((chunk.map_err(Into::into), Some((body, bound, metrics)))),
                None => {
                    if let Some(handler) = metrics.0.take() {
                        handler.flush_metrics().await;
                    }
                    None
                }
            }
        }))
    }

    async fn flush_metrics(&self) {
        let Some(emf) = &self.emf else { return };
        let samples = emf.metrics.take_samples().await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        for line in emf::lines(&emf.namespace, now_ms, samples) {
            (emf.sink)(&line);
        }
    }
}

/// Writes the invocation's metrics if its streamed answer is dropped before it ended: the
/// runtime drops it when the client has left, and the next invocation's lines must not carry
/// this one's values.
struct MetricsOnDrop(Option<LambdaHandler>);

impl Drop for MetricsOnDrop {
    fn drop(&mut self) {
        let Some(handler) = self.0.take() else { return };
        if handler.emf.is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { handler.flush_metrics().await });
        }
    }
}

/// The event as lambda_http's request type, or why it is not one (logged here).
fn parse_event(payload: Value, context: &Context) -> Result<LambdaRequest, &'static str> {
    if let Err(reason) = check_event(&payload) {
        tracing::warn!(request_id = %context.request_id, reason, "malformed Lambda event");
        return Err(reason);
    }
    serde_json::from_value(payload).map_err(|error| {
        tracing::warn!(request_id = %context.request_id, %error, "unrecognized Lambda event");
        "not an API Gateway (REST or HTTP API) or function URL event"
    })
}

/// What lambda_http would panic on or reject, found first.
fn check_event(payload: &Value) -> Result<(), &'static str> {
    let Some(event) = payload.as_object() else {
        return Err("the event is not a JSON object");
    };
    let encoded = event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true);
    if encoded && let Some(body) = event.get("body").and_then(Value::as_str) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "isBase64Encoded is true but the body is not valid base64")?;
    }
    Ok(())
}

/// The JSON-RPC error body of a malformed event.
fn bad_event_body(reason: &str) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": INVALID_REQUEST.0, "message": format!("Bad request: {reason}") }
    })
    .to_string()
}

/// A 400 in the shape every HTTP event source accepts (REST, HTTP API, function URL).
fn bad_event(reason: &str) -> Value {
    json!({
        "statusCode": 400,
        "headers": { "content-type": "application/json" },
        "body": bad_event_body(reason),
        "isBase64Encoded": false
    })
}

/// The same 400 as a streamed answer.
fn bad_event_stream(reason: &str) -> StreamedAnswer {
    json_stream(StatusCode::BAD_REQUEST, Bytes::from(bad_event_body(reason)))
}

/// A streamed answer of one JSON body.
fn json_stream(status_code: StatusCode, body: Bytes) -> StreamedAnswer {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    StreamResponse {
        metadata_prelude: MetadataPrelude {
            status_code,
            headers,
            cookies: Vec::new(),
        },
        stream: Box::pin(futures::stream::once(async move { Ok(body) })),
    }
}

fn bad_gateway() -> Value {
    json!({
        "statusCode": 502,
        "headers": { "content-type": "application/json" },
        "body": r#"{"error":"response could not be encoded"}"#,
        "isBase64Encoded": false
    })
}

/// Removes the API Gateway stage and the configured base path from the request path.
fn strip_prefixes(
    mut request: lambda_http::Request,
    base_path: Option<&str>,
) -> lambda_http::Request {
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.clone(),
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
        _ => None,
    };
    let mut path = request.uri().path().to_owned();
    if let Some(stage) = stage.filter(|stage| stage != "$default") {
        path = strip_segment(&path, &format!("/{stage}"));
    }
    if let Some(base) = base_path {
        path = strip_segment(&path, base);
    }
    if path != request.uri().path() {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(rewritten) = path_and_query.parse() {
            parts.path_and_query = Some(rewritten);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// `path` without a leading `prefix` segment (`/Prod/mcp` minus `/Prod` is `/mcp`).
fn strip_segment(path: &str, prefix: &str) -> String {
    match path.strip_prefix(prefix) {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => path.to_owned(),
    }
}

/// The Lambda host's steps, in order, before the router and its `/mcp` path
/// ([`crate::http::pipeline`]): the stage and base path come off the path; the invocation's
/// span and the request and trace ids the request log takes; the API Gateway authorizer's
/// principal and grant (403 for a subject that cannot be a principal); `GET /mcp` answered
/// 405 unless long-lived streams are on (`standalone_streams`), as the spec allows.
async fn steps(
    request: lambda_http::Request,
    base_path: Option<&str>,
    standalone_streams: bool,
    router: Router,
) -> Response {
    let mut request = strip_prefixes(request, base_path);
    let span = invocation_span(&mut request);
    async move {
        if let Err(refusal) = authorizer_principal(&mut request) {
            return *refusal;
        }
        if !standalone_streams && request.method() == Method::GET && request.uri().path() == "/mcp"
        {
            return no_standalone_stream();
        }
        let Ok(response) = router.oneshot(request.map(axum::body::Body::new)).await;
        response
    }
    .instrument(span)
    .await
}

/// The answer to `GET /mcp` when long-lived streams are off.
fn no_standalone_stream() -> Response {
    let mut response = (
        StatusCode::METHOD_NOT_ALLOWED,
        "GET /mcp (a standalone SSE stream) is not offered by the Lambda host; use POST",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    response
}

/// The subject and scope string the API Gateway authorizer vouched for: its context's `sub`
/// and `scope`, or an HTTP API JWT authorizer's claims. No scope means none granted.
fn authorizer_identity(request: &lambda_http::Request) -> Option<(String, String)> {
    let authorizer = request.request_context_ref()?.authorizer()?;
    let field = |name: &str| authorizer.fields.get(name)?.as_str().map(str::to_owned);
    let claim = |name: &str| authorizer.jwt.as_ref()?.claims.get(name).cloned();
    let subject = field("sub")
        .or_else(|| field("principalId"))
        .or_else(|| claim("sub"))?;
    let scope = field("scope")
        .or_else(|| claim("scope"))
        .unwrap_or_default();
    Some((subject, scope))
}

/// Inserts the authorizer's principal and grant; a subject that is not a valid principal is refused.
fn authorizer_principal(request: &mut lambda_http::Request) -> Result<(), Box<Response>> {
    if let Some((subject, scope)) = authorizer_identity(request) {
        match Principal::new(&subject) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                request
                    .extensions_mut()
                    .insert(Grant::from_scope_string(&scope));
            }
            Err(error) => {
                tracing::warn!(%error, "authorizer context carries an unusable subject");
                return Err(Box::new(jsonrpc_error(
                    StatusCode::FORBIDDEN,
                    INVALID_REQUEST,
                    "The authorizer's subject is not usable as a principal",
                )));
            }
        }
    }
    Ok(())
}

/// The span carrying the Lambda request id that the request runs in, so every log line has
/// it; gives the request log the API Gateway request id (the one clients and access logs
/// see) and the X-Ray trace id.
fn invocation_span(request: &mut lambda_http::Request) -> tracing::Span {
    let lambda_request_id = request
        .lambda_context_ref()
        .map(|context| context.request_id.clone())
        .unwrap_or_default();
    let gateway_request_id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    };
    let trace_id = request
        .lambda_context_ref()
        .and_then(|context| context.xray_trace_id.as_deref())
        .and_then(observe::xray_trace_id);
    let request_id = gateway_request_id.unwrap_or_else(|| lambda_request_id.clone());
    request.extensions_mut().insert(RequestId(request_id));
    if let Some(trace_id) = trace_id {
        request.extensions_mut().insert(TraceId(trace_id));
    }
    tracing::info_span!("invocation", lambda_request_id = %lambda_request_id, method = %request.method(), path = %request.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_and_base_path_come_off_whole_segments_only() {
        assert_eq!(strip_segment("/Prod/mcp", "/Prod"), "/mcp");
        assert_eq!(strip_segment("/Prod", "/Prod"), "/");
        assert_eq!(strip_segment("/Production/mcp", "/Prod"), "/Production/mcp");
        assert_eq!(strip_segment("/mcp", "/v1"), "/mcp");
    }

    #[test]
    fn malformed_events_are_named() {
        assert_eq!(
            check_event(&json!([])),
            Err("the event is not a JSON object")
        );
        assert_eq!(
            check_event(&json!({"isBase64Encoded": true, "body": "%%%"})),
            Err("isBase64Encoded is true but the body is not valid base64")
        );
        assert_eq!(
            check_event(&json!({"isBase64Encoded": true, "body": "e30="})),
            Ok(())
        );
    }
}
