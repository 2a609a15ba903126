//! RFC 8414 authorization-server metadata for a Cognito deployment: the document MCP clients
//! read before they send a person to sign in.
//!
//! Cognito's own discovery document lacks what MCP clients require (no
//! `code_challenge_methods_supported`, no `registration_endpoint`), so clients stop there.
//! This one is served by the API itself, names this API's base URL as the issuer (the RFC 9728
//! document lists it), points the endpoints at the pool's hosted domain, and advertises PKCE
//! S256 and, when on, this API's registration endpoint. It is built once from the
//! configuration, never fetched from Cognito per request, and served unauthenticated at every
//! path a client tries: `/.well-known/oauth-authorization-server` and
//! `/.well-known/openid-configuration`, each also with the `/mcp` suffix (path-inserted).

use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};
use bytes::Bytes;
use serde_json::json;

use crate::config::OAuthFront;

/// The path under the issuer where clients register (RFC 7591).
pub const REGISTRATION_PATH: &str = "/register";

/// The issuer a Cognito deployment names: the resource URL without its `/mcp` (the API's base
/// URL, stage or base path included), where the metadata is served.
pub fn issuer_for(resource: &str) -> String {
    resource
        .strip_suffix("/mcp")
        .unwrap_or(resource)
        .trim_end_matches('/')
        .to_owned()
}

/// The metadata document, serialized once.
#[derive(Debug, Clone)]
pub struct AuthorizationServerMetadata {
    document: Bytes,
}

impl AuthorizationServerMetadata {
    /// The document for `front`, issued at `issuer`, offering `scopes` (as Cognito names them).
    pub fn new(front: &OAuthFront, issuer: &str, scopes: &[String]) -> Self {
        let domain = &front.domain;
        let auth_methods = ["none", "client_secret_basic", "client_secret_post"];
        let mut document = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{domain}/oauth2/authorize"),
            "token_endpoint": format!("{domain}/oauth2/token"),
            "revocation_endpoint": format!("{domain}/oauth2/revoke"),
            "userinfo_endpoint": format!("{domain}/oauth2/userInfo"),
            "jwks_uri": format!("{}/.well-known/jwks.json", front.pool_issuer),
            "scopes_supported": scopes,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            // OpenID discovery's required members, for clients that read that document.
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        if front.registration.is_some() {
            document["registration_endpoint"] = format!("{issuer}{REGISTRATION_PATH}").into();
        }
        Self {
            document: Bytes::from(document.to_string()),
        }
    }

    /// `GET` of any of the metadata paths.
    pub fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.document.clone()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_the_base_url_of_the_resource() {
        assert_eq!(
            issuer_for("https://abc.execute-api.us-east-1.amazonaws.com/prod/mcp"),
            "https://abc.execute-api.us-east-1.amazonaws.com/prod"
        );
        assert_eq!(
            issuer_for("https://mcp.example.com/mcp"),
            "https://mcp.example.com"
        );
        assert_eq!(
            issuer_for("https://mcp.example.com/"),
            "https://mcp.example.com"
        );
    }
}
