//! JWT verification: the configuration, the verifier and the verified claims.

use std::{
    collections::BTreeSet,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::{
    AuthError, ConfigError, Hs256Key,
    cognito::{CognitoCheck, CognitoRules},
    jwks::{JwksCache, JwksTiming, PinnedKey},
};

/// Clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The longest token accepted.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest time between two JWKS fetches (unknown key ids, failed fetches), and between
/// two reloads of the HS256 keys.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// How long a JWKS is fresh when its response carries no `Cache-Control: max-age`.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// The shortest `max-age` of a JWKS honoured: a provider cannot make us fetch per request.
pub const DEFAULT_JWKS_MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// The longest `max-age` of a JWKS honoured: a retired key stops verifying within two of it.
pub const DEFAULT_JWKS_MAX_MAX_AGE: Duration = Duration::from_secs(3600);
/// How long reloaded HS256 keys are used before they are read again (the function's
/// `MCP_SECRET_REFRESH_SECS` default).
pub const DEFAULT_HS256_MAX_AGE: Duration = Duration::from_secs(300);
/// How long one reload of the HS256 keys may take before it counts as failed.
const HS256_LOAD_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// The shortest time between two JWKS fetches after the first (a token with an unknown
    /// `kid`, a failed fetch) and between two reloads of the HS256 keys. At most
    /// `jwks_min_max_age`.
    pub jwks_refresh_interval: Duration,
    /// How long a fetched JWKS is fresh when the provider sends no `Cache-Control: max-age`.
    pub jwks_max_age: Duration,
    /// The bounds a provider's `max-age` is clamped to. A set is served for at most two max
    /// ages after its fetch (the second while it is fetched again, or while the provider is
    /// down), then requests wait for a fetch and get `KeysUnavailable` if it fails.
    pub jwks_min_max_age: Duration,
    pub jwks_max_max_age: Duration,
    /// With [`Verifier::with_hs256_reload`]: HS256 keys older than this are loaded again
    /// (in the background; a request finding them older than twice this waits for the load),
    /// so a key removed from the secret stops verifying. `None`: only an unknown `kid`
    /// reloads, for a caller that hands over the keys itself ([`Verifier::replace_hs256_keys`]).
    pub hs256_max_age: Option<Duration>,
    /// Amazon Cognito access tokens: `aud` is not checked (Cognito sets none); `token_use`,
    /// `client_id` and the prefixed scopes are, as [`CognitoRules`] says.
    pub cognito: Option<CognitoRules>,
}

impl VerifierConfig {
    /// A configuration with the default leeway, size limit and key lifetimes, and no keys.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            hs256_keys: Vec::new(),
            jwks_url: None,
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            jwks_min_max_age: DEFAULT_JWKS_MIN_MAX_AGE,
            jwks_max_max_age: DEFAULT_JWKS_MAX_MAX_AGE,
            hs256_max_age: Some(DEFAULT_HS256_MAX_AGE),
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
    jwks: Option<Arc<JwksCache>>,
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
    /// The shortest time between two reloads.
    interval: Duration,
    /// Keys older than this are reloaded; `None`: only on an unknown `kid`.
    max_age: Option<Duration>,
    /// The last reload, successful or not; held while one runs.
    attempted_at: tokio::sync::Mutex<Option<Instant>>,
    /// When the keys in use were loaded (or given at start).
    loaded_at: Mutex<Instant>,
    /// A background reload is under way.
    reloading: AtomicBool,
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

    /// Like [`Verifier::new`], and the verifier calls `load` for the current HS256 keys when a
    /// token names an unknown `kid` (at most once per `config.jwks_refresh_interval`), so a key
    /// added to the secret works without a restart, and when the keys are older than
    /// `config.hs256_max_age`, so a key removed from it stops verifying: within one max age
    /// (plus the load) while tokens keep arriving, at most two. A failed load keeps the keys
    /// in use (as the function's keyring does, so both accept the same tokens), retried once
    /// per interval.
    pub fn with_hs256_reload(
        config: VerifierConfig,
        load: Hs256KeyLoader,
    ) -> Result<Self, ConfigError> {
        if config.hs256_max_age == Some(Duration::ZERO) {
            return Err(ConfigError::Invalid {
                name: "hs256_max_age",
                reason: "is zero".into(),
            });
        }
        let reloader = Reloader {
            load,
            interval: config.jwks_refresh_interval,
            max_age: config.hs256_max_age,
            attempted_at: tokio::sync::Mutex::new(None),
            loaded_at: Mutex::new(Instant::now()),
            reloading: AtomicBool::new(false),
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
        let jwks = match &config.jwks_url {
            None => None,
            Some(url) => {
                let url = url.clone();
                let timing = jwks_timing(&config)?;
                if !crate::is_http_url(&url) {
                    return Err(ConfigError::Invalid {
                        name: "jwks_url",
                        reason: "is not an http(s) URL".into(),
                    });
                }
                let cache = JwksCache::new(url, timing).map_err(|e| ConfigError::Invalid {
                    name: "jwks_url",
                    reason: e.to_string(),
                })?;
                Some(Arc::new(cache))
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

    /// Counts the changes of the JWKS key set (0 without a JWKS URL): whoever remembers
    /// verified tokens forgets them when it moves, so a retired key's tokens do not outlive it.
    pub fn jwks_generation(&self) -> u64 {
        self.inner.jwks.as_ref().map_or(0, |jwks| jwks.generation())
    }

    fn hs_keys(&self) -> Arc<HsKeys> {
        match self.inner.hs256.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the HS256 keys if a loader is set and the last attempt is older than `gap`
    /// (concurrent callers wait for the one reload); true if the keys were replaced.
    async fn reload_hs_keys(&self, gap: Duration) -> bool {
        let Some(reloader) = &self.inner.reloader else {
            return false;
        };
        let mut attempted_at = reloader.attempted_at.lock().await;
        if attempted_at.is_some_and(|at| at.elapsed() < gap) {
            return false;
        }
        let started = Instant::now();
        *attempted_at = Some(started);
        match tokio::time::timeout(HS256_LOAD_TIMEOUT, (reloader.load)()).await {
            Ok(Ok(keys)) => match self.replace_hs256_keys(&keys) {
                Ok(()) => {
                    *reloader.loaded_at.lock().unwrap_or_else(|p| p.into_inner()) = started;
                    true
                }
                Err(error) => {
                    tracing::warn!(%error, "reloaded HS256 keys are not valid; keeping the old ones");
                    false
                }
            },
            Ok(Err(error)) => {
                tracing::warn!(%error, "reloading HS256 keys failed; keeping the old ones");
                false
            }
            Err(_) => {
                tracing::warn!(
                    timeout_secs = HS256_LOAD_TIMEOUT.as_secs(),
                    "reloading HS256 keys timed out; keeping the old ones"
                );
                false
            }
        }
    }

    /// Reloads the HS256 keys when they are older than their max age: in the background
    /// (one reload at a time) while they are younger than two max ages, else before this
    /// request goes on. Failed reloads are retried once per interval, not per request.
    async fn keep_hs_keys_fresh(&self) {
        let Some(reloader) = &self.inner.reloader else {
            return;
        };
        let Some(max_age) = reloader.max_age else {
            return;
        };
        let age = reloader
            .loaded_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if age < max_age {
            return;
        }
        let gap = reloader.interval.min(max_age);
        if age >= max_age.saturating_mul(2) {
            self.reload_hs_keys(gap).await;
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if reloader.reloading.swap(true, Ordering::AcqRel) {
            return;
        }
        let verifier = self.clone();
        runtime.spawn(async move {
            verifier.reload_hs_keys(gap).await;
            if let Some(reloader) = &verifier.inner.reloader {
                reloader.reloading.store(false, Ordering::Release);
            }
        });
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
        if alg == Algorithm::HS256 {
            self.keep_hs_keys_fresh().await;
        }
        match kid {
            Some(kid) => {
                if let Some(key) = find_hs(kid) {
                    return Ok(key);
                }
                if alg == Algorithm::HS256
                    && let Some(reloader) = &inner.reloader
                    && self.reload_hs_keys(reloader.interval).await
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

/// The JWKS cache's timing from `config`, checked: bounds in order, and the retry interval
/// within the shortest max age, so an expired set can always be fetched again in time.
fn jwks_timing(config: &VerifierConfig) -> Result<JwksTiming, ConfigError> {
    let invalid = |name: &'static str, reason: &str| ConfigError::Invalid {
        name,
        reason: reason.into(),
    };
    if config.jwks_min_max_age.is_zero() {
        return Err(invalid("jwks_min_max_age", "is zero"));
    }
    if config.jwks_max_max_age < config.jwks_min_max_age {
        return Err(invalid(
            "jwks_max_max_age",
            "is shorter than jwks_min_max_age",
        ));
    }
    if config.jwks_refresh_interval > config.jwks_min_max_age {
        return Err(invalid(
            "jwks_refresh_interval",
            "is longer than jwks_min_max_age",
        ));
    }
    Ok(JwksTiming {
        retry_interval: config.jwks_refresh_interval,
        default_max_age: config.jwks_max_age,
        min_max_age: config.jwks_min_max_age,
        max_max_age: config.jwks_max_max_age,
    })
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
