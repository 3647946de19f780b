//! Before a start: waiting until the old process has let go of its ports,
//! adopting a process of ours found on one, naming anyone else's; and
//! recording the process that serves now.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::load;
use crate::fleet::Ctx;
use crate::fleet::process::{self, Spawned};
use crate::fleet::ready;
use crate::fleet::state::Component;

/// How long a start waits for the old process to let go of its ports.
const RELEASE_DEADLINE: Duration = Duration::from_secs(15);

/// Who holds a port the component needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Free,
    /// The old process (or a thread of it, or its group) is still letting go.
    Leaving,
    /// A process of this fleet we did not record: adopt it.
    Ours(i32),
    /// Someone else's.
    Foreign(i32),
    /// Taken, and the holder cannot be seen (another user's, or closing).
    Unseen,
}

/// Classifies who holds `port` for a component whose old pid was `old`.
pub fn holder(port: u16, old: Option<i32>, fleet: &std::path::Path) -> Holder {
    if ready::port_free(port) {
        return Holder::Free;
    }
    match process::port_owner(port) {
        None => Holder::Unseen,
        Some(p) if old.is_some_and(|o| p == o || process::group_of(p) == o) => Holder::Leaving,
        Some(p) if !process::alive(p, None) => Holder::Leaving,
        Some(p) if process::is_ours(p, fleet) => Holder::Ours(p),
        Some(p) => Holder::Foreign(p),
    }
}

/// Waits (polling, with a deadline) until the old process has gone and every
/// port of the component is free. A process of ours found holding a port is
/// returned for adoption; anyone else's is named at once.
pub(super) fn await_release(ctx: &Ctx, c: &Component) -> Result<Option<i32>> {
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let old_left = c
            .pid
            .is_some_and(|p| process::lingering(p) || process::group_alive(p));
        let holders: Vec<(u16, Holder)> = c
            .ports
            .iter()
            .map(|p| (*p, holder(*p, c.pid, &ctx.state_dir)))
            .collect();
        if let Some((port, Holder::Foreign(pid))) = holders
            .iter()
            .find(|(_, h)| matches!(h, Holder::Foreign(_)))
        {
            bail!(
                "port {port} is held by pid {pid} ({}), not started by this fleet; stop it, or move the fleet with --port-base N",
                process::comm(*pid)
            );
        }
        if let Some((_, Holder::Ours(pid))) =
            holders.iter().find(|(_, h)| matches!(h, Holder::Ours(_)))
        {
            return Ok(Some(*pid));
        }
        if !old_left && holders.iter().all(|(_, h)| *h == Holder::Free) {
            return Ok(None);
        }
        if Instant::now() > deadline {
            let busy: Vec<String> = holders
                .iter()
                .filter(|(_, h)| *h != Holder::Free)
                .map(|(p, h)| format!("{p} ({h:?})"))
                .collect();
            bail!(
                "`{}`: after {RELEASE_DEADLINE:?} the old process {} still {} (ports {})",
                c.name,
                c.pid.unwrap_or_default(),
                if old_left { "lingers" } else { "is gone" },
                busy.join(", ")
            );
        }
        if let Some(p) = c.pid {
            process::reap(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn record(ctx: &Ctx, name: &str, sp: Spawned) -> Result<()> {
    let mut state = load(ctx)?;
    let c = state
        .components
        .iter_mut()
        .find(|c| c.name == name)
        .with_context(|| format!("`{name}` vanished from fleet.json"))?;
    c.pid = Some(sp.pid);
    c.start_ticks = sp.start_ticks;
    state.save(&ctx.state_dir)
}

pub(super) fn adopt(ctx: &Ctx, name: &str, pid: i32) -> Result<()> {
    record(
        ctx,
        name,
        Spawned {
            pid,
            start_ticks: process::start_ticks(pid),
        },
    )
}
