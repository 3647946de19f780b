//! Load profiles: `profiles/<name>.toml` with `[[scenarios]]` (fleet
//! profiles, with `port_base`, live beside them). A profile is hand-edited,
//! so every error names the file, the line and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::template::VarSpec;
use crate::faults::schedule::FaultSpec;
pub use crate::run::dur::{Dur, parse_duration};
use crate::run::spec::{ProfileError, field_at, line_of};

#[cfg(test)]
mod tests;
mod validate;

/// A load profile as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadProfile {
    /// Defaults to the file stem.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Closed model: how many users loop through their scenario.
    pub users: u32,
    /// Users started per second (goose's `increase_rate`) [default: all in one second].
    #[serde(default)]
    pub ramp: Option<f64>,
    /// How long the load holds once every user runs (whole seconds); the
    /// open model runs this long in all.
    pub duration: Dur,
    /// Pause after each transaction: `"100ms"` or a uniform range `"50ms..200ms"`.
    #[serde(default)]
    pub think_time: Think,
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
    pub scenarios: Vec<ScenarioSpec>,
    #[serde(default)]
    pub thresholds: Vec<ThresholdSpec>,
    /// Named checks run against the databases after the load.
    #[serde(default)]
    pub invariants: Vec<Check>,
    /// Faults injected while the load runs (`crate::faults`); `load
    /// --faults FILE` replaces them.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub name: Spanned<String>,
    /// Share of the users (closed) or of the arrivals (open).
    #[serde(default = "one")]
    pub weight: u32,
    /// Whom the scenario's users log in as through the BFF (`load::login`):
    /// `"customer"` (the default; the seeded customers, round-robin) or
    /// `"staff"` (catalog writes such as reservations need the role).
    /// Direct load logs in as no one.
    #[serde(default)]
    pub login: Login,
    pub transactions: Vec<TxSpec>,
}

/// A scenario's `login`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Login {
    /// A seeded customer.
    #[default]
    Customer,
    /// The seeded staff member.
    Staff,
}

fn one() -> u32 {
    1
}

/// One request of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxSpec {
    pub name: Spanned<String>,
    /// Runs this many times per pass through the scenario, in a row.
    #[serde(default = "one")]
    pub weight: u32,
    /// The fleet service it goes to (through the BFF when the fleet has one).
    pub service: Spanned<String>,
    pub method: Method,
    pub path: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// JSON, sent with `content-type: application/json`.
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    /// Statuses that count as success; anything else (or no response) is an error.
    pub success: Spanned<Vec<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Pass/fail limits for one transaction, or for each (`transaction = "*"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    #[serde(serialize_with = "ser_spanned")]
    pub transaction: Spanned<String>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub error_rate_pct: Option<f64>,
}

fn ser_spanned<S: serde::Serializer>(v: &Spanned<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.get_ref())
}

/// The invariants a profile may ask for (see `load::checks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Check {
    /// Each idempotency key the run used is one row of `claims.claims`, and
    /// there are as many rows as `201 Created` answers.
    #[serde(rename = "claims.one_row_per_key")]
    ClaimsOneRowPerKey,
    /// Every product's stock fell by exactly what the run's reservations
    /// still hold.
    #[serde(rename = "catalog.stock_conservation")]
    CatalogStockConservation,
    /// Every invariant of `storefront check` (money, stock, sagas,
    /// outboxes, dead letters, Idempotency-Keys) over the run's orders.
    #[serde(rename = "shop")]
    Shop,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::ClaimsOneRowPerKey => "claims.one_row_per_key",
            Check::CatalogStockConservation => "catalog.stock_conservation",
            Check::Shop => "shop",
        }
    }
}

/// Think time: a fixed pause or a uniform range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Think {
    pub min: Duration,
    pub max: Duration,
}

impl Think {
    pub fn mean(&self) -> Duration {
        (self.min + self.max) / 2
    }
}

impl TryFrom<String> for Think {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
            None => {
                let d = parse_duration(&s)?;
                (d, d)
            }
        };
        if min > max {
            return Err(format!(
                "`{s}`: the range's lower end is above its upper end"
            ));
        }
        Ok(Think { min, max })
    }
}

impl From<Think> for String {
    fn from(t: Think) -> String {
        format!("{}ms..{}ms", t.min.as_millis(), t.max.as_millis())
    }
}

impl std::fmt::Display for Think {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.max.is_zero() {
            write!(f, "none")
        } else if self.min == self.max {
            write!(f, "{:?}", self.min)
        } else {
            write!(f, "{:?}..{:?}", self.min, self.max)
        }
    }
}

impl LoadProfile {
    /// Reads `profiles/<name>.toml` (or a path), refusing a fleet profile
    /// with a hint.
    pub fn load(root: &Path, name_or_path: &str) -> Result<(Self, PathBuf)> {
        let path = crate::fleet::profile::profile_path(root, name_or_path);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read load profile {} (load profiles in {}/profiles/: {})",
                path.display(),
                root.display(),
                available(root).join(", ")
            )
        })?;
        if is_fleet_profile(&text) {
            anyhow::bail!(
                "{} is a fleet profile (it has port_base); `storefront load --profile NAME` takes a load profile, one with [[scenarios]]: {}",
                path.display(),
                available(root).join(", ")
            );
        }
        let mut p = Self::parse(&text, &path.display().to_string())?;
        if p.name.is_empty() {
            p.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok((p, path))
    }

    /// Parses and validates; `file` is only for the error message.
    pub fn parse(text: &str, file: &str) -> Result<Self, ProfileError> {
        let profile: Self = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            ProfileError {
                file: file.into(),
                line: line_of(text, at),
                field: field_at(text, at),
                message: e.message().trim().to_owned(),
            }
        })?;
        profile.validate().map_err(|p| ProfileError {
            file: file.into(),
            line: line_of(text, p.at),
            field: p.field,
            message: p.message,
        })?;
        Ok(profile)
    }

    /// Validates again after the command line changed `users` or `duration`.
    pub fn check_overrides(&self) -> Result<(), String> {
        self.validate()
            .map_err(|p| format!("{}: {}", p.field, p.message))
    }

    /// `scenario/transaction` of every transaction, in profile order.
    pub fn labels(&self) -> Vec<String> {
        self.scenarios
            .iter()
            .flat_map(|s| {
                s.transactions
                    .iter()
                    .map(move |t| format!("{}/{}", s.name.get_ref(), t.name.get_ref()))
            })
            .collect()
    }

    /// Services the profile sends to.
    pub fn services(&self) -> BTreeSet<String> {
        self.scenarios
            .iter()
            .flat_map(|s| s.transactions.iter().map(|t| t.service.get_ref().clone()))
            .collect()
    }

    /// Users started per second.
    pub fn ramp(&self) -> f64 {
        self.ramp.unwrap_or(f64::from(self.users))
    }
}

/// A fleet profile has `port_base` and no scenarios.
pub fn is_fleet_profile(text: &str) -> bool {
    match text.parse::<toml::Table>() {
        Ok(t) => t.contains_key("port_base") && !t.contains_key("scenarios"),
        Err(_) => false,
    }
}

/// Names of the load profiles shipped in `profiles/`.
pub fn available(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("profiles"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .is_ok_and(|t| t.contains("[[scenarios]]") && !is_fleet_profile(&t))
        })
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}
