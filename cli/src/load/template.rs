//! Request templates and their variables. A path, header or body holds
//! `{name}` placeholders; each name is a variable of the profile (`[vars]`)
//! or a builtin (`run`, `user`, `customer`). A variable is drawn once per pass through a
//! scenario, so a later transaction of the same pass sees the same value
//! (reserve `{reservation_id}`, then release it).
//!
//! Only `{` + identifier + `}` is a placeholder; any other brace is literal,
//! so JSON bodies need no escaping: `{"id": "{key}"}` has one placeholder.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Variables every profile has without declaring them. `customer` is the
/// logged-in user's id through the BFF (what claims expects as the body's
/// `customer_id`), `cust-<user>` direct, where nobody logs in.
pub const BUILTINS: [&str; 3] = ["run", "user", "customer"];

/// How a variable gets its value, as written in `[vars]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VarSpec {
    /// `key = "uuid"`: a fresh UUID whose first 8 hex digits are the run's
    /// tag, so the checks find the run's rows in Postgres by prefix.
    Uuid,
    /// `product_id = { from = "catalog.products" }`: one of a list fetched
    /// from the fleet before the load starts.
    From(Source),
    /// `category = { one_of = ["coffee", "tea"] }`.
    OneOf(Vec<String>),
    /// `amount = { int = [100, 5000] }`: inclusive.
    Int([i64; 2]),
}

/// Lists fetched once, before the load, through the same target the load uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Source {
    /// Every product id (`GET /products`, all pages).
    #[serde(rename = "catalog.products")]
    CatalogProducts,
    /// Ids of products with at least [`IN_STOCK_MIN`] units: safe to reserve.
    #[serde(rename = "catalog.products_in_stock")]
    CatalogProductsInStock,
}

/// Stock a product needs to count as `catalog.products_in_stock`.
pub const IN_STOCK_MIN: i64 = 20;

/// The fetched lists.
#[derive(Debug, Clone, Default)]
pub struct Sources(pub BTreeMap<Source, Vec<String>>);

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

impl Template {
    pub fn parse(s: &str) -> Self {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            match placeholder(after) {
                Some(name) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(name.to_owned()));
                    rest = &after[name.len() + 1..];
                }
                None => {
                    lit.push('{');
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Self(parts)
    }

    /// The placeholders' names, in order (repeats included).
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    pub fn render(&self, mut value: impl FnMut(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(&value(v)),
            }
        }
        out
    }
}

/// `name}` at the start of `s` (an identifier then `}`), if it is one.
fn placeholder(s: &str) -> Option<&str> {
    let end = s.find('}')?;
    let name = &s[..end];
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    .then_some(name)
}

/// A UUID (version 4 layout) that starts with the run's 8-hex-digit tag.
pub fn run_uuid(tag: &str, rng: &mut impl Rng) -> String {
    let a: u16 = rng.random();
    let b: u16 = rng.random::<u16>() & 0x0fff;
    let c: u16 = (rng.random::<u16>() & 0x3fff) | 0x8000;
    let d: u64 = rng.random::<u64>() & 0xffff_ffff_ffff;
    format!("{tag}-{a:04x}-4{b:03x}-{c:04x}-{d:012x}")
}

/// A value that stands for the variable when a template is checked (no fleet needed).
pub fn sample(spec: &VarSpec) -> String {
    match spec {
        VarSpec::Uuid => "00000000-0000-4000-8000-000000000000".into(),
        VarSpec::From(_) => "1".into(),
        VarSpec::OneOf(v) => v.first().cloned().unwrap_or_default(),
        VarSpec::Int([lo, _]) => lo.to_string(),
    }
}

/// What every user shares: the variables' definitions and the fetched lists.
#[derive(Debug, Clone)]
pub struct VarWorld {
    pub specs: BTreeMap<String, VarSpec>,
    pub sources: Sources,
    /// 8 hex digits, fresh per run (never from the seed: a replayed seed must
    /// not reuse the previous run's idempotency keys).
    pub run_tag: String,
}

/// One user's (or one open-model arrival's) values for the current pass,
/// and its own seeded random stream.
#[derive(Clone)]
pub struct Bindings {
    rng: StdRng,
    values: HashMap<String, String>,
    pub user: usize,
    /// The logged-in user's id for this request (`{customer}`), if any.
    pub customer: Option<String>,
}

impl Bindings {
    /// Stream `stream` of the run's seed: the same seed replays the same choices.
    pub fn new(seed: u64, stream: u64, user: usize) -> Self {
        let mixed = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            rng: StdRng::seed_from_u64(mixed),
            values: HashMap::new(),
            user,
            customer: None,
        }
    }

    /// Starts a new pass: every variable is drawn again when next used.
    pub fn reset(&mut self) {
        self.values.clear();
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// The variable's value in this pass, drawn on first use.
    pub fn value(&mut self, name: &str, world: &VarWorld) -> String {
        match name {
            "run" => return world.run_tag.clone(),
            "user" => return self.user.to_string(),
            "customer" => {
                return self
                    .customer
                    .clone()
                    .unwrap_or_else(|| format!("cust-{}", self.user));
            }
            _ => {}
        }
        if let Some(v) = self.values.get(name) {
            return v.clone();
        }
        let v = match world.specs.get(name) {
            Some(VarSpec::Uuid) => run_uuid(&world.run_tag, &mut self.rng),
            Some(VarSpec::From(src)) => {
                let list = world.sources.0.get(src).map(Vec::as_slice).unwrap_or(&[]);
                if list.is_empty() {
                    String::new()
                } else {
                    list[self.rng.random_range(0..list.len())].clone()
                }
            }
            Some(VarSpec::OneOf(v)) => v[self.rng.random_range(0..v.len())].clone(),
            Some(VarSpec::Int([lo, hi])) => self.rng.random_range(*lo..=*hi).to_string(),
            // Validation refuses undefined names before a run starts.
            None => String::new(),
        };
        self.values.insert(name.to_owned(), v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> VarWorld {
        let mut specs = BTreeMap::new();
        specs.insert("key".into(), VarSpec::Uuid);
        specs.insert("n".into(), VarSpec::Int([1, 1_000_000]));
        VarWorld {
            specs,
            sources: Sources::default(),
            run_tag: "a1b2c3d4".into(),
        }
    }

    #[test]
    fn placeholders_are_identifiers_in_braces_and_json_braces_stay_literal() {
        let t = Template::parse(
            r#"{"id": "{key}", "items": [{"n": {n}}], "x": "{Not}", "y": "{a b}"}"#,
        );
        assert_eq!(t.vars().collect::<Vec<_>>(), ["key", "n"]);
        let out = t.render(|v| format!("<{v}>"));
        assert_eq!(
            out,
            r#"{"id": "<key>", "items": [{"n": <n>}], "x": "{Not}", "y": "{a b}"}"#
        );
        assert!(Template::parse("/p/{id").vars().next().is_none());
        assert_eq!(Template::parse("/p/{id}").render(|_| "7".into()), "/p/7");
    }

    #[test]
    fn a_variable_keeps_its_value_within_a_pass_and_is_drawn_again_after_reset() {
        let w = world();
        let mut b = Bindings::new(42, 1, 0);
        let first = b.value("n", &w);
        assert_eq!(b.value("n", &w), first);
        let draws: Vec<String> = (0..20)
            .map(|_| {
                b.reset();
                b.value("n", &w)
            })
            .collect();
        assert!(draws.iter().any(|d| *d != first), "{draws:?}");
    }

    #[test]
    fn customer_is_the_logged_in_user_or_else_a_lab_id_per_user() {
        let w = world();
        let mut b = Bindings::new(1, 1, 5);
        assert_eq!(b.value("customer", &w), "cust-5");
        b.customer = Some("0b6f7c3e-0000-4000-8000-000000000001".into());
        assert_eq!(
            b.value("customer", &w),
            "0b6f7c3e-0000-4000-8000-000000000001"
        );
    }

    #[test]
    fn the_same_seed_and_stream_replay_the_same_values() {
        let w = world();
        let (mut a, mut b) = (Bindings::new(7, 3, 0), Bindings::new(7, 3, 0));
        assert_eq!(a.value("key", &w), b.value("key", &w));
        let mut c = Bindings::new(7, 4, 0);
        assert_ne!(a.value("n", &w), c.value("n", &w));
    }

    #[test]
    fn run_uuids_carry_the_run_tag_and_parse_as_uuids() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let u = run_uuid("a1b2c3d4", &mut rng);
            assert!(u.starts_with("a1b2c3d4-"), "{u}");
            let parsed = uuid::Uuid::parse_str(&u).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{u}");
        }
    }
}
