//! RFC 7591 dynamic client registration for a Cognito deployment (`MCP_OAUTH_REGISTRATION=on`):
//! an MCP client that has no client id registers here and gets a Cognito app client of its own.
//!
//! What a registration may ask for is narrow, so a public endpoint cannot be used to mint
//! arbitrary clients in the pool:
//!
//! - redirect URIs: `https://…`, or loopback `http://127.0.0.1`/`http://localhost` (any port),
//!   at most [`MAX_REDIRECT_URIS`], no fragment;
//! - the authorization-code grant (with refresh tokens), response type `code`;
//! - only the product's scopes (plain `mcp:read` or as Cognito names them);
//! - a body of at most [`MAX_REQUEST_BYTES`].
//!
//! Every request spends one unit of its source address's hourly budget (a rate bucket in the
//! store, shared by every instance) before anything else, and the pool holds at most
//! `max_clients` registered clients (named [`REGISTERED_CLIENT_PREFIX`]…; counted with the pool,
//! so a client an operator deleted frees its place). A refused registration creates nothing.

use std::{net::IpAddr, sync::Arc};

use authorizer::cognito::REGISTERED_CLIENT_PREFIX;
use aws_sdk_cognitoidentityprovider::{
    Client as UserPool,
    error::{DisplayErrorContext, SdkError},
    operation::create_user_pool_client::CreateUserPoolClientError,
    types::{ExplicitAuthFlowsType, OAuthFlowType, PreventUserExistenceErrorTypes},
};
use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use crate::{
    config::RegistrationLimits,
    principal::Principal,
    store::{Admission, Gcra, Store},
};

/// The largest registration request read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI accepted.
const MAX_REDIRECT_URI_BYTES: usize = 1024;
/// The longest client name kept (Cognito allows 128 characters in all, prefix included).
const MAX_CLIENT_NAME_CHARS: usize = 100;
/// `ListUserPoolClients` page size (Cognito's largest).
const LIST_PAGE: i32 = 60;

/// What the registration endpoint needs.
#[derive(Clone)]
pub struct Registration {
    pub pool: UserPool,
    pub pool_id: String,
    pub limits: RegistrationLimits,
    /// The product scopes as Cognito names them (`<resource>/mcp:read`, …), in product order.
    pub scopes: Arc<[String]>,
    pub store: Arc<dyn Store>,
    /// Give each new client the pool's default sign-in page style (a pool whose domain uses
    /// managed login shows no sign-in page to a client without one).
    pub login_style: bool,
    /// Where a request came from, for the per-source budget.
    pub sources: super::Sources,
}

/// An RFC 7591 error answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    fn metadata(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    fn redirect(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the user pool could not be reached; try again shortly",
        )
    }

    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after_secs: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// How the client will authenticate at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenAuth {
    /// A public client (PKCE only), what MCP clients on a person's machine are.
    None,
    SecretBasic,
    SecretPost,
}

impl TokenAuth {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SecretBasic => "client_secret_basic",
            Self::SecretPost => "client_secret_post",
        }
    }
}

/// A registration request that passed every check.
#[derive(Debug, PartialEq, Eq)]
struct ClientRequest {
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    token_auth: TokenAuth,
    /// Cognito scope names.
    scopes: Vec<String>,
    client_name: Option<String>,
}

/// `POST /register`.
pub async fn register(State(registration): State<Registration>, request: Request) -> Response {
    match registration.handle(request).await {
        Ok(response) => response,
        Err(refusal) => {
            tracing::info!(
                error = refusal.error,
                reason = %refusal.description,
                "client registration refused"
            );
            refusal.into_response()
        }
    }
}

impl Registration {
    async fn handle(&self, request: Request) -> Result<Response, Refusal> {
        self.admit(self.sources.of(&request)).await?;
        let json_body = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().starts_with("application/json"));
        if !json_body {
            return Err(Refusal::metadata(
                "the registration request must be application/json",
            ));
        }
        let body = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES)
            .await
            .map_err(|_| {
                Refusal::metadata(format!(
                    "the registration request is larger than {MAX_REQUEST_BYTES} bytes"
                ))
            })?;
        let metadata: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|_| Refusal::metadata("the registration request is not a JSON object"))?;
        let client = parse_request(&metadata, &self.scopes)?;
        self.check_room().await?;
        let created = self.create(&client).await?;
        tracing::info!(
            client_id = %created.client_id,
            redirect_uris = client.redirect_uris.len(),
            "client registered"
        );
        let mut answer = json!({
            "client_id": created.client_id,
            "client_id_issued_at": chrono::Utc::now().timestamp(),
            "redirect_uris": client.redirect_uris,
            "grant_types": client.grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": client.token_auth.name(),
            "scope": client.scopes.join(" "),
        });
        if let Some(name) = &client.client_name {
            answer["client_name"] = name.clone().into();
        }
        if let Some(secret) = created.client_secret {
            answer["client_secret"] = secret.into();
            answer["client_secret_expires_at"] = 0.into();
        }
        let mut response = (StatusCode::CREATED, Json(answer)).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }

    /// Spends one registration of the source's hourly budget.
    async fn admit(&self, source: Option<IpAddr>) -> Result<(), Refusal> {
        let source = source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let bucket = Principal::new(&format!("oauth-registration@{source}"))
            .map_err(|_| Refusal::metadata("the request's source address is not usable"))?;
        let per_hour = i64::from(self.limits.per_hour.max(1));
        let interval_us = 3_600_000_000 / per_hour;
        let gcra = Gcra {
            interval_us,
            tolerance_us: interval_us * per_hour,
        };
        let now_us = chrono::Utc::now().timestamp_micros();
        match self.store.admit(&bucket, gcra, now_us).await {
            Ok(Admission::Admitted) => Ok(()),
            Ok(Admission::Refused { retry_after_us }) => {
                let secs = u64::try_from((retry_after_us + 999_999) / 1_000_000)
                    .unwrap_or(1)
                    .max(1);
                Err(Refusal {
                    retry_after_secs: Some(secs),
                    ..Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "slow_down",
                        format!(
                            "at most {} registrations an hour from one address; retry in {secs} s",
                            self.limits.per_hour
                        ),
                    )
                })
            }
            // Registration creates resources: unlike the request limiter, it fails closed.
            Err(error) => {
                tracing::warn!(%error, "the registration budget could not be read");
                Err(Refusal::unavailable())
            }
        }
    }

    /// Refuses when the pool already holds `max_clients` clients registered here.
    async fn check_room(&self) -> Result<(), Refusal> {
        let mut registered = 0_u32;
        let mut next: Option<String> = None;
        loop {
            let page = self
                .pool
                .list_user_pool_clients()
                .user_pool_id(&self.pool_id)
                .max_results(LIST_PAGE)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|error| {
                    tracing::warn!(error = %DisplayErrorContext(&error), "listing the pool's clients failed");
                    Refusal::unavailable()
                })?;
            registered += page
                .user_pool_clients()
                .iter()
                .filter(|client| {
                    client
                        .client_name()
                        .is_some_and(|name| name.starts_with(REGISTERED_CLIENT_PREFIX))
                })
                .count() as u32;
            if registered >= self.limits.max_clients {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "access_denied",
                    format!(
                        "this server has registered its limit of {} clients; ask its operator",
                        self.limits.max_clients
                    ),
                ));
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    async fn create(&self, client: &ClientRequest) -> Result<Created, Refusal> {
        let name = cognito_client_name(client.client_name.as_deref());
        let created = self
            .pool
            .create_user_pool_client()
            .user_pool_id(&self.pool_id)
            .client_name(name)
            .generate_secret(client.token_auth != TokenAuth::None)
            .allowed_o_auth_flows_user_pool_client(true)
            .allowed_o_auth_flows(OAuthFlowType::Code)
            .set_allowed_o_auth_scopes(Some(client.scopes.clone()))
            .set_callback_urls(Some(client.redirect_uris.clone()))
            .supported_identity_providers("COGNITO")
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
            .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
            .enable_token_revocation(true)
            .send()
            .await
            .map_err(refusal_from_pool)?;
        let client = created
            .user_pool_client()
            .and_then(|client| Some((client.client_id()?, client.client_secret())))
            .map(|(id, secret)| Created {
                client_id: id.to_owned(),
                client_secret: secret.map(str::to_owned),
            })
            .ok_or_else(Refusal::unavailable)?;
        if self.login_style {
            self.style_login(&client.client_id).await?;
        }
        Ok(client)
    }

    /// Gives the new client the default sign-in page; without one it could not sign in, so on
    /// failure the client is deleted again and the registration refused.
    async fn style_login(&self, client_id: &str) -> Result<(), Refusal> {
        let styled = self
            .pool
            .create_managed_login_branding()
            .user_pool_id(&self.pool_id)
            .client_id(client_id)
            .use_cognito_provided_values(true)
            .send()
            .await;
        let Err(error) = styled else {
            return Ok(());
        };
        tracing::warn!(error = %DisplayErrorContext(&error), "styling the new client's sign-in page failed");
        if let Err(error) = self
            .pool
            .delete_user_pool_client()
            .user_pool_id(&self.pool_id)
            .client_id(client_id)
            .send()
            .await
        {
            tracing::error!(%client_id, error = %DisplayErrorContext(&error), "deleting an unusable client failed");
        }
        Err(Refusal::unavailable())
    }
}

struct Created {
    client_id: String,
    client_secret: Option<String>,
}

fn refusal_from_pool(error: SdkError<CreateUserPoolClientError>) -> Refusal {
    let message = DisplayErrorContext(&error).to_string();
    match error.as_service_error() {
        Some(service) if service.is_invalid_parameter_exception() => Refusal::metadata(format!(
            "the user pool refused the client: {}",
            printable(&message)
        )),
        Some(service) if service.is_limit_exceeded_exception() => Refusal::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "the user pool holds as many clients as it may",
        ),
        _ => {
            tracing::warn!(error = %message, "creating a client failed");
            Refusal::unavailable()
        }
    }
}

/// Checks a registration request against what this server offers.
fn parse_request(
    metadata: &Map<String, Value>,
    offered_scopes: &[String],
) -> Result<ClientRequest, Refusal> {
    let redirect_uris = string_list(metadata, "redirect_uris")
        .map_err(Refusal::redirect)?
        .unwrap_or_default();
    if redirect_uris.is_empty() || redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(Refusal::redirect(format!(
            "redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs"
        )));
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri)?;
    }
    let grant_types = string_list(metadata, "grant_types")
        .map_err(Refusal::metadata)?
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    if let Some(grant) = grant_types
        .iter()
        .find(|grant| !["authorization_code", "refresh_token"].contains(&grant.as_str()))
    {
        return Err(Refusal::metadata(format!(
            "grant type {:?} is not offered; only authorization_code (with refresh_token)",
            printable(grant)
        )));
    }
    if !grant_types
        .iter()
        .any(|grant| grant == "authorization_code")
    {
        return Err(Refusal::metadata(
            "grant_types must include authorization_code",
        ));
    }
    let response_types = string_list(metadata, "response_types")
        .map_err(Refusal::metadata)?
        .unwrap_or_else(|| vec!["code".to_owned()]);
    if response_types.iter().any(|kind| kind != "code") {
        return Err(Refusal::metadata("response_types may only be [\"code\"]"));
    }
    let token_auth = match metadata.get("token_endpoint_auth_method") {
        // RFC 7591's default.
        None | Some(Value::Null) => TokenAuth::SecretBasic,
        Some(Value::String(method)) => match method.as_str() {
            "none" => TokenAuth::None,
            "client_secret_basic" => TokenAuth::SecretBasic,
            "client_secret_post" => TokenAuth::SecretPost,
            other => {
                return Err(Refusal::metadata(format!(
                    "token_endpoint_auth_method {:?} is not offered; use none, \
                     client_secret_basic or client_secret_post",
                    printable(other)
                )));
            }
        },
        Some(_) => {
            return Err(Refusal::metadata(
                "token_endpoint_auth_method must be a string",
            ));
        }
    };
    let scopes = match metadata.get("scope") {
        None | Some(Value::Null) => offered_scopes.to_vec(),
        Some(Value::String(scope)) => requested_scopes(scope, offered_scopes)?,
        Some(_) => return Err(Refusal::metadata("scope must be a string")),
    };
    let client_name = match metadata.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.chars().count() <= MAX_CLIENT_NAME_CHARS => {
            Some(name.clone())
        }
        Some(Value::String(_)) => {
            return Err(Refusal::metadata(format!(
                "client_name is longer than {MAX_CLIENT_NAME_CHARS} characters"
            )));
        }
        Some(_) => return Err(Refusal::metadata("client_name must be a string")),
    };
    Ok(ClientRequest {
        redirect_uris,
        grant_types,
        token_auth,
        scopes,
        client_name,
    })
}

/// A metadata member that must be an array of strings, if present.
fn string_list(metadata: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, String> {
    match metadata.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| format!("{name} must be an array of strings")),
        Some(_) => Err(format!("{name} must be an array of strings")),
    }
}

/// `https://` anywhere, or plain `http://` to this machine's loopback only.
fn check_redirect_uri(uri: &str) -> Result<(), Refusal> {
    let refuse = |why: &str| {
        Refusal::redirect(format!(
            "redirect URI {:?} {why}",
            printable(&uri.chars().take(200).collect::<String>())
        ))
    };
    if uri.len() > MAX_REDIRECT_URI_BYTES {
        return Err(refuse(&format!(
            "is longer than {MAX_REDIRECT_URI_BYTES} bytes"
        )));
    }
    if uri.contains('#') {
        return Err(refuse("has a fragment"));
    }
    let parsed: Uri = uri.parse().map_err(|_| refuse("is not an absolute URI"))?;
    let host = parsed
        .host()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| refuse("is not an absolute URI"))?;
    if parsed
        .authority()
        .is_some_and(|authority| authority.as_str().contains('@'))
    {
        return Err(refuse("has user information"));
    }
    match parsed.scheme_str() {
        Some("https") => Ok(()),
        Some("http")
            if ["127.0.0.1", "localhost", "[::1]"]
                .iter()
                .any(|loopback| host.eq_ignore_ascii_case(loopback)) =>
        {
            Ok(())
        }
        _ => Err(refuse(
            "is neither https nor loopback http (127.0.0.1 or localhost)",
        )),
    }
}

/// The Cognito names of the scopes a client asked for (plain or prefixed), each one offered.
fn requested_scopes(scope: &str, offered: &[String]) -> Result<Vec<String>, Refusal> {
    let mut scopes: Vec<String> = Vec::new();
    for requested in scope.split_whitespace() {
        let found = offered.iter().find(|name| {
            *name == requested
                || name
                    .rsplit_once('/')
                    .is_some_and(|(_, plain)| plain == requested)
        });
        match found {
            Some(name) if !scopes.contains(name) => scopes.push(name.clone()),
            Some(_) => {}
            None => {
                return Err(Refusal::metadata(format!(
                    "scope {:?} is not offered here; ask for {}",
                    printable(requested),
                    offered.join(" ")
                )));
            }
        }
    }
    if scopes.is_empty() {
        return Err(Refusal::metadata("scope names no scope"));
    }
    Ok(scopes)
}

/// The app client's name in the pool: the prefix that marks it as registered here, then the
/// client's own name with what Cognito does not allow replaced.
fn cognito_client_name(client_name: Option<&str>) -> String {
    let own: String = client_name
        .unwrap_or("mcp-client")
        .chars()
        .take(MAX_CLIENT_NAME_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || " +=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{REGISTERED_CLIENT_PREFIX}{}", own.trim())
}

/// Caller text made safe to echo in an error description.
fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> Vec<String> {
        ["mcp:read", "mcp:call", "mcp:write"]
            .map(|scope| format!("https://api.example.com/mcp/{scope}"))
            .to_vec()
    }

    fn parse(body: Value) -> Result<ClientRequest, Refusal> {
        let Value::Object(metadata) = body else {
            panic!("an object")
        };
        parse_request(&metadata, &offered())
    }

    fn refusal(body: Value) -> (&'static str, String) {
        let refusal = parse(body).expect_err("refused");
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        (refusal.error, refusal.description)
    }

    #[test]
    fn a_typical_mcp_client_registers_as_a_public_client() {
        let client = parse(json!({
            "redirect_uris": ["http://localhost:6274/oauth/callback", "https://claude.ai/api/mcp/auth_callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp:read mcp:call https://api.example.com/mcp/mcp:read",
            "client_name": "MCP Inspector",
            "client_uri": "https://example.com"
        }))
        .expect("accepted");
        assert_eq!(client.token_auth, TokenAuth::None);
        assert_eq!(client.scopes, offered()[..2]);
        assert_eq!(client.client_name.as_deref(), Some("MCP Inspector"));
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let client = parse(
            json!({ "redirect_uris": ["http://127.0.0.1:33418/", "http://LOCALHOST:8080/cb"] }),
        )
        .expect("accepted");
        assert_eq!(client.grant_types, ["authorization_code"]);
        assert_eq!(client.token_auth, TokenAuth::SecretBasic);
        assert_eq!(client.scopes, offered());
    }

    #[test]
    fn bad_metadata_gets_the_exact_rfc_7591_error() {
        let cases = [
            (
                json!({}),
                "invalid_redirect_uri",
                "redirect_uris must list 1 to 10 URIs",
            ),
            (
                json!({"redirect_uris": "https://a.example/cb"}),
                "invalid_redirect_uri",
                "redirect_uris must be an array of strings",
            ),
            (
                json!({"redirect_uris": ["http://evil.example/cb"]}),
                "invalid_redirect_uri",
                "redirect URI \"http://evil.example/cb\" is neither https nor loopback http (127.0.0.1 or localhost)",
            ),
            (
                json!({"redirect_uris": ["cursor://anysphere/cb"]}),
                "invalid_redirect_uri",
                "redirect URI \"cursor://anysphere/cb\" is neither https nor loopback http (127.0.0.1 or localhost)",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb#x"]}),
                "invalid_redirect_uri",
                "redirect URI \"https://a.example/cb#x\" has a fragment",
            ),
            (
                json!({"redirect_uris": ["/relative"]}),
                "invalid_redirect_uri",
                "redirect URI \"/relative\" is not an absolute URI",
            ),
            (
                json!({"redirect_uris": ["https://user@a.example/cb"]}),
                "invalid_redirect_uri",
                "redirect URI \"https://user@a.example/cb\" has user information",
            ),
            (
                json!({"redirect_uris": ["http://localhost.evil.example/cb"]}),
                "invalid_redirect_uri",
                "redirect URI \"http://localhost.evil.example/cb\" is neither https nor loopback http (127.0.0.1 or localhost)",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}),
                "invalid_client_metadata",
                "grant type \"client_credentials\" is not offered; only authorization_code (with refresh_token)",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["refresh_token"]}),
                "invalid_client_metadata",
                "grant_types must include authorization_code",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}),
                "invalid_client_metadata",
                "response_types may only be [\"code\"]",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_client_metadata",
                "token_endpoint_auth_method \"private_key_jwt\" is not offered; use none, client_secret_basic or client_secret_post",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "scope": "mcp:read admin"}),
                "invalid_client_metadata",
                "scope \"admin\" is not offered here; ask for https://api.example.com/mcp/mcp:read https://api.example.com/mcp/mcp:call https://api.example.com/mcp/mcp:write",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "scope": "https://other.example/mcp:read"}),
                "invalid_client_metadata",
                "scope \"https://other.example/mcp:read\" is not offered here; ask for https://api.example.com/mcp/mcp:read https://api.example.com/mcp/mcp:call https://api.example.com/mcp/mcp:write",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "scope": " "}),
                "invalid_client_metadata",
                "scope names no scope",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "client_name": 7}),
                "invalid_client_metadata",
                "client_name must be a string",
            ),
        ];
        for (body, error, description) in cases {
            assert_eq!(
                refusal(body.clone()),
                (error, description.to_owned()),
                "{body}"
            );
        }
        let many: Vec<String> = (0..11).map(|i| format!("https://a.example/{i}")).collect();
        assert_eq!(
            refusal(json!({ "redirect_uris": many })),
            (
                "invalid_redirect_uri",
                "redirect_uris must list 1 to 10 URIs".to_owned()
            )
        );
    }

    #[test]
    fn client_names_carry_the_registration_prefix_and_only_allowed_characters() {
        assert_eq!(
            cognito_client_name(Some("Claude <Code> ✓")),
            "mcp-registered-Claude -Code- -"
        );
        assert_eq!(cognito_client_name(None), "mcp-registered-mcp-client");
    }
}
