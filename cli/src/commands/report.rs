//! `storefront report merge FILES…`: merge HdrHistogram interval logs
//! (written by `load --hdr-out`, e.g. on several load machines) and print
//! the same transaction and latency tables as `load`, with exact totals per
//! status and error kind (the sum of every log's own counts);
//! `storefront report html FILES… --out FILE` renders the merged logs as
//! the same self-contained HTML page as `load --html`.

use std::collections::BTreeMap;
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
    totals: Totals,
    /// Files that carried no exact counts (written by another tool or an
    /// older `load`): then `totals.outcomes` and each transaction's are empty.
    uncounted: &'a [PathBuf],
    transactions: &'a [TxReport],
}

/// Every transaction together: requests and errors from the histograms,
/// outcomes from the logs' exact counts.
#[derive(Serialize)]
struct Totals {
    requests: u64,
    errors: u64,
    outcomes: BTreeMap<String, u64>,
}

fn totals(transactions: &[TxReport]) -> Totals {
    let mut outcomes = BTreeMap::new();
    for (k, v) in transactions.iter().flat_map(|t| &t.outcomes) {
        *outcomes.entry(k.clone()).or_default() += v;
    }
    Totals {
        requests: transactions.iter().map(|t| t.requests).sum(),
        errors: transactions.iter().map(|t| t.errors).sum(),
        outcomes,
    }
}

pub async fn run(_g: &Global, args: Args) -> Result<u8> {
    let m = match args.command {
        ReportCommand::Merge(m) => m,
        ReportCommand::Html(h) => return html(&h),
    };
    let hdrlog::Merged {
        transactions,
        window_s,
        uncounted,
    } = hdrlog::merge(&m.files)?;
    let sum = totals(&transactions);
    if m.json {
        report::json(&Merged {
            files: &m.files,
            window_s,
            totals: sum,
            uncounted: &uncounted,
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
    if uncounted.is_empty() {
        let each: Vec<String> = sum
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!("exact outcome totals: {}", each.join(", "));
    } else {
        let names: Vec<String> = uncounted.iter().map(|f| f.display().to_string()).collect();
        println!(
            "no exact outcome counts in {} (not written by `storefront load --hdr-out`): outcomes left out",
            names.join(", ")
        );
    }
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
        verdict: crate::run::Verdict::Unknown,
        window_s,
        corrected_means: String::new(),
        transactions,
        thresholds: vec![],
        invariants: vec![],
        measurements: vec![],
        took_ms: 0,
        run: Default::default(),
    }
}

fn html(h: &HtmlArgs) -> Result<u8> {
    let m = hdrlog::merge(&h.files)?;
    let rep = merged(&h.files, m.transactions, m.window_s);
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
