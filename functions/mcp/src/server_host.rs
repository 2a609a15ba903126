//! The long-running host: tracing, listener, background purge, graceful stop.
//!
//! `bin/mcp-server.rs` is a few lines over these functions and
//! [`crate::backends::open`]; the Lambda host (`lambda_host`) serves the same
//! [`crate::app::build`] service.

use std::{io, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tracing_subscriber::{EnvFilter, fmt};

use crate::{
    app::App,
    config::{Config, KeysTarget, LogFormat},
    store::Store,
};

/// How often expired sessions and documents are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Logs to stdout, level from `RUST_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(io::stdout);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
    let purge = tokio::spawn(purge_expired(store));
    let shutdown = app.shutdown.clone();
    let grace = config.shutdown_grace;
    let server = axum::serve(listener, app.router).with_graceful_shutdown(async move {
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
    result
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
