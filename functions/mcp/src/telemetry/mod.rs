//! What the service tells its operators: metrics, request and audit logs.
//!
//! One set of metric names serves both hosts ([`metrics::Metrics`]): `mcp-server` exposes
//! them as Prometheus text on its own listener (`MCP_METRICS_BIND`, loopback by default) and
//! `mcp-lambda` writes the same names as CloudWatch Embedded Metric Format lines
//! ([`emf`]) at the end of every invocation.
//!
//! Where each figure is taken:
//! - `crate::http::observe` (outermost layer of `/mcp`): requests, latency, errors, tool calls,
//!   auth failures and rate-limited requests, from what the inner layers noted in
//!   [`RequestFacts`]; it also writes the one log line per request and sets `x-request-id`.
//! - [`metered`]: every store and file-store operation, timed; state and file mutations also
//!   get an `audit` log line.
//! - the readiness probe and the hosts: active legacy sessions.
//!
//! Labels are bounded: methods, tools, reasons and codes come from fixed lists or from the
//! server's own registry, never verbatim from a caller, so no client can grow the series.

pub mod emf;
pub mod metered;
pub mod metrics;

use std::sync::{Arc, Mutex};

use axum::http::Extensions;

/// Facts about one `/mcp` request that the inner layers learn and the outer
/// `observe` layer reports: shared through the request extensions.
#[derive(Debug, Default)]
pub struct RequestFacts {
    inner: Mutex<Facts>,
}

/// The fields of [`RequestFacts`].
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// The caller's subject, once authenticated.
    pub principal: Option<String>,
    /// The JSON-RPC method of a POSTed message.
    pub method: Option<String>,
    /// `params.name` of a `tools/call`.
    pub tool: Option<String>,
    /// How a tool call ended (see [`ToolOutcome`]).
    pub tool_outcome: Option<ToolOutcome>,
    /// Why authentication or authorization refused the request.
    pub auth_failure: Option<&'static str>,
    /// The rate limiter refused the request.
    pub rate_limited: bool,
}

/// How a `tools/call` ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    Ok,
    /// The tool answered with `isError: true` (bad arguments, a conflict, a missing document).
    ToolError,
    /// The tool did not finish within `MCP_TOOL_TIMEOUT_SECS`.
    Timeout,
    /// The call was cancelled before the tool finished: the client closed its stream or
    /// sent `notifications/cancelled`, or the server is stopping.
    Cancelled,
    /// The call was refused with a JSON-RPC error (arguments not matching the schema).
    RpcError,
    /// No such tool: a JSON-RPC error.
    Unknown,
}

impl ToolOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::RpcError => "rpc_error",
            Self::Unknown => "unknown_tool",
        }
    }
}

impl RequestFacts {
    /// Updates the facts of the request these extensions belong to, if it is observed.
    pub fn note(extensions: &Extensions, update: impl FnOnce(&mut Facts)) {
        if let Some(facts) = extensions.get::<Arc<RequestFacts>>() {
            facts.update(update);
        }
    }

    /// Updates these facts.
    pub fn update(&self, update: impl FnOnce(&mut Facts)) {
        update(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of what was noted.
    pub fn snapshot(&self) -> Facts {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
