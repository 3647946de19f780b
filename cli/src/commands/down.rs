//! `storefront down`: stop every process of the fleet and prove it.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::fleet::FleetState;
use crate::fleet::stop;
use crate::report;

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Also delete the fleet's data (databases, logs, secrets); installed tools stay.
    #[arg(long)]
    pub purge: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Stopped {
    name: String,
    outcome: String,
    took_ms: u64,
}

#[derive(Serialize)]
struct DownReport {
    stopped: Vec<Stopped>,
    /// Fleet ports held by processes this fleet did not start, left running.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_ours: Vec<stop::Foreign>,
    purged: bool,
    took_ms: u64,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let t = Instant::now();
    let mut stopped = Vec::new();
    let mut not_ours = Vec::new();
    match FleetState::load(&ctx.state_dir)? {
        None => {
            if !args.json {
                eprintln!(
                    "no fleet recorded in {}; nothing to stop",
                    ctx.state_dir.display()
                );
            }
        }
        Some(state) => {
            let grace = Duration::from_secs(ctx.profile.timeouts.stop_secs);
            let results = tokio::task::spawn_blocking({
                let (s, dir) = (state.clone(), ctx.state_dir.clone());
                move || stop::stop_all(&s, &dir, grace)
            })
            .await?;
            crate::fleet::compose::down(&state, &ctx, args.purge)?;
            let survivors = stop::survivors(&state);
            // A port someone else's process holds (a Redis started by hand)
            // is named and left alone: it is not ours to stop, and nothing
            // of ours is left on it.
            let (foreign, listening) =
                stop::foreign_ports(stop::listening_ports(&state), &ctx.state_dir);
            for f in &foreign {
                eprintln!("note: {f}; left running (stop it yourself: kill {})", f.pid);
            }
            not_ours = foreign;
            if !survivors.is_empty() || !listening.is_empty() {
                return Err(Exit::error(
                    exit::ERROR,
                    format!(
                        "down left things behind: processes {:?}, listening ports {:?}; fleet.json is kept so `down` can retry",
                        survivors, listening
                    ),
                ));
            }
            FleetState::remove(&ctx.state_dir)?;
            stopped = results
                .into_iter()
                .map(|r| Stopped {
                    name: r.name,
                    outcome: format!("{:?}", r.outcome).to_lowercase(),
                    took_ms: r.took.as_millis() as u64,
                })
                .collect();
        }
    }
    if args.purge {
        purge(&ctx.state_dir, &ctx.tools_dir)?;
    }
    let rep = DownReport {
        stopped,
        not_ours,
        purged: args.purge,
        took_ms: t.elapsed().as_millis() as u64,
    };
    if args.json {
        report::json(&rep)?;
    } else if !rep.stopped.is_empty() {
        let mut table = report::table(&["component", "stopped", "took"]);
        for s in &rep.stopped {
            table.add_row(vec![
                s.name.clone(),
                s.outcome.clone(),
                report::secs(Some(s.took_ms)),
            ]);
        }
        println!("{table}");
        println!(
            "fleet down in {:.2}s; no process of it is alive{}{}",
            rep.took_ms as f64 / 1000.0,
            if rep.not_ours.is_empty() {
                " and none of its ports listens"
            } else {
                " (ports held by others are named above)"
            },
            if args.purge { "; data purged" } else { "" }
        );
    }
    Ok(exit::OK)
}

/// Deletes everything under the state directory except the tools directory.
fn purge(state_dir: &std::path::Path, tools_dir: &std::path::Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Ok(());
    };
    for e in entries {
        let p = e?.path();
        if p == tools_dir {
            continue;
        }
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?
        } else {
            std::fs::remove_file(&p)?
        }
    }
    if std::fs::read_dir(state_dir)?.next().is_none() {
        std::fs::remove_dir(state_dir)?;
    }
    Ok(())
}
