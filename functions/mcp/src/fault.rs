//! The one rule for what a caller hears when a store fails.
//!
//! A refusal of the caller's own input (a key too long, a version conflict, a bad cursor) is
//! told as it is: its message says how to fix the call. Anything else (a backend down, a
//! corrupt row) is logged here with its cause and told only as "unavailable, retry", so no
//! backend detail reaches a caller. Tools turn a [`Fault`] into an `isError` result, the
//! other handlers into a JSON-RPC error ([`From<Fault>`] for [`ErrorData`]).

use std::fmt;

use rmcp::ErrorData;

use crate::{blob::BlobError, store::StoreError};

/// An error that knows whether the caller's input caused it.
pub trait Blame: fmt::Display {
    /// True when the message is safe and useful to show the caller.
    fn is_caller_error(&self) -> bool;
}

impl Blame for StoreError {
    fn is_caller_error(&self) -> bool {
        StoreError::is_caller_error(self)
    }
}

impl Blame for BlobError {
    fn is_caller_error(&self) -> bool {
        BlobError::is_caller_error(self)
    }
}

/// A failure as the caller may see it.
#[derive(Debug)]
pub enum Fault<E> {
    /// The caller's own mistake; its message says how to fix the call.
    Caller(E),
    /// The named dependency failed; the cause is in the log only.
    Unavailable(&'static str),
}

impl<E: Blame> Fault<E> {
    /// Sorts `error` of `dependency` ("state store", "file store", …): a caller error is kept
    /// to be shown; anything else is logged with its cause and kept only as the dependency's
    /// name.
    pub fn sort(dependency: &'static str, error: E) -> Self {
        if error.is_caller_error() {
            return Self::Caller(error);
        }
        tracing::error!(%error, dependency, "{dependency} call failed");
        Self::Unavailable(dependency)
    }
}

impl<E: fmt::Display> fmt::Display for Fault<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Caller(error) => error.fmt(f),
            Self::Unavailable(dependency) => write!(
                f,
                "the {dependency} is unavailable right now; retry shortly (details are in the \
                 server log)"
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Fault<E> {}

impl<E: fmt::Display> From<Fault<E>> for ErrorData {
    /// Invalid params for the caller's mistake, an internal error for the rest.
    fn from(fault: Fault<E>) -> Self {
        match fault {
            Fault::Caller(_) => ErrorData::invalid_params(fault.to_string(), None),
            Fault::Unavailable(_) => ErrorData::internal_error(fault.to_string(), None),
        }
    }
}

/// A failure of `dependency` as the JSON-RPC error a caller gets (see [`Fault::sort`]).
pub fn rpc_error<E: Blame>(dependency: &'static str, error: E) -> ErrorData {
    Fault::sort(dependency, error).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_error_is_told_and_a_backend_failure_is_not() {
        let refused = rpc_error("state store", StoreError::BadCursor);
        assert_eq!(refused.code, ErrorData::invalid_params("", None).code);
        assert_eq!(refused.message, StoreError::BadCursor.to_string());

        let secret = "connection to 10.0.0.7 refused";
        let down = rpc_error(
            "task store",
            StoreError::backend("PostgreSQL", "query", true, secret),
        );
        assert_eq!(down.code, ErrorData::internal_error("", None).code);
        assert_eq!(
            down.message,
            "the task store is unavailable right now; retry shortly (details are in the server log)"
        );
        assert!(!down.message.contains(secret));
    }
}
