//! The fleet the gate runs against: the one that is up, or one it boots
//! for the purpose and stops again, leaving nothing behind.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::exit::{self, Exit};
use crate::fleet::progress::Progress;
use crate::fleet::{Ctx, FleetState, InfraMode, boot, observe, stop};

/// Boots a fleet unless one is up; true when it booted one (to stop after).
pub async fn ensure(ctx: &Ctx, json: bool) -> Result<bool> {
    if let Some(state) = FleetState::load(&ctx.state_dir)? {
        if !observe::all_dead(&state) {
            return Ok(false);
        }
        FleetState::remove(&ctx.state_dir)?;
    }
    if !json {
        eprintln!(
            "verify: no fleet is up in {}; booting `{}` for the gate (stopped again after)",
            ctx.state_dir.display(),
            ctx.profile.name
        );
    }
    let progress = Progress::new(json);
    boot::up(ctx, &progress, InfraMode::Native, true)
        .await
        .context("verify: cannot boot a fleet")?;
    Ok(true)
}

/// Stops the fleet [`ensure`] booted, as `down` does, and checks that
/// nothing of it is left.
pub async fn teardown(ctx: &Ctx) -> Result<()> {
    let Some(state) = FleetState::load(&ctx.state_dir)? else {
        return Ok(());
    };
    let grace = Duration::from_secs(ctx.profile.timeouts.stop_secs);
    let (s, dir) = (state.clone(), ctx.state_dir.clone());
    tokio::task::spawn_blocking(move || stop::stop_all(&s, &dir, grace)).await?;
    let (survivors, listening) = (stop::survivors(&state), stop::listening_ports(&state));
    if !survivors.is_empty() || !listening.is_empty() {
        return Err(Exit::error(
            exit::ERROR,
            format!(
                "verify: stopping its fleet left processes {survivors:?}, listening ports {listening:?}; run `storefront down`"
            ),
        ));
    }
    FleetState::remove(&ctx.state_dir)
}
