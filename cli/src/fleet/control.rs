//! The control plane: stop, start, restart, pause and resume one component
//! of a running fleet, infrastructure included. The breaker and saga
//! experiments crash a service mid-run and bring it back; `storefront
//! stop|start|restart|pause|resume NAME` does it by hand; `up` on a partly
//! dead fleet starts what is dead through [`start_detailed`]. The record in
//! fleet.json follows every step.
//!
//! Starting again waits until the old process is gone and its ports are free
//! (a SIGKILLed process whose leader is a zombie can still hold its socket
//! through its other threads), adopts a process of ours found on the port,
//! and names anyone else's. A restarted Vault has forgotten everything (its
//! storage is in memory): it is initialised, unsealed and configured again,
//! new service tokens are issued, and the services holding the old tokens
//! are restarted with the new ones: a token is handed over in the
//! environment, so a restart is the only way.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde::Serialize;

use super::binaries::Binaries;
use super::postgres::{self, PgAdmin};
use super::process::{self, Spawned, Stopped};
use super::profile::ServiceSpec;
use super::ready::{self, Watch};
use super::state::{Component, ComponentKind, FleetState, InfraMode};
use super::{Ctx, Secrets, native, prometheus, rabbit, services, supervisor, vault};

/// How to stop it: politely (SIGTERM, drain; Postgres's "fast" shutdown),
/// as a crash (SIGKILL), or, for Postgres, its "immediate" shutdown
/// (SIGQUIT: no checkpoint, crash recovery on the next start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum How {
    Graceful,
    Crash,
    Immediate,
}

/// How long a start waits for the old process to let go of its ports.
const RELEASE_DEADLINE: Duration = Duration::from_secs(15);

/// The infrastructure in the order it is started: what each needs comes first.
pub const INFRA_ORDER: &[&str] = &["postgres", "redis", "epmd", "rabbitmq", "vault"];

fn load(ctx: &Ctx) -> Result<FleetState> {
    FleetState::load(&ctx.state_dir)?.with_context(|| {
        format!(
            "no fleet is up in {} (storefront up)",
            ctx.state_dir.display()
        )
    })
}

/// The recorded component `name`, or an error that lists the names there are.
fn find<'a>(state: &'a FleetState, name: &str) -> Result<&'a Component> {
    state
        .components
        .iter()
        .find(|c| c.name == name)
        .with_context(|| unknown(state, name))
}

fn unknown(state: &FleetState, name: &str) -> String {
    let names: Vec<&str> = state.components.iter().map(|c| c.name.as_str()).collect();
    format!(
        "no component `{name}` in the fleet; it has: {} (as `storefront status` lists them)",
        names.join(", ")
    )
}

/// A component we do not run (external or compose infrastructure) cannot
/// be signalled from here.
fn require_ours(state: &FleetState, c: &Component) -> Result<()> {
    if c.kind == ComponentKind::Infra
        && state.infra != InfraMode::Native
        && c.name != supervisor::NAME
    {
        bail!(
            "`{}` is run by the {} infrastructure, not by this fleet: control it where it runs",
            c.name,
            format!("{:?}", state.infra).to_lowercase()
        );
    }
    Ok(())
}

/// The signal that stops `name` the way `how` asks.
pub fn signal(name: &str, how: How) -> Result<Signal> {
    Ok(match (how, name) {
        (How::Crash, _) => Signal::SIGKILL,
        // SIGINT is Postgres's "fast" shutdown (SIGTERM waits for clients).
        (How::Graceful, "postgres") => Signal::SIGINT,
        (How::Graceful, _) => Signal::SIGTERM,
        (How::Immediate, "postgres") => Signal::SIGQUIT,
        (How::Immediate, _) => {
            bail!("only postgres has an immediate mode; stop `{name}` with --mode fast or --crash")
        }
    })
}

/// Stops the named component; its record stays, without a pid. Waits until
/// the process and its group are gone (SIGKILL after the profile's stop
/// deadline).
pub fn stop(ctx: &Ctx, name: &str, how: How) -> Result<Stopped> {
    let mut state = load(ctx)?;
    let c = find(&state, name)?;
    require_ours(&state, c)?;
    let sig = signal(name, how)?;
    let Some(pid) = c.pid else {
        return Ok(Stopped::NotRunning);
    };
    let grace = match how {
        How::Graceful => Duration::from_secs(ctx.profile.timeouts.stop_secs),
        How::Crash | How::Immediate => Duration::from_secs(5),
    };
    let outcome = match process::stop(pid, c.start_ticks, sig, grace) {
        // Gone after SIGKILL is a kill, however fast.
        Stopped::Graceful if sig == Signal::SIGKILL => Stopped::Killed,
        o => o,
    };
    let c = state
        .components
        .iter_mut()
        .find(|c| c.name == name)
        .expect("found above");
    c.pid = None;
    c.start_ticks = None;
    state.save(&ctx.state_dir)?;
    Ok(outcome)
}

/// Pauses (SIGSTOP) or resumes (SIGCONT) the component's whole process
/// group: a Postgres with its backends, RabbitMQ's wrapper and beam.smp.
pub fn pause(ctx: &Ctx, name: &str, resume: bool) -> Result<i32> {
    let state = load(ctx)?;
    let c = find(&state, name)?;
    require_ours(&state, c)?;
    let pid = c
        .pid
        .filter(|p| process::alive(*p, c.start_ticks))
        .with_context(|| {
            format!("`{name}` is not running; start it with `storefront start {name}`")
        })?;
    let pgid = process::own_group(pid);
    let sig = if resume {
        Signal::SIGCONT
    } else {
        Signal::SIGSTOP
    };
    if pgid == pid && process::group_of(pid) != pid {
        // Not leading a group of its own (adopted): only the process itself.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
            .with_context(|| format!("cannot send {sig} to pid {pid}"))?;
    } else {
        process::signal_group(pgid, sig)?;
    }
    // The state changes asynchronously: see it before saying it happened.
    let deadline = Instant::now() + Duration::from_secs(5);
    while process::paused(pid) == resume {
        if Instant::now() > deadline {
            bail!(
                "`{name}` (pid {pid}) did not {} within 5s",
                if resume { "resume" } else { "stop" }
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(pgid)
}

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

fn epmd_dead(state: &FleetState) -> bool {
    state
        .components
        .iter()
        .find(|c| c.name == "epmd")
        .is_some_and(|e| !e.pid.is_some_and(|p| process::alive(p, e.start_ticks)))
}

/// Who holds a port the component needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Free,
    /// The old process (or a thread of it, or its group) is still letting go.
    Leaving,
    /// A process of this fleet we did not record: adopt it.
    Ours(i32),
    /// Someone else's.
    Foreign(i32),
    /// Taken, and the holder cannot be seen (another user's, or closing).
    Unseen,
}

/// Classifies who holds `port` for a component whose old pid was `old`.
pub fn holder(port: u16, old: Option<i32>, fleet: &std::path::Path) -> Holder {
    if ready::port_free(port) {
        return Holder::Free;
    }
    match process::port_owner(port) {
        None => Holder::Unseen,
        Some(p) if old.is_some_and(|o| p == o || process::group_of(p) == o) => Holder::Leaving,
        Some(p) if !process::alive(p, None) => Holder::Leaving,
        Some(p) if process::is_ours(p, fleet) => Holder::Ours(p),
        Some(p) => Holder::Foreign(p),
    }
}

/// Waits (polling, with a deadline) until the old process has gone and every
/// port of the component is free. A process of ours found holding a port is
/// returned for adoption; anyone else's is named at once.
fn await_release(ctx: &Ctx, c: &Component) -> Result<Option<i32>> {
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let old_left = c
            .pid
            .is_some_and(|p| process::lingering(p) || process::group_alive(p));
        let holders: Vec<(u16, Holder)> = c
            .ports
            .iter()
            .map(|p| (*p, holder(*p, c.pid, &ctx.state_dir)))
            .collect();
        if let Some((port, Holder::Foreign(pid))) = holders
            .iter()
            .find(|(_, h)| matches!(h, Holder::Foreign(_)))
        {
            bail!(
                "port {port} is held by pid {pid} ({}), not started by this fleet; stop it, or move the fleet with --port-base N",
                process::comm(*pid)
            );
        }
        if let Some((_, Holder::Ours(pid))) =
            holders.iter().find(|(_, h)| matches!(h, Holder::Ours(_)))
        {
            return Ok(Some(*pid));
        }
        if !old_left && holders.iter().all(|(_, h)| *h == Holder::Free) {
            return Ok(None);
        }
        if Instant::now() > deadline {
            let busy: Vec<String> = holders
                .iter()
                .filter(|(_, h)| *h != Holder::Free)
                .map(|(p, h)| format!("{p} ({h:?})"))
                .collect();
            bail!(
                "`{}`: after {RELEASE_DEADLINE:?} the old process {} still {} (ports {})",
                c.name,
                c.pid.unwrap_or_default(),
                if old_left { "lingers" } else { "is gone" },
                busy.join(", ")
            );
        }
        if let Some(p) = c.pid {
            process::reap(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn record(ctx: &Ctx, name: &str, sp: Spawned) -> Result<()> {
    let mut state = load(ctx)?;
    let c = state
        .components
        .iter_mut()
        .find(|c| c.name == name)
        .with_context(|| format!("`{name}` vanished from fleet.json"))?;
    c.pid = Some(sp.pid);
    c.start_ticks = sp.start_ticks;
    state.save(&ctx.state_dir)
}

fn adopt(ctx: &Ctx, name: &str, pid: i32) -> Result<()> {
    record(
        ctx,
        name,
        Spawned {
            pid,
            start_ticks: process::start_ticks(pid),
        },
    )
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
    let client = super::boot::http_client();
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
        "redis" => ready::poll(w, deadline, || native::redis_ping(&e.redis_url)).await?,
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

/// A Vault that just started (in memory, so empty): initialise and unseal
/// it with the CLI's root token, configure the database engine, issue new
/// service tokens, and restart the running services that held the old ones.
/// An adopted Vault that is initialised already is only reconfigured.
async fn configure_vault(ctx: &Ctx) -> Result<(String, Vec<String>)> {
    let client = super::boot::http_client();
    let secrets = Secrets::load_or_create(&ctx.state_dir)?;
    let state = load(ctx)?;
    let addr = state.endpoints.vault_addr.clone();
    if vault::check(&client, &addr).await.is_err() {
        vault::initialize(&client, &addr, &secrets.vault_root_token).await?;
    }
    let deadline = Duration::from_secs(ctx.profile.timeouts.infra_ready_secs);
    let w = Watch {
        what: "vault (OpenBao)",
        pid: None,
        log: None,
    };
    ready::poll(w, deadline, || vault::check(&client, &addr)).await?;
    let v = vault::Vault {
        client: &client,
        addr: &addr,
        token: &secrets.vault_root_token,
    };
    v.configure_database(
        &ctx.profile,
        &format!("127.0.0.1:{}", ctx.profile.ports().postgres),
        &secrets,
    )
    .await
    .context("reconfiguring the new Vault's database engine (is postgres up?)")?;
    let tokens = v.issue_service_tokens(&ctx.profile).await?;
    let mut state = load(ctx)?;
    state.endpoints.service_vault_tokens = tokens;
    state.save(&ctx.state_dir)?;
    // Services hold their token in their environment: the running ones are
    // restarted to get the new one (the dead ones get it when they start).
    let mut restarted = Vec::new();
    for (spec, instance, _) in ctx.profile.instances() {
        if !spec.dynamic_credentials {
            continue;
        }
        let running = state
            .components
            .iter()
            .find(|c| c.name == instance)
            .is_some_and(|c| c.pid.is_some_and(|p| process::alive(p, c.start_ticks)));
        if running {
            tokio::task::block_in_place(|| stop(ctx, &instance, How::Graceful))?;
            Box::pin(start_detailed(ctx, &instance)).await?;
            restarted.push(instance);
        }
    }
    Ok((
        "initialised, unsealed, database engine configured, service tokens issued".into(),
        restarted,
    ))
}

/// Starts every dead component of a recorded fleet, infrastructure first in
/// dependency order, then the services in profile order (`up` on a partly
/// dead fleet). Components of infrastructure we do not run are skipped.
pub async fn start_dead(ctx: &Ctx) -> Result<Vec<Started>> {
    let state = load(ctx)?;
    let mut names: Vec<String> = INFRA_ORDER
        .iter()
        .filter(|n| state.components.iter().any(|c| c.name == **n))
        .map(|n| n.to_string())
        .collect();
    names.extend(
        state
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::Service)
            .map(|c| c.name.clone()),
    );
    if state.components.iter().any(|c| c.name == prometheus::NAME) {
        names.push(prometheus::NAME.into());
    }
    if state.components.iter().any(|c| c.name == supervisor::NAME) {
        names.push(supervisor::NAME.into());
    }
    let mut out = Vec::new();
    for name in names {
        // Re-read each time: a new Vault restarts (and records) services.
        let state = load(ctx)?;
        let c = find(&state, &name)?;
        if c.kind == ComponentKind::Infra
            && state.infra != InfraMode::Native
            && c.name != supervisor::NAME
        {
            continue;
        }
        if c.pid.is_some_and(|p| process::alive(p, c.start_ticks)) {
            continue;
        }
        out.push(
            start_detailed(ctx, &name)
                .await
                .with_context(|| format!("starting `{name}` again"))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn postgres_stops_fast_on_sigint_and_immediate_on_sigquit() {
        assert_eq!(signal("postgres", How::Graceful).unwrap(), Signal::SIGINT);
        assert_eq!(signal("postgres", How::Immediate).unwrap(), Signal::SIGQUIT);
        assert_eq!(signal("redis", How::Graceful).unwrap(), Signal::SIGTERM);
        assert_eq!(signal("catalog-1", How::Crash).unwrap(), Signal::SIGKILL);
        let err = signal("redis", How::Immediate).unwrap_err().to_string();
        assert!(err.contains("only postgres"), "{err}");
    }

    /// Defect b: a process whose leader thread exited while another thread
    /// still holds its listening socket (as a SIGKILLed multi-threaded
    /// server briefly does) counts as dead, yet its port is not free. A
    /// start must see it as still leaving, not spawn into EADDRINUSE.
    #[test]
    fn a_zombie_leader_whose_thread_holds_the_port_is_still_leaving() {
        let dir = tempfile::tempdir().unwrap();
        let probe = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        // The main thread calls the raw exit syscall (not exit_group): the
        // leader becomes a zombie, the listening thread lives on.
        let script = format!(
            "import socket, threading, ctypes, time\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {port})); s.listen()\n\
             threading.Thread(target=lambda: time.sleep(30)).start()\n\
             ctypes.CDLL(None).syscall(60, 0)\n"
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .process_group(0)
            .spawn()
            .expect("python3");
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        while process::alive(pid, None) || ready::port_free(port) {
            assert!(
                Instant::now() < deadline,
                "the leader never became a zombie holding {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!process::alive(pid, None), "the leader counts as dead");
        assert!(process::lingering(pid), "but a thread of it still runs");
        assert!(!ready::port_free(port), "and holds the port");
        assert_ne!(holder(port, Some(pid), dir.path()), Holder::Free);
        assert!(matches!(
            holder(port, Some(pid), dir.path()),
            Holder::Leaving | Holder::Unseen
        ));
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while process::lingering(pid) || !ready::port_free(port) {
            assert!(Instant::now() < deadline, "still held after SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(holder(port, Some(pid), dir.path()), Holder::Free);
    }

    #[test]
    fn a_free_port_has_no_holder_and_a_held_one_is_named_as_ours_or_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        // This test process is not the fleet's: foreign.
        assert_eq!(holder(port, None, dir.path()), Holder::Foreign(me));
        // Recorded as the component's old pid: it is still letting go.
        assert_eq!(holder(port, Some(me), dir.path()), Holder::Leaving);
        drop(l);
        assert_eq!(holder(port, None, dir.path()), Holder::Free);
    }
}
