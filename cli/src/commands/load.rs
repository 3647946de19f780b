//! `storefront load --profile NAME`: run a load profile against the fleet
//! that is up, and judge its thresholds and invariants.

use std::path::PathBuf;

use anyhow::Result;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::fleet;
use crate::load::profile::LoadProfile;
use crate::load::target::Via;
use crate::load::{self, Options};
use crate::report::{self, CommonArgs};
use crate::run::Lab;
use crate::run::dur::Dur;

const HELP: &str = "\
Here --profile names the LOAD profile: profiles/NAME.toml with [[scenarios]]
(browse, claims, smoke), or a path. The fleet is whichever is up in
--state-dir (fleet.json says where everything is); the global --fleet names
its fleet profile if ever it matters (default dev).
Requests go through the fleet's BFF when it runs one (each user with its own
X-Session-Id), else straight to the services; --via chooses.

Closed model (default): the profile's users, started at `ramp` per second,
each a task on its own kept-alive connections looping through its scenario
with think time (goose runs them instead only with --goose-html, for its
report and its counts as a cross-check).
Open model (--rate N): N scenario passes start every second on schedule,
whatever the answers; latency counts from each request's intended send time.

Faults: a profile's [[faults]] (or --faults FILE, which replaces them) kill
and restart, pause and resume, restart infrastructure, revoke a Vault lease
or set BFF chaos at given times while the load runs (profiles/
checkout-faults.toml shows every field). The report adds a per-second
timeline with each fault marked, injected or failed and why; a fault that
could not be injected fails the run. Kills go through the control plane,
which records the instance as stopped on purpose: a fleet's supervisor
leaves it to the schedule, which restarts it after `for`.

The report is printed first; then the run's held reservations are released
(the clean-up), on a line of its own. A clean-up that fails after a passing
run exits 3. With --json the one document carries both.

Exit codes:
  0    every threshold and invariant passed
  1    a threshold or invariant failed
  2    unknown: no fleet is up (run `storefront up`), or nothing could be judged
  3    error: bad profile (the message names file, line and field), or the run failed
  64   usage: bad command line";

#[derive(Debug, clap::Args)]
#[command(after_help = HELP)]
pub struct Args {
    /// The LOAD profile: a name in profiles/ (browse, checkout, smoke, ...) or a path to a TOML file.
    // Its own id: the global `--fleet` is the field `profile` too, and two
    // arguments with one id share one value (the load profile was read as
    // the fleet's).
    #[arg(id = "load_profile", long = "profile", value_name = "NAME")]
    pub profile: String,
    /// Open model: start N scenario passes per second (`500` or `500/s`).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open model: requests in flight at most; arrivals beyond it are dropped, counted, and fail the run.
    #[arg(long, default_value_t = 10_000, requires = "rate")]
    pub max_in_flight: usize,
    /// Open model: keep-alive connections at most, shared by the arrivals (as wrk's -c); a request that finds them all busy waits, and the wait counts in its latency.
    #[arg(long, value_name = "N", requires = "rate", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub connections: Option<u32>,
    /// Run this long instead of the profile's duration (whole seconds: 10s, 1m).
    #[arg(long)]
    pub duration: Option<Dur>,
    /// Closed model: this many users instead of the profile's.
    #[arg(long, conflicts_with = "rate")]
    pub users: Option<u32>,
    /// Where the requests go: through the BFF when the fleet runs one (auto), or not.
    #[arg(long, value_enum, default_value = "auto")]
    pub via: Via,
    /// Write the histograms as HdrHistogram interval logs into DIR (merge with `storefront report merge`).
    #[arg(long, value_name = "DIR")]
    pub hdr_out: Option<PathBuf>,
    /// Closed model: write goose's own HTML report to FILE. Its charts load a
    /// JavaScript library from a public CDN: they draw only with network
    /// access. `--html FILE` writes storefront's own, self-contained page.
    #[arg(long, value_name = "FILE", conflicts_with = "rate")]
    pub goose_html: Option<PathBuf>,
    /// Write every client operation to FILE as JSON lines (invoke and complete
    /// times, transaction, method and path, outcome, Idempotency-Key), to
    /// re-check the run offline.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Inject the [[faults]] of FILE (a TOML file of nothing else) instead of the profile's.
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("`{s}`: give a rate above 0, such as 500 or 500/s")),
    }
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let root = fleet::project_root()?;
    let (mut profile, _) = LoadProfile::load(&root, &args.profile)?;
    if let Some(u) = args.users {
        profile.users = u;
    }
    if let Some(d) = args.duration {
        profile.duration = d;
    }
    profile
        .check_overrides()
        .map_err(|e| Exit::error(exit::USAGE, format!("--users/--duration: {e}")))?;
    if let Some(file) = &args.faults {
        profile.faults = crate::faults::load_file(file, profile.duration.0)
            .map_err(|e| Exit::error(exit::ERROR, format!("--faults: {e:#}")))?;
    }
    let ctx = g.ctx()?;
    let lab = Lab::connect(&ctx).await?;
    let about = report::html::About::now(&ctx.profile.name);
    let opts = Options {
        seed: args.common.seed(),
        rate: args.rate,
        max_in_flight: args.max_in_flight,
        connections: args.connections.map(|n| n as usize),
        html: args.goose_html,
        hdr_out: args.hdr_out,
        quiet: args.common.json,
        via: args.via,
        fleet: Some(ctx.clone()),
        history: args.history,
    };
    let mut rep = load::run(&lab, profile, &opts).await?;
    // The report first, then the clean-up (issue 12, defect d).
    if args.common.json {
        load::clean_up(&lab, &mut rep).await;
        report::json(&rep)?;
    } else {
        print!("{}", report::load::render(&rep));
        load::clean_up(&lab, &mut rep).await;
        if let Some(line) = report::load::cleanup_line(&rep) {
            println!("{line}");
        }
    }
    // After the report is out: a page that cannot be written loses no result.
    if let Some(path) = &args.common.html {
        report::html::write(path, &report::html::load::page(&rep, &about)?)?;
        if !args.common.json {
            println!("HTML report: {}", path.display());
        }
    }
    Ok(rep.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_an_optional_per_second_suffix() {
        assert_eq!(parse_rate("500").unwrap(), 500.0);
        assert_eq!(parse_rate("2.5/s").unwrap(), 2.5);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn the_load_profile_and_the_fleet_profile_are_two_values() {
        use clap::Parser;
        let parse = |line: &[&str]| {
            let cli = crate::commands::Cli::try_parse_from(line).unwrap();
            let crate::commands::Command::Load(args) = cli.command else {
                panic!("not load");
            };
            (cli.global.profile, args.profile)
        };
        let (fleet, load) = parse(&["storefront", "load", "--profile", "smoke"]);
        assert_eq!((fleet.as_str(), load.as_str()), ("dev", "smoke"));
        let (fleet, load) = parse(&["storefront", "--fleet", "ci", "load", "--profile", "smoke"]);
        assert_eq!((fleet.as_str(), load.as_str()), ("ci", "smoke"));
    }

    #[test]
    fn connections_are_an_open_model_count_of_at_least_one() {
        use clap::Parser;
        let parse =
            |line: &[&str]| crate::commands::Cli::try_parse_from(line).map(|cli| cli.command);
        let base = ["storefront", "load", "--profile", "smoke"];
        let Ok(crate::commands::Command::Load(args)) =
            parse(&[&base[..], &["--rate", "100", "--connections", "128"]].concat())
        else {
            panic!("--rate with --connections parses");
        };
        assert_eq!(args.connections, Some(128));
        let Ok(crate::commands::Command::Load(args)) =
            parse(&[&base[..], &["--rate", "100"]].concat())
        else {
            panic!("--rate alone parses");
        };
        assert_eq!(args.connections, None, "the default is the pool's (64)");
        for bad in [
            &["--rate", "100", "--connections", "0"][..],
            &["--connections", "8"][..],
        ] {
            assert!(
                parse(&[&base[..], bad].concat()).is_err(),
                "{bad:?}: zero connections, or connections without the open model, is refused"
            );
        }
    }
}
