//! The outermost layer of `/mcp`: request id, trace id, the request log line and metrics.
//!
//! Every request gets an id: the one the host set ([`RequestId`], the API Gateway or Lambda
//! request id), else a well-formed `x-request-id` from the caller, else a fresh UUID. It is
//! returned as `x-request-id` and carried by every log line of the request (the span), with
//! the trace id of an incoming `traceparent` (W3C) or `X-Amzn-Trace-Id` (X-Ray) header.
//!
//! After the inner layers ran, one `mcp::request` line says who called (the subject, never
//! the token), the protocol version, method, tool, status, outcome and latency, and the
//! request metrics are recorded from the same [`RequestState`]. The JSON-RPC error code comes
//! from the handler where it answered a `tools/call`; only other JSON answers are read again.

use std::{sync::Arc, time::Instant};

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, header},
    response::Response,
};
use serde::Deserialize;
use tracing::Instrument;

use super::state::{Refusal, RequestState};
use crate::{
    principal::Principal,
    telemetry::{ToolOutcome, metrics::Metrics},
};

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request id the host already knows (the Lambda host sets the API Gateway request id).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A trace id the host already knows (the Lambda context's X-Ray trace id).
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// The stage: creates the request's [`RequestState`], runs the rest of the path inside its
/// span, then logs and counts the outcome.
pub async fn observe<N, F>(metrics: &Metrics, mut request: Request, next: N) -> Response
where
    N: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    let started = Instant::now();
    let state = Arc::new(begin(&request));
    let http_method = request.method().clone();
    request.extensions_mut().insert(state.clone());
    let response = next(request).instrument(state.span.clone()).await;
    let (mut response, rpc_error) = match state.answer() {
        Some(answer) => (response, answer.rpc_error),
        None => rpc_error_code(response).await,
    };

    let status = response.status();
    let message = state.message();
    let method = match (&http_method, message) {
        (&Method::POST, Some(message)) => {
            Metrics::method_label(message.method.as_deref().unwrap_or("response"))
        }
        (&Method::POST, None) => "unparsed",
        (&Method::GET, _) => "GET",
        (&Method::DELETE, _) => "DELETE",
        _ => "other",
    };
    let tool = message
        .and_then(|message| message.tool.as_deref())
        .map(|tool| metrics.tool_label(tool));
    let seconds = started.elapsed().as_secs_f64();
    metrics.request(method, status.as_u16(), seconds);
    if let Some(code) = rpc_error {
        metrics.error(method, &code.to_string());
    } else if status.is_client_error() || status.is_server_error() {
        metrics.error(method, &format!("http_{}", status.as_u16()));
    }
    let refusal = state.refusal();
    match refusal {
        Some(Refusal::Unauthorized(reason)) => metrics.auth_failure(reason),
        Some(Refusal::RateLimited) => metrics.rate_limited(),
        None => {}
    }
    let tool_outcome = match (state.answer(), rpc_error) {
        (Some(answer), _) => Some(answer.tool_outcome.as_str()),
        (None, Some(_)) if method == "tools/call" && status.is_success() => {
            Some(ToolOutcome::RpcError.as_str())
        }
        _ => None,
    };
    if let (Some(tool), Some(outcome)) = (tool, tool_outcome) {
        metrics.tool_call(tool, outcome);
    }
    let outcome = if status.is_server_error() {
        "failed"
    } else if refusal == Some(Refusal::RateLimited) {
        "rate_limited"
    } else if matches!(refusal, Some(Refusal::Unauthorized(_))) {
        "unauthorized"
    } else if status.is_client_error() {
        "refused"
    } else if rpc_error.is_some() {
        "error"
    } else {
        tool_outcome.unwrap_or("ok")
    };
    tracing::info!(
        target: "mcp::request",
        parent: &state.span,
        principal = state.principal().map(Principal::as_str).unwrap_or(""),
        protocol_version = %state.protocol_version,
        method,
        tool = tool.unwrap_or(""),
        status = status.as_u16(),
        outcome,
        latency_ms = seconds * 1000.0,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&state.request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The request's state with what its headers and the host tell: the ids, the protocol
/// version and the span every log line of the request runs in.
fn begin(request: &Request) -> RequestState {
    let (headers, extensions) = (request.headers(), request.extensions());
    let request_id = extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .or_else(|| caller_request_id(headers))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let trace_id = trace_id(headers)
        .or_else(|| extensions.get::<TraceId>().map(|id| id.0.clone()))
        .unwrap_or_default();
    let protocol_version = headers
        .get("mcp-protocol-version")
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_protocol_version(value))
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!("request", %request_id, %trace_id);
    RequestState::new(request_id, trace_id, protocol_version, span)
}

/// A caller's `x-request-id`, if it is a short token of safe characters (it reaches the logs).
fn caller_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let safe = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    safe.then(|| value.to_owned())
}

/// The trace id of a W3C `traceparent` or an X-Ray `X-Amzn-Trace-Id` header, if well formed.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(traceparent) = text("traceparent") {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        if let [version, trace, parent, flags] = parts.as_slice()
            && version.len() == 2
            && is_hex(trace, 32)
            && is_hex(parent, 16)
            && flags.len() == 2
            && trace.bytes().any(|b| b != b'0')
        {
            return Some((*trace).to_owned());
        }
    }
    xray_trace_id(text("x-amzn-trace-id")?)
}

/// The `Root` of an X-Ray trace header (`Root=1-…-…;Parent=…;Sampled=1`), if well formed.
pub fn xray_trace_id(header: &str) -> Option<String> {
    header
        .split(';')
        .find_map(|field| field.trim().strip_prefix("Root="))
        .filter(|root| {
            let parts: Vec<&str> = root.split('-').collect();
            matches!(parts.as_slice(), ["1", time, id] if is_hex(time, 8) && is_hex(id, 24))
        })
        .map(str::to_owned)
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `YYYY-MM-DD`, the shape of every MCP protocol version.
fn is_protocol_version(value: &str) -> bool {
    value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// The parts of a JSON-RPC answer this layer reads.
#[derive(Deserialize)]
struct Answer {
    error: Option<AnswerError>,
}

#[derive(Deserialize)]
struct AnswerError {
    code: i64,
}

/// The JSON-RPC error code of a JSON answer; the body is buffered only for JSON answers
/// (SSE streams pass untouched).
async fn rpc_error_code(response: Response) -> (Response, Option<i64>) {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "response body could not be read");
            return (Response::from_parts(parts, Body::empty()), None);
        }
    };
    let code = serde_json::from_slice::<Answer>(&bytes)
        .ok()
        .and_then(|answer| answer.error)
        .map(|error| error.code);
    // The caller's in-flight slot stays with the answer until it has been sent.
    let body = match parts.extensions.get::<super::in_flight::Held>() {
        Some(held) => held.body(Body::from(bytes)),
        None => Body::from(bytes),
    };
    (Response::from_parts(parts, body), code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn trace_ids_come_from_w3c_or_xray_headers() {
        let w3c = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        assert_eq!(
            trace_id(&w3c).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let xray = headers(&[(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )]);
        assert_eq!(
            trace_id(&xray).as_deref(),
            Some("1-5759e988-bd862e3fe1be46a994272793")
        );
        for bad in [
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("traceparent", "00-xyz-00f067aa0ba902b7-01"),
            ("x-amzn-trace-id", "Root=1-zz-bd862e3fe1be46a994272793"),
            (
                "x-amzn-trace-id",
                "Self=1-5759e988-bd862e3fe1be46a994272793",
            ),
        ] {
            assert_eq!(trace_id(&headers(&[bad])), None, "{bad:?}");
        }
    }

    #[test]
    fn caller_request_ids_are_taken_only_when_safe() {
        assert_eq!(
            caller_request_id(&headers(&[("x-request-id", "abc-123_x.y:z")])).as_deref(),
            Some("abc-123_x.y:z")
        );
        assert_eq!(
            caller_request_id(&headers(&[("x-request-id", "a b")])),
            None
        );
        assert_eq!(
            caller_request_id(&headers(&[("x-request-id", &"a".repeat(129))])),
            None
        );
    }

    #[test]
    fn protocol_versions_are_dates() {
        assert!(is_protocol_version("2026-07-28"));
        assert!(!is_protocol_version("2026-07-2x"));
        assert!(!is_protocol_version("latest"));
    }
}
