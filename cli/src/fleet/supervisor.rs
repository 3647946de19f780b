//! The supervisor's process, opt-in per profile (`supervise = true`, or per
//! service): `up` spawns it, detached, as `storefront supervise` (hidden);
//! fleet.json records it as `supervisor`; `down` stops it first (before the
//! services it would otherwise bring back); it is controllable by name like
//! the rest (`storefront stop supervisor`). What it does once running is
//! [`super::supervise`].

use anyhow::Result;

use super::Ctx;
use super::process::{self, Spawned};

/// The component name fleet.json records it under.
pub const NAME: &str = "supervisor";

/// The profile it supervises, written where it can read it again (the port
/// base already applied), and the command that runs it.
pub fn command(ctx: &Ctx) -> Result<std::process::Command> {
    let file = ctx.state_dir.join("supervisor.toml");
    super::state::write_private(&file, toml::to_string(&ctx.profile)?.as_bytes())?;
    let mut cmd = std::process::Command::new(this_program()?);
    cmd.arg("--fleet")
        .arg(&file)
        .arg("--state-dir")
        .arg(&ctx.state_dir)
        .arg("supervise")
        .env("STOREFRONT_ROOT", &ctx.root)
        .env_remove("STOREFRONT_PORT_BASE");
    Ok(cmd)
}

/// This program's path. A binary rebuilt while it runs (`cargo build`) is
/// shown by Linux as "PATH (deleted)": the new one at PATH is the one to run.
fn this_program() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => std::path::PathBuf::from(path),
        None => exe,
    })
}

/// Spawns the supervisor (detached, logging to logs/supervisor.log).
pub fn spawn(ctx: &Ctx) -> Result<Spawned> {
    process::spawn(command(ctx)?, &ctx.log_path(NAME), &ctx.state_dir)
}
