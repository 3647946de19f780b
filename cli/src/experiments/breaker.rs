//! `storefront breaker`: fail one catalog replica on purpose (100 % injected
//! errors), then kill it outright, then bring it back, while reads flow
//! through the BFF; the BFF's circuit breaker must isolate the replica and
//! let it back in.
//!
//! Evidence comes from three places: the HTTP statuses the experiment saw,
//! the BFF's own per-upstream counters (`GET /admin/breakers`, the same
//! numbers as `bff_upstream_*` in its /metrics), and the replica's own
//! `http_requests_total` while it is alive. A dead replica has no /metrics,
//! so calls to it are counted on the BFF's side; the report says which.
//!
//! Also home of [`Gateway`], the BFF admin client that `flood` and
//! `storefront chaos` share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::record::{Latencies, Outcomes, outcome_of, summarize};
use super::{Invariant, Lab, Report};
use crate::fleet::control::{self, How};
use crate::fleet::{Ctx, FleetState};

// ---------------------------------------------------------------------------
// The BFF's admin API.

/// The profile's env variable holding the admin token.
pub const ADMIN_TOKEN_VAR: &str = "BFF_ADMIN_TOKEN";

/// The running BFF, as the CLI talks to it.
pub struct Gateway {
    /// Base URL of the (first) BFF instance.
    pub url: String,
    /// `BFF_ADMIN_TOKEN` from the fleet profile's `bff` entry.
    token: String,
    pub http: reqwest::Client,
}

impl Gateway {
    /// Finds the BFF in the recorded fleet and its admin token in the
    /// profile. Needs only fleet.json, not a healthy fleet, so `chaos clear`
    /// works in the middle of a broken experiment.
    pub fn connect(ctx: &Ctx) -> Result<Self> {
        let state = FleetState::load(&ctx.state_dir)?.with_context(|| {
            format!(
                "no fleet is up in {}: start one with `storefront up`",
                ctx.state_dir.display()
            )
        })?;
        Self::from_state(ctx, &state)
    }

    fn from_state(ctx: &Ctx, state: &FleetState) -> Result<Self> {
        let url = state
            .endpoints
            .services
            .get("bff")
            .and_then(|u| u.first())
            .cloned()
            .with_context(|| format!("the fleet's profile `{}` runs no bff", state.profile))?;
        let token = ctx
            .profile
            .services
            .iter()
            .find(|s| s.name == "bff")
            .and_then(|s| s.env.get(ADMIN_TOKEN_VAR))
            .cloned()
            .with_context(|| {
                format!(
                    "profile `{}` sets no {ADMIN_TOKEN_VAR} in the bff's env: the admin API is off",
                    ctx.profile.name
                )
            })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { url, token, http })
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("BFF {method} {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(AdminRefused {
                status: status.as_u16(),
                message: format!("BFF {method} {path} answered {status}: {detail}"),
            }
            .into());
        }
        serde_json::from_str(&text).with_context(|| format!("BFF {path}: not JSON"))
    }

    /// `request` pinned to `instance` with `X-Lab-Upstream`, which the BFF
    /// honours only with the admin token in `X-Lab-Token`.
    pub fn pinned(
        &self,
        request: reqwest::RequestBuilder,
        instance: &str,
    ) -> reqwest::RequestBuilder {
        request
            .header("x-lab-upstream", instance)
            .header("x-lab-token", &self.token)
    }

    /// `GET /admin/config`: what the BFF enforces.
    pub async fn config(&self) -> Result<Value> {
        self.admin(reqwest::Method::GET, "/admin/config", None)
            .await
    }

    /// `GET /admin/breakers`: every upstream instance's breaker and counters.
    pub async fn breakers(&self) -> Result<Vec<Value>> {
        let v = self
            .admin(reqwest::Method::GET, "/admin/breakers", None)
            .await?;
        Ok(v["upstreams"].as_array().cloned().unwrap_or_default())
    }

    /// One instance's breaker view.
    pub async fn breaker(&self, instance: &str) -> Result<Value> {
        self.breakers()
            .await?
            .into_iter()
            .find(|u| u["instance"] == instance)
            .with_context(|| format!("the BFF routes no upstream instance `{instance}`"))
    }

    /// `PUT /admin/chaos`.
    pub async fn set_chaos(&self, body: Value) -> Result<Value> {
        self.admin(reqwest::Method::PUT, "/admin/chaos", Some(body))
            .await
    }

    /// `DELETE /admin/chaos`.
    pub async fn clear_chaos(&self) -> Result<Value> {
        self.admin(reqwest::Method::DELETE, "/admin/chaos", None)
            .await
    }

    /// `GET /admin/chaos`.
    pub async fn show_chaos(&self) -> Result<Value> {
        self.admin(reqwest::Method::GET, "/admin/chaos", None).await
    }
}

/// The admin API refused a request (the status says why: 401, 422, ...).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminRefused {
    pub status: u16,
    pub message: String,
}

/// Sums `name`'s samples in a Prometheus text page over the label sets
/// `keep` accepts (it gets the `{...}` part, or "" when unlabelled).
pub fn sum_counter(page: &str, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = if rest.starts_with('{') {
                // The last brace: label values may hold braces (`/products/{id}`).
                let end = rest.rfind('}')?;
                (&rest[..=end], rest[end + 1..].trim())
            } else if rest.starts_with(' ') {
                ("", rest.trim())
            } else {
                return None;
            };
            keep(labels).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A replica's own count of the requests it served, `/metrics` scrapes
/// excluded (reading the counter must not move it).
pub async fn served_by(http: &reqwest::Client, base: &str) -> Result<f64> {
    let page = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(sum_counter(&page, "http_requests_total", |l| {
        !l.contains("route=\"/metrics\"")
    }))
}

// ---------------------------------------------------------------------------
// The experiment.

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// The catalog replica to fail, kill and restore.
    #[arg(long, default_value = "catalog-2")]
    pub target: String,
    /// Background reads through the BFF per second, during every phase.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub read_rate: u32,
    /// Requests pinned to the open replica (X-Lab-Upstream) to time its fail-fast answer.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pinned: u32,
    /// Bound on the p99 of those pinned requests (ms).
    #[arg(long, default_value_t = 50)]
    pub fail_fast_p99_ms: u64,
    /// How long the replica stays dead [default: 2 × the breaker's open time + 0.5 s, so it is probed while dead].
    #[arg(long)]
    pub dead_ms: Option<u64>,
    /// Slack allowed beyond the breaker's open time for it to close once the replica is back (ms).
    #[arg(long, default_value_t = 1000)]
    pub close_slack_ms: u64,
}

/// The breaker settings the run is judged against, from `GET /admin/config`.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    pub consecutive_failures: u64,
    pub open: Duration,
    pub half_open_probes: u64,
}

impl BreakerSettings {
    fn from_config(config: &Value) -> Result<Self> {
        let b = &config["breaker"];
        let n = |k: &str| {
            b[k].as_u64()
                .with_context(|| format!("/admin/config: no breaker.{k}"))
        };
        Ok(Self {
            consecutive_failures: n("consecutive_failures")?,
            open: Duration::from_millis(n("open_ms")?),
            half_open_probes: n("half_open_probes")?,
        })
    }
}

/// An instance's counters, as `GET /admin/breakers` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent_calls: u64,
    pub sent_probes: u64,
    pub failures: u64,
    pub rejected: u64,
    pub injected: u64,
    pub opened: u64,
}

impl Counters {
    fn of(view: &Value) -> Self {
        let c = &view["counters"];
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        Self {
            sent_calls: n("sent_calls"),
            sent_probes: n("sent_probes"),
            failures: n("failures"),
            rejected: n("rejected"),
            injected: n("injected"),
            opened: n("opened"),
        }
    }

    fn minus(self, before: Self) -> Self {
        Self {
            sent_calls: self.sent_calls - before.sent_calls,
            sent_probes: self.sent_probes - before.sent_probes,
            failures: self.failures - before.failures,
            rejected: self.rejected - before.rejected,
            injected: self.injected - before.injected,
            opened: self.opened - before.opened,
        }
    }

    /// Attempts that got past the breaker (sent, or stopped by chaos after it).
    fn admitted(self) -> u64 {
        self.sent_calls + self.sent_probes + self.injected
    }
}

/// Background reads through the BFF, labelled by the phase they fell in;
/// idle (no reads) until the first phase is named.
struct Reader {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<Option<&'static str>>>,
    task: tokio::task::JoinHandle<(Outcomes, Latencies)>,
}

const READS: &str = "reads through the BFF";

impl Reader {
    fn start(http: reqwest::Client, url: String, session: String, rate: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new(None));
        let (s, p) = (stop.clone(), phase.clone());
        let task = tokio::spawn(async move {
            let (mut out, mut lat) = (Outcomes::default(), Latencies::default());
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let Some(label) = *p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
                else {
                    continue;
                };
                let label = format!("{READS}: phase {label}");
                let t = Instant::now();
                let r = http
                    .get(&url)
                    .header("x-session-id", &session)
                    .send()
                    .await
                    .map(|r| r.status());
                lat.record(&label, t.elapsed());
                let o = outcome_of(&r);
                out.add(READS, o.clone());
                out.add(&label, o);
            }
            (out, lat)
        });
        Self { stop, phase, task }
    }

    fn phase(&self, label: &'static str) {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(label);
    }

    async fn finish(self) -> Result<(Outcomes, Latencies)> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// What the phases observed, for the checks.
#[derive(Debug, Default)]
struct Evidence {
    /// Phase 0: client errors pinned to the target, and what its breaker
    /// counted meanwhile (nothing, if only upstream faults count).
    client_errors: Outcomes,
    client_phase: Counters,
    closed_after_client_errors: bool,
    /// Phase 1: reads until open, and the failures the BFF counted by then.
    reads_to_open: u64,
    failures_at_open: Option<u64>,
    /// Phase 1's own (sequential) reads.
    sequential: Outcomes,
    sequential_lat: Latencies,
    /// Phase 2: the pinned requests' statuses and latencies.
    pinned: Outcomes,
    pinned_lat: Latencies,
    pinned_bad_retry_after: u64,
    /// Phase 2: the replica's own count, and the BFF's admitted attempts.
    replica_served_delta: Option<f64>,
    open_phase: Counters,
    /// Phase 2 must end before the breaker's open time does; if it didn't,
    /// a probe may legitimately have been let through and nothing is judged.
    open_outlasted: bool,
    /// Phase 3: BFF counters while the replica was dead.
    dead_phase: Counters,
    dead_for: Duration,
    /// Phase 4: ready → closed, and the replica's own count afterwards.
    closed_after: Option<Duration>,
    recovery: Counters,
    served_after_recovery: Option<f64>,
    restarted_in: Option<Duration>,
}

const PINNED: &str = "pinned to the open replica";
const CLIENT_ERRORS: &str = "client errors pinned to the target (phase 0)";

/// Requests that are the client's fault, one of each kind: refused by the
/// BFF itself (an encoded service name, a NUL in the query) or answered
/// 4xx by the replica (an unknown product, an id that is no number).
fn client_error_paths(id: i64) -> [String; 4] {
    [
        format!("/api/c%61talog/products/{id}"),
        "/api/catalog/products?category=%00".to_owned(),
        format!("/api/catalog/products/{}", i64::MAX - id),
        "/api/catalog/products/not-a-number".to_owned(),
    ]
}

pub async fn run(ctx: &Ctx, lab: &Lab, p: &Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let gw = Gateway::from_state(ctx, &lab.state)?;
    let settings = BreakerSettings::from_config(&gw.config().await?)?;
    let dead_for = Duration::from_millis(
        p.dead_ms
            .unwrap_or(2 * settings.open.as_millis() as u64 + 500),
    );
    let mut report = Report::new(
        "breaker",
        seed,
        json!({
            "target": p.target, "read_rate": p.read_rate, "pinned": p.pinned,
            "fail_fast_p99_ms": p.fail_fast_p99_ms, "dead_ms": dead_for.as_millis() as u64,
            "close_slack_ms": p.close_slack_ms,
            "breaker (from GET /admin/config)": {
                "consecutive_failures": settings.consecutive_failures,
                "open_ms": settings.open.as_millis() as u64,
                "half_open_probes": settings.half_open_probes,
            },
        }),
    );
    let urls = lab.urls("catalog")?;
    let target_url = target_url(urls, &p.target)?;
    if gw.breaker(&p.target).await?["state"] != "closed" {
        bail!(
            "{}'s breaker is not closed before the run; wait {} ms and try again",
            p.target,
            settings.open.as_millis()
        );
    }
    let id: i64 = sqlx::query_scalar("SELECT id FROM catalog.products ORDER BY id LIMIT 1")
        .fetch_one(&lab.pg)
        .await
        .context("arrange: no product in catalog.products")?;
    let read_url = format!("{}/api/catalog/products/{id}", gw.url);
    let session = format!("breaker-{seed:x}-{:x}", rand::random::<u32>());

    let mut ev = Evidence {
        dead_for,
        ..Evidence::default()
    };
    let reader = Reader::start(
        lab.http.clone(),
        read_url.clone(),
        session.clone(),
        p.read_rate,
    );
    let acted = act(
        ctx,
        lab,
        &gw,
        p,
        settings,
        &target_url,
        &read_url,
        id,
        &session,
        seed,
        &reader,
        &mut ev,
    )
    .await;
    // Restore the fleet whatever happened: chaos off, the replica running.
    let _ = gw.clear_chaos().await;
    let restored = restore(ctx, &p.target).await;
    let (mut reads, mut read_lat) = reader.finish().await?;
    acted?;
    restored?;
    reads.merge(&ev.sequential);
    read_lat.merge(&ev.sequential_lat);

    report.push(client_errors_not_counted(
        &p.target,
        &ev.client_errors,
        ev.client_phase,
        ev.closed_after_client_errors,
    ));
    report.push(opens_within(
        settings.consecutive_failures,
        ev.failures_at_open,
        ev.reads_to_open,
    ));
    report.push(fails_fast(
        &ev.pinned,
        ev.pinned_lat.get(PINNED),
        ev.pinned_bad_retry_after,
        p.fail_fast_p99_ms,
    ));
    report.push(if ev.open_outlasted {
        Invariant::unknown(
            "while open, the replica receives no calls",
            "0 requests served by the replica; 0 attempts past the breaker",
            "the open phase outlasted the breaker's open time (a slow machine?): a probe may have been due",
        )
    } else {
        no_calls_while_open(&p.target, ev.replica_served_delta, ev.open_phase)
    });
    report.push(dead_gets_only_probes(
        &p.target,
        ev.dead_phase,
        settings,
        ev.dead_for,
    ));
    report.push(reads_keep_succeeding(&reads));
    report.push(closes_within(
        &p.target,
        settings.open + Duration::from_millis(p.close_slack_ms),
        ev.closed_after,
        ev.recovery,
        ev.served_after_recovery,
    ));
    report.outcomes = reads;
    report.outcomes.merge(&ev.pinned);
    report.outcomes.merge(&ev.client_errors);
    report.latencies = read_lat;
    report.latencies.merge(&ev.pinned_lat);
    if let Some(d) = ev.restarted_in {
        report.measure(
            "replica restart → ready",
            format!("{:.2} s", d.as_secs_f64()),
        );
    }
    if let Some(d) = ev.closed_after {
        report.measure(
            "replica ready → breaker closed",
            format!("{} ms", d.as_millis()),
        );
    }
    report.measure(
        "BFF counters for the target while dead",
        format!(
            "sent_calls {}, sent_probes {}, failures {}, rejected (fail-fast) {}",
            ev.dead_phase.sent_calls,
            ev.dead_phase.sent_probes,
            ev.dead_phase.failures,
            ev.dead_phase.rejected
        ),
    );
    report.conclude(started.elapsed());
    Ok(report)
}

fn target_url(urls: &[String], target: &str) -> Result<String> {
    let n: usize = target
        .strip_prefix("catalog-")
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=urls.len()).contains(n))
        .with_context(|| {
            format!(
                "--target {target:?}: expected catalog-1..catalog-{} (the fleet's replicas)",
                urls.len()
            )
        })?;
    if urls.len() < 2 {
        bail!(
            "the breaker experiment needs at least 2 catalog replicas (one to fail, one to serve)"
        );
    }
    Ok(urls[n - 1].clone())
}

/// Starts the replica again if it is not running.
async fn restore(ctx: &Ctx, target: &str) -> Result<()> {
    let state = FleetState::load(&ctx.state_dir)?.context("fleet.json vanished")?;
    let running = state
        .components
        .iter()
        .any(|c| c.name == target && c.pid.is_some());
    if !running {
        control::start(ctx, target)
            .await
            .with_context(|| format!("restore: cannot start {target} again"))?;
    }
    Ok(())
}

/// Polls `check` every 20 ms until it returns `Some` or `within` passes.
async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn act(
    ctx: &Ctx,
    lab: &Lab,
    gw: &Gateway,
    p: &Params,
    s: BreakerSettings,
    target_url: &str,
    read_url: &str,
    id: i64,
    session: &str,
    seed: u64,
    reader: &Reader,
    ev: &mut Evidence,
) -> Result<()> {
    // Phase 0: the client's faults, pinned to the target, more of them than
    // it takes to open the breaker. Only upstream faults may count: a
    // breaker that counted these could be opened by anyone, for everyone.
    let before0 = Counters::of(&gw.breaker(&p.target).await?);
    for _ in 0..=s.consecutive_failures {
        for path in client_error_paths(id) {
            let request = lab
                .http
                .get(format!("{}{path}", gw.url))
                .header("x-session-id", session);
            let r = gw
                .pinned(request, &p.target)
                .send()
                .await
                .map(|r| r.status());
            ev.client_errors.add(CLIENT_ERRORS, outcome_of(&r));
        }
    }
    let after0 = gw.breaker(&p.target).await?;
    ev.client_phase = Counters::of(&after0).minus(before0);
    ev.closed_after_client_errors = after0["state"] == "closed";

    // Phase 1: every call to the target fails (injected at the BFF, where
    // the replica's answer would arrive). Read one at a time, nothing else
    // in flight, and watch the breaker after each read, so the failure
    // count at opening is exact.
    let before = Counters::of(&gw.breaker(&p.target).await?);
    gw.set_chaos(json!({"seed": seed, "faults": [{
        "target": p.target, "error_rate": 1.0, "error_status": 503, "ttl_secs": 300}]}))
        .await?;
    let limit = 4 * s.consecutive_failures + 10;
    let label = format!("{READS}: phase 1 errors injected");
    for n in 1..=limit {
        let t = Instant::now();
        let r = lab
            .http
            .get(read_url)
            .header("x-session-id", session)
            .send()
            .await
            .map(|r| r.status());
        ev.sequential_lat.record(&label, t.elapsed());
        let o = outcome_of(&r);
        ev.sequential.add(READS, o.clone());
        ev.sequential.add(&label, o);
        let view = gw.breaker(&p.target).await?;
        if view["state"] == "open" {
            ev.reads_to_open = n;
            ev.failures_at_open = Some(Counters::of(&view).minus(before).failures);
            break;
        }
    }
    if ev.failures_at_open.is_none() {
        return Ok(());
    }

    // Phase 2: open. Requests pinned to the target must be refused at once;
    // the replica (alive) must see nothing, and nothing may get past the
    // breaker (not even to the chaos layer behind it).
    reader.phase("2 open");
    let phase_start = Instant::now();
    let served0 = served_by(&lab.http, target_url).await.ok();
    let view0 = gw.breaker(&p.target).await?;
    let open_left = Duration::from_millis(view0["retry_after_ms"].as_u64().unwrap_or(0));
    let open0 = Counters::of(&view0);
    for _ in 0..p.pinned {
        let t = Instant::now();
        let request = lab.http.get(read_url).header("x-session-id", session);
        let r = gw.pinned(request, &p.target).send().await;
        ev.pinned_lat.record(PINNED, t.elapsed());
        if let Ok(r) = &r {
            let ok = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v >= 1);
            ev.pinned_bad_retry_after += u64::from(!ok);
        }
        ev.pinned.add(PINNED, outcome_of(&r.map(|r| r.status())));
    }
    tokio::time::sleep(Duration::from_millis(200).min(s.open / 4)).await;
    let open1 = Counters::of(&gw.breaker(&p.target).await?);
    ev.open_phase = open1.minus(open0);
    ev.open_outlasted = phase_start.elapsed() >= open_left;
    ev.replica_served_delta = match (served0, served_by(&lab.http, target_url).await.ok()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    // Phase 3: dead. Chaos off, so calls would reach the (dead) port: only
    // half-open probes may.
    reader.phase("3 dead");
    let dead0 = Counters::of(&gw.breaker(&p.target).await?);
    tokio::task::block_in_place(|| control::stop(ctx, &p.target, How::Crash))?;
    gw.clear_chaos().await?;
    tokio::time::sleep(ev.dead_for).await;
    let dead1 = Counters::of(&gw.breaker(&p.target).await?);
    ev.dead_phase = dead1.minus(dead0);

    // Phase 4: back. The breaker must half-open and close within its open
    // time (plus slack) of the replica being ready again.
    reader.phase("4 recovered");
    let back0 = dead1;
    ev.restarted_in = Some(control::start(ctx, &p.target).await?);
    let ready = Instant::now();
    let bound = s.open + Duration::from_millis(p.close_slack_ms);
    let closed = poll(bound + Duration::from_secs(2), || async {
        let v = gw.breaker(&p.target).await?;
        Ok((v["state"] == "closed").then(Instant::now))
    })
    .await?;
    ev.closed_after = closed.map(|c| c - ready);
    ev.recovery = Counters::of(&gw.breaker(&p.target).await?).minus(back0);
    // Reads keep flowing; the replica's own counter shows it serves again.
    let served = poll(Duration::from_secs(3), || async {
        Ok(served_by(&lab.http, target_url)
            .await
            .ok()
            .filter(|n| *n > 0.0))
    })
    .await?;
    ev.served_after_recovery = served;
    Ok(())
}

// ---------------------------------------------------------------------------
// The checks, as functions of their evidence (unit-tested with bad evidence).

fn client_errors_not_counted(
    target: &str,
    answered: &Outcomes,
    counted: Counters,
    still_closed: bool,
) -> Invariant {
    let total = answered.total(CLIENT_ERRORS);
    let client = answered.count_where(CLIENT_ERRORS, |o| o.starts_with('4'));
    // Some must have reached the replica (its own 4xx), or the run proved
    // only that the BFF refuses them.
    let reached = counted.sent_calls + counted.sent_probes;
    Invariant::check(
        "client errors never count against the breaker",
        total > 0
            && client == total
            && reached > 0
            && counted.failures == 0
            && counted.opened == 0
            && still_closed,
        format!("{total}/{total} 4xx, some answered by {target}; 0 failures counted; closed"),
        format!(
            "{client}/{total} 4xx, {reached} answered by {target}; {} failure(s) counted, opened {} time(s); {}",
            counted.failures,
            counted.opened,
            if still_closed { "closed" } else { "not closed" }
        ),
        format!(
            "encoded service name, NUL in the query, unknown and malformed ids, pinned with X-Lab-Upstream: {}; BFF /admin/breakers before and after",
            answered.summary(CLIENT_ERRORS)
        ),
    )
}

fn opens_within(threshold: u64, failures_at_open: Option<u64>, reads: u64) -> Invariant {
    let name = "the breaker opens within its configured failure count";
    let expected = format!("open after ≤ {threshold} failures");
    match failures_at_open {
        None => Invariant::check(
            name,
            false,
            expected,
            "never opened",
            format!(
                "GET /admin/breakers after each of {} sequential reads",
                4 * threshold + 10
            ),
        ),
        Some(f) => Invariant::check(
            name,
            f <= threshold && f > 0,
            expected,
            format!("open after {f} failures ({reads} reads)"),
            "BFF /admin/breakers: the target's failure counter from the chaos start to the first `open`",
        ),
    }
}

fn fails_fast(
    pinned: &Outcomes,
    lat: Option<&hdrhistogram::Histogram<u64>>,
    bad_retry_after: u64,
    bound_ms: u64,
) -> Invariant {
    let name = "while open, requests to that upstream fail fast";
    let expected = format!("all 503 with Retry-After, p99 ≤ {bound_ms} ms");
    let Some(lat) = lat else {
        return Invariant::unknown(
            name,
            expected,
            "no request was pinned (the breaker never opened)",
        );
    };
    let total = pinned.total(PINNED);
    let rejected = pinned.count(PINNED, "503");
    let p99 = summarize(lat).p99_ms;
    Invariant::check(
        name,
        rejected == total && bad_retry_after == 0 && p99 <= bound_ms as f64,
        expected,
        format!("{rejected}/{total} 503, {bad_retry_after} without Retry-After, p99 {p99:.2} ms"),
        format!(
            "requests pinned with X-Lab-Upstream: {}",
            pinned.summary(PINNED)
        ),
    )
}

fn no_calls_while_open(target: &str, replica_delta: Option<f64>, bff: Counters) -> Invariant {
    let name = "while open, the replica receives no calls";
    let expected = "0 requests served by the replica; 0 attempts past the breaker";
    let Some(delta) = replica_delta else {
        return Invariant::unknown(
            name,
            expected,
            format!("{target}'s /metrics could not be read"),
        );
    };
    Invariant::check(
        name,
        delta == 0.0 && bff.admitted() == 0,
        expected,
        format!(
            "replica served {delta}; BFF sent {} call(s), {} probe(s), {} hit chaos; {} refused fast",
            bff.sent_calls, bff.sent_probes, bff.injected, bff.rejected
        ),
        format!(
            "{target}'s own /metrics http_requests_total (except /metrics) and BFF /admin/breakers counters, over the open phase"
        ),
    )
}

fn dead_gets_only_probes(
    target: &str,
    bff: Counters,
    s: BreakerSettings,
    dead_for: Duration,
) -> Invariant {
    // One half-open episode per open period, plus the one in progress.
    let episodes = dead_for.as_millis() as u64 / s.open.as_millis().max(1) as u64 + 1;
    let bound = episodes * s.half_open_probes;
    Invariant::check(
        "the dead replica receives no calls (only half-open probes)",
        bff.sent_calls == 0 && bff.sent_probes <= bound,
        format!("0 calls, ≤ {bound} probe(s) in {} ms", dead_for.as_millis()),
        format!("{} call(s), {} probe(s)", bff.sent_calls, bff.sent_probes),
        format!(
            "{target} is dead, so it has no /metrics: counted on the BFF's side (bff_upstream_sent_total via /admin/breakers)"
        ),
    )
}

fn reads_keep_succeeding(reads: &Outcomes) -> Invariant {
    let total = reads.total(READS);
    let ok = reads.count(READS, "200");
    if total == 0 {
        return Invariant::unknown(
            "reads through the BFF keep succeeding",
            "every read 200",
            "no read was made",
        );
    }
    Invariant::check(
        "reads through the BFF keep succeeding",
        ok == total,
        format!("{total}/{total} 200"),
        format!("{ok}/{total} 200 ({} failed)", total - ok),
        format!("background reads in every phase: {}", reads.summary(READS)),
    )
}

fn closes_within(
    target: &str,
    bound: Duration,
    took: Option<Duration>,
    recovery: Counters,
    served_after: Option<f64>,
) -> Invariant {
    let name = "after recovery the breaker half-opens and closes within its configured time";
    let expected = format!(
        "closed ≤ {} ms after the replica is ready, through a probe",
        bound.as_millis()
    );
    let Some(took) = took else {
        return Invariant::check(
            name,
            false,
            expected,
            "not closed",
            "GET /admin/breakers polled every 20 ms",
        );
    };
    Invariant::check(
        name,
        took <= bound && recovery.sent_probes >= 1,
        expected,
        format!(
            "closed after {} ms, {} probe(s)",
            took.as_millis(),
            recovery.sent_probes
        ),
        format!(
            "GET /admin/breakers polled every 20 ms; {target}'s own /metrics then counts {} request(s)",
            served_after.map_or("no".into(), |n| n.to_string())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::Verdict;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 5,
            open: Duration::from_secs(2),
            half_open_probes: 1,
        }
    }

    #[test]
    fn prometheus_counters_are_summed_over_the_kept_label_sets() {
        let page = "# TYPE http_requests_total counter\n\
            http_requests_total{method=\"GET\",route=\"/products/{id}\",status=\"200\"} 7\n\
            http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 3\n\
            http_requests_total_other 100\n";
        assert_eq!(sum_counter(page, "http_requests_total", |_| true), 10.0);
        assert_eq!(
            sum_counter(page, "http_requests_total", |l| !l.contains("/metrics")),
            7.0
        );
    }

    #[test]
    fn client_errors_that_count_or_are_not_4xx_fail() {
        let mut out = Outcomes::default();
        for o in ["404", "400", "404", "400"] {
            out.add(CLIENT_ERRORS, o);
        }
        let none = Counters {
            sent_calls: 2,
            ..Counters::default()
        };
        let counted = Counters {
            failures: 2,
            ..none
        };
        let never_sent = Counters::default();
        let v = |out: &Outcomes, c: Counters, closed: bool| {
            client_errors_not_counted("catalog-2", out, c, closed).verdict
        };
        assert_eq!(v(&out, none, true), Verdict::Pass);
        assert_eq!(v(&out, counted, true), Verdict::Fail);
        assert_eq!(v(&out, none, false), Verdict::Fail);
        assert_eq!(v(&Outcomes::default(), none, true), Verdict::Fail);
        assert_eq!(v(&out, never_sent, true), Verdict::Fail);
        out.add(CLIENT_ERRORS, "502");
        assert_eq!(v(&out, none, true), Verdict::Fail);
    }

    #[test]
    fn opening_late_or_never_fails() {
        assert_eq!(opens_within(5, Some(5), 10).verdict, Verdict::Pass);
        assert_eq!(opens_within(5, Some(6), 12).verdict, Verdict::Fail);
        assert_eq!(opens_within(5, None, 30).verdict, Verdict::Fail);
    }

    #[test]
    fn slow_or_forwarded_pinned_requests_fail() {
        let mut fast = Latencies::default();
        let mut out = Outcomes::default();
        for _ in 0..100 {
            fast.record(PINNED, Duration::from_millis(2));
            out.add(PINNED, "503");
        }
        assert_eq!(
            fails_fast(&out, fast.get(PINNED), 0, 50).verdict,
            Verdict::Pass
        );
        assert_eq!(
            fails_fast(&out, fast.get(PINNED), 1, 50).verdict,
            Verdict::Fail
        );
        let mut slow = fast.clone();
        for _ in 0..10 {
            slow.record(PINNED, Duration::from_millis(300));
        }
        assert_eq!(
            fails_fast(&out, slow.get(PINNED), 0, 50).verdict,
            Verdict::Fail
        );
        out.add(PINNED, "200");
        assert_eq!(
            fails_fast(&out, fast.get(PINNED), 0, 50).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn a_call_reaching_an_open_or_dead_replica_fails() {
        let quiet = Counters::default();
        assert_eq!(
            no_calls_while_open("c", Some(0.0), quiet).verdict,
            Verdict::Pass
        );
        assert_eq!(
            no_calls_while_open("c", Some(1.0), quiet).verdict,
            Verdict::Fail
        );
        let leaked = Counters {
            injected: 1,
            ..quiet
        };
        assert_eq!(
            no_calls_while_open("c", Some(0.0), leaked).verdict,
            Verdict::Fail
        );
        assert_eq!(
            no_calls_while_open("c", None, quiet).verdict,
            Verdict::Unknown
        );

        let probes = Counters {
            sent_probes: 2,
            ..quiet
        };
        let dead = Duration::from_millis(4500);
        assert_eq!(
            dead_gets_only_probes("c", probes, settings(), dead).verdict,
            Verdict::Pass
        );
        let called = Counters {
            sent_calls: 1,
            ..probes
        };
        assert_eq!(
            dead_gets_only_probes("c", called, settings(), dead).verdict,
            Verdict::Fail
        );
        let storm = Counters {
            sent_probes: 9,
            ..quiet
        };
        assert_eq!(
            dead_gets_only_probes("c", storm, settings(), dead).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn any_failed_read_fails() {
        let mut reads = Outcomes::default();
        reads.add(READS, "200");
        assert_eq!(reads_keep_succeeding(&reads).verdict, Verdict::Pass);
        reads.add(READS, "502");
        assert_eq!(reads_keep_succeeding(&reads).verdict, Verdict::Fail);
    }

    #[test]
    fn closing_late_never_or_without_a_probe_fails() {
        let bound = Duration::from_secs(3);
        let probed = Counters {
            sent_probes: 1,
            ..Counters::default()
        };
        let ok = closes_within(
            "c",
            bound,
            Some(Duration::from_millis(2100)),
            probed,
            Some(5.0),
        );
        assert_eq!(ok.verdict, Verdict::Pass);
        let late = closes_within("c", bound, Some(Duration::from_millis(3100)), probed, None);
        assert_eq!(late.verdict, Verdict::Fail);
        let never = closes_within("c", bound, None, probed, None);
        assert_eq!(never.verdict, Verdict::Fail);
        let no_probe = closes_within(
            "c",
            bound,
            Some(Duration::from_millis(10)),
            Counters::default(),
            None,
        );
        assert_eq!(no_probe.verdict, Verdict::Fail);
    }
}
