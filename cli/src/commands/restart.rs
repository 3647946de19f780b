//! `storefront restart NAME [--crash]`: stop one service instance and start
//! it again, waiting until it is ready.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;
use crate::fleet::control::{self, How};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Service instance as `storefront status` lists it (catalog-1, claims, ...).
    pub name: String,
    /// Kill it (SIGKILL) instead of a graceful stop, as a crash would.
    #[arg(long)]
    pub crash: bool,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let how = if args.crash {
        How::Crash
    } else {
        How::Graceful
    };
    let stopped = control::stop(&ctx, &args.name, how)?;
    let took = control::start(&ctx, &args.name).await?;
    println!(
        "{}: stopped ({:?}), started and ready in {:.2}s",
        args.name,
        stopped,
        took.as_secs_f64()
    );
    Ok(exit::OK)
}
