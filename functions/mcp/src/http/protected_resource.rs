//! RFC 9728 protected-resource metadata: where a client learns who issues tokens for `/mcp`.
//!
//! Served unauthenticated at `/.well-known/oauth-protected-resource` and at its
//! `/mcp` suffix form (the path-aware variant RFC 9728 §3.1 describes), so an
//! MCP client that receives a 401 can find the authorization server and the
//! scopes to ask for.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// The product's scopes: list/read/get, tools/call, and the tools that write.
pub const SCOPES: [&str; 3] = [
    authorizer::SCOPE_READ,
    authorizer::SCOPE_CALL,
    authorizer::SCOPE_WRITE,
];

/// What the metadata documents say; built once from the configuration.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    /// `MCP_RESOURCE_URL`; when unset, `<scheme>://<Host>/mcp` of the request.
    pub resource: Option<String>,
    /// `MCP_AUTHORIZATION_SERVERS`: issuer URLs of the authorization servers.
    pub authorization_servers: Vec<String>,
    /// Scheme used when the resource is derived from the request's `Host`.
    pub scheme: &'static str,
    /// How the authorization server names the product scopes: `None` as they are, or the
    /// prefix a Cognito resource server puts in front (`<resource>/`).
    pub scope_prefix: Option<String>,
}

#[derive(Serialize)]
struct Document<'a> {
    resource: String,
    authorization_servers: &'a [String],
    scopes_supported: Vec<String>,
    bearer_methods_supported: [&'static str; 1],
    resource_name: &'static str,
}

impl ResourceMetadata {
    /// A product scope as clients must ask the authorization server for it.
    pub fn scope_name(&self, scope: &str) -> String {
        match &self.scope_prefix {
            Some(prefix) => format!("{prefix}{scope}"),
            None => scope.to_owned(),
        }
    }

    /// Every product scope, as clients ask for them.
    pub fn scope_names(&self) -> Vec<String> {
        SCOPES.iter().map(|scope| self.scope_name(scope)).collect()
    }

    /// This resource's identifier as clients address it.
    fn resource(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(resource) = &self.resource {
            return Some(resource.clone());
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        let plausible = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        plausible.then(|| format!("{}://{host}/mcp", self.scheme))
    }

    /// The metadata document's URL for `WWW-Authenticate`: the `/mcp` form served beside this
    /// resource, so it keeps any stage or base path in front of `/mcp`.
    pub fn metadata_url(&self, headers: &HeaderMap) -> Option<String> {
        let resource = self.resource(headers)?;
        let base = resource.strip_suffix("/mcp").unwrap_or(&resource);
        Some(format!("{base}/.well-known/oauth-protected-resource/mcp"))
    }
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`.
pub async fn metadata(State(metadata): State<ResourceMetadata>, headers: HeaderMap) -> Response {
    let Some(resource) = metadata.resource(&headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "a valid Host header is required (or set MCP_RESOURCE_URL)",
        )
            .into_response();
    };
    let document = Document {
        resource,
        authorization_servers: &metadata.authorization_servers,
        scopes_supported: metadata.scope_names(),
        bearer_methods_supported: ["header"],
        resource_name: "MCP server",
    };
    let mut response = Json(document).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=300"),
    );
    response
}
