//! `bff`: reads its configuration from the environment and serves until
//! SIGTERM. Everything else lives in the library.

use std::process::ExitCode;

use storefront_bff::config::Config;
use storefront_bff::startup::{AppError, Application};
use storefront_kit::telemetry;

/// Configuration or startup failed; the message says why.
const EXIT_FAILURE: u8 = 1;
/// Arguments were given that the binary doesn't take.
const EXIT_USAGE: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    // Before reading config, so `--version` works with an empty environment.
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("--version" | "-V") => {
            println!("bff {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!(
                "bff: unexpected argument {other:?} (configuration comes from the environment)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("bff: configuration error: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    telemetry::init(&config.common.service_name);
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "bff stopped with an error");
            eprintln!("bff: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Builds the application and serves until shutdown.
async fn serve(config: Config) -> Result<(), AppError> {
    Application::build(config).await?.run().await
}
