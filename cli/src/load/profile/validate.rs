//! Validation of a parsed profile: every problem names its field and,
//! where it has one, its place in the file.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::Spanned;

use super::{LoadProfile, TxSpec};
use crate::faults::schedule as fault_schedule;
use crate::load::template::{BUILTINS, Template, VarSpec, sample};

/// A problem found after parsing: the field's path and its byte offset.
pub(super) struct Problem {
    pub(super) at: usize,
    pub(super) field: String,
    pub(super) message: String,
}

impl LoadProfile {
    pub(super) fn validate(&self) -> Result<(), Problem> {
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
