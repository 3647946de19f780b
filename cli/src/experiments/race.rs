//! `storefront race`: N clients read the same product's ETag, wait on a
//! barrier, and send the same conditional stock decrement. xmin-based OCC
//! must let exactly one win and turn the rest into 412s; then every client
//! retries (re-read, re-apply) until its decrement lands, and no update may
//! be lost. The control arm sends the same decrements down a lab-only blind
//! read-modify-write path, and the checks must catch the lost updates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

use super::record::{Latencies, Outcomes, outcome_of};
use super::{Invariant, Lab, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Concurrent clients per round.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub n: u32,
    /// Rounds, each on a product of its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Control arm: blind read-modify-write with no precondition (needs lab_endpoints in the fleet profile).
    #[arg(long)]
    pub control: bool,
    /// How long both replicas may take to serve the winner's version.
    #[arg(long, default_value_t = 2000)]
    pub convergence_bound_ms: u64,
}

const LABEL_RACE: &str = "phase 1: racing decrement";
const LABEL_RETRY: &str = "phase 2: retried decrement";

/// A product made for one round: ours alone, deleted afterwards.
async fn arrange(lab: &Lab, seed: u64, round: u32, stock: i32) -> Result<i64> {
    let sku = format!("RACE-{seed}-{round}-{}", uuid_like());
    sqlx::query_scalar(
        "INSERT INTO catalog.products (sku, name, description, category, price_cents, stock)
         VALUES ($1, 'Race fixture', 'Created by storefront race', 'lab', 1000, $2) RETURNING id",
    )
    .bind(&sku)
    .bind(stock)
    .fetch_one(&lab.pg)
    .await
    .context("arrange: cannot insert the round's product (is the catalog migrated?)")
}

fn uuid_like() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn stock_in_postgres(lab: &Lab, id: i64) -> Result<i32> {
    Ok(
        sqlx::query_scalar("SELECT stock FROM catalog.products WHERE id = $1")
            .bind(id)
            .fetch_one(&lab.pg)
            .await?,
    )
}

/// The token the control arms send to `/lab/…` routes: the fleet profile's
/// bff `BFF_ADMIN_TOKEN`, which the fleet hands every service as
/// `LAB_ADMIN_TOKEN` (lab routes answer 401 without it).
pub(super) fn lab_admin_token(lab: &Lab) -> Result<String> {
    let root = crate::fleet::project_root()?;
    let (profile, _) = crate::fleet::profile::FleetProfile::load(&root, &lab.state.profile)?;
    crate::fleet::services::lab_admin_token(&profile)
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "profile `{}` sets no BFF_ADMIN_TOKEN in the bff's env, so the fleet gives the services no LAB_ADMIN_TOKEN and every /lab/ route answers 401",
                lab.state.profile
            )
        })
}

async fn etag(http: &reqwest::Client, base: &str, id: i64) -> Result<String> {
    let r = http.get(format!("{base}/products/{id}")).send().await?;
    if r.status() != StatusCode::OK {
        bail!("GET /products/{id} on {base} answered {}", r.status());
    }
    r.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no ETag header")
}

/// One decrement attempt; returns the outcome, the latency and the new ETag on success.
async fn decrement(
    http: &reqwest::Client,
    base: &str,
    id: i64,
    tag: &str,
    lab_token: Option<&str>,
) -> (String, Duration, Option<String>) {
    let t = Instant::now();
    // The control arm is the lab's blind read-modify-write, behind the token.
    let req = if let Some(token) = lab_token {
        http.post(format!("{base}/lab/products/{id}/blind-decrement"))
            .bearer_auth(token)
            .json(&json!({"by": 1}))
    } else {
        http.patch(format!("{base}/products/{id}"))
            .header("if-match", tag)
            .json(&json!({"stock_delta": -1}))
    };
    let r = req.send().await;
    let took = t.elapsed();
    let new_tag = r
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get("etag"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (outcome_of(&r.map(|r| r.status())), took, new_tag)
}

/// Polls every replica until it serves `tag`; returns the slowest time, or None past the bound.
async fn convergence(
    lab: &Lab,
    urls: &[String],
    id: i64,
    tag: &str,
    bound: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    for base in urls {
        loop {
            if etag(&lab.http, base, id).await.ok().as_deref() == Some(tag) {
                break;
            }
            if t.elapsed() > bound {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Some(t.elapsed())
}

pub async fn run(lab: &Lab, p: &Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(
        "race",
        seed,
        json!({"n": p.n, "rounds": p.rounds, "control": p.control}),
    );
    let urls: Arc<Vec<String>> = Arc::new(lab.urls("catalog")?.to_vec());
    let lab_token: Option<Arc<str>> = if p.control {
        Some(Arc::from(lab_admin_token(lab)?))
    } else {
        None
    };
    let n = p.n as i32;
    let mut lat = Latencies::default();
    let mut out = Outcomes::default();
    let (mut lost_total, mut conv_fail, mut phase2_bad, mut conv_unjudged) =
        (0i64, Vec::new(), Vec::new(), 0u32);
    let (mut winners_bad, mut losers_bad, mut others_bad) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..p.rounds {
        let t_round = Instant::now();
        let start_stock = 2 * n + 10;
        let id = arrange(lab, seed, round, start_stock).await?;
        // Phase 1: everyone reads the same version, then fires together.
        let barrier = Arc::new(Barrier::new(p.n as usize));
        let mut tasks = Vec::new();
        for i in 0..p.n as usize {
            let (http, urls, barrier, lab_token) = (
                lab.http.clone(),
                urls.clone(),
                barrier.clone(),
                lab_token.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let base = &urls[i % urls.len()];
                let tag = etag(&http, base, id).await;
                barrier.wait().await;
                match tag {
                    Ok(tag) => decrement(&http, base, id, &tag, lab_token.as_deref()).await,
                    Err(e) => (format!("error: read: {e}"), Duration::ZERO, None),
                }
            }));
        }
        let mut round_out = Outcomes::default();
        let mut winner_tag = None;
        for t in tasks {
            let (o, took, tag) = t.await?;
            if o.starts_with('2') {
                winner_tag = tag;
            }
            lat.record(LABEL_RACE, took);
            round_out.add(LABEL_RACE, o);
        }
        let ok = round_out.count_where(LABEL_RACE, |s| s.starts_with('2'));
        let pre = round_out.count(LABEL_RACE, "412");
        let other = round_out.total(LABEL_RACE) - ok - pre;
        let after1 = stock_in_postgres(lab, id).await?;
        let lost = ok as i64 - i64::from(start_stock - after1);
        lost_total += lost;
        if ok != 1 {
            winners_bad.push(format!("round {round}: {ok}"));
        }
        if pre != u64::from(p.n - 1) {
            losers_bad.push(format!("round {round}: {pre}"));
        }
        if other != 0 {
            others_bad.push(format!("round {round}: {}", round_out.summary(LABEL_RACE)));
        }
        out.merge(&round_out);

        // Both replicas must serve the winner's version within the bound.
        match (p.control, winner_tag.as_deref()) {
            (true, _) => {}
            (false, Some(tag)) => match convergence(
                lab,
                &urls,
                id,
                tag,
                Duration::from_millis(p.convergence_bound_ms),
            )
            .await
            {
                Some(d) => lat.record("replica convergence", d),
                None => conv_fail.push(format!("round {round}")),
            },
            (false, None) => conv_unjudged += 1,
        }

        // Phase 2: every client retries on 412 until its decrement lands.
        if !p.control {
            let before2 = after1;
            let landed = retry_phase(lab, &urls, id, p.n, &mut lat, &mut out).await?;
            let after2 = stock_in_postgres(lab, id).await?;
            if landed != p.n || after2 != before2 - n {
                phase2_bad.push(format!(
                    "round {round}: {landed}/{} landed, stock {before2} → {after2}",
                    p.n
                ));
            }
        }
        lat.record("round", t_round.elapsed());
        sqlx::query("DELETE FROM catalog.products WHERE id = $1")
            .bind(id)
            .execute(&lab.pg)
            .await
            .ok();
    }
    let rounds = p.rounds;
    let none = |v: &Vec<String>| {
        if v.is_empty() {
            "every round".to_string()
        } else {
            v.join("; ")
        }
    };
    report.push(Invariant::check(
        "exactly one 2xx per round",
        winners_bad.is_empty(),
        format!("1 winner in each of {rounds} round(s)"),
        if winners_bad.is_empty() {
            "1 in every round".into()
        } else {
            winners_bad.join("; ")
        },
        format!(
            "HTTP statuses of the racing requests: {}",
            out.summary(LABEL_RACE)
        ),
    ));
    report.push(Invariant::check(
        "exactly N−1 412s per round",
        losers_bad.is_empty(),
        format!("{} per round", p.n - 1),
        if losers_bad.is_empty() {
            format!("{} in every round", p.n - 1)
        } else {
            losers_bad.join("; ")
        },
        "412 Precondition Failed count per round",
    ));
    report.push(Invariant::check(
        "no other status",
        others_bad.is_empty(),
        "only 2xx and 412",
        if others_bad.is_empty() {
            "none".into()
        } else {
            others_bad.join("; ")
        },
        "every racing request's outcome, counted",
    ));
    report.push(Invariant::equal(
        "no lost update (stock fell by the number of 2xx)",
        0,
        lost_total,
        "Postgres: SELECT stock FROM catalog.products after each round vs successful responses",
    ));
    if !p.control {
        let name = "both replicas serve the new version within the bound";
        let expected = format!("≤ {} ms after the winning write", p.convergence_bound_ms);
        report.push(if conv_unjudged == p.rounds {
            Invariant::unknown(
                name,
                expected,
                "no round had a winner whose version could be awaited",
            )
        } else {
            Invariant::check(
                name,
                conv_fail.is_empty(),
                expected,
                if conv_fail.is_empty() {
                    none(&conv_fail)
                } else {
                    format!("not converged: {}", conv_fail.join(", "))
                },
                "GET /products/{id} ETag polled on every catalog replica",
            )
        });
        report.push(Invariant::check(
            "retrying clients all land; final stock = start − 1 − N",
            phase2_bad.is_empty(),
            format!("{} decrements landed per round", p.n),
            if phase2_bad.is_empty() {
                "every round".into()
            } else {
                phase2_bad.join("; ")
            },
            "Postgres stock before and after phase 2",
        ));
    }
    if lost_total > 0 {
        report.measure("lost updates found", lost_total);
    }
    if let Some(h) = lat.get("replica convergence") {
        report.measure(
            "replica convergence (max)",
            format!("{:.2} ms", h.max() as f64 / 1000.0),
        );
    }
    report.outcomes = out;
    report.latencies = lat;
    report.conclude(started.elapsed());
    Ok(report)
}

/// Each client loops: read the ETag, send the conditional decrement; on 412
/// read again. Returns how many landed (bounded attempts; a stuck client
/// counts as not landed).
async fn retry_phase(
    lab: &Lab,
    urls: &Arc<Vec<String>>,
    id: i64,
    n: u32,
    lat: &mut Latencies,
    out: &mut Outcomes,
) -> Result<u32> {
    let barrier = Arc::new(Barrier::new(n as usize));
    let mut tasks = Vec::new();
    for i in 0..n as usize {
        let (http, urls, barrier) = (lab.http.clone(), urls.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let base = &urls[i % urls.len()];
            let (mut l, mut o) = (Latencies::default(), Outcomes::default());
            barrier.wait().await;
            let max_attempts = 20 * n;
            for _ in 0..max_attempts {
                let Ok(tag) = etag(&http, base, id).await else {
                    o.add(LABEL_RETRY, "error: read");
                    continue;
                };
                let (outcome, took, _) = decrement(&http, base, id, &tag, None).await;
                l.record(LABEL_RETRY, took);
                let landed = outcome.starts_with('2');
                o.add(LABEL_RETRY, outcome);
                if landed {
                    return (true, l, o);
                }
            }
            (false, l, o)
        }));
    }
    let mut landed = 0;
    for t in tasks {
        let (ok, l, o) = t.await?;
        landed += u32::from(ok);
        lat.merge(&l);
        out.merge(&o);
    }
    Ok(landed)
}
