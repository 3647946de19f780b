//! `storefront up`: boot the fleet, or report the one already running.

use std::time::Instant;

use anyhow::Result;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::fleet::progress::Progress;
use crate::fleet::{FleetState, InfraMode, boot, observe};
use crate::report::{self, fleet::FleetReport};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Who runs the infrastructure: child processes here (native), docker compose, or an existing fleet (external).
    #[arg(long, value_enum, default_value = "native")]
    pub infra: InfraMode,
    /// Print the fleet as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    if let Some(state) = FleetState::load(&ctx.state_dir)? {
        if observe::all_dead(&state) {
            // A record of a fleet that is gone (machine restart, killed by hand).
            FleetState::remove(&ctx.state_dir)?;
        } else {
            let seen = observe::observe(&state).await;
            let dead: Vec<_> = seen
                .iter()
                .filter(|c| c.state == "dead")
                .map(|c| c.name.clone())
                .collect();
            if !dead.is_empty() {
                // Start only what is dead, in dependency order (a new Vault
                // is configured again and its services get new tokens).
                let t = Instant::now();
                let started = crate::fleet::control::start_dead(&ctx).await.map_err(|e| {
                    Exit::error(
                        exit::ERROR,
                        format!(
                            "the fleet in {} was partly dead ({}); starting it again failed: {e:#}",
                            ctx.state_dir.display(),
                            dead.join(", ")
                        ),
                    )
                })?;
                let state = FleetState::load(&ctx.state_dir)?.unwrap_or(state);
                // Services that kept running reconnect to what restarted
                // under them on their own: give them the profile's service
                // deadline to be ready again.
                let deadline = Instant::now()
                    + std::time::Duration::from_secs(ctx.profile.timeouts.service_ready_secs);
                let seen = loop {
                    let seen = observe::observe(&state).await;
                    if seen.iter().all(|c| c.state == "ready") || Instant::now() > deadline {
                        break seen;
                    }
                    tokio::time::sleep(crate::fleet::ready::POLL * 4).await;
                };
                let mut rep = FleetReport::new(&state, &ctx.state_dir, seen);
                rep.up_ms = Some(t.elapsed().as_millis() as u64);
                if args.json {
                    report::json(&rep)?;
                } else {
                    for s in &started {
                        let how = match s.adopted {
                            Some(pid) => format!("adopted pid {pid} (ours, already serving)"),
                            None => format!("started (pid {})", s.pid),
                        };
                        let also = if s.also.is_empty() {
                            String::new()
                        } else {
                            format!("; also restarted: {}", s.also.join(", "))
                        };
                        eprintln!(
                            "{}: {how} in {:.2}s{also}",
                            s.name,
                            s.took_ms as f64 / 1000.0
                        );
                    }
                    println!("{}", report::fleet::render(&rep.components));
                    println!(
                        "fleet `{}`: started what was dead ({}); the rest kept running",
                        state.profile,
                        dead.join(", ")
                    );
                }
                return Ok(if rep.healthy { exit::OK } else { exit::FAILED });
            }
            if args.json {
                report::json(&FleetReport::new(&state, &ctx.state_dir, seen))?;
            } else {
                eprintln!(
                    "the fleet (profile {}) is already running; nothing changed",
                    state.profile
                );
                println!("{}", report::fleet::render(&seen));
            }
            return Ok(exit::OK);
        }
    }
    let progress = Progress::new(args.json);
    let t = Instant::now();
    let state = tokio::select! {
        r = boot::up(&ctx, &progress, args.infra, true) => r?,
        _ = tokio::signal::ctrl_c() => {
            if let Some(s) = FleetState::load(&ctx.state_dir)? {
                crate::fleet::stop::stop_all(&s, &ctx.state_dir, std::time::Duration::from_secs(ctx.profile.timeouts.stop_secs));
                FleetState::remove(&ctx.state_dir)?;
            }
            return Err(Exit::error(exit::INTERRUPTED, "interrupted: everything `up` had started was stopped"));
        }
    };
    let took = t.elapsed();
    let seen = observe::observe(&state).await;
    let mut rep = FleetReport::new(&state, &ctx.state_dir, seen);
    rep.up_ms = Some(took.as_millis() as u64);
    if args.json {
        report::json(&rep)?;
    } else {
        println!("{}", report::fleet::render(&rep.components));
        println!(
            "fleet `{}` up in {:.2}s; state in {}; stop it with `storefront down`",
            state.profile,
            took.as_secs_f64(),
            ctx.state_dir.display()
        );
        if let Some(url) = crate::fleet::prometheus::url_of(&state) {
            println!("prometheus: {url} (a Prometheus data source for Grafana)");
        }
    }
    Ok(if rep.healthy { exit::OK } else { exit::FAILED })
}
