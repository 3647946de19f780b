//! Stopping a recorded fleet: services first, then infrastructure; each with
//! its polite signal, a deadline, then SIGKILL of its whole process group.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;

use super::process::{self, Stopped};
use super::state::{Component, ComponentKind, FleetState};

/// The signal each component shuts down cleanly on. Postgres: SIGINT is its
/// "fast" shutdown (SIGTERM waits for every client to leave).
fn polite_signal(name: &str) -> Signal {
    if name == "postgres" {
        Signal::SIGINT
    } else {
        Signal::SIGTERM
    }
}

/// Outcome of stopping one component.
#[derive(Debug, Clone)]
pub struct StopResult {
    pub name: String,
    pub outcome: Stopped,
    pub took: Duration,
}

fn stop_one(c: &Component, grace: Duration) -> Option<StopResult> {
    let pid = c.pid?;
    let t = std::time::Instant::now();
    let outcome = process::stop(pid, c.start_ticks, polite_signal(&c.name), grace);
    Some(StopResult {
        name: c.name.clone(),
        outcome,
        took: t.elapsed(),
    })
}

/// Stops everything in `state` that is ours. RabbitMQ goes before epmd,
/// which it needs to shut down cleanly; the rest of the infra in parallel.
///
/// Last, anything still carrying the fleet's marker is killed and reported
/// as a `stray` (a process that escaped its group).
pub fn stop_all(state: &FleetState, fleet: &std::path::Path, grace: Duration) -> Vec<StopResult> {
    // The supervisor first: it would bring back the services stopped next.
    let is_supervisor = |c: &&Component| c.name == super::supervisor::NAME;
    let mut results: Vec<StopResult> = state
        .components
        .iter()
        .filter(is_supervisor)
        .filter_map(|c| stop_one(c, grace))
        .collect();
    let services: Vec<&Component> = state
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Service)
        .collect();
    results.extend(parallel(
        &services.iter().map(|c| vec![*c]).collect::<Vec<_>>(),
        grace,
    ));
    let infra = |n: &str| {
        state
            .components
            .iter()
            .find(|c| c.kind == ComponentKind::Infra && c.name == n)
    };
    let mut chains: Vec<Vec<&Component>> = vec![
        ["rabbitmq", "epmd"]
            .iter()
            .filter_map(|n| infra(n))
            .collect(),
    ];
    for c in state
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Infra)
    {
        if c.name != "rabbitmq" && c.name != "epmd" && c.name != super::supervisor::NAME {
            chains.push(vec![c]);
        }
    }
    results.extend(parallel(&chains, grace));
    results.extend(sweep(state, fleet).into_iter().map(|pid| StopResult {
        name: format!("stray pid {pid} ({})", process::comm(pid)),
        outcome: Stopped::Killed,
        took: Duration::ZERO,
    }));
    results
}

/// Runs each chain on its own thread, components within a chain in order.
fn parallel(chains: &[Vec<&Component>], grace: Duration) -> Vec<StopResult> {
    std::thread::scope(|s| {
        let handles: Vec<_> = chains
            .iter()
            .map(|chain| {
                s.spawn(move || {
                    chain
                        .iter()
                        .filter_map(|c| stop_one(c, grace))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Components whose process is still alive.
pub fn survivors(state: &FleetState) -> Vec<String> {
    state
        .components
        .iter()
        .filter(|c| {
            c.pid
                .is_some_and(|p| process::alive(p, c.start_ticks) || process::group_alive(p))
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Ports of the fleet that still accept connections.
pub fn listening_ports(state: &FleetState) -> Vec<(String, u16)> {
    state
        .components
        .iter()
        .flat_map(|c| c.ports.iter().map(move |p| (c.name.clone(), *p)))
        .filter(|(_, p)| super::ready::port_listening(*p))
        .collect()
}

/// SIGKILLs whatever of the fleet is still alive; returns what it killed.
/// The marker alone cannot find everything: redis-server and Postgres's
/// backends overwrite their environment with their process titles. So also:
/// anything in a recorded component's process group, anything a pid file
/// under the state directory names, and any process of ours (see
/// [`process::is_ours`]) holding one of the fleet's ports.
fn sweep(state: &FleetState, fleet: &std::path::Path) -> Vec<i32> {
    let mut left = process::marked(fleet);
    for c in &state.components {
        // What is left of the group it led. A pid that is some other
        // process's now cannot lead our group (the kernel does not reuse a
        // pid while a group of that id has members): skip it.
        if let Some(pid) = c.pid
            && (process::alive(pid, c.start_ticks) || process::start_ticks(pid).is_none())
        {
            left.extend(process::group_members(pid));
        }
    }
    left.extend(process::pid_files(fleet));
    left.extend(
        state
            .components
            .iter()
            .flat_map(|c| c.ports.iter())
            .filter_map(|p| process::port_owner(*p))
            .filter(|pid| process::is_ours(*pid, fleet)),
    );
    left.sort_unstable();
    left.dedup();
    left.retain(|pid| *pid != std::process::id() as i32);
    for pid in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && left
            .iter()
            .any(|p| process::alive(*p, None) || process::lingering(*p))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    left
}

/// A fleet port held by a process this fleet did not start (a Redis
/// someone started by hand on it): named, and left alone.
#[derive(Debug, Clone, Serialize)]
pub struct Foreign {
    pub component: String,
    pub port: u16,
    pub pid: i32,
    pub command: String,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "port {} ({}) is held by pid {} ({}), not started by this fleet",
            self.port, self.component, self.pid, self.command
        )
    }
}

/// Splits the fleet's still-listening ports into those held by someone
/// else's process (named) and the rest (ours, or a holder we cannot see).
pub fn foreign_ports(
    listening: Vec<(String, u16)>,
    fleet: &std::path::Path,
) -> (Vec<Foreign>, Vec<(String, u16)>) {
    let mut foreign = Vec::new();
    let mut rest = Vec::new();
    for (component, port) in listening {
        match process::port_owner(port).filter(|p| !process::is_ours(*p, fleet)) {
            Some(pid) => foreign.push(Foreign {
                component,
                port,
                pid,
                command: process::comm(pid),
            }),
            None => rest.push((component, port)),
        }
    }
    (foreign, rest)
}
