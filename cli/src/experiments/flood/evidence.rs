//! What a flood run saw, as plain data the pure [`super::check`] judges,
//! and the reads that gather it after the flood: the catalog replicas' and
//! the BFFs' own counters ([`counters`]), the Retry-After probe, and the
//! optional bench ([`act::compare_direct`]).

use std::time::Duration;

use anyhow::Result;

use super::act::{self, Bench};
use super::arrange::{Setup, User, log_in};
use super::counters;
use super::plan::{CUSTOMERS, Limits};
use crate::run::Lab;
use crate::run::record::outcome_of;

/// The Retry-After probe: a user drained until refused, who then waits
/// the `Retry-After` given and asks again.
#[derive(Debug, Clone, PartialEq)]
pub enum RetrySeen {
    /// No 429 came after `sent` requests.
    NeverRefused { user: String, sent: u64 },
    /// A 429 came without a usable `Retry-After`.
    NoRetryAfter { user: String },
    /// The retry's outcome after waiting `secs`.
    Retried {
        outcome: String,
        secs: u64,
        user: String,
        sent: u64,
        instances: usize,
        refused_by: String,
        retried_at: String,
    },
}

/// What was read after the flood.
#[derive(Debug)]
pub struct Evidence {
    /// The catalog replicas' own `GET /products/{id}` count, after − before.
    pub upstream_delta: Option<f64>,
    /// Times the BFFs let a request through unlimited (Redis too slow).
    pub failed_open: Option<f64>,
    pub retry: RetrySeen,
    pub bench: Option<Bench>,
}

pub async fn read(lab: &Lab, setup: &Setup, compare_direct: u32) -> Result<Evidence> {
    let upstream_after = counters::upstream_count(lab, &setup.catalog).await;
    let failed_open_after = counters::failed_open(lab, &setup.bffs).await;
    // The probe's user: one the flood left alone if there is one, else the
    // first (its bucket drained, which the probe does anyway).
    let probe_name = CUSTOMERS[setup.names.len() % CUSTOMERS.len()];
    let probe = log_in(lab, &[probe_name]).await?.remove(0);
    let retry = retry_after_probe(lab, &setup.bffs, &setup.path, &probe, setup.live).await;
    let bench = if compare_direct > 0 {
        Some(act::compare_direct(lab, setup, compare_direct).await)
    } else {
        None
    };
    Ok(Evidence {
        upstream_delta: setup
            .upstream_before
            .zip(upstream_after)
            .map(|(a, b)| b - a),
        failed_open: setup
            .failed_open_before
            .zip(failed_open_after)
            .map(|(a, b)| b - a),
        retry,
        bench,
    })
}

/// A user spends their bucket until refused (requests spread over every
/// BFF instance), waits the `Retry-After` they were given, and asks again
/// — of another instance than the one that refused, if any.
async fn retry_after_probe(
    lab: &Lab,
    bffs: &[String],
    path: &str,
    user: &User,
    l: Limits,
) -> RetrySeen {
    let get = |b: usize| {
        lab.http
            .get(format!("{}/api/catalog{path}", bffs[b % bffs.len()]))
            .bearer_auth(&user.token)
            .header("x-session-id", format!("flood-probe-{}", user.name))
            .send()
    };
    // Bursts of 50 outrun any refill the bucket gets meanwhile.
    let most = l.capacity + 2 * l.refill_per_sec + 500;
    let mut sent = 0;
    let mut refusal = None;
    while sent < most && refusal.is_none() {
        let burst = futures::future::join_all((0..50).map(get)).await;
        refusal = burst
            .into_iter()
            .enumerate()
            .find_map(|(b, r)| r.ok().filter(|r| r.status() == 429).map(|r| (b, r)));
        sent += 50;
    }
    let user_name = user.name.to_owned();
    let Some((refused_by, refusal)) = refusal else {
        return RetrySeen::NeverRefused {
            user: user_name,
            sent,
        };
    };
    let Some(secs) = refusal
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return RetrySeen::NoRetryAfter { user: user_name };
    };
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let retry_by = refused_by + 1;
    let status = get(retry_by).await.map(|r| r.status());
    RetrySeen::Retried {
        outcome: outcome_of(&status),
        secs,
        user: user_name,
        sent,
        instances: bffs.len(),
        refused_by: bffs[refused_by % bffs.len()].clone(),
        retried_at: bffs[retry_by % bffs.len()].clone(),
    }
}
