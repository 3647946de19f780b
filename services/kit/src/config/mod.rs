//! Typed configuration read from environment variables.
//!
//! Every error names the variable and says what was expected, so a service
//! that refuses to start tells the operator exactly which line to fix.
//! Secrets are returned as [`SecretString`] so they never reach a log line
//! through `Debug`.

mod common;

use std::collections::HashMap;
use std::ffi::OsString;
use std::str::FromStr;

use secrecy::SecretString;

pub use common::CommonConfig;

/// Why a variable could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The variable is unset or empty.
    #[error("{name} is not set (expected {expected})")]
    Missing {
        /// The variable's name.
        name: &'static str,
        /// The form a value should take, for the operator.
        expected: String,
    },
    /// The variable is set but does not parse.
    #[error("{name}={value:?} is not {expected}: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// The value as found (never a secret: secrets are not parsed).
        value: String,
        /// The form a value should take, for the operator.
        expected: String,
        /// The parser's own complaint.
        reason: String,
    },
    /// The variable holds bytes that are not UTF-8.
    #[error("{name} is not valid UTF-8")]
    NotUnicode {
        /// The variable's name.
        name: &'static str,
    },
}

impl ConfigError {
    /// An unset variable, for checks made after reading (e.g. a service that
    /// needs an optional [`CommonConfig`] field).
    pub fn missing(name: &'static str, expected: impl Into<String>) -> Self {
        Self::Missing {
            name,
            expected: expected.into(),
        }
    }
}

type Lookup = dyn Fn(&str) -> Option<OsString> + Send + Sync;

/// A view of environment variables: the process's in production, a fixed
/// map in tests (setting process variables is `unsafe` in edition 2024 and
/// races between parallel tests).
pub struct Vars {
    /// Where a name is looked up.
    lookup: Box<Lookup>,
}

impl Vars {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var_os(name)),
        }
    }

    /// A fixed set of variables; anything else is unset.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, OsString> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), OsString::from(v.into())))
            .collect();
        Self {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// The raw value; empty counts as unset, so `FOO=` in a profile means
    /// "not configured" rather than "configured as nothing".
    fn raw(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match (self.lookup)(name) {
            None => Ok(None),
            Some(os) => match os.into_string() {
                Ok(s) if s.is_empty() => Ok(None),
                Ok(s) => Ok(Some(s)),
                Err(_) => Err(ConfigError::NotUnicode { name }),
            },
        }
    }

    /// A variable that must be present and parse as `T`.
    pub fn required<T>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.optional(name)?
            .ok_or_else(|| ConfigError::missing(name, expected::<T>()))
    }

    /// A variable that may be absent; if present it must parse as `T`.
    pub fn optional<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let Some(value) = self.raw(name)? else {
            return Ok(None);
        };
        value
            .parse()
            .map(Some)
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value: shorten(&value),
                expected: expected::<T>(),
                reason: e.to_string(),
            })
    }

    /// A variable with a default used when it is absent.
    pub fn with_default<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// An on/off switch; accepts `1/0`, `true/false`, `yes/no`, `on/off`, so
    /// shell habits (`LAB_ENDPOINTS=1`) work.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(value) = self.raw(name)? else {
            return Ok(default);
        };
        match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                value: shorten(&value),
                expected: "a switch (true/false, 1/0, yes/no, on/off)".into(),
                reason: "unrecognised word".into(),
            }),
        }
    }

    /// A secret that may be absent. Never parsed here, so its value can't end
    /// up in an error message.
    pub fn optional_secret(&self, name: &'static str) -> Result<Option<SecretString>, ConfigError> {
        Ok(self.raw(name)?.map(SecretString::from))
    }

    /// A secret that must be present.
    pub fn secret(&self, name: &'static str) -> Result<SecretString, ConfigError> {
        self.optional_secret(name)?
            .ok_or_else(|| ConfigError::missing(name, "a non-empty secret"))
    }
}

/// What a value of `T` looks like, in words an operator understands.
fn expected<T>() -> String {
    let short = std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("value");
    match short {
        "SocketAddr" => "a socket address like 127.0.0.1:8080".into(),
        "IpAddr" => "an IP address like 127.0.0.1".into(),
        "bool" => "true or false".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "String" => "a non-empty string".into(),
        other => format!("a valid {other}"),
    }
}

/// Echoed values are capped so a pasted blob doesn't swamp the message.
fn shorten(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn missing_variable_error_names_it_and_the_expected_form() {
        let err = Vars::from_pairs::<&str, &str>([])
            .required::<SocketAddr>("BIND_ADDR")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("BIND_ADDR"), "{msg}");
        assert!(msg.contains("not set"), "{msg}");
        assert!(msg.contains("127.0.0.1:8080"), "{msg}");
    }

    #[test]
    fn unparsable_variable_error_names_it_and_echoes_the_value() {
        let vars = Vars::from_pairs([("SHUTDOWN_GRACE_SECS", "ten")]);
        let msg = vars
            .required::<u64>("SHUTDOWN_GRACE_SECS")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("SHUTDOWN_GRACE_SECS=\"ten\""), "{msg}");
        assert!(msg.contains("non-negative integer"), "{msg}");
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let vars = Vars::from_pairs([("REDIS_URL", "")]);
        assert_eq!(vars.optional::<String>("REDIS_URL"), Ok(None));
        assert_eq!(
            vars.with_default("REDIS_URL", "x".to_owned()),
            Ok("x".into())
        );
    }

    #[test]
    fn flag_accepts_shell_habits_and_rejects_nonsense() {
        let vars = Vars::from_pairs([("A", "1"), ("B", "off"), ("C", "maybe")]);
        assert_eq!(vars.flag("A", false), Ok(true));
        assert_eq!(vars.flag("B", true), Ok(false));
        assert_eq!(vars.flag("D", true), Ok(true));
        assert!(
            vars.flag("C", false)
                .unwrap_err()
                .to_string()
                .contains("C=")
        );
    }

    #[test]
    fn missing_secret_error_names_it_without_a_value() {
        let err = Vars::from_pairs::<&str, &str>([])
            .secret("DATABASE_URL")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_URL is not set (expected a non-empty secret)"
        );
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(200);
        let msg = Vars::from_pairs([("N", long.as_str())])
            .required::<u32>("N")
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 150, "{msg}");
    }
}
