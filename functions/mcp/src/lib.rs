//! The MCP function: one tower service that serves MCP over Streamable HTTP,
//! hosted by `mcp-server` (hyper/axum) today and by Lambda with the same code.
//!
//! Layout:
//! - [`config`]: settings from `MCP_*` variables and flags.
//! - [`app`]: builds the HTTP service: `/mcp`, `/health/live`, `/health/ready`.
//! - [`http`]: tower layers around rmcp (principal, session gate, JSON responses).
//! - [`session`]: durable legacy-wire sessions on top of rmcp's session manager.
//! - [`server`]: the MCP handler: capabilities and dispatch.
//! - [`tools`]: one file per product tool. [`prompts`]: the runbooks.
//! - [`store`]: the store traits and the SQLite/PostgreSQL backend.
//! - [`principal`]: who a request acts for.
//! - [`server_host`]: the long-running host used by `mcp-server`.
//! - `conformance` (feature): the conformance suite's fixtures.

pub mod app;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod http;
pub mod principal;
pub mod prompts;
pub mod server;
pub mod server_host;
pub mod session;
pub mod store;
pub mod tools;
