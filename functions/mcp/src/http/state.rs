//! What one `/mcp` request learns on its way through the [`pipeline`](super::pipeline), in
//! one place.
//!
//! The first stage creates the [`RequestState`] and puts it, behind an `Arc`, in the request's
//! extensions, where rmcp hands it on to the handler. Each later slot is set once, by the
//! stage that learns it, and read by every stage after it, by the tools and by the request
//! log: nothing is copied into a second place or parsed twice.
//!
//! | slot | set by |
//! |---|---|
//! | request id, trace id, protocol version, span | the request log stage, at creation |
//! | principal, grant | authentication (or the host that vouched for the caller) |
//! | message (method, id, tool) | the JSON-RPC guard, from the one parse of the body |
//! | refusal | the stage that refused (authentication, limits, scope check) |
//! | answer (tool outcome, JSON-RPC error code) | the handler, as it answers a `tools/call` |

use std::sync::{Arc, OnceLock};

use axum::http::Extensions;

use super::{auth::Grant, jsonrpc_guard::RpcMessage};
use crate::{principal::Principal, telemetry::ToolOutcome};

/// Everything known of one `/mcp` request; see the module documentation.
#[derive(Debug)]
pub struct RequestState {
    /// The host's request id, a well-formed `x-request-id` from the caller, or a fresh UUID.
    pub request_id: String,
    /// The trace id of a `traceparent` or `X-Amzn-Trace-Id` header, or the host's; may be empty.
    pub trace_id: String,
    /// A well-formed `MCP-Protocol-Version` header, or empty.
    pub protocol_version: String,
    /// Every log line of the request runs in it; work in other tasks (rmcp's handlers) enters
    /// it again.
    pub span: tracing::Span,
    principal: OnceLock<Principal>,
    grant: OnceLock<Grant>,
    message: OnceLock<RpcMessage>,
    refusal: OnceLock<Refusal>,
    answer: OnceLock<Answer>,
}

/// Why a stage refused the request, as the request log and the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Authentication or the scope check refused, for this reason (an `AuthError::reason`).
    Unauthorized(&'static str),
    /// A rate limit or the in-flight cap refused.
    RateLimited,
}

/// How the handler answered a `tools/call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub tool_outcome: ToolOutcome,
    /// The JSON-RPC error code of the answer, if it was an error.
    pub rpc_error: Option<i64>,
}

impl RequestState {
    pub fn new(
        request_id: String,
        trace_id: String,
        protocol_version: String,
        span: tracing::Span,
    ) -> Self {
        Self {
            request_id,
            trace_id,
            protocol_version,
            span,
            principal: OnceLock::new(),
            grant: OnceLock::new(),
            message: OnceLock::new(),
            refusal: OnceLock::new(),
            answer: OnceLock::new(),
        }
    }

    /// The state of the request these extensions belong to (rmcp hands the handler the
    /// request's `http::request::Parts`, extensions included).
    pub fn of(extensions: &Extensions) -> Option<&Arc<Self>> {
        extensions.get::<Arc<Self>>()
    }

    /// The caller, once authenticated.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.get()
    }

    /// What the caller may do, once authenticated.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.get()
    }

    /// The POSTed JSON-RPC message, once the guard has read it.
    pub fn message(&self) -> Option<&RpcMessage> {
        self.message.get()
    }

    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal.get().copied()
    }

    pub fn answer(&self) -> Option<Answer> {
        self.answer.get().copied()
    }

    /// Sets who calls and what they may do. In the service only authentication calls this, once.
    pub fn authenticated(&self, principal: Principal, grant: Grant) {
        set_once(&self.principal, principal, "principal");
        set_once(&self.grant, grant, "grant");
    }

    pub(super) fn parsed(&self, message: RpcMessage) {
        set_once(&self.message, message, "message");
    }

    pub(super) fn refused(&self, refusal: Refusal) {
        set_once(&self.refusal, refusal, "refusal");
    }

    /// Records how the handler answered a `tools/call`, so the request log need not read the
    /// answer again.
    pub fn answered(&self, answer: Answer) {
        set_once(&self.answer, answer, "answer");
    }
}

/// Sets a slot; a second write is a bug in the stage order, kept out of release builds' way
/// (the first value stands).
fn set_once<T: std::fmt::Debug>(slot: &OnceLock<T>, value: T, name: &str) {
    let refused = slot.set(value);
    debug_assert!(refused.is_ok(), "request state slot `{name}` set twice");
}
