//! A profile compiled for running: transactions flattened into one indexed
//! list (the recorder's slots), templates parsed once, and what every user
//! shares during a run.

use std::time::Duration;

use rand::Rng;

use super::login::Session;
use super::profile::{LoadProfile, Login, Method};
use super::recorder::Recorder;
use super::target::Targets;
use super::template::{Bindings, Template, VarWorld};

pub struct TxPlan {
    /// `scenario/transaction`.
    pub label: String,
    pub method: Method,
    pub service: String,
    pub path: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    pub success: Vec<u16>,
    pub weight: u32,
    /// Whom its scenario logs in as (through the BFF).
    pub login: Login,
}

pub struct ScenarioPlan {
    pub name: String,
    pub weight: u32,
    /// Indices into `Plan::txs`, in profile order.
    pub txs: Vec<usize>,
}

impl ScenarioPlan {
    /// One pass as a user makes it: each transaction `weight` times, in order.
    pub fn pass<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = usize> + 'a {
        self.txs
            .iter()
            .flat_map(move |&t| std::iter::repeat_n(t, plan.txs[t].weight as usize))
    }
}

pub struct Plan {
    pub profile: LoadProfile,
    pub txs: Vec<TxPlan>,
    pub scenarios: Vec<ScenarioPlan>,
}

impl Plan {
    pub fn new(profile: LoadProfile) -> Self {
        let mut txs = Vec::new();
        let mut scenarios = Vec::new();
        for s in &profile.scenarios {
            let mut idx = Vec::new();
            for t in &s.transactions {
                idx.push(txs.len());
                txs.push(TxPlan {
                    label: format!("{}/{}", s.name.get_ref(), t.name.get_ref()),
                    method: t.method,
                    service: t.service.get_ref().clone(),
                    path: Template::parse(t.path.get_ref()),
                    headers: t
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), Template::parse(v.get_ref())))
                        .collect(),
                    body: t.body.as_ref().map(|b| Template::parse(b.get_ref())),
                    success: t.success.get_ref().clone(),
                    weight: t.weight,
                    login: s.login,
                });
            }
            scenarios.push(ScenarioPlan {
                name: s.name.get_ref().clone(),
                weight: s.weight,
                txs: idx,
            });
        }
        Self {
            profile,
            txs,
            scenarios,
        }
    }

    /// Index of the scenario an open-model arrival runs, drawn by weight.
    pub fn pick_scenario(&self, rng: &mut impl Rng) -> usize {
        let total: u32 = self.scenarios.iter().map(|s| s.weight).sum();
        let mut x = rng.random_range(0..total);
        for (i, s) in self.scenarios.iter().enumerate() {
            if x < s.weight {
                return i;
            }
            x -= s.weight;
        }
        self.scenarios.len() - 1
    }

    /// A think time drawn from the profile's range.
    pub fn think(&self, rng: &mut impl Rng) -> Duration {
        let t = self.profile.think_time;
        if t.max <= t.min {
            t.min
        } else {
            rng.random_range(t.min..=t.max)
        }
    }
}

/// A request ready to send.
pub struct Rendered {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl TxPlan {
    /// Fills the templates with this pass's values; `pick` chooses the
    /// replica; `session` (through the BFF) is the logged-in user, sent as
    /// `Authorization: Bearer` and named by `{customer}`.
    pub fn render(
        &self,
        targets: &Targets,
        world: &VarWorld,
        b: &mut Bindings,
        pick: usize,
        session: Option<&Session>,
    ) -> Rendered {
        b.customer = session.map(|s| s.user_id.clone());
        let path = self.path.render(|v| b.value(v, world));
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, t)| (k.clone(), t.render(|v| b.value(v, world))))
            .collect();
        if let Some(s) = session {
            headers.push(("authorization".into(), format!("Bearer {}", s.token)));
        }
        Rendered {
            url: targets.url(&self.service, &path, pick),
            headers,
            body: self.body.as_ref().map(|t| t.render(|v| b.value(v, world))),
        }
    }

    pub fn is_success(&self, status: u16) -> bool {
        self.success.contains(&status)
    }
}

/// What every user (and the progress line) shares during a run.
pub struct Shared {
    pub plan: Plan,
    pub targets: Targets,
    pub world: VarWorld,
    pub recorder: Recorder,
    pub seed: u64,
    /// Through the BFF: the users' logins (`None` direct).
    pub logins: Option<super::login::Logins>,
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    const TWO: &str = r#"
users = 4
duration = "1s"
[[scenarios]]
name = "a"
weight = 3
[[scenarios.transactions]]
name = "x"
weight = 2
service = "catalog"
method = "GET"
path = "/x"
success = [200]
[[scenarios.transactions]]
name = "y"
service = "catalog"
method = "GET"
path = "/y"
success = [200]
[[scenarios]]
name = "b"
[[scenarios.transactions]]
name = "z"
service = "catalog"
method = "GET"
path = "/z"
success = [200]
"#;

    #[test]
    fn a_pass_repeats_each_transaction_by_its_weight_in_order() {
        let plan = Plan::new(LoadProfile::parse(TWO, "t").unwrap());
        let pass: Vec<&str> = plan.scenarios[0]
            .pass(&plan)
            .map(|t| plan.txs[t].label.as_str())
            .collect();
        assert_eq!(pass, ["a/x", "a/x", "a/y"]);
    }

    #[test]
    fn arrivals_pick_scenarios_in_proportion_to_their_weights() {
        let plan = Plan::new(LoadProfile::parse(TWO, "t").unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = (0..4000)
            .filter(|_| plan.pick_scenario(&mut rng) == 0)
            .count();
        assert!((2800..3200).contains(&a), "{a} of 4000 for weight 3 of 4");
    }
}
