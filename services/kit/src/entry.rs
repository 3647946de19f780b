//! A service binary's `main`, once: `--version` before any configuration is
//! read, configuration errors that exit 1 with the reason, telemetry, serve,
//! and startup or serving errors that exit 1. Every service's `main.rs` is a
//! call to [`run`].

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::CommonConfig;

/// Configuration or startup failed; the message says why.
pub const EXIT_FAILURE: u8 = 1;
/// Arguments were given that the binary doesn't take.
pub const EXIT_USAGE: u8 = 2;

/// A service's configuration carries the common part (for telemetry's name).
pub trait HasCommon {
    fn common(&self) -> &CommonConfig;
}

/// What the first command-line argument asks for.
#[derive(Debug, PartialEq, Eq)]
enum Args {
    Serve,
    Version,
    Unexpected(String),
}

fn parse(first: Option<String>) -> Args {
    match first.as_deref() {
        None => Args::Serve,
        Some("--version" | "-V") => Args::Version,
        Some(other) => Args::Unexpected(other.to_owned()),
    }
}

/// Runs a service: `name` for messages, `load` reads its configuration from
/// the environment, `serve` builds the application and serves until shutdown.
pub async fn run<C, CE, E, F, Fut>(
    name: &str,
    version: &str,
    load: impl FnOnce() -> Result<C, CE>,
    serve: F,
) -> ExitCode
where
    C: HasCommon,
    CE: Display,
    E: Display,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    match parse(std::env::args().nth(1)) {
        Args::Serve => {}
        Args::Version => {
            println!("{name} {version}");
            return ExitCode::SUCCESS;
        }
        Args::Unexpected(other) => {
            eprintln!(
                "{name}: unexpected argument {other:?} (configuration comes from the environment)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let config = match load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: configuration error: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    crate::telemetry::init(&config.common().service_name);
    let code = match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "{name} stopped with an error");
            eprintln!("{name}: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    };
    // Spans still in the exporter's batch would be lost at exit.
    crate::telemetry::shutdown();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_answered_before_configuration_and_other_arguments_are_refused() {
        assert_eq!(parse(None), Args::Serve);
        assert_eq!(parse(Some("--version".into())), Args::Version);
        assert_eq!(parse(Some("-V".into())), Args::Version);
        assert_eq!(
            parse(Some("--port".into())),
            Args::Unexpected("--port".into())
        );
    }
}
