//! `conformance-server`: `mcp-server` with the conformance suite's fixtures.

use std::process::ExitCode;

use conformance::Fixtures;

// As `mcp-server`: the suite runs against the product's allocator and runtime.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    mcp_function::run::server(Fixtures).await
}
