//! The fleet supervisor: boots infrastructure and services, records what it
//! started, and stops it again. `native` runs everything as child processes
//! on loopback; `compose` and `external` only differ in who runs the infra.

pub mod binaries;
pub mod boot;
pub mod bootstrap;
pub mod compose;
pub mod control;
pub mod external;
pub mod infra;
pub mod native;
pub mod observe;
pub mod postgres;
pub mod process;
pub mod profile;
pub mod progress;
pub mod prometheus;
pub mod rabbit;
pub mod ready;
pub mod record;
pub mod redis_acl;
pub mod services;
pub mod state;
pub mod stop;
pub mod supervise;
pub mod supervisor;
pub mod vault;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use profile::FleetProfile;
pub use state::{FleetState, InfraMode};

/// Where things are: resolved once per command from the global options.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The project checkout (holds `profiles/`, `migrations/`, `compose.yaml`).
    pub root: PathBuf,
    /// All fleet data: `fleet.json`, logs, database files.
    pub state_dir: PathBuf,
    /// Where `scripts/setup.sh` installs tools (OpenBao's venv); survives `down --purge`.
    pub tools_dir: PathBuf,
    pub profile: FleetProfile,
}

impl Ctx {
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    pub fn log_path(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }

    /// Creates the state directory tree we write to, private to us: the
    /// state directory and logs/ are mode 0700 (the Postgres step later
    /// lets the `postgres` account traverse the state directory when we run
    /// as root, see [`postgres::command`]).
    pub fn ensure_dirs(&self) -> Result<()> {
        secure_state_dir(&self.state_dir, &self.tools_dir)?;
        private_dir(&self.logs_dir())
    }
}

/// What a state directory holds: anything else in it means it is not ours.
const STATE_ENTRIES: &[&str] = &[
    "fleet.json",
    "secrets.json",
    "logs",
    "postgres",
    "redis",
    "vault",
    "rabbitmq",
    "tools",
    "supervisor.toml",
    "prometheus",
    // An experiment's or load's lock, left after it ran, and the
    // dashboard's run outputs: without them a second `scripts/demo.sh` in
    // one clone (as root: the Postgres step leaves the directory 0710) was
    // refused at `up`.
    LAB_LOCK_FILE,
    "dashboard",
];

/// The lab's lock file in the state directory (`run::lab` takes and frees
/// it; named here, below the run model, so the fleet knows it as its own).
pub const LAB_LOCK_FILE: &str = "lab.lock";

/// Makes the state directory private (0700). Only a directory that is ours
/// is chmodded: a new one, or one holding nothing but a fleet's files and
/// the tools directory (`.storefront/` after scripts/setup.sh); any other
/// existing directory (`--state-dir /tmp`, say) is refused unless it is
/// private already, rather than changing the mode of someone else's.
pub fn secure_state_dir(dir: &Path, tools_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let ours = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read state directory {}", dir.display()));
        }
        Ok(entries) => entries.filter_map(|e| e.ok()).all(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            e.path() == tools_dir
                || STATE_ENTRIES.contains(&name.as_ref())
                || name.ends_with(".tmp")
        }),
    };
    if ours {
        return private_dir(dir);
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "state directory {} already exists with other files in it and mode {mode:o}; \
             the fleet keeps passwords and logs there, so it must be private: \
             pass a new --state-dir, or `chmod 700` it yourself",
            dir.display()
        );
    }
    Ok(())
}

/// Creates `dir` (and missing parents) and sets it to mode 0700, whatever
/// it was: the fleet's directories hold logs, passwords and data files that
/// no other local user may read.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (chmod 700)", dir.display()))
}

/// Finds the project root: the first ancestor of the working directory, then
/// of the executable, that has `profiles/` beside a `Cargo.toml`.
pub fn project_root() -> Result<PathBuf> {
    if let Some(r) = std::env::var_os("STOREFRONT_ROOT") {
        return Ok(PathBuf::from(r));
    }
    let is_root = |d: &Path| d.join("profiles").is_dir() && d.join("Cargo.toml").is_file();
    let cwd = std::env::current_dir()?;
    let exe = std::env::current_exe()?;
    cwd.ancestors()
        .chain(exe.ancestors())
        .find(|d| is_root(d))
        .map(Path::to_path_buf)
        .context("cannot find the storefront project (a directory with profiles/ and Cargo.toml); run from the checkout or set STOREFRONT_ROOT")
}

/// Passwords, tokens and the Erlang cookie: generated on the first `up`,
/// reused after, so a warm start finds the same roles. Mode 0600.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Secrets {
    pub pg_admin_password: String,
    pub vault_admin_password: String,
    pub vault_root_token: String,
    pub erlang_cookie: String,
    #[serde(default)]
    pub service_passwords: std::collections::BTreeMap<String, String>,
    /// Redis ACL users' passwords (admin and one per service), native fleets.
    #[serde(default)]
    pub redis_passwords: std::collections::BTreeMap<String, String>,
}

/// An alphanumeric secret (safe to inline in SQL and shell).
pub fn random_secret(len: usize) -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

impl Secrets {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("secrets.json")
    }

    pub fn load_or_create(state_dir: &Path) -> Result<Self> {
        let path = Self::path(state_dir);
        if let Ok(bytes) = std::fs::read(&path) {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt", path.display()));
        }
        let s = Self {
            pg_admin_password: random_secret(24),
            vault_admin_password: random_secret(24),
            vault_root_token: format!("sf-{}", random_secret(24)),
            // Erlang cookies are plain uppercase letters by convention.
            erlang_cookie: random_secret(20)
                .to_ascii_uppercase()
                .replace(|c: char| c.is_ascii_digit(), "Q"),
            service_passwords: Default::default(),
            redis_passwords: Default::default(),
        };
        s.save(state_dir)?;
        Ok(s)
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        state::write_private(&Self::path(state_dir), &serde_json::to_vec_pretty(self)?)
    }

    /// The service's password, generated on first use.
    pub fn service_password(&mut self, service: &str) -> String {
        self.service_passwords
            .entry(service.to_owned())
            .or_insert_with(|| random_secret(24))
            .clone()
    }

    /// Generates a Redis password for each of `users` that has none yet;
    /// true if it made any (the caller saves).
    pub fn ensure_redis_passwords<'a>(&mut self, users: impl IntoIterator<Item = &'a str>) -> bool {
        let mut made = false;
        for u in users {
            if !self.redis_passwords.contains_key(u) {
                self.redis_passwords.insert(u.to_owned(), random_secret(32));
                made = true;
            }
        }
        made
    }

    /// A Redis user's password ("" for one never generated: Redis then
    /// refuses the login, which is the safe failure).
    pub fn redis_password(&self, user: &str) -> String {
        self.redis_passwords.get(user).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_state_dir_and_one_with_only_the_fleets_files_become_private() {
        let tmp = tempfile::tempdir().unwrap();
        let tools = tmp.path().join("sf/tools");
        let fresh = tmp.path().join("new");
        secure_state_dir(&fresh, &tools).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        // `.storefront/` after setup.sh and a fleet, left 0755 by mkdir.
        let sf = tmp.path().join("sf");
        std::fs::create_dir_all(&tools).unwrap();
        std::fs::write(sf.join("secrets.json"), "{}").unwrap();
        std::fs::set_permissions(&sf, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure_state_dir(&sf, &tools).unwrap();
        assert_eq!(mode(&sf), 0o700);

        // After a run of experiments and `down`, as root: the lab's lock and
        // the dashboard's outputs are there, and Postgres left it 0710.
        std::fs::write(sf.join(LAB_LOCK_FILE), "{}").unwrap();
        std::fs::create_dir_all(sf.join("dashboard")).unwrap();
        std::fs::set_permissions(&sf, std::fs::Permissions::from_mode(0o710)).unwrap();
        secure_state_dir(&sf, &tools).unwrap();
        assert_eq!(mode(&sf), 0o700);
    }

    #[test]
    fn someone_elses_open_directory_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("notes.txt"), "not ours").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = secure_state_dir(&shared, &tmp.path().join("tools"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 700"), "{err}");
        assert_eq!(mode(&shared), 0o755, "its mode is not ours to change");
        // Private already: fine as it is.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).unwrap();
        secure_state_dir(&shared, &tmp.path().join("tools")).unwrap();
    }
}
