//! The fleet as the page sees it, once a second: each component's state
//! (ready, running, paused, dead), each service instance's request and error
//! rates and latency from its /metrics, the BFF's breakers and faults,
//! identity's lease and rotations, the outboxes' backlog.
//!
//! States: `observe` (the probes `storefront status` runs) can take seconds
//! when something hangs, so it runs on its own task and the tick reuses its
//! latest answer, overriding it from the pid alone (dead or SIGSTOPped),
//! which takes microseconds: a killed replica shows dead on the next tick.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::metrics::{self, Scrape};
use crate::clients;
use crate::clients::bff_admin::BffAdmin as Gateway;
use crate::fleet::state::ComponentKind;
use crate::fleet::{Ctx, FleetState, InfraMode, observe, process};

/// How long one scrape or admin call may take before the tick goes on without it.
const CALL: Duration = Duration::from_millis(800);

pub struct Poller {
    ctx: Arc<Ctx>,
    http: reqwest::Client,
    /// Last scrape per instance URL, for rates.
    previous: BTreeMap<String, (Instant, Scrape)>,
    /// Latest probe states by component name (from the background observe).
    probed: Arc<Mutex<BTreeMap<String, &'static str>>>,
    observing: Arc<std::sync::atomic::AtomicBool>,
    /// When the last probe round started: one every [`PROBE_EVERY`] (each
    /// opens a Postgres connection, among others).
    probed_at: Option<Instant>,
}

/// How often the components' own probes run; pids are looked at every tick.
const PROBE_EVERY: Duration = Duration::from_secs(2);

impl Poller {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self {
            ctx,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(CALL)
                .build()
                .expect("static client config"),
            previous: BTreeMap::new(),
            probed: Arc::default(),
            observing: Arc::default(),
            probed_at: None,
        }
    }

    /// Starts a probe round unless one is still running.
    fn observe_in_background(&mut self, state: FleetState) {
        use std::sync::atomic::Ordering;
        if self.probed_at.is_some_and(|t| t.elapsed() < PROBE_EVERY)
            || self.observing.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.probed_at = Some(Instant::now());
        let (probed, observing) = (self.probed.clone(), self.observing.clone());
        tokio::spawn(async move {
            let seen = observe::observe(&state).await;
            let mut m = probed.lock().expect("probe map");
            m.clear();
            m.extend(seen.into_iter().map(|o| (o.name, o.state)));
            observing.store(false, Ordering::SeqCst);
        });
    }

    /// One snapshot of the whole fleet.
    pub async fn tick(&mut self) -> Value {
        let state = match FleetState::load(&self.ctx.state_dir) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return json!({"up": false, "why": format!("no fleet is recorded in {}", self.ctx.state_dir.display())});
            }
            Err(e) => return json!({"up": false, "why": format!("{e:#}")}),
        };
        self.observe_in_background(state.clone());
        let probed = self.probed.lock().expect("probe map").clone();
        let components: Vec<Value> = state
            .components
            .iter()
            .map(|c| {
                // No pid: stopped, where we run it (as `observe` reads it);
                // someone else's endpoint: only its probe can tell.
                let ours = !(c.kind == ComponentKind::Infra && state.infra != InfraMode::Native)
                    && c.detail.as_deref() != Some(observe::ATTACHED);
                let alive = match c.pid {
                    Some(p) => Some(process::alive(p, c.start_ticks)),
                    None if ours => Some(false),
                    None => None,
                };
                let paused = alive == Some(true) && c.pid.is_some_and(process::paused);
                let s = state_of(alive, paused, probed.get(&c.name).copied());
                json!({
                    "name": c.name,
                    "kind": c.kind,
                    "state": s,
                    "pid": c.pid,
                    "url": c.url,
                    "service": service_of(&state, &c.url),
                })
            })
            .collect();

        let instances: Vec<(String, String)> = state
            .components
            .iter()
            .filter(|c| c.kind == ComponentKind::Service)
            .map(|c| (c.name.clone(), c.url.clone()))
            .collect();
        let scrapes = futures::future::join_all(instances.iter().map(|(_, url)| {
            let http = &self.http;
            async move {
                let page = clients::metrics::scrape(http, url).await.ok()?;
                Some(metrics::figures(&page))
            }
        }));
        let gateway = Gateway::connect(&self.ctx).ok();
        let admin = async {
            let Some(gw) = &gateway else {
                return (None, None);
            };
            let (b, c) = tokio::join!(
                tokio::time::timeout(CALL, gw.breakers()),
                tokio::time::timeout(CALL, gw.show_chaos())
            );
            (b.ok().and_then(Result::ok), c.ok().and_then(Result::ok))
        };
        let (scrapes, (breakers, chaos)) = tokio::join!(scrapes, admin);

        let now = Instant::now();
        let mut per_instance = serde_json::Map::new();
        let mut queues = serde_json::Map::new();
        for ((name, url), scrape) in instances.iter().zip(scrapes) {
            let Some(s) = scrape else {
                per_instance.insert(name.clone(), json!({"scraped": false}));
                self.previous.remove(url);
                continue;
            };
            let rates = self
                .previous
                .get(url)
                .map(|(at, before)| metrics::rates(before, &s, (now - *at).as_secs_f64()));
            per_instance.insert(
                name.clone(),
                json!({
                    "scraped": true,
                    "rates": rates,
                    "lease_ttl_s": s.lease_ttl_s,
                    "rotations": s.rotations,
                    "outbox_depth": s.outbox_depth,
                    "outbox_oldest_s": s.outbox_oldest_s,
                }),
            );
            for (q, (ready, dead)) in &s.queues {
                queues.insert(q.clone(), json!({"ready": ready, "dead_lettered": dead}));
            }
            self.previous.insert(url.clone(), (now, s));
        }
        json!({
            "up": true,
            "t_ms": chrono::Utc::now().timestamp_millis(),
            "profile": state.profile,
            "components": components,
            "instances": per_instance,
            "queues": queues,
            "breakers": breakers,
            "chaos": chaos,
            "bff_admin": gateway.is_some(),
        })
    }
}

/// A component's state from its pid (`alive`: None when only a probe can
/// tell), whether it is SIGSTOPped, and the last probe round's word.
fn state_of(alive: Option<bool>, paused: bool, probed: Option<&'static str>) -> &'static str {
    match (alive, paused) {
        (Some(false), _) => "dead",
        (_, true) => "paused",
        // A probe from before a restart or a resume may still say dead or
        // paused: alive and running, until it looks again.
        (Some(true), false) => match probed {
            Some("dead" | "paused") => "running",
            Some(s) => s,
            None => "starting",
        },
        (None, _) => probed.unwrap_or("starting"),
    }
}

/// The service an instance URL belongs to (`catalog` for catalog-2's URL).
fn service_of(state: &FleetState, url: &str) -> Option<String> {
    state
        .endpoints
        .services
        .iter()
        .find(|(_, urls)| urls.iter().any(|u| u == url))
        .map(|(s, _)| s.clone())
}

#[cfg(test)]
mod tests {
    use super::state_of;

    #[test]
    fn the_pid_outranks_a_stale_probe_and_a_paused_process_stays_paused() {
        // Killed or stopped since the last probe round: dead at once.
        assert_eq!(state_of(Some(false), false, Some("ready")), "dead");
        // SIGSTOPped: paused, whatever the probe said before.
        assert_eq!(state_of(Some(true), true, Some("ready")), "paused");
        assert_eq!(state_of(Some(true), true, Some("paused")), "paused");
        // Resumed or restarted since: running until probed again.
        assert_eq!(state_of(Some(true), false, Some("paused")), "running");
        assert_eq!(state_of(Some(true), false, Some("dead")), "running");
        assert_eq!(state_of(Some(true), false, Some("ready")), "ready");
        assert_eq!(state_of(Some(true), false, None), "starting");
        // Someone else's endpoint: the probe's word.
        assert_eq!(state_of(None, false, Some("dead")), "dead");
        assert_eq!(state_of(None, false, None), "starting");
    }
}
