//! `storefront up`, whoever runs the infrastructure: the infra step of the
//! chosen provider (native child processes, docker compose, or an external
//! fleet) runs beside the services, each service starting as soon as what it
//! needs is ready. On any error everything started is stopped again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::future::{FutureExt, LocalBoxFuture, try_join_all};
use tokio::sync::watch;

use super::process::Spawned;
use super::profile::{Dependency, ServiceSpec};
use super::progress::{Progress, Step};
use super::ready;
use super::state::{Component, ComponentKind, Endpoints, FleetState, InfraMode};
use super::{Ctx, Secrets, binaries, external, native, services};

/// Shared, persisted record of what has been started so far.
#[derive(Clone)]
pub struct Record {
    state: Arc<Mutex<FleetState>>,
    dir: std::path::PathBuf,
}

impl Record {
    pub fn update(&self, f: impl FnOnce(&mut FleetState)) -> Result<()> {
        let mut s = self.state.lock().expect("not poisoned");
        f(&mut s);
        s.save(&self.dir)
    }

    pub fn snapshot(&self) -> FleetState {
        self.state.lock().expect("not poisoned").clone()
    }

    pub fn spawned(
        &self,
        name: &str,
        kind: ComponentKind,
        sp: Spawned,
        ports: Vec<u16>,
        url: String,
        log: &std::path::Path,
    ) -> Result<()> {
        self.update(|s| {
            s.upsert(Component {
                name: name.into(),
                kind,
                pid: Some(sp.pid),
                start_ticks: sp.start_ticks,
                ports,
                url,
                log: Some(log.to_path_buf()),
                boot_ms: None,
                detail: None,
            })
        })
    }

    /// An endpoint we use but did not start (external or compose infra).
    pub fn known(
        &self,
        name: &str,
        url: String,
        took: Duration,
        detail: Option<String>,
    ) -> Result<()> {
        self.update(|s| {
            s.upsert(Component {
                name: name.into(),
                kind: ComponentKind::Infra,
                pid: None,
                start_ticks: None,
                ports: Vec::new(),
                url,
                log: None,
                boot_ms: Some(took.as_millis() as u64),
                detail,
            })
        })
    }

    pub fn ready(&self, name: &str, took: Duration, detail: Option<String>) -> Result<()> {
        self.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.name == name) {
                c.boot_ms = Some(took.as_millis() as u64);
                c.detail = detail;
            }
        })
    }
}

/// One signal per dependency: flips to `true` once it is usable.
pub struct Gates {
    tx: std::collections::HashMap<Dependency, watch::Sender<bool>>,
}

impl Gates {
    fn new() -> Self {
        let deps = [
            Dependency::Postgres,
            Dependency::Redis,
            Dependency::Rabbitmq,
            Dependency::Vault,
        ];
        Self {
            tx: deps
                .into_iter()
                .map(|d| (d, watch::channel(false).0))
                .collect(),
        }
    }

    pub fn open(&self, d: Dependency) {
        self.tx[&d].send_replace(true);
    }

    pub async fn wait(&self, d: Dependency) {
        let mut rx = self.tx[&d].subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// What every infra step gets.
pub struct Boot<'a> {
    pub ctx: &'a Ctx,
    pub record: &'a Record,
    pub gates: &'a Gates,
    pub progress: &'a Progress,
    pub client: &'a reqwest::Client,
    pub deadline: Duration,
    /// Services will run (`up`), so they need their Vault tokens; `bootstrap`
    /// only readies the infra and keeps no record to hand tokens on from.
    pub start_services: bool,
}

/// Ports the fleet will bind on this machine, by owner, for the preflight.
fn ports_to_check(ctx: &Ctx, mode: InfraMode, services: bool) -> Vec<(String, u16)> {
    let p = ctx.profile.ports();
    let mut all: Vec<(String, u16)> = match mode {
        InfraMode::Native => vec![
            ("postgres".into(), p.postgres),
            ("redis".into(), p.redis),
            ("rabbitmq (AMQP)".into(), p.amqp),
            ("rabbitmq (distribution)".into(), p.rabbit_dist),
            ("epmd".into(), p.epmd),
            ("vault".into(), p.vault),
        ],
        InfraMode::Compose => vec![
            ("postgres".into(), p.postgres),
            ("redis".into(), p.redis),
            ("rabbitmq (AMQP)".into(), p.amqp),
            ("vault".into(), p.vault),
        ],
        InfraMode::External => Vec::new(),
    };
    if services && runs_prometheus(ctx, mode) {
        all.push((super::prometheus::NAME.into(), p.prometheus));
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
fn runs_prometheus(ctx: &Ctx, mode: InfraMode) -> bool {
    mode == InfraMode::Native && ctx.profile.prometheus
}

/// Checks everything that can be checked before starting anything, so a
/// missing program or a taken port leaves nothing running.
fn preflight(
    ctx: &Ctx,
    mode: InfraMode,
    start_services: bool,
) -> Result<Option<binaries::Binaries>> {
    let bins = match mode {
        InfraMode::Native => Some(binaries::Binaries::locate(&ctx.tools_dir)?),
        _ => None,
    };
    if start_services {
        for (spec, ..) in ctx.profile.instances() {
            binaries::service_binary(spec.binary())?;
        }
    }
    let taken: Vec<String> = ports_to_check(ctx, mode, start_services)
        .into_iter()
        .filter(|(_, port)| !ready::port_free(*port))
        .map(|(name, port)| match super::process::port_owner(port) {
            Some(pid) => format!(
                "{port} ({name}) held by pid {pid} ({}){}",
                super::process::comm(pid),
                if super::process::is_ours(pid, &ctx.state_dir) {
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
    Ok(bins)
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
    let bins = preflight(ctx, mode, start_services)?;
    ctx.ensure_dirs()?;
    let mut secrets = Secrets::load_or_create(&ctx.state_dir)?;
    if mode == InfraMode::Native && native::ensure_redis_passwords(ctx, &mut secrets) {
        secrets.save(&ctx.state_dir)?;
    }
    let mut endpoints = match mode {
        InfraMode::Native => native::endpoints(ctx, &secrets),
        InfraMode::Compose => external::compose_endpoints(ctx, &secrets),
        InfraMode::External => external::env_endpoints()?,
    };
    endpoints.services = service_urls(ctx);
    let record = Record {
        state: Arc::new(Mutex::new(FleetState {
            profile: ctx.profile.name.clone(),
            infra: mode,
            ports: ctx.profile.ports(),
            lab_endpoints: ctx.profile.lab_endpoints,
            started_at: chrono::Utc::now(),
            ready_at: None,
            components: Vec::new(),
            endpoints,
            compose_project: (mode == InfraMode::Compose).then(|| external::compose_project(ctx)),
        })),
        dir: ctx.state_dir.clone(),
    };
    record.update(|_| ())?;

    let client = http_client();
    let gates = Gates::new();
    let secrets_ro = secrets.clone();
    let b = Boot {
        ctx,
        record: &record,
        gates: &gates,
        progress,
        client: &client,
        deadline: Duration::from_secs(ctx.profile.timeouts.infra_ready_secs),
        start_services,
    };
    let mut all: Vec<LocalBoxFuture<'_, Result<()>>> = match &bins {
        Some(bins) => native::infra(&b, bins, &mut secrets, &secrets_ro),
        None => vec![external::infra(&b, mode, &mut secrets).boxed_local()],
    };
    if start_services && runs_prometheus(ctx, mode) {
        // First, so it binds its port before the fleet's own outgoing
        // connections can take it from the ephemeral range; it never fails
        // the fleet (see prometheus::boot).
        all.insert(0, super::prometheus::boot(&b).map(Ok).boxed_local());
    }
    if start_services {
        for (spec, instance, port) in ctx.profile.instances() {
            all.push(boot_service(&b, spec, instance, port).boxed_local());
        }
    }
    let outcome = try_join_all(all).await;
    if let Err(e) = outcome {
        let snapshot = record.snapshot();
        super::stop::stop_all(
            &snapshot,
            &ctx.state_dir,
            Duration::from_secs(ctx.profile.timeouts.stop_secs),
        );
        external::compose_down(&snapshot, ctx, false).ok();
        FleetState::remove(&ctx.state_dir).ok();
        return Err(e.context("`up` failed; everything it had started was stopped"));
    }
    if start_services && ctx.profile.supervises_any() {
        let started = super::supervisor::spawn(ctx).and_then(|sp| {
            record.spawned(
                super::supervisor::NAME,
                ComponentKind::Infra,
                sp,
                Vec::new(),
                String::new(),
                &ctx.log_path(super::supervisor::NAME),
            )
        });
        if let Err(e) = started {
            let snapshot = record.snapshot();
            super::stop::stop_all(
                &snapshot,
                &ctx.state_dir,
                Duration::from_secs(ctx.profile.timeouts.stop_secs),
            );
            FleetState::remove(&ctx.state_dir).ok();
            return Err(e.context(
                "`up` could not start the supervisor; everything it had started was stopped",
            ));
        }
    }
    record.update(|s| s.ready_at = Some(chrono::Utc::now()))?;
    Ok(record.snapshot())
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("static client config")
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

pub fn finish(step: &Step, r: Result<Duration>) -> Result<()> {
    match r {
        Ok(d) => {
            step.done(&format!("ready in {:.1}s", d.as_secs_f64()));
            Ok(())
        }
        Err(e) => {
            step.failed(format!("{e:#}").lines().next().unwrap_or_default());
            Err(e)
        }
    }
}

/// Postgres is reachable: create roles and schemas, run migrations, record
/// the services' URLs, open the gate. Shared by every provider.
pub async fn prepare_postgres(
    b: &Boot<'_>,
    admin: &super::postgres::PgAdmin,
    secrets: &mut Secrets,
) -> Result<String> {
    let urls = super::bootstrap::database(admin, &b.ctx.profile, secrets).await?;
    secrets.save(&b.ctx.state_dir)?;
    let mut applied = 0;
    for svc in &b.ctx.profile.services {
        applied += super::bootstrap::migrate(&admin.url(super::postgres::DATABASE), svc)
            .await
            .with_context(|| format!("migrating {}", svc.name))?;
    }
    b.record
        .update(|s| s.endpoints.service_database_urls = urls)?;
    Ok(format!("{applied} migration(s) applied"))
}

/// Endpoints skeleton shared by providers.
pub fn endpoints(
    postgres_admin_url: String,
    redis_url: String,
    amqp_url: String,
    vault_addr: String,
    vault_token: String,
) -> Endpoints {
    Endpoints {
        postgres_admin_url,
        redis_url,
        amqp_url,
        vault_addr,
        vault_token,
        ..Default::default()
    }
}
