//! The long-running host: tracing, listener, `/metrics` listener, background purge,
//! graceful stop.
//!
//! Both listeners serve through [`listener::serve`]: connections bounded in time and number.
//!
//! `bin/mcp-server.rs` is a few lines over these functions and
//! [`crate::backends::open`]; the Lambda host (`lambda_host`) serves the same
//! [`crate::app::build`] service.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Request, State},
    http::header,
    response::IntoResponse,
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing_subscriber::{EnvFilter, fmt, util::SubscriberInitExt};

use crate::{
    app::App,
    config::{Config, ConnectionLimits, KeysTarget, LogFormat},
    store::Store,
    telemetry::metrics::Metrics,
};

mod listener;

/// How often expired sessions and documents are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Connections the metrics listener serves at once: scrapes and probes.
const METRICS_CONNECTIONS: usize = 64;

/// Open files the process needs besides its connections: store, files, listeners, logs.
const OTHER_OPEN_FILES: u64 = 128;

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
    let limits = within_open_files(config.connections, open_files_limit());
    let listener = TcpListener::bind(config.bind).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        store = %redact_url(&config.store_url),
        max_connections = limits.max_connections,
        "mcp-server listening; MCP endpoint is /mcp"
    );
    let metrics = match config.metrics_bind {
        Some(address) => {
            serve_metrics(address, app.metrics.clone(), app.router.clone(), limits).await
        }
        None => None,
    };
    let purge = tokio::spawn(purge_expired(store));
    let stop = CancellationToken::new();
    let serving = listener::serve(listener, app.router, limits, stop.clone());
    let shutdown = app.shutdown.clone();
    let grace = config.shutdown_grace;
    let stopping = async move {
        stop_signal().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutdown requested; finishing in-flight requests"
        );
        shutdown.cancel();
        stop.cancel();
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = serving => {}
        () = stopping => tracing::warn!("grace period over; closing remaining connections"),
    }
    purge.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    Ok(())
}

/// Serves `GET /metrics` (Prometheus text) on its own listener, apart from `/mcp`, so
/// it can stay on loopback or a private network while MCP is public. A port already taken
/// (a second server on one host) costs the metrics, not the service: logged, and MCP serves on.
/// The health probes are served here too, so they still answer while the MCP listener is
/// at its connection limit.
async fn serve_metrics(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    app: Router,
    limits: ConnectionLimits,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, %address, "metrics listener cannot bind; /metrics is unavailable (set MCP_METRICS_BIND)");
            return None;
        }
    };
    tracing::info!(%address, "metrics at /metrics, probes at /health/live and /health/ready");
    let probe = get(move |request: Request| app.clone().oneshot(request));
    let router = Router::new()
        .route("/metrics", get(prometheus_text))
        .with_state(metrics)
        .route("/health/live", probe.clone())
        .route("/health/ready", probe);
    let limits = ConnectionLimits {
        max_connections: METRICS_CONNECTIONS,
        ..limits
    };
    // Never stopped: the metrics and probes answer until the process exits.
    Some(tokio::spawn(listener::serve(
        listener,
        router,
        limits,
        CancellationToken::new(),
    )))
}

/// `limits` with at most as many connections as the open-file limit leaves room for: past it,
/// accepting fails for both listeners alike, probes included.
fn within_open_files(limits: ConnectionLimits, open_files: Option<u64>) -> ConnectionLimits {
    let Some(open_files) = open_files else {
        return limits;
    };
    let room = open_files.saturating_sub(METRICS_CONNECTIONS as u64 + OTHER_OPEN_FILES);
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if limits.max_connections <= room {
        return limits;
    }
    tracing::warn!(
        open_files,
        configured = limits.max_connections,
        max_connections = room,
        "MCP_MAX_CONNECTIONS lowered to fit the open-file limit; raise the limit (ulimit -n) to \
         serve more"
    );
    ConnectionLimits {
        max_connections: room,
        ..limits
    }
}

/// The soft limit on open files (Linux), which bounds the connections the process can hold.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    soft_open_files(&limits)
}

/// The soft `Max open files` of a `/proc/<pid>/limits` text; `None` when unlimited.
fn soft_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
    use std::time::Duration;

    use super::{ConnectionLimits, redact_url, soft_open_files, within_open_files};

    #[test]
    fn connections_stay_within_the_open_file_limit() {
        let limits = ConnectionLimits {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(75),
            write: Duration::from_secs(30),
            max_connections: 512,
        };
        let fitted = |open_files| within_open_files(limits, open_files).max_connections;
        assert_eq!(fitted(None), 512);
        assert_eq!(fitted(Some(1_048_576)), 512);
        assert_eq!(fitted(Some(1024)), 512);
        assert_eq!(fitted(Some(256)), 64);
        assert_eq!(fitted(Some(16)), 1);
    }

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files(limits), Some(1024));
        assert_eq!(
            soft_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(soft_open_files(""), None);
    }

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
