//! Tower layers around rmcp's Streamable HTTP service, outermost first:
//!
//! 1. [`principal`]: decides who the request acts for and stores it in the request.
//! 2. [`jsonrpc_guard`]: 413 for oversize bodies, JSON-RPC errors for non-JSON and batches.
//! 3. [`session_gate`]: checks a legacy `Mcp-Session-Id` against the store (404 if
//!    unknown, expired or another principal's) and slides its expiry.
//! 4. [`json_response`]: answers a single-response SSE body as plain JSON.
//!
//! Each is an axum `from_fn` middleware, so tests drive them with `oneshot`.
//! Beside them, [`protected_resource`] serves the RFC 9728 metadata documents.

pub mod json_response;
pub mod jsonrpc_guard;
pub mod principal;
pub mod protected_resource;
pub mod session_gate;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// JSON-RPC error code for an unknown or expired session (as the reference SDKs use).
pub const SESSION_NOT_FOUND: i64 = -32001;

/// A JSON-RPC error response with no request id, for failures before dispatch.
pub fn jsonrpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
