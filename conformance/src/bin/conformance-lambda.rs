//! `conformance-lambda`: `mcp-lambda` with the conformance suite's fixtures, task runs included.

use std::process::ExitCode;

use conformance::Fixtures;

// As `mcp-lambda`: the suite runs against the product's allocator and runtime.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    mcp_function::run::lambda(Fixtures).await
}
