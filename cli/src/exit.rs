//! Exit codes: named, documented, the same for every command.

/// Everything passed / the command did what was asked.
pub const OK: u8 = 0;
/// An invariant or threshold failed, or the fleet is unhealthy.
pub const FAILED: u8 = 1;
/// No verdict: the fleet is not up (or not reachable), so nothing was judged.
pub const UNKNOWN: u8 = 2;
/// The command could not do its job (boot failed, a port is taken, a program is missing).
pub const ERROR: u8 = 3;
/// Bad command line.
pub const USAGE: u8 = 64;
/// Interrupted by Ctrl-C (after cleaning up).
pub const INTERRUPTED: u8 = 130;

/// The text `--help` shows under "Exit codes".
pub const HELP: &str = "\
Exit codes:
  0    success: the command did its job; every invariant passed
  1    failed: an invariant or threshold failed, or the fleet is unhealthy
  2    unknown: no verdict (the fleet is not up: run `storefront up`)
  3    error: the command could not do its job (boot failed, port taken, program missing)
  64   usage: bad command line
  130  interrupted (Ctrl-C), after cleaning up";

/// An error that carries its exit code up to `main`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        Self {
            code,
            message: message.into(),
        }
        .into()
    }
}
