//! `mcp-server`: serves the MCP function over HTTP on a normal host (laptop, EC2, container).

use std::process::ExitCode;

use mcp_function::{app, run};

// Under load, glibc's malloc took a fifth of the CPU (bench/RESULTS.md); mimalloc is faster
// with many short-lived allocations across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread allocates: mimalloc reserves its arena 1 GiB at a time, and with
    // transparent huge pages every 2 MiB of it a thread touches becomes resident, a quarter of
    // the peak RSS under load for no throughput. If the kernel refuses, the server runs anyway.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mcp-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run::server(app::Product))
}
