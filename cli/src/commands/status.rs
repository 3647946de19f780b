//! `storefront status`: each component, alive and answering its probe.

use anyhow::Result;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::fleet::{FleetState, observe};
use crate::report::{self, fleet::FleetReport};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Print the fleet as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let Some(state) = FleetState::load(&ctx.state_dir)? else {
        return Err(Exit::error(
            exit::UNKNOWN,
            format!(
                "no fleet is up in {} (start one with `storefront up`)",
                ctx.state_dir.display()
            ),
        ));
    };
    let seen = observe::observe(&state).await;
    let rep = FleetReport::new(&state, &ctx.state_dir, seen);
    if args.json {
        report::json(&rep)?;
    } else {
        println!("{}", report::fleet::render(&rep.components));
        println!(
            "profile `{}`, {} infra, {}",
            rep.profile,
            format!("{:?}", rep.infra).to_lowercase(),
            if rep.healthy {
                "all ready"
            } else {
                "NOT all ready: `storefront logs NAME` shows why"
            }
        );
    }
    Ok(if rep.healthy { exit::OK } else { exit::FAILED })
}
