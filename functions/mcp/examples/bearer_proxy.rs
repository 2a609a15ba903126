//! `bearer_proxy LISTEN UPSTREAM`: a loopback reverse proxy that adds one `Authorization`
//! header (from `MCP_PROXY_AUTHORIZATION`) to every request and streams the answers back.
//!
//! Clients that cannot send headers of their own, such as the MCP conformance runner,
//! reach an authenticated server through it: the test command starts
//! `bearer_proxy 127.0.0.1:9100 http://127.0.0.1:8080` and points the runner at port 9100.
//! Everything else (Host, Origin, session and protocol headers, SSE streams) passes as is.

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

struct Proxy {
    client: reqwest::Client,
    upstream: String,
    authorization: HeaderValue,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: bearer_proxy LISTEN_ADDR UPSTREAM_URL".into());
    };
    let authorization = std::env::var("MCP_PROXY_AUTHORIZATION")
        .map_err(|_| "MCP_PROXY_AUTHORIZATION is not set (e.g. \"Bearer eyJ…\")")?;
    let proxy = Proxy {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        upstream: upstream.trim_end_matches('/').to_owned(),
        authorization: HeaderValue::from_str(&authorization)?,
    };
    let app = Router::new().fallback(forward).with_state(Arc::new(proxy));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(body) = to_bytes(body, 64 * 1024 * 1024).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large for the proxy",
        )
            .into_response();
    };
    let mut headers = parts.headers;
    for hop in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(hop);
    }
    headers.insert(header::AUTHORIZATION, proxy.authorization.clone());
    let upstream = proxy
        .client
        .request(parts.method, format!("{}{path}", proxy.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(response) => response,
        Err(error) => {
            return (StatusCode::BAD_GATEWAY, format!("upstream: {error}")).into_response();
        }
    };
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap_or_else(|error| {
            (StatusCode::BAD_GATEWAY, format!("response: {error}")).into_response()
        })
}
