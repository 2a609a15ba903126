//! Rejects bodies that are not one JSON-RPC message before anything else reads them.
//!
//! rmcp would answer a malformed body with a bare 415; clients deserve the
//! JSON-RPC errors the spec names, and the store deserves not to be asked
//! about junk. So a POST body that is too large gets 413, one that is not JSON
//! gets 400 with -32700 (parse error), and a batch or a non-object gets 400
//! with -32600 (invalid request); one the client did not send in time gets 408.
//! A good body is handed on, already buffered, with its [`RpcMessage`] summary in
//! the request extensions for the scope check.

use std::{error::Error, time::Duration};

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::Response,
};
use serde_json::Value;

use super::{INVALID_REQUEST, jsonrpc_error};
use crate::telemetry::RequestFacts;

const PARSE_ERROR: i64 = -32700;

/// What the later layers need to know of a POSTed message, without parsing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcMessage {
    /// `None` for a response to a server request.
    pub method: Option<String>,
    /// The id of a request (`None` for a notification or a response).
    pub id: Option<Value>,
    /// `params.name` of a `tools/call`.
    pub tool: Option<String>,
    /// The id a response or error answers: the client's answer to a server request.
    pub answers: Option<Value>,
}

/// How a host's request body ends when the client has not sent it within the host's body
/// timeout (`mcp-server`'s `MCP_BODY_TIMEOUT_SECS`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimeout(pub Duration);

/// The largest body accepted, in bytes.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The middleware.
pub async fn guard(
    State(BodyLimit(limit)): State<BodyLimit>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(error) => match timed_out(&error) {
            Some(timeout) => {
                return jsonrpc_error(
                    StatusCode::REQUEST_TIMEOUT,
                    INVALID_REQUEST,
                    &timeout.to_string(),
                );
            }
            None => {
                return jsonrpc_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    INVALID_REQUEST,
                    &format!("Request body exceeds the {limit}-byte limit"),
                );
            }
        },
    };
    let summary = match summarize(&bytes) {
        Ok(summary) => summary,
        Err(rejection) => return *rejection,
    };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    RequestFacts::note(request.extensions(), |facts| {
        facts.method = Some(summary.method.clone().unwrap_or_else(|| "response".into()));
        facts.tool.clone_from(&summary.tool);
    });
    request.extensions_mut().insert(summary);
    next.run(request).await
}

/// The [`BodyTimeout`] among the causes of a body error.
fn timed_out(error: &axum::Error) -> Option<&BodyTimeout> {
    let mut cause: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
            return Some(timeout);
        }
        cause = error.source();
    }
    None
}

/// The message's summary, or the error response for a body that is not one JSON-RPC message.
fn summarize(bytes: &[u8]) -> Result<RpcMessage, Box<Response>> {
    let message: Value = match serde_json::from_slice(bytes) {
        Ok(message) => message,
        Err(error) => {
            let why = format!("Parse error: body is not valid JSON ({error})");
            return Err(Box::new(jsonrpc_error(
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                &why,
            )));
        }
    };
    let why = match &message {
        Value::Array(_) => "JSON-RPC batches are not supported; send one message per request",
        Value::Object(object) if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") => {
            "the \"jsonrpc\" member must be \"2.0\""
        }
        Value::Object(object) => {
            let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
            let method = text(object.get("method"));
            let id = object
                .get("id")
                .filter(|id| id.is_string() || id.is_number())
                .cloned();
            let is_answer =
                method.is_none() && (object.contains_key("result") || object.contains_key("error"));
            return Ok(RpcMessage {
                answers: id.clone().filter(|_| is_answer),
                id: id.filter(|_| method.is_some()),
                method,
                tool: text(object.get("params").and_then(|params| params.get("name"))),
            });
        }
        _ => "a JSON-RPC message is a JSON object",
    };
    let message = format!("Invalid Request: {why}");
    Err(Box::new(jsonrpc_error(
        StatusCode::BAD_REQUEST,
        INVALID_REQUEST,
        &message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_the_client_did_not_send_in_time_gets_408() {
        let timeout = Duration::from_secs(7);
        // As a host's body fails, read through the same size limit as the guard.
        let failing = http_body_util::StreamBody::new(futures::stream::iter([Err::<
            http_body::Frame<bytes::Bytes>,
            _,
        >(
            axum::Error::new(BodyTimeout(timeout)),
        )]));
        let error = to_bytes(Body::new(failing), 1024)
            .await
            .expect_err("the body fails");
        assert_eq!(
            timed_out(&error).map(ToString::to_string).as_deref(),
            Some("the request body did not arrive within 7 s")
        );
        let too_large = to_bytes(Body::from(vec![0_u8; 2048]), 1024)
            .await
            .expect_err("over the limit");
        assert!(timed_out(&too_large).is_none());
    }
}
