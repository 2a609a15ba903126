//! What the service tells its operators: metrics, request and audit logs.
//!
//! One set of metric names serves both hosts ([`metrics::Metrics`]): `mcp-server` exposes
//! them as Prometheus text on its own listener (`MCP_METRICS_BIND`, loopback by default) and
//! `mcp-lambda` writes the same names as CloudWatch Embedded Metric Format lines
//! ([`emf`]) at the end of every invocation.
//!
//! Where each figure is taken:
//! - `crate::http::observe` (outermost layer of `/mcp`): requests, latency, errors, tool calls,
//!   auth failures and rate-limited requests, from what the later stages set in the request's
//!   [`RequestState`](crate::http::state::RequestState); it also writes the one log line per
//!   request and sets `x-request-id`.
//! - [`metered`]: every store and file-store operation, timed; state and file mutations also
//!   get an `audit` log line.
//! - the readiness probe and the hosts: active legacy sessions.
//!
//! Labels are bounded: methods, tools, reasons and codes come from fixed lists or from the
//! server's own registry, never verbatim from a caller, so no client can grow the series.

pub mod emf;
pub mod metered;
pub mod metrics;

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
