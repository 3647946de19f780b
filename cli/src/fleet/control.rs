//! Stopping and starting one component of a running fleet: the breaker and
//! saga experiments crash a service mid-run and bring it back, and
//! `storefront restart` does it by hand. The record in fleet.json follows.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::process::{self, Stopped};
use super::state::{ComponentKind, FleetState};
use super::{Ctx, services};

/// How to stop it: politely (SIGTERM, drain) or as a crash (SIGKILL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum How {
    Graceful,
    Crash,
}

fn load(ctx: &Ctx) -> Result<FleetState> {
    FleetState::load(&ctx.state_dir)?.with_context(|| {
        format!(
            "no fleet is up in {} (storefront up)",
            ctx.state_dir.display()
        )
    })
}

/// Stops the named service instance; its record stays, without a pid.
pub fn stop(ctx: &Ctx, name: &str, how: How) -> Result<Stopped> {
    let mut state = load(ctx)?;
    let c = state
        .components
        .iter_mut()
        .find(|c| c.name == name)
        .with_context(|| format!("no component `{name}` in the fleet"))?;
    if c.kind != ComponentKind::Service {
        bail!("`{name}` is infrastructure; only services can be stopped and started on their own");
    }
    let Some(pid) = c.pid else {
        return Ok(Stopped::NotRunning);
    };
    let outcome = match how {
        How::Graceful => process::stop(
            pid,
            c.start_ticks,
            Signal::SIGTERM,
            Duration::from_secs(ctx.profile.timeouts.stop_secs),
        ),
        How::Crash => process::stop(pid, c.start_ticks, Signal::SIGKILL, Duration::from_secs(5)),
    };
    c.pid = None;
    c.start_ticks = None;
    state.save(&ctx.state_dir)?;
    Ok(outcome)
}

/// Starts the named service instance again with its recorded configuration
/// and waits until it is ready; returns how long that took.
pub async fn start(ctx: &Ctx, name: &str) -> Result<Duration> {
    let mut state = load(ctx)?;
    let (spec, _, port) = ctx
        .profile
        .instances()
        .into_iter()
        .find(|(_, n, _)| n == name)
        .with_context(|| {
            format!(
                "profile `{}` has no service instance `{name}`",
                ctx.profile.name
            )
        })?;
    let c = state
        .components
        .iter_mut()
        .find(|c| c.name == name)
        .with_context(|| format!("no component `{name}` in the fleet"))?;
    if c.pid.is_some_and(|p| process::alive(p, c.start_ticks)) {
        bail!(
            "`{name}` is already running (pid {})",
            c.pid.unwrap_or_default()
        );
    }
    let t = Instant::now();
    let (sp, _) = services::spawn(ctx, &spec, name, port, &state.endpoints)?;
    c.pid = Some(sp.pid);
    c.start_ticks = sp.start_ticks;
    state.save(&ctx.state_dir)?;
    services::wait_ready(ctx, &super::boot::http_client(), name, port, sp).await?;
    Ok(t.elapsed())
}
