//! Durable legacy-wire sessions: rmcp keeps live sessions in memory, our store keeps them forever-ish.
//!
//! rmcp's `LocalSessionManager` runs each session's worker in this process and
//! consults a [`SessionStore`] when a request names a session it does not hold
//! (after a restart, or on another instance); it then replays the stored
//! `initialize` and carries on. [`DurableSessions`] is that store, over our
//! [`SessionRecords`]. The session gate (`http::session_gate`) checks every
//! request's session against the store first (exists, not expired, same
//! principal) and hands the record down in a task-local [`RequestScope`], so a
//! request costs one store read whether or not the session is in memory.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use rmcp::{
    model::InitializeRequestParams,
    transport::streamable_http_server::session::{SessionState, SessionStore, SessionStoreError},
};

use crate::{
    principal::Principal,
    store::{SessionRecord, Store},
};

tokio::task_local! {
    /// The principal and checked session of the HTTP request being served.
    static REQUEST_SCOPE: RequestScope;
}

/// What the gate learned about a request, visible to [`DurableSessions`] while it is served.
#[derive(Debug, Clone)]
pub struct RequestScope {
    pub principal: Principal,
    /// The request's session record, already checked against the principal and expiry.
    pub session: Option<SessionRecord>,
}

impl RequestScope {
    /// Runs `future` with this scope visible to the session store.
    pub async fn run<F: Future>(self, future: F) -> F::Output {
        REQUEST_SCOPE.scope(self, future).await
    }

    pub(crate) fn current() -> Option<Self> {
        REQUEST_SCOPE.try_with(Clone::clone).ok()
    }
}

/// Why a session could not be persisted.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("no principal is in scope for this request; refusing to create an unowned session")]
    NoPrincipal,
    #[error("stored initialize params are unreadable: {0}")]
    BadInitParams(serde_json::Error),
}

/// rmcp's session store, backed by our [`SessionRecords`](crate::store::SessionRecords).
pub struct DurableSessions {
    store: Arc<dyn Store>,
    ttl: Duration,
}

impl DurableSessions {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self { store, ttl }
    }
}

fn state_of(record: &SessionRecord) -> Result<SessionState, SessionStoreError> {
    let params: InitializeRequestParams =
        serde_json::from_value(record.init_params.clone()).map_err(SessionError::BadInitParams)?;
    Ok(SessionState::new(params))
}

#[async_trait::async_trait]
impl SessionStore for DurableSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        // The gate has just read and checked this record; reading it again would double the cost.
        if let Some(record) = RequestScope::current()
            .and_then(|scope| scope.session)
            .filter(|record| record.id == session_id)
        {
            return state_of(&record).map(Some);
        }
        match self.store.load_session(session_id).await? {
            Some(record) => state_of(&record).map(Some),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let principal = RequestScope::current()
            .map(|scope| scope.principal)
            .ok_or(SessionError::NoPrincipal)?;
        let now = Utc::now();
        let record = SessionRecord {
            id: session_id.to_owned(),
            principal,
            init_params: serde_json::to_value(&state.initialize_params)?,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.ttl,
        };
        self.store.save_session(&record).await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.store.delete_session(session_id).await?;
        Ok(())
    }
}
