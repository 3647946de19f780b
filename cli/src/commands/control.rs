//! `storefront stop | start | pause | resume NAME`: one component of a
//! running fleet, infrastructure included (postgres, redis, epmd, rabbitmq,
//! vault, every service instance). `restart` lives in restart.rs.

use anyhow::Result;
use serde::Serialize;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::fleet::control::{self, How};
use crate::report;

/// How Postgres shuts down (other components have one graceful way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PgMode {
    /// SIGINT: roll back open transactions, checkpoint, exit.
    Fast,
    /// SIGQUIT: exit at once; crash recovery on the next start.
    Immediate,
}

/// The stop to perform from `--crash` and `--mode`.
pub fn how(crash: bool, mode: Option<PgMode>) -> How {
    match (crash, mode) {
        (true, _) => How::Crash,
        (false, Some(PgMode::Immediate)) => How::Immediate,
        _ => How::Graceful,
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct StopArgs {
    /// Component as `storefront status` lists it (postgres, redis, rabbitmq, vault, epmd, catalog-1, ...).
    pub name: String,
    /// Kill it (SIGKILL to its process group) instead of a graceful stop, as a crash would.
    #[arg(long, conflicts_with = "mode")]
    pub crash: bool,
    /// Postgres only: fast (SIGINT) or immediate (SIGQUIT) shutdown.
    #[arg(long, value_enum)]
    pub mode: Option<PgMode>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct NameArgs {
    /// Component as `storefront status` lists it.
    pub name: String,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `storefront supervise`: the supervisor's own loop (spawned by `up`).
#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {}

pub async fn supervise(g: &Global, _args: SuperviseArgs) -> Result<u8> {
    let ctx = g.ctx()?;
    crate::fleet::supervise::run(&ctx).await?;
    Ok(exit::OK)
}

#[derive(Serialize)]
struct Outcome<'a> {
    name: &'a str,
    action: &'a str,
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<control::Started>,
}

/// A control-plane failure is the command not doing its job (exit 3).
fn failed(e: anyhow::Error) -> anyhow::Error {
    Exit::error(exit::ERROR, format!("{e:#}"))
}

pub async fn stop(g: &Global, args: StopArgs) -> Result<u8> {
    let ctx = g.ctx()?;
    let how = how(args.crash, args.mode);
    let name = args.name.clone();
    let outcome =
        tokio::task::block_in_place(|| control::stop(&ctx, &name, how)).map_err(failed)?;
    print(
        args.json,
        Outcome {
            name: &args.name,
            action: "stop",
            outcome: format!("{outcome:?}").to_lowercase(),
            started: None,
        },
    )
}

pub async fn start(g: &Global, args: NameArgs) -> Result<u8> {
    let ctx = g.ctx()?;
    let s = control::start_detailed(&ctx, &args.name)
        .await
        .map_err(failed)?;
    print(
        args.json,
        Outcome {
            name: &args.name,
            action: "start",
            outcome: if s.adopted.is_some() {
                "adopted"
            } else {
                "ready"
            }
            .into(),
            started: Some(s),
        },
    )
}

pub async fn pause(g: &Global, args: NameArgs, resume: bool) -> Result<u8> {
    let ctx = g.ctx()?;
    let pgid = control::pause(&ctx, &args.name, resume).map_err(failed)?;
    let (action, outcome) = if resume {
        (
            "resume",
            format!("process group {pgid} continued (SIGCONT)"),
        )
    } else {
        ("pause", format!("process group {pgid} stopped (SIGSTOP)"))
    };
    print(
        args.json,
        Outcome {
            name: &args.name,
            action,
            outcome,
            started: None,
        },
    )
}

fn print(json: bool, o: Outcome<'_>) -> Result<u8> {
    if json {
        report::json(&o)?;
        return Ok(exit::OK);
    }
    match &o.started {
        Some(s) => {
            let mut line = match s.adopted {
                Some(pid) => format!(
                    "{}: a process of this fleet (pid {pid}) already served on its port: adopted",
                    o.name
                ),
                None => format!(
                    "{}: started (pid {}) and ready in {:.2}s",
                    o.name,
                    s.pid,
                    s.took_ms as f64 / 1000.0
                ),
            };
            if let Some(d) = &s.detail {
                line.push_str(&format!("; {d}"));
            }
            if !s.also.is_empty() {
                line.push_str(&format!("; also (re)started: {}", s.also.join(", ")));
            }
            println!("{line}");
        }
        None => println!("{}: {} ({})", o.name, o.action, o.outcome),
    }
    Ok(exit::OK)
}
