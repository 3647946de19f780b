//! `storefront up`, whoever runs the infrastructure: the infra steps of the
//! provider [`provider`] picks by [`InfraMode`] (native child processes,
//! docker compose, or an external fleet) run beside the services, each
//! service starting as soon as what it needs is ready. On any error
//! everything started is stopped again.

use std::time::Duration;

use anyhow::{Result, bail};
use futures::future::{FutureExt, LocalBoxFuture, try_join_all};

use super::compose::Compose;
use super::external::External;
use super::infra::{Boot, Infra, finish};
use super::native::Native;
use super::profile::{Dependency, ServiceSpec};
use super::progress::Progress;
use super::record::{Gates, Record};
use super::state::{ComponentKind, FleetState, InfraMode};
use super::{Ctx, Secrets, binaries, process, prometheus, ready, services, stop, supervisor};

/// The provider for `mode`; the native one finds its programs first, so a
/// missing one fails before anything starts.
pub fn provider(mode: InfraMode, ctx: &Ctx) -> Result<Box<dyn Infra>> {
    Ok(match mode {
        InfraMode::Native => Box::new(Native::locate(ctx)?),
        InfraMode::Compose => Box::new(Compose),
        InfraMode::External => Box::new(External),
    })
}

/// Ports the fleet will bind on this machine, by owner, for the preflight.
fn ports_to_check(ctx: &Ctx, infra: &dyn Infra, services: bool) -> Vec<(String, u16)> {
    let p = ctx.profile.ports();
    let mut all = infra.ports(ctx);
    if services && runs_prometheus(ctx, infra) {
        all.push((prometheus::NAME.into(), p.prometheus));
    }
    if services {
        all.extend(
            ctx.profile
                .instances()
                .into_iter()
                .map(|(_, n, port)| (n, port)),
        );
    }
    all
}

/// Prometheus joins native fleets whose profile asks for it.
fn runs_prometheus(ctx: &Ctx, infra: &dyn Infra) -> bool {
    infra.hosts_prometheus() && ctx.profile.prometheus
}

/// Checks everything that can be checked before starting anything, so a
/// missing program or a taken port leaves nothing running.
fn preflight(ctx: &Ctx, mode: InfraMode, start_services: bool) -> Result<Box<dyn Infra>> {
    let infra = provider(mode, ctx)?;
    if start_services {
        for (spec, ..) in ctx.profile.instances() {
            binaries::service_binary(spec.binary())?;
        }
    }
    let taken: Vec<String> = ports_to_check(ctx, infra.as_ref(), start_services)
        .into_iter()
        .filter(|(_, port)| !ready::port_free(*port))
        .map(|(name, port)| match process::port_owner(port) {
            Some(pid) => format!(
                "{port} ({name}) held by pid {pid} ({}){}",
                process::comm(pid),
                if process::is_ours(pid, &ctx.state_dir) {
                    ", a process of this fleet's state directory"
                } else {
                    ", not started by this fleet"
                }
            ),
            None => format!("{port} ({name})"),
        })
        .collect();
    if !taken.is_empty() {
        let p = ctx.profile.ports();
        let last = p.services_from + ctx.profile.instances().len() as u16;
        let ephemeral = ready::ephemeral_range()
            .filter(|(lo, hi)| p.postgres <= *hi && last >= *lo)
            .map(|(lo, hi)| format!("; note: they lie in the kernel's ephemeral port range {lo}–{hi}, where outgoing connections can hold a port briefly: prefer a port_base below {lo}"))
            .unwrap_or_default();
        bail!(
            "port(s) already in use on 127.0.0.1: {}; stop whatever holds them, or move the fleet with --port-base N (profile {} uses {}..{last}){ephemeral}",
            taken.join(", "),
            ctx.profile.name,
            p.postgres,
        );
    }
    Ok(infra)
}

fn service_urls(ctx: &Ctx) -> std::collections::BTreeMap<String, Vec<String>> {
    let instances = ctx.profile.instances();
    ctx.profile
        .services
        .iter()
        .map(|s| {
            let urls = instances
                .iter()
                .filter(|(x, ..)| x.name == s.name)
                .map(|(.., p)| services::base_url(*p))
                .collect();
            (s.name.clone(), urls)
        })
        .collect()
}

/// Boots the whole fleet. On error everything started is stopped again.
///
/// With `start_services` false only the infrastructure is readied
/// (`storefront bootstrap`, compose's init container).
pub async fn up(
    ctx: &Ctx,
    progress: &Progress,
    mode: InfraMode,
    start_services: bool,
) -> Result<FleetState> {
    let infra = preflight(ctx, mode, start_services)?;
    ctx.ensure_dirs()?;
    let mut secrets = Secrets::load_or_create(&ctx.state_dir)?;
    if infra.prepare_secrets(ctx, &mut secrets)? {
        secrets.save(&ctx.state_dir)?;
    }
    let mut endpoints = infra.endpoints(ctx, &secrets)?;
    endpoints.services = service_urls(ctx);
    let record = Record::new(
        FleetState {
            profile: ctx.profile.name.clone(),
            infra: mode,
            ports: ctx.profile.ports(),
            lab_endpoints: ctx.profile.lab_endpoints,
            started_at: chrono::Utc::now(),
            ready_at: None,
            components: Vec::new(),
            endpoints,
            compose_project: infra.compose_project(ctx),
        },
        &ctx.state_dir,
    );
    record.update(|_| ())?;

    let client = ready::http_client();
    let gates = Gates::default();
    let b = Boot {
        ctx,
        record: &record,
        gates: &gates,
        progress,
        client: &client,
        deadline: Duration::from_secs(ctx.profile.timeouts.infra_ready_secs),
        start_services,
    };
    let mut all: Vec<LocalBoxFuture<'_, Result<()>>> = infra.start(&b, &mut secrets);
    if start_services && runs_prometheus(ctx, infra.as_ref()) {
        // First, so it binds its port before the fleet's own outgoing
        // connections can take it from the ephemeral range; it never fails
        // the fleet (see prometheus::boot).
        all.insert(0, prometheus::boot(&b).map(Ok).boxed_local());
    }
    if start_services {
        for (spec, instance, port) in ctx.profile.instances() {
            all.push(boot_service(&b, spec, instance, port).boxed_local());
        }
    }
    let outcome = try_join_all(all).await;
    if let Err(e) = outcome {
        let snapshot = record.snapshot();
        stop_everything(ctx, &snapshot);
        infra.stop(ctx, &snapshot, false).ok();
        FleetState::remove(&ctx.state_dir).ok();
        return Err(e.context("`up` failed; everything it had started was stopped"));
    }
    if start_services && ctx.profile.supervises_any() {
        let started = supervisor::spawn(ctx).and_then(|sp| {
            record.spawned(
                supervisor::NAME,
                ComponentKind::Infra,
                sp,
                Vec::new(),
                String::new(),
                &ctx.log_path(supervisor::NAME),
            )
        });
        if let Err(e) = started {
            stop_everything(ctx, &record.snapshot());
            FleetState::remove(&ctx.state_dir).ok();
            return Err(e.context(
                "`up` could not start the supervisor; everything it had started was stopped",
            ));
        }
    }
    record.update(|s| s.ready_at = Some(chrono::Utc::now()))?;
    Ok(record.snapshot())
}

/// Stops every process recorded in `snapshot` (a failed `up`'s cleanup).
fn stop_everything(ctx: &Ctx, snapshot: &FleetState) {
    stop::stop_all(
        snapshot,
        &ctx.state_dir,
        Duration::from_secs(ctx.profile.timeouts.stop_secs),
    );
}

async fn boot_service(b: &Boot<'_>, spec: ServiceSpec, instance: String, port: u16) -> Result<()> {
    let step = b.progress.component(&instance);
    let run = async {
        step.stage("waiting for its dependencies");
        // Migrations run in the Postgres step; every service waits for them.
        b.gates.wait(Dependency::Postgres).await;
        for d in &spec.needs {
            b.gates.wait(*d).await;
        }
        step.stage("starting");
        let endpoints = b.record.snapshot().endpoints;
        let (sp, log) = services::spawn(b.ctx, &spec, &instance, port, &endpoints)?;
        let url = services::base_url(port);
        b.record
            .spawned(&instance, ComponentKind::Service, sp, vec![port], url, &log)?;
        let took = services::wait_ready(b.ctx, b.client, &instance, port, sp).await?;
        b.record.ready(&instance, took, None)?;
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetProfile;

    fn ctx() -> Ctx {
        let profile = FleetProfile::parse(
            "port_base = 40000\nprometheus = true\n[[services]]\nname = \"catalog\"\n",
        )
        .expect("a valid profile");
        Ctx {
            root: ".".into(),
            state_dir: "/nonexistent".into(),
            tools_dir: "/nonexistent".into(),
            profile,
        }
    }

    fn names(ports: &[(String, u16)]) -> Vec<&str> {
        ports.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn an_external_fleet_binds_only_our_services_and_runs_no_prometheus() {
        let ctx = ctx();
        let ports = ports_to_check(&ctx, &External, true);
        assert_eq!(names(&ports), ["catalog"], "{ports:?}");
        assert!(ports_to_check(&ctx, &External, false).is_empty());
    }

    #[test]
    fn a_compose_fleet_binds_its_published_ports_and_prometheus_stays_native_only() {
        let ctx = ctx();
        let ports = ports_to_check(&ctx, &Compose, true);
        assert_eq!(
            names(&ports),
            ["postgres", "redis", "rabbitmq (AMQP)", "vault", "catalog"],
            "{ports:?}"
        );
        assert!(!runs_prometheus(&ctx, &Compose));
        assert_eq!(
            Compose.compose_project(&ctx).as_deref(),
            Some("storefront-40000")
        );
        assert_eq!(External.compose_project(&ctx), None);
    }
}
