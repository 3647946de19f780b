//! `storefront`: parse, dispatch, map the error to an exit code.

// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod check;
mod clients;
mod commands;
mod dashboard;
mod exit;
mod experiments;
mod faults;
mod fleet;
mod load;
mod report;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match commands::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    diagnostics(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e
                .downcast_ref::<exit::Exit>()
                .map_or(exit::ERROR, |x| x.code);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// The CLI's own diagnostics (`debug!`, `warn!`) go to stderr, never stdout
/// (which carries reports and `--json`): `RUST_LOG` if set, else storefront's warnings and others' errors,
/// `-v` debug and `-vv` trace for storefront's own modules.
fn diagnostics(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(match verbose {
            0 => "error,storefront=warn",
            1 => "warn,storefront=debug",
            _ => "info,storefront=trace",
        })
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
