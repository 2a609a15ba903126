//! `mcp-server`: serves the MCP function over HTTP on a normal host (laptop, EC2, container).

use std::{process::ExitCode, sync::Arc};

use mcp_function::{app, config::Config, server_host};

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
    let store = match server_host::connect_store(&config).await {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, store = %server_host::redact_url(&config.store_url), "cannot open the store");
            return ExitCode::FAILURE;
        }
    };
    let backend = store.backend().name();
    let app = app::build(&config, Arc::new(store.clone()), backend, "server");
    match server_host::serve(&config, app, store).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
