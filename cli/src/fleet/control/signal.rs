//! Stopping and pausing: which signal, to whom, and waiting until it took.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::{How, find, load, require_ours};
use crate::fleet::Ctx;
use crate::fleet::process::{self, Stopped};

/// The signal that stops `name` the way `how` asks.
pub fn signal(name: &str, how: How) -> Result<Signal> {
    Ok(match (how, name) {
        (How::Crash, _) => Signal::SIGKILL,
        // SIGINT is Postgres's "fast" shutdown (SIGTERM waits for clients).
        (How::Graceful, "postgres") => Signal::SIGINT,
        (How::Graceful, _) => Signal::SIGTERM,
        (How::Immediate, "postgres") => Signal::SIGQUIT,
        (How::Immediate, _) => {
            bail!("only postgres has an immediate mode; stop `{name}` with --mode fast or --crash")
        }
    })
}

/// Stops the named component; its record stays, without a pid. Waits until
/// the process and its group are gone (SIGKILL after the profile's stop
/// deadline).
pub fn stop(ctx: &Ctx, name: &str, how: How) -> Result<Stopped> {
    let mut state = load(ctx)?;
    let c = find(&state, name)?;
    require_ours(&state, c)?;
    let sig = signal(name, how)?;
    let Some(pid) = c.pid else {
        return Ok(Stopped::NotRunning);
    };
    let grace = match how {
        How::Graceful => Duration::from_secs(ctx.profile.timeouts.stop_secs),
        How::Crash | How::Immediate => Duration::from_secs(5),
    };
    let outcome = match process::stop(pid, c.start_ticks, sig, grace) {
        // Gone after SIGKILL is a kill, however fast.
        Stopped::Graceful if sig == Signal::SIGKILL => Stopped::Killed,
        o => o,
    };
    // Found above; a record that lost it meanwhile has nothing to clear.
    if let Some(c) = state.components.iter_mut().find(|c| c.name == name) {
        c.pid = None;
        c.start_ticks = None;
    }
    state.save(&ctx.state_dir)?;
    Ok(outcome)
}

/// Pauses (SIGSTOP) or resumes (SIGCONT) the component's whole process
/// group: a Postgres with its backends, RabbitMQ's wrapper and beam.smp.
pub fn pause(ctx: &Ctx, name: &str, resume: bool) -> Result<i32> {
    let state = load(ctx)?;
    let c = find(&state, name)?;
    require_ours(&state, c)?;
    let pid = c
        .pid
        .filter(|p| process::alive(*p, c.start_ticks))
        .with_context(|| {
            format!("`{name}` is not running; start it with `storefront start {name}`")
        })?;
    let pgid = process::own_group(pid);
    let sig = if resume {
        Signal::SIGCONT
    } else {
        Signal::SIGSTOP
    };
    if pgid == pid && process::group_of(pid) != pid {
        // Not leading a group of its own (adopted): only the process itself.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
            .with_context(|| format!("cannot send {sig} to pid {pid}"))?;
    } else {
        process::signal_group(pgid, sig)?;
    }
    // The state changes asynchronously: see it before saying it happened.
    let deadline = Instant::now() + Duration::from_secs(5);
    while process::paused(pid) == resume {
        if Instant::now() > deadline {
            bail!(
                "`{name}` (pid {pid}) did not {} within 5s",
                if resume { "resume" } else { "stop" }
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(pgid)
}
