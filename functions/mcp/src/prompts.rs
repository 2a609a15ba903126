//! Operational runbooks as MCP prompts: high latency, high error rate, cost spike, store outage.
//!
//! Each prompt turns its arguments into a step-by-step plan an assistant can
//! follow with this server's own tools (`health_check`) and the operator
//! scripts (`scripts/health-check.sh`). Thresholds are the service targets:
//! P95 under 500 ms, error rate under 1 %, a $50 monthly billing alarm.

use rmcp::{
    ErrorData,
    handler::server::wrapper::Parameters,
    model::{GetPromptResult, PromptMessage, Role},
    prompt, prompt_router,
    schemars::{self, JsonSchema},
};
use serde::Deserialize;

use crate::server::McpServer;

/// Latency objective at the 95th percentile, in milliseconds.
pub const P95_TARGET_MS: u32 = 500;
/// Error-rate objective, in percent of requests.
pub const ERROR_RATE_TARGET_PERCENT: f64 = 1.0;
/// Default monthly billing alarm, in US dollars.
pub const BILLING_ALARM_USD: u32 = 50;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct HighLatencyArgs {
    /// Environment affected: local, staging or prod.
    pub environment: String,
    /// Observed P95 latency in milliseconds, if known.
    #[serde(default)]
    pub observed_p95_ms: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct HighErrorRateArgs {
    /// Environment affected: local, staging or prod.
    pub environment: String,
    /// Observed error rate in percent, if known.
    #[serde(default)]
    pub observed_error_rate_percent: Option<String>,
    /// When the last deployment happened, if known (e.g. "2 hours ago").
    #[serde(default)]
    pub last_deploy: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CostSpikeArgs {
    /// Month-to-date spend in US dollars, if known.
    #[serde(default)]
    pub month_to_date_usd: Option<String>,
    /// The AWS service that grew the most, if known (e.g. "AWS Lambda").
    #[serde(default)]
    pub top_service: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StoreOutageArgs {
    /// Environment affected: local, staging or prod.
    pub environment: String,
    /// Which store: dynamodb, postgres or sqlite (defaults to the environment's usual one).
    #[serde(default)]
    pub store: Option<String>,
}

fn runbook(description: String, steps: String) -> GetPromptResult {
    GetPromptResult::new(vec![PromptMessage::new_text(Role::User, steps)])
        .with_description(description)
}

fn usual_store(environment: &str) -> &'static str {
    match environment {
        "prod" => "dynamodb",
        "staging" => "postgres",
        _ => "sqlite",
    }
}

#[prompt_router(vis = "pub(crate)")]
impl McpServer {
    /// Runbook for P95 latency above the 500 ms objective.
    #[prompt(name = "runbook_high_latency")]
    async fn runbook_high_latency(
        &self,
        Parameters(args): Parameters<HighLatencyArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        let observed = args
            .observed_p95_ms
            .map(|ms| format!("Observed P95: {ms} ms (objective {P95_TARGET_MS} ms)."))
            .unwrap_or_else(|| format!("Objective: P95 under {P95_TARGET_MS} ms, P99 under 1 s."));
        Ok(runbook(
            format!("High latency in {}", args.environment),
            format!(
                "Alert: high latency in the {env} environment. {observed}\n\n\
                 1. Assess (0-5 min): run `scripts/health-check.sh {env}` and call the `health_check` tool; note store latency (DynamoDB should answer in under 10 ms).\n\
                 2. Locate: compare P50/P95/P99 on the dashboard; if only P99 moved, suspect Lambda cold starts (100-1000 ms) and consider provisioned concurrency; if all moved, suspect the store or a slow tool.\n\
                 3. Store: check throttling (DynamoDB ThrottledRequests, RDS CPU and connections); on PostgreSQL look at pg_stat_statements for the slowest queries.\n\
                 4. Compute: check Lambda duration and memory (more memory also means more CPU) or EC2 CPU on staging.\n\
                 5. Mitigate: roll back a recent deployment if latency rose with it; raise memory or concurrency; rate-limit the heaviest caller.\n\
                 6. Close: confirm P95 is back under {P95_TARGET_MS} ms for 15 minutes, then write the incident note.",
                env = args.environment,
            ),
        ))
    }

    /// Runbook for an error rate above the 1 % objective.
    #[prompt(name = "runbook_high_error_rate")]
    async fn runbook_high_error_rate(
        &self,
        Parameters(args): Parameters<HighErrorRateArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        let observed = args
            .observed_error_rate_percent
            .map(|rate| {
                format!(
                    "Observed error rate: {rate} % (objective under {ERROR_RATE_TARGET_PERCENT} %)."
                )
            })
            .unwrap_or_else(|| {
                format!("Objective: error rate under {ERROR_RATE_TARGET_PERCENT} %.")
            });
        let deploy = args
            .last_deploy
            .map(|when| format!("The last deployment was {when}; treat it as the first suspect."))
            .unwrap_or_else(|| "Find when the last deployment happened.".to_owned());
        Ok(runbook(
            format!("High error rate in {}", args.environment),
            format!(
                "Alert: high error rate in the {env} environment. {observed} {deploy}\n\n\
                 Initial response (5 min): check the dashboard for which methods and tools fail and whether they are 4xx (callers) or 5xx (us); run `scripts/health-check.sh {env}`.\n\
                 Investigation (15 min): read the error logs by request id; check store connectivity with the `health_check` tool; verify dependencies (Secrets Manager, S3); review recent changes.\n\
                 Mitigation: deployment issue -> roll back; resource issue -> scale up (memory, concurrency, instance size); dependency issue -> shed or throttle the failing path; database issue -> fail over or restore.\n\
                 Resolution: fix the root cause, deploy, watch the error rate stay under {ERROR_RATE_TARGET_PERCENT} % for an hour.\n\
                 Post-incident: write the incident report, update this runbook, schedule the post-mortem.",
                env = args.environment,
            ),
        ))
    }

    /// Runbook for an unexpected rise in the AWS bill.
    #[prompt(name = "runbook_cost_spike")]
    async fn runbook_cost_spike(
        &self,
        Parameters(args): Parameters<CostSpikeArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        let spend = args
            .month_to_date_usd
            .map(|usd| {
                format!("Month-to-date spend: ${usd} (billing alarm at ${BILLING_ALARM_USD}).")
            })
            .unwrap_or_else(|| format!("The billing alarm fires at ${BILLING_ALARM_USD} a month."));
        let service = args
            .top_service
            .map(|name| format!("Start with {name}, the service that grew the most."))
            .unwrap_or_else(|| "Find the service that grew the most.".to_owned());
        Ok(runbook(
            "AWS cost spike".to_owned(),
            format!(
                "Alert: cost spike. {spend} {service}\n\n\
                 1. Immediate: run `scripts/cost-report.sh` (aws ce get-cost-and-usage grouped by service) and compare with last month.\n\
                 2. Traffic: check API Gateway request counts and the top callers; a crawler once sent 10K requests an hour, so look for one principal dominating.\n\
                 3. Short term: lower API Gateway throttling or the per-user rate limit, disable non-critical features, and stop idle staging instances.\n\
                 4. Storage: check DynamoDB consumed capacity, S3 bytes and lifecycle rules, CloudWatch log ingestion and retention.\n\
                 5. Long term: right-size Lambda memory and RDS, review provisioned concurrency, keep the budget alerts at 50/80/100 %."
            ),
        ))
    }

    /// Runbook for a state store (DynamoDB, PostgreSQL or SQLite) that does not answer.
    #[prompt(name = "runbook_store_outage")]
    async fn runbook_store_outage(
        &self,
        Parameters(args): Parameters<StoreOutageArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        let store = args
            .store
            .unwrap_or_else(|| usual_store(&args.environment).to_owned());
        let specific = match store.as_str() {
            "dynamodb" => {
                "Check the table's status, throttling and the AWS Health Dashboard for the region; confirm the function's role still allows the table; point-in-time recovery can restore the table to any second of the last 35 days."
            }
            "postgres" => {
                "Check the RDS instance status, CPU, free storage and connection count; confirm the security group still allows the app tier; fail over or restore from the latest automated backup."
            }
            _ => {
                "Check disk space and permissions on the .data folder; the SQLite file can be copied aside and restored from a backup copy."
            }
        };
        Ok(runbook(
            format!("{store} outage in {}", args.environment),
            format!(
                "Alert: the {store} store of the {env} environment is not answering; /health/ready returns 503.\n\n\
                 1. Assess (0-5 min): run `scripts/health-check.sh {env}`; readiness shows which dependency is down and for how long.\n\
                 2. Contain: sessions and state are unavailable while the store is down; stateless calls that touch no state (echo, get_time) keep working, so keep the service up rather than restarting it in a loop.\n\
                 3. Diagnose: {specific}\n\
                 4. Recover: once the store answers, /health/ready turns 200 by itself; legacy clients whose sessions were lost get 404 and re-initialize.\n\
                 5. Verify: call `health_check` and `state_list`, and check that no data was lost against the latest backup.",
                env = args.environment,
            ),
        ))
    }
}
