//! The long-running host: tracing, listener, `/metrics` listener, background purge,
//! graceful stop.
//!
//! `bin/mcp-server.rs` is a few lines over these functions and
//! [`crate::backends::open`]; the Lambda host (`lambda_host`) serves the same
//! [`crate::app::build`] service.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;
use tracing_subscriber::{EnvFilter, fmt, util::SubscriberInitExt};

use crate::{
    app::App,
    config::{Config, KeysTarget, LogFormat},
    store::Store,
    telemetry::metrics::Metrics,
};

/// How often expired sessions and documents are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Logs to stdout, level from `RUST_LOG` (default `info`; `audit=off` silences the audit log).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = log_subscriber(format, filter, io::stdout).try_init();
}

/// The product's log format over any writer: JSON lines with the event's fields at the top
/// level and the request span (request id, trace id) beside them; tests capture it.
pub fn log_subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

/// A store URL fit for logs: any password is replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish within the grace period.
pub async fn serve(config: &Config, app: App, store: Arc<dyn Store>) -> io::Result<()> {
    if matches!(config.keys, KeysTarget::Env { dev: true, .. }) {
        tracing::warn!(
            "MCP_SIGNING_KEY is not set: using the built-in development key; set a secret key in any shared deployment"
        );
    }
    let listener = TcpListener::bind(config.bind).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        store = %redact_url(&config.store_url),
        "mcp-server listening; MCP endpoint is /mcp"
    );
    let metrics = match config.metrics_bind {
        Some(address) => serve_metrics(address, app.metrics.clone()).await,
        None => None,
    };
    let purge = tokio::spawn(purge_expired(store));
    let shutdown = app.shutdown.clone();
    let grace = config.shutdown_grace;
    let server = axum::serve(
        listener,
        // The peer address is what client registration budgets by.
        app.router
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop_signal().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutdown requested; finishing in-flight requests"
        );
        shutdown.cancel();
    });
    let stopped = app.shutdown.clone();
    let result = tokio::select! {
        result = server.into_future() => result,
        () = async move { stopped.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over; closing remaining connections");
            Ok(())
        }
    };
    purge.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    result
}

/// Serves `GET /metrics` (Prometheus text) on its own listener, apart from `/mcp`, so
/// it can stay on loopback or a private network while MCP is public. A port already taken
/// (a second server on one host) costs the metrics, not the service: logged, and MCP serves on.
async fn serve_metrics(
    address: SocketAddr,
    metrics: Arc<Metrics>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, %address, "metrics listener cannot bind; /metrics is unavailable (set MCP_METRICS_BIND)");
            return None;
        }
    };
    tracing::info!(%address, "metrics at /metrics");
    let router = Router::new()
        .route("/metrics", get(prometheus_text))
        .with_state(metrics);
    Some(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "metrics listener failed");
        }
    }))
}

async fn prometheus_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode().await,
    )
}

async fn purge_expired(store: Arc<dyn Store>) {
    let mut ticks = tokio::time::interval(PURGE_INTERVAL);
    loop {
        ticks.tick().await;
        match store.purge_expired().await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "purged expired sessions and documents"),
            Err(error) => tracing::warn!(%error, "purge of expired rows failed"),
        }
    }
}

async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/mcp"),
            "postgres://app:***@db:5432/mcp"
        );
        assert_eq!(redact_url("postgres://db/mcp"), "postgres://db/mcp");
        assert_eq!(
            redact_url("sqlite://./.data/mcp.db"),
            "sqlite://./.data/mcp.db"
        );
    }
}
