//! The API Gateway Lambda authorizer: configuration from the environment and the
//! event → response function.
//!
//! - REST API (`TOKEN` or `REQUEST` authorizer): a valid token with every scope the request
//!   needs gets an IAM policy allowing `execute-api:Invoke` on the event's `methodArn`,
//!   `principalId = sub` and `context { sub, scope }`; a valid token without them gets a Deny
//!   policy (API Gateway answers 403 with the stack's `ACCESS_DENIED` challenge); a missing or
//!   invalid token fails with the error `Unauthorized`, which API Gateway turns into 401.
//! - HTTP API (payload `2.0`, `type: REQUEST`, simple responses enabled):
//!   `{ "isAuthorized": bool, "context": { sub, scope } }`.
//!
//! The scopes a request needs ([`required_scopes`]) are `mcp:read`, plus `mcp:call` and
//! `mcp:write` where the 2026-07-28 wire's `Mcp-Method` and `Mcp-Name` headers show a tool
//! call and a writing tool (`MCP_WRITE_TOOLS`). Refusing those here matters behind the REST
//! API: it renames a `WWW-Authenticate` header coming from the function, so only the gateway's
//! own refusal reaches the client with a usable challenge. The function checks every scope
//! again (and alone on the legacy wire, whose requests carry no such headers).

use std::{sync::Arc, time::Duration};

use lambda_http::lambda_runtime::{self, Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};

use crate::{
    AuthError, Claims, ConfigError, Hs256Key, Hs256KeyLoader, SCOPE_CALL, SCOPE_READ, SCOPE_WRITE,
    Verifier, VerifierConfig,
    cognito::{CognitoSettings, registered_client_lookup},
    hs256_keys_from_secret_json,
};

/// Why an event was not answered with a policy.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// Missing or invalid token. The message must be exactly `Unauthorized`: API Gateway
    /// answers 401 for it (and 500 for any other error).
    #[error("Unauthorized")]
    Unauthorized(AuthError),
    /// The keys could not be fetched: API Gateway answers 500.
    #[error("keys unavailable")]
    Unavailable,
    /// The event is neither a REST nor an HTTP API authorizer event.
    #[error("unsupported authorizer event: {0}")]
    BadEvent(&'static str),
}

impl From<AuthorizerError> for Diagnostic {
    fn from(error: AuthorizerError) -> Self {
        let error_type = match &error {
            AuthorizerError::Unauthorized(_) => "Unauthorized",
            AuthorizerError::Unavailable => "KeysUnavailable",
            AuthorizerError::BadEvent(_) => "BadEvent",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// The bounds of `MCP_SECRET_REFRESH_SECS`, the function's too.
const MIN_SECRET_REFRESH_SECS: u64 = 10;
const MAX_SECRET_REFRESH_SECS: u64 = 365 * 24 * 3600;

/// Where the HS256 keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `MCP_SIGNING_KEY`: one key, kid `env` (as the MCP function names it).
    SigningKey(Vec<u8>),
    /// `MCP_SECRET_ID`: the Secrets Manager secret with the key list.
    SecretId(String),
    /// Neither: only JWKS keys (`MCP_AUTH_JWKS_URL`).
    None,
}

/// The authorizer's settings, as read from the environment.
#[derive(Debug, Clone)]
pub struct EnvConfig {
    pub issuer: String,
    pub audience: String,
    pub keys: KeySource,
    pub jwks_url: Option<String>,
    pub leeway: Duration,
    /// How long keys read from `MCP_SECRET_ID` are used before the secret is read again
    /// (`MCP_SECRET_REFRESH_SECS`, as the function reads it; default 300 s), so a key removed
    /// from the secret stops verifying here within one to two of it.
    pub secret_refresh: Duration,
    /// The tools whose calls need `mcp:write` (`MCP_WRITE_TOOLS`, comma-separated).
    pub write_tools: Vec<String>,
    /// `MCP_AUTH=cognito`: the pool's access tokens (see [`crate::cognito`]).
    pub cognito: Option<CognitoSettings>,
}

fn http_url(name: &'static str, value: &str) -> Result<String, ConfigError> {
    if crate::is_http_url(value) {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: "is not an http(s) URL".into(),
        })
    }
}

impl EnvConfig {
    /// Reads `MCP_AUTH_ISSUER`, `MCP_AUTH_AUDIENCE`, `MCP_SECRET_ID` or `MCP_SIGNING_KEY`,
    /// `MCP_SECRET_REFRESH_SECS`, `MCP_AUTH_JWKS_URL`, `MCP_AUTH_LEEWAY_SECS` and the Cognito settings
    /// ([`CognitoSettings::from_lookup`]) through `lookup`; errors name the variable. With
    /// `MCP_AUTH=cognito` the issuer and the JWKS URL default to the pool's, and
    /// `MCP_AUTH_AUDIENCE` is the resource server's identifier.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let cognito = CognitoSettings::from_lookup(&lookup)?;
        let issuer = get("MCP_AUTH_ISSUER")
            .or_else(|| cognito.as_ref().map(|pool| pool.pool_issuer.clone()))
            .ok_or(ConfigError::Missing {
                name: "MCP_AUTH_ISSUER",
            })?;
        let audience = get("MCP_AUTH_AUDIENCE").ok_or(ConfigError::Missing {
            name: "MCP_AUTH_AUDIENCE",
        })?;
        let audience = http_url("MCP_AUTH_AUDIENCE", &audience)?;
        let jwks_url = get("MCP_AUTH_JWKS_URL")
            .map(|url| http_url("MCP_AUTH_JWKS_URL", &url))
            .transpose()?
            .or_else(|| cognito.as_ref().map(CognitoSettings::jwks_url));
        let keys = match (get("MCP_SECRET_ID"), get("MCP_SIGNING_KEY")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "MCP_SIGNING_KEY",
                    reason: "set together with MCP_SECRET_ID; set only one".into(),
                });
            }
            (Some(id), None) => KeySource::SecretId(id),
            (None, Some(key)) => {
                Hs256Key::new("env", key.as_bytes()).map_err(|_| ConfigError::Invalid {
                    name: "MCP_SIGNING_KEY",
                    reason: format!(
                        "is {} bytes; at least {} are required",
                        key.len(),
                        crate::MIN_HS256_KEY_BYTES
                    ),
                })?;
                KeySource::SigningKey(key.into_bytes())
            }
            (None, None) if jwks_url.is_some() => KeySource::None,
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: "MCP_SECRET_ID or MCP_SIGNING_KEY (or MCP_AUTH_JWKS_URL)",
                });
            }
        };
        let leeway = match get("MCP_AUTH_LEEWAY_SECS") {
            None => crate::DEFAULT_LEEWAY,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|secs| *secs <= 300)
                .map(Duration::from_secs)
                .ok_or(ConfigError::Invalid {
                    name: "MCP_AUTH_LEEWAY_SECS",
                    reason: "is not a number of seconds between 0 and 300".into(),
                })?,
        };
        let secret_refresh = match get("MCP_SECRET_REFRESH_SECS") {
            None => crate::DEFAULT_HS256_MAX_AGE,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|secs| (MIN_SECRET_REFRESH_SECS..=MAX_SECRET_REFRESH_SECS).contains(secs))
                .map(Duration::from_secs)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "MCP_SECRET_REFRESH_SECS",
                    reason: format!(
                        "is not a number of seconds between {MIN_SECRET_REFRESH_SECS} and \
                         {MAX_SECRET_REFRESH_SECS}"
                    ),
                })?,
        };
        let write_tools = get("MCP_WRITE_TOOLS")
            .map(|list| tool_names(&list))
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            issuer,
            audience,
            keys,
            jwks_url,
            leeway,
            secret_refresh,
            write_tools,
            cognito,
        })
    }

    /// Builds the verifier, reading the Secrets Manager secret if one is configured.
    pub async fn verifier(&self) -> Result<Verifier, ConfigError> {
        let mut config = VerifierConfig::new(self.issuer.clone(), self.audience.clone());
        config.jwks_url = self.jwks_url.clone();
        config.leeway = self.leeway;
        if let Some(pool) = &self.cognito {
            // The pool's API is needed only to recognise clients that registered themselves.
            let lookup = if pool.registration {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                Some(registered_client_lookup(
                    aws_sdk_cognitoidentityprovider::Client::new(&sdk),
                    pool.pool_id.clone(),
                ))
            } else {
                None
            };
            config.cognito = Some(pool.rules(&self.audience, lookup));
        }
        match &self.keys {
            KeySource::SigningKey(key) => {
                config.hs256_keys = vec![Hs256Key::new("env", key.clone())?];
                Verifier::new(config)
            }
            KeySource::SecretId(secret_id) => {
                config.hs256_keys = load_secret_keys(secret_id.clone()).await?;
                // A token signed with a key added to the secret since start reloads it (at
                // most once a minute), so rotation needs no redeploy; and the secret is read
                // again once the keys are older than MCP_SECRET_REFRESH_SECS, so a key
                // removed from it stops verifying (see `Verifier::with_hs256_reload`).
                config.hs256_max_age = Some(self.secret_refresh);
                let secret_id = secret_id.clone();
                let load: Hs256KeyLoader = Arc::new(move || {
                    let secret_id = secret_id.clone();
                    Box::pin(load_secret_keys(secret_id))
                });
                Verifier::with_hs256_reload(config, load)
            }
            KeySource::None => Verifier::new(config),
        }
    }
}

/// `MCP_WRITE_TOOLS`: tool names (letters, digits, `_`, `-`, `.`), separated by commas.
fn tool_names(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .map(|name| {
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            valid.then(|| name.to_owned()).ok_or(ConfigError::Invalid {
                name: "MCP_WRITE_TOOLS",
                reason: format!("{name:?} is not a tool name"),
            })
        })
        .collect()
}

async fn load_secret_keys(secret_id: String) -> Result<Vec<Hs256Key>, ConfigError> {
    let text = read_secret(&secret_id).await?;
    hs256_keys_from_secret_json(&text)
}

async fn read_secret(secret_id: &str) -> Result<String, ConfigError> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let fetch_error = |message: String| ConfigError::SecretFetch {
        secret_id: secret_id.to_owned(),
        message,
    };
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            fetch_error(aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())
        })?;
    output
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| fetch_error("the secret has no SecretString".into()))
}

/// A header's value by case-insensitive name from an event's `headers` object.
fn header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event
        .get("headers")?
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| value.as_str())
}

/// The REST `REQUEST` event's `queryStringParameters`, or the HTTP API's `rawQueryString`,
/// as one query string for [`crate::reject_query_token`].
fn query_string(event: &Value) -> Option<String> {
    if let Some(raw) = event.get("rawQueryString").and_then(Value::as_str) {
        return Some(raw.to_owned());
    }
    let parameters = event.get("queryStringParameters")?.as_object()?;
    Some(
        parameters
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("&"),
    )
}

/// Verifies the request's token: query-string tokens refused, then the `Authorization` value.
async fn verify_request(
    verifier: &Verifier,
    event: &Value,
    authorization: Option<&str>,
) -> Result<Claims, AuthError> {
    crate::reject_query_token(query_string(event).as_deref())?;
    verifier.verify_authorization(authorization).await
}

fn context(claims: &Claims) -> Value {
    json!({ "sub": claims.sub, "scope": claims.scope_string() })
}

fn policy(principal: &str, effect: &str, resource: &str, claims: &Claims) -> Value {
    json!({
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": effect,
                "Resource": resource,
            }],
        },
        "context": context(claims),
    })
}

/// The scopes a request needs, as far as its headers show: `mcp:read` always, `mcp:call` for a
/// 2026-07-28 `tools/call`, and `mcp:write` when that call names one of `write_tools`.
pub fn required_scopes(event: &Value, write_tools: &[String]) -> Vec<&'static str> {
    let mut scopes = vec![SCOPE_READ];
    if header(event, "mcp-method") == Some("tools/call") {
        scopes.push(SCOPE_CALL);
        if header(event, "mcp-name").is_some_and(|name| write_tools.iter().any(|t| t == name)) {
            scopes.push(SCOPE_WRITE);
        }
    }
    scopes
}

/// True when `claims` grant every scope in `scopes`; logs the first one missing.
fn grants(claims: &Claims, scopes: &[&str]) -> bool {
    match scopes.iter().find(|scope| claims.require(scope).is_err()) {
        None => true,
        Some(missing) => {
            tracing::info!(sub = %claims.sub, scope = missing, "token lacks a scope the request needs");
            false
        }
    }
}

/// Answers one authorizer event; `write_tools` are the tools whose calls need `mcp:write`.
pub async fn handle_event(
    verifier: &Verifier,
    write_tools: &[String],
    event: &Value,
) -> Result<Value, AuthorizerError> {
    let needed = required_scopes(event, write_tools);
    let kind = event.get("type").and_then(Value::as_str);
    let version = event.get("version").and_then(Value::as_str);
    if version == Some("2.0") {
        if kind != Some("REQUEST") {
            return Err(AuthorizerError::BadEvent(
                "payload 2.0 without type REQUEST",
            ));
        }
        let result = verify_request(verifier, event, header(event, "authorization")).await;
        return match result {
            Ok(claims) => Ok(json!({
                "isAuthorized": grants(&claims, &needed),
                "context": context(&claims),
            })),
            Err(AuthError::KeysUnavailable) => Err(AuthorizerError::Unavailable),
            Err(error) => {
                tracing::info!(reason = %error, "token refused");
                Ok(json!({ "isAuthorized": false, "context": {} }))
            }
        };
    }
    let method_arn = event
        .get("methodArn")
        .and_then(Value::as_str)
        .ok_or(AuthorizerError::BadEvent("no methodArn"))?;
    let authorization = match kind {
        Some("REQUEST") => header(event, "authorization"),
        Some("TOKEN") => event.get("authorizationToken").and_then(Value::as_str),
        _ => {
            return Err(AuthorizerError::BadEvent(
                "type is neither REQUEST nor TOKEN",
            ));
        }
    };
    match verify_request(verifier, event, authorization).await {
        Ok(claims) => {
            let effect = if grants(&claims, &needed) {
                "Allow"
            } else {
                "Deny"
            };
            Ok(policy(&claims.sub, effect, method_arn, &claims))
        }
        Err(AuthError::KeysUnavailable) => Err(AuthorizerError::Unavailable),
        Err(error) => {
            tracing::info!(reason = %error, "token refused");
            Err(AuthorizerError::Unauthorized(error))
        }
    }
}

/// JSON log lines without a timestamp (CloudWatch stamps each line), `RUST_LOG` or `info`: the
/// logging of every small Lambda function of the product (this one, the key rotation).
pub fn init_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .init();
}

/// The Lambda entry point: tracing, configuration (failing start on a bad variable), then the
/// runtime loop.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    init_logs();
    let config = EnvConfig::from_lookup(|name| std::env::var(name).ok())?;
    let verifier = config.verifier().await?;
    let verifier = &verifier;
    let write_tools = config.write_tools.as_slice();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle_event(verifier, write_tools, &event.payload).await
    }))
    .await
}
