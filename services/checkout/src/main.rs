//! `checkout`: reads its configuration from the environment and serves
//! until SIGTERM. Everything else lives in the library.

use std::process::ExitCode;

use storefront_checkout::config::Config;
use storefront_checkout::startup::Application;
use storefront_kit::telemetry;

/// Configuration or startup failed; the message says why.
const EXIT_FAILURE: u8 = 1;
/// Arguments were given that the binary doesn't take.
const EXIT_USAGE: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("--version" | "-V") => {
            println!("checkout {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!(
                "checkout: unexpected argument {other:?} (configuration comes from the environment)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("checkout: configuration error: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    telemetry::init(&config.common.service_name);
    let served = match Application::build(config).await {
        Ok(app) => app.run().await,
        Err(error) => Err(error),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "checkout stopped with an error");
            eprintln!("checkout: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
