//! `payments`: reads its configuration from the environment and serves until
//! SIGTERM/SIGINT. Everything else lives in the library; the entry point's
//! behaviour (--version, exit codes) is the kit's.

use std::process::ExitCode;

use storefront_kit::entry::Flavor;
use storefront_payments::config::Config;
use storefront_payments::startup::Application;

fn main() -> ExitCode {
    storefront_kit::entry::block_on(
        Flavor::MultiThread,
        storefront_kit::entry::run(
            "payments",
            env!("CARGO_PKG_VERSION"),
            Config::from_vars,
            |config, stop| async move { Application::build(config).await?.run_until(stop).await },
        ),
    )
}
