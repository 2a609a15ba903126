//! Who is calling and what they may do: bearer tokens in, a [`Principal`] and a [`Grant`] out.
//!
//! Two stages of the `/mcp` path ([`super::pipeline`]):
//!
//! - [`authenticate`] (outermost) verifies the `Authorization: Bearer` JWT with the
//!   [`authorizer`] crate's verifier, the same code the API Gateway authorizer runs, and stores
//!   the token's subject and scopes in the request. A host may have done this already (the
//!   Lambda host takes both from the API Gateway authorizer's context); then it trusts them.
//!   Failures are 401 (403 for a subject that cannot be a principal) with
//!   `WWW-Authenticate: Bearer resource_metadata="…"` pointing at the RFC 9728 document.
//!   Each failure spends its source address's [`FailureBudget`]; a source that spent it gets
//!   429 for any token not verified lately, before its signature is checked.
//! - [`authorize`] (after the JSON-RPC guard has parsed the body) checks the scopes the message
//!   needs: `mcp:read` for everything, plus `mcp:call` for `tools/call`, plus `mcp:write` when
//!   the tool is not marked read-only. Missing scope is 403 `insufficient_scope` naming every
//!   scope the call needs (RFC 6750 section 3.1, the MCP step-up flow).
//!
//! Tokens are only read here; they are never logged, stored or sent anywhere.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use authorizer::{
    AuthError, Claims, Hs256KeyLoader, SCOPE_CALL, SCOPE_READ, SCOPE_WRITE, Verifier,
    VerifierConfig, cognito::ClientLookup,
};
use axum::{
    Json,
    extract::Request,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    Sources,
    caller_limits::CallerLimits,
    jsonrpc_guard::RpcMessage,
    out_of_order,
    protected_resource::ResourceMetadata,
    state::{Refusal, RequestState},
    unauthenticated::FailureBudget,
};
use crate::{
    config::{AuthSettings, UnauthenticatedSettings},
    keys::{KeySet, Keyring},
    principal::Principal,
};

/// The scopes a request carries; `Everything` when authentication is off.
#[derive(Debug, Clone)]
pub enum Grant {
    Everything,
    Scopes(Arc<BTreeSet<String>>),
}

impl Grant {
    /// The scopes of an OAuth `scope` string (space-separated).
    pub fn from_scope_string(scope: &str) -> Self {
        Self::Scopes(Arc::new(
            scope.split_whitespace().map(str::to_owned).collect(),
        ))
    }

    /// No scope at all: what a request carries that was never authenticated.
    pub fn nothing() -> Self {
        Self::Scopes(Arc::default())
    }

    fn allows(&self, scope: &str) -> bool {
        match self {
            Self::Everything => true,
            Self::Scopes(scopes) => scopes.contains(scope),
        }
    }
}

/// The state both middlewares share: how to verify, and where the metadata lives.
#[derive(Clone)]
pub struct Auth {
    bearer: Option<Arc<Bearer>>,
    /// What each source address may still fail (`MCP_UNAUTHENTICATED_*`); `None` when off.
    failures: Option<Arc<FailureBudget>>,
    sources: Sources,
    /// What a known caller may still send.
    limits: CallerLimits,
    /// Shared, not copied: the state is cloned for every request.
    metadata: Arc<ResourceMetadata>,
    write_tools: Arc<HashSet<String>>,
}

/// How long a verified token is trusted without checking its signature again (never past its `exp`).
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Verified tokens remembered at most; beyond it the memory starts over.
const VERIFIED_MAX: usize = 4096;

/// A verifier whose HS256 keys follow the keyring (rotation in the secret reaches it).
struct Bearer {
    verifier: Verifier,
    keyring: Keyring,
    synced: Mutex<Arc<KeySet>>,
    /// The verifier's JWKS generation when `verified` was last emptied.
    jwks_synced: AtomicU64,
    /// Tokens verified lately, by the SHA-256 of the token (the token itself is not kept):
    /// a client sends the same token with every request, and checking its signature was a
    /// fifth of a request's time. Emptied whenever the signing keys or the JWKS keys change.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// A remembered verification.
struct Verified {
    claims: Claims,
    until: Instant,
}

impl Auth {
    /// Builds the verifier for `settings` over the keyring's keys; `write_tools` names the
    /// tools that need `mcp:write`; `registered_clients` asks a Cognito pool about the
    /// clients that registered here.
    pub fn new(
        settings: &AuthSettings,
        keyring: &Keyring,
        metadata: ResourceMetadata,
        write_tools: HashSet<String>,
        registered_clients: Option<ClientLookup>,
    ) -> Result<Self, authorizer::ConfigError> {
        let bearer = match settings {
            AuthSettings::Off => {
                tracing::warn!(
                    "AUTHENTICATION IS OFF (--no-auth / MCP_AUTH=off): every caller acts as \
                     `anonymous` with every scope. Never expose this server to a network."
                );
                None
            }
            AuthSettings::Jwt {
                issuer,
                audience,
                jwks_url,
                leeway,
                cognito,
            } => {
                let keys = keyring.keys();
                let mut config = VerifierConfig::new(issuer.clone(), audience.clone());
                config.hs256_keys = keys.all().to_vec();
                config.jwks_url = jwks_url.clone();
                config.leeway = *leeway;
                config.cognito = cognito
                    .as_ref()
                    .map(|pool| pool.rules(audience, registered_clients));
                // The keyring reads the secret every MCP_SECRET_REFRESH_SECS and `sync_keys`
                // hands each change over, so the verifier reloads only for an unknown `kid`.
                config.hs256_max_age = None;
                let verifier = Verifier::with_hs256_reload(config, reload_from(keyring.clone()))?;
                let jwks_synced = AtomicU64::new(verifier.jwks_generation());
                Some(Arc::new(Bearer {
                    verifier,
                    keyring: keyring.clone(),
                    synced: Mutex::new(keys),
                    jwks_synced,
                    verified: Mutex::default(),
                }))
            }
        };
        Ok(Self {
            bearer,
            failures: None,
            sources: Sources::default(),
            limits: CallerLimits::default(),
            metadata: Arc::new(metadata),
            write_tools: Arc::new(write_tools),
        })
    }

    /// Applies `limits` to every caller once it is known.
    pub fn with_caller_limits(mut self, limits: CallerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Gives each source address, as `sources` tells them, a budget of failed authentications
    /// (none when `settings` is `None`).
    pub fn with_failure_budget(
        mut self,
        settings: Option<UnauthenticatedSettings>,
        sources: Sources,
    ) -> Self {
        self.failures = settings.map(|settings| Arc::new(FailureBudget::new(settings)));
        self.sources = sources;
        self
    }

    /// The challenge and body for a refused request, which the request log counts by reason.
    fn refusal(&self, headers: &HeaderMap, state: &RequestState, error: &AuthError) -> Response {
        state.refused(Refusal::Unauthorized(error.reason()));
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let code = error.error_code();
        let body = json!({
            "error": code.unwrap_or(if status == StatusCode::SERVICE_UNAVAILABLE {
                "temporarily_unavailable"
            } else {
                "unauthorized"
            }),
            "error_description": error.error_description(),
        });
        let mut response = (status, Json(body)).into_response();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let challenge = challenge(self.metadata.metadata_url(headers).as_deref(), error);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Reloads the keyring (at most once a minute, the verifier's limit) when a token names an
/// unknown `kid`: a key just added to the secret works before the next scheduled refresh.
fn reload_from(keyring: Keyring) -> Hs256KeyLoader {
    Arc::new(move || {
        let keyring = keyring.clone();
        Box::pin(async move {
            keyring
                .refresh()
                .await
                .map_err(|error| authorizer::ConfigError::SecretFetch {
                    secret_id: "signing keys".into(),
                    message: error.to_string(),
                })?;
            Ok(keyring.keys().all().to_vec())
        })
    })
}

impl Bearer {
    /// Hands the verifier the keyring's keys if they changed since the last request, so a key
    /// removed from the secret stops verifying after the keyring's next refresh; forgets the
    /// verified tokens when those keys or the JWKS keys changed. (The keyring keeps the same
    /// set when a refresh finds the secret unchanged, so a refresh alone forgets nothing.)
    fn sync_keys(&self) {
        let current = self.keyring.keys();
        let mut forget = false;
        {
            let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
            if !Arc::ptr_eq(&current, &synced) {
                if let Err(error) = self.verifier.replace_hs256_keys(current.all()) {
                    tracing::error!(%error, "refreshed signing keys are not usable for tokens");
                }
                *synced = current;
                forget = true;
            }
        }
        let generation = self.verifier.jwks_generation();
        if self.jwks_synced.swap(generation, Ordering::AcqRel) != generation {
            forget = true;
        }
        if forget {
            // A token signed with a key just removed must not outlive the key here.
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// The claims of `token` if it was verified within [`VERIFIED_FOR`] and has not expired.
    fn remembered(&self, digest: &[u8; 32]) -> Option<Claims> {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let entry = verified.get(digest)?;
        if entry.until > Instant::now() && entry.claims.exp > unix_now() {
            return Some(entry.claims.clone());
        }
        verified.remove(digest);
        None
    }

    fn remember(&self, digest: [u8; 32], claims: &Claims) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        let until = Instant::now() + VERIFIED_FOR;
        verified.insert(
            digest,
            Verified {
                claims: claims.clone(),
                until,
            },
        );
    }

    /// The claims of the request's token. A token verified lately is taken from memory;
    /// before any other is checked, `may_check` says whether the source may try one now.
    async fn verify(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        may_check: impl FnOnce() -> Result<(), Refused>,
    ) -> Result<Claims, Refused> {
        self.sync_keys();
        let token = read_token(headers, query);
        let digest: Option<[u8; 32]> = token
            .as_ref()
            .ok()
            .map(|token| Sha256::digest(token.as_bytes()).into());
        if let Some(claims) = digest.as_ref().and_then(|digest| self.remembered(digest)) {
            return Ok(claims);
        }
        may_check()?;
        let claims = self.verifier.verify(token?).await?;
        if let Some(digest) = digest {
            self.remember(digest, &claims);
        }
        Ok(claims)
    }
}

/// Why a request was not authenticated.
enum Refused {
    Token(AuthError),
    /// Its source has spent its budget of failed authentications: the 429 to answer.
    TooManyFailures(Box<Response>),
}

impl From<AuthError> for Refused {
    fn from(error: AuthError) -> Self {
        Self::Token(error)
    }
}

/// The bearer token of one `Authorization` header (never one in the query string).
fn read_token<'a>(headers: &'a HeaderMap, query: Option<&str>) -> Result<&'a str, AuthError> {
    authorizer::reject_query_token(query)?;
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(value), None) => Some(
            value
                .to_str()
                .map_err(|_| AuthError::MalformedAuthorization)?,
        ),
        (Some(_), Some(_)) => return Err(AuthError::MalformedAuthorization),
    };
    authorizer::parse_authorization(authorization)
}

/// Seconds since the Unix epoch, as `exp` counts them.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `WWW-Authenticate: Bearer resource_metadata="…", error="…", error_description="…"[, scope="…"]`.
fn challenge(metadata_url: Option<&str>, error: &AuthError) -> HeaderValue {
    let mut params = Vec::new();
    if let Some(url) = metadata_url {
        params.push(format!("resource_metadata=\"{url}\""));
    }
    if let Some(code) = error.error_code() {
        params.push(format!("error=\"{code}\""));
        params.push(format!(
            "error_description=\"{}\"",
            error.error_description().replace(['"', '\\'], "'")
        ));
    }
    if let AuthError::InsufficientScope { required } = error {
        params.push(format!("scope=\"{required}\""));
    }
    let value = if params.is_empty() {
        "Bearer".to_owned()
    } else {
        format!("Bearer {}", params.join(", "))
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// The stage: verifies the caller (unless the host already did), sets its principal and
/// grant in the request's state, and applies the caller's limits ([`CallerLimits`]).
pub async fn authenticate<N, F>(auth: &Auth, request: Request, next: N) -> Response
where
    N: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    let Some(state) = RequestState::of(request.extensions()).cloned() else {
        return out_of_order("the request state");
    };
    // The body stays out of the checks: a future holding a reference to it could not move
    // between threads.
    let (parts, body) = request.into_parts();
    let (principal, grant) = match auth.identify(&parts, &state).await {
        Ok(identity) => identity,
        Err(refusal) => return *refusal,
    };
    state.authenticated(principal, grant);
    let request = Request::from_parts(parts, body);
    auth.limits.within(&state, request, next).await
}

impl Auth {
    /// Who calls and what they may do, or the answer refusing the request.
    async fn identify(
        &self,
        request: &Parts,
        state: &RequestState,
    ) -> Result<(Principal, Grant), Box<Response>> {
        let extensions = &request.extensions;
        if let Some(principal) = extensions.get::<Principal>() {
            // The host vouched for the caller and set the grant too; with authentication off,
            // every caller has every scope, whoever the host named.
            let grant = match (&self.bearer, extensions.get::<Grant>()) {
                (None, None) => Grant::Everything,
                (_, grant) => grant.cloned().unwrap_or_else(Grant::nothing),
            };
            return Ok((principal.clone(), grant));
        }
        let Some(bearer) = &self.bearer else {
            return Ok((Principal::anonymous(), Grant::Everything));
        };
        // Only a token this instance has not verified lately needs the source, so a known
        // caller's request never looks it up.
        let headers = &request.headers;
        let source = || {
            let budget = self.failures.as_ref()?;
            Some((budget, self.sources.of_parts(extensions, headers)?))
        };
        let may_check = || match source() {
            Some((budget, ip)) => match budget.exhausted(ip) {
                Some(retry_after_secs) => Err(Refused::TooManyFailures(Box::new(
                    budget.refusal(retry_after_secs),
                ))),
                None => Ok(()),
            },
            None => Ok(()),
        };
        let claims = match bearer.verify(headers, request.uri.query(), may_check).await {
            Ok(claims) => claims,
            Err(Refused::TooManyFailures(refusal)) => {
                tracing::info!("request refused: too many failed authentications from its source");
                state.refused(Refusal::RateLimited);
                return Err(refusal);
            }
            Err(Refused::Token(error)) => {
                tracing::info!(reason = %error, "request refused: authentication");
                if let Some((budget, ip)) = source() {
                    budget.spend(ip);
                }
                return Err(Box::new(self.refusal(headers, state, &error)));
            }
        };
        match Principal::new(&claims.sub) {
            Ok(principal) => Ok((principal, Grant::Scopes(Arc::new(claims.scopes)))),
            Err(error) => {
                tracing::info!(%error, "request refused: unusable subject");
                let error = AuthError::InvalidClaim {
                    claim: "sub".into(),
                };
                Err(Box::new(self.refusal(&request.headers, state, &error)))
            }
        }
    }
}

fn required_scopes(
    message: Option<&RpcMessage>,
    write_tools: &HashSet<String>,
) -> Vec<&'static str> {
    let mut scopes = vec![SCOPE_READ];
    if let Some(message) = message
        && message.method.as_deref() == Some("tools/call")
    {
        scopes.push(SCOPE_CALL);
        if message
            .tool
            .as_deref()
            .is_some_and(|tool| write_tools.contains(tool))
        {
            scopes.push(SCOPE_WRITE);
        }
    }
    scopes
}

/// The stage: refuses, with 403 `insufficient_scope`, a message the caller's grant does not
/// cover; a request without a grant (never authenticated) is refused like one without scopes.
pub async fn authorize<N, F>(auth: &Auth, request: Request, next: N) -> Response
where
    N: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    let Some(state) = RequestState::of(request.extensions()) else {
        return out_of_order("the request state");
    };
    let nothing = Grant::nothing();
    let grant = state.grant().unwrap_or(&nothing);
    let needed = required_scopes(state.message(), &auth.write_tools);
    if let Some(missing) = needed.iter().find(|scope| !grant.allows(scope)) {
        tracing::info!(scope = missing, "request refused: insufficient scope");
        // The challenge names every scope the call needs, so a client steps up once.
        let required = needed.iter().map(|scope| auth.metadata.scope_name(scope));
        let error = AuthError::InsufficientScope {
            required: required.collect::<Vec<_>>().join(" "),
        };
        return auth.refusal(request.headers(), state, &error);
    }
    next(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(method: &str, tool: Option<&str>) -> RpcMessage {
        RpcMessage {
            method: Some(method.into()),
            id: Some(1.into()),
            tool: tool.map(str::to_owned),
            answers: None,
        }
    }

    #[test]
    fn scopes_follow_the_method_and_the_tool() {
        let write = HashSet::from(["state_set".to_owned()]);
        assert_eq!(required_scopes(None, &write), [SCOPE_READ]);
        assert_eq!(
            required_scopes(Some(&message("tools/list", None)), &write),
            [SCOPE_READ]
        );
        assert_eq!(
            required_scopes(Some(&message("tools/call", Some("echo"))), &write),
            [SCOPE_READ, SCOPE_CALL]
        );
        assert_eq!(
            required_scopes(Some(&message("tools/call", Some("state_set"))), &write),
            [SCOPE_READ, SCOPE_CALL, SCOPE_WRITE]
        );
    }

    #[test]
    fn challenges_name_the_metadata_error_and_scope() {
        let url = Some("https://api.example.com/.well-known/oauth-protected-resource/mcp");
        assert_eq!(
            challenge(url, &AuthError::MissingAuthorization),
            "Bearer resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource/mcp\""
        );
        assert_eq!(
            challenge(None, &AuthError::Expired),
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
        );
        assert_eq!(
            challenge(
                None,
                &AuthError::InsufficientScope {
                    required: "mcp:write".into()
                }
            ),
            "Bearer error=\"insufficient_scope\", error_description=\"the token lacks the `mcp:write` scope\", scope=\"mcp:write\""
        );
    }
}
