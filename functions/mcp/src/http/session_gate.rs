//! Checks a request's `Mcp-Session-Id` against the store before rmcp sees it.
//!
//! A session that is unknown, expired, deleted or owned by another principal
//! answers 404 with JSON-RPC error -32001, the same for all four so a caller
//! cannot learn that someone else's session exists. A live session has its
//! expiry slid forward lazily: at most one write per refresh interval, so a
//! warm request costs exactly one store read. The record travels on to
//! [`DurableSessions`](crate::session::DurableSessions) in a [`RequestScope`].
//!
//! Where answers are relayed (a streaming Lambda), a client's answer to a server request in
//! a live session goes to the store's mailbox here, without waking rmcp's copy of the
//! session (see [`crate::relay`]).
//!
//! A request in a session whose answer is dropped before it ended (the client closed the
//! stream) is cancelled as if the client had sent `notifications/cancelled`: rmcp cancels
//! stateless requests whose stream goes away, not session ones.
//!
//! A `DELETE` that ends a session answers 204 No Content: the session is closed and its
//! record deleted before the answer leaves. rmcp answers 202 Accepted ("taken, not done
//! yet"), which clients such as the official Python SDK report as a failed termination.
//!
//! An `initialize` whose session could not be created (see [`crate::session`]) is answered
//! with the reason, never with a session id: 429 (-32000) when the caller already holds
//! `MCP_MAX_SESSIONS_PER_CALLER` live sessions, 413 (-32602) for `initialize` params over
//! [`MAX_INIT_PARAMS_BYTES`](crate::store::MAX_INIT_PARAMS_BYTES), 503 (-32603) when the store
//! failed; the session rmcp opened in this process is closed again.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    http::{Method, StatusCode, header},
    response::Response,
};
use chrono::Utc;
use futures::StreamExt;
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::streamable_http_server::session::{SessionManager, local::LocalSessionManager},
};
use serde_json::{Value, json};

use super::{
    jsonrpc_error, jsonrpc_error_for, jsonrpc_guard::RpcMessage, state::RequestState,
    store_unavailable,
};
use crate::{
    codes::{INTERNAL_ERROR, INVALID_PARAMS, SESSION_NOT_FOUND, TOO_MANY_SESSIONS},
    principal::Principal,
    relay,
    session::RequestScope,
    store::{SessionRecord, Store, StoreError},
};

/// Longest session id looked up; rmcp issues UUIDs, so anything longer is not ours.
const MAX_SESSION_ID_BYTES: usize = 128;

/// What the gate needs: the store, the sliding lifetime and the in-memory sessions.
#[derive(Clone)]
pub struct SessionGate {
    pub store: Arc<dyn Store>,
    pub ttl: Duration,
    /// Live sessions of this process, closed here when the store says they are gone.
    pub local: Arc<LocalSessionManager>,
    /// Whether a client's answer to a server request goes to the mailbox (see
    /// [`crate::relay`]) instead of to this process's copy of the session.
    pub relays_answers: bool,
}

impl SessionGate {
    /// How stale `last_seen_at` may get before the expiry is slid forward.
    fn refresh_after(&self) -> Duration {
        (self.ttl / 10).min(Duration::from_secs(3600))
    }

    /// What the store says of session `id` for `principal`.
    async fn check(&self, id: &str, principal: &Principal) -> Result<Lookup, StoreError> {
        let plausible = !id.is_empty()
            && id.len() <= MAX_SESSION_ID_BYTES
            && id.bytes().all(|b| b.is_ascii_graphic());
        if !plausible {
            return Ok(Lookup::Gone);
        }
        Ok(match self.store.load_session(id).await? {
            Some(record) if &record.principal == principal => Lookup::Live(record),
            Some(_) => Lookup::Foreign,
            None => Lookup::Gone,
        })
    }

    async fn slide_expiry(&self, record: &SessionRecord) {
        let now = Utc::now();
        let stale = (now - record.last_seen_at)
            .to_std()
            .is_ok_and(|age| age >= self.refresh_after());
        if stale
            && let Err(error) = self
                .store
                .touch_session(&record.principal, &record.id, now, now + self.ttl)
                .await
        {
            // The session still works; it just may expire on its old schedule.
            tracing::warn!(%error, session = %record.id, "could not slide session expiry");
        }
    }
}

/// The three answers a session lookup can have.
enum Lookup {
    Live(SessionRecord),
    /// Exists but belongs to another principal: answered exactly like [`Lookup::Gone`].
    Foreign,
    /// Unknown, expired or deleted.
    Gone,
}

fn session_not_found() -> Response {
    jsonrpc_error(
        StatusCode::NOT_FOUND,
        SESSION_NOT_FOUND,
        "Session not found",
    )
}

/// The answer to an `initialize` (request `id`) whose session rmcp opened in `response` but
/// the store did not create: the in-memory session is closed and the reason answered.
async fn not_created(
    gate: &SessionGate,
    response: Response,
    id: Option<&Value>,
    error: StoreError,
) -> Response {
    if let Some(session) = response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        && let Err(error) = gate.local.close_session(&session.to_owned().into()).await
    {
        tracing::warn!(%error, "closing a session that was not created failed");
    }
    let message = format!("Session not created: {error}");
    match error {
        StoreError::TooManySessions { .. } => {
            tracing::info!(%error, "initialize refused");
            jsonrpc_error_for(
                id,
                StatusCode::TOO_MANY_REQUESTS,
                TOO_MANY_SESSIONS,
                &message,
            )
        }
        StoreError::InitParamsTooLarge(_) => {
            tracing::info!(%error, "initialize refused");
            jsonrpc_error_for(id, StatusCode::PAYLOAD_TOO_LARGE, INVALID_PARAMS, &message)
        }
        error => {
            tracing::error!(%error, "a session could not be stored");
            jsonrpc_error_for(
                id,
                StatusCode::SERVICE_UNAVAILABLE,
                INTERNAL_ERROR,
                "Session not created: the session store is unavailable; retry shortly",
            )
        }
    }
}

/// The stage: gate, then serve inside a [`RequestScope`]. A request whose caller is not
/// known is refused.
pub async fn gate<N, F>(gate: &SessionGate, request: Request, next: N) -> Response
where
    N: FnOnce(Request) -> F,
    F: Future<Output = Response>,
{
    let Some(state) = RequestState::of(request.extensions()).cloned() else {
        return super::out_of_order("the request state");
    };
    let Some(principal) = state.principal().cloned() else {
        return super::out_of_order("a principal");
    };
    let session_id = match request.headers().get("mcp-session-id").map(|v| v.to_str()) {
        None => None,
        Some(Ok(id)) => Some(id.to_owned()),
        Some(Err(_)) => return session_not_found(),
    };
    let session = match session_id {
        None => None,
        Some(id) => match gate.check(&id, &principal).await {
            Ok(Lookup::Live(record)) => {
                gate.slide_expiry(&record).await;
                Some(record)
            }
            Ok(Lookup::Foreign) => return session_not_found(),
            Ok(Lookup::Gone) => {
                // Deleted or expired elsewhere: drop this process's copy too.
                if let Err(error) = gate.local.close_session(&id.into()).await {
                    tracing::warn!(%error, "closing a stale in-memory session failed");
                }
                return session_not_found();
            }
            Err(error) => {
                tracing::error!(%error, "session lookup failed");
                return store_unavailable();
            }
        },
    };
    let message = state.message();
    if let (
        true,
        Some(record),
        Some(RpcMessage {
            answers: Some(answers),
            ..
        }),
    ) = (gate.relays_answers, &session, message)
    {
        return relay::post_answer(
            gate.store.as_ref(),
            &record.id,
            answers,
            request.into_body(),
        )
        .await;
    }
    let ends_session = request.method() == Method::DELETE;
    let request_id = message.and_then(|message| message.id.as_ref());
    let cancel = match (&session, message) {
        (Some(record), Some(RpcMessage { id: Some(id), .. })) => Some(CancelOnDrop {
            sessions: gate.local.clone(),
            session: record.id.clone(),
            request: id.clone(),
            armed: true,
        }),
        _ => None,
    };
    let scope = RequestScope::new(principal, session);
    let refused = scope.not_created();
    let mut response = scope.run(next(request)).await;
    if let Some(error) = refused.take() {
        return not_created(gate, response, request_id, error).await;
    }
    if ends_session && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    match cancel {
        Some(cancel) => cancel.until_answered(response),
        None => response,
    }
}

/// Cancels a session request, unless disarmed, when dropped: while the answer is being
/// prepared, or with its streamed body before that has ended.
struct CancelOnDrop {
    sessions: Arc<LocalSessionManager>,
    session: String,
    request: Value,
    armed: bool,
}

impl CancelOnDrop {
    /// `response`, with this guard riding its body until the body ends if it streams (a JSON
    /// answer is complete already: the request was answered).
    fn until_answered(mut self, response: Response) -> Response {
        let streams = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        if !streams {
            self.armed = false;
            return response;
        }
        let (parts, body) = response.into_parts();
        let mut guard = Some(self);
        let end = futures::stream::poll_fn(move |_| {
            if let Some(mut guard) = guard.take() {
                guard.armed = false;
            }
            std::task::Poll::Ready(None)
        });
        Response::from_parts(parts, Body::from_stream(body.into_data_stream().chain(end)))
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::info!(session = %self.session, "the client closed the stream of a session request: cancelling it");
        let Ok(cancelled) = serde_json::from_value::<ClientJsonRpcMessage>(json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": self.request, "reason": "the client closed the stream" },
        })) else {
            return;
        };
        let (sessions, session) = (self.sessions.clone(), self.session.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // The session may be gone already; then so is the request.
                let _ = sessions.accept_message(&session.into(), cancelled).await;
            });
        }
    }
}
