//! The MCP server handler: capabilities, instructions, and dispatch to the tools
//! ([`crate::tools`]), the prompts ([`crate::prompts`]), the caller's files as resources
//! ([`crate::resources`]) and tasks ([`crate::tasks`]).
//!
//! [`McpServer`] is cheap to clone; rmcp builds one per session (legacy wire)
//! or per request (2026 wire), and they all share one [`ServerContext`]. The dependency runs
//! one way: the handler knows the tools and resources, they know only the context.

use std::sync::Arc;

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{
        prompt::PromptContext,
        router::{prompt::PromptRouter, tool::ToolRouter},
        tool::ToolCallContext,
    },
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
        CreateTaskResult, GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult,
        Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
        ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter, Tool,
        UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{RequestContext, SubscriptionContext},
};
use tracing::Instrument;

use crate::{
    context::{ServerContext, request_principal},
    http::state::{Answer, RequestState},
    listen,
    principal::Principal,
    prompts::Runbooks,
    resources,
    store::Store,
    tasks,
    telemetry::ToolOutcome,
    tools::{Toolbox, without_large_text_copy, write_tools},
};

/// The MCP handler rmcp drives for every request.
#[derive(Clone)]
pub struct McpServer {
    context: Arc<ServerContext>,
    /// What the tools run with: the same context.
    toolbox: Toolbox,
    tools: Arc<ToolRouter<Toolbox>>,
    prompts: Arc<PromptRouter<Runbooks>>,
    /// The instructions of `initialize` and `server/discover`, made once from the routers.
    instructions: Arc<str>,
}

impl McpServer {
    /// A handler over `context` serving `tools` (`crate::tools::product_tools()`).
    pub fn new(context: Arc<ServerContext>, tools: ToolRouter<Toolbox>) -> Self {
        Self {
            toolbox: Toolbox::new(context.clone()),
            context,
            instructions: instructions(&tools).into(),
            tools: Arc::new(tools),
            prompts: Arc::new(Runbooks::prompt_router()),
        }
    }

    pub fn context(&self) -> &ServerContext {
        &self.context
    }

    /// The tools whose calls need `mcp:write` (see [`crate::tools::write_tools`]).
    pub fn write_tools(&self) -> std::collections::HashSet<String> {
        write_tools(&self.tools)
    }

    pub fn store(&self) -> &dyn Store {
        self.context.store.as_ref()
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
            // Boxed: the rare branch kept out of every call's future (see the handler impl).
            return match Box::pin(self.start_task(&context, &name, arguments)).await {
                Ok(created) => (ToolOutcome::Ok, Ok(created)),
                Err(error) => (ToolOutcome::RpcError, Err(error)),
            };
        }
        // Cancelled by rmcp when the client closes the call's stream (2026-07-28: a closed
        // stream is a cancellation), sends notifications/cancelled, or the server stops.
        let cancelled = context.ct.clone();
        let call = self
            .tools
            .call(ToolCallContext::new(&self.toolbox, request, context));
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
                let result = without_large_text_copy(result);
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

// Every request method answers with a boxed future: rmcp runs each request in a task whose
// future holds the largest of these, and moving a large future into a task cost more than the
// rest of a request.
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
        .with_instructions(self.instructions.as_ref())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.get(name).cloned()
    }

    fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListToolsResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            Ok(ListToolsResult {
                tools: self.tools.list_all(),
                ..Default::default()
            })
        })
    }

    fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + Send + '_ {
        Box::pin(async move {
            let name = request.name.clone();
            // The request's state, kept before the context moves into the call: the span to run in
            // (rmcp runs the call in its own task), the caller for the audit line, and where the
            // request log learns the outcome.
            let state = context
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| RequestState::of(&parts.extensions))
                .cloned();
            let span = state
                .as_ref()
                .map_or_else(tracing::Span::none, |state| state.span.clone());
            let (outcome, answer) = self
                .dispatch_tool(request, context)
                .instrument(span.clone())
                .await;
            if let Some(state) = &state {
                state.answered(Answer {
                    tool_outcome: outcome,
                    rpc_error: answer.as_ref().err().map(|error| i64::from(error.code.0)),
                });
            }
            span.in_scope(|| {
                tracing::info!(
                    target: "audit",
                    principal = state
                        .as_ref()
                        .and_then(|state| state.principal())
                        .map(Principal::as_str)
                        .unwrap_or(""),
                    action = "tool.call",
                    tool = %name,
                    result = outcome.as_str(),
                    "tool called"
                );
            });
            answer
        })
    }

    fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListPromptsResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            Ok(ListPromptsResult {
                prompts: self.prompts.list_all(),
                ..Default::default()
            })
        })
    }

    fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, ErrorData>> + Send + '_ {
        Box::pin(async move {
            if self.prompts.has_route(&request.name) {
                let prompt =
                    PromptContext::new(&Runbooks, request.name, request.arguments, context);
                return self.prompts.get_prompt(prompt).await;
            }
            Err(ErrorData::invalid_params(
                format!(
                    "Unknown prompt: {}; call prompts/list for the available prompts",
                    request.name
                ),
                None,
            ))
        })
    }

    fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourcesResult, ErrorData>> + Send + '_ {
        Box::pin(async move { resources::list(&self.context, request, context).await })
    }

    fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourceTemplatesResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            Ok(ListResourceTemplatesResult::with_all_items(
                resources::templates(),
            ))
        })
    }

    fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceResponse, ErrorData>> + Send + '_ {
        Box::pin(async move { resources::read(&self.context, request, context).await })
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.listen_filter(requested)
    }

    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move { self.hold_listen(context).await })
    }

    #[allow(deprecated)]
    fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move { resources::subscribe(&self.context, request, context).await })
    }

    fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetTaskResult, ErrorData>> + Send + '_ {
        Box::pin(async move {
            let principal = request_principal(&context.extensions)?;
            let task = tasks::get(self.store(), &principal, &request.task_id).await?;
            Ok(GetTaskResult::new(task))
        })
    }

    fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move {
            let principal = request_principal(&context.extensions)?;
            tasks::update(
                &self.context,
                &principal,
                &request.task_id,
                request.input_responses,
            )
            .await
        })
    }

    fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move {
            let principal = request_principal(&context.extensions)?;
            tasks::cancel(self.store(), &principal, &request.task_id).await
        })
    }

    #[allow(deprecated)]
    fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send + '_ {
        Box::pin(async move { resources::unsubscribe(&self.context, request, context).await })
    }
}

/// Whether the request's client declared the tasks extension (for the session, or for this
/// request in its `_meta`), so it can take a `CreateTaskResult`.
pub fn client_allows_tasks(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.supports_tasks())
}

/// The answer to a listen request where this host holds no listen streams.
fn listen_declined() -> ErrorData {
    ErrorData::method_not_found::<rmcp::model::SubscriptionsListenRequestMethod>()
}

/// The server's instructions: each registered tool with the first sentence of its
/// description, then the resources and prompts, so a new tool is described once, where it
/// is written.
fn instructions(tools: &ToolRouter<Toolbox>) -> String {
    let mut text = String::from("Tools:");
    for tool in tools.list_all() {
        let description = tool.description.as_deref().unwrap_or_default();
        text.push_str(&format!(
            "\n- {}: {}",
            tool.name,
            first_sentence(description)
        ));
    }
    text.push_str("\nResources: ");
    text.push_str(resources::SUMMARY);
    text.push_str("\nPrompts: operational runbooks (prompts/list).");
    text
}

/// The first sentence of `text`: up to and with the first `.` that ends a sentence.
fn first_sentence(text: &str) -> &str {
    text.match_indices(". ")
        .next()
        .map_or(text, |(end, _)| &text[..=end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instructions_name_every_tool_with_its_first_sentence() {
        let text = instructions(&crate::tools::product_tools());
        assert!(
            text.starts_with("Tools:\n- echo: Return the given message unchanged.\n"),
            "{text}"
        );
        for tool in crate::tools::product_tools().list_all() {
            assert!(text.contains(&format!("\n- {}: ", tool.name)), "{text}");
        }
        assert!(text.contains("files:///<path>"), "{text}");
        assert_eq!(first_sentence("One. Two."), "One.");
        assert_eq!(first_sentence("Only one"), "Only one");
    }
}
