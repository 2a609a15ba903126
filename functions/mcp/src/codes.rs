//! Every JSON-RPC error code this service answers with, in one place: the JSON-RPC 2.0 codes
//! (rmcp's own constants, so ours and rmcp's answers agree) and the implementation-defined
//! server errors (-32000 to -32099) the product adds.

use rmcp::model::ErrorCode;

/// The body is not valid JSON.
pub const PARSE_ERROR: ErrorCode = ErrorCode::PARSE_ERROR;
/// The body is not one valid JSON-RPC request (a batch, a wrong `jsonrpc`, an oversize or late
/// body, an unusable principal).
pub const INVALID_REQUEST: ErrorCode = ErrorCode::INVALID_REQUEST;
/// A method's parameters are wrong (an unknown tool, `initialize` params over the limit).
pub const INVALID_PARAMS: ErrorCode = ErrorCode::INVALID_PARAMS;
/// Something on our side failed (a store that did not answer, a stage reached out of order).
pub const INTERNAL_ERROR: ErrorCode = ErrorCode::INTERNAL_ERROR;

/// The caller already holds as many sessions as it may (`MCP_MAX_SESSIONS_PER_CALLER`).
pub const TOO_MANY_SESSIONS: ErrorCode = ErrorCode(-32000);
/// An unknown, expired or foreign session, as the reference SDKs answer it.
pub const SESSION_NOT_FOUND: ErrorCode = ErrorCode(-32001);
/// A server request the client left unanswered, as the SDKs' "request timeout" (the same
/// number as [`SESSION_NOT_FOUND`], in the other direction: it answers a server request).
pub const NO_ANSWER: ErrorCode = ErrorCode(-32001);
/// A rate limit, the in-flight cap or a source's budget of failed authentications refused
/// the request (with `Retry-After`).
pub const RATE_LIMITED: ErrorCode = ErrorCode(-32029);
