//! Server configuration: environment variables, overridden by command-line flags.
//!
//! Every setting has one `MCP_*` variable (12-factor) and the common ones a
//! flag too; the README's table lists them all. A malformed value stops the
//! process at start with a message naming the variable, never a silent default.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use authorizer::cognito::CognitoSettings;
use clap::Parser;

use crate::http::origin_secret::{OriginSecret, OriginSecretError};

/// The key used when `MCP_SIGNING_KEY` is unset: fine on a laptop, never in a deployment.
/// `mcp-token` mints development tokens with the same key.
pub const DEV_SIGNING_KEY: &str = authorizer::mint::DEV_SIGNING_KEY;
/// Shortest signing key accepted, in bytes (HMAC-SHA256 wants at least its output size).
pub const MIN_SIGNING_KEY_BYTES: usize = authorizer::MIN_HS256_KEY_BYTES;

/// Command-line flags for the common settings; each wins over its variable.
#[derive(Debug, Default, Parser)]
#[command(
    name = "mcp-server",
    version,
    about = "Serve MCP over Streamable HTTP at /mcp"
)]
pub struct Flags {
    /// Address to listen on [env: MCP_BIND] [default: 127.0.0.1:8080]
    #[arg(long)]
    pub bind: Option<String>,
    /// Store URL: sqlite://PATH or postgres://… [env: MCP_STORE_URL]
    #[arg(long)]
    pub store_url: Option<String>,
    /// Sliding lifetime of a legacy session, in seconds [env: MCP_SESSION_TTL_SECS]
    #[arg(long)]
    pub session_ttl_secs: Option<String>,
    /// Log format, json or text [env: MCP_LOG_FORMAT]
    #[arg(long)]
    pub log_format: Option<String>,
    /// Serve without authentication: every caller is `anonymous` with every scope.
    /// Local experiments only [env: MCP_AUTH=off]
    #[arg(long)]
    pub no_auth: bool,
}

/// Which host the configuration is for; it decides the defaults and what is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `mcp-server` on a laptop, EC2 or a container: embedded defaults, loopback only.
    Server,
    /// `mcp-lambda`: shared stores and a real key are required; nothing defaults to local files.
    Lambda,
}

/// Where sessions and state documents live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// SQLite or PostgreSQL, by URL.
    Sql { url: String },
    /// One DynamoDB table.
    DynamoDb { table: String },
}

/// Where the caller's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesTarget {
    /// A local folder (embedded mode).
    Local { root: PathBuf },
    /// An S3 bucket; objects go under `prefix`.
    S3 { bucket: String, prefix: String },
}

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysTarget {
    /// `MCP_SIGNING_KEY`, or the development key when that is unset (server only).
    Env { key: Vec<u8>, dev: bool },
    /// A Secrets Manager secret (see [`crate::keys`]), re-read every `refresh`.
    SecretsManager {
        secret_id: String,
        refresh: Duration,
    },
}

/// How callers prove who they are (`MCP_AUTH`, `--no-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// Nobody is asked: every caller is `anonymous` with every scope. Server only, logged loudly.
    Off,
    /// Bearer JWTs: HS256 with the signing keys (`MCP_SECRET_ID`/`MCP_SIGNING_KEY`) and, when
    /// `jwks_url` is set, RS256/ES256 keys of an identity provider.
    Jwt {
        /// `MCP_AUTH_ISSUER` (server default `mcp-dev`, as `mcp-token` mints).
        issuer: String,
        /// `MCP_AUTH_AUDIENCE`, else `MCP_RESOURCE_URL` (server default `http://127.0.0.1:8080/mcp`).
        audience: String,
        /// `MCP_AUTH_JWKS_URL`.
        jwks_url: Option<String>,
        /// `MCP_AUTH_LEEWAY_SECS`: clock skew tolerated on `exp`/`nbf`.
        leeway: Duration,
        /// `MCP_AUTH=cognito`: the pool's access tokens instead of audience-bound ones (the
        /// issuer and JWKS URL above default to the pool's; the audience is the identifier of
        /// the pool's resource server).
        cognito: Option<CognitoSettings>,
    },
}

/// The OAuth authorization-server front a Cognito deployment keeps (`MCP_AUTH=cognito`): the
/// RFC 8414 metadata MCP clients accept, and optionally RFC 7591 registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFront {
    /// The pool's hosted sign-in domain, e.g. `https://auth.example.com`
    /// (`MCP_AUTH_COGNITO_DOMAIN`).
    pub domain: String,
    pub pool_id: String,
    /// The pool's issuer URL (its key set is `<issuer>/.well-known/jwks.json`).
    pub pool_issuer: String,
    /// `None` unless `MCP_OAUTH_REGISTRATION=on`.
    pub registration: Option<RegistrationLimits>,
    /// The domain signs in with managed login, where a client needs a sign-in page style of
    /// its own: each registered client gets the default one
    /// (`MCP_AUTH_COGNITO_MANAGED_LOGIN`, `on` unless `off`: the classic hosted UI).
    pub managed_login: bool,
}

/// How many clients may register, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationLimits {
    /// Clients this server may have created in the pool (`MCP_OAUTH_REGISTRATION_MAX_CLIENTS`).
    pub max_clients: u32,
    /// Registrations per source address per hour (`MCP_OAUTH_REGISTRATION_PER_HOUR`).
    pub per_hour: u32,
}

/// Per-caller request rate (`MCP_RATE_LIMIT_*`): a token bucket per principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Tokens added per second (`MCP_RATE_LIMIT_PER_SEC`).
    pub per_second: u32,
    /// Bucket size: the burst a caller may send at once (`MCP_RATE_LIMIT_BURST`).
    pub burst: u32,
    /// Keep the buckets in the store, shared by every instance (`MCP_RATE_LIMIT_STORE=store`),
    /// rather than in this process's memory (`memory`).
    pub shared: bool,
}

/// The per-source budget of requests without a valid token (`MCP_UNAUTHENTICATED_*`): a
/// token bucket per source address that only failed authentications spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnauthenticatedSettings {
    /// Failed authentications a source may make per second (`MCP_UNAUTHENTICATED_PER_SEC`).
    pub per_second: u32,
    /// How many it may make at once (`MCP_UNAUTHENTICATED_BURST`).
    pub burst: u32,
}

/// How long `mcp-server` waits on each client and how many it serves at once, so that slow
/// or silent sockets cannot hold its file descriptors (`MCP_*_TIMEOUT_SECS`,
/// `MCP_MAX_CONNECTIONS`). The Lambda host has API Gateway or the function URL in front and
/// ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A new connection, or a new request on an open one from its first byte, must deliver
    /// its whole header within this (`MCP_HEADER_TIMEOUT_SECS`); else it is closed.
    pub header: Duration,
    /// A request's body must have arrived whole this long after its header
    /// (`MCP_BODY_TIMEOUT_SECS`); else 408 and the connection is closed.
    pub body: Duration,
    /// A kept-alive connection with no request for this long is closed
    /// (`MCP_IDLE_TIMEOUT_SECS`).
    pub idle: Duration,
    /// A connection whose client takes no byte of its answer for this long is dropped
    /// (`MCP_WRITE_TIMEOUT_SECS`). It bounds a stalled write, not a response: an SSE stream
    /// the client reads stays open.
    pub write: Duration,
    /// Connections served at once (`MCP_MAX_CONNECTIONS`); more are answered 503 and closed.
    /// `mcp-server` lowers it to what its open-file limit leaves room for.
    pub max_connections: usize,
}

/// `MCP_HEADER_TIMEOUT_SECS` unless set: a header is a few hundred bytes.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// `MCP_BODY_TIMEOUT_SECS` unless set: the default 1 MiB body cap at about 35 KB/s.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 30;
/// `MCP_IDLE_TIMEOUT_SECS` unless set: above the 60 s idle timeout of AWS load balancers, so
/// a balancer never reuses a connection this server has just closed.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 75;
/// `MCP_WRITE_TIMEOUT_SECS` unless set.
pub const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 30;
/// `MCP_MAX_CONNECTIONS` unless set: half the 1024 open files many hosts and container
/// runtimes allow a process by default, leaving the rest to the store, files and probes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Everything the server needs to start, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP listener binds.
    pub bind: SocketAddr,
    /// The store URL as given, for logs (passwords redacted there).
    pub store_url: String,
    /// Which store backs sessions and state.
    pub store: StoreTarget,
    /// Which folder or bucket holds files.
    pub files: FilesTarget,
    /// Where the signing keys come from.
    pub keys: KeysTarget,
    /// AWS region, when any AWS service is used (from `AWS_REGION`/`AWS_DEFAULT_REGION`).
    pub aws_region: Option<String>,
    /// `AWS_ENDPOINT_URL`: an emulator (moto, DynamoDB Local) instead of AWS.
    pub aws_endpoint_url: Option<String>,
    /// Path prefix added in front of the routes by a custom domain mapping (`MCP_BASE_PATH`).
    pub base_path: Option<String>,
    /// This resource's URL for RFC 9728 metadata and token audiences (`MCP_RESOURCE_URL`).
    pub resource_url: Option<String>,
    /// Issuers of the tokens this resource accepts (`MCP_AUTHORIZATION_SERVERS`).
    pub authorization_servers: Vec<String>,
    /// Sliding lifetime of a legacy-wire session.
    pub session_ttl: Duration,
    /// Live legacy-wire sessions one principal may hold; an `initialize` beyond them is refused
    /// (`MCP_MAX_SESSIONS_PER_CALLER`).
    pub max_sessions_per_caller: usize,
    /// `Host` values accepted (DNS-rebinding protection); empty accepts any.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted when a request carries one.
    pub allowed_origins: Vec<String>,
    /// Largest POST body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long `mcp-server` waits on a client, and how many it serves at once.
    pub connections: ConnectionLimits,
    pub log_format: LogFormat,
    pub auth: AuthSettings,
    /// The Cognito sign-in front; `None` unless `MCP_AUTH=cognito`.
    pub oauth: Option<OAuthFront>,
    /// `None` when `MCP_RATE_LIMIT_PER_SEC=0`.
    pub rate_limit: Option<RateLimitSettings>,
    /// Failed authentications per source address; `None` when `MCP_UNAUTHENTICATED_PER_SEC=0`.
    pub unauthenticated: Option<UnauthenticatedSettings>,
    /// Proxies in front that each append the address they saw to `X-Forwarded-For`
    /// (`MCP_TRUSTED_PROXY_HOPS`, default 0: the peer is the source).
    pub trusted_proxy_hops: usize,
    /// Requests one caller may have in flight on one instance, open streams included
    /// (`MCP_MAX_IN_FLIGHT_PER_CALLER`); `None` when `0`.
    pub max_in_flight_per_caller: Option<usize>,
    /// How long one tool call may run before it is cancelled (`MCP_TOOL_TIMEOUT_SECS`).
    pub tool_timeout: Duration,
    /// Where `mcp-server` serves `/metrics` (`MCP_METRICS_BIND`, default 127.0.0.1:9464:
    /// loopback, so metrics are not public unless asked); `None` when `off`.
    pub metrics_bind: Option<SocketAddr>,
    /// CloudWatch namespace of the Lambda host's EMF metrics (`MCP_METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// How `mcp-lambda` answers its invocations (`MCP_LAMBDA_RESPONSE`).
    pub lambda_response: LambdaResponse,
    /// How long one streamed Lambda response may stay open before it is ended cleanly
    /// (`MCP_STREAM_MAX_SECS`), inside the 15 minutes Lambda and API Gateway allow.
    pub stream_max: Duration,
    /// `subscriptions/listen` streams, or `None` when they are declined (`MCP_LONG_STREAMS`).
    pub listen: Option<ListenSettings>,
    /// How a legacy server-to-client request waits for an answer posted to another instance
    /// (see [`crate::relay`]); `None` where the answer reaches this process (mcp-server) or
    /// the request cannot reach the client at all (a buffered Lambda).
    pub relay: Option<RelaySettings>,
    /// How task-augmented tool calls run (see [`crate::tasks`]).
    pub tasks: TaskSettings,
    /// How long one round of readiness checks answers `/health/ready` on this instance
    /// (`MCP_READY_CACHE_SECS`); zero checks on every probe.
    pub ready_cache: Duration,
    /// The header a front door adds and the function demands (`MCP_ORIGIN_SECRET_HEADER`,
    /// `MCP_ORIGIN_SECRET`); `None` when neither is set.
    pub origin_secret: Option<OriginSecret>,
}

/// `MCP_READY_CACHE_SECS` unless set.
pub const DEFAULT_READY_CACHE_SECS: u64 = 5;
/// Longest `MCP_READY_CACHE_SECS`: a probe must still notice an outage within minutes.
pub const READY_CACHE_LIMIT_SECS: u64 = 300;

/// How task runs start and how long they may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSettings {
    pub runs: TaskRuns,
    /// How often a running task reads its record for a cancellation (`MCP_LISTEN_POLL_MS`).
    pub poll: Duration,
    /// How long one run may take (`MCP_STREAM_MAX_SECS`: inside the function's timeout).
    pub run_limit: Duration,
}

/// Where a task's work runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRuns {
    /// In this process (`mcp-server`).
    InProcess,
    /// In an asynchronous invocation of `function` (`mcp-lambda` invokes itself, never
    /// leaving work running after a response). `endpoint_url` is `AWS_ENDPOINT_URL_LAMBDA`
    /// (an emulator's Invoke API in tests).
    Invoke {
        function: String,
        endpoint_url: Option<String>,
    },
}

/// How a tool call waiting for the client's answer reads the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelaySettings {
    /// How often the mailbox is read (`MCP_LISTEN_POLL_MS`).
    pub poll: Duration,
    /// How long an answer is waited for (`MCP_TOOL_TIMEOUT_SECS`).
    pub wait: Duration,
}

/// How `subscriptions/listen` streams are held (see [`crate::listen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSettings {
    /// How often an open stream reads its caller's change feed (`MCP_LISTEN_POLL_MS`).
    pub poll: Duration,
    /// When a stream ends by itself so the client reconnects: on Lambda a little inside
    /// `MCP_STREAM_MAX_SECS`, so the stream closes with its final result; `None` on mcp-server.
    pub limit: Option<Duration>,
}

/// `MCP_LISTEN_POLL_MS` unless set.
pub const DEFAULT_LISTEN_POLL_MS: u64 = 1000;

/// How long before the stream bound a Lambda listen stream ends, so its final result and
/// the invocation's metrics still go out.
const LISTEN_END_MARGIN: Duration = Duration::from_secs(5);

/// How the Lambda host hands its answers to Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaResponse {
    /// Every answer is a response stream: API Gateway REST with `responseTransferMode: STREAM`,
    /// or a function URL with `InvokeMode: RESPONSE_STREAM`. SSE events reach the client as
    /// they are written.
    Stream,
    /// Every answer is one buffered JSON document: the API Gateway HTTP API, or a REST
    /// integration left in BUFFERED mode. SSE bodies arrive whole, at the end of the call.
    Buffered,
}

/// `MCP_STREAM_MAX_SECS` unless set: 14 minutes, a minute inside the 15-minute cap.
pub const DEFAULT_STREAM_MAX_SECS: u64 = 840;

/// Longest `MCP_STREAM_MAX_SECS`: Lambda stops a function and API Gateway a stream at 900 s;
/// ending a little earlier lets the stream close cleanly and the metrics be written.
pub const STREAM_MAX_LIMIT_SECS: u64 = 890;

/// A setting that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl Config {
    /// How the per-source budgets tell a request's source.
    pub fn sources(&self) -> crate::http::Sources {
        crate::http::Sources {
            proxy_hops: self.trusted_proxy_hops,
        }
    }

    /// Reads the process environment and command line (`mcp-server`).
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::from_sources(Flags::parse(), &std::env::vars().collect())
    }

    /// Reads the process environment of a Lambda function (`mcp-lambda`).
    pub fn lambda_from_process() -> Result<Self, ConfigError> {
        Self::for_profile(
            Profile::Lambda,
            Flags::default(),
            &std::env::vars().collect(),
        )
    }

    /// Builds a server config from flags and an environment map (the testable core).
    pub fn from_sources(flags: Flags, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::for_profile(Profile::Server, flags, env)
    }

    /// Builds a config for `profile` from flags and an environment map.
    pub fn for_profile(
        profile: Profile,
        flags: Flags,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let lambda = profile == Profile::Lambda;
        let lookup = |var: &str| get(env, var);
        let setting = |flag: Option<String>, var: &str, default: &str| {
            flag.or_else(|| lookup(var).map(str::to_owned))
                .unwrap_or_else(|| default.to_owned())
        };

        let bind = setting(flags.bind, "MCP_BIND", "127.0.0.1:8080");
        let bind = bind
            .parse()
            .map_err(|_| invalid("MCP_BIND", &bind, "expected IP:PORT, e.g. 127.0.0.1:8080"))?;

        let store_url = match flags
            .store_url
            .or_else(|| lookup("MCP_STORE_URL").map(str::to_owned))
        {
            Some(url) => url,
            None if lambda => {
                return Err(invalid(
                    "MCP_STORE_URL",
                    "",
                    "is required on Lambda: dynamodb://TABLE or postgres://…",
                ));
            }
            None => "sqlite://./.data/mcp.db".to_owned(),
        };
        let store = store_target(&store_url, profile)?;
        let files = files_target(lookup("MCP_FILES_URL"), profile)?;

        let session_ttl = setting(flags.session_ttl_secs, "MCP_SESSION_TTL_SECS", "86400");
        let session_ttl = parse_seconds("MCP_SESSION_TTL_SECS", &session_ttl, 60)?;
        let default_max_sessions = crate::store::DEFAULT_MAX_SESSIONS_PER_CALLER.to_string();
        let max_sessions = lookup("MCP_MAX_SESSIONS_PER_CALLER").unwrap_or(&default_max_sessions);
        let max_sessions_per_caller = max_sessions
            .parse::<usize>()
            .ok()
            .filter(|count| (1..=crate::store::MAX_SESSIONS_PER_CALLER_LIMIT).contains(count))
            .ok_or_else(|| {
                invalid(
                    "MCP_MAX_SESSIONS_PER_CALLER",
                    max_sessions,
                    format!(
                        "expected a whole number from 1 to {}",
                        crate::store::MAX_SESSIONS_PER_CALLER_LIMIT
                    ),
                )
            })?;

        // On Lambda, API Gateway and function URLs only deliver requests addressed to
        // their own host names, so DNS rebinding cannot reach the function: any host.
        let (hosts_default, origins_default) = if lambda {
            ("*", "*")
        } else {
            (
                "localhost,127.0.0.1,::1",
                "http://localhost:*,http://127.0.0.1:*,http://[::1]:*",
            )
        };
        let allowed_hosts = list(lookup("MCP_ALLOWED_HOSTS").unwrap_or(hosts_default));
        let allowed_origins = list(lookup("MCP_ALLOWED_ORIGINS").unwrap_or(origins_default));

        let max_body = lookup("MCP_MAX_BODY_BYTES").unwrap_or("1048576");
        let max_body_bytes = max_body
            .parse::<usize>()
            .ok()
            .filter(|bytes| (1024..=64 * 1024 * 1024).contains(bytes))
            .ok_or_else(|| {
                invalid(
                    "MCP_MAX_BODY_BYTES",
                    max_body,
                    "expected a byte count from 1024 to 67108864",
                )
            })?;

        let keys = keys_target(env, profile)?;

        let aws_region = lookup("AWS_REGION")
            .or_else(|| lookup("AWS_DEFAULT_REGION"))
            .map(str::to_owned);
        let uses_aws = matches!(store, StoreTarget::DynamoDb { .. })
            || matches!(files, FilesTarget::S3 { .. })
            || matches!(keys, KeysTarget::SecretsManager { .. });
        if uses_aws && aws_region.is_none() {
            return Err(invalid(
                "AWS_REGION",
                "",
                "is required when DynamoDB, S3 or Secrets Manager is configured",
            ));
        }
        let aws_endpoint_url = lookup("AWS_ENDPOINT_URL").map(str::to_owned);
        if let Some(endpoint) = &aws_endpoint_url
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(invalid(
                "AWS_ENDPOINT_URL",
                endpoint,
                "expected an http:// or https:// URL",
            ));
        }

        let base_path = match lookup("MCP_BASE_PATH").map(|p| p.trim_end_matches('/')) {
            None | Some("") => None,
            Some(path) if path.starts_with('/') && !path.contains(['?', '#', ' ']) => {
                Some(path.to_owned())
            }
            Some(path) => {
                return Err(invalid(
                    "MCP_BASE_PATH",
                    path,
                    "expected a path starting with /, e.g. /v1",
                ));
            }
        };

        let grace = lookup("MCP_SHUTDOWN_GRACE_SECS").unwrap_or("10");
        let shutdown_grace = parse_seconds("MCP_SHUTDOWN_GRACE_SECS", grace, 0)?;
        let ready_cache = match lookup("MCP_READY_CACHE_SECS") {
            Some(secs) => {
                parse_bounded_seconds("MCP_READY_CACHE_SECS", secs, 0, READY_CACHE_LIMIT_SECS)?
            }
            None => Duration::from_secs(DEFAULT_READY_CACHE_SECS),
        };
        let connections = connection_limits(env)?;

        let log_format = setting(flags.log_format, "MCP_LOG_FORMAT", "json");
        let log_format = match log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(invalid("MCP_LOG_FORMAT", other, "expected json or text")),
        };

        let resource_url = lookup("MCP_RESOURCE_URL")
            .map(|url| http_url("MCP_RESOURCE_URL", url))
            .transpose()?;
        let authorization_servers = list(lookup("MCP_AUTHORIZATION_SERVERS").unwrap_or(""))
            .into_iter()
            .map(|url| http_url("MCP_AUTHORIZATION_SERVERS", &url))
            .collect::<Result<Vec<_>, _>>()?;

        let auth = auth_settings(flags.no_auth, env, profile, resource_url.as_deref())?;
        refuse_public_development_key(bind, &keys, &auth)?;
        let oauth = oauth_front(env, &auth)?;
        let rate_limit = rate_limit_settings(env, profile)?;
        let unauthenticated = bucket(
            env,
            ("MCP_UNAUTHENTICATED_PER_SEC", "20"),
            "MCP_UNAUTHENTICATED_BURST",
            5,
        )?
        .map(|(per_second, burst)| UnauthenticatedSettings { per_second, burst });
        let hops = lookup("MCP_TRUSTED_PROXY_HOPS").unwrap_or("0");
        let trusted_proxy_hops = hops
            .parse::<usize>()
            .ok()
            .filter(|hops| *hops <= 5)
            .ok_or_else(|| {
                invalid(
                    "MCP_TRUSTED_PROXY_HOPS",
                    hops,
                    "expected a whole number from 0 to 5",
                )
            })?;
        let in_flight = lookup("MCP_MAX_IN_FLIGHT_PER_CALLER").unwrap_or("32");
        let max_in_flight_per_caller = match in_flight.parse::<usize>() {
            Ok(0) => None,
            Ok(limit) if limit <= 10_000 => Some(limit),
            _ => {
                return Err(invalid(
                    "MCP_MAX_IN_FLIGHT_PER_CALLER",
                    in_flight,
                    "expected a whole number from 0 (off) to 10000",
                ));
            }
        };
        let timeout = lookup("MCP_TOOL_TIMEOUT_SECS").unwrap_or("30");
        let tool_timeout = parse_seconds("MCP_TOOL_TIMEOUT_SECS", timeout, 1)?;
        let metrics_bind = metrics_bind(lookup("MCP_METRICS_BIND"), bind)?;
        let metrics_namespace =
            metrics_namespace(lookup("MCP_METRICS_NAMESPACE").unwrap_or("MCP"))?;
        let lambda_response = match lookup("MCP_LAMBDA_RESPONSE").unwrap_or("stream") {
            "stream" => LambdaResponse::Stream,
            "buffered" => LambdaResponse::Buffered,
            other => {
                return Err(invalid(
                    "MCP_LAMBDA_RESPONSE",
                    other,
                    "expected stream or buffered",
                ));
            }
        };
        let stream_max = match lookup("MCP_STREAM_MAX_SECS") {
            Some(secs) => {
                parse_bounded_seconds("MCP_STREAM_MAX_SECS", secs, 10, STREAM_MAX_LIMIT_SECS)?
            }
            None => Duration::from_secs(DEFAULT_STREAM_MAX_SECS),
        };
        let listen = listen_settings(env, lambda, lambda_response, stream_max)?;
        // On a streaming Lambda the instance holding a call is busy until it ends, so the
        // client's answer to a server request always lands elsewhere: it goes by the store.
        let relay = (lambda && lambda_response == LambdaResponse::Stream)
            .then(|| poll_interval(env))
            .transpose()?
            .map(|poll| RelaySettings {
                poll,
                wait: tool_timeout,
            });
        if lambda && lambda_response == LambdaResponse::Stream && tool_timeout >= stream_max {
            return Err(invalid(
                "MCP_TOOL_TIMEOUT_SECS",
                timeout,
                format!(
                    "must be below MCP_STREAM_MAX_SECS ({} s): a call still running when its \
                     stream ends could not deliver its result",
                    stream_max.as_secs()
                ),
            ));
        }

        let runs = if lambda {
            let function = lookup("AWS_LAMBDA_FUNCTION_NAME").ok_or_else(|| {
                invalid(
                    "AWS_LAMBDA_FUNCTION_NAME",
                    "",
                    "is set by the Lambda runtime and names the function that runs tasks",
                )
            })?;
            TaskRuns::Invoke {
                function: function.to_owned(),
                endpoint_url: lookup("AWS_ENDPOINT_URL_LAMBDA").map(str::to_owned),
            }
        } else {
            TaskRuns::InProcess
        };
        let tasks = TaskSettings {
            runs,
            poll: poll_interval(env)?,
            run_limit: stream_max,
        };
        let origin_secret = origin_secret(env)?;

        Ok(Self {
            bind,
            store_url,
            store,
            files,
            keys,
            aws_region,
            aws_endpoint_url,
            base_path,
            resource_url,
            authorization_servers,
            session_ttl,
            max_sessions_per_caller,
            allowed_hosts,
            allowed_origins,
            max_body_bytes,
            shutdown_grace,
            connections,
            log_format,
            auth,
            oauth,
            rate_limit,
            unauthenticated,
            trusted_proxy_hops,
            max_in_flight_per_caller,
            tool_timeout,
            metrics_bind,
            metrics_namespace,
            lambda_response,
            stream_max,
            listen,
            relay,
            tasks,
            ready_cache,
            origin_secret,
        })
    }
}

/// `MCP_ORIGIN_SECRET_HEADER` and `MCP_ORIGIN_SECRET`: both or neither (the tests are in
/// [`crate::http::origin_secret`]).
fn origin_secret(env: &HashMap<String, String>) -> Result<Option<OriginSecret>, ConfigError> {
    const HEADER: &str = "MCP_ORIGIN_SECRET_HEADER";
    const VALUE: &str = "MCP_ORIGIN_SECRET";
    let (header, value) = match (get(env, HEADER), get(env, VALUE)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(invalid(
                VALUE,
                "",
                "is required with MCP_ORIGIN_SECRET_HEADER: the value the front door sends",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                HEADER,
                "",
                "is required with MCP_ORIGIN_SECRET: the header the front door adds",
            ));
        }
        (Some(header), Some(value)) => (header, value),
    };
    OriginSecret::new(header, value)
        .map(Some)
        .map_err(|error| match error {
            OriginSecretError::HeaderName => invalid(HEADER, header, error.to_string()),
            _ => invalid(VALUE, "<redacted>", error.to_string()),
        })
}

/// `MCP_LONG_STREAMS` (on mcp-server `on` by default; on Lambda `off`, as a held stream keeps
/// an instance busy and billed) and `MCP_LISTEN_POLL_MS`.
fn listen_settings(
    env: &HashMap<String, String>,
    lambda: bool,
    response: LambdaResponse,
    stream_max: Duration,
) -> Result<Option<ListenSettings>, ConfigError> {
    let lookup = |var: &str| get(env, var);
    let switch = lookup("MCP_LONG_STREAMS").unwrap_or(if lambda { "off" } else { "on" });
    let on = match switch {
        "on" => true,
        "off" => false,
        other => return Err(invalid("MCP_LONG_STREAMS", other, "expected on or off")),
    };
    if on && lambda && response == LambdaResponse::Buffered {
        return Err(invalid(
            "MCP_LONG_STREAMS",
            switch,
            "needs MCP_LAMBDA_RESPONSE=stream: a buffered answer only arrives when the stream ends",
        ));
    }
    let poll = poll_interval(env)?;
    Ok(on.then(|| ListenSettings {
        poll,
        limit: lambda.then(|| stream_max.saturating_sub(LISTEN_END_MARGIN)),
    }))
}

/// `MCP_LISTEN_POLL_MS`: how often a held stream reads the store.
fn poll_interval(env: &HashMap<String, String>) -> Result<Duration, ConfigError> {
    let poll_ms = get(env, "MCP_LISTEN_POLL_MS")
        .map(|value| {
            value
                .parse::<u64>()
                .ok()
                .filter(|ms| (100..=60_000).contains(ms))
                .ok_or_else(|| {
                    invalid(
                        "MCP_LISTEN_POLL_MS",
                        value,
                        "expected whole milliseconds from 100 to 60000",
                    )
                })
        })
        .transpose()?
        .unwrap_or(DEFAULT_LISTEN_POLL_MS);
    Ok(Duration::from_millis(poll_ms))
}

/// `MCP_METRICS_BIND`: `IP:PORT`, or `off`; it must differ from the MCP listener.
fn metrics_bind(value: Option<&str>, bind: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
    const VAR: &str = "MCP_METRICS_BIND";
    let value = value.unwrap_or("127.0.0.1:9464");
    if value == "off" {
        return Ok(None);
    }
    let address: SocketAddr = value
        .parse()
        .map_err(|_| invalid(VAR, value, "expected IP:PORT (e.g. 127.0.0.1:9464) or off"))?;
    if address == bind && address.port() != 0 {
        return Err(invalid(VAR, value, "must differ from MCP_BIND"));
    }
    Ok(Some(address))
}

/// `MCP_METRICS_NAMESPACE`: a CloudWatch namespace (1-255 of A-Z a-z 0-9 . - _ / # : and
/// space, not under `AWS/`, which is reserved for AWS services).
fn metrics_namespace(value: &str) -> Result<String, ConfigError> {
    let valid = (1..=255).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_/#: ".contains(&b))
        && !value.starts_with("AWS/");
    if valid {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            "MCP_METRICS_NAMESPACE",
            value,
            "expected 1-255 characters of A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/",
        ))
    }
}

/// An absolute http(s) URL with a host, as given.
fn http_url(var: &'static str, url: &str) -> Result<String, ConfigError> {
    if authorizer::is_http_url(url) {
        Ok(url.to_owned())
    } else {
        Err(invalid(
            var,
            url,
            "expected an absolute http:// or https:// URL",
        ))
    }
}

/// A set, non-empty variable.
fn get<'a>(env: &'a HashMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}

/// What `MCP_STORE_URL` names; SQLite is refused on Lambda, where no two instances share a disk.
fn store_target(url: &str, profile: Profile) -> Result<StoreTarget, ConfigError> {
    if let Some(table) = url.strip_prefix("dynamodb://") {
        let valid = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return Err(invalid(
                "MCP_STORE_URL",
                url,
                "DynamoDB table names are 3-255 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        return Ok(StoreTarget::DynamoDb {
            table: table.to_owned(),
        });
    }
    match crate::store::sql::Backend::of_url(url) {
        Ok(crate::store::sql::Backend::Sqlite) if profile == Profile::Lambda => Err(invalid(
            "MCP_STORE_URL",
            url,
            "SQLite is a local file and Lambda instances share no disk: use dynamodb://TABLE or postgres://…",
        )),
        Ok(_) => Ok(StoreTarget::Sql {
            url: url.to_owned(),
        }),
        Err(_) => Err(invalid(
            "MCP_STORE_URL",
            url,
            "unsupported store URL: use sqlite://PATH, postgres://… or dynamodb://TABLE",
        )),
    }
}

/// What `MCP_FILES_URL` names: `file://PATH` (server default `./.data/files`) or `s3://BUCKET[/PREFIX]`.
fn files_target(url: Option<&str>, profile: Profile) -> Result<FilesTarget, ConfigError> {
    const VAR: &str = "MCP_FILES_URL";
    let url = match (url, profile) {
        (Some(url), _) => url,
        (None, Profile::Server) => "file://./.data/files",
        (None, Profile::Lambda) => {
            return Err(invalid(
                VAR,
                "",
                "is required on Lambda: s3://BUCKET[/PREFIX]",
            ));
        }
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !valid_bucket {
            return Err(invalid(
                VAR,
                url,
                "S3 bucket names are 3-63 characters of a-z 0-9 . -",
            ));
        }
        let prefix = prefix.trim_matches('/');
        return Ok(FilesTarget::S3 {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        });
    }
    match url.strip_prefix("file://") {
        Some(_) if profile == Profile::Lambda => Err(invalid(
            VAR,
            url,
            "a local folder is lost with the Lambda instance: use s3://BUCKET[/PREFIX]",
        )),
        Some(path) if !path.is_empty() => Ok(FilesTarget::Local {
            root: PathBuf::from(path),
        }),
        _ => Err(invalid(
            VAR,
            url,
            "expected file://PATH or s3://BUCKET[/PREFIX]",
        )),
    }
}

/// Where the signing keys come from: `MCP_SECRET_ID` or `MCP_SIGNING_KEY`, not both.
fn keys_target(env: &HashMap<String, String>, profile: Profile) -> Result<KeysTarget, ConfigError> {
    let lookup = |var: &str| get(env, var);
    let refresh = lookup("MCP_SECRET_REFRESH_SECS").unwrap_or("300");
    let refresh = parse_seconds("MCP_SECRET_REFRESH_SECS", refresh, 10)?;
    match (lookup("MCP_SECRET_ID"), lookup("MCP_SIGNING_KEY")) {
        (Some(_), Some(_)) => Err(invalid(
            "MCP_SIGNING_KEY",
            "<redacted>",
            "set either MCP_SECRET_ID or MCP_SIGNING_KEY, not both",
        )),
        (Some(secret_id), None) => Ok(KeysTarget::SecretsManager {
            secret_id: secret_id.to_owned(),
            refresh,
        }),
        (None, Some(key)) if key.len() < MIN_SIGNING_KEY_BYTES => Err(invalid(
            "MCP_SIGNING_KEY",
            "<redacted>",
            format!(
                "is {} bytes; at least {MIN_SIGNING_KEY_BYTES} are required",
                key.len()
            ),
        )),
        (None, Some(key)) => Ok(KeysTarget::Env {
            key: key.as_bytes().to_vec(),
            dev: false,
        }),
        (None, None) if profile == Profile::Lambda => Err(invalid(
            "MCP_SECRET_ID",
            "",
            "is required on Lambda (or MCP_SIGNING_KEY): the development key is for local use only",
        )),
        (None, None) => Ok(KeysTarget::Env {
            key: DEV_SIGNING_KEY.as_bytes().to_vec(),
            dev: true,
        }),
    }
}

/// The development key is in the source, so anyone could mint tokens for it: a server
/// reachable beyond this machine needs a key of its own, unless it asks for no authentication.
fn refuse_public_development_key(
    bind: SocketAddr,
    keys: &KeysTarget,
    auth: &AuthSettings,
) -> Result<(), ConfigError> {
    let development_key = matches!(keys, KeysTarget::Env { dev: true, .. });
    if development_key && !bind.ip().is_loopback() && *auth != AuthSettings::Off {
        return Err(invalid(
            "MCP_SIGNING_KEY",
            "",
            format!(
                "is required when MCP_BIND ({bind}) is not a loopback address: the built-in \
                 development key is public. Set MCP_SIGNING_KEY (at least \
                 {MIN_SIGNING_KEY_BYTES} bytes) or MCP_SECRET_ID"
            ),
        ));
    }
    Ok(())
}

/// `MCP_HEADER_TIMEOUT_SECS`, `MCP_BODY_TIMEOUT_SECS`, `MCP_IDLE_TIMEOUT_SECS`,
/// `MCP_WRITE_TIMEOUT_SECS` and `MCP_MAX_CONNECTIONS`.
fn connection_limits(env: &HashMap<String, String>) -> Result<ConnectionLimits, ConfigError> {
    let seconds = |var: &'static str, default: u64, maximum: u64| match get(env, var) {
        Some(value) => parse_bounded_seconds(var, value, 1, maximum),
        None => Ok(Duration::from_secs(default)),
    };
    let max_connections = match get(env, "MCP_MAX_CONNECTIONS") {
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| {
                invalid(
                    "MCP_MAX_CONNECTIONS",
                    value,
                    "expected a whole number from 1 to 1000000",
                )
            })?,
        None => DEFAULT_MAX_CONNECTIONS,
    };
    Ok(ConnectionLimits {
        header: seconds("MCP_HEADER_TIMEOUT_SECS", DEFAULT_HEADER_TIMEOUT_SECS, 300)?,
        body: seconds("MCP_BODY_TIMEOUT_SECS", DEFAULT_BODY_TIMEOUT_SECS, 3600)?,
        idle: seconds("MCP_IDLE_TIMEOUT_SECS", DEFAULT_IDLE_TIMEOUT_SECS, 3600)?,
        write: seconds("MCP_WRITE_TIMEOUT_SECS", DEFAULT_WRITE_TIMEOUT_SECS, 3600)?,
        max_connections,
    })
}

/// `MCP_AUTH` and the `MCP_AUTH_*` settings. Lambda refuses `off` and needs an explicit issuer
/// and audience: the function verifies tokens itself whenever no API Gateway authorizer did.
fn auth_settings(
    no_auth: bool,
    env: &HashMap<String, String>,
    profile: Profile,
    resource_url: Option<&str>,
) -> Result<AuthSettings, ConfigError> {
    let lookup = |var: &str| get(env, var);
    let mode = if no_auth {
        "off"
    } else {
        lookup("MCP_AUTH").unwrap_or("jwt")
    };
    match (mode, profile) {
        ("jwt" | "cognito", _) => {}
        ("off", Profile::Server) => return Ok(AuthSettings::Off),
        ("off", Profile::Lambda) => {
            return Err(invalid(
                "MCP_AUTH",
                mode,
                "is not allowed on Lambda: every deployed request must carry a verified token",
            ));
        }
        _ => return Err(invalid("MCP_AUTH", mode, "expected jwt, cognito or off")),
    }
    let lambda = profile == Profile::Lambda;
    let cognito = CognitoSettings::from_lookup(|var| lookup(var).map(str::to_owned))
        .map_err(|error| from_auth_error(env, error))?;
    if cognito.is_some() && resource_url.is_none() {
        return Err(invalid(
            "MCP_RESOURCE_URL",
            "",
            "is required with MCP_AUTH=cognito: this resource's URL, the identifier of the \
             pool's resource server",
        ));
    }
    let issuer = match (lookup("MCP_AUTH_ISSUER"), &cognito) {
        (Some(issuer), _) => issuer.to_owned(),
        (None, Some(pool)) => pool.pool_issuer.clone(),
        (None, None) if lambda => {
            return Err(invalid(
                "MCP_AUTH_ISSUER",
                "",
                "is required on Lambda: the `iss` of the tokens this function accepts",
            ));
        }
        (None, None) => authorizer::mint::DEFAULT_ISSUER.to_owned(),
    };
    let audience = match (lookup("MCP_AUTH_AUDIENCE"), resource_url) {
        (Some(audience), _) => http_url("MCP_AUTH_AUDIENCE", audience)?,
        (None, Some(resource)) => resource.to_owned(),
        (None, None) if lambda => {
            return Err(invalid(
                "MCP_AUTH_AUDIENCE",
                "",
                "is required on Lambda (or MCP_RESOURCE_URL): this function's MCP URL",
            ));
        }
        (None, None) => authorizer::mint::DEFAULT_AUDIENCE.to_owned(),
    };
    let jwks_url = lookup("MCP_AUTH_JWKS_URL")
        .map(|url| http_url("MCP_AUTH_JWKS_URL", url))
        .transpose()?
        .or_else(|| cognito.as_ref().map(CognitoSettings::jwks_url));
    let leeway = lookup("MCP_AUTH_LEEWAY_SECS").unwrap_or("30");
    let leeway = parse_bounded_seconds("MCP_AUTH_LEEWAY_SECS", leeway, 0, 300)?;
    Ok(AuthSettings::Jwt {
        issuer,
        audience,
        jwks_url,
        leeway,
        cognito,
    })
}

/// An error of the settings the authorizer crate reads, as this crate's.
fn from_auth_error(env: &HashMap<String, String>, error: authorizer::ConfigError) -> ConfigError {
    match error {
        authorizer::ConfigError::Missing { name } => {
            invalid(name, "", "is required with MCP_AUTH=cognito")
        }
        authorizer::ConfigError::Invalid { name, reason } => {
            invalid(name, get(env, name).unwrap_or(""), reason)
        }
        other => invalid("MCP_AUTH", "cognito", other.to_string()),
    }
}

/// `MCP_AUTH_COGNITO_DOMAIN` and the registration limits, for `MCP_AUTH=cognito`.
fn oauth_front(
    env: &HashMap<String, String>,
    auth: &AuthSettings,
) -> Result<Option<OAuthFront>, ConfigError> {
    let lookup = |var: &str| get(env, var);
    let AuthSettings::Jwt {
        cognito: Some(pool),
        ..
    } = auth
    else {
        return Ok(None);
    };
    let domain = lookup("MCP_AUTH_COGNITO_DOMAIN").ok_or_else(|| {
        invalid(
            "MCP_AUTH_COGNITO_DOMAIN",
            "",
            "is required with MCP_AUTH=cognito: the pool's sign-in domain, e.g. \
             https://auth.example.com",
        )
    })?;
    let domain = http_url("MCP_AUTH_COGNITO_DOMAIN", domain)?;
    if domain.ends_with('/') || domain.contains(['?', '#']) {
        return Err(invalid(
            "MCP_AUTH_COGNITO_DOMAIN",
            &domain,
            "expected the domain's base URL, without a trailing slash, query or fragment",
        ));
    }
    let limit = |var: &'static str, default: &str| {
        let value = lookup(var).unwrap_or(default);
        value
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| invalid(var, value, "expected a whole number from 1 to 10000"))
    };
    let registration = if pool.registration {
        Some(RegistrationLimits {
            max_clients: limit("MCP_OAUTH_REGISTRATION_MAX_CLIENTS", "50")?,
            per_hour: limit("MCP_OAUTH_REGISTRATION_PER_HOUR", "10")?,
        })
    } else {
        None
    };
    let managed_login = match lookup("MCP_AUTH_COGNITO_MANAGED_LOGIN").unwrap_or("on") {
        "on" => true,
        "off" => false,
        other => {
            return Err(invalid(
                "MCP_AUTH_COGNITO_MANAGED_LOGIN",
                other,
                "expected on or off",
            ));
        }
    };
    Ok(Some(OAuthFront {
        domain,
        pool_id: pool.pool_id.clone(),
        pool_issuer: pool.pool_issuer.clone(),
        registration,
        managed_login,
    }))
}

/// `MCP_RATE_LIMIT_PER_SEC` (default 20; 0 turns limiting off), `MCP_RATE_LIMIT_BURST`
/// (default 3 × the rate) and `MCP_RATE_LIMIT_STORE` (`memory`, the server default, or `store`,
/// the Lambda default: instances come and go, so only the store sees every request).
fn rate_limit_settings(
    env: &HashMap<String, String>,
    profile: Profile,
) -> Result<Option<RateLimitSettings>, ConfigError> {
    let Some((per_second, burst)) = bucket(
        env,
        ("MCP_RATE_LIMIT_PER_SEC", "20"),
        "MCP_RATE_LIMIT_BURST",
        3,
    )?
    else {
        return Ok(None);
    };
    let default_store = if profile == Profile::Lambda {
        "store"
    } else {
        "memory"
    };
    let shared = match get(env, "MCP_RATE_LIMIT_STORE").unwrap_or(default_store) {
        "memory" => false,
        "store" => true,
        other => {
            return Err(invalid(
                "MCP_RATE_LIMIT_STORE",
                other,
                "expected memory or store",
            ));
        }
    };
    Ok(Some(RateLimitSettings {
        per_second,
        burst,
        shared,
    }))
}

/// A token bucket's rate and burst from `rate_var` (with its default; `0` turns it off) and
/// `burst_var` (default `burst_factor` × the rate): `None` when off.
fn bucket(
    env: &HashMap<String, String>,
    (rate_var, default_rate): (&'static str, &str),
    burst_var: &'static str,
    burst_factor: u32,
) -> Result<Option<(u32, u32)>, ConfigError> {
    let count = |var: &'static str, value: &str| {
        value
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 100_000)
            .ok_or_else(|| invalid(var, value, "expected a whole number from 0 to 100000"))
    };
    let per_second = count(rate_var, get(env, rate_var).unwrap_or(default_rate))?;
    if per_second == 0 {
        return Ok(None);
    }
    let burst = match get(env, burst_var) {
        Some(value) => count(burst_var, value)?,
        None => per_second.saturating_mul(burst_factor),
    };
    if burst == 0 {
        return Err(invalid(
            burst_var,
            "0",
            format!("must be at least 1 while {rate_var} is above 0"),
        ));
    }
    Ok(Some((per_second, burst)))
}

fn parse_seconds(var: &'static str, value: &str, minimum: u64) -> Result<Duration, ConfigError> {
    parse_bounded_seconds(var, value, minimum, 365 * 24 * 3600)
}

fn parse_bounded_seconds(
    var: &'static str,
    value: &str,
    minimum: u64,
    maximum: u64,
) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|secs| *secs >= minimum && *secs <= maximum)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            invalid(
                var,
                value,
                format!("expected whole seconds from {minimum} to {maximum}"),
            )
        })
}

/// A comma-separated list; `*` alone means "accept any" (an empty list).
fn list(value: &str) -> Vec<String> {
    if value.trim() == "*" {
        return Vec::new();
    }
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(Flags::default(), &env)
    }

    #[test]
    fn defaults_serve_loopback_on_sqlite() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.store_url, "sqlite://./.data/mcp.db");
        assert_eq!(config.session_ttl, Duration::from_secs(86400));
        assert_eq!(config.max_sessions_per_caller, 32);
        assert!(matches!(config.keys, KeysTarget::Env { dev: true, .. }));
        assert_eq!(
            config.files,
            FilesTarget::Local {
                root: "./.data/files".into()
            }
        );
        assert_eq!(config.allowed_hosts, ["localhost", "127.0.0.1", "::1"]);
    }

    fn lambda(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::for_profile(Profile::Lambda, Flags::default(), &env)
    }

    const LAMBDA_ENV: [(&str, &str); 7] = [
        ("AWS_LAMBDA_FUNCTION_NAME", "mcp-dev-function"),
        ("MCP_STORE_URL", "dynamodb://mcp-dev"),
        ("MCP_FILES_URL", "s3://mcp-dev-files/tenant-a/"),
        ("MCP_SECRET_ID", "mcp/dev/keys"),
        ("AWS_REGION", "eu-west-1"),
        ("MCP_AUTH_ISSUER", "https://auth.example.com"),
        ("MCP_RESOURCE_URL", "https://api.example.com/mcp"),
    ];

    #[test]
    fn lambda_tasks_run_in_asynchronous_invocations_of_the_function_itself() {
        let on_lambda = lambda(&LAMBDA_ENV).expect("valid lambda env");
        assert_eq!(
            on_lambda.tasks.runs,
            TaskRuns::Invoke {
                function: "mcp-dev-function".into(),
                endpoint_url: None
            }
        );
        assert_eq!(on_lambda.tasks.run_limit, on_lambda.stream_max);
        let without_name: Vec<_> = LAMBDA_ENV[1..].to_vec();
        let error = lambda(&without_name).expect_err("the function name is required");
        assert_eq!(error.var, "AWS_LAMBDA_FUNCTION_NAME");
        let server = config(&[]).expect("defaults are valid");
        assert_eq!(server.tasks.runs, TaskRuns::InProcess);
    }

    #[test]
    fn lambda_reads_aws_targets() {
        let config = lambda(&LAMBDA_ENV).expect("valid lambda env");
        assert_eq!(
            config.store,
            StoreTarget::DynamoDb {
                table: "mcp-dev".into()
            }
        );
        assert_eq!(
            config.files,
            FilesTarget::S3 {
                bucket: "mcp-dev-files".into(),
                prefix: "tenant-a/".into()
            }
        );
        assert_eq!(
            config.keys,
            KeysTarget::SecretsManager {
                secret_id: "mcp/dev/keys".into(),
                refresh: Duration::from_secs(300)
            }
        );
        assert!(config.allowed_hosts.is_empty(), "any host on Lambda");
        assert_eq!(
            config.auth,
            AuthSettings::Jwt {
                issuer: "https://auth.example.com".into(),
                audience: "https://api.example.com/mcp".into(),
                jwks_url: None,
                leeway: Duration::from_secs(30),
                cognito: None,
            }
        );
        assert_eq!(
            config.rate_limit,
            Some(RateLimitSettings {
                per_second: 20,
                burst: 60,
                shared: true
            })
        );
        assert_eq!(
            config.unauthenticated,
            Some(UnauthenticatedSettings {
                per_second: 20,
                burst: 100
            })
        );
    }

    #[test]
    fn the_server_authenticates_by_default_with_the_mcp_token_defaults() {
        let config = config(&[]).expect("defaults");
        assert_eq!(
            config.auth,
            AuthSettings::Jwt {
                issuer: "mcp-dev".into(),
                audience: "http://127.0.0.1:8080/mcp".into(),
                jwks_url: None,
                leeway: Duration::from_secs(30),
                cognito: None,
            }
        );
        assert_eq!(config.rate_limit.map(|limit| limit.shared), Some(false));
        assert_eq!(config.tool_timeout, Duration::from_secs(30));
        let flags = Flags {
            no_auth: true,
            ..Flags::default()
        };
        let off = Config::from_sources(flags, &HashMap::new()).expect("no auth");
        assert_eq!(off.auth, AuthSettings::Off);
        let unlimited = super::tests::config(&[("MCP_RATE_LIMIT_PER_SEC", "0")]).expect("valid");
        assert_eq!(unlimited.rate_limit, None);
        let open = super::tests::config(&[("MCP_UNAUTHENTICATED_PER_SEC", "0")]).expect("valid");
        assert_eq!(open.unauthenticated, None);
    }

    #[test]
    fn lambda_refuses_missing_or_local_settings() {
        let without = |var: &str| -> Vec<(&str, &str)> {
            LAMBDA_ENV
                .iter()
                .copied()
                .filter(|(k, _)| *k != var)
                .collect()
        };
        let with = |var: &'static str, value: &'static str| -> Vec<(&'static str, &'static str)> {
            let mut env = without(var);
            env.push((var, value));
            env
        };
        let cases = [
            (
                without("MCP_STORE_URL"),
                "MCP_STORE_URL",
                "is required on Lambda: dynamodb://TABLE or postgres://…",
            ),
            (
                with("MCP_STORE_URL", "sqlite:///tmp/mcp.db"),
                "MCP_STORE_URL",
                "SQLite is a local file and Lambda instances share no disk: use dynamodb://TABLE or postgres://…",
            ),
            (
                with("MCP_STORE_URL", "dynamodb://a"),
                "MCP_STORE_URL",
                "DynamoDB table names are 3-255 characters of A-Z a-z 0-9 _ . -",
            ),
            (
                without("MCP_FILES_URL"),
                "MCP_FILES_URL",
                "is required on Lambda: s3://BUCKET[/PREFIX]",
            ),
            (
                with("MCP_FILES_URL", "file:///tmp/files"),
                "MCP_FILES_URL",
                "a local folder is lost with the Lambda instance: use s3://BUCKET[/PREFIX]",
            ),
            (
                with("MCP_FILES_URL", "s3://Bad_Bucket"),
                "MCP_FILES_URL",
                "S3 bucket names are 3-63 characters of a-z 0-9 . -",
            ),
            (
                without("MCP_SECRET_ID"),
                "MCP_SECRET_ID",
                "is required on Lambda (or MCP_SIGNING_KEY): the development key is for local use only",
            ),
            (
                with("MCP_SIGNING_KEY", "k-that-is-at-least-32-bytes-long-000"),
                "MCP_SIGNING_KEY",
                "set either MCP_SECRET_ID or MCP_SIGNING_KEY, not both",
            ),
            (
                without("AWS_REGION"),
                "AWS_REGION",
                "is required when DynamoDB, S3 or Secrets Manager is configured",
            ),
            (
                with("AWS_ENDPOINT_URL", "localhost:5000"),
                "AWS_ENDPOINT_URL",
                "expected an http:// or https:// URL",
            ),
            (
                with("MCP_SECRET_REFRESH_SECS", "1"),
                "MCP_SECRET_REFRESH_SECS",
                "expected whole seconds from 10 to 31536000",
            ),
            (
                with("MCP_BASE_PATH", "v1"),
                "MCP_BASE_PATH",
                "expected a path starting with /, e.g. /v1",
            ),
            (
                with("MCP_AUTH", "off"),
                "MCP_AUTH",
                "is not allowed on Lambda: every deployed request must carry a verified token",
            ),
            (
                without("MCP_AUTH_ISSUER"),
                "MCP_AUTH_ISSUER",
                "is required on Lambda: the `iss` of the tokens this function accepts",
            ),
            (
                without("MCP_RESOURCE_URL"),
                "MCP_AUTH_AUDIENCE",
                "is required on Lambda (or MCP_RESOURCE_URL): this function's MCP URL",
            ),
        ];
        for (env, var, reason) in cases {
            let error = lambda(&env).expect_err(var);
            assert_eq!((error.var, error.reason.as_str()), (var, reason));
        }
    }

    /// The settings of a Cognito deployment on the server, with `extra` on top.
    fn cognito(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = [
            ("MCP_AUTH", "cognito"),
            ("MCP_AUTH_COGNITO_USER_POOL_ID", "us-east-1_Pool1"),
            ("MCP_AUTH_COGNITO_CLIENT_IDS", "client1"),
            ("MCP_AUTH_COGNITO_DOMAIN", "https://auth.example.com"),
            ("MCP_RESOURCE_URL", "https://api.example.com/prod/mcp"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (key, value) in extra {
            env.insert((*key).to_owned(), (*value).to_owned());
        }
        env.retain(|_, value| !value.is_empty());
        Config::from_sources(Flags::default(), &env)
    }

    #[test]
    fn cognito_takes_issuer_and_keys_from_the_pool() {
        let config = cognito(&[]).expect("valid");
        let AuthSettings::Jwt {
            issuer,
            audience,
            jwks_url,
            cognito: Some(pool),
            ..
        } = &config.auth
        else {
            panic!("cognito settings: {:?}", config.auth)
        };
        assert_eq!(
            issuer,
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool1"
        );
        assert_eq!(audience, "https://api.example.com/prod/mcp");
        assert_eq!(
            jwks_url.as_deref(),
            Some(
                "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool1/.well-known/jwks.json"
            )
        );
        assert_eq!(pool.client_ids, ["client1"]);
        let front = config.oauth.expect("a sign-in front");
        assert_eq!(front.domain, "https://auth.example.com");
        assert_eq!(front.registration, None);
        assert!(front.managed_login);
        let registering = cognito(&[
            ("MCP_OAUTH_REGISTRATION", "on"),
            ("MCP_AUTH_COGNITO_CLIENT_IDS", ""),
        ])
        .expect("valid");
        assert_eq!(
            registering.oauth.and_then(|front| front.registration),
            Some(RegistrationLimits {
                max_clients: 50,
                per_hour: 10
            })
        );
        assert_eq!(config_default_oauth(), None);
    }

    fn config_default_oauth() -> Option<OAuthFront> {
        Config::from_sources(Flags::default(), &HashMap::new())
            .expect("valid")
            .oauth
    }

    #[test]
    fn malformed_cognito_settings_name_their_variable() {
        let cases = [
            (
                vec![("MCP_RESOURCE_URL", "")],
                "MCP_RESOURCE_URL",
                "is required with MCP_AUTH=cognito: this resource's URL, the identifier of the pool's resource server",
            ),
            (
                vec![("MCP_AUTH_COGNITO_USER_POOL_ID", "")],
                "MCP_AUTH_COGNITO_USER_POOL_ID",
                "is required with MCP_AUTH=cognito",
            ),
            (
                vec![("MCP_AUTH_COGNITO_USER_POOL_ID", "pool")],
                "MCP_AUTH_COGNITO_USER_POOL_ID",
                "\"pool\" is not a user pool id (<region>_<id>)",
            ),
            (
                vec![("MCP_AUTH_COGNITO_CLIENT_IDS", "")],
                "MCP_AUTH_COGNITO_CLIENT_IDS (or MCP_OAUTH_REGISTRATION=on)",
                "is required with MCP_AUTH=cognito",
            ),
            (
                vec![("MCP_AUTH_COGNITO_CLIENT_IDS", "a/b")],
                "MCP_AUTH_COGNITO_CLIENT_IDS",
                "\"a/b\" is not an app client id",
            ),
            (
                vec![("MCP_AUTH_COGNITO_DOMAIN", "")],
                "MCP_AUTH_COGNITO_DOMAIN",
                "is required with MCP_AUTH=cognito: the pool's sign-in domain, e.g. https://auth.example.com",
            ),
            (
                vec![("MCP_AUTH_COGNITO_DOMAIN", "auth.example.com")],
                "MCP_AUTH_COGNITO_DOMAIN",
                "expected an absolute http:// or https:// URL",
            ),
            (
                vec![("MCP_AUTH_COGNITO_DOMAIN", "https://auth.example.com/")],
                "MCP_AUTH_COGNITO_DOMAIN",
                "expected the domain's base URL, without a trailing slash, query or fragment",
            ),
            (
                vec![("MCP_AUTH_COGNITO_MANAGED_LOGIN", "yes")],
                "MCP_AUTH_COGNITO_MANAGED_LOGIN",
                "expected on or off",
            ),
            (
                vec![("MCP_OAUTH_REGISTRATION", "true")],
                "MCP_OAUTH_REGISTRATION",
                "\"true\" is not on or off",
            ),
            (
                vec![
                    ("MCP_OAUTH_REGISTRATION", "on"),
                    ("MCP_OAUTH_REGISTRATION_MAX_CLIENTS", "0"),
                ],
                "MCP_OAUTH_REGISTRATION_MAX_CLIENTS",
                "expected a whole number from 1 to 10000",
            ),
            (
                vec![
                    ("MCP_OAUTH_REGISTRATION", "on"),
                    ("MCP_OAUTH_REGISTRATION_PER_HOUR", "lots"),
                ],
                "MCP_OAUTH_REGISTRATION_PER_HOUR",
                "expected a whole number from 1 to 10000",
            ),
            (
                vec![("MCP_AUTH", "jwt"), ("MCP_OAUTH_REGISTRATION", "on")],
                "MCP_OAUTH_REGISTRATION",
                "is on, which needs MCP_AUTH=cognito (the pool registers the clients)",
            ),
            (
                vec![("MCP_AUTH", "oauth")],
                "MCP_AUTH",
                "expected jwt, cognito or off",
            ),
        ];
        for (extra, var, reason) in cases {
            let error = cognito(&extra).expect_err(var);
            assert_eq!(
                (error.var, error.reason.as_str()),
                (var, reason),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn flags_win_over_variables() {
        let env = HashMap::from([("MCP_BIND".to_owned(), "127.0.0.1:1".to_owned())]);
        let flags = Flags {
            bind: Some("127.0.0.1:2".into()),
            ..Flags::default()
        };
        let config = Config::from_sources(flags, &env).expect("valid");
        assert_eq!(config.bind.port(), 2);
    }

    #[test]
    fn readiness_is_cached_five_seconds_unless_set() {
        let default = config(&[]).expect("valid");
        assert_eq!(default.ready_cache, Duration::from_secs(5));
        let off = config(&[("MCP_READY_CACHE_SECS", "0")]).expect("valid");
        assert_eq!(off.ready_cache, Duration::ZERO);
        let set = config(&[("MCP_READY_CACHE_SECS", "30")]).expect("valid");
        assert_eq!(set.ready_cache, Duration::from_secs(30));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            (
                "MCP_BIND",
                "localhost",
                "expected IP:PORT, e.g. 127.0.0.1:8080",
            ),
            (
                "MCP_MAX_IN_FLIGHT_PER_CALLER",
                "-1",
                "expected a whole number from 0 (off) to 10000",
            ),
            (
                "MCP_STORE_URL",
                "mysql://db",
                "unsupported store URL: use sqlite://PATH, postgres://… or dynamodb://TABLE",
            ),
            (
                "MCP_SESSION_TTL_SECS",
                "soon",
                "expected whole seconds from 60 to 31536000",
            ),
            (
                "MCP_SESSION_TTL_SECS",
                "5",
                "expected whole seconds from 60 to 31536000",
            ),
            (
                "MCP_MAX_SESSIONS_PER_CALLER",
                "0",
                "expected a whole number from 1 to 256",
            ),
            (
                "MCP_MAX_SESSIONS_PER_CALLER",
                "many",
                "expected a whole number from 1 to 256",
            ),
            (
                "MCP_MAX_SESSIONS_PER_CALLER",
                "257",
                "expected a whole number from 1 to 256",
            ),
            (
                "MCP_MAX_BODY_BYTES",
                "-1",
                "expected a byte count from 1024 to 67108864",
            ),
            (
                "MCP_SHUTDOWN_GRACE_SECS",
                "1.5",
                "expected whole seconds from 0 to 31536000",
            ),
            (
                "MCP_READY_CACHE_SECS",
                "301",
                "expected whole seconds from 0 to 300",
            ),
            (
                "MCP_READY_CACHE_SECS",
                "-1",
                "expected whole seconds from 0 to 300",
            ),
            ("MCP_LOG_FORMAT", "xml", "expected json or text"),
            (
                "MCP_FILES_URL",
                "ftp://host/x",
                "expected file://PATH or s3://BUCKET[/PREFIX]",
            ),
            (
                "MCP_RESOURCE_URL",
                "/mcp",
                "expected an absolute http:// or https:// URL",
            ),
            (
                "MCP_AUTHORIZATION_SERVERS",
                "https://auth.example.com,auth.example.org",
                "expected an absolute http:// or https:// URL",
            ),
            ("MCP_AUTH", "maybe", "expected jwt, cognito or off"),
            (
                "MCP_AUTH_AUDIENCE",
                "api.example.com/mcp",
                "expected an absolute http:// or https:// URL",
            ),
            (
                "MCP_AUTH_JWKS_URL",
                "file:///jwks.json",
                "expected an absolute http:// or https:// URL",
            ),
            (
                "MCP_AUTH_LEEWAY_SECS",
                "301",
                "expected whole seconds from 0 to 300",
            ),
            (
                "MCP_RATE_LIMIT_PER_SEC",
                "-5",
                "expected a whole number from 0 to 100000",
            ),
            (
                "MCP_RATE_LIMIT_BURST",
                "0",
                "must be at least 1 while MCP_RATE_LIMIT_PER_SEC is above 0",
            ),
            ("MCP_RATE_LIMIT_STORE", "redis", "expected memory or store"),
            (
                "MCP_TRUSTED_PROXY_HOPS",
                "-1",
                "expected a whole number from 0 to 5",
            ),
            (
                "MCP_UNAUTHENTICATED_PER_SEC",
                "ten",
                "expected a whole number from 0 to 100000",
            ),
            (
                "MCP_UNAUTHENTICATED_BURST",
                "0",
                "must be at least 1 while MCP_UNAUTHENTICATED_PER_SEC is above 0",
            ),
            (
                "MCP_TOOL_TIMEOUT_SECS",
                "0",
                "expected whole seconds from 1 to 31536000",
            ),
            (
                "MCP_METRICS_BIND",
                "9464",
                "expected IP:PORT (e.g. 127.0.0.1:9464) or off",
            ),
            (
                "MCP_METRICS_BIND",
                "127.0.0.1:8080",
                "must differ from MCP_BIND",
            ),
            (
                "MCP_METRICS_NAMESPACE",
                "AWS/Lambda",
                "expected 1-255 characters of A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/",
            ),
            (
                "MCP_METRICS_NAMESPACE",
                "mcp{prod}",
                "expected 1-255 characters of A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/",
            ),
            (
                "MCP_HEADER_TIMEOUT_SECS",
                "0",
                "expected whole seconds from 1 to 300",
            ),
            (
                "MCP_HEADER_TIMEOUT_SECS",
                "301",
                "expected whole seconds from 1 to 300",
            ),
            (
                "MCP_BODY_TIMEOUT_SECS",
                "soon",
                "expected whole seconds from 1 to 3600",
            ),
            (
                "MCP_IDLE_TIMEOUT_SECS",
                "-1",
                "expected whole seconds from 1 to 3600",
            ),
            (
                "MCP_WRITE_TIMEOUT_SECS",
                "1.5",
                "expected whole seconds from 1 to 3600",
            ),
            (
                "MCP_MAX_CONNECTIONS",
                "0",
                "expected a whole number from 1 to 1000000",
            ),
            (
                "MCP_MAX_CONNECTIONS",
                "many",
                "expected a whole number from 1 to 1000000",
            ),
        ];
        for (var, value, reason) in cases {
            let error = config(&[(var, value)]).expect_err(var);
            assert_eq!(error.var, var);
            assert_eq!(error.reason, reason, "{var}");
        }
    }

    #[test]
    fn metrics_listen_on_loopback_unless_told_otherwise() {
        let default = config(&[]).expect("defaults");
        assert_eq!(default.metrics_bind, "127.0.0.1:9464".parse().ok());
        assert_eq!(default.metrics_namespace, "MCP");
        let off = config(&[("MCP_METRICS_BIND", "off")]).expect("off");
        assert_eq!(off.metrics_bind, None);
        let named = config(&[("MCP_METRICS_NAMESPACE", "MCP/prod")]).expect("namespace");
        assert_eq!(named.metrics_namespace, "MCP/prod");
    }

    #[test]
    fn answers_to_server_requests_are_relayed_only_on_a_streaming_lambda() {
        assert_eq!(config(&[]).expect("defaults").relay, None);
        let mut buffered = LAMBDA_ENV.to_vec();
        buffered.push(("MCP_LAMBDA_RESPONSE", "buffered"));
        assert_eq!(lambda(&buffered).expect("buffered").relay, None);
        let mut streaming = LAMBDA_ENV.to_vec();
        streaming.extend([
            ("MCP_LISTEN_POLL_MS", "250"),
            ("MCP_TOOL_TIMEOUT_SECS", "20"),
        ]);
        assert_eq!(
            lambda(&streaming).expect("streaming").relay,
            Some(RelaySettings {
                poll: Duration::from_millis(250),
                wait: Duration::from_secs(20),
            })
        );
    }

    #[test]
    fn long_streams_are_on_for_the_server_and_a_choice_on_lambda() {
        let server = config(&[]).expect("defaults");
        assert_eq!(
            server.listen,
            Some(ListenSettings {
                poll: Duration::from_millis(1000),
                limit: None
            })
        );
        assert_eq!(
            config(&[("MCP_LONG_STREAMS", "off")]).expect("off").listen,
            None
        );
        assert_eq!(lambda(&LAMBDA_ENV).expect("defaults").listen, None);
        let mut env = LAMBDA_ENV.to_vec();
        env.extend([
            ("MCP_LONG_STREAMS", "on"),
            ("MCP_LISTEN_POLL_MS", "250"),
            ("MCP_STREAM_MAX_SECS", "120"),
        ]);
        assert_eq!(
            lambda(&env).expect("on").listen,
            Some(ListenSettings {
                poll: Duration::from_millis(250),
                limit: Some(Duration::from_secs(115))
            })
        );

        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 4] = [
            (
                &[("MCP_LONG_STREAMS", "yes")],
                "MCP_LONG_STREAMS",
                "expected on or off",
            ),
            (
                &[("MCP_LISTEN_POLL_MS", "50")],
                "MCP_LISTEN_POLL_MS",
                "expected whole milliseconds from 100 to 60000",
            ),
            (
                &[("MCP_LISTEN_POLL_MS", "1s")],
                "MCP_LISTEN_POLL_MS",
                "expected whole milliseconds from 100 to 60000",
            ),
            (
                &[
                    ("MCP_LONG_STREAMS", "on"),
                    ("MCP_LAMBDA_RESPONSE", "buffered"),
                ],
                "MCP_LONG_STREAMS",
                "needs MCP_LAMBDA_RESPONSE=stream: a buffered answer only arrives when the stream ends",
            ),
        ];
        for (vars, var, reason) in cases {
            let mut env = LAMBDA_ENV.to_vec();
            env.extend_from_slice(vars);
            let error = lambda(&env).expect_err(var);
            assert_eq!((error.var, error.reason.as_str()), (var, reason));
        }
    }

    #[test]
    fn lambda_streams_within_the_fifteen_minute_cap() {
        let default = lambda(&LAMBDA_ENV).expect("defaults");
        assert_eq!(default.lambda_response, LambdaResponse::Stream);
        assert_eq!(default.stream_max, Duration::from_secs(840));
        let mut env = LAMBDA_ENV.to_vec();
        env.extend([
            ("MCP_LAMBDA_RESPONSE", "buffered"),
            ("MCP_STREAM_MAX_SECS", "60"),
        ]);
        let buffered = lambda(&env).expect("buffered");
        assert_eq!(buffered.lambda_response, LambdaResponse::Buffered);
        assert_eq!(buffered.stream_max, Duration::from_secs(60));

        let cases = [
            (
                "MCP_LAMBDA_RESPONSE",
                "chunked",
                "expected stream or buffered",
            ),
            (
                "MCP_STREAM_MAX_SECS",
                "900",
                "expected whole seconds from 10 to 890",
            ),
            (
                "MCP_STREAM_MAX_SECS",
                "9",
                "expected whole seconds from 10 to 890",
            ),
            (
                "MCP_STREAM_MAX_SECS",
                "ten",
                "expected whole seconds from 10 to 890",
            ),
        ];
        for (var, value, reason) in cases {
            let mut env = LAMBDA_ENV.to_vec();
            env.push((var, value));
            let error = lambda(&env).expect_err(var);
            assert_eq!((error.var, error.reason.as_str()), (var, reason));
        }
    }

    #[test]
    fn a_tool_may_not_outlive_its_stream() {
        let mut env = LAMBDA_ENV.to_vec();
        env.extend([
            ("MCP_STREAM_MAX_SECS", "120"),
            ("MCP_TOOL_TIMEOUT_SECS", "120"),
        ]);
        let error = lambda(&env).expect_err("tool timeout at the stream bound");
        assert_eq!(error.var, "MCP_TOOL_TIMEOUT_SECS");
        assert_eq!(
            error.reason,
            "must be below MCP_STREAM_MAX_SECS (120 s): a call still running when its stream \
             ends could not deliver its result"
        );
        env.pop();
        env.push(("MCP_TOOL_TIMEOUT_SECS", "119"));
        assert_eq!(
            lambda(&env).expect("below the bound").tool_timeout,
            Duration::from_secs(119)
        );
        // A buffered host and mcp-server have no stream bound to respect.
        env.pop();
        env.push(("MCP_LAMBDA_RESPONSE", "buffered"));
        env.push(("MCP_TOOL_TIMEOUT_SECS", "600"));
        assert!(lambda(&env).is_ok());
        assert!(config(&[("MCP_TOOL_TIMEOUT_SECS", "3600")]).is_ok());
    }

    #[test]
    fn connections_are_bounded_by_default() {
        let default = config(&[]).expect("defaults");
        assert_eq!(
            default.connections,
            ConnectionLimits {
                header: Duration::from_secs(10),
                body: Duration::from_secs(30),
                idle: Duration::from_secs(75),
                write: Duration::from_secs(30),
                max_connections: 512,
            }
        );
        let set = config(&[
            ("MCP_HEADER_TIMEOUT_SECS", "2"),
            ("MCP_BODY_TIMEOUT_SECS", "3"),
            ("MCP_IDLE_TIMEOUT_SECS", "4"),
            ("MCP_WRITE_TIMEOUT_SECS", "5"),
            ("MCP_MAX_CONNECTIONS", "6"),
        ])
        .expect("valid");
        assert_eq!(
            set.connections,
            ConnectionLimits {
                header: Duration::from_secs(2),
                body: Duration::from_secs(3),
                idle: Duration::from_secs(4),
                write: Duration::from_secs(5),
                max_connections: 6,
            }
        );
    }

    #[test]
    fn a_public_bind_needs_a_key_of_its_own() {
        let error = config(&[("MCP_BIND", "0.0.0.0:8080")]).expect_err("development key");
        assert_eq!(
            error.to_string(),
            "invalid MCP_SIGNING_KEY=\"\": is required when MCP_BIND (0.0.0.0:8080) is not a \
             loopback address: the built-in development key is public. Set MCP_SIGNING_KEY (at \
             least 32 bytes) or MCP_SECRET_ID"
        );
        let flags = Flags {
            bind: Some("[::]:8080".into()),
            ..Flags::default()
        };
        let error = Config::from_sources(flags, &HashMap::new()).expect_err("IPv6 any");
        assert_eq!(error.var, "MCP_SIGNING_KEY");
        let error = config(&[("MCP_BIND", "192.0.2.10:8080")]).expect_err("an interface");
        assert_eq!(error.var, "MCP_SIGNING_KEY");

        let key = "k-that-is-at-least-32-bytes-long-000";
        let public = [("MCP_BIND", "0.0.0.0:8080")];
        for extra in [
            vec![("MCP_SIGNING_KEY", key)],
            vec![("MCP_SECRET_ID", "mcp/keys"), ("AWS_REGION", "eu-west-1")],
            vec![("MCP_AUTH", "off")],
        ] {
            let mut env = public.to_vec();
            env.extend(extra.iter().copied());
            assert!(config(&env).is_ok(), "{extra:?}");
        }
        for loopback in ["127.0.0.1:8080", "127.0.0.2:8080", "[::1]:8080"] {
            let local = config(&[("MCP_BIND", loopback)]).expect(loopback);
            assert!(matches!(local.keys, KeysTarget::Env { dev: true, .. }));
        }
    }

    #[test]
    fn short_signing_keys_are_refused_without_echoing_them() {
        let error = config(&[("MCP_SIGNING_KEY", "short-secret")]).expect_err("too short");
        assert_eq!(error.var, "MCP_SIGNING_KEY");
        assert!(!error.to_string().contains("short-secret"));
    }
}
