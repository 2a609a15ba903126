//! `mcp-lambda`: serves the MCP function on AWS Lambda behind API Gateway or a function URL.
//!
//! Everything here runs once per instance, in Lambda's init phase; each event
//! then costs only the service call (see `lambda_host`).

use std::process::ExitCode;

use mcp_function::{app, backends, config::Config, lambda_host, server_host};

// Under load, glibc's malloc took a fifth of the CPU (bench/RESULTS.md); mimalloc is faster
// with many short-lived allocations across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: an instance serves one event at a time, and cross-thread wake-ups were two
// thirds of an invocation's time in process (bench/RESULTS.md: 174 µs → 58 µs for an echo).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let config = match Config::lambda_from_process() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mcp-lambda: {error}");
            return ExitCode::from(2);
        }
    };
    server_host::init_tracing(config.log_format);
    let backends = match backends::open(&config).await {
        Ok(backends) => backends,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let app = match app::build(&config, &backends, "lambda") {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
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
