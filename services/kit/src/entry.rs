//! A service binary's `main`, once: `--version` before any configuration is
//! read, configuration errors that exit 1 with the reason, telemetry, serve
//! until SIGTERM/SIGINT, and startup or serving errors that exit 1. Every
//! service's `main.rs` is a call to [`run`] on the runtime [`block_on`]
//! builds.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::{CommonConfig, ConfigError, Vars};

/// Configuration or startup failed; the message says why.
pub const EXIT_FAILURE: u8 = 1;
/// Arguments were given that the binary doesn't take.
pub const EXIT_USAGE: u8 = 2;

/// The runtime a service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// One thread (the BFF: see its `main.rs`).
    CurrentThread,
    /// A worker per CPU.
    MultiThread,
}

/// Runs `main` (a service's [`run`]) on a new runtime of `flavor`, then
/// writes out the log lines still waiting once the runtime is gone
/// ([`crate::telemetry::flush`]).
pub fn block_on(flavor: Flavor, main: impl Future<Output = ExitCode>) -> ExitCode {
    let mut builder = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(main);
    // Tasks still running log as they are dropped.
    drop(runtime);
    crate::telemetry::flush();
    code
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
/// the process environment (a service's `Config::from_vars`), `serve`
/// builds the application and serves until the future it is handed (the
/// shutdown token's) resolves, on SIGTERM or SIGINT.
pub async fn run<C, E, F, Fut>(
    name: &str,
    version: &str,
    load: impl FnOnce(&Vars) -> Result<C, ConfigError>,
    serve: F,
) -> ExitCode
where
    E: Display,
    F: FnOnce(C, crate::shutdown::Signal) -> Fut,
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
    let vars = Vars::process();
    // The common part first: telemetry needs the service's name, and every
    // service's own configuration starts by reading it (same errors).
    let loaded = CommonConfig::from_vars(&vars).and_then(|common| Ok((common, load(&vars)?)));
    let (common, config) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{name}: configuration error: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    crate::telemetry::init(&common.service_name);
    let code = match serve(config, crate::shutdown::on_signal().cancelled_owned()).await {
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
