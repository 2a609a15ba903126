//! `rmcp_floor LISTEN`: rmcp's Streamable HTTP service with one `echo` tool and nothing else
//! (no store, no auth, no layers), answering in JSON like `mcp-server` does.
//!
//! The benchmark (`scripts/bench.sh`) loads it beside `mcp-server` with the same requests:
//! the difference between the two is what our layers, store and auth cost on top of the
//! framework.

use std::sync::Arc;

use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{Implementation, ServerCapabilities, ServerConfig},
    schemars::{self, JsonSchema},
    tool, tool_handler, tool_router,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde::Deserialize;

// The same allocator as mcp-server, so the difference between the two is our layers alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Deserialize, JsonSchema)]
struct EchoArgs {
    /// Text to send back unchanged.
    message: String,
}

#[derive(Clone)]
struct Floor {
    tool_router: ToolRouter<Floor>,
}

#[tool_router]
impl Floor {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Return the given message unchanged.")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.message
    }
}

// The router built once per handler, as `mcp-server` does, not once per call.
#[tool_handler(router = self.tool_router)]
impl ServerHandler for Floor {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("rmcp-floor", env!("CARGO_PKG_VERSION")))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .ok_or("usage: rmcp_floor LISTEN_ADDR (e.g. 127.0.0.1:9300)")?;
    let config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .with_allowed_hosts(["localhost", "127.0.0.1"]);
    let service = StreamableHttpService::new(
        || Ok(Floor::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, router).await?;
    Ok(())
}
