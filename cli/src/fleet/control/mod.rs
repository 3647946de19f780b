//! The control plane: stop, start, restart, pause and resume one component
//! of a running fleet, infrastructure included. The breaker and saga
//! experiments crash a service mid-run and bring it back; `storefront
//! stop|start|restart|pause|resume NAME` does it by hand; `up` on a partly
//! dead fleet starts what is dead through [`start_detailed`]. The record in
//! fleet.json follows every step.
//!
//! Starting again waits until the old process is gone and its ports are free
//! (a SIGKILLed process whose leader is a zombie can still hold its socket
//! through its other threads), adopts a process of ours found on the port,
//! and names anyone else's. A restarted Vault has forgotten everything (its
//! storage is in memory): it is initialised, unsealed and configured again,
//! new service tokens are issued, and the services holding the old tokens
//! are restarted with the new ones: a token is handed over in the
//! environment, so a restart is the only way.

mod release;
mod revive;
mod signal;
mod start;

use anyhow::{Context, Result, bail};

use super::Ctx;
use super::state::{Component, ComponentKind, FleetState, InfraMode};
use super::supervisor;

pub use revive::start_dead;
pub use signal::{pause, signal, stop};
pub use start::{Started, start, start_detailed};

/// How to stop it: politely (SIGTERM, drain; Postgres's "fast" shutdown),
/// as a crash (SIGKILL), or, for Postgres, its "immediate" shutdown
/// (SIGQUIT: no checkpoint, crash recovery on the next start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum How {
    Graceful,
    Crash,
    Immediate,
}

/// The infrastructure in the order it is started: what each needs comes first.
pub const INFRA_ORDER: &[&str] = &["postgres", "redis", "epmd", "rabbitmq", "vault"];

pub(super) fn load(ctx: &Ctx) -> Result<FleetState> {
    FleetState::load(&ctx.state_dir)?.with_context(|| {
        format!(
            "no fleet is up in {} (storefront up)",
            ctx.state_dir.display()
        )
    })
}

/// The recorded component `name`, or an error that lists the names there are.
pub(super) fn find<'a>(state: &'a FleetState, name: &str) -> Result<&'a Component> {
    state
        .components
        .iter()
        .find(|c| c.name == name)
        .with_context(|| unknown(state, name))
}

fn unknown(state: &FleetState, name: &str) -> String {
    let names: Vec<&str> = state.components.iter().map(|c| c.name.as_str()).collect();
    format!(
        "no component `{name}` in the fleet; it has: {} (as `storefront status` lists them)",
        names.join(", ")
    )
}

/// A component we do not run (external or compose infrastructure) cannot
/// be signalled from here.
pub(super) fn require_ours(state: &FleetState, c: &Component) -> Result<()> {
    if c.kind == ComponentKind::Infra
        && state.infra != InfraMode::Native
        && c.name != supervisor::NAME
    {
        bail!(
            "`{}` is run by the {} infrastructure, not by this fleet: control it where it runs",
            c.name,
            format!("{:?}", state.infra).to_lowercase()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
