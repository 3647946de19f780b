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

/// A single-threaded runtime, and client connections spread over
/// `HTTP_WORKERS` threads like it (the config's table): a connection lives
/// on one thread, so a request's hops between tasks (the server connection,
/// the upstream connection) stay on it instead of waking another worker of
/// a work-stealing runtime, which on a loaded machine waits for a CPU slot
/// each time (that runtime cost a fifth more CPU per request). One thread
/// alone capped the BFF at one core while nginx, beside it in
/// scripts/bench.sh, runs a worker per core.
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
