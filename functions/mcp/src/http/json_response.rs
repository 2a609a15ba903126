//! Answers plain JSON when an SSE response would carry exactly one JSON-RPC response.
//!
//! rmcp answers every legacy-session POST with an SSE stream. Most calls emit
//! nothing but their result, and JSON is cheaper for clients, proxies and
//! Lambda alike, so this layer reads the stream up to its first message: a
//! response (`result`/`error`) becomes an `application/json` body; anything
//! else (a progress or log notification, a server request) means the call
//! streams, and the bytes read so far are replayed ahead of the rest of the
//! stream, unchanged. So does a call whose first message takes longer than
//! [`FirstMessageWait`]: from then on the client gets the SSE stream itself, with
//! its keep-alive comments, so no proxy (API Gateway's idle timeout, a load
//! balancer's) sees a silent connection during a long call.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderValue, Method, header},
    response::Response,
};
use futures::{StreamExt, stream};
use http_body_util::BodyExt;
use serde_json::Value;

/// How long a call's SSE answer is held back while waiting for a lone result.
#[derive(Debug, Clone, Copy)]
pub struct FirstMessageWait(pub Duration);

impl Default for FirstMessageWait {
    /// Well under every idle timeout on the way (API Gateway's 30 s on edge-optimized
    /// endpoints is the shortest), and longer than almost every call.
    fn default() -> Self {
        Self(Duration::from_secs(10))
    }
}

/// The stage: a POST's SSE answer whose first message is its one response becomes JSON.
pub async fn prefer_json<N, F>(
    FirstMessageWait(wait): FirstMessageWait,
    request: Request,
    next: N,
) -> Response
where
    N: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    let is_post = request.method() == Method::POST;
    let response = next(request).await;
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if !is_post || !is_sse {
        return response;
    }
    let (mut parts, mut body) = response.into_parts();
    let mut buffered = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    // Ends at the stream's end, a body error, or the deadline: all replay what was read.
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffered.extend_from_slice(&data);
        match first_message(&buffered) {
            None => continue,
            Some(message) if is_response(&message) => {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                parts.headers.remove(header::CONTENT_LENGTH);
                return Response::from_parts(parts, Body::from(message));
            }
            Some(_) => break,
        }
    }
    let replay = stream::once(async move { Ok::<_, axum::Error>(Bytes::from(buffered)) });
    let rest = body.into_data_stream();
    Response::from_parts(parts, Body::from_stream(replay.chain(rest)))
}

/// The data of the first complete SSE event that carries any, once it has arrived.
fn first_message(buffer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(buffer).ok()?;
    let text = text.replace("\r\n", "\n");
    let complete = &text[..text.rfind("\n\n")?];
    complete.split("\n\n").find_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| data.strip_prefix(' ').unwrap_or(data))
            .collect();
        let data = data.join("\n");
        (!data.is_empty()).then_some(data)
    })
}

/// True for a JSON-RPC response or error, false for requests and notifications.
fn is_response(message: &str) -> bool {
    serde_json::from_str::<Value>(message).is_ok_and(|value| {
        value.get("method").is_none()
            && (value.get("result").is_some() || value.get("error").is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;

    /// An SSE answer whose one event, the result, comes after `delay`.
    fn sse_after(delay: Duration) -> Response {
        let event = futures::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok::<_, axum::Error>(Bytes::from(format!("id: 0\ndata: {RESULT}\n\n")))
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(event))
            .expect("response")
    }

    /// A POST through the stage, answered after `delay`; the content type and body it gets.
    async fn call(delay: Duration, wait: Duration) -> (String, String) {
        let request = Request::post("/mcp").body(Body::empty()).expect("request");
        let response = prefer_json(FirstMessageWait(wait), request, |_| async move {
            sse_after(delay)
        })
        .await;
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            content_type,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    #[tokio::test]
    async fn a_prompt_lone_result_is_answered_as_json() {
        assert_eq!(
            call(Duration::from_millis(5), Duration::from_secs(5)).await,
            ("application/json".to_owned(), RESULT.to_owned())
        );
    }

    #[tokio::test]
    async fn a_slow_call_streams_instead_of_holding_the_connection_silent() {
        let (content_type, body) =
            call(Duration::from_millis(300), Duration::from_millis(20)).await;
        assert_eq!(content_type, "text/event-stream");
        assert_eq!(body, format!("id: 0\ndata: {RESULT}\n\n"));
    }

    #[test]
    fn the_first_event_with_data_is_found_once_complete() {
        assert_eq!(first_message(b"id: 0\nretry: 3000\ndata:\n\n"), None);
        assert_eq!(first_message(b"id: 0\ndata:\n\ndata: {\"a\":1}"), None);
        assert_eq!(
            first_message(b"id: 0\ndata:\n\n: ping\n\ndata: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
    }

    #[test]
    fn only_results_and_errors_count_as_responses() {
        assert!(is_response(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        assert!(is_response(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#
        ));
        assert!(!is_response(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#
        ));
        assert!(!is_response(
            r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}"#
        ));
    }
}
