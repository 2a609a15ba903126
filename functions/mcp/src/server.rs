//! The MCP server handler: capabilities, tool and prompt dispatch.
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

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{
        prompt::PromptContext,
        router::{prompt::PromptRouter, tool::ToolRouter},
        tool::ToolCallContext,
    },
    model::{
        CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
        Implementation, ListPromptsResult, ListToolsResult, PaginatedRequestParams,
        ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};

use crate::store::Store;

/// What every handler instance shares: the store and facts about this process.
pub struct ServerContext {
    pub store: Arc<dyn Store>,
    /// Backend name for health output ("sqlite", "postgres", …).
    pub store_backend: &'static str,
    /// Which host serves: "server" or "lambda".
    pub host: &'static str,
    pub region: Option<String>,
    pub started: Instant,
    /// Set until the first `health_check`, so callers can tell a cold start.
    cold: AtomicBool,
}

impl ServerContext {
    pub fn new(store: Arc<dyn Store>, store_backend: &'static str, host: &'static str) -> Self {
        Self {
            store,
            store_backend,
            host,
            region: std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()),
            started: Instant::now(),
            cold: AtomicBool::new(true),
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
    pub fn new(context: Arc<ServerContext>) -> Self {
        Self {
            context,
            tools: Arc::new(crate::tools::product_tools()),
            prompts: Arc::new(Self::prompt_router()),
        }
    }

    pub fn context(&self) -> &ServerContext {
        &self.context
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
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-lambda-server",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Tools: health_check, echo, get_time, and state_get/state_set/state_list/state_delete \
                 for your own versioned JSON documents. Prompts: operational runbooks.",
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
        if self.tools.has_route(&request.name) {
            return self
                .tools
                .call(ToolCallContext::new(self, request, context))
                .await;
        }
        Err(ErrorData::invalid_params(
            format!(
                "Unknown tool: {}; call tools/list for the available tools",
                request.name
            ),
            None,
        ))
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
}
