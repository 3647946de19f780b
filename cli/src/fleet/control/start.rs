//! Starting one component again with its recorded configuration, and
//! waiting until it is ready.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::release::{adopt, await_release, record};
use super::revive::configure_vault;
use super::{find, load, require_ours};
use crate::fleet::binaries::Binaries;
use crate::fleet::postgres::{self, PgAdmin};
use crate::fleet::process::{self, Spawned};
use crate::fleet::profile::ServiceSpec;
use crate::fleet::ready::{self, Watch};
use crate::fleet::state::{Component, ComponentKind, FleetState};
use crate::fleet::{
    Ctx, Secrets, native, prometheus, rabbit, redis_acl, services, supervisor, vault,
};

/// What a start did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Started {
    pub name: String,
    pub pid: i32,
    pub took_ms: u64,
    /// A process of ours was already serving on the port: recorded, not started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted: Option<i32>,
    /// What else had to start or restart for it (epmd for RabbitMQ; the
    /// services whose Vault tokens a new Vault no longer knows).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Starts the named component again and waits until it is ready; returns
/// how long that took.
pub async fn start(ctx: &Ctx, name: &str) -> Result<Duration> {
    start_detailed(ctx, name)
        .await
        .map(|s| Duration::from_millis(s.took_ms))
}

/// Starts the named component with its recorded configuration (see the
/// module doc), waits until it is ready, and records it.
pub async fn start_detailed(ctx: &Ctx, name: &str) -> Result<Started> {
    let state = load(ctx)?;
    let c = find(&state, name)?.clone();
    require_ours(&state, &c)?;
    if let Some(pid) = c.pid.filter(|p| process::alive(*p, c.start_ticks)) {
        let hint = if process::paused(pid) {
            format!("; it is paused: `storefront resume {name}`")
        } else {
            String::new()
        };
        bail!("`{name}` is already running (pid {pid}){hint}");
    }
    let t = Instant::now();
    let mut started = Started {
        name: name.to_owned(),
        ..Default::default()
    };
    if name == "rabbitmq" && epmd_dead(&state) {
        Box::pin(start_detailed(ctx, "epmd")).await?;
        started.also.push("epmd".into());
    }
    if let Some(pid) = await_release(ctx, &c)? {
        adopt(ctx, name, pid)?;
        started.adopted = Some(pid);
    }
    let sp = match started.adopted {
        Some(pid) => Spawned {
            pid,
            start_ticks: process::start_ticks(pid),
        },
        None => spawn(ctx, &state, &c).await?,
    };
    started.pid = sp.pid;
    ready_after_start(ctx, &state, &c, sp).await?;
    if name == "rabbitmq" {
        let beam = native::rabbit_beam(sp);
        record(ctx, name, beam)?;
        started.pid = beam.pid;
    }
    if name == "vault" {
        let (detail, restarted) = configure_vault(ctx).await?;
        started.detail = Some(detail);
        started.also.extend(restarted);
    }
    started.took_ms = t.elapsed().as_millis() as u64;
    let mut state = load(ctx)?;
    if let Some(c) = state.components.iter_mut().find(|c| c.name == name) {
        c.boot_ms = Some(started.took_ms);
        c.detail = started.detail.clone().or(c.detail.take());
    }
    state.save(&ctx.state_dir)?;
    Ok(started)
}

fn service_of(ctx: &Ctx, name: &str) -> Result<(ServiceSpec, u16)> {
    ctx.profile
        .instances()
        .into_iter()
        .find(|(_, n, _)| n == name)
        .map(|(spec, _, port)| (spec, port))
        .with_context(|| {
            format!(
                "profile `{}` has no service instance `{name}` (start with the profile the fleet was booted with)",
                ctx.profile.name
            )
        })
}

/// Spawns the component's process and records it.
async fn spawn(ctx: &Ctx, state: &FleetState, c: &Component) -> Result<Spawned> {
    let sp = match c.kind {
        ComponentKind::Service => {
            let (spec, port) = service_of(ctx, &c.name)?;
            services::spawn(ctx, &spec, &c.name, port, &state.endpoints)?.0
        }
        ComponentKind::Infra if c.name == supervisor::NAME => supervisor::spawn(ctx)?,
        ComponentKind::Infra if c.name == prometheus::NAME => {
            let bin = prometheus::binary().context(
                "prometheus is not installed (run scripts/setup.sh, which installs Debian's `prometheus`)",
            )?;
            let cmd = prometheus::command(ctx, &bin, ctx.profile.ports().prometheus)?;
            process::spawn(cmd, &ctx.log_path(&c.name), &ctx.state_dir)?
        }
        ComponentKind::Infra => {
            let bins = Binaries::locate(&ctx.tools_dir)?;
            let secrets = Secrets::load_or_create(&ctx.state_dir)?;
            let ports = ctx.profile.ports();
            let cmd = match c.name.as_str() {
                "postgres" => postgres::command(ctx, &bins.pg_bindir, ports.postgres)?,
                "redis" => native::redis_command(ctx, &bins, &secrets)?,
                "epmd" => rabbit::epmd_command(&bins.epmd, &ports),
                "rabbitmq" => {
                    rabbit::command(&bins.rabbitmq_server, &ctx.state_dir, &ports, &secrets)?
                }
                "vault" => vault::command(&bins.bao, &ctx.state_dir, ports.vault)?,
                other => bail!("do not know how to start infrastructure `{other}`"),
            };
            process::spawn(cmd, &ctx.log_path(&c.name), &ctx.state_dir)?
        }
    };
    record(ctx, &c.name, sp)?;
    Ok(sp)
}

/// Polls the component's own readiness check.
async fn ready_after_start(
    ctx: &Ctx,
    state: &FleetState,
    c: &Component,
    sp: Spawned,
) -> Result<()> {
    let client = ready::http_client();
    if c.kind == ComponentKind::Service {
        let (_, port) = service_of(ctx, &c.name)?;
        services::wait_ready(ctx, &client, &c.name, port, sp).await?;
        return Ok(());
    }
    let log = ctx.log_path(&c.name);
    let w = Watch {
        what: &c.name,
        pid: Some((sp.pid, sp.start_ticks)),
        log: Some(&log),
    };
    let deadline = Duration::from_secs(ctx.profile.timeouts.infra_ready_secs);
    let ports = ctx.profile.ports();
    let e = &state.endpoints;
    match c.name.as_str() {
        "postgres" => {
            let secrets = Secrets::load_or_create(&ctx.state_dir)?;
            let url = PgAdmin::native(ports.postgres, &secrets).url("postgres");
            ready::poll(w, deadline, || postgres::check(&url)).await?
        }
        "redis" => ready::poll(w, deadline, || redis_acl::ping(&e.redis_url)).await?,
        "rabbitmq" => ready::poll(w, deadline, || rabbit::check(ports.amqp)).await?,
        prometheus::NAME => ready::poll(w, deadline, || prometheus::check(&client, &c.url)).await?,
        "vault" => {
            ready::poll(w, deadline, || {
                vault::check_listening(&client, &e.vault_addr)
            })
            .await?
        }
        _ => {
            ready::poll(w, deadline, || async {
                c.ports
                    .iter()
                    .all(|p| ready::port_listening(*p))
                    .then_some(())
                    .context("not listening")
            })
            .await?
        }
    };
    Ok(())
}

fn epmd_dead(state: &FleetState) -> bool {
    state
        .components
        .iter()
        .find(|c| c.name == "epmd")
        .is_some_and(|e| !e.pid.is_some_and(|p| process::alive(p, e.start_ticks)))
}
