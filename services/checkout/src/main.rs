//! `checkout`: reads its configuration from the environment and serves until
//! SIGTERM/SIGINT. Everything else lives in the library; the entry point's
//! behaviour (--version, exit codes) is the kit's.

use std::process::ExitCode;

use storefront_checkout::config::Config;
use storefront_checkout::startup::Application;
use storefront_kit::entry::Flavor;

fn main() -> ExitCode {
    storefront_kit::entry::block_on(
        Flavor::MultiThread,
        storefront_kit::entry::run(
            "checkout",
            env!("CARGO_PKG_VERSION"),
            Config::from_vars,
            |config, stop| async move { Application::build(config).await?.run_until(stop).await },
        ),
    )
}
