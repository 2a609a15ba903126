//! Operational runbooks as MCP prompts: high latency, high error rate, cost spike, store outage,
//! recovery from a bad deploy or lost data.
//!
//! Each prompt turns its arguments into a step-by-step plan an assistant can
//! follow with this server's own tools (`health_check`) and the operator
//! scripts (`scripts/health-check.sh`, `scripts/provision-aws-startup.sh`). Thresholds are the
//! service targets: P95 under 500 ms, error rate under 1 %, a $50 monthly billing alarm.

use rmcp::{
    ErrorData,
    handler::server::wrapper::Parameters,
    model::{GetPromptResult, PromptMessage, Role},
    prompt, prompt_router,
    schemars::{self, JsonSchema},
};
use serde::Deserialize;

/// The runbooks, dispatched to by the MCP handler through their prompt router; they need
/// nothing of the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Runbooks;

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

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RestoreArgs {
    /// Environment to recover: dev, staging or prod.
    pub environment: String,
    /// The moment to restore the table to, in RFC 3339 (e.g. 2026-05-04T09:40:00Z): just
    /// before the loss. Without it, the latest restorable time.
    #[serde(default)]
    pub restore_to: Option<String>,
}

/// The recovery runbook: roll back, check the backups, rehearse, restore, verify.
fn restore_runbook(args: RestoreArgs) -> Result<GetPromptResult, ErrorData> {
    let env = args.environment;
    // The stacks the provisioning script knows; anything else names no table to restore.
    if !matches!(env.as_str(), "dev" | "staging" | "prod") {
        return Err(ErrorData::invalid_params(
            format!("environment must be dev, staging or prod, got '{env}'"),
            None,
        ));
    }
    let point = match args.restore_to.as_deref() {
        None | Some("") => "--use-latest-restorable-time".to_owned(),
        Some(time) => {
            chrono::DateTime::parse_from_rfc3339(time).map_err(|error| {
                ErrorData::invalid_params(
                    format!("restore_to must be an RFC 3339 time such as 2026-05-04T09:40:00Z, got '{time}': {error}"),
                    None,
                )
            })?;
            format!("--restore-date-time {time}")
        }
    };
    let confirm = if env == "prod" {
        " In prod it asks you to type prod first."
    } else {
        ""
    };
    Ok(runbook(
        format!("Recovery of {env}"),
        format!(
            "Recovery of the {env} environment (stack, table and function mcp-{env}). Run each step with `scripts/provision-aws-startup.sh`; add `--dry-run` to see its aws commands first.\n\n\
             1. Stop the damage: if it began with a deploy, `--action rollback --env {env}` stops a deployment in progress (CodeDeploy points the alias live back) or points the alias at the version before; `--function authorizer` does the same for the authorizer.{confirm}\n\
             2. Know what you can restore: `--action backup-verify --env {env}` reports point-in-time recovery and its restorable window, the files bucket's versioning and the signing keys' rotation age, and exits 1 naming what is off.\n\
             3. Rehearse: `--action restore-drill --env {env} --keep` restores the table to its latest restorable time into a scratch table, compares the STATE, SESSION and RATE item counts, reports the restore point and the time taken, and keeps the copy to inspect.\n\
             4. Restore: `aws dynamodb restore-table-to-point-in-time --source-table-name mcp-{env} --target-table-name mcp-{env}-restored {point}`, with `--sse-specification-override Enabled=true,SSEType=KMS,KMSMasterKeyId=alias/mcp-{env}` where the stack has its own key. The stack keeps its table, so copy what was lost (the STATE#<principal> items of the callers affected) from the restored table back; sessions and rate buckets rebuild themselves. A lost file: `aws s3api list-object-versions` on the files bucket, then copy the version before the loss back over it.\n\
             5. Verify: `--action health --env {env}`, then `state_list` as an affected caller.\n\
             6. Clean up: delete the scratch and restored tables (`aws dynamodb delete-table`); they are billed until then."
        ),
    ))
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
impl Runbooks {
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

    /// Runbook for recovering from a bad deploy or lost data: rollback, backup check, restore drill, restore.
    #[prompt(name = "runbook_restore")]
    async fn runbook_restore(
        &self,
        Parameters(args): Parameters<RestoreArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        restore_runbook(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(result: &GetPromptResult) -> &str {
        let content = &result.messages[0].content;
        content
            .as_text()
            .map(|text| text.text.as_str())
            .unwrap_or_else(|| panic!("not text: {content:?}"))
    }

    fn args(environment: &str, restore_to: Option<&str>) -> RestoreArgs {
        RestoreArgs {
            environment: environment.to_owned(),
            restore_to: restore_to.map(str::to_owned),
        }
    }

    #[test]
    fn the_restore_runbook_is_listed_with_its_arguments() {
        let prompts = Runbooks::prompt_router().list_all();
        let restore = prompts
            .iter()
            .find(|prompt| prompt.name == "runbook_restore")
            .expect("runbook_restore is listed");
        let arguments: Vec<_> = restore
            .arguments
            .iter()
            .flatten()
            .map(|argument| (argument.name.as_str(), argument.required))
            .collect();
        assert_eq!(
            arguments,
            [("environment", Some(true)), ("restore_to", Some(false))]
        );
    }

    #[test]
    fn the_restore_runbook_walks_through_the_recovery_actions_in_order() {
        let result = restore_runbook(args("prod", None)).expect("a runbook");
        assert_eq!(result.description.as_deref(), Some("Recovery of prod"));
        let steps = text(&result);
        let order = [
            "--action rollback --env prod",
            "In prod it asks you to type prod first.",
            "--action backup-verify --env prod",
            "--action restore-drill --env prod --keep",
            "--source-table-name mcp-prod --target-table-name mcp-prod-restored --use-latest-restorable-time",
            "--action health --env prod",
        ];
        let positions: Vec<_> = order
            .iter()
            .map(|step| steps.find(step).unwrap_or_else(|| panic!("{step} missing")))
            .collect();
        assert!(positions.is_sorted(), "{positions:?}");

        let dev = restore_runbook(args("dev", Some("2026-05-04T09:40:00Z"))).expect("a runbook");
        assert!(text(&dev).contains("--restore-date-time 2026-05-04T09:40:00Z"));
        assert!(!text(&dev).contains("type prod"));
    }

    #[test]
    fn the_restore_runbook_refuses_an_unknown_environment_or_a_malformed_time() {
        let unknown = restore_runbook(args("local", None)).expect_err("refused");
        assert_eq!(
            unknown.message,
            "environment must be dev, staging or prod, got 'local'"
        );
        let malformed = restore_runbook(args("dev", Some("yesterday 9:40"))).expect_err("refused");
        assert_eq!(
            malformed.message,
            "restore_to must be an RFC 3339 time such as 2026-05-04T09:40:00Z, got 'yesterday 9:40': premature end of input"
        );
    }
}
