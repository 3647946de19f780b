//! Fleet profiles: `profiles/<name>.toml` says which services run, how many
//! replicas, which ports, and the infrastructure settings. Parsing errors name
//! the file, the line and the field, because a profile is hand-edited.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Infrastructure the fleet can depend on. A service lists the ones it needs so
/// that `up` starts it as soon as those (and only those) are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    Postgres,
    Redis,
    Rabbitmq,
    Vault,
}

/// A fleet profile as written in TOML.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetProfile {
    /// Shown in `status`; defaults to the file stem.
    #[serde(default)]
    pub name: String,
    /// First port of the fleet's range; infra and services take fixed offsets
    /// from it (see [`PortPlan`]), so one number moves the whole fleet.
    pub port_base: u16,
    /// Lab-only endpoints (blind writes, check-then-insert) exist to prove the
    /// checkers can fail; they are off unless a profile turns them on.
    #[serde(default)]
    pub lab_endpoints: bool,
    /// Restart a service instance that dies, with backoff (every service;
    /// a service's own `supervise` overrides it). `up` then leaves a
    /// detached `storefront supervise` process running, recorded in
    /// fleet.json as the `supervisor` component, which `down` stops first.
    #[serde(default)]
    pub supervise: bool,
    /// Run Prometheus beside a native fleet, scraping every service
    /// instance (see [`super::prometheus`]); off unless a profile asks.
    #[serde(default)]
    pub prometheus: bool,
    #[serde(default)]
    pub postgres: PostgresSettings,
    #[serde(default)]
    pub vault: VaultSettings,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// Passed to the postmaster as `-c key=value`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// Default lease TTL of dynamic database credentials.
    #[serde(default = "default_lease_ttl")]
    pub default_ttl: String,
    /// Longest a lease can be renewed to before new credentials are needed.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: String,
}

fn default_lease_ttl() -> String {
    "1h".into()
}
fn default_max_ttl() -> String {
    "24h".into()
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            default_ttl: default_lease_ttl(),
            max_ttl: default_max_ttl(),
        }
    }
}

/// Readiness deadlines, in seconds. Generous by default: RabbitMQ's boot is
/// CPU-bound and a loaded 2-core CI machine can double it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "default_infra_ready")]
    pub infra_ready_secs: u64,
    #[serde(default = "default_service_ready")]
    pub service_ready_secs: u64,
    #[serde(default = "default_stop")]
    pub stop_secs: u64,
}

fn default_infra_ready() -> u64 {
    60
}
fn default_service_ready() -> u64 {
    30
}
fn default_stop() -> u64 {
    15
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            infra_ready_secs: default_infra_ready(),
            service_ready_secs: default_service_ready(),
            stop_secs: default_stop(),
        }
    }
}

/// One service of the fleet, run as `replicas` processes of one binary.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Binary name; it sits beside the `storefront` binary. Defaults to `name`.
    #[serde(default)]
    pub binary: Option<String>,
    #[serde(default = "one")]
    pub replicas: u16,
    #[serde(default)]
    pub needs: Vec<Dependency>,
    /// Postgres schema (and login role) the service owns, if any.
    #[serde(default)]
    pub schema: Option<String>,
    /// Credentials come from Vault's database engine instead of a static password.
    #[serde(default)]
    pub dynamic_credentials: bool,
    /// Extra environment for the service (tuning knobs of its pattern).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Restart its instances when they die (overrides the profile's `supervise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervise: Option<bool>,
}

fn one() -> u16 {
    1
}

impl ServiceSpec {
    pub fn binary(&self) -> &str {
        self.binary.as_deref().unwrap_or(&self.name)
    }

    /// Component names of the replicas: `catalog` for one, `catalog-1`, `catalog-2` for more.
    pub fn instance_names(&self) -> Vec<String> {
        if self.replicas == 1 {
            vec![self.name.clone()]
        } else {
            (1..=self.replicas)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        }
    }
}

/// Where every port of the fleet lives, derived from `port_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPlan {
    pub postgres: u16,
    pub redis: u16,
    pub amqp: u16,
    pub rabbit_dist: u16,
    pub epmd: u16,
    pub vault: u16,
    /// Prometheus, when the profile runs it (absent from older records).
    #[serde(default)]
    pub prometheus: u16,
    /// Services take consecutive ports from here, in profile order.
    pub services_from: u16,
}

/// How many ports the infrastructure block reserves before the services.
pub const INFRA_PORTS: u16 = 10;

impl PortPlan {
    pub fn new(base: u16) -> Self {
        Self {
            postgres: base,
            redis: base + 1,
            amqp: base + 2,
            rabbit_dist: base + 3,
            epmd: base + 4,
            vault: base + 5,
            prometheus: base + 6,
            services_from: base + INFRA_PORTS,
        }
    }
}

/// Where a profile named on the command line lives: a path as given
/// (anything containing a `/` or ending in `.toml`), else
/// `profiles/<name>.toml` under the project root. Fleet and load profiles alike.
pub fn profile_path(root: &Path, name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        PathBuf::from(name_or_path)
    } else {
        root.join("profiles").join(format!("{name_or_path}.toml"))
    }
}

impl FleetProfile {
    /// Reads a profile by name or by path ([`profile_path`]).
    pub fn load(root: &Path, name_or_path: &str) -> Result<(Self, PathBuf)> {
        let path = profile_path(root, name_or_path);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read fleet profile {} (profiles live in {}/profiles/; pass --fleet NAME or a path)",
                path.display(),
                root.display()
            )
        })?;
        let mut profile =
            Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if profile.name.is_empty() {
            profile.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok((profile, path))
    }

    /// Parses and validates; the error carries line, column and field from toml.
    pub fn parse(text: &str) -> Result<Self> {
        let profile: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        profile.validate()?;
        Ok(profile)
    }

    fn validate(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.services {
            if s.replicas == 0 {
                bail!("service `{}`: replicas must be at least 1", s.name);
            }
            if !s
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                bail!(
                    "service `{}`: names are lowercase letters, digits and `_`",
                    s.name
                );
            }
            if let Some(schema) = &s.schema
                && !schema.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                bail!(
                    "service `{}`: schema `{schema}` must be lowercase letters and `_`",
                    s.name
                );
            }
            if s.dynamic_credentials && s.schema.is_none() {
                bail!("service `{}`: dynamic_credentials needs a schema", s.name);
            }
            if !seen.insert(&s.name) {
                bail!("service `{}` is listed twice", s.name);
            }
        }
        let last =
            u32::from(self.port_base) + u32::from(INFRA_PORTS) + self.service_port_count() as u32;
        if self.port_base < 1024 || last > 65535 {
            bail!(
                "port_base {} leaves the fleet's ports outside 1024..=65535",
                self.port_base
            );
        }
        Ok(())
    }

    fn service_port_count(&self) -> usize {
        self.services.iter().map(|s| usize::from(s.replicas)).sum()
    }

    pub fn ports(&self) -> PortPlan {
        PortPlan::new(self.port_base)
    }

    /// Is `service` supervised (its own setting, else the profile's)?
    pub fn supervised(&self, service: &ServiceSpec) -> bool {
        service.supervise.unwrap_or(self.supervise)
    }

    /// Does any service need the supervisor?
    pub fn supervises_any(&self) -> bool {
        self.services.iter().any(|s| self.supervised(s))
    }

    /// Every service instance with its port, in start order.
    pub fn instances(&self) -> Vec<(ServiceSpec, String, u16)> {
        let mut port = self.ports().services_from;
        let mut out = Vec::new();
        for s in &self.services {
            for name in s.instance_names() {
                out.push((s.clone(), name, port));
                port += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
port_base = 40000
[[services]]
name = "catalog"
replicas = 2
needs = ["postgres", "redis"]
schema = "catalog"
"#;

    #[test]
    fn replicas_get_numbered_names_and_consecutive_ports() {
        let p = FleetProfile::parse(MINIMAL).unwrap();
        let inst = p.instances();
        assert_eq!(inst.len(), 2);
        assert_eq!((inst[0].1.as_str(), inst[0].2), ("catalog-1", 40010));
        assert_eq!((inst[1].1.as_str(), inst[1].2), ("catalog-2", 40011));
    }

    #[test]
    fn unknown_field_error_names_field_and_line() {
        let err = FleetProfile::parse("port_base = 40000\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn wrong_type_error_names_field() {
        let err = FleetProfile::parse("port_base = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port_base"), "{err}");
    }

    #[test]
    fn port_range_must_fit() {
        let err = FleetProfile::parse("port_base = 65530\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("65535"), "{err}");
        assert!(FleetProfile::parse("port_base = 80\n").is_err());
    }

    #[test]
    fn zero_replicas_is_refused() {
        let text = MINIMAL.replace("replicas = 2", "replicas = 0");
        assert!(
            FleetProfile::parse(&text)
                .unwrap_err()
                .to_string()
                .contains("replicas")
        );
    }

    #[test]
    fn shipped_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("port_base") {
                FleetProfile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
}
