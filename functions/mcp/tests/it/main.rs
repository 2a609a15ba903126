//! The integration tests of `mcp-function`, one test binary: each module was once a binary of
//! its own, and linking the AWS SDK and the service into one binary instead of eighteen is most
//! of what a test build costs. `common` holds the helpers they share and `../data/` the
//! captured Lambda events they start from.
//!
//! Tests that need moto (`MCP_TEST_AWS_ENDPOINT`) or PostgreSQL (`MCP_TEST_POSTGRES_URL`) skip
//! with a printed reason when it is missing; `scripts/test.sh` starts both and sets
//! `MCP_TEST_REQUIRE_SERVICES=1`, under which a missing service fails the test instead.

mod common;

mod auth_http;
mod blob_suite;
mod cancellation;
mod file_resources;
mod http_service;
mod lambda_cross_instance;
mod lambda_events;
mod listen;
mod logs;
mod look_alike_names;
mod observability;
mod readiness_cost;
mod relay;
mod secret_keys;
mod server_binary;
mod store_round_trips;
mod store_suite;
mod tasks;
