//! Issues HS256 tokens the [`crate::Verifier`] accepts: for development, tests and the
//! `mcp-token` command. Production tokens come from an identity provider.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::MIN_HS256_KEY_BYTES;

/// The key `mcp-token` signs with when `MCP_SIGNING_KEY` is not set. Never for production.
pub const DEV_SIGNING_KEY: &str = "mcp-dev-signing-key-not-for-production-use";
/// The default `iss` of minted tokens.
pub const DEFAULT_ISSUER: &str = "mcp-dev";
/// The default `aud` of minted tokens: the local server's MCP endpoint.
pub const DEFAULT_AUDIENCE: &str = "http://127.0.0.1:8080/mcp";

/// What to put in a token.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub sub: String,
    /// Space-separated scopes, e.g. `mcp:read mcp:call`.
    pub scope: String,
    pub ttl: Duration,
    /// `None` mints a token without `kid` (verified against the first key only).
    pub kid: Option<String>,
    pub issuer: String,
    pub audience: String,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the signing key is {len} bytes; at least {MIN_HS256_KEY_BYTES} are required")]
    KeyTooShort { len: usize },
    #[error("sub must be 1 to 256 bytes without control characters")]
    BadSub,
    #[error("the ttl must be between 1 second and 1 year")]
    BadTtl,
    #[error("signing failed: {0}")]
    Signing(String),
}

#[derive(serde::Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
}

/// Signs `request` with `secret` (HS256), valid from now for `request.ttl`.
pub fn mint(request: &MintRequest, secret: &[u8]) -> Result<String, MintError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    mint_at(request, secret, now)
}

/// [`mint`] with an explicit "now" (seconds since the epoch), for tests.
pub fn mint_at(request: &MintRequest, secret: &[u8], now: u64) -> Result<String, MintError> {
    if secret.len() < MIN_HS256_KEY_BYTES {
        return Err(MintError::KeyTooShort { len: secret.len() });
    }
    if request.sub.is_empty()
        || request.sub.len() > 256
        || request.sub.chars().any(char::is_control)
    {
        return Err(MintError::BadSub);
    }
    let ttl = request.ttl.as_secs();
    if ttl == 0 || ttl > 366 * 24 * 3600 {
        return Err(MintError::BadTtl);
    }
    let scope = request
        .scope
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let claims = MintedClaims {
        iss: &request.issuer,
        aud: &request.audience,
        sub: &request.sub,
        iat: now,
        nbf: now,
        exp: now + ttl,
        scope: &scope,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    header.kid = request.kid.clone();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
        .map_err(|e| MintError::Signing(e.to_string()))
}
