//! `storefront`: parse, dispatch, map the error to an exit code.

mod commands;
mod exit;
mod experiments;
mod fleet;
mod load;
mod report;

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
