//! `storefront up` for the native provider: infrastructure as supervised
//! child processes, then the services, each as soon as what it needs is
//! ready. RabbitMQ's boot is the longest and CPU-bound, so it starts first
//! and everything else runs beside it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::future::{FutureExt, LocalBoxFuture, try_join_all};
use tokio::sync::watch;

use super::binaries::{self, Binaries};
use super::bootstrap;
use super::postgres::{self, PgAdmin};
use super::process::{self, Spawned};
use super::profile::Dependency;
use super::progress::Progress;
use super::ready::{self, Watch};
use super::state::{Component, ComponentKind, Endpoints, FleetState, InfraMode};
use super::{Ctx, Secrets, rabbit, services, vault};

/// Shared, persisted record of what has been started so far.
#[derive(Clone)]
struct Record {
    state: Arc<Mutex<FleetState>>,
    dir: std::path::PathBuf,
}

impl Record {
    fn update(&self, f: impl FnOnce(&mut FleetState)) -> Result<()> {
        let mut s = self.state.lock().expect("not poisoned");
        f(&mut s);
        s.save(&self.dir)
    }

    fn snapshot(&self) -> FleetState {
        self.state.lock().expect("not poisoned").clone()
    }

    fn spawned(
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

    fn ready(&self, name: &str, took: Duration, detail: Option<String>) -> Result<()> {
        self.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.name == name) {
                c.boot_ms = Some(took.as_millis() as u64);
                c.detail = detail;
            }
        })
    }
}

/// One signal per dependency: flips to `true` once it is usable.
struct Gates {
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

    fn open(&self, d: Dependency) {
        self.tx[&d].send_replace(true);
    }

    async fn wait(&self, d: Dependency) {
        let mut rx = self.tx[&d].subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Checks everything that can be checked before starting anything, so a
/// missing program or a taken port leaves nothing running.
pub fn preflight(ctx: &Ctx) -> Result<Binaries> {
    let bins = Binaries::locate(&ctx.tools_dir)?;
    for (spec, ..) in ctx.profile.instances() {
        binaries::service_binary(spec.binary())?;
    }
    let p = ctx.profile.ports();
    let mut taken = Vec::new();
    let mut all = vec![
        ("postgres", p.postgres),
        ("redis", p.redis),
        ("rabbitmq (AMQP)", p.amqp),
        ("rabbitmq (distribution)", p.rabbit_dist),
        ("epmd", p.epmd),
        ("vault", p.vault),
    ];
    let instances = ctx.profile.instances();
    all.extend(instances.iter().map(|(_, n, port)| (n.as_str(), *port)));
    for (name, port) in all {
        if !ready::port_free(port) {
            taken.push(format!("{port} ({name})"));
        }
    }
    if !taken.is_empty() {
        bail!(
            "port(s) already in use on 127.0.0.1: {}; stop whatever holds them, or move the fleet with --port-base N (profile {} uses {}..{})",
            taken.join(", "),
            ctx.profile.name,
            p.postgres,
            p.services_from + instances.len() as u16
        );
    }
    Ok(bins)
}

/// Boots the whole fleet. On error everything started is stopped again.
pub async fn up(ctx: &Ctx, progress: &Progress) -> Result<FleetState> {
    let bins = preflight(ctx)?;
    ctx.ensure_dirs()?;
    let mut secrets = Secrets::load_or_create(&ctx.state_dir)?;
    let ports = ctx.profile.ports();
    let endpoints = Endpoints {
        postgres_admin_url: PgAdmin::native(ports.postgres, &secrets).url(postgres::DATABASE),
        redis_url: format!("redis://127.0.0.1:{}/", ports.redis),
        amqp_url: rabbit::amqp_url(&ports),
        vault_addr: format!("http://127.0.0.1:{}", ports.vault),
        vault_token: secrets.vault_root_token.clone(),
        services: ctx
            .profile
            .services
            .iter()
            .map(|s| {
                let urls = ctx
                    .profile
                    .instances()
                    .iter()
                    .filter(|(x, ..)| x.name == s.name)
                    .map(|(.., p)| services::base_url(*p))
                    .collect();
                (s.name.clone(), urls)
            })
            .collect(),
        service_database_urls: Default::default(),
    };
    let record = Record {
        state: Arc::new(Mutex::new(FleetState {
            profile: ctx.profile.name.clone(),
            infra: InfraMode::Native,
            ports,
            lab_endpoints: ctx.profile.lab_endpoints,
            started_at: chrono::Utc::now(),
            ready_at: None,
            components: Vec::new(),
            endpoints,
        })),
        dir: ctx.state_dir.clone(),
    };
    record.update(|_| ())?;

    let client = http_client();
    let gates = Gates::new();
    let infra_deadline = Duration::from_secs(ctx.profile.timeouts.infra_ready_secs);
    let secrets_ro = secrets.clone();

    let rabbit_f = boot_rabbit(
        ctx,
        &bins,
        &record,
        &gates,
        progress,
        infra_deadline,
        &secrets_ro,
    )
    .boxed_local();
    let redis_f = boot_redis(ctx, &bins, &record, &gates, progress, infra_deadline).boxed_local();
    let pg_f = boot_postgres(
        ctx,
        &bins,
        &record,
        &gates,
        progress,
        infra_deadline,
        &mut secrets,
    )
    .boxed_local();
    let vault_f = boot_vault(
        ctx,
        &bins,
        &record,
        &gates,
        progress,
        infra_deadline,
        &client,
        &secrets_ro,
    )
    .boxed_local();
    let mut all: Vec<LocalBoxFuture<'_, Result<()>>> = vec![rabbit_f, redis_f, pg_f, vault_f];
    for (spec, instance, port) in ctx.profile.instances() {
        all.push(
            boot_service(
                ctx, &record, &gates, progress, &client, spec, instance, port,
            )
            .boxed_local(),
        );
    }
    let outcome = try_join_all(all).await;
    if let Err(e) = outcome {
        let snapshot = record.snapshot();
        super::stop::stop_all(
            &snapshot,
            &ctx.state_dir,
            Duration::from_secs(ctx.profile.timeouts.stop_secs),
        );
        FleetState::remove(&ctx.state_dir).ok();
        return Err(e.context("`up` failed; everything it had started was stopped"));
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

#[allow(clippy::too_many_arguments)]
async fn boot_rabbit(
    ctx: &Ctx,
    bins: &Binaries,
    record: &Record,
    gates: &Gates,
    progress: &Progress,
    deadline: Duration,
    secrets: &Secrets,
) -> Result<()> {
    let ports = ctx.profile.ports();
    let step = progress.component("rabbitmq");
    let run = async {
        step.stage("starting epmd");
        let log = ctx.log_path("epmd");
        let t = Instant::now();
        let sp = process::spawn(
            rabbit::epmd_command(&bins.epmd, &ports),
            &log,
            &ctx.state_dir,
        )?;
        record.spawned(
            "epmd",
            ComponentKind::Infra,
            sp,
            vec![ports.epmd],
            format!("epmd://127.0.0.1:{}", ports.epmd),
            &log,
        )?;
        let w = Watch {
            what: "epmd",
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        ready::poll(w, deadline, || async {
            ready::port_listening(ports.epmd)
                .then_some(())
                .context("not listening")
        })
        .await?;
        record.ready("epmd", t.elapsed(), None)?;

        step.stage("booting node");
        let log = ctx.log_path("rabbitmq");
        let sp = process::spawn(
            rabbit::command(&bins.rabbitmq_server, &ctx.state_dir, &ports, secrets)?,
            &log,
            &ctx.state_dir,
        )?;
        record.spawned(
            "rabbitmq",
            ComponentKind::Infra,
            sp,
            vec![ports.amqp, ports.rabbit_dist],
            rabbit::amqp_url(&ports).replace("guest:guest@", ""),
            &log,
        )?;
        let w = Watch {
            what: "rabbitmq",
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        let took = ready::poll(w, deadline, || rabbit::check(ports.amqp)).await?;
        record.ready(
            "rabbitmq",
            took,
            Some(format!("node {}", rabbit::node_name(&ports))),
        )?;
        gates.open(Dependency::Rabbitmq);
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

async fn boot_redis(
    ctx: &Ctx,
    bins: &Binaries,
    record: &Record,
    gates: &Gates,
    progress: &Progress,
    deadline: Duration,
) -> Result<()> {
    let port = ctx.profile.ports().redis;
    let step = progress.component("redis");
    let run = async {
        let dir = ctx.state_dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let mut cmd = std::process::Command::new(&bins.redis_server);
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "yes", "--dir"])
        .arg(&dir);
        let log = ctx.log_path("redis");
        let sp = process::spawn(cmd, &log, &ctx.state_dir)?;
        let url = format!("redis://127.0.0.1:{port}/");
        record.spawned(
            "redis",
            ComponentKind::Infra,
            sp,
            vec![port],
            url.clone(),
            &log,
        )?;
        let w = Watch {
            what: "redis",
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        let took = ready::poll(w, deadline, || redis_ping(&url)).await?;
        record.ready("redis", took, None)?;
        gates.open(Dependency::Redis);
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

pub async fn redis_ping(url: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let pong: String = redis::cmd("PING").query_async(&mut con).await?;
    if pong == "PONG" {
        Ok(())
    } else {
        bail!("PING answered {pong}")
    }
}

async fn boot_postgres(
    ctx: &Ctx,
    bins: &Binaries,
    record: &Record,
    gates: &Gates,
    progress: &Progress,
    deadline: Duration,
    secrets: &mut Secrets,
) -> Result<()> {
    let port = ctx.profile.ports().postgres;
    let step = progress.component("postgres");
    let run = async {
        let mut notes = Vec::new();
        let t = Instant::now();
        step.stage("initdb");
        let (ctx2, bindir, s2) = (ctx.clone(), bins.pg_bindir.clone(), secrets.clone());
        let fresh =
            tokio::task::spawn_blocking(move || postgres::ensure_initialized(&ctx2, &bindir, &s2))
                .await??;
        if fresh {
            notes.push(format!("initdb {:.1}s", t.elapsed().as_secs_f64()));
        }
        step.stage("starting");
        let log = ctx.log_path("postgres");
        let t_spawn = Instant::now();
        let sp = process::spawn(
            postgres::command(ctx, &bins.pg_bindir, port)?,
            &log,
            &ctx.state_dir,
        )?;
        let admin = PgAdmin::native(port, secrets);
        record.spawned(
            "postgres",
            ComponentKind::Infra,
            sp,
            vec![port],
            format!("postgres://127.0.0.1:{port}/{}", postgres::DATABASE),
            &log,
        )?;
        let w = Watch {
            what: "postgres",
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        let url = admin.url("postgres");
        ready::poll(w, deadline, || postgres::check(&url)).await?;
        notes.push(format!("start {:.1}s", t_spawn.elapsed().as_secs_f64()));

        step.stage("bootstrap + migrations");
        let urls = bootstrap::database(&admin, &ctx.profile, secrets).await?;
        secrets.save(&ctx.state_dir)?;
        let mut applied = 0;
        for svc in &ctx.profile.services {
            applied += bootstrap::migrate(&admin.url(postgres::DATABASE), svc).await?;
        }
        notes.push(format!("{applied} migration(s) applied"));
        record.update(|s| s.endpoints.service_database_urls = urls)?;
        let took = t.elapsed();
        record.ready("postgres", took, Some(notes.join(", ")))?;
        gates.open(Dependency::Postgres);
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

#[allow(clippy::too_many_arguments)]
async fn boot_vault(
    ctx: &Ctx,
    bins: &Binaries,
    record: &Record,
    gates: &Gates,
    progress: &Progress,
    deadline: Duration,
    client: &reqwest::Client,
    secrets: &Secrets,
) -> Result<()> {
    let ports = ctx.profile.ports();
    let step = progress.component("vault");
    let run = async {
        std::fs::create_dir_all(ctx.state_dir.join("vault"))?;
        let addr = format!("http://127.0.0.1:{}", ports.vault);
        let log = ctx.log_path("vault");
        let t = Instant::now();
        let sp = process::spawn(
            vault::command(
                &bins.bao,
                &ctx.state_dir,
                ports.vault,
                &secrets.vault_root_token,
            ),
            &log,
            &ctx.state_dir,
        )?;
        record.spawned(
            "vault",
            ComponentKind::Infra,
            sp,
            vec![ports.vault],
            addr.clone(),
            &log,
        )?;
        let w = Watch {
            what: "vault (OpenBao)",
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        ready::poll(w, deadline, || vault::check(client, &addr)).await?;
        step.stage("waiting for postgres");
        gates.wait(Dependency::Postgres).await;
        step.stage("database secrets engine");
        let v = vault::Vault {
            client,
            addr: &addr,
            token: &secrets.vault_root_token,
        };
        v.configure_database(
            &ctx.profile,
            &format!("127.0.0.1:{}", ports.postgres),
            secrets,
        )
        .await?;
        let took = t.elapsed();
        record.ready("vault", took, Some("database engine configured".into()))?;
        gates.open(Dependency::Vault);
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

#[allow(clippy::too_many_arguments)]
async fn boot_service(
    ctx: &Ctx,
    record: &Record,
    gates: &Gates,
    progress: &Progress,
    client: &reqwest::Client,
    spec: super::profile::ServiceSpec,
    instance: String,
    port: u16,
) -> Result<()> {
    let step = progress.component(&instance);
    let run = async {
        step.stage("waiting for its dependencies");
        // Migrations run in the Postgres step; every service waits for them.
        gates.wait(Dependency::Postgres).await;
        for d in &spec.needs {
            gates.wait(*d).await;
        }
        step.stage("starting");
        let binary = binaries::service_binary(spec.binary())?;
        let endpoints = record.snapshot().endpoints;
        let cmd = services::command(
            &binary,
            &spec,
            &instance,
            port,
            &endpoints,
            ctx.profile.lab_endpoints,
        );
        let log = ctx.log_path(&instance);
        let sp = process::spawn(cmd, &log, &ctx.state_dir)?;
        let url = services::base_url(port);
        record.spawned(
            &instance,
            ComponentKind::Service,
            sp,
            vec![port],
            url.clone(),
            &log,
        )?;
        let w = Watch {
            what: &instance,
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        let ready_url = format!("{url}/ready");
        let deadline = Duration::from_secs(ctx.profile.timeouts.service_ready_secs);
        let took = ready::poll(w, deadline, || ready::http_ok(client, &ready_url)).await?;
        record.ready(&instance, took, None)?;
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

fn finish(step: &super::progress::Step, r: Result<Duration>) -> Result<()> {
    match r {
        Ok(d) => {
            step.done(&format!("ready in {:.1}s", d.as_secs_f64()));
            Ok(())
        }
        Err(e) => {
            step.failed(
                &format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
            Err(e)
        }
    }
}
