//! `storefront bootstrap`: make running infrastructure ready for the
//! services — database, roles, schemas, migrations, Vault's database engine —
//! without starting any service. compose.yaml's `init` container runs it.

use anyhow::Result;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::fleet::progress::Progress;
use crate::fleet::{FleetState, InfraMode, boot, external};
use crate::report;

#[derive(Debug, clap::Args)]
#[command(after_help = format!("{}\n\nEnvironment for --infra external:\n{}", exit::HELP,
    external::ENV.iter().map(|(n, w)| format!("  {n:<24} {w}")).collect::<Vec<_>>().join("\n")))]
pub struct Args {
    /// Where the infrastructure comes from; `external` reads STOREFRONT_* URLs (see below).
    #[arg(long, value_enum, default_value = "external")]
    pub infra: InfraMode,
    /// Print what was readied as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    if args.infra == InfraMode::Native {
        return Err(Exit::error(
            exit::USAGE,
            "bootstrap readies infrastructure someone else runs; for a native fleet use `storefront up`",
        ));
    }
    if FleetState::load(&ctx.state_dir)?.is_some() {
        return Err(Exit::error(
            exit::ERROR,
            format!(
                "a fleet is recorded in {}; bootstrap runs on its own",
                ctx.state_dir.display()
            ),
        ));
    }
    let state = boot::up(&ctx, &Progress::new(args.json), args.infra, false).await?;
    FleetState::remove(&ctx.state_dir)?;
    let seen: Vec<_> = state
        .components
        .iter()
        .map(|c| crate::report::fleet::Observed::new(c, "ready"))
        .collect();
    if args.json {
        report::json(&seen)?;
    } else {
        println!("{}", report::fleet::render(&seen));
    }
    Ok(exit::OK)
}
