//! Stores that count and time every call, and write the `audit` log of mutations.
//!
//! [`MeteredStore`] and [`MeteredBlobs`] wrap the opened backends in `app::build`, so every
//! layer and tool is measured without knowing it: `mcp_store_operations_total{store,op}` and
//! `mcp_store_duration_seconds{store,op}`. Writes and deletes of state documents and file
//! writes also get one line on the `audit` log target: who, what, which key, and the result.

use std::{collections::BTreeSet, future::Future, sync::Arc, time::Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::metrics::Metrics;
use crate::{
    blob::{Blob, BlobError, BlobMeta, BlobPage, BlobStore},
    principal::Principal,
    store::{
        Admission, Document, Expect, Gcra, Page, Put, RateBuckets, SessionRecord, SessionRecords,
        StateStore, Store, StoreError,
        feed::{FeedLog, FeedRecords},
        mailbox::MailboxRecords,
        tasks::{TaskRecord, TaskRecords},
    },
};

/// Runs one backend call, counting and timing it under `store`/`op`.
async fn timed<T>(
    metrics: &Metrics,
    store: &'static str,
    op: &'static str,
    call: impl Future<Output = T>,
) -> T {
    let started = Instant::now();
    let output = call.await;
    metrics.store_operation(store, op, started.elapsed().as_secs_f64());
    output
}

/// The `result` of an audit line.
fn audit_result<T, E: std::fmt::Display>(outcome: &Result<T, E>) -> String {
    match outcome {
        Ok(_) => "ok".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// A [`Store`] that reports each call to [`Metrics`].
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    backend: &'static str,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn wrap(
        inner: Arc<dyn Store>,
        backend: &'static str,
        metrics: Arc<Metrics>,
    ) -> Arc<dyn Store> {
        Arc::new(Self {
            inner,
            backend,
            metrics,
        })
    }

    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = T>) -> T {
        timed(&self.metrics, self.backend, op, call).await
    }
}

#[async_trait]
impl StateStore for MeteredStore {
    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Document>, StoreError> {
        self.timed("get", self.inner.get(principal, key)).await
    }

    async fn put(&self, principal: &Principal, put: Put<'_>) -> Result<Document, StoreError> {
        let key = put.key;
        let outcome = self.timed("put", self.inner.put(principal, put)).await;
        tracing::info!(
            target: "audit",
            principal = %principal,
            action = "state.put",
            key,
            version = outcome.as_ref().ok().map(|document| document.version),
            result = %audit_result(&outcome),
            "state document written"
        );
        outcome
    }

    async fn delete(
        &self,
        principal: &Principal,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let outcome = self
            .timed("delete", self.inner.delete(principal, key, expect))
            .await;
        tracing::info!(
            target: "audit",
            principal = %principal,
            action = "state.delete",
            key,
            existed = outcome.as_ref().ok().copied(),
            result = %audit_result(&outcome),
            "state document deleted"
        );
        outcome
    }

    async fn list(
        &self,
        principal: &Principal,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        self.timed("list", self.inner.list(principal, prefix, cursor, limit))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.timed("purge_expired", self.inner.purge_expired())
            .await
    }
}

#[async_trait]
impl SessionRecords for MeteredStore {
    async fn create_session(&self, record: &SessionRecord, limit: usize) -> Result<(), StoreError> {
        self.timed("create_session", self.inner.create_session(record, limit))
            .await
    }

    async fn load_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.timed("load_session", self.inner.load_session(id))
            .await
    }

    async fn touch_session(
        &self,
        principal: &Principal,
        id: &str,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.timed(
            "touch_session",
            self.inner
                .touch_session(principal, id, last_seen_at, expires_at),
        )
        .await
    }

    async fn delete_session(&self, principal: &Principal, id: &str) -> Result<(), StoreError> {
        self.timed("delete_session", self.inner.delete_session(principal, id))
            .await
    }

    async fn set_session_subscriptions(
        &self,
        id: &str,
        uris: &BTreeSet<String>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "session_subscriptions_set",
            self.inner.set_session_subscriptions(id, uris),
        )
        .await
    }

    async fn load_session_subscriptions(
        &self,
        id: &str,
    ) -> Result<Option<BTreeSet<String>>, StoreError> {
        self.timed(
            "session_subscriptions_load",
            self.inner.load_session_subscriptions(id),
        )
        .await
    }
}

#[async_trait]
impl RateBuckets for MeteredStore {
    async fn admit(
        &self,
        principal: &Principal,
        gcra: Gcra,
        now_us: i64,
    ) -> Result<Admission, StoreError> {
        self.timed("rate_admit", self.inner.admit(principal, gcra, now_us))
            .await
    }
}

#[async_trait]
impl FeedRecords for MeteredStore {
    async fn load_feed(&self, principal: &Principal) -> Result<Option<FeedLog>, StoreError> {
        self.timed("feed_load", self.inner.load_feed(principal))
            .await
    }

    async fn save_feed(
        &self,
        principal: &Principal,
        log: &FeedLog,
        expected_head: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "feed_save",
            self.inner.save_feed(principal, log, expected_head),
        )
        .await
    }
}

#[async_trait]
impl MailboxRecords for MeteredStore {
    async fn open_request(
        &self,
        session: &str,
        request: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.timed(
            "mailbox_open",
            self.inner.open_request(session, request, expires_at),
        )
        .await
    }

    async fn post_answer(
        &self,
        session: &str,
        request: &str,
        answer: &str,
    ) -> Result<bool, StoreError> {
        self.timed(
            "mailbox_post",
            self.inner.post_answer(session, request, answer),
        )
        .await
    }

    async fn load_answer(
        &self,
        session: &str,
        request: &str,
    ) -> Result<Option<String>, StoreError> {
        self.timed("mailbox_load", self.inner.load_answer(session, request))
            .await
    }

    async fn close_request(&self, session: &str, request: &str) -> Result<(), StoreError> {
        self.timed("mailbox_close", self.inner.close_request(session, request))
            .await
    }
}

#[async_trait]
impl TaskRecords for MeteredStore {
    async fn create_task(
        &self,
        principal: &Principal,
        id: &str,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.timed(
            "task_create",
            self.inner.create_task(principal, id, body, expires_at),
        )
        .await
    }

    async fn load_task(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.timed("task_load", self.inner.load_task(principal, id))
            .await
    }

    async fn replace_task(
        &self,
        principal: &Principal,
        id: &str,
        version: u64,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.timed(
            "task_replace",
            self.inner
                .replace_task(principal, id, version, body, expires_at),
        )
        .await
    }
}

/// A [`BlobStore`] that reports each call to [`Metrics`].
pub struct MeteredBlobs {
    inner: Arc<dyn BlobStore>,
    metrics: Arc<Metrics>,
}

impl MeteredBlobs {
    pub fn wrap(inner: Arc<dyn BlobStore>, metrics: Arc<Metrics>) -> Arc<dyn BlobStore> {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = T>) -> T {
        timed(&self.metrics, self.inner.backend(), op, call).await
    }
}

#[async_trait]
impl BlobStore for MeteredBlobs {
    async fn put(
        &self,
        principal: &Principal,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<BlobMeta, BlobError> {
        let size = bytes.len();
        let outcome = self
            .timed(
                "file_put",
                self.inner.put(principal, key, bytes, content_type),
            )
            .await;
        tracing::info!(
            target: "audit",
            principal = %principal,
            action = "file.put",
            key,
            size,
            result = %audit_result(&outcome),
            "file written"
        );
        outcome
    }

    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Blob>, BlobError> {
        self.timed("file_get", self.inner.get(principal, key)).await
    }

    async fn list(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BlobPage, BlobError> {
        self.timed("file_list", self.inner.list(principal, cursor, limit))
            .await
    }

    async fn ping(&self) -> Result<(), BlobError> {
        self.timed("file_ping", self.inner.ping()).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}
