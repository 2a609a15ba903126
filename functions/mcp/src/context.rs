//! What the tools, the files-as-resources code and the task runs share: the stores and facts
//! about this process, one [`ServerContext`] per process.
//!
//! The MCP handler ([`crate::server`]) holds one and hands it down; nothing here knows the
//! handler, so tools and resources are leaves the handler dispatches to.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rmcp::{ErrorData, model::Extensions};

use crate::{
    blob::BlobStore,
    config::ListenSettings,
    http::state::RequestState,
    listen::LegacyWatches,
    principal::Principal,
    store::{
        Store,
        feed::{self, Change},
    },
    tasks::Tasks,
};

/// What every handler instance shares: the stores and facts about this process.
pub struct ServerContext {
    pub store: Arc<dyn Store>,
    /// Backend name for health output ("sqlite", "postgres", …).
    pub store_backend: &'static str,
    /// The callers' files: `file_write` and the `files:///` resources.
    pub blobs: Arc<dyn BlobStore>,
    /// Which host serves: "server" or "lambda".
    pub host: &'static str,
    pub region: Option<String>,
    pub started: Instant,
    /// How long one tool call may run (`MCP_TOOL_TIMEOUT_SECS`); then it is cancelled.
    pub tool_timeout: Duration,
    /// How listen streams are held; `None` declines them (`MCP_LONG_STREAMS=off`).
    pub listen: Option<ListenSettings>,
    /// Whether the client can answer a tool's legacy request (sampling, elicitation): not
    /// on a buffered Lambda, whose answer only leaves once the call has ended.
    pub client_can_answer: bool,
    /// Task-capable tools and how their runs start (see [`crate::tasks`]).
    pub tasks: Tasks,
    /// Legacy `resources/subscribe` watchers, one per subscribed session.
    pub(crate) legacy_watches: Arc<LegacyWatches>,
    /// Set until the first `health_check`, so callers can tell a cold start.
    cold: AtomicBool,
}

impl ServerContext {
    pub fn new(
        store: Arc<dyn Store>,
        store_backend: &'static str,
        host: &'static str,
        blobs: Arc<dyn BlobStore>,
        tool_timeout: Duration,
    ) -> Self {
        Self {
            store,
            store_backend,
            blobs,
            host,
            tool_timeout,
            listen: None,
            client_can_answer: true,
            tasks: Tasks::default(),
            legacy_watches: Arc::default(),
            region: std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()),
            started: Instant::now(),
            cold: AtomicBool::new(true),
        }
    }

    /// Serves listen streams and resource subscriptions as `listen` says.
    pub fn with_listen(mut self, listen: Option<ListenSettings>) -> Self {
        self.listen = listen;
        self
    }

    /// Whether the client can answer a tool's legacy request; see [`Self::client_can_answer`].
    pub fn with_client_answers(mut self, client_can_answer: bool) -> Self {
        self.client_can_answer = client_can_answer;
        self
    }

    /// Offers `tasks` (task-capable tools and their run starter).
    pub fn with_tasks(mut self, tasks: Tasks) -> Self {
        self.tasks = tasks;
        self
    }

    /// Appends `changes` to the caller's change feed for its listen streams, when this
    /// host holds them. A change that cannot be recorded is logged, never failed: the
    /// write it follows has happened.
    pub async fn announce(&self, principal: &Principal, changes: &[Change]) {
        if self.listen.is_none() {
            return;
        }
        if let Err(error) = feed::append(self.store.as_ref(), principal, changes).await {
            tracing::warn!(%error, "change not recorded in the change feed; listeners will not hear of it");
        }
    }

    /// True exactly once per process.
    pub fn take_cold_start(&self) -> bool {
        self.cold.swap(false, Ordering::Relaxed)
    }
}

/// The [`Principal`] authentication set in the state of the HTTP request behind an MCP
/// request ([`RequestState`]).
///
/// Tools get it through [`crate::tools::Caller`]; other handlers (resources, tasks, listen
/// streams) call this. A request without one is refused rather than run as anyone.
pub fn request_principal(extensions: &Extensions) -> Result<Principal, ErrorData> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| RequestState::of(&parts.extensions))
        .and_then(|state| state.principal())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("request carries no principal", None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::Grant;

    #[test]
    fn a_request_without_a_principal_is_refused() {
        let mut extensions = Extensions::default();
        let refused = request_principal(&extensions).expect_err("no principal");
        assert_eq!(refused.message, "request carries no principal");

        let (parts, ()) = http::Request::new(()).into_parts();
        extensions.insert(parts);
        assert!(request_principal(&extensions).is_err());

        // What the request log stage leaves: a state, before and after authentication.
        let with_state = |extensions: &mut Extensions, principal: Option<Principal>| {
            let state = RequestState::new(
                String::new(),
                String::new(),
                String::new(),
                tracing::Span::none(),
            );
            if let Some(principal) = principal {
                state.authenticated(principal, Grant::Everything);
            }
            let mut request = http::Request::new(());
            request.extensions_mut().insert(Arc::new(state));
            extensions.insert(request.into_parts().0);
        };
        with_state(&mut extensions, None);
        assert!(request_principal(&extensions).is_err());

        with_state(&mut extensions, Some(Principal::anonymous()));
        assert_eq!(
            request_principal(&extensions).ok(),
            Some(Principal::anonymous())
        );
    }
}
