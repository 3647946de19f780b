//! The native provider: infrastructure as supervised child processes on
//! loopback. RabbitMQ's boot is the longest and CPU-bound, so it starts
//! first and everything else runs beside it.

use std::time::Instant;

use anyhow::{Context, Result};
use futures::future::{FutureExt, LocalBoxFuture};

use super::binaries::Binaries;
use super::infra::{self, Boot, Infra, finish};
use super::postgres::{self, PgAdmin};
use super::process;
use super::profile::Dependency;
use super::ready::{self, Watch};
use super::state::{ComponentKind, Endpoints};
use super::{Ctx, Secrets, rabbit, redis_acl, vault};

/// Infrastructure we run ourselves, from the programs found at preflight.
pub struct Native {
    bins: Binaries,
}

impl Native {
    /// Finds the programs it runs (postgres, redis-server, rabbitmq, bao),
    /// failing with what to install before anything starts.
    pub fn locate(ctx: &Ctx) -> Result<Self> {
        Ok(Self {
            bins: Binaries::locate(&ctx.tools_dir)?,
        })
    }
}

impl Infra for Native {
    fn ports(&self, ctx: &Ctx) -> Vec<(String, u16)> {
        let p = ctx.profile.ports();
        vec![
            ("postgres".into(), p.postgres),
            ("redis".into(), p.redis),
            ("rabbitmq (AMQP)".into(), p.amqp),
            ("rabbitmq (distribution)".into(), p.rabbit_dist),
            ("epmd".into(), p.epmd),
            ("vault".into(), p.vault),
        ]
    }

    /// Every Redis user of the profile gets a password.
    fn prepare_secrets(&self, ctx: &Ctx, secrets: &mut Secrets) -> Result<bool> {
        let users = redis_acl::service_users(&ctx.profile);
        let names =
            std::iter::once(redis_acl::ADMIN_USER).chain(users.iter().map(|u| u.name.as_str()));
        Ok(secrets.ensure_redis_passwords(names))
    }

    fn endpoints(&self, ctx: &Ctx, secrets: &Secrets) -> Result<Endpoints> {
        let ports = ctx.profile.ports();
        let mut e = infra::endpoints(
            PgAdmin::native(ports.postgres, secrets).url(postgres::DATABASE),
            redis_acl::url(
                redis_acl::ADMIN_USER,
                &secrets.redis_password(redis_acl::ADMIN_USER),
                ports.redis,
            ),
            rabbit::amqp_url(&ports),
            format!("http://127.0.0.1:{}", ports.vault),
            secrets.vault_root_token.clone(),
        );
        e.service_redis_urls =
            redis_acl::service_urls(&ctx.profile, ports.redis, |u| secrets.redis_password(u));
        Ok(e)
    }

    fn hosts_prometheus(&self) -> bool {
        true
    }

    /// The four infra steps, to run concurrently. Postgres's bootstrap
    /// writes new service passwords into `secrets`; the others read a copy
    /// taken before it starts.
    fn start<'a>(
        &'a self,
        b: &'a Boot<'a>,
        secrets: &'a mut Secrets,
    ) -> Vec<LocalBoxFuture<'a, Result<()>>> {
        let bins = &self.bins;
        let ro = secrets.clone();
        vec![
            boot_rabbit(b, bins, ro.clone()).boxed_local(),
            boot_redis(b, bins, ro.clone()).boxed_local(),
            boot_postgres(b, bins, secrets).boxed_local(),
            boot_vault(b, bins, ro).boxed_local(),
        ]
    }
}

async fn boot_rabbit(b: &Boot<'_>, bins: &Binaries, secrets: Secrets) -> Result<()> {
    let Boot {
        ctx,
        record,
        gates,
        progress,
        deadline,
        ..
    } = *b;
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
            rabbit::command(&bins.rabbitmq_server, &ctx.state_dir, &ports, &secrets)?,
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
        let beam = rabbit_beam(sp);
        record.update(|s| {
            if let Some(c) = s.components.iter_mut().find(|c| c.name == "rabbitmq") {
                c.pid = Some(beam.pid);
                c.start_ticks = beam.start_ticks;
            }
        })?;
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

async fn boot_redis(b: &Boot<'_>, bins: &Binaries, secrets: Secrets) -> Result<()> {
    let Boot {
        ctx,
        record,
        gates,
        progress,
        deadline,
        ..
    } = *b;
    let port = ctx.profile.ports().redis;
    let step = progress.component("redis");
    let run = async {
        let cmd = redis_command(ctx, bins, &secrets)?;
        let log = ctx.log_path("redis");
        let sp = process::spawn(cmd, &log, &ctx.state_dir)?;
        let url = redis_acl::url(
            redis_acl::ADMIN_USER,
            &secrets.redis_password(redis_acl::ADMIN_USER),
            port,
        );
        record.spawned(
            "redis",
            ComponentKind::Infra,
            sp,
            vec![port],
            format!("redis://127.0.0.1:{port}/"),
            &log,
        )?;
        let w = Watch {
            what: "redis",
            pid: Some((sp.pid, sp.start_ticks)),
            log: Some(&log),
        };
        let took = ready::poll(w, deadline, || redis_acl::ping(&url)).await?;
        record.ready("redis", took, None)?;
        gates.open(Dependency::Redis);
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

/// The redis-server command: loopback only, nothing saved, its ACL users
/// and passwords in a file (0600) under `<state>/redis`, not on argv.
pub fn redis_command(
    ctx: &Ctx,
    bins: &Binaries,
    secrets: &Secrets,
) -> Result<std::process::Command> {
    let port = ctx.profile.ports().redis;
    let dir = ctx.state_dir.join("redis");
    super::private_dir(&dir)?;
    let acl = redis_acl::acl_path(&dir);
    redis_acl::write(
        &acl,
        &redis_acl::acl_file(&redis_acl::service_users(&ctx.profile), |u| {
            secrets.redis_password(u)
        }),
    )?;
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
    .arg(&dir)
    .arg("--aclfile")
    .arg(&acl);
    Ok(cmd)
}

/// RabbitMQ's server process: the node script is a /bin/sh wrapper that
/// runs `erl` as a child and waits, so the pid `spawn` returns is the
/// shell's. Killing that leaves beam.smp serving; the pid to record (and
/// to probe for `status`) is beam.smp's, found in the wrapper's group.
pub fn rabbit_beam(sp: process::Spawned) -> process::Spawned {
    process::group_members(sp.pid)
        .into_iter()
        .find(|p| process::comm(*p) == "beam.smp")
        .map(|pid| process::Spawned {
            pid,
            start_ticks: process::start_ticks(pid),
        })
        .unwrap_or(sp)
}

async fn boot_postgres(b: &Boot<'_>, bins: &Binaries, secrets: &mut Secrets) -> Result<()> {
    let Boot {
        ctx,
        record,
        gates,
        progress,
        deadline,
        ..
    } = *b;
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
        notes.push(infra::prepare_postgres(b, &admin, secrets).await?);
        let took = t.elapsed();
        record.ready("postgres", took, Some(notes.join(", ")))?;
        gates.open(Dependency::Postgres);
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}

async fn boot_vault(b: &Boot<'_>, bins: &Binaries, secrets: Secrets) -> Result<()> {
    let Boot {
        ctx,
        record,
        gates,
        progress,
        deadline,
        client,
        ..
    } = *b;
    let ports = ctx.profile.ports();
    let step = progress.component("vault");
    let run = async {
        let addr = format!("http://127.0.0.1:{}", ports.vault);
        let log = ctx.log_path("vault");
        let t = Instant::now();
        let sp = process::spawn(
            vault::command(&bins.bao, &ctx.state_dir, ports.vault)?,
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
        ready::poll(w, deadline, || vault::check_listening(client, &addr)).await?;
        step.stage("init + unseal");
        vault::initialize(client, &addr, &secrets.vault_root_token).await?;
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
            &secrets,
        )
        .await?;
        step.stage("service tokens");
        let tokens = v.issue_service_tokens(&ctx.profile).await?;
        record.update(|s| s.endpoints.service_vault_tokens = tokens)?;
        let took = t.elapsed();
        record.ready(
            "vault",
            took,
            Some("database engine configured, service tokens issued".into()),
        )?;
        gates.open(Dependency::Vault);
        anyhow::Ok(took)
    };
    finish(&step, run.await)
}
