//! Fixtures for the official MCP conformance suite (`@modelcontextprotocol/conformance`).
//!
//! The suite drives a server through scenarios that expect particular tools,
//! resources, prompts and behaviours to exist (`test_simple_text`,
//! `test://static-text`, `test_prompt_with_arguments`, the SEP-2322
//! `test_input_required_result_*` tools, the SEP-2663 task fixtures, a SEP-2640
//! skill, …). [`ConformanceServer`] wraps the product handler, [`McpServer`],
//! and adds those fixtures next to the product tools and prompts, so the suite
//! runs against the real HTTP stack, sessions and store.
//!
//! [`Fixtures`] is the [`app::Extension`] that puts them into a build:
//! `conformance-server` and `conformance-lambda` are `mcp-server` and
//! `mcp-lambda` with it, and the product build never contains them.
//!
//! Layout:
//! - [`Fixtures`], [`ConformanceServer`] and its shared `FixtureState`;
//! - tools: the catalogue, plain fixtures, notification and client-request
//!   fixtures, `subscriptions/listen` triggers;
//! - MRTR (SEP-2322): tools and a prompt answering with `InputRequiredResult`;
//! - tasks (SEP-2663): task-materialising tools;
//! - resources: static and templated fixtures (the product's files follow them),
//!   legacy subscriptions;
//! - skills (SEP-2640): one skill served over resources;
//! - prompts, completion and logging;
//! - the [`ServerHandler`] implementation that routes between product and
//!   fixtures.

// The suite still exercises sampling, roots, logging and the legacy
// subscribe/unsubscribe methods, which rmcp marks deprecated (SEP-2577).
#![allow(
    deprecated,
    reason = "the conformance fixtures exercise protocol features that SEP-2577 deprecates"
)]

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        ClientCapabilities, ClientResult, CompleteRequestParams, CompleteResult, CompletionInfo,
        ContentBlock, CreateMessageRequest, CreateMessageRequestParams, DIRECTORY_MIME_TYPE,
        ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, GetSkillRequestParams,
        GetSkillResult, GetTaskParams, GetTaskResult, ImageContent, InputRequest, InputRequests,
        InputRequiredResult, InputResponses, JsonObject, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListRootsRequest, ListSkillsResult,
        ListToolsResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
        ProgressNotificationParam, Prompt, PromptArgument, PromptMessage, ProtocolVersion,
        ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult, ReadResourceRequestParams,
        ReadResourceResponse, ReadResourceResult, Reference, RequestStateCodec, Resource,
        ResourceContents, ResourceTemplate, Role, SamplingMessage, ServerCapabilities,
        ServerConfig, ServerRequest, SetLevelRequestParams, Skill, SkillFrontmatter, SkillResource,
        SkillResources, SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
        UpdateTaskParams,
    },
    service::{RequestContext, SubscriptionContext},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use mcp_function::{
    app,
    context::request_principal,
    keys::Keyring,
    server::{McpServer, client_allows_tasks},
    store::feed::Change,
    tasks::{JobInput, JobOutcome, TaskJobs},
    tools::schema,
};

// ─── Fixture data ───────────────────────────────────────────────────────────

/// A 1×1 PNG, base64-encoded.
const PNG_PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==";

/// A WAV header with no samples (silence), base64-encoded.
const WAV_SILENCE: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA=";

/// Freshness advertised on cacheable fixture results (SEP-2549).
const CACHE_TTL_MS: u64 = 60_000;

/// `logger` name on the log notifications the fixtures send.
const LOGGER: &str = "conformance-fixtures";

/// Domain separation for the fixture's `requestState` key, so a fixture token
/// is never valid wherever the product uses the same signing key.
const REQUEST_STATE_KEY_CONTEXT: &[u8] = b"mcp-function/conformance/request-state/v1\0";

// ─── Server ─────────────────────────────────────────────────────────────────

/// The fixtures as a build extension: the handler wraps the product's in a
/// [`ConformanceServer`], and the fixtures' task forms join the product's.
pub struct Fixtures;

impl app::Extension for Fixtures {
    type Handler = ConformanceServer;

    fn handler(&self, server: McpServer, keys: &Keyring) -> ConformanceServer {
        ConformanceServer::new(server, &keys.keys().active().secret)
    }

    fn task_jobs(&self) -> TaskJobs {
        task_jobs()
    }
}

/// The product handler plus the conformance suite's fixtures.
///
/// Cheap to clone: rmcp clones one per session (legacy wire) or per request
/// (2026-07-28 wire), and every clone shares one `FixtureState`.
#[derive(Clone)]
pub struct ConformanceServer {
    /// Serves the product tools and prompts; fixtures never shadow them.
    product: McpServer,
    /// Fixture state shared by every clone.
    fixtures: Arc<FixtureState>,
}

/// State the fixtures keep across requests and sessions.
struct FixtureState {
    /// Fixture tool definitions, built once, for `tools/list` and `get_tool`
    /// (rmcp reads the input schema to validate SEP-2243 `Mcp-Param-*` headers).
    tools: Vec<Tool>,
    /// URIs subscribed through legacy `resources/subscribe`; the suite only
    /// checks that subscribe and unsubscribe are acknowledged.
    legacy_subscriptions: Mutex<HashSet<String>>,
    /// Level last set by `logging/setLevel` on the legacy wire. One level for
    /// all sessions: a fixture simplification the suite does not observe.
    log_level: Mutex<LoggingLevel>,
    /// Seals and opens SEP-2322 `requestState`; the client echoes it back, so
    /// it is untrusted input and must pass integrity checks.
    request_state: RequestStateCodec,
    /// The SEP-2640 skill served over resources.
    skill: FixtureSkill,
}

impl ConformanceServer {
    /// Wraps `product`; `request_state_key` seeds the key that seals
    /// fixture `requestState` values.
    pub fn new(product: McpServer, request_state_key: &[u8]) -> Self {
        let fixtures = FixtureState {
            tools: fixture_tools(),
            legacy_subscriptions: Mutex::default(),
            log_level: Mutex::new(LoggingLevel::Debug),
            request_state: request_state_codec(request_state_key),
            skill: FixtureSkill::new(),
        };
        Self {
            product,
            fixtures: Arc::new(fixtures),
        }
    }

    fn fixture_tool(&self, name: &str) -> Option<&Tool> {
        self.fixtures.tools.iter().find(|tool| tool.name == name)
    }
}

/// A codec under a key derived from `key` and [`REQUEST_STATE_KEY_CONTEXT`].
fn request_state_codec(key: &[u8]) -> RequestStateCodec {
    let mut material = Vec::with_capacity(REQUEST_STATE_KEY_CONTEXT.len() + key.len());
    material.extend_from_slice(REQUEST_STATE_KEY_CONTEXT);
    material.extend_from_slice(key);
    let derived = Sha256::digest(&material);
    // A SHA-256 digest is exactly `MIN_KEY_LENGTH` (32) bytes long.
    RequestStateCodec::new_unchecked(derived.to_vec())
}

/// Locks `mutex`, carrying on after a panic elsewhere poisoned it: every
/// guarded value here stays consistent between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the request uses the 2026-07-28 stateless lifecycle.
fn is_stateless(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("Unknown tool: {name}"), None)
}

fn unknown_prompt(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("Unknown prompt: {name}"), None)
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// `value` as a JSON object; fixture schemas are object literals.
fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// The string argument `key`, if present and a string.
fn string_arg<'a>(args: &'a JsonObject, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

// ─── Tools: catalogue ───────────────────────────────────────────────────────

/// Fixture tools that take no arguments.
const NO_ARGUMENT_TOOLS: &[(&str, &str)] = &[
    ("test_simple_text", "Returns simple text content"),
    ("test_image_content", "Returns image content"),
    ("test_audio_content", "Returns audio content"),
    (
        "test_embedded_resource",
        "Returns embedded resource content",
    ),
    (
        "test_multiple_content_types",
        "Returns text, image and resource content",
    ),
    (
        "test_tool_with_logging",
        "Sends log notifications while it runs",
    ),
    (
        "test_error_handling",
        "Always returns a tool execution error",
    ),
    ("test_tool_with_progress", "Reports progress notifications"),
    (
        "test_elicitation_sep1034_defaults",
        "Elicits values that all have defaults (SEP-1034)",
    ),
    (
        "test_elicitation_sep1330_enums",
        "Elicits the enum schema variants (SEP-1330)",
    ),
    (
        "test_reconnection",
        "Finishes after a short delay, for SSE reconnection tests",
    ),
    (
        "test_trigger_tool_change",
        "Announces tools/list_changed on open listen streams",
    ),
    (
        "test_trigger_prompt_change",
        "Announces prompts/list_changed on open listen streams",
    ),
    (
        "test_missing_capability",
        "Requires the client's sampling capability",
    ),
    (
        "test_streaming_elicitation",
        "Answers with an input_required elicitation",
    ),
    (
        "test_logging_tool",
        "Logs only when the request asks for a log level",
    ),
    // SEP-2322 MRTR fixtures.
    (
        "test_input_required_result_elicitation",
        "Needs an elicitation answer (SEP-2322)",
    ),
    (
        "test_input_required_result_sampling",
        "Needs a sampling answer (SEP-2322)",
    ),
    (
        "test_input_required_result_list_roots",
        "Needs a roots/list answer (SEP-2322)",
    ),
    (
        "test_input_required_result_request_state",
        "Round-trips a sealed requestState (SEP-2322)",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "Needs three answers in one round (SEP-2322)",
    ),
    (
        "test_input_required_result_multi_round",
        "Needs answers over two rounds (SEP-2322)",
    ),
    (
        "test_input_required_result_tampered_state",
        "Rejects a tampered requestState (SEP-2322)",
    ),
    (
        "test_input_required_result_capabilities",
        "Asks only for declared capabilities (SEP-2322)",
    ),
];

/// Every fixture tool definition.
fn fixture_tools() -> Vec<Tool> {
    let empty = || object(json!({ "type": "object", "properties": {} }));
    let mut tools: Vec<Tool> = NO_ARGUMENT_TOOLS
        .iter()
        .map(|&(name, description)| Tool::new(name, description, empty()))
        .collect();
    tools.push(Tool::new(
        "test_sampling",
        "Asks the client to sample an LLM",
        object(json!({
            "type": "object",
            "properties": { "prompt": { "type": "string", "description": "The prompt to send" } },
            "required": ["prompt"]
        })),
    ));
    tools.push(Tool::new(
        "test_elicitation",
        "Asks the client for user input",
        object(json!({
            "type": "object",
            "properties": { "message": { "type": "string", "description": "The message to show" } },
            "required": ["message"]
        })),
    ));
    tools.push(Tool::new(
        "json_schema_2020_12_tool",
        "Has a JSON Schema 2020-12 input schema",
        object(json_schema_2020_12()),
    ));
    tools.push(Tool::new(
        "test_custom_header",
        "Mirrors its argument into an Mcp-Param header (SEP-2243)",
        object(json!({
            "type": "object",
            "properties": { "value": { "type": "string", "x-mcp-header": "Value" } },
            "required": ["value"]
        })),
    ));
    tools.extend(TASK_TOOLS.iter().map(TaskTool::definition));
    tools.iter_mut().for_each(schema::portable);
    tools
}

/// An input schema using 2020-12 keywords (`$defs`, `$anchor`, `if`/`then`/`else`).
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "address",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" }
        },
        "allOf": [{ "anyOf": [{ "required": ["name"] }, { "required": ["address"] }] }],
        "if": { "required": ["address"] },
        "then": { "properties": { "address": { "required": ["street"] } } },
        "else": { "required": ["name"] },
        "additionalProperties": false
    })
}

// ─── Tools: dispatch and plain fixtures ─────────────────────────────────────

impl ConformanceServer {
    async fn call_fixture_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if name.starts_with("test_input_required_result_") {
            return self.call_mrtr_tool(&request, &cx);
        }
        if let Some(task_tool) = TaskTool::find(name) {
            return self.call_task_tool(task_tool, &request, &cx).await;
        }
        let args = request.arguments.clone().unwrap_or_default();
        let result = match name {
            "test_simple_text" => text_result("This is a simple text response for testing."),
            "test_image_content" => {
                CallToolResult::success(vec![ContentBlock::image(PNG_PIXEL, "image/png")])
            }
            "test_audio_content" => {
                CallToolResult::success(vec![ContentBlock::audio(WAV_SILENCE, "audio/wav")])
            }
            "test_embedded_resource" => {
                CallToolResult::success(vec![ContentBlock::resource(ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                ))])
            }
            "test_multiple_content_types" => mixed_content(),
            "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )]),
            "test_tool_with_logging" => self.log_while_running(&cx).await,
            "test_tool_with_progress" => report_progress(&cx).await,
            "test_logging_tool" => self.log_if_requested(&cx).await,
            "test_sampling"
            | "test_elicitation"
            | "test_elicitation_sep1034_defaults"
            | "test_elicitation_sep1330_enums"
                if !self.product.context().client_can_answer =>
            {
                no_client_answers()
            }
            "test_sampling" => {
                sample_from_client(&cx, string_arg(&args, "prompt").unwrap_or("Hello")).await
            }
            "test_elicitation" => {
                let message =
                    string_arg(&args, "message").unwrap_or("Please provide your information");
                elicit_from_client(&cx, message, contact_schema()).await
            }
            "test_elicitation_sep1034_defaults" => {
                elicit_from_client(
                    &cx,
                    "Please provide values (all have defaults)",
                    defaults_schema(),
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                elicit_from_client(&cx, "Test enum schema improvements", enums_schema()).await
            }
            "json_schema_2020_12_tool" => text_result(format!(
                "Hello, {}!",
                string_arg(&args, "name").unwrap_or("world")
            )),
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                text_result("Reconnection test completed")
            }
            "test_custom_header" => {
                let value = string_arg(&args, "value")
                    .ok_or_else(|| ErrorData::invalid_params("value must be a string", None))?;
                text_result(value)
            }
            "test_trigger_tool_change" => {
                self.announce(&cx, Change::ToolListChanged).await?;
                text_result("Tool list change triggered")
            }
            "test_trigger_prompt_change" => {
                self.announce(&cx, Change::PromptListChanged).await?;
                text_result("Prompt list change triggered")
            }
            "test_missing_capability" => {
                let declared = cx.client_capabilities().unwrap_or_default();
                if declared.sampling.is_none() {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_sampling().build(),
                    ));
                }
                text_result("Required capability declared")
            }
            "test_streaming_elicitation" => {
                let request = form_request(
                    "Provide a value",
                    json!({ "value": { "type": "string" } }),
                    &["value"],
                );
                return Ok(ask("streaming_elicitation", request).into());
            }
            _ => return Err(unknown_tool(name)),
        };
        Ok(result.into())
    }
}

fn mixed_content() -> CallToolResult {
    CallToolResult::success(vec![
        ContentBlock::text("Multiple content types test:"),
        ContentBlock::image(PNG_PIXEL, "image/png"),
        ContentBlock::resource(
            ResourceContents::text(
                r#"{"test":"data","value":123}"#,
                "test://mixed-content-resource",
            )
            .with_mime_type("application/json"),
        ),
    ])
}

// ─── Tools: notifications during a call ─────────────────────────────────────

/// Numeric severity of a log level, for filtering (`debug` lowest).
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl ConformanceServer {
    /// The lowest level a log notification for this request may have, or
    /// `None` when it must not log. On the 2026-07-28 wire a request opts in
    /// with `_meta` `logLevel`; legacy sessions use `logging/setLevel`.
    fn log_threshold(&self, cx: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        cx.meta
            .log_level()
            .or_else(|| (!is_stateless(cx)).then(|| *lock(&self.fixtures.log_level)))
    }

    /// Sends `message` at `level` if this request's threshold allows it.
    async fn log(&self, cx: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
        let Some(threshold) = self.log_threshold(cx) else {
            return;
        };
        if severity(level) < severity(threshold) {
            return;
        }
        let notification =
            LoggingMessageNotificationParam::new(level, json!(message)).with_logger(LOGGER);
        if let Err(error) = cx.peer.notify_logging_message(notification).await {
            tracing::debug!(%error, "conformance: log notification not delivered");
        }
    }

    async fn log_while_running(&self, cx: &RequestContext<RoleServer>) -> CallToolResult {
        for message in [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ] {
            self.log(cx, LoggingLevel::Info, message).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        text_result("Logging test completed")
    }

    async fn log_if_requested(&self, cx: &RequestContext<RoleServer>) -> CallToolResult {
        if let Some(level) = cx.meta.log_level() {
            self.log(cx, level, "logLevel was requested").await;
        }
        text_result("Logging tool completed")
    }
}

async fn report_progress(cx: &RequestContext<RoleServer>) -> CallToolResult {
    let token = cx.meta.get_progress_token();
    for (progress, message) in [(0.0, "Starting"), (50.0, "Halfway"), (100.0, "Complete")] {
        if let Some(token) = &token {
            let notification = ProgressNotificationParam::new(token.clone(), progress)
                .with_total(100.0)
                .with_message(message);
            if let Err(error) = cx.peer.notify_progress(notification).await {
                tracing::debug!(%error, "conformance: progress notification not delivered");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text_result("Progress test completed")
}

// ─── Tools: requests to the client (legacy wire) ────────────────────────────

/// A legacy server-to-client request needs the client's answer while the call waits; a
/// buffered Lambda answer only leaves once the call has ended.
fn no_client_answers() -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(
        "Server-to-client requests (sampling, elicitation) are not available on a buffered \
         Lambda host: the request would only reach the client after this call has ended. \
         Use MCP_LAMBDA_RESPONSE=stream, the 2026-07-28 input_required flow, or mcp-server.",
    )])
}

async fn sample_from_client(cx: &RequestContext<RoleServer>, prompt: &str) -> CallToolResult {
    let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
    match cx.peer.create_message(params).await {
        Ok(result) => {
            let text = result
                .message
                .content
                .first()
                .and_then(|content| content.as_text())
                .map_or_else(|| "No text response".to_owned(), |text| text.text.clone());
            text_result(format!("LLM response: {text}"))
        }
        Err(error) => {
            CallToolResult::error(vec![ContentBlock::text(format!("Sampling error: {error}"))])
        }
    }
}

async fn elicit_from_client(
    cx: &RequestContext<RoleServer>,
    message: &str,
    schema: Value,
) -> CallToolResult {
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema: elicitation_schema(schema),
    };
    let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
    match cx.peer.send_request(request).await {
        Ok(ClientResult::ElicitResult(result)) => text_result(describe_elicitation(&result)),
        Ok(_) => CallToolResult::error(vec![ContentBlock::text(
            "Elicitation error: unexpected response type",
        )]),
        Err(error) => CallToolResult::error(vec![ContentBlock::text(format!(
            "Elicitation error: {error}"
        ))]),
    }
}

fn describe_elicitation(result: &ElicitResult) -> String {
    let action = match result.action {
        ElicitationAction::Accept => "accept",
        ElicitationAction::Decline => "decline",
        ElicitationAction::Cancel => "cancel",
        _ => "unknown",
    };
    match &result.content {
        Some(content) => format!("User response: action={action}, content={content}"),
        None => format!("User response: action={action}"),
    }
}

/// Parses a fixture elicitation schema; all of them are constants.
fn elicitation_schema(schema: Value) -> ElicitationSchema {
    serde_json::from_value(schema).expect("fixture elicitation schemas are valid constants")
}

fn contact_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" }
        },
        "required": ["username", "email"]
    })
}

/// SEP-1034: every field carries a default.
fn defaults_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User's name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User's age", "default": 30 },
            "score": { "type": "number", "description": "User's score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User's status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": { "type": "boolean", "description": "Whether user is verified", "default": true }
        }
    })
}

/// SEP-1330: titled and untitled, single- and multi-select enums, plus the
/// legacy `enumNames` form.
fn enums_schema() -> Value {
    let titled = |label: &str| {
        json!([
            { "const": "value1", "title": format!("First {label}") },
            { "const": "value2", "title": format!("Second {label}") },
            { "const": "value3", "title": format!("Third {label}") }
        ])
    };
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
            "titledSingle": { "type": "string", "oneOf": titled("Option") },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": { "type": "array", "items": { "anyOf": titled("Choice") } }
        }
    })
}

// ─── Tools: subscriptions/listen triggers ───────────────────────────────────

impl ConformanceServer {
    /// Records the change in the caller's change feed, which every listen stream of the
    /// caller follows, on whichever instance it is held.
    async fn announce(
        &self,
        cx: &RequestContext<RoleServer>,
        change: Change,
    ) -> Result<(), ErrorData> {
        let principal = request_principal(&cx.extensions)?;
        self.product.context().announce(&principal, &[change]).await;
        Ok(())
    }
}

// ─── MRTR (SEP-2322) ────────────────────────────────────────────────────────

/// A form elicitation for an `inputRequests` map.
fn form_request(message: &str, properties: Value, required: &[&str]) -> InputRequest {
    let schema = json!({ "type": "object", "properties": properties, "required": required });
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema: elicitation_schema(schema),
        },
    ))
}

fn sampling_request(prompt: &str) -> InputRequest {
    InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(prompt)],
        100,
    )))
}

fn roots_request() -> InputRequest {
    InputRequest::ListRoots(ListRootsRequest::default())
}

fn ask_name() -> InputRequest {
    form_request(
        "What is your name?",
        json!({ "name": { "type": "string" } }),
        &["name"],
    )
}

/// An `InputRequiredResult` asking for one input under `key`.
fn ask(key: &str, request: InputRequest) -> InputRequiredResult {
    InputRequiredResult::from_input_requests(InputRequests::from([(key.to_owned(), request)]))
}

/// The client's answer under `key`, if it is a JSON object (an `ElicitResult`,
/// `CreateMessageResult` or `ListRootsResult`). Anything else counts as
/// missing, so the fixture asks again.
fn answer<'a>(responses: Option<&'a InputResponses>, key: &str) -> Option<&'a JsonObject> {
    responses?.get(key)?.as_object()
}

/// The string at `content.<field>` of an answer.
fn answered_field<'a>(answer: &'a JsonObject, field: &str) -> Option<&'a str> {
    answer.get("content")?.get(field)?.as_str()
}

fn tampered_state() -> ErrorData {
    ErrorData::invalid_params("requestState failed integrity verification", None)
}

impl ConformanceServer {
    fn seal(&self, state: &Value) -> Result<String, ErrorData> {
        self.fixtures
            .request_state
            .seal_json(state)
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))
    }

    /// Opens an echoed `requestState`; anything that fails verification is
    /// rejected with `-32602`.
    fn open(&self, sealed: &str) -> Result<Value, ErrorData> {
        self.fixtures
            .request_state
            .open_json(sealed)
            .map_err(|_| tampered_state())
    }

    fn call_mrtr_tool(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let responses = request.input_responses.as_ref();
        let state = request.request_state.as_deref();
        match request.name.as_ref() {
            "test_input_required_result_elicitation" => Ok(mrtr_elicitation(responses)),
            "test_input_required_result_sampling" => Ok(mrtr_sampling(responses)),
            "test_input_required_result_list_roots" => Ok(mrtr_list_roots(responses)),
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => self.mrtr_request_state(state),
            "test_input_required_result_multiple_inputs" => {
                self.mrtr_multiple_inputs(responses, state)
            }
            "test_input_required_result_multi_round" => self.mrtr_multi_round(state),
            "test_input_required_result_capabilities" => {
                Ok(mrtr_capabilities(responses, cx.client_capabilities()))
            }
            name => Err(unknown_tool(name)),
        }
    }

    /// Round 1 seals a stage into `requestState`; round 2 accepts only state
    /// this server sealed.
    fn mrtr_request_state(&self, state: Option<&str>) -> Result<CallToolResponse, ErrorData> {
        if let Some(sealed) = state {
            self.open(sealed)?;
            return Ok(text_result("Confirmed: state-ok").into());
        }
        let confirm = form_request(
            "Please confirm",
            json!({ "ok": { "type": "boolean" } }),
            &["ok"],
        );
        let requests = InputRequests::from([("confirm".to_owned(), confirm)]);
        let sealed = self.seal(&json!({ "stage": "confirm" }))?;
        Ok(InputRequiredResult::new(Some(requests), Some(sealed)).into())
    }

    fn mrtr_multiple_inputs(
        &self,
        responses: Option<&InputResponses>,
        state: Option<&str>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Some(sealed) = state {
            self.open(sealed)?;
        }
        let keys = ["user_name", "greeting", "client_roots"];
        if state.is_some() && keys.iter().all(|key| answer(responses, key).is_some()) {
            return Ok(text_result("All inputs received").into());
        }
        let requests = InputRequests::from([
            ("user_name".to_owned(), ask_name()),
            (
                "greeting".to_owned(),
                sampling_request("Generate a greeting"),
            ),
            ("client_roots".to_owned(), roots_request()),
        ]);
        let sealed = self.seal(&json!({ "stage": "gather" }))?;
        Ok(InputRequiredResult::new(Some(requests), Some(sealed)).into())
    }

    /// Two rounds of questions; the sealed state counts the rounds answered.
    fn mrtr_multi_round(&self, state: Option<&str>) -> Result<CallToolResponse, ErrorData> {
        let round = match state {
            Some(sealed) => self
                .open(sealed)?
                .get("round")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            None => 0,
        };
        let (key, request) = match round {
            0 => (
                "step1",
                form_request(
                    "Step 1: What is your name?",
                    json!({ "name": { "type": "string" } }),
                    &["name"],
                ),
            ),
            1 => (
                "step2",
                form_request(
                    "Step 2: What is your favorite color?",
                    json!({ "color": { "type": "string" } }),
                    &["color"],
                ),
            ),
            _ => return Ok(text_result("Multi-round flow complete").into()),
        };
        let requests = InputRequests::from([(key.to_owned(), request)]);
        let sealed = self.seal(&json!({ "round": round + 1 }))?;
        Ok(InputRequiredResult::new(Some(requests), Some(sealed)).into())
    }
}

fn mrtr_elicitation(responses: Option<&InputResponses>) -> CallToolResponse {
    match answer(responses, "user_name") {
        Some(reply) => {
            let name = answered_field(reply, "name").unwrap_or("friend");
            text_result(format!("Hello, {name}!")).into()
        }
        // First call, or a retry without a usable answer: ask (again).
        None => ask("user_name", ask_name()).into(),
    }
}

fn mrtr_sampling(responses: Option<&InputResponses>) -> CallToolResponse {
    match answer(responses, "capital_question") {
        Some(reply) => {
            let text = answered_field(reply, "text").unwrap_or("(no sampling text)");
            text_result(format!("Sampling response: {text}")).into()
        }
        None => ask(
            "capital_question",
            sampling_request("What is the capital of France?"),
        )
        .into(),
    }
}

fn mrtr_list_roots(responses: Option<&InputResponses>) -> CallToolResponse {
    let Some(reply) = answer(responses, "client_roots") else {
        return ask("client_roots", roots_request()).into();
    };
    let uris: Vec<&str> = reply
        .get("roots")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|root| root.get("uri").and_then(Value::as_str))
        .collect();
    text_result(format!("Client roots: [{}]", uris.join(", "))).into()
}

/// Asks only for inputs whose capability the request declared.
fn mrtr_capabilities(
    responses: Option<&InputResponses>,
    declared: Option<ClientCapabilities>,
) -> CallToolResponse {
    if responses.is_some() {
        return text_result("Capability-aware flow complete").into();
    }
    let declared = declared.unwrap_or_default();
    let mut requests = InputRequests::new();
    if declared.elicitation.is_some() {
        requests.insert("user_name".to_owned(), ask_name());
    }
    if declared.sampling.is_some() {
        requests.insert(
            "greeting".to_owned(),
            sampling_request("Generate a greeting"),
        );
    }
    if declared.roots.is_some() {
        requests.insert("client_roots".to_owned(), roots_request());
    }
    if requests.is_empty() {
        return text_result("Client declared no capability an input request needs").into();
    }
    InputRequiredResult::from_input_requests(requests).into()
}

/// `prompts/get` for `test_input_required_result_prompt`: MRTR outside tools.
fn mrtr_prompt(responses: Option<&InputResponses>) -> GetPromptResponse {
    match answer(responses, "user_context") {
        Some(reply) => {
            let context = answered_field(reply, "context").unwrap_or("(no context)");
            GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                format!("Prompt with elicited context: {context}"),
            )])
            .with_description("A prompt built from elicited context")
            .into()
        }
        None => ask(
            "user_context",
            form_request(
                "What context should the prompt use?",
                json!({ "context": { "type": "string" } }),
                &["context"],
            ),
        )
        .into(),
    }
}

// ─── Tasks (SEP-2663) ───────────────────────────────────────────────────────

/// Whether a tool may, or must, run as a task.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TaskSupport {
    /// Always answers synchronously.
    Never,
    /// Runs as a task when the client declared the tasks extension.
    Optional,
    /// Cannot answer without a task: refused (-32021) unless the client
    /// declared the tasks extension.
    Required,
}

/// A fixture tool of the task scenarios.
struct TaskTool {
    name: &'static str,
    description: &'static str,
    /// `properties` of the input schema.
    properties: fn() -> Value,
    support: TaskSupport,
}

const TASK_TOOLS: &[TaskTool] = &[
    TaskTool {
        name: "greet",
        description: "Greets synchronously; never a task (SEP-2663)",
        properties: || json!({ "name": { "type": "string" } }),
        support: TaskSupport::Never,
    },
    TaskTool {
        name: "slow_compute",
        description: "Sleeps `seconds`, then answers; a task when the client allows (SEP-2663)",
        properties: || json!({ "seconds": { "type": "number" }, "label": { "type": "string" } }),
        support: TaskSupport::Optional,
    },
    TaskTool {
        name: "failing_job",
        description: "Task-only; completes with a tool execution error (SEP-2663)",
        properties: || json!({}),
        support: TaskSupport::Required,
    },
    TaskTool {
        name: "protocol_error_job",
        description: "Fails with a protocol-level error; a task when the client allows (SEP-2663)",
        properties: || json!({}),
        support: TaskSupport::Optional,
    },
    TaskTool {
        name: "confirm_delete",
        description: "Task-only; waits for one elicitation answer (SEP-2663)",
        properties: || json!({ "filename": { "type": "string" } }),
        support: TaskSupport::Required,
    },
    TaskTool {
        name: "multi_input",
        description: "Task-only; waits for two elicitation answers at once (SEP-2663)",
        properties: || json!({}),
        support: TaskSupport::Required,
    },
    TaskTool {
        name: "test_tool_with_task",
        description: "Asks for a name over MRTR, then continues as a task (SEP-2663)",
        properties: || json!({}),
        support: TaskSupport::Required,
    },
];

impl TaskTool {
    fn find(name: &str) -> Option<&'static TaskTool> {
        TASK_TOOLS.iter().find(|tool| tool.name == name)
    }

    fn definition(&self) -> Tool {
        let schema = json!({ "type": "object", "properties": (self.properties)() });
        Tool::new(self.name, self.description, object(schema))
    }
}

/// How long `slow_compute` sleeps: `seconds` when it is a sane number of
/// seconds (0 to 60), else one second.
fn compute_duration(args: &JsonObject) -> Duration {
    args.get("seconds")
        .and_then(Value::as_f64)
        .filter(|seconds| (0.0..=60.0).contains(seconds))
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .unwrap_or(Duration::from_secs(1))
}

async fn failing_job() -> CallToolResult {
    tokio::time::sleep(Duration::from_secs(1)).await;
    CallToolResult::error(vec![ContentBlock::text(
        "failing_job: intentional tool execution error",
    )])
}

async fn protocol_error_job() -> Result<CallToolResult, ErrorData> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Err(ErrorData::internal_error(
        "protocol_error_job: intentional protocol-level failure",
        None,
    ))
}

/// The `content.value` string of an elicitation answer given to a task.
fn elicited_value(answer: &Value, field: &str) -> Option<String> {
    answer
        .get("content")?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

impl ConformanceServer {
    async fn call_task_tool(
        &self,
        tool: &TaskTool,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let client_allows_tasks = client_allows_tasks(cx);
        if tool.support == TaskSupport::Required && !client_allows_tasks {
            return Err(ErrorData::missing_required_client_capability(
                ClientCapabilities::builder().enable_tasks().build(),
            ));
        }
        let args = request.arguments.clone().unwrap_or_default();
        match tool.name {
            "greet" => {
                let name = string_arg(&args, "name").unwrap_or("friend");
                Ok(text_result(format!("Hello, {name}!")).into())
            }
            "test_tool_with_task" => {
                let Some(reply) = answer(request.input_responses.as_ref(), "user_name") else {
                    return Ok(ask("user_name", ask_name()).into());
                };
                let name = answered_field(reply, "name").unwrap_or("friend");
                let arguments = object(json!({ "name": name }));
                self.product.start_task(cx, tool.name, arguments).await
            }
            name if client_allows_tasks => self.product.start_task(cx, name, args).await,
            // Optional task tools answer in the call when the client cannot take a task.
            "slow_compute" => Ok(slow_compute(&args).await.into()),
            "protocol_error_job" => protocol_error_job().await.map(Into::into),
            name => Err(unknown_tool(name)),
        }
    }
}

/// The fixtures' task forms (see [`mcp_function::tasks`]): each run is a function of the
/// arguments and the answers so far, so it can run on any instance.
fn task_jobs() -> TaskJobs {
    TaskJobs::default()
        .with("slow_compute", |input| {
            Box::pin(async move { JobOutcome::Done(slow_compute(&input.arguments).await) })
        })
        .with("failing_job", |_| {
            Box::pin(async { JobOutcome::Done(failing_job().await) })
        })
        .with("protocol_error_job", |_| {
            Box::pin(async {
                match protocol_error_job().await {
                    Ok(result) => JobOutcome::Done(result),
                    Err(error) => JobOutcome::Failed(error),
                }
            })
        })
        .with("confirm_delete", |input| {
            Box::pin(async move { confirm_delete(&input) })
        })
        .with("multi_input", |input| {
            Box::pin(async move { multi_input(&input) })
        })
        .with("test_tool_with_task", |input| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let name = string_arg(&input.arguments, "name").unwrap_or("friend");
                JobOutcome::Done(text_result(format!("Hello, {name}! (async)")))
            })
        })
}

/// Sleeps `seconds`, then answers; a cancelled task stops its run while it sleeps.
async fn slow_compute(args: &JsonObject) -> CallToolResult {
    let duration = compute_duration(args);
    let label = string_arg(args, "label").unwrap_or("compute");
    tokio::time::sleep(duration).await;
    text_result(format!(
        "slow_compute({label}) done after {}s",
        duration.as_secs_f64()
    ))
}

/// Asks for one confirmation, then answers with it.
fn confirm_delete(input: &JobInput) -> JobOutcome {
    let filename = string_arg(&input.arguments, "filename").unwrap_or("file.txt");
    let Some(reply) = input.input_responses.get("confirm") else {
        let question = form_request(
            &format!("Delete {filename}?"),
            json!({ "confirm": { "type": "boolean" } }),
            &["confirm"],
        );
        return JobOutcome::NeedsInput(InputRequests::from([("confirm".to_owned(), question)]));
    };
    let confirmed = reply
        .get("content")
        .and_then(|content| content.get("confirm"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    JobOutcome::Done(text_result(format!(
        "confirm_delete({filename}): confirmed = {confirmed}"
    )))
}

/// Asks two questions at once, so both are outstanding together; answers once both are in.
fn multi_input(input: &JobInput) -> JobOutcome {
    let keys = [("input-a", "A"), ("input-b", "B")];
    let missing: InputRequests = keys
        .iter()
        .filter(|(key, _)| !input.input_responses.contains_key(*key))
        .map(|(key, label)| {
            let question = form_request(
                &format!("Provide value {label}"),
                json!({ "value": { "type": "string" } }),
                &["value"],
            );
            ((*key).to_owned(), question)
        })
        .collect();
    if !missing.is_empty() {
        return JobOutcome::NeedsInput(missing);
    }
    let value = |key: &str| {
        input
            .input_responses
            .get(key)
            .and_then(|reply| elicited_value(reply, "value"))
            .unwrap_or_else(|| "(none)".into())
    };
    JobOutcome::Done(text_result(format!(
        "multi_input: a = {}, b = {}",
        value("input-a"),
        value("input-b")
    )))
}

// ─── Resources ──────────────────────────────────────────────────────────────

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

fn static_resources() -> Vec<Resource> {
    vec![
        Resource::new(STATIC_TEXT_URI, "Static Text Resource")
            .with_description("A static text resource for testing")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BINARY_URI, "Static Binary Resource")
            .with_description("A static binary resource for testing")
            .with_mime_type("image/png"),
    ]
}

/// The `{id}` of a `test://template/{id}/data` URI.
fn template_id(uri: &str) -> Option<&str> {
    uri.strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

impl ConformanceServer {
    /// The contents of a fixture resource, or `None` for an unknown URI.
    fn fixture_contents(&self, uri: &str) -> Option<ResourceContents> {
        match uri {
            STATIC_TEXT_URI => Some(ResourceContents::text(
                "This is the content of the static text resource.",
                uri,
            )),
            STATIC_BINARY_URI => {
                Some(ResourceContents::blob(PNG_PIXEL, uri).with_mime_type("image/png"))
            }
            _ => {
                if let Some(id) = template_id(uri) {
                    let data = json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                    return Some(
                        ResourceContents::text(data.to_string(), uri)
                            .with_mime_type("application/json"),
                    );
                }
                self.fixtures.skill.contents(uri)
            }
        }
    }
}

// ─── Skills (SEP-2640) ──────────────────────────────────────────────────────

const SKILL_NAME: &str = "release-notes";
const SKILL_DESCRIPTION: &str = "Drafts release notes from a list of merged changes";
const SKILL_ROOT: &str = "skill://release-notes";
const SKILL_MD_URI: &str = "skill://release-notes/SKILL.md";
const SKILL_REFERENCES_URI: &str = "skill://release-notes/references";
const SKILL_STYLE_URI: &str = "skill://release-notes/references/STYLE.md";
const SKILL_MIME_TYPE: &str = "text/markdown";

/// `SKILL.md`; its frontmatter must equal [`SKILL_NAME`] and [`SKILL_DESCRIPTION`].
const SKILL_MD: &str = "---
name: release-notes
description: Drafts release notes from a list of merged changes
---

# Release notes

1. Group the merged changes into Added, Changed and Fixed.
2. Write one line per change, in the past tense.
3. Follow the house style in references/STYLE.md.
";

const SKILL_STYLE_MD: &str = "# Release note style

- Lead with what the user can now do.
- Link each line to its pull request.
";

/// The skill's files, as (URI, text).
const SKILL_FILES: &[(&str, &str)] = &[(SKILL_MD_URI, SKILL_MD), (SKILL_STYLE_URI, SKILL_STYLE_MD)];

/// The skill's directories, root first.
const SKILL_DIRECTORIES: &[&str] = &[SKILL_ROOT, SKILL_REFERENCES_URI];

/// One skill served over resources: its `skills/list` entry, its files and
/// directories.
struct FixtureSkill {
    /// The entry `skills/list` and `skills/get` return, with each file's
    /// digest and size.
    entry: Skill,
}

impl FixtureSkill {
    fn new() -> Self {
        let files = SKILL_FILES
            .iter()
            .map(|(uri, text)| SkillResource::from_bytes(*uri, text.as_bytes()))
            .collect();
        let entry = Skill::new(
            SKILL_MD_URI,
            SkillFrontmatter::new(SKILL_NAME, SKILL_DESCRIPTION),
            SkillResources::Files(files),
        );
        Self { entry }
    }

    /// The skill files as `resources/list` entries; `SKILL.md` takes its name
    /// and description from the frontmatter.
    fn resources(&self) -> Vec<Resource> {
        SKILL_FILES
            .iter()
            .map(|(uri, text)| self.file_resource(uri, text))
            .collect()
    }

    fn file_resource(&self, uri: &str, text: &str) -> Resource {
        let resource = if uri == SKILL_MD_URI {
            Resource::new(uri, SKILL_NAME).with_description(SKILL_DESCRIPTION)
        } else {
            let name = uri.strip_prefix("skill://").unwrap_or(uri);
            Resource::new(uri, name)
        };
        resource
            .with_mime_type(SKILL_MIME_TYPE)
            .with_size(text.len() as u64)
    }

    fn contents(&self, uri: &str) -> Option<ResourceContents> {
        let (_, text) = SKILL_FILES.iter().find(|(file, _)| *file == uri)?;
        Some(ResourceContents::text(*text, uri).with_mime_type(SKILL_MIME_TYPE))
    }

    /// The direct children of directory `uri`, or `None` when `uri` is not
    /// one of the skill's directories.
    fn children(&self, uri: &str) -> Option<Vec<Resource>> {
        if !SKILL_DIRECTORIES.contains(&uri) {
            return None;
        }
        let is_child = |child: &str| parent(child) == Some(uri);
        let directories = SKILL_DIRECTORIES
            .iter()
            .filter(|directory| is_child(directory))
            .map(|directory| {
                let name = directory.rsplit('/').next().unwrap_or(*directory);
                Resource::new(*directory, name).with_mime_type(DIRECTORY_MIME_TYPE)
            });
        let files = SKILL_FILES
            .iter()
            .filter(|(file, _)| is_child(file))
            .map(|(file, text)| self.file_resource(file, text));
        Some(directories.chain(files).collect())
    }
}

/// The URI one path segment up, for the `skill://` URIs above.
fn parent(uri: &str) -> Option<&str> {
    let (parent, _) = uri.rsplit_once('/')?;
    (parent.len() > "skill://".len()).then_some(parent)
}

// ─── Prompts ────────────────────────────────────────────────────────────────

fn fixture_prompts() -> Vec<Prompt> {
    vec![
        Prompt::new(
            "test_simple_prompt",
            Some("A simple prompt with no arguments"),
            None,
        ),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt that takes arguments"),
            Some(vec![
                PromptArgument::new("arg1")
                    .with_description("First test argument")
                    .with_required(true),
                PromptArgument::new("arg2")
                    .with_description("Second test argument")
                    .with_required(false),
            ]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that embeds a resource"),
            None,
        ),
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt that includes an image"),
            None,
        ),
        Prompt::new(
            "test_input_required_result_prompt",
            Some("A prompt that needs elicited input first (SEP-2322)"),
            None,
        ),
    ]
}

fn fixture_prompt(request: GetPromptRequestParams) -> Result<GetPromptResponse, ErrorData> {
    let result = match request.name.as_str() {
        "test_input_required_result_prompt" => {
            return Ok(mrtr_prompt(request.input_responses.as_ref()));
        }
        "test_simple_prompt" => GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            "This is a simple test prompt.",
        )])
        .with_description("A simple test prompt"),
        "test_prompt_with_arguments" => {
            let args = request.arguments.unwrap_or_default();
            let arg1 = string_arg(&args, "arg1").unwrap_or_default();
            let arg2 = string_arg(&args, "arg2").unwrap_or_default();
            GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
            )])
            .with_description("A prompt with arguments")
        }
        "test_prompt_with_embedded_resource" => GetPromptResult::new(vec![
            PromptMessage::new_text(Role::User, "Here is a resource:"),
            PromptMessage::new_resource(
                Role::User,
                STATIC_TEXT_URI.to_owned(),
                Some("text/plain".to_owned()),
                Some("Resource content for prompt".to_owned()),
                None,
                None,
                None,
            ),
        ])
        .with_description("A prompt with an embedded resource"),
        "test_prompt_with_image" => GetPromptResult::new(vec![
            PromptMessage::new_text(Role::User, "Here is an image:"),
            PromptMessage::new(
                Role::User,
                ContentBlock::Image(ImageContent::new(PNG_PIXEL, "image/png")),
            ),
        ])
        .with_description("A prompt with an image"),
        name => return Err(unknown_prompt(name)),
    };
    Ok(result.into())
}

// ─── Completion ─────────────────────────────────────────────────────────────

/// Suggestions for a fixture prompt or template argument, before filtering
/// by what the user typed.
fn completion_candidates(reference: &Reference, argument: &str) -> &'static [&'static str] {
    match (reference, argument) {
        (Reference::Resource(template), "id") if template.uri.starts_with(TEMPLATE_PREFIX) => {
            &["1", "2", "3"]
        }
        (Reference::Prompt(prompt), "arg1" | "arg2")
            if prompt.name == "test_prompt_with_arguments" =>
        {
            &["test-alpha", "test-beta", "sample"]
        }
        _ => &[],
    }
}

// ─── Handler ────────────────────────────────────────────────────────────────

impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        let product = self.product.get_info();
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_tasks()
            .enable_skills_with_directory_read()
            .build();
        let instructions = match product.instructions {
            Some(product) => {
                format!("{product} This build also serves conformance-suite fixtures.")
            }
            None => "This build serves conformance-suite fixtures.".to_owned(),
        };
        ServerConfig::new(capabilities)
            .with_server_info(product.server_info)
            .with_instructions(instructions)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.product
            .get_tool(name)
            .or_else(|| self.fixture_tool(name).cloned())
    }

    // ── tools ──

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.product.list_tools(request, cx).await?.tools;
        tools.extend(self.fixtures.tools.iter().cloned());
        Ok(ListToolsResult::with_all_items(tools)
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if self.product.has_tool(&request.name) {
            return self.product.call_tool(request, cx).await;
        }
        if self.fixture_tool(&request.name).is_none() {
            return Err(unknown_tool(&request.name));
        }
        self.call_fixture_tool(request, cx).await
    }

    // ── prompts ──

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut prompts = self.product.list_prompts(request, cx).await?.prompts;
        prompts.extend(fixture_prompts());
        Ok(ListPromptsResult::with_all_items(prompts)
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if self.product.has_prompt(&request.name) {
            return self.product.get_prompt(request, cx).await;
        }
        fixture_prompt(request)
    }

    // ── resources ──

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        // The fixtures head the first page; the caller's files (the product's
        // resources) follow, paged by the product's own cursor.
        let first_page = request.as_ref().is_none_or(|r| r.cursor.is_none());
        let files = self.product.list_resources(request, cx).await?;
        let mut resources = Vec::new();
        if first_page {
            resources.extend(static_resources());
            resources.extend(self.fixtures.skill.resources());
        }
        let has_files = !files.resources.is_empty() || files.next_cursor.is_some();
        resources.extend(files.resources);
        let mut result = if has_files {
            // The caller's own files: fresh and private, as the product lists them.
            ListResourcesResult::with_all_items(resources)
                .with_ttl_ms(0)
                .with_cache_scope(CacheScope::Private)
        } else {
            ListResourcesResult::with_all_items(resources)
                .with_ttl_ms(CACHE_TTL_MS)
                .with_cache_scope(CacheScope::Public)
        };
        result.next_cursor = files.next_cursor;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new("test://template/{id}/data", "Dynamic Resource")
            .with_description("A dynamic resource with parameter substitution")
            .with_mime_type("application/json");
        let mut templates = vec![template];
        templates.extend(
            self.product
                .list_resource_templates(request, cx)
                .await?
                .resource_templates,
        );
        Ok(ListResourceTemplatesResult::with_all_items(templates)
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(contents) = self.fixture_contents(&request.uri) else {
            // The caller's files; anything else is "Resource not found: <uri>"
            // (-32002; rmcp turns it into -32602 for 2026-07-28 peers, SEP-2164).
            return self.product.read_resource(request, cx).await;
        };
        Ok(ReadResourceResult::new(vec![contents])
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public)
            .into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        lock(&self.fixtures.legacy_subscriptions).insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        lock(&self.fixtures.legacy_subscriptions).remove(&request.uri);
        Ok(())
    }

    // ── subscriptions/listen (2026-07-28) ──

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Declined where the product declines listen streams (MCP_LONG_STREAMS=off);
        // otherwise every advertised kind, fixture resources included.
        self.product
            .listen_filter(requested)
            .map(|_| requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.product.hold_listen(context).await
    }

    // ── skills ──

    async fn list_skills(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, ErrorData> {
        Ok(
            ListSkillsResult::with_all_items(vec![self.fixtures.skill.entry.clone()])
                .with_ttl_ms(CACHE_TTL_MS)
                .with_cache_scope(CacheScope::Public),
        )
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, ErrorData> {
        let entry = &self.fixtures.skill.entry;
        if request.uri != entry.uri {
            return Err(ErrorData::invalid_params(
                format!("No skill is served at {}", request.uri),
                Some(json!({ "uri": request.uri })),
            ));
        }
        Ok(GetSkillResult::new(entry.clone())
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, ErrorData> {
        let children = self.fixtures.skill.children(&request.uri).ok_or_else(|| {
            ErrorData::invalid_params(
                format!("{} is not a directory", request.uri),
                Some(json!({ "uri": request.uri })),
            )
        })?;
        Ok(ReadResourceDirectoryResult::with_all_items(children)
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    // ── completion and logging ──

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let typed = request.argument.value.as_str();
        let values = completion_candidates(&request.r#ref, &request.argument.name)
            .iter()
            .filter(|candidate| candidate.starts_with(typed))
            .map(|candidate| (*candidate).to_owned())
            .collect();
        let completion =
            CompletionInfo::new(values).map_err(|error| ErrorData::internal_error(error, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *lock(&self.fixtures.log_level) = request.level;
        Ok(())
    }

    // ── tasks ──

    async fn get_task(
        &self,
        request: GetTaskParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.product.get_task(request, cx).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.product.update_task(request, cx).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.product.cancel_task(request, cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_tool_names_are_unique() {
        let tools = fixture_tools();
        let names: HashSet<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
        assert_eq!(names.len(), tools.len());
    }

    #[test]
    fn every_advertised_schema_is_plain_portable_json_schema() {
        let mut tools = mcp_function::tools::product_tools().list_all();
        tools.extend(fixture_tools());
        assert_eq!(schema::portability_problems(&tools), Vec::<String>::new());
        // The 2020-12 fixture is advertised as written: it is what its scenario checks.
        let fixture = tools
            .iter()
            .find(|tool| tool.name == "json_schema_2020_12_tool")
            .expect("the 2020-12 fixture");
        assert_eq!(
            Value::Object((*fixture.input_schema).clone()),
            json_schema_2020_12()
        );
    }

    #[test]
    fn custom_header_tool_declares_its_header() {
        let tools = fixture_tools();
        let tool = tools
            .iter()
            .find(|tool| tool.name == "test_custom_header")
            .expect("test_custom_header is a fixture");
        let schema = Value::Object((*tool.input_schema).clone());
        assert_eq!(
            schema.pointer("/properties/value/x-mcp-header"),
            Some(&json!("Value"))
        );
    }

    #[test]
    fn elicitation_schemas_parse() {
        for schema in [contact_schema(), defaults_schema(), enums_schema()] {
            let _ = elicitation_schema(schema);
        }
    }

    #[test]
    fn skill_entry_is_valid_and_matches_its_files() {
        let skill = FixtureSkill::new();
        skill.entry.validate().expect("fixture skill is valid");
        let SkillResources::Files(files) = &skill.entry.resources else {
            panic!("fixture skill lists its files");
        };
        for file in files {
            let contents = skill.contents(&file.uri).expect("listed file is readable");
            let ResourceContents::TextResourceContents { text, .. } = contents else {
                panic!("skill files are text");
            };
            file.verify(text.as_bytes()).expect("digest and size match");
        }
    }

    #[test]
    fn skill_directories_list_direct_children() {
        let skill = FixtureSkill::new();
        let root = skill.children(SKILL_ROOT).expect("root is a directory");
        let uris: Vec<&str> = root.iter().map(|child| child.uri.as_str()).collect();
        assert_eq!(uris, [SKILL_REFERENCES_URI, SKILL_MD_URI]);
        assert!(root[0].is_directory());
        assert!(skill.children(SKILL_MD_URI).is_none());
    }

    #[test]
    fn template_ids_are_single_segments() {
        assert_eq!(template_id("test://template/42/data"), Some("42"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/a/b/data"), None);
    }

    #[test]
    fn request_state_round_trips_and_rejects_tampering() {
        let codec = request_state_codec(b"short");
        let sealed = codec.seal_json(&json!({ "round": 1 })).expect("seals");
        let opened: Value = codec.open_json(&sealed).expect("opens");
        assert_eq!(opened, json!({ "round": 1 }));
        assert!(codec.open(&format!("{sealed}-TAMPERED")).is_err());
    }
}
