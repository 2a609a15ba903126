//! The product's metrics: one registry of names and labels for both hosts.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mcp_requests_total` | counter | `method`, `status` |
//! | `mcp_request_duration_seconds` | histogram | `method` |
//! | `mcp_errors_total` | counter | `method`, `code` |
//! | `mcp_active_sessions` | gauge | |
//! | `mcp_tool_calls_total` | counter | `tool`, `outcome` |
//! | `mcp_store_operations_total` | counter | `store`, `op` |
//! | `mcp_store_duration_seconds` | histogram | `store`, `op` |
//! | `mcp_auth_failures_total` | counter | `reason` |
//! | `mcp_rate_limited_total` | counter | |
//!
//! Every value goes into a prometheus-client registry ([`Metrics::encode`] renders it for
//! `/metrics`); on Lambda each value is also kept until the invocation ends, when
//! [`Metrics::take_samples`] hands them to the EMF writer ([`super::emf`]).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

/// One label: its name and value.
pub type Label = (&'static str, String);

/// The metric names, shared by the Prometheus and the EMF output.
pub mod names {
    pub const REQUESTS: &str = "mcp_requests_total";
    pub const REQUEST_DURATION: &str = "mcp_request_duration_seconds";
    pub const ERRORS: &str = "mcp_errors_total";
    pub const ACTIVE_SESSIONS: &str = "mcp_active_sessions";
    pub const TOOL_CALLS: &str = "mcp_tool_calls_total";
    pub const STORE_OPERATIONS: &str = "mcp_store_operations_total";
    pub const STORE_DURATION: &str = "mcp_store_duration_seconds";
    pub const AUTH_FAILURES: &str = "mcp_auth_failures_total";
    pub const RATE_LIMITED: &str = "mcp_rate_limited_total";
}

/// The JSON-RPC methods reported by name; any other is reported as `other`.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// What a value is, for EMF's `Unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Seconds => "Seconds",
        }
    }
}

/// One recorded value, as the EMF writer receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub unit: Unit,
    pub labels: Vec<Label>,
    pub value: f64,
}

type CounterFamily<const N: usize> = Family<[Label; N], Counter>;
type HistogramFamily<const N: usize> = Family<[Label; N], Histogram, fn() -> Histogram>;

/// Request and store latencies: 0.5 ms to about 16 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The process's metrics; one per built service, shared by every layer.
pub struct Metrics {
    registry: Registry,
    requests: CounterFamily<2>,
    request_duration: HistogramFamily<1>,
    errors: CounterFamily<2>,
    active_sessions: Gauge,
    tool_calls: CounterFamily<2>,
    store_operations: CounterFamily<2>,
    store_duration: HistogramFamily<2>,
    auth_failures: CounterFamily<1>,
    rate_limited: Counter,
    /// The tools reported by name; a call of any other is reported as `unknown`.
    tools: HashSet<String>,
    /// Legacy sessions live in this process, counted for `mcp_active_sessions`.
    sessions: Option<Arc<LocalSessionManager>>,
    /// Values not yet written as EMF; `None` when this host does not write EMF.
    pending: Option<Mutex<Vec<Sample>>>,
}

impl Metrics {
    /// A registry with every metric at zero. `emf` keeps each value for [`Self::take_samples`].
    pub fn new(
        tools: HashSet<String>,
        sessions: Option<Arc<LocalSessionManager>>,
        emf: bool,
    ) -> Self {
        let mut registry = Registry::default();
        let requests = CounterFamily::<2>::default();
        let request_duration = HistogramFamily::<1>::new_with_constructor(latency_histogram as _);
        let errors = CounterFamily::<2>::default();
        let active_sessions = Gauge::default();
        let tool_calls = CounterFamily::<2>::default();
        let store_operations = CounterFamily::<2>::default();
        let store_duration = HistogramFamily::<2>::new_with_constructor(latency_histogram as _);
        let auth_failures = CounterFamily::<1>::default();
        let rate_limited = Counter::default();
        // prometheus-client appends `_total` to counters itself.
        let counter_name = |name: &'static str| name.trim_end_matches("_total");
        registry.register(
            counter_name(names::REQUESTS),
            "MCP requests by JSON-RPC method and HTTP status",
            requests.clone(),
        );
        registry.register(
            names::REQUEST_DURATION,
            "Time to answer an MCP request, by method",
            request_duration.clone(),
        );
        registry.register(
            counter_name(names::ERRORS),
            "Requests answered with an error, by method and JSON-RPC code (or http_<status>)",
            errors.clone(),
        );
        registry.register(
            names::ACTIVE_SESSIONS,
            "Legacy-wire sessions held by this process",
            active_sessions.clone(),
        );
        registry.register(
            counter_name(names::TOOL_CALLS),
            "Tool calls by tool and outcome (ok, tool_error, rpc_error, timeout, cancelled, unknown_tool)",
            tool_calls.clone(),
        );
        registry.register(
            counter_name(names::STORE_OPERATIONS),
            "Store and file-store operations by backend and operation",
            store_operations.clone(),
        );
        registry.register(
            names::STORE_DURATION,
            "Time of a store or file-store operation",
            store_duration.clone(),
        );
        registry.register(
            counter_name(names::AUTH_FAILURES),
            "Requests refused by authentication or authorization, by reason",
            auth_failures.clone(),
        );
        registry.register(
            counter_name(names::RATE_LIMITED),
            "Requests refused by the per-caller rate limit",
            rate_limited.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            errors,
            active_sessions,
            tool_calls,
            store_operations,
            store_duration,
            auth_failures,
            rate_limited,
            tools,
            sessions,
            pending: emf.then(Mutex::default),
        }
    }

    /// A registry that reports nothing by name (tests of single layers).
    pub fn detached() -> Arc<Self> {
        Arc::new(Self::new(HashSet::new(), None, false))
    }

    /// The `method` label of a JSON-RPC method name.
    pub fn method_label(method: &str) -> &str {
        KNOWN_METHODS
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or("other")
    }

    /// The `tool` label of a tool name.
    pub fn tool_label<'a>(&self, tool: &'a str) -> &'a str {
        if self.tools.contains(tool) {
            tool
        } else {
            "unknown"
        }
    }

    /// One answered request.
    pub fn request(&self, method: &str, status: u16, seconds: f64) {
        let method = method.to_owned();
        self.count(
            &self.requests,
            names::REQUESTS,
            [("method", method.clone()), ("status", status.to_string())],
        );
        let labels = [("method", method)];
        self.request_duration
            .get_or_create(&labels)
            .observe(seconds);
        self.keep(names::REQUEST_DURATION, Unit::Seconds, &labels, seconds);
    }

    /// One request answered with an error (`code`: the JSON-RPC code or `http_<status>`).
    pub fn error(&self, method: &str, code: &str) {
        self.count(
            &self.errors,
            names::ERRORS,
            [("method", method.to_owned()), ("code", code.to_owned())],
        );
    }

    /// One tool call; `tool` must already be a label ([`Self::tool_label`]).
    pub fn tool_call(&self, tool: &str, outcome: &'static str) {
        self.count(
            &self.tool_calls,
            names::TOOL_CALLS,
            [("tool", tool.to_owned()), ("outcome", outcome.to_owned())],
        );
    }

    /// One store or file-store operation.
    pub fn store_operation(&self, store: &'static str, op: &'static str, seconds: f64) {
        let labels = [("store", store.to_owned()), ("op", op.to_owned())];
        self.count(
            &self.store_operations,
            names::STORE_OPERATIONS,
            labels.clone(),
        );
        self.store_duration.get_or_create(&labels).observe(seconds);
        self.keep(names::STORE_DURATION, Unit::Seconds, &labels, seconds);
    }

    /// One request refused by authentication or authorization.
    pub fn auth_failure(&self, reason: &'static str) {
        self.count(
            &self.auth_failures,
            names::AUTH_FAILURES,
            [("reason", reason.to_owned())],
        );
    }

    /// One request refused by the rate limiter.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
        self.keep(names::RATE_LIMITED, Unit::Count, &[], 1.0);
    }

    /// Reads the number of live legacy sessions into `mcp_active_sessions`.
    pub async fn sample_sessions(&self) -> i64 {
        let count = match &self.sessions {
            Some(sessions) => sessions.sessions.read().await.len() as i64,
            None => 0,
        };
        self.active_sessions.set(count);
        count
    }

    /// The registry as Prometheus text (OpenMetrics 1.0), sessions sampled now.
    pub async fn encode(&self) -> String {
        self.sample_sessions().await;
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// The values recorded since the last call (EMF hosts), with the active sessions now.
    pub async fn take_samples(&self) -> Vec<Sample> {
        let sessions = self.sample_sessions().await;
        let Some(pending) = &self.pending else {
            return Vec::new();
        };
        let mut samples = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
        samples.push(Sample {
            name: names::ACTIVE_SESSIONS,
            unit: Unit::Count,
            labels: Vec::new(),
            value: sessions as f64,
        });
        samples
    }

    fn count<const N: usize>(
        &self,
        family: &CounterFamily<N>,
        name: &'static str,
        labels: [Label; N],
    ) {
        family.get_or_create(&labels).inc();
        self.keep(name, Unit::Count, &labels, 1.0);
    }

    fn keep(&self, name: &'static str, unit: Unit, labels: &[Label], value: f64) {
        if let Some(pending) = &self.pending {
            pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Sample {
                    name,
                    unit,
                    labels: labels.to_vec(),
                    value,
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_cannot_invent_label_values() {
        assert_eq!(Metrics::method_label("tools/call"), "tools/call");
        assert_eq!(Metrics::method_label("tools/call-\u{1}-random"), "other");
        let metrics = Metrics::new(HashSet::from(["echo".to_owned()]), None, false);
        assert_eq!(metrics.tool_label("echo"), "echo");
        assert_eq!(metrics.tool_label("no-such-tool"), "unknown");
    }

    #[tokio::test]
    async fn the_text_names_every_metric_once_used() {
        let metrics = Metrics::new(HashSet::new(), None, false);
        metrics.request("tools/call", 200, 0.002);
        metrics.rate_limited();
        let text = metrics.encode().await;
        assert!(text.contains("mcp_requests_total{method=\"tools/call\",status=\"200\"} 1\n"));
        assert!(text.contains("mcp_request_duration_seconds_count{method=\"tools/call\"} 1\n"));
        assert!(text.contains("mcp_rate_limited_total 1\n"));
        assert!(text.contains("mcp_active_sessions 0\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn emf_hosts_get_each_value_once() {
        let metrics = Metrics::new(HashSet::new(), None, true);
        metrics.store_operation("sqlite", "get", 0.001);
        let samples = metrics.take_samples().await;
        let names: Vec<_> = samples.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                names::STORE_OPERATIONS,
                names::STORE_DURATION,
                names::ACTIVE_SESSIONS
            ]
        );
        assert_eq!(
            metrics.take_samples().await.len(),
            1,
            "only the gauge again"
        );
    }
}
