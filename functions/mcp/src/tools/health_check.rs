//! `health_check`: what this instance is and whether its dependencies answer.

use rmcp::{
    handler::server::wrapper::Json,
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::Serialize;

use super::ToolError;
use crate::{server::McpServer, store};

#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthCheckOutput {
    /// "ok" when every dependency answered, "degraded" otherwise.
    pub status: &'static str,
    /// Version of the server build.
    pub version: &'static str,
    /// Which host runs the service: "server" or "lambda".
    pub host: &'static str,
    /// AWS region, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// True on the first call this process has served.
    #[serde(rename = "coldStart")]
    pub cold_start: bool,
    /// Seconds since the process started.
    #[serde(rename = "uptimeSeconds")]
    pub uptime_seconds: u64,
    pub store: DependencyHealth,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DependencyHealth {
    /// Backend name, e.g. "sqlite", "postgres".
    pub backend: &'static str,
    pub reachable: bool,
    /// Round-trip time of the probe, in milliseconds.
    #[serde(rename = "latencyMs")]
    pub latency_ms: f64,
    /// Why the probe failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[tool_router(router = health_check_router, vis = "pub(crate)")]
impl McpServer {
    #[tool(
        description = "Report the server's version, host, region, cold-start flag and whether its state store answers, with latency.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn health_check(&self) -> Result<Json<HealthCheckOutput>, ToolError> {
        let context = self.context();
        let probe = store::probe(context.store.as_ref()).await;
        let store = DependencyHealth {
            backend: context.store_backend,
            reachable: probe.reachable,
            latency_ms: probe.latency_ms,
            error: probe
                .failure
                .map(|_| "store did not answer; see the server log".to_owned()),
        };
        Ok(Json(HealthCheckOutput {
            status: if store.reachable { "ok" } else { "degraded" },
            version: env!("CARGO_PKG_VERSION"),
            host: context.host,
            region: context.region.clone(),
            cold_start: context.take_cold_start(),
            uptime_seconds: context.started.elapsed().as_secs(),
            store,
        }))
    }
}
