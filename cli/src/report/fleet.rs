//! The fleet table shown by `up` and `status`.

use serde::Serialize;

/// Observed lives with the probe that fills it; `report` only renders it.
pub use crate::fleet::observe::Observed;
use crate::fleet::state::FleetState;

/// Status as JSON: no passwords or tokens.
#[derive(Debug, Serialize)]
pub struct FleetReport<'a> {
    pub profile: &'a str,
    pub infra: crate::fleet::InfraMode,
    pub state_dir: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub ready_at: Option<chrono::DateTime<chrono::Utc>>,
    pub healthy: bool,
    pub components: Vec<Observed>,
    pub services: &'a std::collections::BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_ms: Option<u64>,
}

impl<'a> FleetReport<'a> {
    pub fn new(
        state: &'a FleetState,
        state_dir: &std::path::Path,
        components: Vec<Observed>,
    ) -> Self {
        Self {
            profile: &state.profile,
            infra: state.infra,
            state_dir: state_dir.display().to_string(),
            started_at: state.started_at,
            ready_at: state.ready_at,
            healthy: components.iter().all(|c| c.state == "ready"),
            components,
            services: &state.endpoints.services,
            up_ms: None,
        }
    }
}

pub fn render(components: &[Observed]) -> comfy_table::Table {
    let mut t = super::table(&["component", "pid", "url", "state", "boot", "notes"]);
    for c in components {
        t.add_row(vec![
            c.name.clone(),
            c.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            c.url.clone(),
            c.state.to_owned(),
            super::secs(c.boot_ms),
            c.detail.clone().unwrap_or_default(),
        ]);
    }
    t
}
