//! `storefront flood`: open-model load through the BFF's rate limiter,
//! checked per session against the bucket the BFF enforces.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;
use crate::experiments::{self, CommonArgs, Lab, flood};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub params: flood::Params,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let lab = Lab::connect(&ctx).await?;
    let report = flood::run(&ctx, &lab, &args.params, args.common.seed()).await?;
    experiments::finish(&report, &args.common, &ctx.profile.name)
}
