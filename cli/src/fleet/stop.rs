//! Stopping a recorded fleet: services first, then infrastructure; each with
//! its polite signal, a deadline, then SIGKILL of its whole process group.

use std::time::Duration;

use nix::sys::signal::Signal;

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
    let services: Vec<&Component> = state
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Service)
        .collect();
    let mut results = parallel(
        &services.iter().map(|c| vec![*c]).collect::<Vec<_>>(),
        grace,
    );
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
        if c.name != "rabbitmq" && c.name != "epmd" {
            chains.push(vec![c]);
        }
    }
    results.extend(parallel(&chains, grace));
    results.extend(sweep(fleet).into_iter().map(|pid| StopResult {
        name: format!("stray pid {pid}"),
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

/// SIGKILLs anything still carrying the fleet's marker; returns what it killed.
fn sweep(fleet: &std::path::Path) -> Vec<i32> {
    let left = process::marked(fleet);
    for pid in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
    }
    left
}
