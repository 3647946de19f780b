//! `storefront chaos set|clear|show`: the BFF's fault injection, driven
//! through its admin API with the token from the fleet profile's bff env.

use anyhow::Result;
use serde_json::{Value, json};

use crate::clients::bff_admin::{AdminRefused, BffAdmin as Gateway};
use crate::commands::Global;
use crate::exit::{self, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
    /// Print the BFF's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Replace the active faults with one fault on a service or instance.
    Set(Fault),
    /// Lift every fault.
    Clear,
    /// List the active faults, their seed and time left.
    Show,
}

#[derive(Debug, clap::Args)]
pub struct Fault {
    /// A service (`catalog`: all replicas) or one instance (`catalog-2`).
    #[arg(long)]
    pub target: String,
    /// Latency added to every call (ms).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Plus a uniform draw from 0..=this (ms).
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Share of calls answered with --error-status instead of being sent (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Status of injected errors.
    #[arg(long, default_value_t = 503)]
    pub error_status: u16,
    /// Share of calls failed as a reset connection (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub abort_rate: f64,
    /// Seconds until the fault lifts by itself (1..=3600).
    #[arg(long, default_value_t = 60)]
    pub ttl: u64,
    /// Seed of the fault draws, to replay a run [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let gw = Gateway::connect(&ctx)?;
    let answer = match &args.action {
        Action::Set(f) => {
            let mut body = json!({"faults": [{
                "target": f.target, "latency_ms": f.latency_ms, "jitter_ms": f.jitter_ms,
                "error_rate": f.error_rate, "error_status": f.error_status,
                "abort_rate": f.abort_rate, "ttl_secs": f.ttl,
            }]});
            if let Some(seed) = f.seed {
                body["seed"] = json!(seed);
            }
            gw.set_chaos(body).await
        }
        Action::Clear => gw.clear_chaos().await,
        Action::Show => gw.show_chaos().await,
    };
    let answer = answer.map_err(|e| {
        // The BFF's 422 is a bad command line; anything else, an error.
        match e.downcast_ref::<AdminRefused>() {
            Some(r) if r.status == 422 => Exit::error(exit::USAGE, format!("{e:#}")),
            _ => e,
        }
    })?;
    if args.json {
        crate::report::json(&answer)?;
    } else {
        print!("{}", render(&answer));
    }
    Ok(exit::OK)
}

/// The active faults as a table.
fn render(chaos: &Value) -> String {
    let faults = chaos["faults"].as_array().cloned().unwrap_or_default();
    if faults.is_empty() {
        return "no active faults\n".into();
    }
    let mut t = crate::report::table(&[
        "target",
        "latency",
        "error rate",
        "abort rate",
        "expires in",
    ]);
    for f in &faults {
        t.add_row(vec![
            f["target"].as_str().unwrap_or("?").to_owned(),
            format!("{} ms + 0..{} ms", f["latency_ms"], f["jitter_ms"]),
            format!("{} → {}", f["error_rate"], f["error_status"]),
            f["abort_rate"].to_string(),
            format!("{:.0} s", f["expires_in_secs"].as_f64().unwrap_or(0.0)),
        ]);
    }
    format!("{t}\nseed {}\n", chaos["seed"])
}
