//! The end of every experiment command: print its [`Report`] (text or
//! `--json`), write its HTML page when asked, and return its exit code.

use crate::run::Report;

/// Output switches every experiment takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Seed for every random choice, so a run can be replayed [default: random, printed in the report].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page to FILE (charts inlined, nothing fetched).
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

impl CommonArgs {
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(rand::random)
    }
}

/// Prints the report (text or JSON), writes its HTML page when asked, and
/// returns its exit code. `fleet_profile` names the fleet it ran against.
pub fn finish(report: &Report, common: &CommonArgs, fleet_profile: &str) -> anyhow::Result<u8> {
    if common.json {
        super::json(report)?;
    } else {
        print!("{}", super::experiment::render(report));
    }
    // After the report is out: a page that cannot be written loses no result.
    if let Some(path) = &common.html {
        let about = super::html::About::now(fleet_profile);
        let page = super::html::experiment::page(report, &about)?;
        super::html::write(path, &page)?;
        if !common.json {
            println!("HTML report: {}", path.display());
        }
    }
    Ok(report.exit_code())
}
