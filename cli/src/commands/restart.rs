//! `storefront restart NAME [--crash | --mode fast|immediate]`: stop one
//! component (a service instance or infrastructure) and start it again,
//! waiting until it is ready. A restarted Vault is configured again and the
//! services holding its old tokens are restarted too.

use anyhow::Result;
use serde::Serialize;

use crate::commands::Global;
use crate::commands::control::{PgMode, how};
use crate::exit::{self, Exit};
use crate::fleet::control;
use crate::report;

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Component as `storefront status` lists it (postgres, redis, rabbitmq, vault, epmd, catalog-1, claims, ...).
    pub name: String,
    /// Kill it (SIGKILL) instead of a graceful stop, as a crash would.
    #[arg(long, conflicts_with = "mode")]
    pub crash: bool,
    /// Postgres only: fast (SIGINT) or immediate (SIGQUIT) shutdown.
    #[arg(long, value_enum)]
    pub mode: Option<PgMode>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Restarted {
    name: String,
    stopped: String,
    started: control::Started,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let how = how(args.crash, args.mode);
    let name = args.name.clone();
    let stopped = tokio::task::block_in_place(|| control::stop(&ctx, &name, how))
        .map_err(|e| Exit::error(exit::ERROR, format!("{e:#}")))?;
    let started = control::start_detailed(&ctx, &args.name)
        .await
        .map_err(|e| Exit::error(exit::ERROR, format!("{e:#}")))?;
    let rep = Restarted {
        name: args.name.clone(),
        stopped: format!("{stopped:?}").to_lowercase(),
        started,
    };
    if args.json {
        report::json(&rep)?;
    } else {
        let also = if rep.started.also.is_empty() {
            String::new()
        } else {
            format!("; also (re)started: {}", rep.started.also.join(", "))
        };
        println!(
            "{}: stopped ({}), started (pid {}) and ready in {:.2}s{also}",
            rep.name,
            rep.stopped,
            rep.started.pid,
            rep.started.took_ms as f64 / 1000.0
        );
    }
    Ok(exit::OK)
}
