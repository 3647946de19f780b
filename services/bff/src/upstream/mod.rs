//! The upstream replicas: each with its own breaker and counters, chosen
//! round-robin among those whose breaker admits a call, and the one attempt
//! of sending a request to one of them (chaos included).

mod attempt;
mod instance;
mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, header};

use crate::breaker::{Admission, Breaker, BreakerConfig};
use crate::config::UpstreamConfig;

pub use attempt::{Attempt, Forward, Reply, Transport, Verdict, send};
use instance::{Counters, Handles};
pub use instance::{CountersView, Instance, InstanceView, Ticket};
pub use wire::Client;

/// An upstream answer's headers passed back to the client; the client
/// reads only these (`wire.rs` keeps no other), an injected reply sets no
/// other.
pub static FORWARDED_ANSWER: [HeaderName; 9] = [
    header::CONTENT_TYPE,
    header::ETAG,
    header::LOCATION,
    HeaderName::from_static("idempotent-replayed"),
    HeaderName::from_static("x-cache"),
    header::CACHE_CONTROL,
    header::LAST_MODIFIED,
    header::RETRY_AFTER,
    HeaderName::from_static("x-chaos"),
];

/// Counter of attempts per upstream instance, labelled `outcome`.
pub const ATTEMPTS_METRIC: &str = "bff_upstream_requests_total";
/// Counter of requests actually sent to an instance, labelled `admitted_as`
/// (`call` or `probe`): what the instance itself should have received.
pub const SENT_METRIC: &str = "bff_upstream_sent_total";
/// Counter of breaker transitions, labelled `from` and `to`.
pub const TRANSITIONS_METRIC: &str = "bff_breaker_transitions_total";
/// Gauge of each breaker's state: 0 closed, 1 open, 2 half-open.
pub const STATE_METRIC: &str = "bff_breaker_state";

/// One routed service and its replicas.
#[derive(Debug)]
pub struct Service {
    /// Its name in `/api/<service>/…`.
    pub name: String,
    /// Its replicas, in the configured order.
    pub instances: Vec<Arc<Instance>>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Service {
    /// The service from its configuration; instances are named as the fleet
    /// names them (`catalog` for one replica, `catalog-1`… for more).
    pub fn new(config: &UpstreamConfig, breaker: BreakerConfig, now: Instant) -> Self {
        let n = config.urls.len();
        let instances = config
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let name = if n == 1 {
                    config.service.clone()
                } else {
                    format!("{}-{}", config.service, i + 1)
                };
                metrics::gauge!(STATE_METRIC, "upstream" => name.clone()).set(0.0);
                Arc::new(Instance {
                    service: config.service.clone(),
                    name,
                    base: url.clone(),
                    breaker: Mutex::new(Breaker::new(breaker, now)),
                    counters: Counters::default(),
                    handles: Handles::default(),
                })
            })
            .collect();
        Self {
            name: config.service.clone(),
            instances,
            next: AtomicUsize::new(0),
            timeout: config.timeout,
        }
    }

    /// The next instance in round-robin order whose breaker admits a call,
    /// preferring those not in `tried`; `Err` carries the shortest time
    /// until one will (every breaker refused).
    pub fn admit(&self, tried: &[usize], now: Instant) -> Result<(usize, Ticket), Duration> {
        let n = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i))
            .chain(
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|i| tried.contains(i)),
            );
        let mut soonest = Duration::MAX;
        for i in order {
            match self.admit_one(i, now) {
                Ok(ticket) => return Ok((i, ticket)),
                Err(wait) => soonest = soonest.min(wait),
            }
        }
        Err(soonest)
    }

    /// Asks instance `i`'s breaker alone.
    pub fn admit_one(&self, i: usize, now: Instant) -> Result<Ticket, Duration> {
        let instance = &self.instances[i];
        let (admission, t) = instance.breaker().admit(now);
        instance.note(t);
        match admission {
            Admission::Reject { retry_after } => {
                instance.counters.rejected.fetch_add(1, Ordering::Relaxed);
                instance.count("rejected_open");
                Err(retry_after)
            }
            _ => Ok(Ticket {
                instance: instance.clone(),
                admission,
                settled: false,
            }),
        }
    }

    /// The index of the instance named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.name == name)
    }
}

/// Every routed service.
#[derive(Debug, Default)]
pub struct Upstreams {
    /// The services with at least one replica.
    pub services: Vec<Service>,
}

impl Upstreams {
    /// One service per config with URLs, each replica with a closed breaker.
    pub fn new(configs: &[UpstreamConfig], breaker: BreakerConfig, now: Instant) -> Self {
        Self {
            services: configs
                .iter()
                .filter(|c| !c.urls.is_empty())
                .map(|c| Service::new(c, breaker, now))
                .collect(),
        }
    }

    /// The routed service of this name, if any.
    pub fn get(&self, service: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == service)
    }

    /// Every name a chaos fault may target: services and instances.
    pub fn targets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.services {
            out.push(s.name.clone());
            out.extend(s.instances.iter().map(|i| i.name.clone()));
        }
        out.dedup();
        out
    }

    /// Every instance's snapshot.
    pub fn views(&self, now: Instant) -> Vec<InstanceView> {
        self.services
            .iter()
            .flat_map(|s| s.instances.iter().map(move |i| i.view(now)))
            .collect()
    }
}
