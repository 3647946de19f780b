//! `storefront doctor`: is everything the fleet needs here, and are its ports free?

use std::process::Command;

use anyhow::Result;
use serde::Serialize;

use crate::commands::Global;
use crate::exit;
use crate::fleet::{FleetState, binaries, observe, ready};
use crate::report;

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Finding {
    check: String,
    ok: bool,
    found: String,
    /// What to run when it is not ok.
    fix: Option<String>,
}

fn version_of(program: &str, path: &std::path::Path) -> String {
    let out = match program {
        "postgres" => Command::new(path.join("postgres"))
            .arg("--version")
            .output(),
        "rabbitmq-server" => {
            let v = std::fs::read_dir("/usr/lib/rabbitmq/lib")
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_prefix("rabbitmq_server-")
                        .map(str::to_owned)
                })
                .next();
            return v.map_or_else(|| "installed".into(), |v| format!("RabbitMQ {v}"));
        }
        "epmd" => return "installed".into(),
        "bao" => Command::new(path).arg("version").output(),
        _ => Command::new(path).arg("--version").output(),
    };
    out.ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "installed (version unknown)".into())
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let ctx = g.ctx()?;
    let mut findings = Vec::new();
    for (name, _, hint) in binaries::INFRA_PROGRAMS {
        match binaries::find(name, &ctx.tools_dir) {
            Ok(p) => findings.push(Finding {
                check: (*name).into(),
                ok: true,
                found: format!("{} ({})", version_of(name, &p), p.display()),
                fix: None,
            }),
            Err(e) => findings.push(Finding {
                check: (*name).into(),
                ok: false,
                found: e.to_string(),
                fix: Some((*hint).into()),
            }),
        }
    }
    let mut bins: Vec<&str> = ctx.profile.services.iter().map(|s| s.binary()).collect();
    bins.dedup();
    for b in bins {
        match binaries::service_binary(b) {
            Ok(p) => {
                let v = Command::new(&p).arg("--version").output().ok();
                let v = v
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default();
                findings.push(Finding {
                    check: format!("service {b}"),
                    ok: true,
                    found: format!("{v} ({})", p.display()),
                    fix: None,
                });
            }
            Err(e) => findings.push(Finding {
                check: format!("service {b}"),
                ok: false,
                found: e.to_string(),
                fix: Some("cargo build --workspace".into()),
            }),
        }
    }
    let ours = match FleetState::load(&ctx.state_dir)? {
        Some(s) if !observe::all_dead(&s) => {
            s.components.iter().flat_map(|c| c.ports.clone()).collect()
        }
        _ => Vec::new(),
    };
    let p = ctx.profile.ports();
    let mut ports = vec![p.postgres, p.redis, p.amqp, p.rabbit_dist, p.epmd, p.vault];
    ports.extend(ctx.profile.instances().iter().map(|(.., port)| *port));
    let taken: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|port| !ready::port_free(*port) && !ours.contains(port))
        .collect();
    findings.push(Finding {
        check: format!(
            "ports {}..={}",
            ports[0],
            ports.iter().max().copied().unwrap_or(0)
        ),
        ok: taken.is_empty(),
        found: if taken.is_empty() {
            if ours.is_empty() {
                "free".into()
            } else {
                "held by this fleet (running)".into()
            }
        } else {
            format!("in use by another program: {taken:?}")
        },
        fix: (!taken.is_empty()).then(|| "stop what holds them, or pass --port-base N".into()),
    });
    let writable =
        std::fs::create_dir_all(&ctx.state_dir).is_ok() && tempfile_probe(&ctx.state_dir);
    findings.push(Finding {
        check: "state dir".into(),
        ok: writable,
        found: format!(
            "{} ({})",
            ctx.state_dir.display(),
            if writable { "writable" } else { "not writable" }
        ),
        fix: (!writable).then(|| "pass --state-dir DIR with a writable directory".into()),
    });
    let healthy = findings.iter().all(|f| f.ok);
    if args.json {
        report::json(&findings)?;
    } else {
        let mut t = report::table(&["check", "ok", "found", "fix"]);
        for f in &findings {
            t.add_row(vec![
                f.check.clone(),
                if f.ok { "ok" } else { "MISSING" }.into(),
                f.found.clone(),
                f.fix.clone().unwrap_or_default(),
            ]);
        }
        println!("{t}");
        if !healthy {
            println!("to install everything missing at once: scripts/setup.sh");
        }
    }
    Ok(if healthy { exit::OK } else { exit::FAILED })
}

fn tempfile_probe(dir: &std::path::Path) -> bool {
    let p = dir.join(".doctor-probe");
    let ok = std::fs::write(&p, b"x").is_ok();
    let _ = std::fs::remove_file(&p);
    ok
}
