//! RFC 9728 protected-resource metadata: where a client learns who issues tokens for `/mcp`.
//!
//! Served unauthenticated at `/.well-known/oauth-protected-resource` and at its
//! `/mcp` suffix form (the path-aware variant RFC 9728 §3.1 describes), so an
//! MCP client that receives a 401 can find the authorization server and the
//! scopes to ask for.
//!
//! The resource is `MCP_RESOURCE_URL`, or else built from the request's `Host`, but only
//! from a `Host` that `MCP_ALLOWED_HOSTS` accepts (the check `/mcp` makes too), so a forged
//! `Host` never puts its URL in a document or a challenge. A document built from `Host`
//! says `Vary: Host`, so a cache keeps one per host.

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
    /// `MCP_ALLOWED_HOSTS`: the `Host` values a resource may be built from; empty accepts any.
    pub allowed_hosts: Vec<String>,
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

    /// This resource's identifier as clients address it, and whether it came from `Host`;
    /// `None` when it is not configured and `Host` is missing, malformed or not allowed.
    fn resource(&self, headers: &HeaderMap) -> Option<(String, FromHost)> {
        if let Some(resource) = &self.resource {
            return Some((resource.clone(), FromHost::No));
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        let plausible = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !plausible || !host_is_allowed(host, &self.allowed_hosts) {
            return None;
        }
        Some((format!("{}://{host}/mcp", self.scheme), FromHost::Yes))
    }

    /// The metadata document's URL for `WWW-Authenticate`: the `/mcp` form served beside this
    /// resource, so it keeps any stage or base path in front of `/mcp`.
    pub fn metadata_url(&self, headers: &HeaderMap) -> Option<String> {
        let (resource, _) = self.resource(headers)?;
        let base = resource.strip_suffix("/mcp").unwrap_or(&resource);
        Some(format!("{base}/.well-known/oauth-protected-resource/mcp"))
    }
}

/// Whether a resource was built from the request's `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FromHost {
    Yes,
    No,
}

/// The allow-list rule rmcp applies on `/mcp`: host names compared without case (IPv6
/// brackets aside), and the port too where an entry names one.
fn host_is_allowed(host: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = authority(host) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|entry| authority(entry.trim()))
        .any(|entry| entry.0 == host.0 && entry.1.is_none_or(|port| host.1 == Some(port)))
}

/// A `host[:port]` as a lower-case host name without brackets and its port.
fn authority(value: &str) -> Option<(String, Option<u16>)> {
    if value.is_empty() {
        return None;
    }
    let normalize = |host: &str| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    match axum::http::uri::Authority::try_from(value) {
        Ok(authority) => Some((normalize(authority.host()), authority.port_u16())),
        Err(_) => Some((normalize(value), None)),
    }
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`.
pub async fn metadata(State(metadata): State<ResourceMetadata>, headers: HeaderMap) -> Response {
    let Some((resource, from_host)) = metadata.resource(&headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "a valid Host header this server accepts is required (or set MCP_RESOURCE_URL)",
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
    if from_host == FromHost::Yes {
        response
            .headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("Host"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(allowed: &[&str]) -> ResourceMetadata {
        ResourceMetadata {
            resource: None,
            allowed_hosts: allowed.iter().map(|host| (*host).to_owned()).collect(),
            authorization_servers: Vec::new(),
            scheme: "http",
            scope_prefix: None,
        }
    }

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, value.parse().expect("header"));
        headers
    }

    #[test]
    fn only_an_allowed_host_names_the_resource() {
        let local = metadata(&["localhost", "127.0.0.1", "::1", "mcp.example.com:8443"]);
        for (value, expected) in [
            ("localhost:8080", Some("http://localhost:8080/mcp")),
            ("LOCALHOST", Some("http://LOCALHOST/mcp")),
            ("127.0.0.1:9", Some("http://127.0.0.1:9/mcp")),
            ("[::1]:8080", Some("http://[::1]:8080/mcp")),
            (
                "mcp.example.com:8443",
                Some("http://mcp.example.com:8443/mcp"),
            ),
            ("mcp.example.com", None),
            ("mcp.example.com:443", None),
            ("evil.example", None),
            ("localhost.evil.example", None),
            ("evil.example/<x>", None),
        ] {
            assert_eq!(
                local.metadata_url(&host(value)).is_some(),
                expected.is_some(),
                "{value}"
            );
            assert_eq!(
                local.resource(&host(value)).map(|(url, _)| url).as_deref(),
                expected,
                "{value}"
            );
        }
        assert_eq!(local.resource(&HeaderMap::new()), None);
        let any = metadata(&[]);
        assert_eq!(
            any.resource(&host("anything.example")),
            Some(("http://anything.example/mcp".to_owned(), FromHost::Yes))
        );
        let configured = ResourceMetadata {
            resource: Some("https://api.example.com/mcp".into()),
            ..metadata(&["localhost"])
        };
        assert_eq!(
            configured.resource(&host("evil.example")),
            Some(("https://api.example.com/mcp".to_owned(), FromHost::No))
        );
    }
}
