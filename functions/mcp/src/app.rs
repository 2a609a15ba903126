//! Builds the whole HTTP service: `/mcp` behind its layers, plus the health probes.
//!
//! [`build`] returns a plain axum [`Router`], the one `tower::Service` both hosts
//! serve; tests drive it with `oneshot` and no socket. It also wraps the opened stores in
//! their metered versions and returns the [`Metrics`] the hosts export. [`build_with`] builds
//! the same service around an [`Extension`]: a handler wrapping the product's and task jobs of
//! its own, how a test build adds fixtures without the product containing them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::IntoResponse,
    routing::{get, post},
};
use rmcp::{
    ServerHandler,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    backends::Backends,
    blob::BlobStore,
    config::Config,
    context::ServerContext,
    http::{
        auth::Auth,
        authorization_server::{self, AuthorizationServerMetadata},
        caller_limits::CallerLimits,
        in_flight::InFlight,
        json_response, jsonrpc_guard, origin_secret,
        pipeline::{Pipeline, Stages},
        protected_resource::{self, ResourceMetadata},
        rate_limit::RateLimiter,
        registration::{self, Registration},
        session_gate,
    },
    keys::Keyring,
    relay::RelaySessions,
    server::McpServer,
    session::DurableSessions,
    store::{self, Store},
    tasks::{RunStarter, TaskJobs, Tasks},
    telemetry::{
        metered::{MeteredBlobs, MeteredStore},
        metrics::Metrics,
    },
};

/// What the host needs to serve and stop the service.
pub struct App {
    pub router: Router,
    /// Cancelled on shutdown: ends open SSE streams and session workers.
    pub shutdown: CancellationToken,
    /// Every metric of this service: Prometheus text (`mcp-server`) or EMF lines (`mcp-lambda`).
    pub metrics: Arc<Metrics>,
    /// What the handlers share; the Lambda host runs task invocations over it.
    pub context: Arc<ServerContext>,
}

impl AsRef<Router> for App {
    fn as_ref(&self) -> &Router {
        &self.router
    }
}

/// The store, the file store and the signing keys, as the readiness probe checks them, and
/// the last round of checks.
#[derive(Clone)]
struct Probes {
    store: Arc<dyn Store>,
    backend: &'static str,
    blobs: Arc<dyn BlobStore>,
    keys: Keyring,
    last: Arc<LastReadiness>,
}

/// The answer of the last round of readiness checks, given again to the probes that come
/// within `ttl` of its start (`MCP_READY_CACHE_SECS`): a round costs a store read, a file
/// listing and a secret read, and the probe is public, so without this anyone could turn
/// anonymous requests into AWS calls one for three.
struct LastReadiness {
    ttl: Duration,
    /// Locked while a round runs: concurrent probes wait for that round instead of starting
    /// their own.
    round: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

/// What `/health/ready` answers.
#[derive(Clone)]
struct Readiness {
    status: StatusCode,
    body: serde_json::Value,
}

impl IntoResponse for Readiness {
    fn into_response(self) -> axum::response::Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Why the service could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("token verification cannot be set up: {0}")]
    Auth(#[from] authorizer::ConfigError),
}

/// What a build adds to the product: the handler rmcp serves, wrapping [`McpServer`], and
/// task jobs of its own. The one way anything outside this crate (the conformance suite's
/// fixtures) reaches the service; the product itself is [`Product`].
pub trait Extension {
    /// The MCP handler of this build; rmcp clones one per session or request.
    type Handler: ServerHandler + Clone + Send + Sync + 'static;

    /// Wraps the product handler; `keys` are the signing keys the build may seal with.
    fn handler(&self, server: McpServer, keys: &Keyring) -> Self::Handler;

    /// Task forms (SEP-2663) beside the product tools'. A Lambda function runs tasks by
    /// invoking itself, so the function serving the calls must register them too.
    fn task_jobs(&self) -> TaskJobs {
        TaskJobs::default()
    }
}

/// The product as it is deployed: nothing added.
pub struct Product;

impl Extension for Product {
    type Handler = McpServer;

    fn handler(&self, server: McpServer, _keys: &Keyring) -> McpServer {
        server
    }
}

/// Assembles the product service over opened backends; `host` is "server" or "lambda".
pub fn build(config: &Config, backends: &Backends, host: &'static str) -> Result<App, BuildError> {
    build_with(config, backends, host, &Product)
}

/// Assembles the service with `extension`'s handler and task jobs.
pub fn build_with<E: Extension>(
    config: &Config,
    backends: &Backends,
    host: &'static str,
    extension: &E,
) -> Result<App, BuildError> {
    let backend = backends.store_backend;
    let shutdown = CancellationToken::new();
    let sessions = Arc::new(LocalSessionManager::default());
    let tools = crate::tools::product_tools();
    let metrics = Arc::new(Metrics::new(
        tools
            .list_all()
            .into_iter()
            .map(|tool| tool.name.to_string())
            .collect(),
        Some(sessions.clone()),
        host == "lambda",
    ));
    let store = MeteredStore::wrap(backends.store.clone(), backend, metrics.clone());
    let blobs = MeteredBlobs::wrap(backends.blobs.clone(), metrics.clone());
    let context = Arc::new(
        ServerContext::new(
            store.clone(),
            backend,
            host,
            blobs.clone(),
            config.tool_timeout,
        )
        .with_listen(config.listen)
        .with_client_answers(host != "lambda" || config.relay.is_some())
        .with_tasks(tasks(config, backends, extension.task_jobs())),
    );
    let server = McpServer::new(context.clone(), tools);
    let write_tools = server.write_tools();
    let handler = extension.handler(server, &backends.keys);
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_allowed_hosts(config.allowed_hosts.clone())
        .with_allowed_origins(config.allowed_origins.clone())
        .with_cancellation_token(shutdown.child_token());
    if !config.allowed_origins.is_empty() {
        mcp_config = mcp_config.enforce_origin_validation();
    }
    mcp_config.session_store = Some(Arc::new(DurableSessions::new(
        store.clone(),
        config.session_ttl,
        config.max_sessions_per_caller,
    )));
    let relayed = RelaySessions::new(sessions.clone(), store.clone(), config.relay)
        .with_notes_on_calls(host == "lambda")
        .with_feed_streams(config.listen.filter(|_| host == "lambda"));
    let mcp = StreamableHttpService::new(move || Ok(handler.clone()), relayed.into(), mcp_config);
    let gate = session_gate::SessionGate {
        store: store.clone(),
        ttl: config.session_ttl,
        local: sessions,
        relays_answers: config.relay.is_some(),
    };
    let sign_in = SignIn::new(config, backends, store.clone());
    let metadata = ResourceMetadata {
        resource: config.resource_url.clone(),
        allowed_hosts: config.allowed_hosts.clone(),
        authorization_servers: match &sign_in {
            Some(sign_in) if config.authorization_servers.is_empty() => {
                vec![sign_in.issuer.clone()]
            }
            _ => config.authorization_servers.clone(),
        },
        scheme: if host == "lambda" { "https" } else { "http" },
        scope_prefix: sign_in.as_ref().map(|sign_in| sign_in.scope_prefix.clone()),
    };
    let registered_clients = match (&config.oauth, &backends.user_pool) {
        (Some(front), Some(pool)) => Some(authorizer::cognito::registered_client_lookup(
            pool.clone(),
            front.pool_id.clone(),
        )),
        _ => None,
    };
    let sources = config.sources();
    let auth = Auth::new(
        &config.auth,
        &backends.keys,
        metadata.clone(),
        write_tools,
        registered_clients,
    )?
    .with_failure_budget(config.unauthenticated, sources)
    .with_caller_limits(CallerLimits {
        rate: config
            .rate_limit
            .map(|settings| Arc::new(RateLimiter::new(settings, store.clone()))),
        in_flight: config.max_in_flight_per_caller.map(InFlight::new),
    });
    let mcp = Pipeline::new(Stages {
        metrics: metrics.clone(),
        auth,
        body_limit: jsonrpc_guard::BodyLimit(config.max_body_bytes),
        gate,
        first_message_wait: json_response::FirstMessageWait::default(),
        mcp,
    });
    // Unknown paths take the same path (the router's fallback), so they ask for a token before
    // they answer 404 and an anonymous caller learns nothing of what is served.
    let mcp_routes = Router::new()
        .route_service("/mcp", mcp.clone())
        .fallback_service(mcp);
    let router = Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(protected_resource::metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(protected_resource::metadata),
        )
        .with_state(metadata)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(Probes {
            store,
            backend,
            blobs,
            keys: backends.keys.clone(),
            last: Arc::new(LastReadiness {
                ttl: config.ready_cache,
                round: tokio::sync::Mutex::new(None),
            }),
        })
        .merge(SignIn::routes(sign_in))
        .merge(mcp_routes);
    // Outside every route, probes included: a request that skipped the front door gets nothing.
    let router = match &config.origin_secret {
        Some(secret) => router.layer(middleware::from_fn_with_state(
            Arc::new(secret.clone()),
            origin_secret::require,
        )),
        None => router,
    };
    Ok(App {
        router,
        shutdown,
        metrics,
        context,
    })
}

/// The OAuth front of a Cognito deployment (`MCP_AUTH=cognito`): its metadata documents and,
/// when on, client registration.
struct SignIn {
    /// This API's base URL, named as the authorization server.
    issuer: String,
    /// `<resource>/`: how the pool's resource server prefixes the product scopes.
    scope_prefix: String,
    metadata: AuthorizationServerMetadata,
    registration: Option<Registration>,
}

impl SignIn {
    fn new(config: &Config, backends: &Backends, store: Arc<dyn Store>) -> Option<Self> {
        let front = config.oauth.as_ref()?;
        // Config requires MCP_RESOURCE_URL with MCP_AUTH=cognito.
        let resource = config.resource_url.as_deref()?;
        let issuer = authorization_server::issuer_for(resource);
        let scopes: Arc<[String]> = authorizer::cognito::prefixed_scopes(resource).into();
        let registration = match (front.registration, &backends.user_pool) {
            (Some(limits), Some(pool)) => Some(Registration {
                pool: pool.clone(),
                pool_id: front.pool_id.clone(),
                limits,
                scopes: scopes.clone(),
                store,
                login_style: front.managed_login,
                sources: config.sources(),
            }),
            _ => None,
        };
        Some(Self {
            metadata: AuthorizationServerMetadata::new(front, &issuer, &scopes),
            scope_prefix: format!("{}/", resource.trim_end_matches('/')),
            issuer,
            registration,
        })
    }

    /// The metadata paths and the registration endpoint; where they are off they answer 404
    /// (not the 401 of the `/mcp` layers), so a client's discovery moves on.
    fn routes(sign_in: Option<Self>) -> Router {
        let (metadata, registration) = match sign_in {
            Some(sign_in) => (Some(sign_in.metadata), sign_in.registration),
            None => (None, None),
        };
        let serve = move || {
            let metadata = metadata.clone();
            async move {
                match metadata {
                    Some(document) => document.response(),
                    None => not_found("this server has no authorization server of its own"),
                }
            }
        };
        let mut router = Router::new();
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server/mcp",
            "/.well-known/openid-configuration",
            "/.well-known/openid-configuration/mcp",
        ] {
            router = router.route(path, get(serve.clone()));
        }
        let register = match registration {
            Some(registration) => post(registration::register).with_state(registration),
            None => post(|| async { not_found("client registration is off") }),
        };
        router.route(authorization_server::REGISTRATION_PATH, register)
    }
}

fn not_found(why: &'static str) -> axum::response::Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "error_description": why })),
    )
        .into_response()
}

/// The task-capable tools (the product's and the extension's `extra`) and how their runs
/// start: by the backends' Lambda invoker when there is one, else in process.
fn tasks(config: &Config, backends: &Backends, extra: TaskJobs) -> Tasks {
    let jobs = crate::tools::task_jobs().merged(extra);
    let starter = match &backends.task_invoker {
        Some(invoker) => RunStarter::Invoke(invoker.clone()),
        None => RunStarter::InProcess,
    };
    Tasks::new(jobs, starter, config.tasks.poll, config.tasks.run_limit)
}

/// Liveness: the process answers.
async fn live() -> impl IntoResponse {
    Json(json!({ "status": "alive", "version": env!("CARGO_PKG_VERSION") }))
}

/// Readiness: the store, the file store and the signing-key secret answer within
/// [`store::PROBE_TIMEOUT`]; 503 otherwise, each dependency with its status and latency.
///
/// One round of checks answers every probe of this instance for `MCP_READY_CACHE_SECS`
/// (default 5 s; 0 checks every time), and probes arriving while a round runs wait for it, so
/// a flood of probes costs at most one round per interval per instance.
///
/// The per-dependency detail stays public, like the probe: load balancers, uptime monitors and
/// `scripts/health-check.sh` call it without a token, and it names only the kind of each
/// backend, a fixed word for its failure and a latency (no table, bucket or secret name, no
/// error text), which tells a caller nothing it could use against the service.
async fn ready(State(probes): State<Probes>) -> Readiness {
    let ttl = probes.last.ttl;
    if ttl.is_zero() {
        return check_readiness(&probes).await;
    }
    let mut round = probes.last.round.lock().await;
    if let Some((started, answer)) = round.as_ref()
        && started.elapsed() < ttl
    {
        return answer.clone();
    }
    let started = Instant::now();
    let answer = check_readiness(&probes).await;
    *round = Some((started, answer.clone()));
    answer
}

/// One round of readiness checks, the three at once. The secret check reloads the keyring,
/// which keeps its key set when the secret did not change (see [`Keyring::refresh`]).
async fn check_readiness(probes: &Probes) -> Readiness {
    let (store, files, keys) = tokio::join!(
        store::probe(probes.store.as_ref()),
        store::timed_probe("file store", "file store error", probes.blobs.ping()),
        store::timed_probe("signing keys", "secret unreadable", probes.keys.refresh()),
    );
    let reachable = store.reachable && files.reachable && keys.reachable;
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let check = |backend: &str, probe: &store::Probe| {
        json!({
            "backend": backend,
            "status": if probe.reachable { "up" } else { "down" },
            "latencyMs": probe.latency_ms,
            "error": probe.failure,
        })
    };
    let body = json!({
        "status": if reachable { "ready" } else { "not_ready" },
        "checks": {
            "store": check(probes.backend, &store),
            "files": check(probes.blobs.backend(), &files),
            "keys": check(probes.keys.backend(), &keys),
        }
    });
    Readiness { status, body }
}
