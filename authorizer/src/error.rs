//! Why a request was not authenticated or authorized, and why a verifier could not be built.

/// Why a bearer token was refused.
///
/// [`AuthError::status`] gives the HTTP status; [`AuthError::error_description`] a short text
/// that is safe to return to the caller (it never contains the token or key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    MissingAuthorization,
    #[error("the Authorization scheme is not Bearer")]
    WrongScheme,
    #[error("the bearer token is empty")]
    EmptyToken,
    #[error("the Authorization header is not `Bearer <token>`")]
    MalformedAuthorization,
    #[error("tokens in the query string are not accepted; send the Authorization header")]
    TokenInQuery,
    #[error("the token is longer than {max} bytes")]
    TokenTooLarge { max: usize },
    #[error("the token is not a JWS in compact form")]
    Malformed,
    #[error("a token segment is not valid base64url or JSON")]
    BadEncoding,
    #[error("algorithm `{alg}` is not accepted")]
    UnsupportedAlgorithm { alg: String },
    #[error("the token has no key id (kid) and no default key applies")]
    MissingKeyId,
    #[error("unknown key id `{kid}`")]
    UnknownKey { kid: String },
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token lacks the `{claim}` claim")]
    MissingClaim { claim: String },
    #[error("the `{claim}` claim is not valid")]
    InvalidClaim { claim: String },
    #[error("the signing keys are not available")]
    KeysUnavailable,
    #[error("the token lacks the `{required}` scope")]
    InsufficientScope { required: String },
    #[error("the token is not an access token (token_use)")]
    NotAnAccessToken,
    #[error("the token's client is not one this server accepts")]
    UnknownClient,
}

impl AuthError {
    /// The HTTP status: 403 for [`AuthError::InsufficientScope`], 503 when the keys could not
    /// be fetched (not the caller's fault), 401 for every problem with the token itself.
    pub fn status(&self) -> u16 {
        match self {
            Self::InsufficientScope { .. } => 403,
            Self::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// The RFC 6750 `error` code for a `WWW-Authenticate` header, if any.
    ///
    /// A request without credentials gets none (RFC 6750 section 3.1).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingAuthorization | Self::WrongScheme => None,
            Self::EmptyToken | Self::MalformedAuthorization | Self::TokenInQuery => {
                Some("invalid_request")
            }
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            Self::KeysUnavailable => None,
            _ => Some("invalid_token"),
        }
    }

    /// A stable snake_case name of the failure, for metric labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingAuthorization => "missing_authorization",
            Self::WrongScheme => "wrong_scheme",
            Self::EmptyToken => "empty_token",
            Self::MalformedAuthorization => "malformed_authorization",
            Self::TokenInQuery => "token_in_query",
            Self::TokenTooLarge { .. } => "token_too_large",
            Self::Malformed => "malformed",
            Self::BadEncoding => "bad_encoding",
            Self::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            Self::MissingKeyId => "missing_key_id",
            Self::UnknownKey { .. } => "unknown_key",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::KeysUnavailable => "keys_unavailable",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::NotAnAccessToken => "not_an_access_token",
            Self::UnknownClient => "unknown_client",
        }
    }

    /// A short description, safe to show to the caller.
    pub fn error_description(&self) -> String {
        self.to_string()
    }
}

/// Why a [`crate::Verifier`] or the authorizer's configuration could not be built.
/// Messages name the variable or field and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("secret is not the expected JSON ({{\"keys\": [{{\"kid\": …, \"secret\": …}}]}}): {0}")]
    SecretFormat(String),
    #[error("secret lists no keys")]
    NoKeys,
    #[error("key `{kid}` is {len} bytes; at least {min} are required")]
    KeyTooShort { kid: String, len: usize, min: usize },
    #[error("key id `{0}` is empty, repeated or not printable ASCII")]
    BadKid(String),
    #[error("reading secret `{secret_id}` from Secrets Manager failed: {message}")]
    SecretFetch { secret_id: String, message: String },
}
