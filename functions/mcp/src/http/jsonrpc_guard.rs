//! Rejects bodies that are not one JSON-RPC message before anything else reads them.
//!
//! rmcp would answer a malformed body with a bare 415; clients deserve the
//! JSON-RPC errors the spec names, and the store deserves not to be asked
//! about junk. So a POST body that is too large gets 413, one that is not JSON
//! gets 400 with -32700 (parse error), and a batch or a non-object gets 400
//! with -32600 (invalid request); one the client did not send in time gets 408.
//! A good body is handed on, already buffered, with its [`RpcMessage`] summary in
//! the request's state for the scope check, the session gate and the request log.

use std::{borrow::Cow, error::Error, time::Duration};

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    http::{Method, StatusCode},
    response::Response,
};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::Value;

use super::jsonrpc_error;
use super::state::RequestState;

use crate::codes::{INVALID_REQUEST, PARSE_ERROR};

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

/// The stage: reads and checks a POSTed body, records its summary in the request's state and
/// hands the body on, buffered.
pub async fn guard<N, F>(BodyLimit(limit): BodyLimit, request: Request, next: N) -> Response
where
    N: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    if request.method() != Method::POST {
        return next(request).await;
    }
    let Some(state) = RequestState::of(request.extensions()).cloned() else {
        return super::out_of_order("the request state");
    };
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
    state.parsed(summary);
    next(Request::from_parts(parts, Body::from(bytes))).await
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

/// The members of a message the stages read, in the shapes a well-formed message has them;
/// the rest is skipped unread (rmcp reads the message in full after the checks).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    method: Option<String>,
    id: Option<Value>,
    params: Option<Params>,
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
}

/// True for a member that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The message's summary, or the error response for a body that is not one JSON-RPC message.
///
/// A well-formed message is read once, into [`Envelope`]; any other body (not JSON, a batch,
/// members of unexpected types, duplicate members) is read as a JSON value to say exactly
/// what is wrong, or what of it the stages can use.
fn summarize(bytes: &[u8]) -> Result<RpcMessage, Box<Response>> {
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(bytes)
        && envelope.jsonrpc == "2.0"
    {
        let id = envelope.id.filter(|id| id.is_string() || id.is_number());
        let is_answer = envelope.method.is_none() && (envelope.result || envelope.error);
        return Ok(RpcMessage {
            answers: id.clone().filter(|_| is_answer),
            id: id.filter(|_| envelope.method.is_some()),
            method: envelope.method,
            tool: envelope.params.and_then(|params| params.name),
        });
    }
    summarize_value(bytes)
}

/// [`summarize`] for a body that is not a well-formed message.
fn summarize_value(bytes: &[u8]) -> Result<RpcMessage, Box<Response>> {
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

    #[test]
    fn the_one_pass_read_summarizes_exactly_as_the_full_parse() {
        let bodies = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
            r#"{"jsonrpc":"2\u002e0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#""2.0""#,
            r#"{"jsonrpc":"2.0""#,
        ];
        for body in bodies {
            let one_pass = summarize(body.as_bytes()).map_err(|refusal| refusal.status());
            let full = summarize_value(body.as_bytes()).map_err(|refusal| refusal.status());
            assert_eq!(one_pass, full, "{body}");
        }
    }

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
