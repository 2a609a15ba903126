//! `mcp-lambda`: serves the MCP function on AWS Lambda behind API Gateway or a function URL.

use std::process::ExitCode;

use mcp_function::{app, run};

// Under load, glibc's malloc took a fifth of the CPU (bench/RESULTS.md); mimalloc is faster
// with many short-lived allocations across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: an instance serves one event at a time, and cross-thread wake-ups were two
// thirds of an invocation's time in process (bench/RESULTS.md: 174 µs → 58 µs for an echo).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    run::lambda(app::Product).await
}
