//! Answers plain JSON when an SSE response would carry exactly one JSON-RPC response.
//!
//! rmcp answers every legacy-session POST with an SSE stream. Most calls emit
//! nothing but their result, and JSON is cheaper for clients, proxies and
//! Lambda alike, so this layer reads the stream up to its first message: a
//! response (`result`/`error`) becomes an `application/json` body; anything
//! else (a progress or log notification, a server request) means the call
//! streams, and the bytes read so far are replayed ahead of the rest of the
//! stream, unchanged.

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::Response,
};
use futures::{StreamExt, stream};
use http_body_util::BodyExt;
use serde_json::Value;

/// The middleware.
pub async fn prefer_json(request: Request, next: Next) -> Response {
    let is_post = request.method() == Method::POST;
    let response = next.run(request).await;
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
    while let Some(Ok(frame)) = body.frame().await {
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
