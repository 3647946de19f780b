//! Load profiles: `profiles/<name>.toml` with `[[scenarios]]` (fleet
//! profiles, with `port_base`, live beside them). A profile is hand-edited,
//! so every error names the file, the line and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::template::{BUILTINS, Template, VarSpec, sample};
use crate::faults::schedule::{self as fault_schedule, FaultSpec};
pub use crate::run::dur::{Dur, parse_duration};
use crate::run::spec::{ProfileError, field_at, line_of};

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

/// A problem found after parsing: the field's path and its byte offset.
struct Problem {
    at: usize,
    field: String,
    message: String,
}

impl LoadProfile {
    /// Reads `profiles/<name>.toml` (or a path), refusing a fleet profile
    /// with a hint.
    pub fn load(root: &Path, name_or_path: &str) -> Result<(Self, PathBuf)> {
        let path = if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            PathBuf::from(name_or_path)
        } else {
            root.join("profiles").join(format!("{name_or_path}.toml"))
        };
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

    fn validate(&self) -> Result<(), Problem> {
        let whole = |field: &str, message: String| Problem {
            at: 0,
            field: field.into(),
            message,
        };
        if self.users == 0 {
            return Err(whole("users", "must be at least 1".into()));
        }
        if self.ramp.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err(whole(
                "ramp",
                "users started per second must be above 0".into(),
            ));
        }
        let d = self.duration.0;
        if d < Duration::from_secs(1) || d > Duration::from_secs(3600) || d.subsec_nanos() != 0 {
            return Err(whole(
                "duration",
                format!("{d:?}: give whole seconds between 1s and 1h"),
            ));
        }
        if self.scenarios.is_empty() {
            return Err(whole("scenarios", "give at least one [[scenarios]]".into()));
        }
        if (self.users as usize) < self.scenarios.len() {
            return Err(whole(
                "users",
                format!(
                    "{} users for {} scenarios: every scenario needs at least one user",
                    self.users,
                    self.scenarios.len()
                ),
            ));
        }
        for (name, spec) in &self.vars {
            if !is_ident(name) || BUILTINS.contains(&name.as_str()) {
                return Err(whole(
                    &format!("vars.{name}"),
                    format!(
                        "names are lowercase identifiers, not {}",
                        BUILTINS.join(" or ")
                    ),
                ));
            }
            match spec {
                VarSpec::OneOf(v) if v.is_empty() => {
                    return Err(whole(
                        &format!("vars.{name}"),
                        "one_of needs a value".into(),
                    ));
                }
                VarSpec::Int([lo, hi]) if lo > hi => {
                    return Err(whole(
                        &format!("vars.{name}"),
                        format!("int [{lo}, {hi}] is empty"),
                    ));
                }
                _ => {}
            }
        }
        let mut scenario_names = BTreeSet::new();
        for (si, s) in self.scenarios.iter().enumerate() {
            let field = format!("scenarios[{si}]");
            check_name(&s.name, &format!("{field}.name"))?;
            if !scenario_names.insert(s.name.get_ref()) {
                return Err(at(
                    &s.name,
                    &format!("{field}.name"),
                    "is used twice".into(),
                ));
            }
            if s.weight == 0 {
                return Err(at(
                    &s.name,
                    &format!("{field}.weight"),
                    "must be at least 1".into(),
                ));
            }
            if s.transactions.is_empty() {
                return Err(at(
                    &s.name,
                    &field,
                    "give at least one [[scenarios.transactions]]".into(),
                ));
            }
            let mut tx_names = BTreeSet::new();
            for (ti, t) in s.transactions.iter().enumerate() {
                let field = format!("{field}.transactions[{ti}]");
                self.validate_tx(t, &field)?;
                if !tx_names.insert(t.name.get_ref()) {
                    return Err(at(
                        &t.name,
                        &format!("{field}.name"),
                        "is used twice in its scenario".into(),
                    ));
                }
            }
        }
        let labels = self.labels();
        for (i, th) in self.thresholds.iter().enumerate() {
            let field = format!("thresholds[{i}]");
            let tx = th.transaction.get_ref();
            if tx != "*" && !labels.iter().any(|l| l == tx) {
                return Err(at(
                    &th.transaction,
                    &format!("{field}.transaction"),
                    format!(
                        "no transaction `{tx}`; give \"*\" or one of: {}",
                        labels.join(", ")
                    ),
                ));
            }
            let limits = [
                th.p50_ms,
                th.p90_ms,
                th.p99_ms,
                th.p999_ms,
                th.max_ms,
                th.error_rate_pct,
            ];
            if limits.iter().all(Option::is_none) {
                return Err(at(
                    &th.transaction,
                    &field,
                    "give at least one of p50_ms, p90_ms, p99_ms, p999_ms, max_ms, error_rate_pct"
                        .into(),
                ));
            }
            if limits.iter().flatten().any(|v| v.is_nan() || *v < 0.0)
                || th.error_rate_pct.is_some_and(|v| v > 100.0)
            {
                return Err(at(
                    &th.transaction,
                    &field,
                    "limits are ≥ 0 (and error_rate_pct ≤ 100)".into(),
                ));
            }
        }
        fault_schedule::validate(&self.faults, d).map_err(|p| Problem {
            at: p.at,
            field: p.field,
            message: p.message,
        })
    }

    fn validate_tx(&self, t: &TxSpec, field: &str) -> Result<(), Problem> {
        check_name(&t.name, &format!("{field}.name"))?;
        if !is_ident(t.service.get_ref()) {
            return Err(at(
                &t.service,
                &format!("{field}.service"),
                "is a service name of the fleet (catalog, claims, ...)".into(),
            ));
        }
        if t.weight == 0 {
            return Err(at(
                &t.name,
                &format!("{field}.weight"),
                "must be at least 1".into(),
            ));
        }
        if !t.path.get_ref().starts_with('/') {
            return Err(at(
                &t.path,
                &format!("{field}.path"),
                "starts with /".into(),
            ));
        }
        let mut templates = vec![(&t.path, format!("{field}.path"))];
        for (k, v) in &t.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(at(
                    v,
                    &format!("{field}.headers"),
                    format!("`{k}` is not a header name"),
                ));
            }
            templates.push((v, format!("{field}.headers.{k}")));
        }
        if let Some(b) = &t.body {
            templates.push((b, format!("{field}.body")));
        }
        for (tpl, f) in &templates {
            for v in Template::parse(tpl.get_ref()).vars() {
                if !BUILTINS.contains(&v) && !self.vars.contains_key(v) {
                    let defined: Vec<&str> = self
                        .vars
                        .keys()
                        .map(String::as_str)
                        .chain(BUILTINS)
                        .collect();
                    return Err(at(
                        tpl,
                        f,
                        format!(
                            "unknown variable `{{{v}}}` (defined: {})",
                            defined.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(b) = &t.body {
            let rendered = Template::parse(b.get_ref()).render(|v| match self.vars.get(v) {
                Some(spec) => sample(spec),
                None => "0".into(),
            });
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&rendered) {
                return Err(at(
                    b,
                    &format!("{field}.body"),
                    format!("is not JSON once its variables are filled in: {e}"),
                ));
            }
        }
        let ok = t.success.get_ref();
        if ok.is_empty() || ok.iter().any(|s| !(100..=599).contains(s)) {
            return Err(at(
                &t.success,
                &format!("{field}.success"),
                "list the HTTP statuses (100–599) that count as success".into(),
            ));
        }
        Ok(())
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

fn at<T>(s: &Spanned<T>, field: &str, message: String) -> Problem {
    Problem {
        at: s.span().start,
        field: field.into(),
        message,
    }
}

fn check_name(s: &Spanned<String>, field: &str) -> Result<(), Problem> {
    let n = s.get_ref();
    let ok = !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(at(
            s,
            field,
            format!("`{n}`: names are lowercase letters, digits, `_` and `-`"),
        ))
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
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

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
users = 2
duration = "2s"
think_time = "10ms..20ms"

[vars]
key = "uuid"
product_id = { from = "catalog.products" }

[[scenarios]]
name = "shopper"

[[scenarios.transactions]]
name = "product"
service = "catalog"
method = "GET"
path = "/products/{product_id}"
success = [200]

[[scenarios]]
name = "claimant"

[[scenarios.transactions]]
name = "file"
service = "claims"
method = "POST"
path = "/claims"
headers = { "Idempotency-Key" = "{key}" }
body = '{"order_id": "o-{run}", "amount_cents": {user}}'
success = [201]

[[thresholds]]
transaction = "*"
p99_ms = 100
"#;

    fn err(text: &str) -> String {
        LoadProfile::parse(text, "profiles/x.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_valid_profile_parses_with_labels_and_think_range() {
        let p = LoadProfile::parse(OK, "x").unwrap();
        assert_eq!(p.labels(), ["shopper/product", "claimant/file"]);
        assert_eq!(p.think_time.min, Duration::from_millis(10));
        assert_eq!(p.think_time.mean(), Duration::from_millis(15));
        assert_eq!(p.ramp(), 2.0);
        assert_eq!(p.services().len(), 2);
    }

    #[test]
    fn an_unknown_field_names_the_file_line_and_field() {
        let text = OK.replace("method = \"GET\"", "method = \"GET\"\nretries = 3");
        let e = err(&text);
        assert!(e.starts_with("profiles/x.toml:17: "), "{e}");
        assert!(e.contains("scenarios.transactions.retries"), "{e}");
        assert!(e.contains("unknown field `retries`"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_line_and_field() {
        let e = err(&OK.replace("users = 2", "users = \"many\""));
        assert!(e.starts_with("profiles/x.toml:2: users: "), "{e}");
        let e = err(&OK.replace("duration = \"2s\"", "duration = \"2 fortnights\""));
        assert!(
            e.contains(":3: duration:") && e.contains("not a duration"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_variable_names_the_template_line() {
        let e = err(&OK.replace("{product_id}", "{prodct_id}"));
        assert!(e.starts_with("profiles/x.toml:17: scenarios[0].transactions[0].path: unknown variable `{prodct_id}`"), "{e}");
        assert!(e.contains("product_id"), "{e}");
    }

    #[test]
    fn a_body_that_is_not_json_and_an_unknown_threshold_target_are_refused() {
        let e = err(&OK.replace(r#""amount_cents": {user}}"#, r#""amount_cents": {user}"#));
        assert!(e.contains("body: is not JSON"), "{e}");
        let e = err(&OK.replace(r#"transaction = "*""#, r#"transaction = "shopper/nope""#));
        assert!(
            e.contains("thresholds[0].transaction: no transaction `shopper/nope`"),
            "{e}"
        );
        assert!(e.contains("shopper/product"), "{e}");
    }

    #[test]
    fn names_and_counts_are_checked() {
        assert!(
            err(&OK.replace("users = 2", "users = 1"))
                .contains("every scenario needs at least one user")
        );
        assert!(
            err(&OK.replace("name = \"shopper\"", "name = \"Shopper\""))
                .contains("scenarios[0].name")
        );
        assert!(
            err(&OK.replace("duration = \"2s\"", "duration = \"1500ms\""))
                .contains("whole seconds")
        );
        assert!(err(&OK.replace("success = [201]", "success = []")).contains("success"));
        assert!(
            err(&OK.replace("method = \"GET\"", "method = \"FETCH\""))
                .contains("unknown variant `FETCH`")
        );
    }

    #[test]
    fn a_scenario_logs_in_as_a_customer_unless_it_says_staff() {
        let p = LoadProfile::parse(OK, "x").unwrap();
        assert_eq!(p.scenarios[0].login, Login::Customer);
        let text = OK.replace(
            "name = \"claimant\"\n",
            "name = \"claimant\"\nlogin = \"staff\"\n",
        );
        let p = LoadProfile::parse(&text, "x").unwrap();
        assert_eq!(
            (p.scenarios[0].login, p.scenarios[1].login),
            (Login::Customer, Login::Staff)
        );
    }

    #[test]
    fn an_unknown_login_names_the_file_line_and_field() {
        let text = OK.replace(
            "name = \"claimant\"\n",
            "name = \"claimant\"\nlogin = \"admin\"\n",
        );
        let e = err(&text);
        assert!(
            e.starts_with("profiles/x.toml:22: scenarios.login: "),
            "{e}"
        );
        assert!(e.contains("unknown variant `admin`"), "{e}");
        assert!(e.contains("customer") && e.contains("staff"), "{e}");
        let e = err(&OK.replace("name = \"claimant\"\n", "name = \"claimant\"\nlogin = 1\n"));
        assert!(
            e.starts_with("profiles/x.toml:22: scenarios.login: "),
            "{e}"
        );
    }

    #[test]
    fn durations_parse_as_sums() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn fleet_profiles_are_told_apart_from_load_profiles() {
        assert!(is_fleet_profile("port_base = 47100\n"));
        assert!(!is_fleet_profile(OK));
    }

    #[test]
    fn shipped_load_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let names = available(&dir);
        for n in ["browse", "claims", "smoke"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        for n in names {
            LoadProfile::load(&dir, &n).unwrap_or_else(|e| panic!("{n}: {e:#}"));
        }
    }
}
