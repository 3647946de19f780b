//! `storefront report merge FILES…`: merge HdrHistogram interval logs
//! (written by `load --hdr-out`, e.g. on several load machines) and print
//! the same transaction and latency tables as `load`.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::commands::Global;
use crate::exit;
use crate::load::hdrlog;
use crate::load::summary::{LoadReport, TxReport};
use crate::report;

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Merge HdrHistogram interval logs (from `load --hdr-out`) and print the merged report.
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Interval log files (`.hlog`); histograms with the same tag add up.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Print the merged report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Merged<'a> {
    files: &'a [PathBuf],
    window_s: f64,
    transactions: &'a [TxReport],
}

pub async fn run(_g: &Global, args: Args) -> Result<u8> {
    let ReportCommand::Merge(m) = args.command;
    let (transactions, window_s) = hdrlog::merge(&m.files)?;
    if m.json {
        report::json(&Merged {
            files: &m.files,
            window_s,
            transactions: &transactions,
        })?;
        return Ok(exit::OK);
    }
    let rep = LoadReport {
        profile: "merged".into(),
        description: String::new(),
        model: format!("{} interval log(s)", m.files.len()),
        target: String::new(),
        seed: None,
        run_tag: String::new(),
        verdict: crate::experiments::Verdict::Unknown,
        window_s,
        corrected_means: String::new(),
        transactions,
        thresholds: vec![],
        invariants: vec![],
        measurements: vec![],
        took_ms: 0,
    };
    let (requests, errors, rps) = rep.totals();
    println!(
        "merged {} log(s): {requests} requests over {window_s:.2}s ({rps:.1} req/s), {errors} errors",
        m.files.len()
    );
    print!("{}", report::load::tables(&rep));
    Ok(exit::OK)
}
