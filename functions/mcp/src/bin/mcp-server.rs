//! `mcp-server`: serves the MCP function over HTTP on a normal host (laptop, EC2, container).

use std::process::ExitCode;

use mcp_function::{app, backends, config::Config, server_host};

// Under load, glibc's malloc took a fifth of the CPU (bench/RESULTS.md); mimalloc is faster
// with many short-lived allocations across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_process() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mcp-server: {error}");
            return ExitCode::from(2);
        }
    };
    server_host::init_tracing(config.log_format);
    let backends = match backends::open(&config).await {
        Ok(backends) => backends,
        Err(error) => {
            tracing::error!(%error, store = %server_host::redact_url(&config.store_url), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let app = match app::build(&config, &backends, "server") {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match server_host::serve(&config, app, backends.store).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
