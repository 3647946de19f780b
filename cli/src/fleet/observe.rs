//! What a recorded fleet looks like right now: each component alive, and
//! answering its own readiness probe.

use serde::Serialize;

use super::process;
use super::state::{Component, ComponentKind, FleetState, InfraMode};

/// A component as observed now.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    pub name: String,
    pub kind: ComponentKind,
    pub pid: Option<i32>,
    pub url: String,
    /// `ready`, `running` (alive, not answering), `paused` (SIGSTOPped), `dead`.
    pub state: &'static str,
    pub boot_ms: Option<u64>,
    pub detail: Option<String>,
}

impl Observed {
    pub fn new(c: &Component, state: &'static str) -> Self {
        Self {
            name: c.name.clone(),
            kind: c.kind,
            pid: c.pid,
            url: c.url.clone(),
            state,
            boot_ms: c.boot_ms,
            detail: c.detail.clone(),
        }
    }
}

async fn probe(client: &reqwest::Client, state: &FleetState, c: &Component) -> bool {
    match (c.kind, c.name.as_str()) {
        (ComponentKind::Service, _) => super::ready::http_ok(client, &format!("{}/ready", c.url))
            .await
            .is_ok(),
        (_, "redis") => super::redis_acl::ping(&state.endpoints.redis_url)
            .await
            .is_ok(),
        (_, "rabbitmq") => {
            let u = reqwest::Url::parse(&state.endpoints.amqp_url).ok();
            let host = u
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| "127.0.0.1".into());
            super::rabbit::check_at(&host, u.and_then(|u| u.port()).unwrap_or(5672))
                .await
                .is_ok()
        }
        (_, "vault") => super::vault::check(client, &state.endpoints.vault_addr)
            .await
            .is_ok(),
        (_, "postgres") => super::postgres::check(&state.endpoints.postgres_admin_url)
            .await
            .is_ok(),
        _ => c
            .ports
            .iter()
            .all(|port| super::ready::port_listening(*port)),
    }
}

/// The `detail` `storefront attach` gives what it records: run by someone else.
pub const ATTACHED: &str = "attached";

/// Observes every component concurrently.
pub async fn observe(state: &FleetState) -> Vec<Observed> {
    let client = super::ready::http_client();
    let checks = state.components.iter().map(|c| {
        let client = &client;
        async move {
            let alive = match c.pid {
                Some(pid) => process::alive(pid, c.start_ticks),
                // No pid: stopped (`storefront stop`), where we run it;
                // an endpoint someone else runs (external or compose infra,
                // or anything `storefront attach` recorded): probe it.
                None => {
                    (c.kind == ComponentKind::Infra && state.infra != InfraMode::Native)
                        || c.detail.as_deref() == Some(ATTACHED)
                }
            };
            let s = if !alive {
                "dead"
            } else if c.pid.is_some_and(process::paused) {
                // SIGSTOPped (`storefront pause`): a probe would only time out.
                "paused"
            } else if tokio::time::timeout(
                std::time::Duration::from_secs(3),
                probe(client, state, c),
            )
            .await
                == Ok(true)
            {
                "ready"
            } else {
                "running"
            };
            Observed::new(c, s)
        }
    });
    futures::future::join_all(checks).await
}

/// True when every recorded process is dead (a stale record).
pub fn all_dead(state: &FleetState) -> bool {
    state
        .components
        .iter()
        .all(|c| c.pid.is_none_or(|pid| !process::alive(pid, c.start_ticks)))
}
