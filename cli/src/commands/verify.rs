//! `storefront verify`: the CI gate. Runs every experiment (and, for those
//! with a control arm, the control arm, which must FAIL: proof the checkers
//! can fail) plus the `smoke` load and a fault run (`checkout-faults-short`:
//! checkout load while payments is killed, Redis and RabbitMQ restart and
//! identity's lease is revoked), against the fleet that is up — or one it
//! boots for the purpose and stops again. Exit 0 all pass, 1 a failure,
//! 2 something could not be judged; `--junit` writes one test case per
//! invariant and threshold; `--html DIR` writes an index page and one
//! self-contained page per check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::commands::Global;
use crate::exit::{self, Exit};
use crate::experiments::outbox;
use crate::experiments::{
    Invariant, Lab, Report, Verdict, breaker, flood, hostile, overall, race, replay, rotate, saga,
};
use crate::fleet::progress::Progress;
use crate::fleet::{Ctx, FleetState, InfraMode, boot, observe, stop};
use crate::load::profile::LoadProfile;
use crate::load::summary::LoadReport;
use crate::report::{self, html, junit};

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
}

/// What a check is expected to conclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Pass,
    /// A control arm: its checkers must catch the broken behaviour.
    Fail,
}

/// A check's own result, whatever ran it.
struct Ran {
    verdict: Verdict,
    invariants: Vec<Invariant>,
    text: String,
    json: serde_json::Value,
    /// The report itself, for its HTML page.
    shown: Option<Shown>,
}

enum Shown {
    Experiment(Box<Report>),
    Load(Box<LoadReport>),
}

impl Shown {
    fn page(&self, about: &html::About) -> Result<String> {
        match self {
            Shown::Experiment(r) => html::experiment::page(r, about),
            Shown::Load(r) => html::load::page(r, about),
        }
    }
}

impl From<Report> for Ran {
    fn from(r: Report) -> Self {
        Self {
            verdict: r.verdict,
            text: report::experiment::render(&r),
            json: serde_json::to_value(&r).unwrap_or_default(),
            invariants: r.invariants.clone(),
            shown: Some(Shown::Experiment(Box::new(r))),
        }
    }
}

impl From<LoadReport> for Ran {
    fn from(r: LoadReport) -> Self {
        Self {
            verdict: r.verdict,
            text: report::load::render(&r),
            json: serde_json::to_value(&r).unwrap_or_default(),
            invariants: r.thresholds.iter().chain(&r.invariants).cloned().collect(),
            shown: Some(Shown::Load(Box::new(r))),
        }
    }
}

/// What a check runs against: the fleet's context and its lab connections.
struct Env {
    ctx: Ctx,
    lab: Lab,
}

type Runner = Box<dyn for<'a> Fn(&'a Env, u64) -> BoxFuture<'a, Result<Ran>> + Send + Sync>;

struct Check {
    name: &'static str,
    expect: Expect,
    run: Runner,
}

fn check<F>(name: &'static str, expect: Expect, f: F) -> Check
where
    F: for<'a> Fn(&'a Env, u64) -> BoxFuture<'a, Result<Ran>> + Send + Sync + 'static,
{
    Check {
        name,
        expect,
        run: Box::new(f),
    }
}

/// An experiment's parameters as its command line would give them, so the
/// gate reads like the commands it runs (and its defaults stay the
/// experiment's own).
fn params<T: clap::Args + clap::FromArgMatches>(args: &[&str]) -> T {
    #[derive(clap::Parser)]
    struct Line<T: clap::Args + clap::FromArgMatches> {
        #[command(flatten)]
        params: T,
    }
    <Line<T> as clap::Parser>::try_parse_from(std::iter::once("verify").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("the gate's own arguments {args:?} are wrong: {e}"))
        .params
}

/// An experiment arm of the gate: `arm!(name, Pass | Fail, module, [args…])`
/// runs `module::run(&lab, &params(args), seed)`; the `ctx:` form is for
/// experiments whose `run` also takes the fleet's `Ctx` (they restart
/// services).
macro_rules! arm {
    ($name:expr, $expect:ident, $m:ident, [$($a:expr),* $(,)?]) => {
        check($name, Expect::$expect, |e, s| {
            Box::pin(async move { Ok($m::run(&e.lab, &params(&[$($a),*]), s).await?.into()) })
        })
    };
    (ctx: $name:expr, $expect:ident, $m:ident, [$($a:expr),* $(,)?]) => {
        check($name, Expect::$expect, |e, s| {
            Box::pin(async move { Ok($m::run(&e.ctx, &e.lab, &params(&[$($a),*]), s).await?.into()) })
        })
    };
}

/// Every check of the gate, in order: one line per experiment arm. A
/// control arm (`Fail`) must be caught by its checkers.
#[rustfmt::skip]
fn gate() -> Vec<Check> {
    vec![
        arm!("race", Pass, race, ["--n", "20", "--rounds", "2"]),
        arm!("race --control", Fail, race, ["--n", "20", "--control"]),
        arm!("replay", Pass, replay, ["--n", "10", "--keys", "5"]),
        arm!("replay --control", Fail, replay, ["--n", "10", "--keys", "5", "--control"]),
        arm!(ctx: "flood", Pass, flood, ["--duration", "3"]),
        arm!(ctx: "flood with a wrong expected capacity", Fail, flood, ["--duration", "3", "--expect-capacity", "20"]),
        arm!(ctx: "breaker", Pass, breaker, []),
        arm!("rotate", Pass, rotate, ["--duration", "10s", "--rps", "30", "--ttl", "4s"]),
        arm!("rotate --control", Fail, rotate, ["--duration", "8s", "--rps", "30", "--ttl", "4s", "--control"]),
        arm!(ctx: "saga --fail-at mixed", Pass, saga, ["--orders", "20", "--fail-at", "mixed"]),
        // Kills payments and freezes RabbitMQ; the naive dual write must lose or invent events.
        arm!(ctx: "outbox", Pass, outbox, []),
        arm!(ctx: "outbox --control", Fail, outbox, ["--control"]),
        check("load --profile smoke", Expect::Pass, |e, s| Box::pin(load_arm(e, s, "smoke"))),
        // Faults on a schedule; every fault injected, every invariant PASS.
        check("load --profile checkout-faults-short", Expect::Pass, |e, s| Box::pin(load_arm(e, s, "checkout-faults-short"))),
        // Last: its password guessing leaves identity's throttles warm.
        arm!(ctx: "hostile", Pass, hostile, ["--per-class", "20", "--guesses", "100"]),
        arm!(ctx: "hostile --control", Fail, hostile, ["--per-class", "2", "--guesses", "10", "--control"]),
    ]
}

/// A load profile as a check (its faults, if any, through the fleet's
/// control plane); its clean-up runs after the report and is a line of it.
async fn load_arm(e: &Env, seed: u64, profile: &str) -> Result<Ran> {
    let (profile, _) = LoadProfile::load(&e.ctx.root, profile)?;
    let opts = crate::load::Options {
        seed,
        quiet: true,
        fleet: Some(e.ctx.clone()),
        ..Default::default()
    };
    let mut rep = crate::load::run(&e.lab, profile, &opts).await?;
    crate::load::clean_up(&e.lab, &mut rep).await;
    Ok(rep.into())
}

/// One check as judged by the gate: its test cases are its invariants, or
/// for a control arm the single "the checkers catch it" case.
#[derive(Serialize)]
struct Judged {
    name: &'static str,
    expect: Expect,
    verdict: Verdict,
    took_ms: u64,
    cases: Vec<Invariant>,
    report: serde_json::Value,
    #[serde(skip)]
    text: String,
    #[serde(skip)]
    shown: Option<Shown>,
    /// Its HTML page's file name in `--html DIR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
}

fn judge(c: &Check, mut ran: Result<Ran>, took: Duration) -> Judged {
    let shown = ran.as_mut().ok().and_then(|r| r.shown.take());
    let (cases, text, json) = match (ran, c.expect) {
        (Err(e), _) => (
            vec![Invariant::unknown(
                c.name,
                "the check runs",
                format!("{e:#}"),
            )],
            format!("{}: could not run: {e:#}\n", c.name),
            serde_json::Value::Null,
        ),
        (Ok(r), Expect::Pass) => (r.invariants, r.text, r.json),
        (Ok(r), Expect::Fail) => {
            let caught: Vec<&str> = r
                .invariants
                .iter()
                .filter(|i| i.verdict == Verdict::Fail)
                .map(|i| i.name.as_str())
                .collect();
            let name = format!("{}: the checkers catch the control arm", c.name);
            let inv = match r.verdict {
                Verdict::Unknown => {
                    Invariant::unknown(&name, "FAIL", "the control arm could not be judged")
                }
                v => Invariant::check(
                    &name,
                    v == Verdict::Fail,
                    "FAIL (the broken path is caught)",
                    report::load::verdict_label(v),
                    if caught.is_empty() {
                        "no invariant failed".into()
                    } else {
                        format!("failed as they must: {}", caught.join("; "))
                    },
                ),
            };
            (vec![inv], r.text, r.json)
        }
    };
    Judged {
        name: c.name,
        expect: c.expect,
        verdict: overall(&cases),
        took_ms: took.as_millis() as u64,
        cases,
        report: json,
        text,
        shown,
        page: None,
    }
}

#[derive(Serialize)]
struct Outcome {
    verdict: Verdict,
    seed: u64,
    booted_a_fleet: bool,
    checks: Vec<Judged>,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    if let Some(dir) = &args.html {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--html: cannot create {}", dir.display()))?;
    }
    let booted = ensure_fleet(&ctx, args.json).await?;
    let result = tokio::select! {
        r = run_gate(&ctx, seed, args.json, args.html.as_deref()) => r,
        _ = tokio::signal::ctrl_c() => Err(Exit::error(exit::INTERRUPTED, "interrupted")),
    };
    if booted {
        teardown(&ctx).await?;
    }
    let checks = result?;
    let all: Vec<Invariant> = checks.iter().flat_map(|c| c.cases.clone()).collect();
    let outcome = Outcome {
        verdict: overall(&all),
        seed,
        booted_a_fleet: booted,
        checks,
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
        write_index(dir, &outcome, &ctx.profile.name)?;
    }
    if args.json {
        report::json(&outcome)?;
    } else {
        print_summary(&outcome, args.junit.as_deref());
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

async fn run_gate(ctx: &Ctx, seed: u64, json: bool, html: Option<&Path>) -> Result<Vec<Judged>> {
    let env = Env {
        lab: Lab::connect(ctx).await?,
        ctx: ctx.clone(),
    };
    let mut out = Vec::new();
    for c in gate() {
        if !json {
            eprintln!("verify: {} …", c.name);
        }
        let t = Instant::now();
        let ran = (c.run)(&env, seed).await;
        let mut j = judge(&c, ran, t.elapsed());
        if let Some(dir) = html {
            j.page = write_page(dir, out.len() + 1, &j, &ctx.profile.name)?;
        }
        if !json {
            println!("== {} (expected {:?}) ==\n{}", c.name, c.expect, j.text);
        }
        out.push(j);
    }
    Ok(out)
}

fn expect_label(e: Expect) -> &'static str {
    match e {
        Expect::Pass => "PASS",
        Expect::Fail => "FAIL",
    }
}

/// `NN-<check name as a file name>.html`.
fn page_name(n: usize, check: &str) -> String {
    let slug: String = check
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug: Vec<&str> = slug.split('-').filter(|s| !s.is_empty()).collect();
    format!("{n:02}-{}.html", slug.join("-"))
}

/// Writes a check's page (when it ran and left a report); its file name.
fn write_page(dir: &Path, n: usize, j: &Judged, fleet_profile: &str) -> Result<Option<String>> {
    let Some(shown) = &j.shown else {
        return Ok(None);
    };
    let name = page_name(n, j.name);
    let page = shown.page(&html::About::now(fleet_profile))?;
    let page = html::verify::annotate(&page, j.name, expect_label(j.expect), j.verdict);
    html::write(&dir.join(&name), &page)?;
    Ok(Some(name))
}

fn write_index(dir: &Path, o: &Outcome, fleet_profile: &str) -> Result<()> {
    let entries: Vec<html::verify::Entry<'_>> = o
        .checks
        .iter()
        .map(|c| html::verify::Entry {
            name: c.name,
            expect: expect_label(c.expect),
            verdict: c.verdict,
            passed: c
                .cases
                .iter()
                .filter(|i| i.verdict == Verdict::Pass)
                .count(),
            cases: c.cases.len(),
            took_ms: c.took_ms,
            page: c.page.as_deref(),
        })
        .collect();
    let page = html::verify::index(
        o.verdict,
        o.seed,
        &entries,
        serde_json::to_value(o)?,
        &html::About::now(fleet_profile),
    )?;
    html::write(&dir.join("index.html"), &page)
}

fn print_summary(o: &Outcome, junit: Option<&std::path::Path>) {
    let mut t = report::table(&["check", "expected", "verdict", "cases passed", "took"]);
    for c in &o.checks {
        let passed = c
            .cases
            .iter()
            .filter(|i| i.verdict == Verdict::Pass)
            .count();
        t.add_row(vec![
            c.name.to_string(),
            format!("{:?}", c.expect).to_uppercase(),
            report::load::verdict_label(c.verdict).into(),
            format!("{passed}/{}", c.cases.len()),
            report::secs(Some(c.took_ms)),
        ]);
    }
    println!("{t}");
    if let Some(p) = junit {
        println!("JUnit report: {}", p.display());
    }
    println!(
        "verify: {}  (seed {})",
        report::load::verdict_label(o.verdict),
        o.seed
    );
}

/// Boots a fleet unless one is up; true when it booted one (to stop after).
async fn ensure_fleet(ctx: &Ctx, json: bool) -> Result<bool> {
    if let Some(state) = FleetState::load(&ctx.state_dir)? {
        if !observe::all_dead(&state) {
            return Ok(false);
        }
        FleetState::remove(&ctx.state_dir)?;
    }
    if !json {
        eprintln!(
            "verify: no fleet is up in {}; booting `{}` for the gate (stopped again after)",
            ctx.state_dir.display(),
            ctx.profile.name
        );
    }
    let progress = Progress::new(json);
    boot::up(ctx, &progress, InfraMode::Native, true)
        .await
        .context("verify: cannot boot a fleet")?;
    Ok(true)
}

/// Stops the fleet `ensure_fleet` booted, as `down` does, and checks that
/// nothing of it is left.
async fn teardown(ctx: &Ctx) -> Result<()> {
    let Some(state) = FleetState::load(&ctx.state_dir)? else {
        return Ok(());
    };
    let grace = Duration::from_secs(ctx.profile.timeouts.stop_secs);
    let (s, dir) = (state.clone(), ctx.state_dir.clone());
    tokio::task::spawn_blocking(move || stop::stop_all(&s, &dir, grace)).await?;
    let (survivors, listening) = (stop::survivors(&state), stop::listening_ports(&state));
    if !survivors.is_empty() || !listening.is_empty() {
        return Err(Exit::error(
            exit::ERROR,
            format!(
                "verify: stopping its fleet left processes {survivors:?}, listening ports {listening:?}; run `storefront down`"
            ),
        ));
    }
    FleetState::remove(&ctx.state_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(verdict: Verdict, invariants: Vec<Invariant>) -> Result<Ran> {
        Ok(Ran {
            verdict,
            invariants,
            text: String::new(),
            json: serde_json::Value::Null,
            shown: None,
        })
    }

    #[test]
    fn html_writes_a_page_per_check_that_ran_and_an_index_linking_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = Report::new("race", 5, serde_json::json!({"n": 2}));
        report.push(Invariant::check("no lost update", false, 0, 3, "pg"));
        report.outcomes.add("decrement", "200");
        report.conclude(Duration::ZERO);
        let control = check("race --control", Expect::Fail, |_, _| {
            Box::pin(async { unreachable!() })
        });
        let mut ran_ok = judge(&control, Ok(report.into()), Duration::ZERO);
        let mut broke = judge(&control, Err(anyhow::anyhow!("boom")), Duration::ZERO);
        ran_ok.page = write_page(dir.path(), 1, &ran_ok, "dev").unwrap();
        broke.page = write_page(dir.path(), 2, &broke, "dev").unwrap();
        assert_eq!(ran_ok.page.as_deref(), Some("01-race-control.html"));
        assert_eq!(
            broke.page, None,
            "a check that could not run has no report to show"
        );
        let page = std::fs::read_to_string(dir.path().join("01-race-control.html")).unwrap();
        assert!(
            page.contains("expected FAIL, gate verdict PASS"),
            "the control arm's note"
        );
        assert!(page.contains("no lost update"));
        let outcome = Outcome {
            verdict: Verdict::Unknown,
            seed: 5,
            booted_a_fleet: false,
            checks: vec![ran_ok, broke],
        };
        write_index(dir.path(), &outcome, "dev").unwrap();
        let index = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(index.contains("<a href=\"01-race-control.html\">"));
        assert!(index.contains("data-json=\"/checks/1/verdict\">UNKNOWN<"));
    }

    #[test]
    fn each_check_page_gets_a_numbered_file_name_from_its_check() {
        assert_eq!(page_name(2, "race --control"), "02-race-control.html");
        assert_eq!(
            page_name(11, "load --profile smoke"),
            "11-load-profile-smoke.html"
        );
    }

    #[test]
    fn a_control_arm_passes_the_gate_only_by_failing() {
        let control = check("x --control", Expect::Fail, |_, _| {
            Box::pin(async { unreachable!() })
        });
        let failed = judge(
            &control,
            ran(
                Verdict::Fail,
                vec![Invariant::check("no lost update", false, 0, 3, "pg")],
            ),
            Duration::ZERO,
        );
        assert_eq!(failed.verdict, Verdict::Pass);
        assert_eq!(failed.cases.len(), 1);
        assert!(
            failed.cases[0].observed.contains("FAIL")
                && failed.cases[0].evidence.contains("no lost update")
        );
        let passed = judge(&control, ran(Verdict::Pass, vec![]), Duration::ZERO);
        assert_eq!(
            passed.verdict,
            Verdict::Fail,
            "a control arm that passes means a checker that cannot fail"
        );
    }

    #[test]
    fn a_check_that_cannot_run_is_unknown_and_a_normal_arm_keeps_its_invariants() {
        let c = check("race", Expect::Pass, |_, _| {
            Box::pin(async { unreachable!() })
        });
        let j = judge(&c, Err(anyhow::anyhow!("boom")), Duration::ZERO);
        assert_eq!(j.verdict, Verdict::Unknown);
        let inv = vec![
            Invariant::check("a", true, 1, 1, "e"),
            Invariant::check("b", true, 1, 1, "e"),
        ];
        let j = judge(&c, ran(Verdict::Pass, inv), Duration::ZERO);
        assert_eq!((j.verdict, j.cases.len()), (Verdict::Pass, 2));
    }

    #[test]
    fn the_gate_fault_run_kills_payments_restarts_redis_and_rabbitmq_and_revokes_a_lease_within_30s()
     {
        use crate::faults::schedule::Kind;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (p, _) = LoadProfile::load(&root, "checkout-faults-short").unwrap();
        assert!(p.duration.0 <= Duration::from_secs(30), "{:?}", p.duration);
        let faults: Vec<(Kind, &str)> = p
            .faults
            .iter()
            .map(|f| (*f.kind.get_ref(), f.target.get_ref().as_str()))
            .collect();
        for want in [
            (Kind::Kill, "payments"),
            (Kind::Restart, "redis"),
            (Kind::Restart, "rabbitmq"),
            (Kind::RevokeLease, "identity"),
        ] {
            assert!(faults.contains(&want), "{want:?} missing from {faults:?}");
        }
        assert!(
            !p.invariants.is_empty(),
            "the fault run judges the shop's invariants"
        );
    }

    #[test]
    fn the_gate_runs_every_experiment_arm_and_the_smoke_load() {
        let names: Vec<&str> = gate().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "race",
                "race --control",
                "replay",
                "replay --control",
                "flood",
                "flood with a wrong expected capacity",
                "breaker",
                "rotate",
                "rotate --control",
                "saga --fail-at mixed",
                "outbox",
                "outbox --control",
                "load --profile smoke",
                "load --profile checkout-faults-short",
                "hostile",
                "hostile --control"
            ]
        );
        // The gate's argument lists parse (a wrong flag would panic here, not in CI).
        let p: race::Params = params(&["--n", "20", "--control"]);
        assert!(p.control && p.n == 20);
        let f: flood::Params = params(&["--duration", "3", "--expect-capacity", "20"]);
        assert_eq!((f.duration, f.expect_capacity), (3, Some(20)));
        let _: breaker::Params = params(&[]);
        let h: hostile::Params = params(&["--per-class", "2", "--guesses", "10", "--control"]);
        assert!(h.control && h.per_class == 2 && h.guesses == 10);
        let r: rotate::Params = params(&[
            "--duration",
            "8s",
            "--rps",
            "30",
            "--ttl",
            "4s",
            "--control",
        ]);
        assert!(r.control);
        let _: saga::Params = params(&["--orders", "20", "--fail-at", "mixed"]);
        let o: outbox::Params = params(&["--control"]);
        assert!(o.control);
    }
}
