//! The integration tests of the JWT authorizer, one test binary: `common` holds the keys, token
//! builders and JWKS server they share (the MCP function's tests use its bad-token corpus too),
//! `../data/` the key files and the captured authorizer events.

mod common;

mod cognito;
mod corpus;
mod fuzz;
mod key_lifetimes;
mod lambda_events;
mod mcp_token;
