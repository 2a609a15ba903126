//! Bearer-token authentication for the MCP server: JWT verification, token minting and the
//! API Gateway Lambda REQUEST authorizer.
//!
//! The pieces, in the order a request meets them:
//!
//! - [`parse_authorization`] takes the `Authorization` header apart (RFC 6750 `Bearer`);
//!   [`reject_query_token`] refuses a token in the query string.
//! - [`Verifier::verify`] checks the JWT: HS256 keys from Secrets Manager (selected by `kid`,
//!   several live at once for rotation) and RS256/ES256 keys from a JWKS URL, each key pinned
//!   to one algorithm; then `iss`, `aud`, `exp`, `nbf`, `sub` and the scopes — or, for an
//!   Amazon Cognito pool, `token_use`, `client_id` and prefixed scopes instead of `aud`
//!   ([`cognito`]).
//! - [`Claims::require`] checks one of the product scopes ([`SCOPE_READ`], [`SCOPE_CALL`],
//!   [`SCOPE_WRITE`]).
//! - [`lambda`] turns API Gateway authorizer events into policies / simple responses.
//! - [`mint`] issues HS256 tokens for development and tests (`mcp-token`).

mod authorization;
pub mod cognito;
mod error;
mod jwks;
mod keys;
pub mod lambda;
pub mod mint;
mod verify;

pub use authorization::{parse_authorization, reject_query_token};
pub use error::{AuthError, ConfigError};
pub use keys::{Hs256Key, MIN_HS256_KEY_BYTES, hs256_keys_from_secret_json};
pub use verify::{
    Claims, DEFAULT_HS256_MAX_AGE, DEFAULT_JWKS_MAX_AGE, DEFAULT_JWKS_MAX_MAX_AGE,
    DEFAULT_JWKS_MIN_MAX_AGE, DEFAULT_JWKS_REFRESH_INTERVAL, DEFAULT_LEEWAY,
    DEFAULT_MAX_TOKEN_BYTES, Hs256KeyLoader, Verifier, VerifierConfig,
};

/// True for an absolute `http://` or `https://` URL with a host and no whitespace: what every
/// URL setting of the authorizer and the MCP function (audience, JWKS, resource) must be.
pub fn is_http_url(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        !rest.is_empty() && !rest.starts_with('/') && !value.contains(char::is_whitespace)
    })
}

/// Read tools, resources and prompts.
pub const SCOPE_READ: &str = "mcp:read";
/// Call tools that act.
pub const SCOPE_CALL: &str = "mcp:call";
/// Write state and files.
pub const SCOPE_WRITE: &str = "mcp:write";

#[cfg(test)]
mod tests {
    #[test]
    fn http_urls_need_a_scheme_and_a_host() {
        for good in ["https://api.example.com/mcp", "http://127.0.0.1:8080/mcp"] {
            assert!(super::is_http_url(good), "{good}");
        }
        for bad in [
            "api.example.com/mcp",
            "https://",
            "https:///mcp",
            "file:///jwks.json",
            "https://a b",
        ] {
            assert!(!super::is_http_url(bad), "{bad}");
        }
    }
}
