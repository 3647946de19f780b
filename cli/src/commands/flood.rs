//! `storefront flood`: open-model load through the BFF's rate limiter,
//! checked per session against the bucket the BFF enforces.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;
use crate::experiments::experiment::{self, Env};
use crate::experiments::flood;
use crate::report::{CommonArgs, finish};
use crate::run::{Lab, Progress};

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
    let lab = Lab::connect(&ctx)
        .await?
        .with_progress(Progress::for_output(args.common.json));
    let env = Env::new(ctx, lab);
    let report = experiment::run::<flood::Flood>(&env, &args.params, args.common.seed()).await?;
    finish(&report, &args.common, &env.ctx.profile.name)
}
