//! The `/mcp` path around rmcp's Streamable HTTP service, and the documents beside it.
//!
//! [`pipeline`] runs the stages of a request in this order, each an `async fn` in its own
//! module that may answer in place of everything after it:
//!
//! 0. [`observe::observe`]: creates the request's [`state::RequestState`] (request id, trace
//!    id, span), then writes the request log line and the metrics from it.
//! 1. [`auth::authenticate`]: verifies the bearer token (401) and sets the caller's principal
//!    and grant; a source address that keeps failing gets 429 ([`unauthenticated`]) before its
//!    next unknown token is checked. Then [`caller_limits`]: 429 with `Retry-After` when the
//!    caller's bucket is empty ([`rate_limit`]) or it already has its most requests in flight
//!    here ([`in_flight`]).
//! 2. [`jsonrpc_guard`]: 413 for oversize bodies, JSON-RPC errors for non-JSON and batches;
//!    the one parse of the body, whose summary the later stages read.
//! 3. [`auth::authorize`]: 403 when the token lacks the scope the message needs.
//! 4. [`session_gate`]: checks a legacy `Mcp-Session-Id` against the store (404 if
//!    unknown, expired or another principal's) and slides its expiry; a `DELETE` that
//!    ended its session answers 204; an `initialize` whose session could not be created
//!    answers 429, 413 or 503 instead of a session id nobody can serve.
//! 5. [`json_response`]: answers a single-response SSE body as plain JSON.
//!
//! Every stage after the first fails closed when what it builds on is missing (no state, no
//! principal): 500, never served. Tests call a stage with a closure as the rest of the path,
//! or the whole router with `oneshot`.
//! Around everything, when configured, [`origin_secret`] refuses (403) any request that did not
//! come through the front door (CloudFront before a function URL).
//! Beside them, [`protected_resource`] serves the RFC 9728 metadata documents and, for a
//! Cognito deployment, [`authorization_server`] the RFC 8414 ones and [`registration`] the
//! RFC 7591 endpoint.

pub mod auth;
pub mod authorization_server;
pub mod caller_limits;
pub mod in_flight;
pub mod json_response;
pub mod jsonrpc_guard;
pub mod observe;
pub mod origin_secret;
pub mod pipeline;
pub mod protected_resource;
pub mod rate_limit;
pub mod registration;
pub mod session_gate;
pub mod state;
pub mod unauthenticated;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use rmcp::model::ErrorCode;
use serde_json::json;

use crate::codes;

/// 503 for a store that did not answer: the request may be sent again.
pub fn store_unavailable() -> Response {
    jsonrpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::INTERNAL_ERROR,
        "Session store unavailable; retry shortly",
    )
}

/// The answer for a request that reached a stage without what an earlier stage sets (`missing`:
/// the request state, a principal): the path was assembled wrongly, so nothing is served.
pub fn out_of_order(missing: &str) -> Response {
    tracing::error!(missing, "a stage of /mcp was reached out of order");
    jsonrpc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL_ERROR,
        "Internal error",
    )
}

/// A JSON-RPC error response with no request id, for failures before dispatch.
pub fn jsonrpc_error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    jsonrpc_error_for(None, status, code, message)
}

/// A JSON-RPC error response answering the request with `id` (`null` when there is none).
pub fn jsonrpc_error_for(
    id: Option<&serde_json::Value>,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code.0, "message": message },
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

/// Where a request came from: the address the host saw (the TCP peer on `mcp-server`, API
/// Gateway's or the function URL's `sourceIp` on Lambda), or, behind `proxy_hops` proxies that
/// each append to `X-Forwarded-For` (`MCP_TRUSTED_PROXY_HOPS`: a load balancer, CloudFront),
/// the address the outermost of them saw. Entries further left are the caller's own words.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources {
    pub proxy_hops: usize,
}

impl Sources {
    pub fn of(&self, request: &axum::extract::Request) -> Option<std::net::IpAddr> {
        self.of_parts(request.extensions(), request.headers())
    }

    /// [`Sources::of`] from a request's extensions and headers.
    pub fn of_parts(
        &self,
        extensions: &axum::http::Extensions,
        headers: &axum::http::HeaderMap,
    ) -> Option<std::net::IpAddr> {
        let peer = peer_address(extensions)?;
        if self.proxy_hops == 0 {
            return Some(peer);
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        // Fewer entries than proxies: the request did not come through them all, so the peer
        // is the caller.
        let Some(index) = forwarded.len().checked_sub(self.proxy_hops) else {
            return Some(peer);
        };
        forwarded[index].parse().ok().or(Some(peer))
    }
}

/// The address the host saw, never a header a caller could set.
fn peer_address(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    use axum::extract::ConnectInfo;
    use lambda_http::request::RequestContext;
    if let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<std::net::SocketAddr>>() {
        return Some(peer.ip());
    }
    let source = match extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.as_deref(),
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        _ => None,
    };
    source?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use axum::extract::ConnectInfo;

    use super::Sources;

    fn from_proxy(forwarded: &[&str]) -> axum::extract::Request {
        let mut request = axum::http::Request::post("/mcp");
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        let mut request = request.body(axum::body::Body::empty()).expect("request");
        let proxy: SocketAddr = "10.0.0.5:443".parse().expect("address");
        request.extensions_mut().insert(ConnectInfo(proxy));
        request
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    #[test]
    fn with_no_trusted_proxy_the_peer_is_the_source_whatever_the_header_says() {
        let request = from_proxy(&["198.51.100.9"]);
        assert_eq!(Sources::default().of(&request), ip("10.0.0.5"));
    }

    #[test]
    fn each_trusted_proxy_skips_one_entry_from_the_right() {
        // The caller wrote the first entry itself; the load balancer appended the second.
        let request = from_proxy(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(Sources { proxy_hops: 1 }.of(&request), ip("203.0.113.7"));
        assert_eq!(Sources { proxy_hops: 2 }.of(&request), ip("6.6.6.6"));
        // Entries split over several header lines count in order.
        let request = from_proxy(&["6.6.6.6", "203.0.113.7"]);
        assert_eq!(Sources { proxy_hops: 1 }.of(&request), ip("203.0.113.7"));
    }

    #[test]
    fn a_short_or_malformed_header_leaves_the_peer_as_the_source() {
        assert_eq!(
            Sources { proxy_hops: 2 }.of(&from_proxy(&["203.0.113.7"])),
            ip("10.0.0.5")
        );
        assert_eq!(
            Sources { proxy_hops: 1 }.of(&from_proxy(&[])),
            ip("10.0.0.5")
        );
        assert_eq!(
            Sources { proxy_hops: 1 }.of(&from_proxy(&["not-an-ip"])),
            ip("10.0.0.5")
        );
    }
}
