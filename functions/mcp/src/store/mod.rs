//! Durable state behind small traits, so every host and backend share one contract.
//!
//! - [`StateStore`]: versioned JSON documents per principal with compare-and-set,
//!   optional expiry and cursor pagination (the `state_*` tools).
//! - [`SessionRecords`]: the legacy-wire session records that let any process
//!   serve any session (see [`crate::session`]).
//! - [`RateBuckets`]: per-caller request budgets shared by every instance.
//! - [`feed::FeedRecords`]: per-caller change feeds that carry notifications to
//!   streams held open on other instances (see [`feed`]).
//! - [`mailbox::MailboxRecords`]: legacy server-to-client requests waiting for the
//!   client's answer, which may arrive on another instance (see [`mailbox`]).
//! - [`tasks::TaskRecords`]: the durable state of task-augmented tool calls, so any
//!   instance can answer for a task (see [`tasks`]).
//!
//! Backends: [`sql::SqlStore`] over SQLite (the `cargo run` default) or PostgreSQL,
//! and [`dynamo::DynamoStore`] over one DynamoDB table (Lambda).
//! Every backend passes the one shared suite in `tests/store_suite.rs`.

pub mod cursor;
pub mod dynamo;
pub mod feed;
pub mod mailbox;
pub mod sql;
pub mod tasks;

use std::{borrow::Cow, collections::BTreeSet, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::{
    names::{self, NameError},
    principal::Principal,
};

/// Largest serialized document accepted by [`StateStore::put`], in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest page [`StateStore::list`] returns, whatever the caller asks for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The most document bytes (values as JSON) one page carries; a page reaching it ends early
/// and its cursor carries on. A page always holds at least one document.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;
/// Largest `initialize` params a session keeps, serialized, in bytes: a client's capabilities
/// and name fit many times over, and the record stays far below DynamoDB's item limit.
pub const MAX_INIT_PARAMS_BYTES: usize = 64 * 1024;
/// Live legacy-wire sessions one principal may hold unless configured otherwise
/// (`MCP_MAX_SESSIONS_PER_CALLER`).
pub const DEFAULT_MAX_SESSIONS_PER_CALLER: usize = 32;
/// The most `MCP_MAX_SESSIONS_PER_CALLER` may allow: DynamoDB keeps a principal's live
/// sessions in one item, pruned in one update expression, both of which must stay small.
pub const MAX_SESSIONS_PER_CALLER_LIMIT: usize = 256;

/// One stored document and its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub key: String,
    /// The stored JSON document, as written.
    pub value: Value,
    /// Starts at 1 and grows by one on every write; the compare-and-set token.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
    /// When the document stops being visible; `None` keeps it until deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a write requires of the current document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// Write only if the key holds no live document.
    Absent,
    /// Write only if the live document has exactly this version.
    Version(u64),
}

impl Expect {
    /// The tools' `expected_version` argument: absent means any, 0 means absent.
    pub fn from_expected_version(expected: Option<u64>) -> Self {
        match expected {
            None => Self::Any,
            Some(0) => Self::Absent,
            Some(version) => Self::Version(version),
        }
    }
}

/// A write to [`StateStore::put`].
#[derive(Debug, Clone)]
pub struct Put<'a> {
    pub key: &'a str,
    pub value: &'a Value,
    pub expect: Expect,
    /// Expire the document this long after the write.
    pub ttl: Option<Duration>,
}

impl<'a> Put<'a> {
    /// The write as stored: the key in its stored form ([`checked_key`]) and the serialized
    /// document, both checked against the limits.
    pub fn checked(&self) -> Result<(Cow<'a, str>, String), StoreError> {
        let key = checked_key(self.key)?;
        let json =
            serde_json::to_string(self.value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if json.len() > MAX_DOCUMENT_BYTES {
            return Err(StoreError::DocumentTooLarge(json.len()));
        }
        Ok((key, json))
    }
}

/// Now, in the epoch milliseconds every backend stores.
pub(crate) fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// A stored epoch-milliseconds value as a time; out of range means the row is corrupt.
pub(crate) fn time_of(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {millis} is out of range")))
}

/// A lifetime in milliseconds, saturating instead of wrapping.
pub(crate) fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// A page of [`StateStore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Document>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl Page {
    /// A page from up to `limit + 1` documents in key order: the extra one only
    /// says another page follows, and the cursor resumes after the last kept key. The page
    /// also ends before [`MAX_PAGE_BYTES`] of document values, so one call's answer stays
    /// bounded however large the documents are.
    pub fn from_lookahead(
        mut items: Vec<Document>,
        limit: usize,
        cursors: &cursor::CursorCodec,
        principal: &Principal,
        prefix: &str,
    ) -> Self {
        let mut bytes = 0;
        let within = items
            .iter()
            .take(limit)
            .position(|item| {
                bytes += serde_json::to_vec(&item.value).map_or(0, |json| json.len());
                bytes > MAX_PAGE_BYTES
            })
            .map_or(limit, |over| over.max(1));
        let next_cursor = if items.len() > within {
            items.truncate(within);
            items
                .last()
                .map(|last| cursors.seal(principal, prefix, &last.key))
        } else {
            None
        };
        Self { items, next_cursor }
    }
}

/// A legacy-wire session as persisted: enough to restore it in any process.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    /// The principal that created the session; no other principal may use it.
    pub principal: Principal,
    /// The client's `initialize` params, replayed when a process restores the session.
    pub init_params: Value,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl SessionRecord {
    /// The `initialize` params as stored, refused over [`MAX_INIT_PARAMS_BYTES`].
    pub fn checked_init_params(&self) -> Result<String, StoreError> {
        let json = self.init_params.to_string();
        if json.len() > MAX_INIT_PARAMS_BYTES {
            return Err(StoreError::InitParamsTooLarge(json.len()));
        }
        Ok(json)
    }
}

/// What went wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {0} bytes; at most {MAX_KEY_BYTES} are allowed")]
    KeyTooLong(usize),
    #[error("key contains a control character")]
    KeyControlCharacter,
    /// The key breaks the spelling rule of [`crate::names`].
    #[error("key {0}")]
    KeyName(NameError),
    /// A listing prefix breaks the spelling rule of [`crate::names`]: it could match no key.
    #[error("prefix {0}")]
    PrefixName(NameError),
    #[error("document is {0} bytes when serialized; at most {MAX_DOCUMENT_BYTES} are allowed")]
    DocumentTooLarge(usize),
    #[error("version conflict on `{key}`: expected {expected}, current is {}", describe_version(*.current))]
    VersionConflict {
        key: String,
        expected: String,
        current: Option<u64>,
    },
    #[error("the cursor is not valid for this listing; start again without a cursor")]
    BadCursor,
    #[error(
        "initialize params are {0} bytes when serialized; a session keeps at most \
         {MAX_INIT_PARAMS_BYTES}"
    )]
    InitParamsTooLarge(usize),
    /// The principal holds `limit` live sessions already; nothing was stored.
    #[error(
        "this caller already has {limit} open sessions, the most allowed; end one it no longer \
         needs (HTTP DELETE with its Mcp-Session-Id) or wait for one to expire"
    )]
    TooManySessions { limit: usize },
    #[error("the {0} kept changing under concurrent writes; retry")]
    Contended(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported store URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The backend failed; the cause is for the log, never for the caller.
    #[error("{backend} {operation} failed: {source}")]
    Backend {
        /// Which backend ("SQL", "DynamoDB", …).
        backend: &'static str,
        /// What it was asked to do ("query", "GetItem", "migration", …).
        operation: &'static str,
        /// Throttling, a transient fault, a timeout or a broken connection: a retry may
        /// succeed.
        retryable: bool,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn describe_version(current: Option<u64>) -> String {
    match current {
        Some(version) => format!("version {version}"),
        None => "absent (no document)".to_owned(),
    }
}

impl StoreError {
    /// A failure of `backend` doing `operation`, caused by `source`.
    pub fn backend(
        backend: &'static str,
        operation: &'static str,
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            backend,
            operation,
            retryable,
            source: source.into(),
        }
    }

    /// The conflict every backend reports when `expect` did not hold; `current` is the live version.
    pub fn version_conflict(key: &str, expect: Expect, current: Option<u64>) -> Self {
        Self::VersionConflict {
            key: key.to_owned(),
            expected: match expect {
                Expect::Any => "any version".to_owned(),
                Expect::Absent => "no document".to_owned(),
                Expect::Version(version) => format!("version {version}"),
            },
            current,
        }
    }

    /// True when the caller's input was at fault, so the message is safe and useful to show.
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            Self::EmptyKey
                | Self::KeyTooLong(_)
                | Self::KeyControlCharacter
                | Self::KeyName(_)
                | Self::PrefixName(_)
                | Self::DocumentTooLarge(_)
                | Self::VersionConflict { .. }
                | Self::BadCursor
                | Self::InitParamsTooLarge(_)
                | Self::TooManySessions { .. }
        )
    }

    /// True when the same call may succeed if retried later: the backend was
    /// throttled, briefly unavailable or too slow, not wrong.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Backend { retryable, .. } => *retryable,
            Self::Contended(_) => true,
            _ => false,
        }
    }
}

/// A document key in the form it is stored and compared in (NFC, see [`crate::names`]),
/// checked against the documented limits; borrowed when `key` is in that form already.
/// Every backend reads and writes documents only under keys from here.
pub fn checked_key(key: &str) -> Result<Cow<'_, str>, StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.chars().any(char::is_control) {
        return Err(StoreError::KeyControlCharacter);
    }
    let key = names::canonical(key).map_err(StoreError::KeyName)?;
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLong(key.len()));
    }
    Ok(key)
}

/// A listing prefix in the form keys are stored in ([`checked_key`]); empty lists every key.
pub fn checked_prefix(prefix: &str) -> Result<Cow<'_, str>, StoreError> {
    names::canonical(prefix).map_err(StoreError::PrefixName)
}

/// Versioned JSON documents, each owned by one principal.
///
/// **Invariant:** no method returns, counts or reveals a document of a
/// principal other than the one passed in.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The live document at `key`, if any.
    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Document>, StoreError>;

    /// Writes a document; fails with [`StoreError::VersionConflict`] when `expect` does not hold.
    async fn put(&self, principal: &Principal, put: Put<'_>) -> Result<Document, StoreError>;

    /// Deletes the live document at `key`; returns whether one was there.
    async fn delete(
        &self,
        principal: &Principal,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError>;

    /// Live documents in key order, optionally only those whose key starts with `prefix`.
    async fn list(
        &self,
        principal: &Principal,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError>;

    /// Cheap round trip proving the backend answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Removes expired documents and sessions; returns how many rows went.
    async fn purge_expired(&self) -> Result<u64, StoreError>;
}

/// Persisted legacy-wire sessions.
///
/// **Invariant:** a principal never holds more than the `limit` given to
/// [`SessionRecords::create_session`] live sessions, whatever the concurrency: each backend
/// counts and inserts in one atomic step (see each for how).
#[async_trait]
pub trait SessionRecords: Send + Sync + 'static {
    /// Creates the record of a new session (or replaces the record of the same id), unless its
    /// `initialize` params are over [`MAX_INIT_PARAMS_BYTES`] ([`StoreError::InitParamsTooLarge`])
    /// or its principal already holds `limit` other live sessions
    /// ([`StoreError::TooManySessions`]); a refusal stores nothing.
    async fn create_session(&self, record: &SessionRecord, limit: usize) -> Result<(), StoreError>;

    /// The record if it exists and has not expired.
    async fn load_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Slides the expiry of `principal`'s session forward.
    async fn touch_session(
        &self,
        principal: &Principal,
        id: &str,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Removes `principal`'s session; removing an unknown one (or another principal's) is not
    /// an error, and does nothing.
    async fn delete_session(&self, principal: &Principal, id: &str) -> Result<(), StoreError>;

    /// Replaces the legacy `resources/subscribe` URIs of a live session (where no instance
    /// keeps the session between requests); `false` when there is no such session.
    async fn set_session_subscriptions(
        &self,
        id: &str,
        uris: &BTreeSet<String>,
    ) -> Result<bool, StoreError>;

    /// The subscribed URIs of a live session (empty if it never subscribed), or `None`
    /// when there is no such session.
    async fn load_session_subscriptions(
        &self,
        id: &str,
    ) -> Result<Option<BTreeSet<String>>, StoreError>;
}

/// Most URIs one session may subscribe to, so its record stays small.
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// Subscribed URIs in their stored form (a JSON array).
pub(crate) fn subscriptions_json(uris: &BTreeSet<String>) -> Result<String, StoreError> {
    serde_json::to_string(uris).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Subscribed URIs from their stored form; nothing stored is none.
pub(crate) fn subscriptions_of(stored: Option<&str>) -> Result<BTreeSet<String>, StoreError> {
    stored.map_or(Ok(BTreeSet::new()), |json| {
        serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("session subscriptions: {e}")))
    })
}

/// One caller's request budget as GCRA (the generic cell rate algorithm, a token bucket
/// kept as a single number): the bucket's state is its theoretical arrival time `tat`.
///
/// A request is admitted when `max(tat, now) + interval <= now + tolerance`; admitting it
/// moves `tat` to that sum. `interval` is 1/rate and `tolerance` burst × interval, so a
/// caller may send `burst` requests at once and `rate` per second after that. All times
/// are Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub interval_us: i64,
    pub tolerance_us: i64,
}

/// What a [`RateBuckets::admit`] call decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the limit; the earliest time a retry can succeed is `retry_after_us` from now.
    Refused {
        retry_after_us: i64,
    },
}

impl Gcra {
    /// The decision for a bucket at `tat` (`None`: never used), and its new `tat` if admitted.
    pub fn step(&self, tat: Option<i64>, now_us: i64) -> (Admission, Option<i64>) {
        let next = tat.unwrap_or(now_us).max(now_us) + self.interval_us;
        let limit = now_us + self.tolerance_us;
        if next <= limit {
            (Admission::Admitted, Some(next))
        } else {
            let retry_after_us = next - limit;
            (Admission::Refused { retry_after_us }, None)
        }
    }

    /// When a bucket touched at `now_us` may be dropped (Unix ms): by then it is full again.
    pub fn expires_at_ms(&self, now_us: i64) -> i64 {
        (now_us + 2 * self.interval_us + self.tolerance_us) / 1000
    }
}

/// Per-principal rate buckets shared by every instance over one store: one atomic,
/// conditional update per request (see each backend for its statement).
#[async_trait]
pub trait RateBuckets: Send + Sync + 'static {
    /// Admits one request of `principal` under `gcra` at `now_us`, or says when to retry.
    async fn admit(
        &self,
        principal: &Principal,
        gcra: Gcra,
        now_us: i64,
    ) -> Result<Admission, StoreError>;
}

/// How long a health probe waits for a dependency (store, file store) before calling it down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one timed ping ([`StateStore::ping`] or another dependency's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub reachable: bool,
    pub latency_ms: f64,
    /// Why the dependency did not answer, in words safe to show a caller.
    pub failure: Option<&'static str>,
}

/// Pings the store within [`PROBE_TIMEOUT`]; failures are logged with their cause.
pub async fn probe(store: &dyn StateStore) -> Probe {
    timed_probe("store", "store error", store.ping()).await
}

/// Runs one dependency's `ping` within [`PROBE_TIMEOUT`] and times it; the
/// store and the file store both use it. A failure is logged with its cause
/// and `dependency`, and reported as `error_text` or "timed out".
pub async fn timed_probe<E: std::fmt::Display>(
    dependency: &'static str,
    error_text: &'static str,
    ping: impl Future<Output = Result<(), E>>,
) -> Probe {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, ping).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => {
            tracing::warn!(%error, dependency, "probe failed");
            Some(error_text)
        }
        Err(_) => {
            tracing::warn!(
                dependency,
                timeout_ms = PROBE_TIMEOUT.as_millis() as u64,
                "probe timed out"
            );
            Some("timed out")
        }
    };
    Probe {
        reachable: failure.is_none(),
        latency_ms,
        failure,
    }
}

/// A backend that keeps documents, sessions, rate buckets, change feeds, the mailbox and
/// tasks.
pub trait Store:
    StateStore
    + SessionRecords
    + RateBuckets
    + feed::FeedRecords
    + mailbox::MailboxRecords
    + tasks::TaskRecords
{
}
impl<T> Store for T where
    T: StateStore
        + SessionRecords
        + RateBuckets
        + feed::FeedRecords
        + mailbox::MailboxRecords
        + tasks::TaskRecords
{
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents(count: usize, value_bytes: usize) -> Vec<Document> {
        (0..count)
            .map(|n| Document {
                key: format!("doc-{n:03}"),
                value: Value::String("x".repeat(value_bytes)),
                version: 1,
                updated_at: Utc::now(),
                expires_at: None,
            })
            .collect()
    }

    #[test]
    fn a_page_ends_at_its_byte_bound_and_its_cursor_carries_on() {
        let cursors = cursor::CursorCodec::new(b"a test key of at least 32 bytes!!");
        let alice = Principal::new("alice").expect("principal");
        // 60 KiB values: eight fit in 512 KiB, the ninth would not.
        let page = Page::from_lookahead(documents(21, 60 * 1024), 20, &cursors, &alice, "");
        assert_eq!(page.items.len(), 8);
        let cursor = page.next_cursor.expect("more follow");
        assert_eq!(
            cursors.open(&alice, "", &cursor).expect("own cursor"),
            "doc-007"
        );
        // Small documents: the count decides, and the last page has no cursor.
        let page = Page::from_lookahead(documents(21, 10), 20, &cursors, &alice, "");
        assert_eq!((page.items.len(), page.next_cursor.is_some()), (20, true));
        let page = Page::from_lookahead(documents(5, 10), 20, &cursors, &alice, "");
        assert_eq!((page.items.len(), page.next_cursor), (5, None));
    }

    #[test]
    fn gcra_admits_a_burst_then_the_rate() {
        // 10 per second (100 ms apart), burst 3.
        let gcra = Gcra {
            interval_us: 100_000,
            tolerance_us: 300_000,
        };
        let mut tat = None;
        for _ in 0..3 {
            let (admission, next) = gcra.step(tat, 0);
            assert_eq!(admission, Admission::Admitted);
            tat = next;
        }
        assert_eq!(
            gcra.step(tat, 0).0,
            Admission::Refused {
                retry_after_us: 100_000
            }
        );
        assert_eq!(gcra.step(tat, 100_000).0, Admission::Admitted);
        // After a long pause the bucket is full again, not over-full.
        let (_, later) = gcra.step(tat, 10_000_000);
        assert_eq!(later, Some(10_100_000));
    }
}
