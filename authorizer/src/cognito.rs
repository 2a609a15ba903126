//! Amazon Cognito user-pool access tokens, which MCP clients get by signing in through the
//! pool's hosted page.
//!
//! They differ from the audience-bound tokens the rest of the crate checks: Cognito puts no
//! `aud` in an access token but `client_id` and `token_use`, and a custom scope arrives
//! prefixed by its resource server's identifier (`https://api.example.com/mcp/mcp:read`).
//! So a Cognito token is accepted when, besides signature, issuer and expiry:
//!
//! - `token_use` is `access` (an ID token, whose `aud` is a client id, is refused);
//! - `aud`, which managed login sets to the `resource` a client asked for, names this resource
//!   when present;
//! - `client_id` is one of the configured app clients, or a client this server registered
//!   (RFC 7591; its name starts with [`REGISTERED_CLIENT_PREFIX`]), which [`ClientLookup`]
//!   asks the pool about once and remembers;
//! - its scopes are those under this resource's identifier, mapped to the product's names;
//!   every other scope (`openid`, another resource's) grants nothing here.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Map, Value};

use crate::{AuthError, ConfigError};

/// Names of the app clients this server creates for registering MCP clients start with this.
pub const REGISTERED_CLIENT_PREFIX: &str = "mcp-registered-";

/// How long an answer about a client is remembered: a known client for long (its tokens are
/// verified with every request), an unknown or deleted one briefly.
const KNOWN_CLIENT_FOR: Duration = Duration::from_secs(600);
const UNKNOWN_CLIENT_FOR: Duration = Duration::from_secs(60);
/// Answers remembered at most; beyond it the memory starts over.
const CLIENTS_REMEMBERED: usize = 1024;

/// Asks the pool whether a client id is one this server registered: `Ok(false)` for a client
/// that does not exist or was not registered here, `Err` when the pool could not be asked.
pub type ClientLookup =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send>> + Send + Sync>;

/// The pool's issuer URL for a user pool id (`<region>_<id>`).
pub fn pool_issuer(pool_id: &str) -> Result<String, ConfigError> {
    let invalid = || ConfigError::Invalid {
        name: "MCP_AUTH_COGNITO_USER_POOL_ID",
        reason: format!("{pool_id:?} is not a user pool id (<region>_<id>)"),
    };
    let (region, id) = pool_id.split_once('_').ok_or_else(invalid)?;
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let id_ok = !id.is_empty() && id.len() <= 55 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !(region_ok && id_ok) {
        return Err(invalid());
    }
    Ok(format!(
        "https://cognito-idp.{region}.amazonaws.com/{pool_id}"
    ))
}

/// The product scopes `identifier/<scope>` stands for, in the form Cognito issues them.
pub fn prefixed_scopes(identifier: &str) -> [String; 3] {
    [crate::SCOPE_READ, crate::SCOPE_CALL, crate::SCOPE_WRITE]
        .map(|scope| format!("{}/{scope}", identifier.trim_end_matches('/')))
}

/// The Cognito settings the authorizer and the function both read: `MCP_AUTH=cognito` with
/// `MCP_AUTH_COGNITO_USER_POOL_ID`, `MCP_AUTH_COGNITO_CLIENT_IDS` (comma-separated) and
/// `MCP_OAUTH_REGISTRATION` (`on` accepts the clients this server registered; default `off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoSettings {
    pub pool_id: String,
    /// The pool's issuer URL, from the pool id.
    pub pool_issuer: String,
    pub client_ids: Vec<String>,
    pub registration: bool,
}

impl CognitoSettings {
    /// `None` unless `MCP_AUTH` is `cognito`; errors name the variable.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let registration = match get("MCP_OAUTH_REGISTRATION").as_deref().map(str::trim) {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "MCP_OAUTH_REGISTRATION",
                    reason: format!("{other:?} is not on or off"),
                });
            }
        };
        if get("MCP_AUTH").as_deref() != Some("cognito") {
            if registration {
                return Err(ConfigError::Invalid {
                    name: "MCP_OAUTH_REGISTRATION",
                    reason: "is on, which needs MCP_AUTH=cognito (the pool registers the clients)"
                        .into(),
                });
            }
            return Ok(None);
        }
        let pool_id = get("MCP_AUTH_COGNITO_USER_POOL_ID").ok_or(ConfigError::Missing {
            name: "MCP_AUTH_COGNITO_USER_POOL_ID",
        })?;
        let pool_id = pool_id.trim().to_owned();
        let pool_issuer = pool_issuer(&pool_id)?;
        let client_ids = get("MCP_AUTH_COGNITO_CLIENT_IDS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| {
                is_client_id(id)
                    .then(|| id.to_owned())
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "MCP_AUTH_COGNITO_CLIENT_IDS",
                        reason: format!("{id:?} is not an app client id"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if client_ids.is_empty() && !registration {
            return Err(ConfigError::Missing {
                name: "MCP_AUTH_COGNITO_CLIENT_IDS (or MCP_OAUTH_REGISTRATION=on)",
            });
        }
        Ok(Some(Self {
            pool_id,
            pool_issuer,
            client_ids,
            registration,
        }))
    }

    /// The pool's key set.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.pool_issuer)
    }

    /// The rules for tokens of this resource; `registered_clients` asks the pool about clients
    /// it registered (used only when registration is on).
    pub fn rules(
        &self,
        resource_identifier: &str,
        registered_clients: Option<ClientLookup>,
    ) -> CognitoRules {
        CognitoRules {
            resource_identifier: resource_identifier.to_owned(),
            client_ids: self.client_ids.clone(),
            registered_clients: registered_clients.filter(|_| self.registration),
        }
    }
}

/// What makes a Cognito access token acceptable here.
#[derive(Clone)]
pub struct CognitoRules {
    /// The resource server's identifier (this resource's URL): `<identifier>/mcp:read` grants
    /// `mcp:read`.
    pub resource_identifier: String,
    /// App clients accepted without asking the pool (the stack's own client).
    pub client_ids: Vec<String>,
    /// Set when clients may register themselves: their ids are checked with the pool.
    pub registered_clients: Option<ClientLookup>,
}

impl std::fmt::Debug for CognitoRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoRules")
            .field("resource_identifier", &self.resource_identifier)
            .field("client_ids", &self.client_ids)
            .field("registered_clients", &self.registered_clients.is_some())
            .finish()
    }
}

/// [`CognitoRules`] with the answers about registered clients remembered.
pub(crate) struct CognitoCheck {
    rules: CognitoRules,
    scope_prefix: String,
    clients: Mutex<HashMap<String, (bool, Instant)>>,
}

impl CognitoCheck {
    pub(crate) fn new(rules: CognitoRules) -> Result<Self, ConfigError> {
        if rules.client_ids.is_empty() && rules.registered_clients.is_none() {
            return Err(ConfigError::Missing {
                name: "MCP_AUTH_COGNITO_CLIENT_IDS (or MCP_OAUTH_REGISTRATION=on)",
            });
        }
        let scope_prefix = format!("{}/", rules.resource_identifier.trim_end_matches('/'));
        Ok(Self {
            rules,
            scope_prefix,
            clients: Mutex::default(),
        })
    }

    /// Checks `token_use`, `aud` (if any) and `client_id`, and returns the product scopes the
    /// token grants.
    pub(crate) async fn accept(
        &self,
        claims: &Map<String, Value>,
        audience: &str,
    ) -> Result<BTreeSet<String>, AuthError> {
        match claims.get("token_use") {
            Some(Value::String(usage)) if usage == "access" => {}
            Some(_) => return Err(AuthError::NotAnAccessToken),
            None => {
                return Err(AuthError::MissingClaim {
                    claim: "token_use".into(),
                });
            }
        }
        // Managed login puts the `resource` a client asked for (RFC 8707) in `aud`; a token
        // bound to another resource is not for this one.
        if let Some(aud) = claims.get("aud")
            && !names_audience(aud, audience)
        {
            return Err(AuthError::WrongAudience);
        }
        let client_id = match claims.get("client_id") {
            Some(Value::String(id)) if is_client_id(id) => id,
            Some(_) => {
                return Err(AuthError::InvalidClaim {
                    claim: "client_id".into(),
                });
            }
            None => {
                return Err(AuthError::MissingClaim {
                    claim: "client_id".into(),
                });
            }
        };
        if !self.client_known(client_id).await? {
            return Err(AuthError::UnknownClient);
        }
        let scope = match claims.get("scope") {
            None | Some(Value::Null) => "",
            Some(Value::String(scope)) => scope,
            Some(_) => {
                return Err(AuthError::InvalidClaim {
                    claim: "scope".into(),
                });
            }
        };
        Ok(scope
            .split(' ')
            .filter_map(|scope| scope.strip_prefix(&self.scope_prefix))
            .filter(|name| {
                [crate::SCOPE_READ, crate::SCOPE_CALL, crate::SCOPE_WRITE].contains(name)
            })
            .map(str::to_owned)
            .collect())
    }

    async fn client_known(&self, client_id: &str) -> Result<bool, AuthError> {
        if self.rules.client_ids.iter().any(|id| id == client_id) {
            return Ok(true);
        }
        let Some(lookup) = &self.rules.registered_clients else {
            return Ok(false);
        };
        if let Some(known) = self.remembered(client_id) {
            return Ok(known);
        }
        match lookup(client_id.to_owned()).await {
            Ok(known) => {
                self.remember(client_id, known);
                Ok(known)
            }
            Err(message) => {
                tracing::warn!(%message, "asking the user pool about a client failed");
                Err(AuthError::KeysUnavailable)
            }
        }
    }

    fn remembered(&self, client_id: &str) -> Option<bool> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let (known, at) = clients.get(client_id)?;
        let lifetime = if *known {
            KNOWN_CLIENT_FOR
        } else {
            UNKNOWN_CLIENT_FOR
        };
        (at.elapsed() < lifetime).then_some(*known)
    }

    fn remember(&self, client_id: &str, known: bool) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= CLIENTS_REMEMBERED {
            clients.clear();
        }
        clients.insert(client_id.to_owned(), (known, Instant::now()));
    }
}

/// True when an `aud` claim (a string or an array of strings) names `audience`.
fn names_audience(aud: &Value, audience: &str) -> bool {
    match aud {
        Value::String(aud) => aud == audience,
        Value::Array(items) => items.iter().any(|item| item.as_str() == Some(audience)),
        _ => false,
    }
}

/// Cognito app client ids are 1–128 word characters.
fn is_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A [`ClientLookup`] that asks the pool (`DescribeUserPoolClient`) whether a client exists and
/// was registered by this server.
pub fn registered_client_lookup(
    client: aws_sdk_cognitoidentityprovider::Client,
    pool_id: String,
) -> ClientLookup {
    Arc::new(move |client_id| {
        let client = client.clone();
        let pool_id = pool_id.clone();
        Box::pin(async move {
            let described = client
                .describe_user_pool_client()
                .user_pool_id(pool_id)
                .client_id(client_id)
                .send()
                .await;
            match described {
                Ok(output) => Ok(output
                    .user_pool_client()
                    .and_then(|client| client.client_name())
                    .is_some_and(|name| name.starts_with(REGISTERED_CLIENT_PREFIX))),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    Ok(false)
                }
                Err(error) => Err(aws_sdk_cognitoidentityprovider::error::DisplayErrorContext(
                    &error,
                )
                .to_string()),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_ids_give_the_issuer() {
        assert_eq!(
            pool_issuer("eu-west-1_AbC123").expect("valid"),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        for bad in [
            "",
            "eu-west-1",
            "_abc",
            "eu-west-1_",
            "EU_abc",
            "eu-west-1_a/b",
            "x_a b",
        ] {
            assert!(pool_issuer(bad).is_err(), "{bad:?}");
        }
    }

    fn settings(vars: &[(&str, &str)]) -> Result<Option<CognitoSettings>, ConfigError> {
        CognitoSettings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn settings_come_from_the_environment_and_name_the_bad_variable() {
        assert_eq!(settings(&[]).expect("no cognito"), None);
        let read = settings(&[
            ("MCP_AUTH", "cognito"),
            ("MCP_AUTH_COGNITO_USER_POOL_ID", "us-east-1_Pool1"),
            ("MCP_AUTH_COGNITO_CLIENT_IDS", "abc123, def456"),
        ])
        .expect("valid")
        .expect("cognito");
        assert_eq!(read.client_ids, ["abc123", "def456"]);
        assert!(!read.registration);
        assert_eq!(
            read.jwks_url(),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool1/.well-known/jwks.json"
        );
        let error = |vars: &[(&str, &str)]| settings(vars).expect_err("invalid").to_string();
        assert_eq!(
            error(&[("MCP_AUTH", "cognito")]),
            "MCP_AUTH_COGNITO_USER_POOL_ID is not set"
        );
        assert_eq!(
            error(&[
                ("MCP_AUTH", "cognito"),
                ("MCP_AUTH_COGNITO_USER_POOL_ID", "us-east-1_P")
            ]),
            "MCP_AUTH_COGNITO_CLIENT_IDS (or MCP_OAUTH_REGISTRATION=on) is not set"
        );
        assert_eq!(
            error(&[
                ("MCP_AUTH", "cognito"),
                ("MCP_AUTH_COGNITO_USER_POOL_ID", "us-east-1_P"),
                ("MCP_AUTH_COGNITO_CLIENT_IDS", "a b")
            ]),
            "MCP_AUTH_COGNITO_CLIENT_IDS is invalid: \"a b\" is not an app client id"
        );
        assert_eq!(
            error(&[("MCP_OAUTH_REGISTRATION", "on")]),
            "MCP_OAUTH_REGISTRATION is invalid: is on, which needs MCP_AUTH=cognito (the pool registers the clients)"
        );
        assert_eq!(
            error(&[("MCP_OAUTH_REGISTRATION", "yes")]),
            "MCP_OAUTH_REGISTRATION is invalid: \"yes\" is not on or off"
        );
    }

    #[test]
    fn prefixed_scopes_join_the_identifier_once() {
        assert_eq!(
            prefixed_scopes("https://api.example.com/mcp/"),
            [
                "https://api.example.com/mcp/mcp:read",
                "https://api.example.com/mcp/mcp:call",
                "https://api.example.com/mcp/mcp:write"
            ]
        );
    }
}
