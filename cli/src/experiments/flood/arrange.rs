//! Arrange: read the bucket every BFF instance enforces, warm the catalog
//! replicas' caches, log the users in, wait until their buckets are full,
//! and read the counters the checks compare against afterwards.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::counters;
use super::plan::{Limits, Params, customers};
use crate::clients::bff_admin::BffAdmin;
use crate::clients::catalog::Catalog;
use crate::clients::identity::Identity;
use crate::fleet::Ctx;
use crate::run::Lab;
use crate::run::accounts::password;

/// A logged-in user: the bucket's key, from the BFF's point of view.
pub struct User {
    pub name: &'static str,
    pub token: String,
}

/// What arrange made and read: everything act and the checks need.
pub struct Setup {
    pub names: &'static [&'static str],
    pub users: Vec<User>,
    pub bffs: Vec<String>,
    pub catalog: Vec<String>,
    /// The product every request reads: `/products/{id}`.
    pub path: String,
    /// The bucket the BFFs enforce (`GET /admin/config`).
    pub live: Limits,
    /// The bucket the checks judge by: `live`, or the control arm's capacity.
    pub limits: Limits,
    /// Tells this run's session ids apart.
    pub nonce: String,
    /// The catalog replicas' request count and the BFFs' fail-open count
    /// before the flood (`None`: a `/metrics` could not be read).
    pub upstream_before: Option<f64>,
    pub failed_open_before: Option<f64>,
}

pub async fn arrange(ctx: &Ctx, lab: &Lab, p: &Params, seed: u64) -> Result<Setup> {
    let names = customers(p.sessions)?;
    let mut gw = BffAdmin::connect(ctx)?;
    let bffs = lab.urls("bff")?.to_vec();
    let live = same_limits(&mut gw, &bffs).await?;
    let limits = Limits {
        capacity: p.expect_capacity.map_or(live.capacity, u64::from),
        ..live
    };
    let catalog = lab.urls("catalog")?.to_vec();
    let id: i64 = sqlx::query_scalar("SELECT id FROM catalog.products ORDER BY id LIMIT 1")
        .fetch_one(&lab.pg)
        .await
        .context("arrange: no product in catalog.products")?;
    let path = format!("/products/{id}");
    // Warm every replica's cache, so the flood measures the gateway.
    for base in &catalog {
        Catalog::new(lab.http.clone(), base.clone())
            .product(id)
            .await
            .context("arrange: warming a catalog replica")?;
    }
    let users = log_in(lab, names).await?;
    fill_buckets(lab, &bffs[0], &path, &users, live).await?;
    let upstream_before = counters::upstream_count(lab, &catalog).await;
    let failed_open_before = counters::failed_open(lab, &bffs).await;
    Ok(Setup {
        names,
        users,
        bffs,
        catalog,
        path,
        live,
        limits,
        nonce: format!("{seed:x}-{:x}", rand::random::<u32>()),
        upstream_before,
        failed_open_before,
    })
}

/// Logs each customer in at identity (password grant).
pub async fn log_in(lab: &Lab, names: &[&'static str]) -> Result<Vec<User>> {
    let identity = Identity::new(lab.http.clone(), lab.urls("identity")?[0].clone());
    let mut users = Vec::new();
    for &name in names {
        let token = identity
            .login(name, &password(name))
            .await
            .with_context(|| format!("arrange: logging {name} in at {}", identity.base))?;
        users.push(User {
            name,
            token: token.access_token,
        });
    }
    Ok(users)
}

/// Waits until every user's bucket is full again (an earlier run may have
/// drained it): one request each, then as long as the slowest `RateLimit`
/// answer's `t=` (seconds until full) says, bounded by one full refill.
async fn fill_buckets(lab: &Lab, bff: &str, path: &str, users: &[User], l: Limits) -> Result<()> {
    let longest = l.capacity.div_ceil(l.refill_per_sec.max(1)) + 1;
    let mut wait = 0;
    for u in users {
        let r = lab
            .http
            .get(format!("{bff}/api/catalog{path}"))
            .bearer_auth(&u.token)
            .send()
            .await
            .with_context(|| format!("arrange: a first request as {}", u.name))?;
        if r.status() == 401 {
            bail!("arrange: the BFF refused {}'s fresh token (401)", u.name);
        }
        // A 429's `t=` is the wait for one token, not for a full bucket.
        let t = if r.status() == 429 {
            longest
        } else {
            seconds_until_full(r.headers().get("ratelimit").and_then(|v| v.to_str().ok()))
                .unwrap_or(longest)
        };
        wait = wait.max(t.min(longest));
    }
    tokio::time::sleep(Duration::from_secs(wait)).await;
    Ok(())
}

/// `t=` of a `RateLimit` header (`"session";r=199;t=1`): after a 200, the
/// whole seconds until the bucket is full again.
pub fn seconds_until_full(ratelimit: Option<&str>) -> Option<u64> {
    ratelimit?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("t="))?
        .parse()
        .ok()
}

/// The bucket every BFF instance enforces (`GET /admin/config` of each); an
/// error if they differ, as one bound cannot judge two policies.
async fn same_limits(gw: &mut BffAdmin, bffs: &[String]) -> Result<Limits> {
    let mut seen: Option<(String, Limits)> = None;
    for bff in bffs {
        gw.url = bff.clone();
        let rl = gw.admin_config().await?.rate_limit;
        let l = Limits {
            capacity: rl.capacity,
            refill_per_sec: rl.refill_per_sec,
        };
        match &seen {
            Some((first, f))
                if (f.capacity, f.refill_per_sec) != (l.capacity, l.refill_per_sec) =>
            {
                bail!(
                    "the BFF instances enforce different buckets ({first}: {} + {}/s, {bff}: {} + {}/s): one bound cannot judge them",
                    f.capacity,
                    f.refill_per_sec,
                    l.capacity,
                    l.refill_per_sec
                )
            }
            Some(_) => {}
            None => seen = Some((bff.clone(), l)),
        }
    }
    gw.url = bffs[0].clone();
    seen.map(|(_, l)| l).context("the fleet runs no BFF")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_for_a_full_bucket_is_read_from_ratelimit_t() {
        assert_eq!(seconds_until_full(Some("\"session\";r=199;t=1")), Some(1));
        assert_eq!(seconds_until_full(Some("\"session\";r=0; t=3")), Some(3));
        assert_eq!(seconds_until_full(Some("\"session\";r=0")), None);
        assert_eq!(seconds_until_full(None), None);
    }
}
