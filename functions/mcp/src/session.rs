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
//!
//! Creating a session can be refused: its caller holds `MCP_MAX_SESSIONS_PER_CALLER` live
//! sessions already, its `initialize` params are over
//! [`MAX_INIT_PARAMS_BYTES`](crate::store::MAX_INIT_PARAMS_BYTES), or the store failed. rmcp
//! only logs a failed [`SessionStore::store`] and answers the `initialize` anyway, with a
//! session id no instance could serve; so [`DurableSessions`] reports the failure in the
//! [`RequestScope`] too, and the gate closes the session and answers the error instead.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use rmcp::{
    model::InitializeRequestParams,
    transport::streamable_http_server::session::{SessionState, SessionStore, SessionStoreError},
};

use crate::{
    principal::Principal,
    store::{SessionRecord, Store, StoreError},
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
    /// Why the session this request opened could not be created, once known.
    not_created: NotCreated,
}

/// Where [`DurableSessions`] leaves why it could not create a request's session, for the gate.
#[derive(Debug, Clone, Default)]
pub struct NotCreated(Arc<Mutex<Option<StoreError>>>);

impl NotCreated {
    fn report(&self, error: StoreError) {
        *self.0.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(error);
    }

    /// Why the session was not created, if it was not (asked once the request was served).
    pub fn take(&self) -> Option<StoreError> {
        self.0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }
}

impl RequestScope {
    pub fn new(principal: Principal, session: Option<SessionRecord>) -> Self {
        Self {
            principal,
            session,
            not_created: NotCreated::default(),
        }
    }

    /// Where a refused session creation is reported while this scope runs.
    pub fn not_created(&self) -> NotCreated {
        self.not_created.clone()
    }

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
    #[error("the session was not created: {0}")]
    NotCreated(String),
}

/// rmcp's session store, backed by our [`SessionRecords`](crate::store::SessionRecords).
pub struct DurableSessions {
    store: Arc<dyn Store>,
    ttl: Duration,
    /// Live sessions one principal may hold (`MCP_MAX_SESSIONS_PER_CALLER`).
    max_per_caller: usize,
}

impl DurableSessions {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, max_per_caller: usize) -> Self {
        Self {
            store,
            ttl,
            max_per_caller,
        }
    }

    async fn create(
        &self,
        principal: Principal,
        session_id: &str,
        state: &SessionState,
    ) -> Result<(), StoreError> {
        let init_params = serde_json::to_value(&state.initialize_params)
            .map_err(|error| StoreError::Corrupt(format!("initialize params: {error}")))?;
        let now = Utc::now();
        let record = SessionRecord {
            id: session_id.to_owned(),
            principal,
            init_params,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.ttl,
        };
        self.store
            .create_session(&record, self.max_per_caller)
            .await
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
        let scope = RequestScope::current().ok_or(SessionError::NoPrincipal)?;
        match self
            .create(scope.principal.clone(), session_id, state)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) => {
                let text = error.to_string();
                scope.not_created.report(error);
                Err(SessionError::NotCreated(text).into())
            }
        }
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let scope = RequestScope::current().ok_or(SessionError::NoPrincipal)?;
        self.store
            .delete_session(&scope.principal, session_id)
            .await?;
        Ok(())
    }
}
