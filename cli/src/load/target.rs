//! Where the load goes: through the BFF when the fleet runs one
//! (`/api/<service>/...`, each user logged in as a real account, see
//! `load::login`), straight to each service's replicas otherwise. This is
//! the only place that decides.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use crate::experiments::Lab;

/// `--via`: where the load goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Through the BFF when the fleet runs one, else direct.
    #[default]
    Auto,
    /// Through the BFF (an error when the fleet has none).
    Bff,
    /// Straight to the services (e.g. to measure a service without the gateway).
    Direct,
}

#[derive(Debug, Clone)]
pub enum Targets {
    /// Every request goes to a BFF replica, prefixed with `/api/<service>`.
    Bff(Vec<String>),
    /// Each service's own replicas.
    Direct(BTreeMap<String, Vec<String>>),
}

impl Targets {
    pub fn resolve(lab: &Lab, services: &BTreeSet<String>, via: Via) -> Result<Self> {
        match (via, lab.urls("bff")) {
            (Via::Auto | Via::Bff, Ok(bff)) => return Ok(Targets::Bff(bff.to_vec())),
            (Via::Bff, Err(e)) => return Err(e.context("--via bff")),
            _ => {}
        }
        let mut direct = BTreeMap::new();
        for s in services {
            direct.insert(s.clone(), lab.urls(s)?.to_vec());
        }
        Ok(Targets::Direct(direct))
    }

    /// The URL of `path` on `service`; `pick` chooses the replica (a user
    /// sticks to one, as a client behind a load balancer would).
    pub fn url(&self, service: &str, path: &str, pick: usize) -> String {
        match self {
            Targets::Bff(urls) => format!("{}/api/{service}{path}", urls[pick % urls.len()]),
            Targets::Direct(m) => {
                let urls = &m[service];
                format!("{}{path}", urls[pick % urls.len()])
            }
        }
    }

    /// A base URL goose can take as its host (requests carry full URLs).
    pub fn any_base(&self) -> String {
        match self {
            Targets::Bff(urls) => urls[0].clone(),
            Targets::Direct(m) => m.values().next().map(|u| u[0].clone()).unwrap_or_default(),
        }
    }

    /// `bff (1 replica)` or `direct: catalog ×2, claims ×1`.
    pub fn describe(&self) -> String {
        match self {
            Targets::Bff(urls) => format!("through the BFF ({} replica(s))", urls.len()),
            Targets::Direct(m) => format!(
                "direct: {}",
                m.iter()
                    .map(|(s, u)| format!("{s} ×{}", u.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bff_prefixes_the_service_and_direct_picks_a_replica() {
        let bff = Targets::Bff(vec!["http://b:1".into()]);
        assert_eq!(
            bff.url("catalog", "/products/7", 5),
            "http://b:1/api/catalog/products/7"
        );
        let mut m = BTreeMap::new();
        m.insert(
            "catalog".into(),
            vec!["http://c:1".into(), "http://c:2".into()],
        );
        let d = Targets::Direct(m);
        assert_eq!(d.url("catalog", "/products", 0), "http://c:1/products");
        assert_eq!(d.url("catalog", "/products", 3), "http://c:2/products");
        assert_eq!(d.describe(), "direct: catalog ×2");
    }
}
