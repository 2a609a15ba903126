//! JWT verification: the configuration, the verifier and the verified claims.

use std::{
    collections::BTreeSet,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::{
    AuthError, ConfigError, Hs256Key,
    cognito::{CognitoCheck, CognitoRules},
    jwks::{JwksCache, PinnedKey},
};

/// Clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The longest token accepted.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest time between two JWKS fetches triggered by unknown key ids.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// The longest `sub` accepted.
const MAX_SUB_BYTES: usize = 256;

/// What a token must satisfy and which keys may have signed it.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The expected `iss`.
    pub issuer: String,
    /// The expected `aud`: this resource's URL (RFC 8707), e.g. `https://api.example.com/mcp`.
    pub audience: String,
    pub leeway: Duration,
    pub max_token_bytes: usize,
    /// HS256 keys, newest first; a token's `kid` selects one, a token without `kid` is tried
    /// against the first only.
    pub hs256_keys: Vec<Hs256Key>,
    /// RS256/ES256 keys (RSA and P-256 JWKs with a `kid`).
    pub jwks_url: Option<String>,
    pub jwks_refresh_interval: Duration,
    /// Amazon Cognito access tokens: `aud` is not checked (Cognito sets none); `token_use`,
    /// `client_id` and the prefixed scopes are, as [`CognitoRules`] says.
    pub cognito: Option<CognitoRules>,
}

impl VerifierConfig {
    /// A configuration with the default leeway, size limit and refresh interval, and no keys.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            hs256_keys: Vec::new(),
            jwks_url: None,
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
            cognito: None,
        }
    }
}

/// The caller a valid token names, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    /// From `scope` (space-separated string) and `scp` (array of strings).
    pub scopes: BTreeSet<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// `Ok` if the token carries `scope`, else [`AuthError::InsufficientScope`] (403).
    pub fn require(&self, scope: &str) -> Result<(), AuthError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: scope.to_owned(),
            })
        }
    }

    /// The scopes as one space-separated string (the OAuth `scope` form).
    pub fn scope_string(&self) -> String {
        self.scopes
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Verifies bearer tokens. Cheap to clone; build one per process and share it.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    leeway: Duration,
    max_token_bytes: usize,
    hs256: RwLock<Arc<HsKeys>>,
    jwks: Option<JwksCache>,
    reloader: Option<Reloader>,
    cognito: Option<CognitoCheck>,
}

type HsKeys = Vec<(String, DecodingKey)>;

/// Loads the current HS256 key list again (e.g. re-reads the Secrets Manager secret).
pub type Hs256KeyLoader = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<Hs256Key>, ConfigError>> + Send>>
        + Send
        + Sync,
>;

struct Reloader {
    load: Hs256KeyLoader,
    interval: Duration,
    attempted_at: tokio::sync::Mutex<Option<Instant>>,
}

fn checked_hs_keys(keys: &[Hs256Key]) -> Result<HsKeys, ConfigError> {
    let mut hs256: HsKeys = Vec::with_capacity(keys.len());
    for key in keys {
        let checked = Hs256Key::new(key.kid.clone(), key.secret.clone())?;
        if hs256.iter().any(|(kid, _)| *kid == checked.kid) {
            return Err(ConfigError::BadKid(checked.kid));
        }
        hs256.push((checked.kid, DecodingKey::from_secret(&checked.secret)));
    }
    Ok(hs256)
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field(
                "hs256_kids",
                &self
                    .hs_keys()
                    .iter()
                    .map(|(kid, _)| kid.clone())
                    .collect::<Vec<_>>(),
            )
            .field("jwks", &self.inner.jwks.is_some())
            .field("cognito", &self.inner.cognito.is_some())
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl Verifier {
    /// Checks the configuration: issuer and audience set, at least one key source, valid and
    /// distinct HS256 keys, an `http(s)://` JWKS URL.
    pub fn new(config: VerifierConfig) -> Result<Self, ConfigError> {
        Self::build(config, None)
    }

    /// Like [`Verifier::new`], and a token with an unknown `kid` makes the verifier call `load`
    /// for the current HS256 keys (at most once per `config.jwks_refresh_interval`), so keys
    /// rotated in the secret are picked up without a restart.
    pub fn with_hs256_reload(
        config: VerifierConfig,
        load: Hs256KeyLoader,
    ) -> Result<Self, ConfigError> {
        let reloader = Reloader {
            load,
            interval: config.jwks_refresh_interval,
            attempted_at: tokio::sync::Mutex::new(None),
        };
        Self::build(config, Some(reloader))
    }

    fn build(config: VerifierConfig, reloader: Option<Reloader>) -> Result<Self, ConfigError> {
        if config.issuer.trim().is_empty() {
            return Err(ConfigError::Invalid {
                name: "issuer",
                reason: "is empty".into(),
            });
        }
        if config.audience.trim().is_empty() {
            return Err(ConfigError::Invalid {
                name: "audience",
                reason: "is empty".into(),
            });
        }
        if config.hs256_keys.is_empty() && config.jwks_url.is_none() {
            return Err(ConfigError::NoKeys);
        }
        let hs256 = checked_hs_keys(&config.hs256_keys)?;
        let jwks = match config.jwks_url {
            None => None,
            Some(url) => {
                if !crate::is_http_url(&url) {
                    return Err(ConfigError::Invalid {
                        name: "jwks_url",
                        reason: "is not an http(s) URL".into(),
                    });
                }
                let cache = JwksCache::new(url, config.jwks_refresh_interval).map_err(|e| {
                    ConfigError::Invalid {
                        name: "jwks_url",
                        reason: e.to_string(),
                    }
                })?;
                Some(cache)
            }
        };
        let cognito = config.cognito.map(CognitoCheck::new).transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: config.issuer,
                audience: config.audience,
                leeway: config.leeway,
                max_token_bytes: config.max_token_bytes,
                hs256: RwLock::new(Arc::new(hs256)),
                jwks,
                reloader,
                cognito,
            }),
        })
    }

    /// Replaces the HS256 keys (newest first), e.g. after the caller reloaded the secret.
    pub fn replace_hs256_keys(&self, keys: &[Hs256Key]) -> Result<(), ConfigError> {
        if keys.is_empty() && self.inner.jwks.is_none() {
            return Err(ConfigError::NoKeys);
        }
        let keys = Arc::new(checked_hs_keys(keys)?);
        match self.inner.hs256.write() {
            Ok(mut guard) => *guard = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        Ok(())
    }

    fn hs_keys(&self) -> Arc<HsKeys> {
        match self.inner.hs256.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the HS256 keys if a loader is set and the last attempt is older than its
    /// interval; true if the keys were replaced.
    async fn reload_hs_keys(&self) -> bool {
        let Some(reloader) = &self.inner.reloader else {
            return false;
        };
        let mut attempted_at = reloader.attempted_at.lock().await;
        if attempted_at.is_some_and(|at| at.elapsed() < reloader.interval) {
            return false;
        }
        *attempted_at = Some(Instant::now());
        match (reloader.load)().await {
            Ok(keys) => match self.replace_hs256_keys(&keys) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "reloaded HS256 keys are not valid; keeping the old ones");
                    false
                }
            },
            Err(error) => {
                tracing::warn!(%error, "reloading HS256 keys failed; keeping the old ones");
                false
            }
        }
    }

    /// Parses the `Authorization` header and verifies its token.
    pub async fn verify_authorization(&self, header: Option<&str>) -> Result<Claims, AuthError> {
        let token = crate::parse_authorization(header)?;
        self.verify(token).await
    }

    /// Verifies a compact JWS and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Err(AuthError::TokenTooLarge {
                max: inner.max_token_bytes,
            });
        }
        let segments: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = segments.as_slice() else {
            return Err(AuthError::Malformed);
        };
        let header = decode_header(header)?;
        let alg = match header.alg.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(AuthError::UnsupportedAlgorithm {
                    alg: printable(other, 16),
                });
            }
        };
        if payload.is_empty() || signature.is_empty() {
            return Err(AuthError::Malformed);
        }
        let pinned = self.key_for(alg, header.kid.as_deref()).await?;
        if pinned.alg != alg {
            return Err(AuthError::AlgorithmMismatch);
        }

        let mut validation = Validation::new(pinned.alg);
        validation.leeway = inner.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&inner.issuer]);
        if inner.cognito.is_some() {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        } else {
            validation.set_audience(&[&inner.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &pinned.key, &validation)
            .map_err(|e| map_jwt_error(e.into_kind()))?;
        match &inner.cognito {
            None => claims_from(&data.claims),
            Some(cognito) => {
                let scopes = cognito.accept(&data.claims, &inner.audience).await?;
                Ok(Claims {
                    scopes,
                    ..claims_from(&data.claims)?
                })
            }
        }
    }

    async fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<PinnedKey, AuthError> {
        let inner = &*self.inner;
        let hs = |key: &DecodingKey| PinnedKey {
            key: key.clone(),
            alg: Algorithm::HS256,
        };
        let find_hs = |kid: &str| {
            self.hs_keys()
                .iter()
                .find(|(id, _)| id == kid)
                .map(|(_, key)| hs(key))
        };
        match kid {
            Some(kid) => {
                if let Some(key) = find_hs(kid) {
                    return Ok(key);
                }
                if alg == Algorithm::HS256
                    && self.reload_hs_keys().await
                    && let Some(key) = find_hs(kid)
                {
                    return Ok(key);
                }
                let unknown = || AuthError::UnknownKey {
                    kid: printable(kid, 64),
                };
                match &inner.jwks {
                    Some(jwks) => jwks.get(kid).await?.ok_or_else(unknown),
                    None => Err(unknown()),
                }
            }
            None => match self.hs_keys().first() {
                Some((_, key)) if alg == Algorithm::HS256 => Ok(hs(key)),
                _ => Err(AuthError::MissingKeyId),
            },
        }
    }
}

/// At most `max` characters of caller-supplied text, non-printable ones replaced, so an error
/// description can be logged or put in a `WWW-Authenticate` header as is.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn decode_header(segment: &str) -> Result<JoseHeader, AuthError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::BadEncoding)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::BadEncoding)
}

fn map_jwt_error(kind: ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSubject => AuthError::InvalidClaim {
            claim: "sub".into(),
        },
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim { claim },
        ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim { claim },
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::AlgorithmMismatch
        }
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::BadEncoding,
        _ => AuthError::Malformed,
    }
}

fn invalid(claim: &str) -> AuthError {
    AuthError::InvalidClaim {
        claim: claim.to_owned(),
    }
}

fn claims_from(claims: &Map<String, Value>) -> Result<Claims, AuthError> {
    let sub = match claims.get("sub") {
        None => {
            return Err(AuthError::MissingClaim {
                claim: "sub".into(),
            });
        }
        Some(Value::String(sub)) => sub,
        Some(_) => return Err(invalid("sub")),
    };
    if sub.is_empty() || sub.len() > MAX_SUB_BYTES || sub.chars().any(char::is_control) {
        return Err(invalid("sub"));
    }
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| invalid("exp"))?,
        Some(_) => return Err(invalid("exp")),
        None => {
            return Err(AuthError::MissingClaim {
                claim: "exp".into(),
            });
        }
    };
    let mut scopes = BTreeSet::new();
    match claims.get("scope") {
        None | Some(Value::Null) => {}
        Some(Value::String(scope)) => {
            scopes.extend(
                scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        Some(_) => return Err(invalid("scope")),
    }
    match claims.get("scp") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() && !s.contains(' ') => {
                        scopes.insert(s.clone());
                    }
                    _ => return Err(invalid("scp")),
                }
            }
        }
        Some(_) => return Err(invalid("scp")),
    }
    if scopes
        .iter()
        .any(|s| s.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(invalid("scope"));
    }
    Ok(Claims {
        sub: sub.clone(),
        scopes,
        exp,
    })
}
