//! `bff`: reads its configuration from the environment and serves until
//! SIGTERM/SIGINT. Everything else lives in the library; the entry point's
//! behaviour (--version, exit codes) is the kit's.

use std::process::ExitCode;

use storefront_bff::config::Config;
use storefront_bff::startup::Application;
use storefront_kit::entry::Flavor;

/// mimalloc: the proxy path allocates and frees many small buffers per
/// request (headers, bodies, futures); glibc's malloc was a fifth of the
/// BFF's CPU under load (scripts/bench.sh with BENCH_PERF=1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: a request's hops between tasks (the server connection, the
/// Redis connection's driver, the upstream connection) stay on it instead of
/// waking another worker, which on a loaded machine waits for a CPU slot
/// each time. The BFF's work per request is small; one core serves it
/// (scripts/bench.sh measures it beside nginx).
fn main() -> ExitCode {
    storefront_kit::entry::block_on(
        Flavor::CurrentThread,
        storefront_kit::entry::run(
            "bff",
            env!("CARGO_PKG_VERSION"),
            Config::from_vars,
            |config, stop| async move { Application::build(config).await?.run_until(stop).await },
        ),
    )
}
