//! `storefront verify`: the CI gate. Runs every experiment (and, for those
//! with a control arm, the control arm, which must FAIL: proof the checkers
//! can fail) plus the `smoke` load and a fault run (`checkout-faults-short`:
//! checkout load while payments is killed, Redis and RabbitMQ restart and
//! identity's lease is revoked), against the fleet that is up — or one it
//! boots for the purpose and stops again. Exit 0 all pass, 1 a failure,
//! 2 something could not be judged; `--junit` writes one test case per
//! invariant and threshold; `--html DIR` writes an index page and one
//! self-contained page per check.
//!
//! [`gate`]: the registry of checks, in order · [`judge`]: a check's
//! result as the gate's test cases · [`output`]: the summary, JUnit and
//! HTML · [`fleet`]: the fleet it boots when none is up.

mod fleet;
mod gate;
mod judge;
mod output;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::experiments::experiment::Env;
use crate::fleet::Ctx;
use crate::report::{self, junit};
use crate::run::{Invariant, Lab, Progress, Verdict, overall};
use judge::Judged;

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Print the outcome as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Write a JUnit XML report to FILE: one test case per invariant and threshold.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Seed for every check [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write DIR/index.html and one self-contained HTML page per check (charts inlined, nothing fetched).
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// Run only these checks (comma-separated or repeated): an experiment's
    /// name runs its arms (`race` runs `race` and `race --control`, `load`
    /// both load profiles), or a check's whole name as the summary lists it.
    /// The gate is every check: a run with --only says which it left out.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
}

/// The gate's outcome: every check as judged.
#[derive(Serialize)]
pub struct Outcome {
    verdict: Verdict,
    seed: u64,
    booted_a_fleet: bool,
    checks: Vec<Judged>,
    /// The gate's checks that `--only` left out (none without it).
    not_run: Vec<&'static str>,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    // A wrong arm or --only is refused before anything is created or booted.
    let gate = gate::gate();
    gate::arguments_parse(&gate)?;
    let (checks, not_run) = gate::select(gate, &args.only)?;
    if let Some(dir) = &args.html {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--html: cannot create {}", dir.display()))?;
    }
    let booted = fleet::ensure(&ctx, args.json).await?;
    let result = tokio::select! {
        r = run_gate(&ctx, checks, seed, args.json, args.html.as_deref()) => r,
        _ = tokio::signal::ctrl_c() => Err(Exit::error(exit::INTERRUPTED, "interrupted")),
    };
    if booted {
        fleet::teardown(&ctx).await?;
    }
    let checks = result?;
    let all: Vec<Invariant> = checks.iter().flat_map(|c| c.cases.clone()).collect();
    let outcome = Outcome {
        verdict: overall(&all),
        seed,
        booted_a_fleet: booted,
        checks,
        not_run,
    };
    if let Some(path) = &args.junit {
        let suites: Vec<junit::Suite<'_>> = outcome
            .checks
            .iter()
            .map(|c| junit::Suite {
                name: c.name,
                took: Duration::from_millis(c.took_ms),
                cases: &c.cases,
            })
            .collect();
        junit::write(path, "storefront verify", &suites)?;
    }
    if let Some(dir) = &args.html {
        output::write_index(dir, &outcome, &ctx.profile.name)?;
    }
    if args.json {
        report::json(&outcome)?;
    } else {
        output::print_summary(&outcome, args.junit.as_deref());
        if let Some(dir) = &args.html {
            println!("HTML report: {}", dir.join("index.html").display());
        }
    }
    Ok(match outcome.verdict {
        Verdict::Pass => exit::OK,
        Verdict::Fail => exit::FAILED,
        Verdict::Unknown => exit::UNKNOWN,
    })
}

/// Runs `checks` (the [`gate::gate`]'s, or those `--only` selected) in
/// order against one lab.
async fn run_gate(
    ctx: &Ctx,
    checks: Vec<gate::Check>,
    seed: u64,
    json: bool,
    html: Option<&Path>,
) -> Result<Vec<Judged>> {
    // Progress only as JSON lines (STOREFRONT_PROGRESS=json): the gate's
    // own lines go to stderr.
    let lab = Lab::connect(ctx)
        .await?
        .with_progress(Progress::for_output(true));
    let env = Env::new(ctx.clone(), lab);
    let mut out = Vec::new();
    for c in checks {
        if !json {
            eprintln!("verify: {} …", c.name());
        }
        let t = Instant::now();
        let ran = c.run(&env, seed).await;
        let mut j = judge::judge(&c, ran, t.elapsed());
        if let Some(dir) = html {
            j.page = output::write_page(dir, out.len() + 1, &j, &ctx.profile.name)?;
        }
        if !json {
            println!("== {} (expected {:?}) ==\n{}", j.name, j.expect, j.text);
        }
        out.push(j);
    }
    Ok(out)
}
