//! The one path every `/mcp` request takes, written top-down in [`Stages`]: each method is
//! one stage and names the next.
//!
//! It is one hand-written `tower::Service`, not a stack of axum `from_fn` layers: such a layer
//! clones and boxes everything inside it for every request (rmcp's service and its settings
//! included). Here each stage is an `async fn` in its own module that takes the request and
//! the rest of the path as a closure, and rmcp's service is called by reference.
//!
//! Each stage may answer in place of everything after it, and one whose prerequisite is
//! missing fails closed: a request that reaches the scope check, the limits or the session
//! gate without a principal is refused, never let through.
//!
//! The Lambda host runs its own steps before this path, in `lambda_host`: the event check
//! (400), the stage and base path, the invocation span and ids, the API Gateway authorizer's
//! principal and grant, and `GET /mcp` answered 405 unless long-lived streams are on.

use std::{convert::Infallible, pin::Pin, sync::Arc, task::Poll};

use axum::{
    body::Body,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::future::BoxFuture;
use rmcp::{ServerHandler, transport::StreamableHttpService};

use super::{
    auth::{self, Auth},
    json_response::{self, FirstMessageWait},
    jsonrpc_guard::{self, BodyLimit},
    observe,
    session_gate::{self, SessionGate},
};
use crate::{relay::RelaySessions, telemetry::metrics::Metrics};

/// What each stage needs, and rmcp's service at the end of the path.
pub struct Stages<H: ServerHandler> {
    pub metrics: Arc<Metrics>,
    pub auth: Auth,
    pub body_limit: BodyLimit,
    pub gate: SessionGate,
    pub first_message_wait: FirstMessageWait,
    pub mcp: StreamableHttpService<H, RelaySessions>,
}

/// One stage's answer. Each stage's future is boxed: nested in place, the whole path was one
/// future of several kilobytes that every stage moved again (memcpy was half of a request's
/// instructions); boxed, each level moves only its own locals.
type Answer<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

impl<H: ServerHandler> Stages<H> {
    /// 0. The request log: creates the request's state, then logs and counts its outcome.
    pub async fn serve(&self, request: Request) -> Response {
        observe::observe(&self.metrics, request, |request| self.authenticate(request)).await
    }

    /// 1. Who calls (401, or 429 for a source that keeps failing), then the caller's limits
    ///    (429).
    fn authenticate(&self, request: Request) -> Answer<'_> {
        Box::pin(auth::authenticate(&self.auth, request, |request| {
            self.guard(request)
        }))
    }

    /// 2. One JSON-RPC message, read and parsed once (413, 408, -32700, -32600).
    fn guard(&self, request: Request) -> Answer<'_> {
        Box::pin(jsonrpc_guard::guard(self.body_limit, request, |request| {
            self.authorize(request)
        }))
    }

    /// 3. The scopes the message needs (403).
    fn authorize(&self, request: Request) -> Answer<'_> {
        Box::pin(auth::authorize(&self.auth, request, |request| {
            self.session(request)
        }))
    }

    /// 4. A legacy session, checked against the store (404, 429, 413, 503).
    fn session(&self, request: Request) -> Answer<'_> {
        Box::pin(session_gate::gate(&self.gate, request, |request| {
            self.prefer_json(request)
        }))
    }

    /// 5. A lone SSE answer becomes JSON.
    fn prefer_json(&self, request: Request) -> Answer<'_> {
        Box::pin(json_response::prefer_json(
            self.first_message_wait,
            request,
            |request| self.protocol(request),
        ))
    }

    /// 6. rmcp: the MCP protocol itself, at `/mcp`; any other path that came this far (the
    ///    router's fallback) is 404.
    fn protocol(&self, request: Request) -> Answer<'_> {
        Box::pin(async move {
            if request.uri().path() != "/mcp" {
                return StatusCode::NOT_FOUND.into_response();
            }
            self.mcp.handle(request).await.map(Body::new)
        })
    }
}

/// [`Stages`] as the `tower::Service` the router serves at `/mcp`; cloning it is one `Arc`.
pub struct Pipeline<H: ServerHandler> {
    stages: Arc<Stages<H>>,
}

impl<H: ServerHandler> Pipeline<H> {
    pub fn new(stages: Stages<H>) -> Self {
        Self {
            stages: Arc::new(stages),
        }
    }
}

impl<H: ServerHandler> Clone for Pipeline<H> {
    fn clone(&self) -> Self {
        Self {
            stages: self.stages.clone(),
        }
    }
}

impl<H: ServerHandler> tower::Service<Request> for Pipeline<H> {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let stages = self.stages.clone();
        Box::pin(async move { Ok(stages.serve(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, time::Duration};

    use axum::http::{Method, StatusCode};
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

    use super::*;
    use crate::{
        config::AuthSettings,
        http::{
            caller_limits::CallerLimits, protected_resource::ResourceMetadata, state::RequestState,
        },
        keys::{KeySet, Keyring},
        store::sql::SqlStore,
    };

    fn auth_off() -> Auth {
        let metadata = ResourceMetadata {
            resource: None,
            allowed_hosts: Vec::new(),
            authorization_servers: Vec::new(),
            scheme: "http",
            scope_prefix: None,
        };
        let keys = Keyring::fixed(KeySet::single("test", &[7; 32]));
        Auth::new(&AuthSettings::Off, &keys, metadata, HashSet::new(), None).expect("auth")
    }

    fn post() -> Request {
        Request::builder()
            .method(Method::POST)
            .uri("/mcp")
            .body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
            .expect("request")
    }

    /// A request as the first stage leaves it: with a state, but nobody authenticated.
    fn unauthenticated(state: Arc<RequestState>) -> Request {
        let mut request = post();
        request.extensions_mut().insert(state);
        request
    }

    fn fresh_state() -> Arc<RequestState> {
        Arc::new(RequestState::new(
            "r".into(),
            String::new(),
            String::new(),
            tracing::Span::none(),
        ))
    }

    /// The rest of the path, which a stage that fails closed never reaches.
    async fn never(_: Request) -> Response {
        panic!("the stage let the request through")
    }

    #[tokio::test]
    async fn every_stage_fails_closed_without_what_it_builds_on() {
        let auth = auth_off();
        let internal = StatusCode::INTERNAL_SERVER_ERROR;
        // No state: the path was assembled without its first stage.
        assert_eq!(
            auth::authenticate(&auth, post(), never).await.status(),
            internal
        );
        assert_eq!(
            jsonrpc_guard::guard(BodyLimit(1024), post(), never)
                .await
                .status(),
            internal
        );
        assert_eq!(
            auth::authorize(&auth, post(), never).await.status(),
            internal
        );

        // A state, but nobody authenticated: no grant is no scope, no principal no limits and
        // no session.
        let state = fresh_state();
        assert_eq!(
            auth::authorize(&auth, unauthenticated(state.clone()), never)
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            CallerLimits::default()
                .within(&state, unauthenticated(state.clone()), never)
                .await
                .status(),
            internal
        );
        let folder = tempfile::tempdir().expect("folder");
        let url = format!("sqlite://{}", folder.path().join("gate.db").display());
        let store = SqlStore::connect(&url, &[7; 32]).await.expect("store");
        let gate = SessionGate {
            store: Arc::new(store),
            ttl: Duration::from_secs(60),
            local: Arc::new(LocalSessionManager::default()),
            relays_answers: false,
        };
        assert_eq!(
            session_gate::gate(&gate, unauthenticated(state), never)
                .await
                .status(),
            internal
        );
    }
}
