//! The MCP function: one tower service that serves MCP over Streamable HTTP,
//! hosted by `mcp-server` (hyper/axum) and by `mcp-lambda` (lambda_http) with the same code.
//!
//! Layout:
//! - [`config`]: settings from `MCP_*` variables and flags.
//! - [`backends`]: opens the keys and the store once per process, AWS clients included.
//! - [`app`]: builds the HTTP service: `/mcp`, `/health/live`, `/health/ready`.
//! - [`http`]: tower layers around rmcp (principal, session gate, JSON responses).
//! - [`session`]: durable legacy-wire sessions on top of rmcp's session manager.
//! - [`relay`]: legacy server-to-client requests answered through another instance.
//! - [`server`]: the MCP handler: capabilities, instructions and dispatch.
//! - [`context`]: what tools, resources and tasks share (stores, settings); not the handler.
//! - [`tasks`]: durable task-augmented tool calls (records in the store, runs anywhere).
//! - [`tools`]: one file per product tool. [`prompts`]: the runbooks.
//! - [`resources`]: the callers' files as MCP resources (`files:///` URIs).
//! - [`fault`]: what a caller is told when a store fails (its own mistake, or "retry").
//! - [`store`]: the store traits and the SQLite/PostgreSQL/DynamoDB backends.
//! - [`blob`]: the callers' files behind one trait (local folder, S3); knows nothing of MCP.
//! - [`telemetry`]: metrics (Prometheus text or CloudWatch EMF), request and audit logs.
//! - [`principal`]: who a request acts for.
//! - [`names`]: the spelling rule of state keys and file paths (NFC, nothing invisible).
//! - [`keys`]: signing keys (Secrets Manager or `MCP_SIGNING_KEY`), rotated without downtime.
//! - [`server_host`]: the long-running host used by `mcp-server`.
//! - [`lambda_host`]: the Lambda host used by `mcp-lambda` (API Gateway and function URL events).
//! - [`run`]: what the binaries do, for the product or a build with an [`app::Extension`].

pub mod app;
pub mod backends;
pub mod blob;
pub mod codes;
pub mod config;
pub mod context;
pub mod fault;
pub mod http;
pub mod keys;
pub mod lambda_host;
pub mod listen;
pub mod names;
pub mod principal;
pub mod prompts;
pub mod relay;
pub mod resources;
pub mod run;
pub mod server;
pub mod server_host;
pub mod session;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod tools;
