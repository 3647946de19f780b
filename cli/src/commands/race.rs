//! `storefront race`: optimistic concurrency on a product's stock, checked
//! against Postgres.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;
use crate::experiments::{self, CommonArgs, Lab, race};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub params: race::Params,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let lab = Lab::connect(&ctx).await?;
    let report = race::run(&lab, &args.params, args.common.seed()).await?;
    experiments::finish(&report, &args.common, &ctx.profile.name)
}
