//! Server configuration: environment variables, overridden by command-line flags.
//!
//! Every setting has one `MCP_*` variable (12-factor) and the common ones a
//! flag too; the README's table lists them all. A malformed value stops the
//! process at start with a message naming the variable, never a silent default.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use clap::Parser;

/// The key used when `MCP_SIGNING_KEY` is unset: fine on a laptop, never in a deployment.
pub const DEV_SIGNING_KEY: &str = "mcp-dev-signing-key-not-for-production-use";
/// Shortest signing key accepted, in bytes (HMAC-SHA256 wants at least its output size).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// Command-line flags for the common settings; each wins over its variable.
#[derive(Debug, Default, Parser)]
#[command(
    name = "mcp-server",
    version,
    about = "Serve MCP over Streamable HTTP at /mcp"
)]
pub struct Flags {
    /// Address to listen on [env: MCP_BIND] [default: 127.0.0.1:8080]
    #[arg(long)]
    pub bind: Option<String>,
    /// Store URL: sqlite://PATH or postgres://… [env: MCP_STORE_URL]
    #[arg(long)]
    pub store_url: Option<String>,
    /// Sliding lifetime of a legacy session, in seconds [env: MCP_SESSION_TTL_SECS]
    #[arg(long)]
    pub session_ttl_secs: Option<String>,
    /// Log format, json or text [env: MCP_LOG_FORMAT]
    #[arg(long)]
    pub log_format: Option<String>,
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Everything the server needs to start, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP listener binds.
    pub bind: SocketAddr,
    /// Which store backs sessions and state.
    pub store_url: String,
    /// Sliding lifetime of a legacy-wire session.
    pub session_ttl: Duration,
    /// `Host` values accepted (DNS-rebinding protection); empty accepts any.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted when a request carries one.
    pub allowed_origins: Vec<String>,
    /// Largest POST body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Key for sealing `requestState` and pagination cursors.
    pub signing_key: Vec<u8>,
    /// True when `signing_key` is the built-in development key.
    pub using_dev_signing_key: bool,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl Config {
    /// Reads the process environment and command line.
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::from_sources(Flags::parse(), &std::env::vars().collect())
    }

    /// Builds a config from flags and an environment map (the testable core).
    pub fn from_sources(flags: Flags, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let lookup = |var: &str| env.get(var).map(String::as_str).filter(|v| !v.is_empty());
        let setting = |flag: Option<String>, var: &str, default: &str| {
            flag.or_else(|| lookup(var).map(str::to_owned))
                .unwrap_or_else(|| default.to_owned())
        };

        let bind = setting(flags.bind, "MCP_BIND", "127.0.0.1:8080");
        let bind = bind
            .parse()
            .map_err(|_| invalid("MCP_BIND", &bind, "expected IP:PORT, e.g. 127.0.0.1:8080"))?;

        let store_url = setting(flags.store_url, "MCP_STORE_URL", "sqlite://./.data/mcp.db");
        crate::store::sql::Backend::of_url(&store_url)
            .map_err(|e| invalid("MCP_STORE_URL", &store_url, e.to_string()))?;

        let session_ttl = setting(flags.session_ttl_secs, "MCP_SESSION_TTL_SECS", "86400");
        let session_ttl = parse_seconds("MCP_SESSION_TTL_SECS", &session_ttl, 60)?;

        let allowed_hosts = list(lookup("MCP_ALLOWED_HOSTS").unwrap_or("localhost,127.0.0.1,::1"));
        let allowed_origins = list(
            lookup("MCP_ALLOWED_ORIGINS")
                .unwrap_or("http://localhost:*,http://127.0.0.1:*,http://[::1]:*"),
        );

        let max_body = lookup("MCP_MAX_BODY_BYTES").unwrap_or("1048576");
        let max_body_bytes = max_body
            .parse::<usize>()
            .ok()
            .filter(|bytes| (1024..=64 * 1024 * 1024).contains(bytes))
            .ok_or_else(|| {
                invalid(
                    "MCP_MAX_BODY_BYTES",
                    max_body,
                    "expected a byte count from 1024 to 67108864",
                )
            })?;

        let (signing_key, using_dev_signing_key) = match lookup("MCP_SIGNING_KEY") {
            Some(key) if key.len() < MIN_SIGNING_KEY_BYTES => {
                return Err(invalid(
                    "MCP_SIGNING_KEY",
                    "<redacted>",
                    format!(
                        "is {} bytes; at least {MIN_SIGNING_KEY_BYTES} are required",
                        key.len()
                    ),
                ));
            }
            Some(key) => (key.as_bytes().to_vec(), false),
            None => (DEV_SIGNING_KEY.as_bytes().to_vec(), true),
        };

        let grace = lookup("MCP_SHUTDOWN_GRACE_SECS").unwrap_or("10");
        let shutdown_grace = parse_seconds("MCP_SHUTDOWN_GRACE_SECS", grace, 0)?;

        let log_format = setting(flags.log_format, "MCP_LOG_FORMAT", "json");
        let log_format = match log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(invalid("MCP_LOG_FORMAT", other, "expected json or text")),
        };

        Ok(Self {
            bind,
            store_url,
            session_ttl,
            allowed_hosts,
            allowed_origins,
            max_body_bytes,
            signing_key,
            using_dev_signing_key,
            shutdown_grace,
            log_format,
        })
    }
}

fn parse_seconds(var: &'static str, value: &str, minimum: u64) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|secs| *secs >= minimum && *secs <= 365 * 24 * 3600)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            invalid(
                var,
                value,
                format!("expected whole seconds from {minimum} to 31536000"),
            )
        })
}

/// A comma-separated list; `*` alone means "accept any" (an empty list).
fn list(value: &str) -> Vec<String> {
    if value.trim() == "*" {
        return Vec::new();
    }
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(Flags::default(), &env)
    }

    #[test]
    fn defaults_serve_loopback_on_sqlite() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.store_url, "sqlite://./.data/mcp.db");
        assert_eq!(config.session_ttl, Duration::from_secs(86400));
        assert!(config.using_dev_signing_key);
        assert_eq!(config.allowed_hosts, ["localhost", "127.0.0.1", "::1"]);
    }

    #[test]
    fn flags_win_over_variables() {
        let env = HashMap::from([("MCP_BIND".to_owned(), "127.0.0.1:1".to_owned())]);
        let flags = Flags {
            bind: Some("127.0.0.1:2".into()),
            ..Flags::default()
        };
        let config = Config::from_sources(flags, &env).expect("valid");
        assert_eq!(config.bind.port(), 2);
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            (
                "MCP_BIND",
                "localhost",
                "expected IP:PORT, e.g. 127.0.0.1:8080",
            ),
            (
                "MCP_STORE_URL",
                "mysql://db",
                "unsupported store URL `mysql://db`: use sqlite://PATH or postgres://…",
            ),
            (
                "MCP_SESSION_TTL_SECS",
                "soon",
                "expected whole seconds from 60 to 31536000",
            ),
            (
                "MCP_SESSION_TTL_SECS",
                "5",
                "expected whole seconds from 60 to 31536000",
            ),
            (
                "MCP_MAX_BODY_BYTES",
                "-1",
                "expected a byte count from 1024 to 67108864",
            ),
            (
                "MCP_SHUTDOWN_GRACE_SECS",
                "1.5",
                "expected whole seconds from 0 to 31536000",
            ),
            ("MCP_LOG_FORMAT", "xml", "expected json or text"),
        ];
        for (var, value, reason) in cases {
            let error = config(&[(var, value)]).expect_err(var);
            assert_eq!(error.var, var);
            assert_eq!(error.reason, reason, "{var}");
        }
    }

    #[test]
    fn short_signing_keys_are_refused_without_echoing_them() {
        let error = config(&[("MCP_SIGNING_KEY", "short-secret")]).expect_err("too short");
        assert_eq!(error.var, "MCP_SIGNING_KEY");
        assert!(!error.to_string().contains("short-secret"));
    }
}
