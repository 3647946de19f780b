//! One module per subcommand: its clap Args and `run()`.

pub mod attach;
pub mod bootstrap;
pub mod breaker;
pub mod chaos;
pub mod check;
pub mod control;
pub mod dashboard;
pub mod doctor;
pub mod down;
pub mod flood;
pub mod hostile;
pub mod load;
pub mod logs;
pub mod outbox;
pub mod race;
pub mod replay;
pub mod report;
pub mod restart;
pub mod rotate;
pub mod saga;
pub mod status;
pub mod up;
pub mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::exit;
use crate::fleet::{self, Ctx, FleetProfile};

/// storefront: boot a fleet of e-commerce microservices on real Postgres,
/// Redis, RabbitMQ and Vault, drive its patterns under concurrency and faults,
/// and check invariants against the databases.
#[derive(Debug, Parser)]
#[command(name = "storefront", version, after_help = exit::HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// More diagnostics on stderr: -v debug, -vv trace (RUST_LOG, if set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Fleet profile: a name in profiles/ or a path to a TOML file (`load --profile` names a LOAD profile).
    #[arg(
        long = "fleet",
        value_name = "PROFILE",
        global = true,
        env = "STOREFRONT_FLEET",
        default_value = "dev"
    )]
    pub profile: String,
    /// Where the fleet keeps its data, logs and fleet.json [default: <project>/.storefront].
    #[arg(long, global = true, env = "STOREFRONT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Move every port of the fleet: overrides the profile's port_base.
    #[arg(long, global = true, env = "STOREFRONT_PORT_BASE")]
    pub port_base: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the fleet: infrastructure, migrations, services; wait until all are ready.
    Up(up::Args),
    /// Stop the fleet: services first, then infrastructure; nothing left running.
    Down(down::Args),
    /// Show each component: pid, URL, state, boot time.
    Status(status::Args),
    /// Print (or follow) a component's log.
    Logs(logs::Args),
    /// Stop one component (a service instance or infrastructure; gracefully, as a crash, or Postgres --mode immediate) and start it again.
    Restart(restart::Args),
    /// Stop one component of the fleet (infrastructure included); its record stays, `start` brings it back.
    Stop(control::StopArgs),
    /// Start one stopped component again (a new Vault is initialised and configured; its services get new tokens).
    Start(control::NameArgs),
    /// Freeze one component: SIGSTOP to its whole process group; `status` shows it `paused`.
    Pause(control::NameArgs),
    /// Thaw a paused component: SIGCONT to its process group.
    Resume(control::NameArgs),
    /// The supervisor's loop (`up` starts it when the profile says `supervise = true`).
    #[command(hide = true)]
    Supervise(control::SuperviseArgs),
    /// Experiment: N clients race one conditional stock decrement; exactly one may win (xmin OCC → 412).
    Race(race::Args),
    /// Experiment: open-model load above the BFF's refill rate; each session gets capacity + refill × D, refusals are 429 + Retry-After.
    Flood(flood::Args),
    /// Experiment: fail, kill and restore a catalog replica behind the BFF; its breaker opens, fails fast, and closes again.
    Breaker(breaker::Args),
    /// Experiment: hostile requests (traversal, NUL bytes, overflow, malformed bodies, forged webhooks and tokens, password guessing) through the BFF and directly; all refused, nothing changed.
    Hostile(hostile::Args),
    /// Set, clear or show the BFF's injected faults (latency, errors, aborts; each with a TTL).
    Chaos(chaos::Args),
    /// Experiment: N identical POSTs per idempotency key; one claim, N−1 byte-identical replays, one row.
    Replay(replay::Args),
    /// Experiment: identity's Vault-issued Postgres logins rotate (and one is revoked) under load; no request may fail.
    Rotate(rotate::Args),
    /// Experiment: N orders through the checkout saga with injected failures, webhook chaos and crashes; compensations and money checked.
    Saga(saga::Args),
    /// Experiment: payments' outbox under a SIGKILL and a frozen RabbitMQ mid-publish: no event lost or invented (`--control`: a naive dual write, which must fail).
    Outbox(outbox::Args),
    /// Judge the shop now: orders since --since terminal, money and stock add up, outboxes drained, no dead letters, one order per key, one claim per key.
    #[command(long_about = check::LONG_ABOUT)]
    Check(check::Args),
    /// Load: run a load profile (`--profile browse`; closed model, or open with --rate) and judge its thresholds and invariants.
    Load(load::Args),
    /// Reports: `report merge FILES…` merges HdrHistogram interval logs from `load --hdr-out`.
    Report(report::Args),
    /// CI gate: every experiment (control arms must fail) and the smoke load, on a fleet it boots if none is up.
    Verify(verify::Args),
    /// Record a fleet the CLI did not boot (compose, Kubernetes, elsewhere) from its URLs; `down` then stops nothing.
    Attach(attach::Args),
    /// Ready already-running infrastructure (roles, schemas, migrations, Vault) without starting services.
    Bootstrap(bootstrap::Args),
    /// Check that every program the fleet needs is installed and every port is free.
    Doctor(doctor::Args),
    /// The lab page on 127.0.0.1: the fleet live, experiments, loads, chaos, an order's story (prints its URL with a token).
    Dashboard(dashboard::Args),
}

impl Global {
    /// Resolves the project root, state dir and profile.
    pub fn ctx(&self) -> Result<Ctx> {
        let root = fleet::project_root()?;
        let (mut profile, _) = FleetProfile::load(&root, &self.profile)?;
        if let Some(base) = self.port_base {
            profile.port_base = base;
            FleetProfile::parse(&toml::to_string(&profile)?)
                .map_err(|e| anyhow::anyhow!("--port-base {base}: {e}"))?;
        }
        let state_dir = match &self.state_dir {
            Some(d) => std::path::absolute(d)?,
            None => root.join(".storefront"),
        };
        let tools_dir = std::env::var_os("STOREFRONT_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".storefront/tools"));
        Ok(Ctx {
            root,
            state_dir,
            tools_dir,
            profile,
        })
    }
}

pub async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Up(a) => up::run(&cli.global, a).await,
        Command::Down(a) => down::run(&cli.global, a).await,
        Command::Status(a) => status::run(&cli.global, a).await,
        Command::Logs(a) => logs::run(&cli.global, a).await,
        Command::Doctor(a) => doctor::run(&cli.global, a).await,
        Command::Restart(a) => restart::run(&cli.global, a).await,
        Command::Stop(a) => control::stop(&cli.global, a).await,
        Command::Start(a) => control::start(&cli.global, a).await,
        Command::Pause(a) => control::pause(&cli.global, a, false).await,
        Command::Resume(a) => control::pause(&cli.global, a, true).await,
        Command::Supervise(a) => control::supervise(&cli.global, a).await,
        Command::Race(a) => race::run(&cli.global, a).await,
        Command::Flood(a) => flood::run(&cli.global, a).await,
        Command::Breaker(a) => breaker::run(&cli.global, a).await,
        Command::Hostile(a) => hostile::run(&cli.global, a).await,
        Command::Chaos(a) => chaos::run(&cli.global, a).await,
        Command::Replay(a) => replay::run(&cli.global, a).await,
        Command::Rotate(a) => rotate::run(&cli.global, a).await,
        Command::Saga(a) => saga::run(&cli.global, a).await,
        Command::Outbox(a) => outbox::run(&cli.global, a).await,
        Command::Check(a) => check::run(&cli.global, a).await,
        Command::Load(a) => load::run(&cli.global, a).await,
        Command::Report(a) => report::run(&cli.global, a).await,
        Command::Verify(a) => verify::run(&cli.global, a).await,
        Command::Attach(a) => attach::run(&cli.global, a).await,
        Command::Bootstrap(a) => bootstrap::run(&cli.global, a).await,
        Command::Dashboard(a) => dashboard::run(&cli.global, a).await,
    }
}
