//! The MCP server handler: capabilities, tool and prompt dispatch, and the
//! caller's files as resources (`files:///<path>`, see [`crate::blob`]).
//!
//! [`McpServer`] is cheap to clone; rmcp builds one per session (legacy wire)
//! or per request (2026 wire), and they all share one [`ServerContext`].
//! The conformance suite's fixtures live in `conformance.rs`, a handler that
//! wraps this one and exists only with the `conformance` feature.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{
        prompt::PromptContext,
        router::{prompt::PromptRouter, tool::ToolRouter},
        tool::ToolCallContext,
    },
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        ContentBlock, CreateTaskResult, GetPromptRequestParams, GetPromptResponse, GetTaskParams,
        GetTaskResult, Implementation, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
        ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
        ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
        UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{RequestContext, SubscriptionContext},
};
use serde_json::json;
use tracing::Instrument;

use crate::{
    blob::{self, Blob, BlobError, BlobMeta, BlobStore, UriError},
    config::ListenSettings,
    http::observe::request_span,
    listen::{self, LegacyWatcher, LegacyWatches},
    principal::Principal,
    store::{
        MAX_SUBSCRIPTIONS, Store, StoreError,
        feed::{self, Change},
    },
    tasks::{self, Tasks},
    telemetry::{RequestFacts, ToolOutcome},
    tools::request_principal,
};

/// Files per `resources/list` page.
pub const RESOURCE_PAGE_SIZE: u32 = 50;

/// URI template of the caller's files (RFC 6570 reserved expansion keeps the `/`s).
pub const FILE_URI_TEMPLATE: &str = "files:///{+path}";

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
    pub tool_timeout: std::time::Duration,
    /// How listen streams are held; `None` declines them (`MCP_LONG_STREAMS=off`).
    pub listen: Option<ListenSettings>,
    /// Whether the client can answer a tool's legacy request (sampling, elicitation): not
    /// on a buffered Lambda, whose answer only leaves once the call has ended.
    pub client_can_answer: bool,
    /// Task-capable tools and how their runs start (see [`crate::tasks`]).
    pub tasks: Tasks,
    /// Legacy `resources/subscribe` watchers, one per subscribed session.
    legacy_watches: Arc<LegacyWatches>,
    /// Set until the first `health_check`, so callers can tell a cold start.
    cold: AtomicBool,
}

impl ServerContext {
    pub fn new(
        store: Arc<dyn Store>,
        store_backend: &'static str,
        host: &'static str,
        blobs: Arc<dyn BlobStore>,
        tool_timeout: std::time::Duration,
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

/// The MCP handler rmcp drives for every request.
#[derive(Clone)]
pub struct McpServer {
    context: Arc<ServerContext>,
    tools: Arc<ToolRouter<McpServer>>,
    prompts: Arc<PromptRouter<McpServer>>,
}

impl McpServer {
    /// A handler over `context` serving `tools` (`crate::tools::product_tools()`).
    pub fn new(context: Arc<ServerContext>, tools: ToolRouter<McpServer>) -> Self {
        Self {
            context,
            tools: Arc::new(tools),
            prompts: Arc::new(Self::prompt_router()),
        }
    }

    pub fn context(&self) -> &ServerContext {
        &self.context
    }

    /// The tools whose calls need `mcp:write` (see [`crate::tools::write_tools`]).
    pub fn write_tools(&self) -> std::collections::HashSet<String> {
        crate::tools::write_tools(&self.tools)
    }

    pub fn store(&self) -> &dyn Store {
        self.context.store.as_ref()
    }

    pub fn blobs(&self) -> &dyn BlobStore {
        self.context.blobs.as_ref()
    }

    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.has_route(name)
    }

    pub fn has_prompt(&self, name: &str) -> bool {
        self.prompts.has_route(name)
    }

    /// The `subscriptions/listen` filter this host accepts, or `None` when it declines
    /// listen streams.
    pub fn listen_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        self.context
            .listen
            .map(|_| listen::accepted_filter(requested))
    }

    /// Holds an accepted listen stream on the caller's change feed.
    pub async fn hold_listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let Some(settings) = self.context.listen else {
            return Err(listen_declined());
        };
        let principal = request_principal(&context.request_context().extensions)?;
        listen::serve_listen(context, self.store(), &principal, settings).await
    }

    /// Starts tool `tool` as a task of the request's caller, with `arguments`, answering
    /// with the created task (SEP-2663 `CreateTaskResult`).
    pub async fn start_task(
        &self,
        context: &RequestContext<RoleServer>,
        tool: &str,
        arguments: rmcp::model::JsonObject,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = request_principal(&context.extensions)?;
        let task = tasks::start(&self.context, &principal, tool, arguments).await?;
        Ok(CreateTaskResult::new(task).into())
    }

    /// Runs a tool within the tool timeout; says how the call ended besides answering it.
    async fn dispatch_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> (ToolOutcome, Result<CallToolResponse, ErrorData>) {
        if !self.tools.has_route(&request.name) {
            let unknown = ErrorData::invalid_params(
                format!(
                    "Unknown tool: {}; call tools/list for the available tools",
                    request.name
                ),
                None,
            );
            return (ToolOutcome::Unknown, Err(unknown));
        }
        let name = request.name.clone();
        if self.context.tasks.offers(&name) && client_allows_tasks(&context) {
            let arguments = request.arguments.unwrap_or_default();
            return match self.start_task(&context, &name, arguments).await {
                Ok(created) => (ToolOutcome::Ok, Ok(created)),
                Err(error) => (ToolOutcome::RpcError, Err(error)),
            };
        }
        // Cancelled by rmcp when the client closes the call's stream (2026-07-28: a closed
        // stream is a cancellation), sends notifications/cancelled, or the server stops.
        let cancelled = context.ct.clone();
        let call = self
            .tools
            .call(ToolCallContext::new(self, request, context));
        let limit = self.context.tool_timeout;
        let finished = tokio::select! {
            biased;
            finished = tokio::time::timeout(limit, call) => finished,
            () = cancelled.cancelled() => {
                tracing::warn!(tool = %name, "tool call cancelled before it finished: the client closed its stream or cancelled it, or the server is stopping");
                let stopped = CallToolResult::error(vec![ContentBlock::text(format!(
                    "the call to `{name}` was cancelled before it finished"
                ))]);
                return (ToolOutcome::Cancelled, Ok(stopped.into()));
            }
        };
        match finished {
            Ok(Ok(result)) => {
                let result = crate::tools::without_large_text_copy(result);
                let failed = matches!(&result, CallToolResponse::Complete(done) if done.is_error == Some(true));
                let outcome = if failed {
                    ToolOutcome::ToolError
                } else {
                    ToolOutcome::Ok
                };
                (outcome, Ok(result))
            }
            Ok(Err(error)) => (ToolOutcome::RpcError, Err(error)),
            Err(_) => {
                tracing::warn!(tool = %name, limit_secs = limit.as_secs(), "tool call timed out");
                let cancelled = CallToolResult::error(vec![ContentBlock::text(format!(
                    "the tool `{name}` did not finish within {} s and was cancelled; \
                     nothing more will happen for this call, retry it later",
                    limit.as_secs()
                ))]);
                (ToolOutcome::Timeout, Ok(cancelled.into()))
            }
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-lambda-server",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Tools: health_check, echo, get_time, state_get/state_set/state_list/state_delete \
                 for your own versioned JSON documents, file_write for your own files (text or \
                 base64, up to 5 MiB) and state_export to write your documents into one of them \
                 (a task, where your client takes tasks). Resources: your files as \
                 files:///<path> (resources/list, resources/read). Prompts: operational runbooks.",
        )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.get(name).cloned()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult {
            tools: self.tools.list_all(),
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.clone();
        // What the request log and the audit line need, read before the context moves into the call.
        let parts = context.extensions.get::<http::request::Parts>();
        let facts = parts.and_then(|parts| parts.extensions.get::<Arc<RequestFacts>>().cloned());
        let principal = parts
            .and_then(|parts| parts.extensions.get::<crate::principal::Principal>())
            .map(ToString::to_string)
            .unwrap_or_default();
        // rmcp runs the call in its own task: carry the request's ids into its log lines.
        let span = parts
            .map(|parts| request_span(&parts.extensions))
            .unwrap_or_else(tracing::Span::none);
        let (outcome, answer) = self
            .dispatch_tool(request, context)
            .instrument(span.clone())
            .await;
        if let Some(facts) = facts {
            facts.update(|facts| facts.tool_outcome = Some(outcome));
        }
        span.in_scope(|| {
            tracing::info!(
                target: "audit",
                principal,
                action = "tool.call",
                tool = %name,
                result = outcome.as_str(),
                "tool called"
            );
        });
        answer
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult {
            prompts: self.prompts.list_all(),
            ..Default::default()
        })
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if self.prompts.has_route(&request.name) {
            let prompt = PromptContext::new(self, request.name, request.arguments, context);
            return self.prompts.get_prompt(prompt).await;
        }
        Err(ErrorData::invalid_params(
            format!(
                "Unknown prompt: {}; call prompts/list for the available prompts",
                request.name
            ),
            None,
        ))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let principal = request_principal(&context.extensions)?;
        let cursor = request.and_then(|request| request.cursor);
        let page = self
            .blobs()
            .list(&principal, cursor.as_deref(), RESOURCE_PAGE_SIZE)
            .await
            .map_err(file_store_error)?;
        let mut result =
            ListResourcesResult::with_all_items(page.items.iter().map(file_resource).collect())
                .with_ttl_ms(0)
                .with_cache_scope(CacheScope::Private);
        result.next_cursor = page.next_cursor;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(file_templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let principal = request_principal(&context.extensions)?;
        let uri = request.uri;
        let key = match blob::key_from_uri(&uri) {
            Ok(key) => key,
            Err(UriError::OtherScheme) => return Err(resource_not_found(&uri)),
            Err(UriError::Malformed(reason)) => {
                return Err(ErrorData::invalid_params(
                    format!(
                        "malformed file URI {uri}: {reason}; use files:///<path> as resources/list shows it"
                    ),
                    Some(json!({ "uri": uri })),
                ));
            }
        };
        let blob = self
            .blobs()
            .get(&principal, &key)
            .await
            .map_err(file_store_error)?
            .ok_or_else(|| resource_not_found(&uri))?;
        Ok(ReadResourceResult::new(vec![file_contents(uri, blob)])
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private)
            .into())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.listen_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.hold_listen(context).await
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let settings = self.legacy_subscriptions()?;
        let principal = request_principal(&context.extensions)?;
        let session = legacy_session_id(&context)?;
        if let Err(UriError::Malformed(reason)) = blob::key_from_uri(&request.uri) {
            return Err(ErrorData::invalid_params(
                format!("malformed file URI {}: {reason}", request.uri),
                Some(json!({ "uri": request.uri })),
            ));
        }
        if self.context.host == "lambda" {
            return self
                .change_stored_subscriptions(&session, |uris| {
                    uris.insert(request.uri);
                })
                .await;
        }
        let watcher = LegacyWatcher {
            feed: self.context.store.clone(),
            principal,
            peer: context.peer.clone(),
            poll: settings.poll,
        };
        self.context
            .legacy_watches
            .subscribe(&session, request.uri, watcher);
        Ok(())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let principal = request_principal(&context.extensions)?;
        let task = tasks::get(self.store(), &principal, &request.task_id).await?;
        Ok(GetTaskResult::new(task))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = request_principal(&context.extensions)?;
        tasks::update(
            &self.context,
            &principal,
            &request.task_id,
            request.input_responses,
        )
        .await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = request_principal(&context.extensions)?;
        tasks::cancel(self.store(), &principal, &request.task_id).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.legacy_subscriptions()?;
        let session = legacy_session_id(&context)?;
        if self.context.host == "lambda" {
            return self
                .change_stored_subscriptions(&session, |uris| {
                    uris.remove(&request.uri);
                })
                .await;
        }
        self.context
            .legacy_watches
            .unsubscribe(&session, &request.uri);
        Ok(())
    }
}

impl McpServer {
    /// Legacy subscriptions need updates delivered on the session's standalone stream: on
    /// mcp-server the session's worker holds it; on Lambda, with long-lived streams on, the
    /// `GET /mcp` stream follows the caller's change feed and the session's subscriptions
    /// are kept in the store. With long-lived streams off there is no such stream.
    fn legacy_subscriptions(&self) -> Result<ListenSettings, ErrorData> {
        self.context.listen.ok_or_else(|| {
            ErrorData::invalid_request(
                "resources/subscribe is not available here: its updates need the standalone GET \
                 stream, which this host does not hold (long-lived streams are off)",
                None,
            )
        })
    }

    /// Applies `edit` to the session's subscriptions kept in the store (Lambda, where no
    /// instance keeps the session), within [`MAX_SUBSCRIPTIONS`].
    async fn change_stored_subscriptions(
        &self,
        session: &str,
        edit: impl FnOnce(&mut std::collections::BTreeSet<String>),
    ) -> Result<(), ErrorData> {
        let unavailable = |error| store_error("session store", error);
        let gone = || ErrorData::invalid_request("the session has ended; initialize again", None);
        let store = self.store();
        let mut uris = store
            .load_session_subscriptions(session)
            .await
            .map_err(unavailable)?
            .ok_or_else(gone)?;
        edit(&mut uris);
        if uris.len() > MAX_SUBSCRIPTIONS {
            return Err(ErrorData::invalid_params(
                format!(
                    "a session may subscribe to at most {MAX_SUBSCRIPTIONS} resources; \
                     unsubscribe from some first"
                ),
                None,
            ));
        }
        if !store
            .set_session_subscriptions(session, &uris)
            .await
            .map_err(unavailable)?
        {
            return Err(gone());
        }
        Ok(())
    }
}

/// Whether the request's client declared the tasks extension (for the session, or for this
/// request in its `_meta`), so it can take a `CreateTaskResult`.
pub fn client_allows_tasks(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.supports_tasks())
}

/// The legacy session a request belongs to (rmcp only routes session requests here).
fn legacy_session_id(context: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ErrorData::invalid_request("resources/subscribe needs a session", None))
}

/// The answer to a listen request where this host holds no listen streams.
fn listen_declined() -> ErrorData {
    ErrorData::method_not_found::<rmcp::model::SubscriptionsListenRequestMethod>()
}

/// The resource templates of the product: the caller's files.
fn file_templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(FILE_URI_TEMPLATE, "file")
            .with_title("Your files")
            .with_description(
                "Your own files, written with the file_write tool; path is the path given to \
                 file_write (resources/list lists them).",
            ),
    ]
}

/// The `resources/list` entry of a file.
fn file_resource(meta: &BlobMeta) -> Resource {
    Resource::new(blob::resource_uri(&meta.key), meta.key.clone())
        .with_mime_type(meta.content_type.clone())
        .with_size(meta.size)
}

/// A file's contents: text for textual types holding UTF-8, base64 otherwise.
fn file_contents(uri: String, blob: Blob) -> ResourceContents {
    let Blob { meta, bytes } = blob;
    if blob::is_textual(&meta.content_type)
        && let Ok(text) = std::str::from_utf8(&bytes)
    {
        return ResourceContents::text(text, uri).with_mime_type(meta.content_type);
    }
    ResourceContents::blob(STANDARD.encode(&bytes), uri).with_mime_type(meta.content_type)
}

/// The MCP "resource not found" error (-32002; rmcp sends -32602 on 2026-07-28, SEP-2164).
fn resource_not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!("Resource not found: {uri}"),
        Some(json!({ "uri": uri })),
    )
}

/// A store failure as a JSON-RPC error, `store` naming which: the caller's own mistakes
/// are invalid params with the reason; backend trouble is logged and reported as
/// "unavailable, retry" without details.
pub(crate) fn store_error(store: &'static str, error: StoreError) -> ErrorData {
    if error.is_caller_error() {
        return ErrorData::invalid_params(error.to_string(), None);
    }
    tracing::error!(%error, store, "store call failed");
    ErrorData::internal_error(format!("the {store} is unavailable; retry shortly"), None)
}

/// A file store failure as a JSON-RPC error: the caller's own mistakes are
/// invalid params with the reason; backend trouble is logged and reported as
/// "unavailable, retry" without details.
fn file_store_error(error: BlobError) -> ErrorData {
    if error.is_caller_error() {
        return ErrorData::invalid_params(error.to_string(), None);
    }
    tracing::error!(%error, "file store call failed");
    ErrorData::internal_error(
        "the file store is unavailable right now; retry shortly (details are in the server log)",
        None,
    )
}
