//! `storefront report merge FILES…`: merge HdrHistogram interval logs
//! (written by `load --hdr-out`, e.g. on several load machines) and print
//! the same transaction and latency tables as `load`;
//! `storefront report html FILES… --out FILE` renders the merged logs as
//! the same self-contained HTML page as `load --html`.

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
    /// Merge HdrHistogram interval logs and write them as one self-contained HTML page.
    Html(HtmlArgs),
}

#[derive(Debug, clap::Args)]
pub struct HtmlArgs {
    /// Interval log files (`.hlog`); histograms with the same tag add up.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// The page to write (charts and data inlined; it fetches nothing).
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
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
    let m = match args.command {
        ReportCommand::Merge(m) => m,
        ReportCommand::Html(h) => return html(&h),
    };
    let (transactions, window_s) = hdrlog::merge(&m.files)?;
    if m.json {
        report::json(&Merged {
            files: &m.files,
            window_s,
            transactions: &transactions,
        })?;
        return Ok(exit::OK);
    }
    let rep = merged(&m.files, transactions, window_s);
    let (requests, errors, rps) = rep.totals();
    println!(
        "merged {} log(s): {requests} requests over {window_s:.2}s ({rps:.1} req/s), {errors} errors",
        m.files.len()
    );
    print!("{}", report::load::tables(&rep));
    Ok(exit::OK)
}

/// Merged logs as a load report: no verdict (nothing was judged), no seed.
fn merged(files: &[PathBuf], transactions: Vec<TxReport>, window_s: f64) -> LoadReport {
    LoadReport {
        profile: "merged".into(),
        description: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        model: format!("{} interval log(s)", files.len()),
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
    }
}

fn html(h: &HtmlArgs) -> Result<u8> {
    let (transactions, window_s) = hdrlog::merge(&h.files)?;
    let rep = merged(&h.files, transactions, window_s);
    let about = report::html::About::now("-");
    report::html::write(&h.out, &report::html::load::page(&rep, &about)?)?;
    let (requests, errors, _) = rep.totals();
    println!(
        "merged {} log(s): {requests} requests, {errors} errors → {}",
        h.files.len(),
        h.out.display()
    );
    Ok(exit::OK)
}
