//! Per-principal change feeds: how a change made on one instance reaches a stream held
//! open on another.
//!
//! A write that listeners care about (a `file_write`) appends [`Change`]s to its caller's
//! feed; a `subscriptions/listen` stream polls the feed and announces what is new. Each
//! principal's feed is one small record, the last [`FEED_CAPACITY`] events and the
//! position of the newest, so a poll is one read of one record wherever the stream runs.
//!
//! Positions only grow: an append takes `max(head + 1, now in µs)` and is written with
//! compare-and-set on the head it read, so two instances appending at once are put in one
//! order and a reader never sees a later position before an earlier one. Taking the clock
//! into the position keeps it growing even after an idle feed has expired and gone.
//! A reader that fell behind by more than the capacity is told so ([`FeedRead::gap`]), and
//! must tell its client to list again.
//!
//! Backends only load and compare-and-set the record ([`FeedRecords`]); the rules above live
//! once, in [`append`] and [`read_after`], and the shared store suite runs them on each.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{StoreError, now_millis, ttl_millis};
use crate::principal::Principal;

/// Events kept per principal; older ones are dropped at the next append.
pub const FEED_CAPACITY: usize = 64;

/// How long an idle feed is kept; each append starts the period again.
pub const FEED_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How often [`append`] goes round when other appends of the same caller keep winning.
const MAX_APPEND_ATTEMPTS: usize = 16;

/// Something a listen stream may announce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The caller's resource list changed (a file was created).
    ResourceListChanged,
    /// The resource at `uri` changed.
    ResourceUpdated { uri: String },
    /// The tool list changed.
    ToolListChanged,
    /// The prompt list changed.
    PromptListChanged,
}

/// One event of a feed: a change and its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEvent {
    pub position: i64,
    #[serde(flatten)]
    pub change: Change,
}

/// A principal's feed as stored: the newest position, the newest position dropped to keep
/// the capacity, and the retained events, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedLog {
    pub head: i64,
    #[serde(default)]
    pub dropped_through: i64,
    pub events: Vec<FeedEvent>,
}

impl FeedLog {
    /// The stored form (JSON text); backends keep `head` beside it for compare-and-set.
    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// A log from its stored form.
    pub fn from_json(json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("change feed: {e}")))
    }

    /// When a log written now may go (epoch ms).
    pub fn expires_at_millis() -> i64 {
        now_millis().saturating_add(ttl_millis(FEED_RETENTION))
    }
}

/// What a reader gets from [`read_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRead {
    /// Events after the reader's position, oldest first.
    pub events: Vec<FeedEvent>,
    /// The position to read after next time.
    pub head: i64,
    /// True when events after the reader's position were dropped before it read them.
    pub gap: bool,
}

/// The storage half of a feed, one record per principal, implemented by each backend.
#[async_trait]
pub trait FeedRecords: Send + Sync + 'static {
    /// The principal's log, if it has one (expired logs may still be returned: their
    /// positions stay valid).
    async fn load_feed(&self, principal: &Principal) -> Result<Option<FeedLog>, StoreError>;

    /// Writes `log` if the stored head is still `expected_head` (`None`: no log yet);
    /// returns false, writing nothing, when it is not.
    async fn save_feed(
        &self,
        principal: &Principal,
        log: &FeedLog,
        expected_head: Option<i64>,
    ) -> Result<bool, StoreError>;
}

/// Appends `changes` to the principal's feed in one write; returns the new head.
pub async fn append(
    records: &dyn FeedRecords,
    principal: &Principal,
    changes: &[Change],
) -> Result<i64, StoreError> {
    for _ in 0..MAX_APPEND_ATTEMPTS {
        let current = records.load_feed(principal).await?;
        let expected_head = current.as_ref().map(|log| log.head);
        let mut log = current.unwrap_or_default();
        for change in changes {
            let position = (log.head + 1).max(Utc::now().timestamp_micros());
            log.head = position;
            log.events.push(FeedEvent {
                position,
                change: change.clone(),
            });
        }
        let excess = log.events.len().saturating_sub(FEED_CAPACITY);
        if let Some(newest_dropped) = log.events.drain(..excess).next_back() {
            log.dropped_through = newest_dropped.position;
        }
        if records.save_feed(principal, &log, expected_head).await? {
            return Ok(log.head);
        }
    }
    Err(StoreError::Contended("change feed"))
}

/// The newest position of the principal's feed (0 when it has none): where a new reader starts.
pub async fn head(records: &dyn FeedRecords, principal: &Principal) -> Result<i64, StoreError> {
    Ok(records
        .load_feed(principal)
        .await?
        .map_or(0, |log| log.head))
}

/// The events after `after`: one read.
pub async fn read_after(
    records: &dyn FeedRecords,
    principal: &Principal,
    after: i64,
) -> Result<FeedRead, StoreError> {
    let log = records.load_feed(principal).await?.unwrap_or_default();
    let events: Vec<FeedEvent> = log
        .events
        .into_iter()
        .filter(|event| event.position > after)
        .collect();
    Ok(FeedRead {
        events,
        head: log.head.max(after),
        gap: after < log.dropped_through,
    })
}
