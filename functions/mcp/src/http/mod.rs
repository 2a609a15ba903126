//! Tower layers around rmcp's Streamable HTTP service, outermost first:
//!
//! 0. [`observe::observe`]: request id, trace id, the request log line and metrics.
//! 1. [`auth::authenticate`]: verifies the bearer token (401) and stores the caller's
//!    principal and scopes in the request.
//! 2. [`rate_limit`]: 429 with `Retry-After` when the caller's bucket is empty;
//!    [`in_flight`]: 429 when the caller already has its most requests in flight here.
//! 3. [`jsonrpc_guard`]: 413 for oversize bodies, JSON-RPC errors for non-JSON and batches.
//! 4. [`auth::authorize`]: 403 when the token lacks the scope the message needs.
//! 5. [`session_gate`]: checks a legacy `Mcp-Session-Id` against the store (404 if
//!    unknown, expired or another principal's) and slides its expiry; a `DELETE` that
//!    ended its session answers 204; an `initialize` whose session could not be created
//!    answers 429, 413 or 503 instead of a session id nobody can serve.
//! 6. [`json_response`]: answers a single-response SSE body as plain JSON.
//!
//! Each is an axum `from_fn` middleware, so tests drive them with `oneshot`.
//! Beside them, [`protected_resource`] serves the RFC 9728 metadata documents and, for a
//! Cognito deployment, [`authorization_server`] the RFC 8414 ones and [`registration`] the
//! RFC 7591 endpoint.

pub mod auth;
pub mod authorization_server;
pub mod in_flight;
pub mod json_response;
pub mod jsonrpc_guard;
pub mod observe;
pub mod protected_resource;
pub mod rate_limit;
pub mod registration;
pub mod session_gate;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// JSON-RPC error code for an unknown or expired session (as the reference SDKs use).
pub const SESSION_NOT_FOUND: i64 = -32001;

/// JSON-RPC error code for a message that is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;

/// JSON-RPC error code for invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;

/// JSON-RPC error code for an internal error.
pub const INTERNAL_ERROR: i64 = -32603;

/// JSON-RPC error code (implementation-defined server error) for a request refused because the
/// caller holds as many sessions as it may.
pub const TOO_MANY_SESSIONS: i64 = -32000;

/// 503 for a store that did not answer: the request may be sent again.
pub fn store_unavailable() -> Response {
    jsonrpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        -32603,
        "Session store unavailable; retry shortly",
    )
}

/// A JSON-RPC error response with no request id, for failures before dispatch.
pub fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    jsonrpc_error_for(None, status, code, message)
}

/// A JSON-RPC error response answering the request with `id` (`null` when there is none).
pub fn jsonrpc_error_for(
    id: Option<&serde_json::Value>,
    status: StatusCode,
    code: i64,
    message: &str,
) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `body`, keeping `guard` alive until the body has been sent or dropped: how a request's
/// hold on something (its caller's in-flight slot, its connection's activity) lasts exactly
/// as long as its answer.
pub fn held_until_sent<G: Send + Unpin + 'static>(
    body: axum::body::Body,
    guard: G,
) -> axum::body::Body {
    axum::body::Body::new(Guarded {
        body,
        _guard: guard,
    })
}

struct Guarded<G> {
    body: axum::body::Body,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Guarded<G> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
