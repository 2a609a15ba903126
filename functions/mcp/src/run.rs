//! What the binaries do, start to end, as functions of the build's [`Extension`]: the product
//! binaries pass [`app::Product`], a test build its own extension, and both run the same host.
//!
//! The runtime and the allocator stay with each binary (`#[tokio::main]`, `#[global_allocator]`).

use std::{process::ExitCode, time::Instant};

use crate::{
    app::{self, App, Extension},
    backends::{self, Backends},
    config::{Config, ConfigError},
    lambda_host, server_host,
};

/// `mcp-server`: configuration from flags and `MCP_*`, the backends, then HTTP until SIGTERM.
pub async fn server<E: Extension>(extension: E) -> ExitCode {
    let (config, backends, app) =
        match start("mcp-server", Config::from_process, "server", &extension).await {
            Ok(parts) => parts,
            Err(code) => return code,
        };
    match server_host::serve(&config, app, backends.store).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// `mcp-lambda`: everything up to the event loop runs once per instance, in Lambda's init
/// phase; each event then costs only the service call (see `lambda_host`). Task runs arrive as
/// invocations of this same function, so they find the extension's task jobs here too.
pub async fn lambda<E: Extension>(extension: E) -> ExitCode {
    let started = Instant::now();
    let (config, backends, app) = match start(
        "mcp-lambda",
        Config::lambda_from_process,
        "lambda",
        &extension,
    )
    .await
    {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    let handler = lambda_host::LambdaHandler::new(app.router, config.base_path.clone())
        .with_metrics(app.metrics, &config.metrics_namespace)
        .with_stream_max(config.stream_max)
        .with_standalone_streams(config.listen.is_some())
        .with_task_runs(app.context);
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        store = backends.store_backend,
        files = backends.blobs.backend(),
        response = ?config.lambda_response,
        "mcp-lambda initialized"
    );
    match lambda_host::run(handler, config.lambda_response).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// Reads the configuration (a refusal is printed as `program: …`, exit 2, before any logging
/// is set up), starts the logs, opens the backends and builds the service over them; any later
/// failure is logged and exits 1.
async fn start<E: Extension>(
    program: &str,
    read: fn() -> Result<Config, ConfigError>,
    host: &'static str,
    extension: &E,
) -> Result<(Config, Backends, App), ExitCode> {
    let config = read().map_err(|error| {
        eprintln!("{program}: {error}");
        ExitCode::from(2)
    })?;
    server_host::init_tracing(config.log_format);
    let backends = backends::open(&config).await.map_err(|error| {
        tracing::error!(%error, store = %server_host::redact_url(&config.store_url), "cannot start");
        ExitCode::FAILURE
    })?;
    let app = app::build_with(&config, &backends, host, extension).map_err(|error| {
        tracing::error!(%error, "cannot start");
        ExitCode::FAILURE
    })?;
    Ok((config, backends, app))
}
