//! `storefront breaker`: fail, kill and restore a catalog replica while
//! reads go through the BFF; its circuit breaker must isolate and readmit it.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;
use crate::experiments::breaker;
use crate::experiments::experiment::{self, Env};
use crate::report::{CommonArgs, finish};
use crate::run::{Lab, Progress};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub params: breaker::Params,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let lab = Lab::connect(&ctx)
        .await?
        .with_progress(Progress::for_output(args.common.json));
    let env = Env::new(ctx, lab);
    let report =
        experiment::run::<breaker::Breaker>(&env, &args.params, args.common.seed()).await?;
    finish(&report, &args.common, &env.ctx.profile.name)
}
