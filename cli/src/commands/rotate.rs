//! `storefront rotate`: Vault-issued Postgres credentials of the identity
//! service rotating (and revoked) under load, checked against Postgres.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;
use crate::experiments::experiment::{self, Env};
use crate::experiments::rotate;
use crate::report::{CommonArgs, finish};
use crate::run::{Lab, Progress};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(flatten)]
    pub params: rotate::Params,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let lab = Lab::connect(&ctx)
        .await?
        .with_progress(Progress::for_output(args.common.json));
    let env = Env::new(ctx, lab);
    let report = experiment::run::<rotate::Rotate>(&env, &args.params, args.common.seed()).await?;
    finish(&report, &args.common, &env.ctx.profile.name)
}
