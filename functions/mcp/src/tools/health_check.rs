//! `health_check`: what this instance is and whether its dependencies answer.

use rmcp::{
    handler::server::wrapper::Json,
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::Serialize;

use super::{ToolError, Toolbox};
use crate::store;

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
    /// The file store behind `file_write` and the `files:///` resources.
    pub files: DependencyHealth,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DependencyHealth {
    /// Backend name, e.g. "sqlite", "postgres", "local", "s3".
    pub backend: &'static str,
    pub reachable: bool,
    /// Round-trip time of the probe, in milliseconds.
    #[serde(rename = "latencyMs")]
    pub latency_ms: f64,
    /// Why the probe failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DependencyHealth {
    /// The health of `dependency` from its probe; the cause of a failure stays in the log.
    fn new(backend: &'static str, probe: store::Probe, dependency: &str) -> Self {
        Self {
            backend,
            reachable: probe.reachable,
            latency_ms: probe.latency_ms,
            error: probe
                .failure
                .map(|_| format!("{dependency} did not answer; see the server log")),
        }
    }
}

#[tool_router(router = health_check_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Report the server's version, host, region, cold-start flag and whether its state store and file store answer, with latency.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn health_check(&self) -> Result<Json<HealthCheckOutput>, ToolError> {
        let context = self.context();
        let (store_probe, files_probe) = tokio::join!(
            store::probe(context.store.as_ref()),
            store::timed_probe("file store", "file store error", context.blobs.ping()),
        );
        let store = DependencyHealth::new(context.store_backend, store_probe, "store");
        let files = DependencyHealth::new(context.blobs.backend(), files_probe, "file store");
        Ok(Json(HealthCheckOutput {
            status: if store.reachable && files.reachable {
                "ok"
            } else {
                "degraded"
            },
            version: env!("CARGO_PKG_VERSION"),
            host: context.host,
            region: context.region.clone(),
            cold_start: context.take_cold_start(),
            uptime_seconds: context.started.elapsed().as_secs(),
            store,
            files,
        }))
    }
}
