//! `storefront saga`: the checkout saga under injected failures, webhook
//! chaos and crashes, checked against Postgres and RabbitMQ.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;
use crate::experiments::{self, CommonArgs, Lab, saga};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub params: saga::Params,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let lab = Lab::connect(&ctx).await?;
    let report = saga::run(&ctx, &lab, &args.params, args.common.seed()).await?;
    experiments::finish(&report, &args.common, &ctx.profile.name)
}
