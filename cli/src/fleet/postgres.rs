//! PostgreSQL 15 as a child process: initdb once, then a postmaster on
//! loopback TCP only (no Unix socket, so a long state path can't break it).
//! As root it runs as the `postgres` user, set with setuid/setgid on the
//! child itself so the pid we hold is the postmaster, not a wrapper.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::unistd::{Uid, User};
use sqlx::Connection;
use std::os::unix::fs::chown;

use super::{Ctx, Secrets};

/// The superuser initdb creates; experiments read ground truth through it.
pub const ADMIN_USER: &str = "storefront";
/// The database every service's schema lives in.
pub const DATABASE: &str = "storefront";

pub fn dir(ctx: &Ctx) -> PathBuf {
    ctx.state_dir.join("postgres")
}

pub fn data_dir(ctx: &Ctx) -> PathBuf {
    dir(ctx).join("data")
}

/// How to reach Postgres as its superuser: ours (native), a container's, or
/// an external server's.
#[derive(Debug, Clone)]
pub struct PgAdmin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl PgAdmin {
    pub fn native(port: u16, secrets: &Secrets) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            user: ADMIN_USER.into(),
            password: secrets.pg_admin_password.clone(),
        }
    }

    /// From `postgres://user:password@host:port/...`.
    pub fn from_url(url: &str) -> Result<Self> {
        let u =
            reqwest::Url::parse(url).with_context(|| format!("not a postgres:// URL: {url}"))?;
        Ok(Self {
            host: u.host_str().context("postgres URL has no host")?.to_owned(),
            port: u.port().unwrap_or(5432),
            user: u.username().to_owned(),
            password: u.password().unwrap_or_default().to_owned(),
        })
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{db}",
            self.user, self.password, self.host, self.port
        )
    }

    /// A URL for another login on the same server.
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{db}",
            self.host, self.port
        )
    }
}

/// The unprivileged user to run as when we are root.
fn run_as() -> Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")?
        .context("running as root, and PostgreSQL refuses root: no `postgres` user exists (apt-get install postgresql-15 creates it)")?;
    Ok(Some(user))
}

fn drop_privileges(cmd: &mut Command, user: &Option<User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        cmd.env("HOME", &u.dir).env("USER", &u.name);
    }
}

/// Every ancestor of the data directory must be traversable by the postgres
/// user. We fix the state directory itself (ours): its group becomes the
/// postgres user's and its mode 0710, so that account may pass through it
/// (to postgres/, its own 0700 directory) and no other local user may even
/// enter it. Above it we only check.
fn check_traversable(ctx: &Ctx, user: &User) -> Result<()> {
    let state = &ctx.state_dir;
    chown(state, None, Some(user.gid.as_raw()))
        .with_context(|| format!("cannot give {} to group postgres", state.display()))?;
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o710))?;
    for anc in state.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(anc) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        let ok = meta.mode() & 0o001 != 0 || meta.uid() == user.uid.as_raw();
        if !ok {
            bail!(
                "PostgreSQL runs as user `postgres`, which cannot enter {} (mode {:o}); \
                 use a state directory it can reach (--state-dir) or `chmod o+x {}`",
                anc.display(),
                meta.mode() & 0o7777,
                anc.display()
            );
        }
    }
    Ok(())
}

/// Runs initdb if the data directory is empty. Returns whether it did.
pub fn ensure_initialized(ctx: &Ctx, bindir: &Path, secrets: &Secrets) -> Result<bool> {
    let data = data_dir(ctx);
    if data.join("PG_VERSION").exists() {
        return Ok(false);
    }
    let user = run_as()?;
    let pgdir = dir(ctx);
    std::fs::create_dir_all(&pgdir)?;
    std::fs::set_permissions(&pgdir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(u) = &user {
        check_traversable(ctx, u)?;
        chown(&pgdir, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
    }
    let pwfile = pgdir.join(".initdb-pw");
    super::state::write_private(&pwfile, secrets.pg_admin_password.as_bytes())?;
    if let Some(u) = &user {
        chown(&pwfile, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
    }
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args([
            "-U",
            ADMIN_USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args([
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ])
        .arg(format!("--pwfile={}", pwfile.display()));
    drop_privileges(&mut cmd, &user);
    let out = cmd.output().context("failed to run initdb")?;
    let _ = std::fs::remove_file(&pwfile);
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&data);
        bail!(
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(true)
}

/// The postmaster command line. As root, lets the postgres account
/// traverse the state directory again (`up` made it 0700).
pub fn command(ctx: &Ctx, bindir: &Path, port: u16) -> Result<Command> {
    let user = run_as()?;
    if let Some(u) = &user {
        check_traversable(ctx, u)?;
    }
    let mut cmd = Command::new(bindir.join("postgres"));
    cmd.arg("-D")
        .arg(data_dir(ctx))
        .arg("-p")
        .arg(port.to_string());
    cmd.args([
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
    ]);
    // Non-admin TCP logins use scram-sha-256 (initdb's --auth-host), so Vault's
    // `VALID UNTIL` on dynamic roles is enforced.
    for (k, v) in &ctx.profile.postgres.settings {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    drop_privileges(&mut cmd, &user);
    Ok(cmd)
}

/// Ready = the admin can log in and run a query.
pub async fn check(url: &str) -> Result<()> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query("SELECT 1").execute(&mut c).await?;
    c.close().await.ok();
    Ok(())
}
