//! `.storefront/fleet.json`: what `up` started, so `status`, `down`, `logs` and
//! the experiments (in other processes) can find it. Written after every
//! spawn, so a crashed `up` still leaves `down` a record of what to stop.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::profile::PortPlan;

/// Infra provider that booted the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InfraMode {
    /// Child processes on loopback, data under the state directory.
    Native,
    /// `docker compose` with compose.yaml.
    Compose,
    /// A fleet that already runs elsewhere; URLs from the environment.
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Infra,
    Service,
}

/// One process we started (or, for external fleets, one endpoint we know).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    /// Process id; also its process-group id (every component leads its own group).
    pub pid: Option<i32>,
    /// Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22):
    /// guards against signalling an unrelated process that reused the pid.
    pub start_ticks: Option<u64>,
    pub ports: Vec<u16>,
    pub url: String,
    pub log: Option<PathBuf>,
    /// Milliseconds from spawn to ready, once ready.
    pub boot_ms: Option<u64>,
    /// What the boot involved (initdb, migrations applied, ...).
    #[serde(default)]
    pub detail: Option<String>,
}

/// Connection details the experiments and services need.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Endpoints {
    /// Superuser URL for ground-truth reads (experiments) and bootstrap.
    pub postgres_admin_url: String,
    /// Redis as its admin user (the CLI's experiments, the services' tests
    /// as TEST_REDIS_URL); services get their own users' URLs below.
    pub redis_url: String,
    pub amqp_url: String,
    pub vault_addr: String,
    /// Vault's root token, for the CLI only (services get their own tokens).
    pub vault_token: String,
    /// `service -> base URL` of each instance, e.g. catalog → [http://127.0.0.1:47110].
    pub services: std::collections::BTreeMap<String, Vec<String>>,
    /// `service -> database URL`: with the login for static-credential
    /// services; only where Postgres is for dynamic ones (Vault issues the login).
    pub service_database_urls: std::collections::BTreeMap<String, String>,
    /// `service -> Redis URL` with the service's own ACL user, limited to its
    /// keys (native fleets); absent where the infra has no ACLs of ours.
    #[serde(default)]
    pub service_redis_urls: std::collections::BTreeMap<String, String>,
    /// `service -> Vault token` whose policy reaches only that service's
    /// role and leases; created by `up` with the root token.
    #[serde(default)]
    pub service_vault_tokens: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetState {
    pub profile: String,
    pub infra: InfraMode,
    pub ports: PortPlan,
    pub lab_endpoints: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Set once every component is ready; a record without it is a boot that
    /// did not finish.
    pub ready_at: Option<chrono::DateTime<chrono::Utc>>,
    pub components: Vec<Component>,
    pub endpoints: Endpoints,
    /// `docker compose -p` project name when the infra runs in compose.
    #[serde(default)]
    pub compose_project: Option<String>,
}

impl FleetState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("fleet.json")
    }

    /// `Ok(None)` when no fleet is recorded.
    pub fn load(state_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is corrupt; `storefront down` cannot use it (remove it after checking no fleet process runs)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
        }
    }

    /// Atomic write (temp file + rename), mode 0600: it holds passwords.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        write_private(&Self::path(state_dir), &serde_json::to_vec_pretty(self)?)
    }

    pub fn remove(state_dir: &Path) -> Result<()> {
        match std::fs::remove_file(Self::path(state_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn upsert(&mut self, c: Component) {
        match self.components.iter_mut().find(|x| x.name == c.name) {
            Some(slot) => *slot = c,
            None => self.components.push(c),
        }
    }
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("failed to write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all().ok();
    std::fs::rename(&tmp, path).with_context(|| format!("failed to write {}", path.display()))
}
