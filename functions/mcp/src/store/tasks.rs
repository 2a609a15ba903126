//! Task records: the durable state of a task-augmented tool call (SEP-2663), so that
//! `tasks/get`, `tasks/update` and `tasks/cancel` work on any instance and the work itself
//! can run in another invocation.
//!
//! Each record belongs to one principal and is keyed by it: a task id of another principal
//! finds nothing, exactly like an unknown one. Backends keep the record as opaque JSON text
//! with a version and only create it, load it and compare-and-set it ([`TaskRecords`]); what
//! the text means and how a task moves between states lives once, in [`crate::tasks`], and
//! the shared store suite runs the contract on each backend.

use async_trait::async_trait;

use super::StoreError;
use crate::principal::Principal;

/// The largest task record kept, in bytes: its arguments, pending questions, answers and
/// result together, well inside DynamoDB's 400 KB item limit.
pub const MAX_TASK_BYTES: usize = 256 * 1024;

/// A task record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task as JSON text (see [`crate::tasks`]).
    pub body: String,
    /// 1 when created, one more on every replacement: the compare-and-set token.
    pub version: u64,
}

/// Checks a record body against [`MAX_TASK_BYTES`] before any backend writes it.
pub fn checked_body(body: &str) -> Result<(), StoreError> {
    if body.len() > MAX_TASK_BYTES {
        return Err(StoreError::DocumentTooLarge(body.len()));
    }
    Ok(())
}

/// Task records in every backend.
///
/// **Invariant:** no method reads or writes a record of a principal other than the one
/// passed in; an expired record (`expires_at`, epoch ms, in the past) is never returned.
#[async_trait]
pub trait TaskRecords: Send + Sync + 'static {
    /// Creates task `id` of `principal` at version 1, kept until `expires_at`; `false` (and
    /// nothing written) when a live record of that id exists.
    async fn create_task(
        &self,
        principal: &Principal,
        id: &str,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError>;

    /// The live record, read consistently (a task created or changed on another instance
    /// is seen at once).
    async fn load_task(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Option<TaskRecord>, StoreError>;

    /// Replaces the body of a live record that is still at `version`, moving it to
    /// `version + 1` and keeping it until `expires_at`; `false` (and nothing written) when the
    /// record changed meanwhile, expired or is gone.
    async fn replace_task(
        &self,
        principal: &Principal,
        id: &str,
        version: u64,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
}
