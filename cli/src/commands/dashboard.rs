//! `storefront dashboard`: the lab page for the fleet in the state dir.

use anyhow::Result;

use crate::commands::Global;
use crate::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Port on 127.0.0.1 (0: any free port; the URL printed says which).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Also open the URL in the desktop's browser (xdg-open).
    #[arg(long)]
    pub open: bool,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    crate::dashboard::serve(ctx, args.port, g.port_base, args.open).await?;
    Ok(exit::OK)
}
