//! Durable tasks (SEP-2663, the `io.modelcontextprotocol/tasks` extension): a tool call the
//! client lets run in the background, with its state in the store so that any instance can
//! answer `tasks/get`, `tasks/update` and `tasks/cancel`, and the work can run elsewhere.
//!
//! A task-capable tool is a [`Job`]: a function of its arguments and the answers gathered so
//! far that either ends ([`JobOutcome::Done`], [`JobOutcome::Failed`]) or asks the client
//! something ([`JobOutcome::NeedsInput`]). Asking parks the task as `input_required`; once
//! `tasks/update` has answered every question, the job runs again from the start with the
//! answers, like an MRTR round. No run ever waits for a client, so no instance is held
//! while a person thinks.
//!
//! The life of a task, all in one store record ([`TaskBody`]):
//!
//! 1. [`start`] writes the record (status `working`, round 1) before it answers, so a
//!    `tasks/get` right after the `CreateTaskResult` finds it on any instance, then starts a
//!    run: in process on `mcp-server`, an asynchronous `Invoke` of the same function on
//!    Lambda ([`RunStarter`]), never work left running after a Lambda response.
//! 2. [`run`] claims the round with a compare-and-set (a duplicate or late delivery of the
//!    same run claims nothing), runs the job within the run limit while it reads the record
//!    every poll interval for a cancellation, and settles the outcome, again by
//!    compare-and-set, unless the task was cancelled or settled meanwhile.
//! 3. [`update`] files answers to pending questions (other keys are ignored) and starts the
//!    next round once none is left; [`cancel`] settles a live task as `cancelled`.
//!
//! Invariants: every record is read and written under its owner's principal, so another
//! principal's task id answers exactly like an unknown one (-32602); a round runs at most
//! once; a settled task never changes again; a run that died without settling shows as
//! `failed` once its deadline has passed.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rmcp::{
    ErrorData,
    model::{
        CallToolResult, DetailedTask, InputRequests, JsonObject, Task, TaskPayload, TaskStatus,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    context::ServerContext,
    fault::rpc_error,
    principal::Principal,
    store::{Store, StoreError, now_millis, tasks::checked_body, ttl_millis},
};

/// How long a task stays visible after its last change (`ttlMs`).
pub const TASK_TTL: Duration = Duration::from_secs(60 * 60);

/// How often clients are asked to poll `tasks/get` (`pollIntervalMs`).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a started run may take to be picked up (an asynchronous invocation queues)
/// before the task shows as failed.
const START_GRACE: Duration = Duration::from_secs(60);

/// How often a change to a record is retried when other writers keep winning.
const MAX_CHANGE_ATTEMPTS: usize = 8;

/// What a job gets for one run.
pub struct JobInput {
    pub context: Arc<ServerContext>,
    pub principal: Principal,
    pub arguments: JsonObject,
    /// Answers to the job's earlier questions, by the keys it asked them under.
    pub input_responses: JsonObject,
}

/// How one run of a job ended.
#[derive(Clone)]
pub enum JobOutcome {
    /// The tool's result; a tool error is a result with `isError` (status `completed`).
    Done(CallToolResult),
    /// A protocol-level failure (status `failed`).
    Failed(ErrorData),
    /// Questions for the client, keyed so the answers can be told apart.
    NeedsInput(InputRequests),
}

impl JobOutcome {
    /// The outcome's name for the log line.
    fn kind(&self) -> &'static str {
        match self {
            Self::Done(result) if result.is_error == Some(true) => "tool_error",
            Self::Done(_) => "completed",
            Self::Failed(_) => "failed",
            Self::NeedsInput(_) => "input_required",
        }
    }
}

/// A task-capable tool's work.
pub type Job = Arc<dyn Fn(JobInput) -> BoxFuture<'static, JobOutcome> + Send + Sync>;

/// The jobs of the task-capable tools, by tool name.
#[derive(Clone, Default)]
pub struct TaskJobs(HashMap<&'static str, Job>);

impl TaskJobs {
    /// Registers `job` as the task form of tool `name`.
    pub fn with<F>(mut self, name: &'static str, job: F) -> Self
    where
        F: Fn(JobInput) -> BoxFuture<'static, JobOutcome> + Send + Sync + 'static,
    {
        self.0.insert(name, Arc::new(job));
        self
    }

    /// Adds every job of `other`.
    pub fn merged(mut self, other: TaskJobs) -> Self {
        self.0.extend(other.0);
        self
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn get(&self, name: &str) -> Option<Job> {
        self.0.get(name).cloned()
    }
}

/// How a run is started.
#[derive(Clone)]
pub enum RunStarter {
    /// A task of this process (`mcp-server`, and tests).
    InProcess,
    /// An asynchronous invocation of a Lambda function (`mcp-lambda` invokes itself).
    Invoke(Arc<LambdaInvoker>),
}

/// Starts runs as asynchronous invocations (`InvocationType=Event`) of one function.
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaInvoker {
    pub fn new(client: aws_sdk_lambda::Client, function: String) -> Self {
        Self { client, function }
    }

    async fn invoke(&self, run: &TaskRun) -> Result<(), String> {
        let payload = serde_json::to_vec(&TaskRunEvent { run: run.clone() })
            .map_err(|error| error.to_string())?;
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map(drop)
            .map_err(|error| aws_sdk_lambda::error::DisplayErrorContext(error).to_string())
    }
}

/// The tasks of one service: which tools are task-capable, how runs start, and their bounds.
#[derive(Clone)]
pub struct Tasks {
    jobs: TaskJobs,
    starter: RunStarter,
    /// How often a run reads its record for a cancellation.
    poll: Duration,
    /// How long one run may take; then the task fails.
    run_limit: Duration,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new(
            TaskJobs::default(),
            RunStarter::InProcess,
            POLL_INTERVAL,
            Duration::from_secs(crate::config::DEFAULT_STREAM_MAX_SECS),
        )
    }
}

impl Tasks {
    pub fn new(jobs: TaskJobs, starter: RunStarter, poll: Duration, run_limit: Duration) -> Self {
        Self {
            jobs,
            starter,
            poll,
            run_limit,
        }
    }

    /// Whether tool `name` can run as a task.
    pub fn offers(&self, name: &str) -> bool {
        self.jobs.has(name)
    }
}

/// One run to start: which task, of whom. The payload of the asynchronous invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskRun {
    pub principal: String,
    pub task_id: String,
}

/// The whole event of an asynchronous task invocation: `{"mcpTaskRun": {…}}`, a shape no
/// API Gateway or function URL event has.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRunEvent {
    #[serde(rename = "mcpTaskRun")]
    run: TaskRun,
}

impl TaskRun {
    /// The run an invocation event asks for, if it is a task event at all.
    pub fn from_event(event: &Value) -> Option<Self> {
        event.get("mcpTaskRun")?;
        TaskRunEvent::deserialize(event).ok().map(|event| event.run)
    }
}

/// A task as stored: the tool and what it was called with, the wire-visible task, and the
/// bookkeeping of its rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskBody {
    tool: String,
    arguments: JsonObject,
    #[serde(flatten)]
    task: Task,
    /// Questions still waiting for an answer.
    #[serde(default)]
    input_requests: InputRequests,
    /// Answers given so far, by question key.
    #[serde(default)]
    input_responses: JsonObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<JsonObject>,
    /// The round that should run; the next one starts once every question is answered.
    round: u32,
    /// The last round a run claimed.
    claimed: u32,
    /// When a `working` task without a settled run counts as failed (epoch ms).
    run_deadline: i64,
}

impl TaskBody {
    fn to_json(&self) -> Result<String, StoreError> {
        let json = serde_json::to_string(self).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        checked_body(&json)?;
        Ok(json)
    }

    fn from_json(json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("task record: {e}")))
    }

    /// The task as `tasks/get` shows it.
    fn detailed(&self, now: i64) -> DetailedTask {
        let payload = match self.task.status {
            TaskStatus::Working if now > self.run_deadline => TaskPayload::Failed {
                error: error_object(&ErrorData::internal_error(
                    "the task's run stopped before it finished (it ran out of time or its \
                     instance failed); start the call again",
                    None,
                )),
            },
            TaskStatus::InputRequired => TaskPayload::InputRequired {
                input_requests: self.input_requests.clone(),
            },
            TaskStatus::Completed => TaskPayload::Completed {
                result: self.result.clone().unwrap_or_default(),
            },
            TaskStatus::Failed => TaskPayload::Failed {
                error: self.error.clone().unwrap_or_default(),
            },
            TaskStatus::Cancelled => TaskPayload::Cancelled,
            _ => TaskPayload::Working,
        };
        DetailedTask::new(self.task.clone(), payload)
    }

    /// Settles the round with `outcome`: a result or error, or the questions still open.
    fn settle(&mut self, outcome: JobOutcome) {
        self.input_requests.clear();
        match outcome {
            JobOutcome::Done(result) => {
                self.task.status = TaskStatus::Completed;
                self.result = Some(result_object(&result));
            }
            JobOutcome::Failed(error) => {
                self.task.status = TaskStatus::Failed;
                self.error = Some(error_object(&error));
            }
            JobOutcome::NeedsInput(requests) => {
                let pending: InputRequests = requests
                    .into_iter()
                    .filter(|(key, _)| !self.input_responses.contains_key(key))
                    .collect();
                if pending.is_empty() {
                    self.settle(JobOutcome::Failed(ErrorData::internal_error(
                        "the task asked again for input it already has",
                        None,
                    )));
                    return;
                }
                self.task.status = TaskStatus::InputRequired;
                self.input_requests = pending;
            }
        }
    }
}

/// Starts tool `tool` as a task of `principal` and returns it as created: the record is
/// written first, so the task is known everywhere before the client hears of it.
pub async fn start(
    context: &Arc<ServerContext>,
    principal: &Principal,
    tool: &str,
    arguments: JsonObject,
) -> Result<Task, ErrorData> {
    let now = chrono::Utc::now().to_rfc3339();
    let id = uuid::Uuid::new_v4().to_string();
    let task = Task::new(id.clone(), TaskStatus::Working, now.clone(), now)
        .with_ttl_ms(u64::try_from(TASK_TTL.as_millis()).unwrap_or(u64::MAX))
        .with_poll_interval_ms(u64::try_from(POLL_INTERVAL.as_millis()).unwrap_or(u64::MAX));
    let body = TaskBody {
        tool: tool.to_owned(),
        arguments,
        task: task.clone(),
        input_requests: InputRequests::new(),
        input_responses: JsonObject::new(),
        result: None,
        error: None,
        round: 1,
        claimed: 0,
        run_deadline: start_deadline(&context.tasks),
    };
    let json = body.to_json().map_err(task_store_error)?;
    let created = context
        .store
        .create_task(principal, &id, &json, expires_at())
        .await
        .map_err(task_store_error)?;
    if !created {
        return Err(ErrorData::internal_error(
            "a task id came up twice; call again",
            None,
        ));
    }
    start_run(context, principal, &id).await?;
    tracing::info!(task = %id, tool, "task created");
    Ok(task)
}

/// `tasks/get`: the caller's task as it is now.
pub async fn get(
    store: &dyn Store,
    principal: &Principal,
    id: &str,
) -> Result<DetailedTask, ErrorData> {
    let record = store
        .load_task(principal, id)
        .await
        .map_err(task_store_error)?
        .ok_or_else(|| unknown_task(id))?;
    let body = TaskBody::from_json(&record.body).map_err(task_store_error)?;
    Ok(body.detailed(now_millis()))
}

/// `tasks/update`: files the answers to pending questions (answers to anything else are
/// ignored) and starts the next round once none is pending.
pub async fn update(
    context: &Arc<ServerContext>,
    principal: &Principal,
    id: &str,
    responses: impl IntoIterator<Item = (String, Value)>,
) -> Result<(), ErrorData> {
    let responses: Vec<(String, Value)> = responses.into_iter().collect();
    let grace = start_deadline(&context.tasks);
    let next_round = change(context.store.as_ref(), principal, id, |body| {
        if body.task.status != TaskStatus::InputRequired {
            return Edit::Keep(false);
        }
        let mut answered = false;
        for (key, value) in &responses {
            if body.input_requests.remove(key).is_some() {
                body.input_responses.insert(key.clone(), value.clone());
                answered = true;
            }
        }
        if !answered {
            return Edit::Keep(false);
        }
        if body.input_requests.is_empty() {
            body.task.status = TaskStatus::Working;
            body.round += 1;
            body.run_deadline = grace;
            return Edit::Write(true);
        }
        Edit::Write(false)
    })
    .await?;
    if next_round {
        start_run(context, principal, id).await?;
    }
    Ok(())
}

/// `tasks/cancel`: settles a live task as `cancelled` (its run notices and stops); a
/// settled task stays as it is.
pub async fn cancel(store: &dyn Store, principal: &Principal, id: &str) -> Result<(), ErrorData> {
    change(store, principal, id, |body| {
        if body.task.status.is_terminal() {
            return Edit::Keep(());
        }
        body.task.status = TaskStatus::Cancelled;
        body.input_requests.clear();
        Edit::Write(())
    })
    .await
}

/// Runs the pending round of task `id` of `principal`, if no run has claimed it yet, and
/// settles its outcome. Failures are logged: there is no caller to tell.
pub async fn run(context: Arc<ServerContext>, principal: Principal, id: String) {
    let settings = context.tasks.clone();
    let deadline = now_millis().saturating_add(ttl_millis(settings.run_limit));
    let claim = change(context.store.as_ref(), &principal, &id, |body| {
        // A run that arrives after its round's deadline finds the task already shown as
        // failed; running it now would contradict what clients were told.
        let late = now_millis() > body.run_deadline;
        if body.task.status != TaskStatus::Working || body.claimed >= body.round || late {
            return Edit::Keep(None);
        }
        body.claimed = body.round;
        body.run_deadline = deadline;
        Edit::Write(Some(body.clone()))
    })
    .await;
    let body = match claim {
        Ok(Some(body)) => body,
        Ok(None) => {
            tracing::info!(task = %id, "task run skipped: the round is taken, settled or waiting for input");
            return;
        }
        Err(error) => {
            tracing::warn!(task = %id, error = %error.message, "task run could not claim its round");
            return;
        }
    };
    let round = body.round;
    let started = std::time::Instant::now();
    let outcome = match settings.jobs.get(&body.tool) {
        Some(job) => {
            let input = JobInput {
                context: context.clone(),
                principal: principal.clone(),
                arguments: body.arguments,
                input_responses: body.input_responses,
            };
            tokio::select! {
                finished = tokio::time::timeout(settings.run_limit, job(input)) => {
                    finished.unwrap_or_else(|_| JobOutcome::Failed(ErrorData::internal_error(
                        format!("the task did not finish within {} s", settings.run_limit.as_secs()),
                        None,
                    )))
                }
                () = cancellation(context.store.as_ref(), &principal, &id, settings.poll) => {
                    tracing::info!(task = %id, tool = %body.tool, "task run stopped: the task was cancelled");
                    return;
                }
            }
        }
        None => JobOutcome::Failed(ErrorData::internal_error(
            format!("`{}` cannot run as a task on this server", body.tool),
            None,
        )),
    };
    let kind = outcome.kind();
    let settled = match settle(context.store.as_ref(), &principal, &id, round, outcome).await {
        Err(error) if error.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
            // The outcome itself cannot be kept (too large): the task fails, saying why.
            let failed = ErrorData::internal_error(
                format!("the task's outcome could not be kept: {}", error.message),
                None,
            );
            settle(
                context.store.as_ref(),
                &principal,
                &id,
                round,
                JobOutcome::Failed(failed),
            )
            .await
        }
        other => other,
    };
    let run_ms = started.elapsed().as_millis() as u64;
    match settled {
        Ok(true) => {
            tracing::info!(task = %id, tool = %body.tool, outcome = kind, run_ms, "task run finished")
        }
        Ok(false) => {
            tracing::info!(task = %id, tool = %body.tool, run_ms, "task run finished after the task was cancelled; outcome dropped")
        }
        Err(error) => {
            tracing::error!(task = %id, tool = %body.tool, error = %error.message, "task outcome not recorded")
        }
    }
}

/// Records the outcome of round `round`, unless the task was cancelled or settled
/// meanwhile; says whether it was recorded.
async fn settle(
    store: &dyn Store,
    principal: &Principal,
    id: &str,
    round: u32,
    outcome: JobOutcome,
) -> Result<bool, ErrorData> {
    change(store, principal, id, |body| {
        if body.task.status != TaskStatus::Working || body.claimed != round {
            return Edit::Keep(false);
        }
        body.settle(outcome.clone());
        Edit::Write(true)
    })
    .await
}

/// Resolves once the task is cancelled or gone, reading its record every `poll`.
async fn cancellation(store: &dyn Store, principal: &Principal, id: &str, poll: Duration) {
    loop {
        tokio::time::sleep(poll).await;
        match store.load_task(principal, id).await {
            Ok(Some(record)) => {
                let cancelled = TaskBody::from_json(&record.body)
                    .is_ok_and(|body| body.task.status == TaskStatus::Cancelled);
                if cancelled {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(task = %id, %error, "task record unreadable; the run goes on")
            }
        }
    }
}

/// Starts a run of task `id`; when it cannot be started, the task is settled as failed and
/// the caller told to retry.
async fn start_run(
    context: &Arc<ServerContext>,
    principal: &Principal,
    id: &str,
) -> Result<(), ErrorData> {
    match &context.tasks.starter {
        RunStarter::InProcess => {
            tokio::spawn(self::run(context.clone(), principal.clone(), id.to_owned()));
            Ok(())
        }
        RunStarter::Invoke(invoker) => {
            let run = TaskRun {
                principal: principal.as_str().to_owned(),
                task_id: id.to_owned(),
            };
            let Err(error) = invoker.invoke(&run).await else {
                return Ok(());
            };
            tracing::error!(task = %id, %error, "task run could not be started");
            let failed = ErrorData::internal_error(
                "the task could not be started; call again shortly",
                None,
            );
            change(context.store.as_ref(), principal, id, |body| {
                body.settle(JobOutcome::Failed(failed.clone()));
                Edit::Write(())
            })
            .await?;
            Err(failed)
        }
    }
}

/// What an edit of a record decided: write the edited body, or leave the record alone.
enum Edit<T> {
    Write(T),
    Keep(T),
}

/// Loads task `id`, applies `edit` and writes the result with compare-and-set, again from a
/// fresh read when another writer came first. Unknown (or another principal's) → -32602.
async fn change<T>(
    store: &dyn Store,
    principal: &Principal,
    id: &str,
    mut edit: impl FnMut(&mut TaskBody) -> Edit<T>,
) -> Result<T, ErrorData> {
    for _ in 0..MAX_CHANGE_ATTEMPTS {
        let record = store
            .load_task(principal, id)
            .await
            .map_err(task_store_error)?
            .ok_or_else(|| unknown_task(id))?;
        let mut body = TaskBody::from_json(&record.body).map_err(task_store_error)?;
        let value = match edit(&mut body) {
            Edit::Keep(value) => return Ok(value),
            Edit::Write(value) => value,
        };
        body.task.last_updated_at = chrono::Utc::now().to_rfc3339();
        let json = body.to_json().map_err(task_store_error)?;
        let written = store
            .replace_task(principal, id, record.version, &json, expires_at())
            .await
            .map_err(task_store_error)?;
        if written {
            return Ok(value);
        }
    }
    Err(task_store_error(StoreError::Contended("task record")))
}

/// When a record written now expires (epoch ms).
fn expires_at() -> i64 {
    now_millis().saturating_add(ttl_millis(TASK_TTL))
}

/// The deadline of a round that was just started but not yet claimed.
fn start_deadline(tasks: &Tasks) -> i64 {
    now_millis().saturating_add(ttl_millis(tasks.run_limit + START_GRACE))
}

fn unknown_task(id: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown task: {id}"), None)
}

fn task_store_error(error: StoreError) -> ErrorData {
    rpc_error("task store", error)
}

fn result_object(result: &CallToolResult) -> JsonObject {
    match serde_json::to_value(result) {
        Ok(Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}

fn error_object(error: &ErrorData) -> JsonObject {
    match serde_json::to_value(error) {
        Ok(Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}
