//! The mailbox of legacy server-to-client requests: how a client's answer, posted to any
//! instance, reaches the instance whose tool call is waiting for it.
//!
//! On the 2025 wire a tool may ask the client something (sampling, elicitation) on the
//! stream of the call; the client answers with a new POST. On Lambda the instance holding
//! the call is busy streaming it, so the answer lands on another one. The waiting instance
//! opens a record for the request before the client can see it; the instance that receives
//! the answer writes it into that record, only if it is still open and unanswered; the
//! waiting instance reads the record until the answer is there (see [`crate::relay`]).
//!
//! Records are keyed by session and request id. Sessions are owned by one principal and the
//! session gate checks the owner first, so an answer can only reach its own caller's call.

use std::time::Duration;

use async_trait::async_trait;

use super::{StoreError, now_millis, ttl_millis};

/// The largest answer the mailbox keeps: well inside DynamoDB's 400 KB item limit.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Open requests awaiting the client's answer, in every backend.
#[async_trait]
pub trait MailboxRecords: Send + Sync + 'static {
    /// Opens request `request` of `session` (again, if a record of that id is left over),
    /// until `expires_at` (epoch ms).
    async fn open_request(
        &self,
        session: &str,
        request: &str,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Puts the client's answer into an open, unanswered, unexpired request; `false` (and
    /// nothing written) when there is none.
    async fn post_answer(
        &self,
        session: &str,
        request: &str,
        answer: &str,
    ) -> Result<bool, StoreError>;

    /// The answer, once posted to a request that has not expired.
    async fn load_answer(&self, session: &str, request: &str)
    -> Result<Option<String>, StoreError>;

    /// Forgets the request, answered or not.
    async fn close_request(&self, session: &str, request: &str) -> Result<(), StoreError>;
}

/// When a request opened now for `wait` expires (epoch ms).
pub fn expires_at_millis(wait: Duration) -> i64 {
    now_millis().saturating_add(ttl_millis(wait))
}
